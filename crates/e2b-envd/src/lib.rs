#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod codec;
mod error;
mod request;
mod streaming;
mod timestamp;

pub mod envelope;
pub mod headers;
pub mod signature;

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "server")]
mod server;

pub use codec::{Codec, Encoding, JsonCodec, Message, ProtoCodec};
pub use error::{Code, ConnectError, ErrorDetail, error_chain};
pub use request::{IntoRequest, IntoStreamingRequest, Request};
pub use streaming::Streaming;
pub use timestamp::Timestamp;

#[cfg(feature = "client")]
pub use client::{Client, ClientBuilder, default_http_client, http_client_builder, tls_config};
#[cfg(feature = "server")]
pub use server::ServerConfig;

/// The port envd listens on inside every sandbox.
pub const ENVD_PORT: u16 = 49983;

/// The largest message accepted by default, in either direction: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// envd's protobuf messages and their Connect services.
pub mod pb {
    /// `process.proto`: starting, observing and controlling processes.
    #[allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]
    pub mod process {
        include!("generated/process.rs");
    }

    /// `filesystem.proto`: inspecting, changing and watching files.
    #[allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]
    pub mod filesystem {
        include!("generated/filesystem.rs");
    }
}

/// envd's plain HTTP endpoints (`/health`, `/metrics`, `/envs`, `/init`, `/files`), generated
/// from `openapi/envd.yml`: their bodies in [`http::types`] (always available, so envd's server
/// uses the same types) and a progenitor `Client` with the `client` feature. Multipart upload
/// is the `e2b` crate's, since OpenAPI generators cannot express it.
#[allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]
#[rustfmt::skip]
pub mod http {
    /// Request and response bodies of envd's HTTP endpoints.
    pub mod types {
        include!("generated/http/types.rs");
    }

    #[cfg(feature = "client")]
    include!("generated/http/client.rs");
}

/// What generated service code uses; not part of the public API.
#[doc(hidden)]
pub mod codegen {
    pub use std::future::Future;
    pub use std::sync::Arc;

    pub use futures_core::Stream;

    pub use crate::{ConnectError, IntoRequest, IntoStreamingRequest, Request, Streaming};

    #[cfg(feature = "client")]
    pub use crate::Client;

    #[cfg(feature = "server")]
    pub use crate::server::{
        ServerConfig, client_streaming_route, server_streaming_route, unary_route,
        unimplemented_route,
    };
    #[cfg(feature = "server")]
    pub use axum::Router;
}
