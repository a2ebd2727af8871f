#![doc = include_str!("../README.md")]
#![cfg(target_os = "linux")]

pub mod auth;
pub mod fs;
pub mod http;
pub mod os_error;
pub mod paths;
pub mod process;
pub mod rpc;
pub mod state;
pub mod users;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

pub use state::State;
pub use users::AccountFiles;

/// The envd version this daemon reports (the SDKs gate features on it).
pub const ENVD_VERSION: &str = "0.6.13";

/// The port envd listens on by default.
pub const DEFAULT_PORT: u16 = e2b_envd::ENVD_PORT;

/// Daemon configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (default `0.0.0.0`).
    pub listen: IpAddr,
    /// Port (default [`DEFAULT_PORT`]; 0 picks a free one).
    pub port: u16,
    /// Default user until `/init` sets one (default `root`, or envd's own user when not
    /// running as root).
    pub default_user: Option<String>,
    /// Default working directory until `/init` sets one (default: the user's home).
    pub workdir: Option<PathBuf>,
    /// Value of `E2B_SANDBOX_ID` for processes.
    pub sandbox_id: Option<String>,
    /// Value of `E2B_TEMPLATE_ID` for processes.
    pub template_id: Option<String>,
    /// Account database location.
    pub accounts: AccountFiles,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: DEFAULT_PORT,
            default_user: None,
            workdir: None,
            sandbox_id: None,
            template_id: None,
            accounts: AccountFiles::default(),
        }
    }
}

/// A configured daemon: its state and its router.
#[derive(Debug, Clone)]
pub struct Envd {
    state: Arc<State>,
}

impl Envd {
    /// Creates the daemon state.
    pub fn new(config: &Config) -> Self {
        Self {
            state: Arc::new(State::new(config)),
        }
    }

    /// The shared state (e.g. for applying `/init` values in-process).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Every envd route, with access control and CORS, ready to serve.
    pub fn router(&self) -> Router {
        let routes = http::router(self.state.clone()).merge(rpc::router(self.state.clone()));
        routes
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                auth::gate,
            ))
            .layer(cors())
    }
}

/// CORS as upstream: any origin and header; HEAD/GET/POST/PUT/PATCH/DELETE; Connect and a few
/// standard headers exposed; preflights cached for 2 h.
fn cors() -> CorsLayer {
    use ::http::{HeaderName, Method, header};
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .allow_methods([
            Method::HEAD,
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
            header::LOCATION,
            header::CACHE_CONTROL,
            header::X_CONTENT_TYPE_OPTIONS,
        ])
        .max_age(std::time::Duration::from_secs(7200))
}

/// Serves envd on `listener` until the process ends.
///
/// # Errors
/// When accepting connections fails fatally.
pub async fn serve(listener: tokio::net::TcpListener, config: Config) -> anyhow::Result<()> {
    use axum::serve::ListenerExt as _;
    let envd = Envd::new(&config);
    // Streams end with small frames written back to back; without TCP_NODELAY, Nagle and the
    // peer's delayed ACK hold the last one back ~40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("setting TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, envd.router())
        .await
        .map_err(|e| anyhow::anyhow!("serving: {e}"))
}

/// Binds `config.listen:config.port` and serves.
///
/// # Errors
/// When binding or serving fails.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let addr = SocketAddr::new(config.listen, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    serve(listener, config).await
}
