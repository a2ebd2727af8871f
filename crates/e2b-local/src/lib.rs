#![doc = include_str!("../README.md")]

#[cfg(target_os = "linux")]
pub mod api;
#[cfg(target_os = "linux")]
pub mod cli;
#[cfg(target_os = "linux")]
pub mod code_interpreter_role;
#[cfg(target_os = "linux")]
mod envd_client;
#[cfg(target_os = "linux")]
pub mod envd_role;
#[cfg(target_os = "linux")]
pub mod isolation;
#[cfg(target_os = "linux")]
pub mod lifecycle;
#[cfg(target_os = "linux")]
pub mod network;
#[cfg(target_os = "linux")]
pub mod router;
#[cfg(target_os = "linux")]
pub mod server;
#[cfg(target_os = "linux")]
pub mod state;
#[cfg(target_os = "linux")]
pub mod template;

#[cfg(target_os = "linux")]
pub use server::{RunningServer, Server, ServerBuilder, ServerError};
