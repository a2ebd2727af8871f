#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod charts;
pub mod execution;
mod sandbox;
pub mod wire;

#[cfg(feature = "blocking")]
#[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
pub mod blocking;

pub use charts::{Chart, ChartType};
pub use execution::{Context, Execution, ExecutionError, Logs, OutputMessage, Result};
pub use sandbox::{
    CreateCodeContextOptions, DEFAULT_EXECUTION_TIMEOUT, DEFAULT_TEMPLATE, RunCodeOptions, Sandbox,
    SandboxBuilder,
};
pub use wire::JUPYTER_PORT;
