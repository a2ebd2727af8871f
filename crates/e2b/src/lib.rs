#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod commands;
pub mod config;
pub mod error;
pub mod files;
pub mod pty;
pub mod sandbox;
pub mod template;
pub mod volume;

#[cfg(feature = "blocking")]
#[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
pub mod blocking;

#[cfg(feature = "local")]
#[cfg_attr(docsrs, doc(cfg(feature = "local")))]
pub mod local;

mod envd;
mod percent;

pub use commands::{
    CommandControl, CommandEvent, CommandHandle, CommandResult, Commands, ProcessInfo, RunOptions,
};
pub use config::ConnectionConfig;
pub use error::{ConnectCode, Error, Result};
pub use files::{
    EntryInfo, EventType, FileType, Filesystem, FilesystemEvent, PollingWatchHandle, ReadStream,
    WatchHandle, WatchOptions, WriteEntry, WriteInfo,
};
pub use pty::{Pty, PtyOptions, PtySize};
pub use sandbox::{
    ALL_TRAFFIC, EgressProxy, EgressProxyInfo, EgressProxyTls, EgressProxyTlsInfo, ForkOptions,
    MAX_FORK_COUNT, NetworkConfig, NetworkInfo, NetworkRule, NetworkTransform, NetworkUpdate,
    OnTimeout, PauseMode, Sandbox, SandboxBuilder, SandboxGuard, SandboxInfo, SandboxLifecycle,
    SandboxMetrics, SandboxPaginator, SandboxQuery, SandboxState, SnapshotInfo, SnapshotPaginator,
    SnapshotQuery, TRAFFIC_ACCESS_TOKEN_HEADER,
};
pub use template::{BuildInfo, BuildOptions, LogEntry, ReadyCmd, Template};
pub use volume::{
    Volume, VolumeAndToken, VolumeEntryStat, VolumeFileType, VolumeInfo, VolumeMetadata,
    VolumeMount, VolumeWriteOptions,
};

/// The types most programs need: `use e2b::prelude::*;`.
pub mod prelude {
    pub use crate::{
        CommandEvent, CommandResult, ConnectionConfig, Error, PtyOptions, PtySize, Result,
        RunOptions, Sandbox, SandboxQuery, Template, Volume, WatchOptions, WriteEntry,
    };
}
