#![doc = include_str!("../README.md")]

mod api;
mod env_vars;
mod envd;
pub mod events;
mod kernel;
pub mod kernelspec;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use api::ContextInfo;

/// The port E2B's SDKs reach the server on.
pub const DEFAULT_PORT: u16 = 49999;

/// The account kernels run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelUser {
    /// Login name (`USER`, `LOGNAME`).
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id (supplementary groups are dropped).
    pub gid: u32,
    /// Home directory (`HOME`).
    pub home: PathBuf,
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where kernelspecs are looked for, earlier first (default `/usr/local/share/jupyter/kernels`,
    /// `/usr/share/jupyter/kernels`). Read at each context creation, so kernels installed
    /// later are found.
    pub kernel_dirs: Vec<PathBuf>,
    /// Who kernels run as (default: the server's own user).
    pub kernel_user: Option<KernelUser>,
    /// The kernels' environment, besides `HOME`/`USER`/`LOGNAME` from [`Config::kernel_user`]
    /// and the kernelspec's own (default: a standard `PATH` and `LANG=C.UTF-8`).
    pub kernel_env: Vec<(String, String)>,
    /// The directory of contexts created without `cwd` (default `/home/user`).
    pub default_cwd: PathBuf,
    /// Where each kernel gets a directory for its connection file and sockets (default
    /// `/tmp/e2b-code-interpreter`; keep it short: Unix socket paths are limited to 108 bytes).
    pub runtime_dir: PathBuf,
    /// envd's URL, for the sandbox's global env vars (`GET /envs`); `None` sets none.
    pub envd_url: Option<String>,
    /// How long a kernel may take to answer after it is started (default 60 s).
    pub kernel_start_timeout: Duration,
    /// Quiet time after which an execution's stream gets a keepalive line (default 5 s, as
    /// E2B's server).
    pub keepalive_interval: Duration,
    /// The longest event line (default [`MAX_EVENT_BYTES`]); a longer one is replaced by an
    /// `OutputTooLarge` error event.
    pub max_event_bytes: usize,
}

/// The default limit of one event line: 32 MiB (a large PNG or DataFrame fits; a runaway
/// output does not take the server's memory).
pub const MAX_EVENT_BYTES: usize = 32 << 20;

impl Default for Config {
    fn default() -> Self {
        Self {
            kernel_dirs: vec![
                PathBuf::from("/usr/local/share/jupyter/kernels"),
                PathBuf::from("/usr/share/jupyter/kernels"),
            ],
            kernel_user: None,
            kernel_env: vec![
                (
                    "PATH".to_owned(),
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
                ),
                ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ],
            default_cwd: PathBuf::from("/home/user"),
            runtime_dir: PathBuf::from("/tmp/e2b-code-interpreter"),
            envd_url: None,
            kernel_start_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(5),
            max_event_bytes: MAX_EVENT_BYTES,
        }
    }
}

/// The server: its contexts and the router serving them.
#[derive(Clone)]
pub struct Server {
    state: Arc<api::State>,
}

impl Server {
    /// A server with no context yet.
    pub fn new(config: Config) -> Self {
        Self {
            state: Arc::new(api::State::new(config)),
        }
    }

    /// The HTTP API (`/execute`, `/contexts`, `/health`).
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// Starts the default Python context's kernel in the background, so the first
    /// `/execute` finds it running; a failure is logged and the first execution tries again.
    pub fn warm_default_context(&self) -> tokio::task::JoinHandle<()> {
        let state = self.state.clone();
        tokio::spawn(async move {
            if let Err(e) = state.default_context("python").await {
                tracing::warn!("starting the default python context: {}", e.1);
            }
        })
    }

    /// Stops every context's kernel.
    pub async fn shutdown(&self) {
        self.state.shutdown().await;
    }
}
