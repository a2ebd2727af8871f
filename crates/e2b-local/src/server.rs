//! The assembled server: runtime + state + control plane + envd routing on one listener.
//!
//! ```no_run
//! # async fn demo() -> Result<(), e2b_local::server::ServerError> {
//! let server = e2b_local::Server::builder()
//!     .data_dir("/tmp/e2b-local")
//!     .listen("127.0.0.1:0")
//!     .start()
//!     .await?;
//! println!("E2B_API_URL={}", server.api_url());
//! println!("E2B_SANDBOX_URL={}", server.sandbox_url());
//! println!("E2B_API_KEY={}", server.api_key());
//! println!("E2B_DOMAIN={}", server.domain());
//! println!("E2B_VOLUME_API_URL={}", server.volume_api_url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::isolation::{Limits, Runtime, RuntimeConfig};
use crate::lifecycle::{Manager, ManagerConfig};
use crate::state::Store;

mod conn;

pub use conn::{CLOSE_GRACE, HttpLimits};

/// Environment variable names the official SDKs read (see [`RunningServer::env_vars`]).
pub const ENV_API_URL: &str = "E2B_API_URL";
/// See [`ENV_API_URL`].
pub const ENV_SANDBOX_URL: &str = "E2B_SANDBOX_URL";
/// See [`ENV_API_URL`].
pub const ENV_API_KEY: &str = "E2B_API_KEY";
/// See [`ENV_API_URL`].
pub const ENV_DOMAIN: &str = "E2B_DOMAIN";
/// See [`ENV_API_URL`]: where the SDKs' `Volume` sends content requests.
pub const ENV_VOLUME_API_URL: &str = "E2B_VOLUME_API_URL";

/// Default listen address of `e2b-local serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";

/// Failures starting the server, one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address is not `host:port`.
    #[error("invalid listen address {0:?}: {1}")]
    Listen(String, String),
    /// Binding the listener failed.
    #[error("binding {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// The data directory could not be created or used.
    #[error("data directory {0}: {1}")]
    DataDir(PathBuf, #[source] crate::isolation::Error),
    /// The host cannot isolate sandboxes (names the kernel feature and how to get it).
    #[error("this host cannot run sandboxes: {0}")]
    Unsupported(#[source] crate::isolation::Error),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Sandbox networking could not be set up.
    #[error("sandbox networking: {0}")]
    Network(#[from] crate::network::NetworkError),
    /// The disk budget is too small to hold an ext4 filesystem.
    #[error(
        "a disk budget of {0} MiB is too small: give at least {MIN_DISK_MIB} MiB, or 0 for none"
    )]
    DiskBudget(u64),
    /// The volume size is too small to hold an ext4 filesystem with its journal.
    #[error(
        "a volume size of {0} MiB is too small: give at least {min} MiB",
        min = crate::volumes::MIN_VOLUME_MIB
    )]
    VolumeSize(u64),
}

/// Default disk budget of every sandbox: 10 GiB, E2B's default sandbox disk (Hobby tier).
/// The image is sparse: the host's disk holds only what a sandbox wrote.
pub const DEFAULT_DISK_MIB: u64 = 10 << 10;

/// The smallest disk budget (`--disk-mib`): ext4 with 4 KiB blocks and its metadata.
pub const MIN_DISK_MIB: u64 = 16;

/// The default data directory: `/var/lib/e2b-local` as root, else (also in rootless mode,
/// root of a user namespace) `$XDG_DATA_HOME/e2b-local` (or `~/.local/share/e2b-local`).
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() && !crate::isolation::rootless::in_user_namespace() {
        return PathBuf::from("/var/lib/e2b-local");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("e2b-local");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/e2b-local")
}

/// Default limits of every sandbox: 2 CPUs, 512 MiB memory, 1024 tasks, a disk of
/// [`DEFAULT_DISK_MIB`] (unbounded where the host cannot make loop devices; see
/// [`Runtime::can_limit_disk`]).
///
/// What protects neighbours beyond these: all sandboxes of a server together get every CPU
/// of the host but one ([`sandboxes_cpu_millis`](crate::isolation::cgroup::sandboxes_cpu_millis),
/// so 1 CPU on a 2-core host, where each sandbox's quota is clamped to it); a fork bomb stops at
/// the 1024 tasks, and a lower pids limit (256) did not help its neighbours in
/// `e2b-local-noisy-bench`; every sandbox has the same CPU weight (the kernel's default), so
/// two busy sandboxes split the CPU evenly.
pub fn default_limits() -> Limits {
    Limits {
        cpu_millis: Some(2000),
        memory_bytes: Some(512 << 20),
        pids: Some(1024),
        disk_bytes: Some(DEFAULT_DISK_MIB << 20),
    }
}

/// Raises this process's soft limit of open files to the hard limit: the server holds two
/// descriptors per sandbox, so the usual soft limit of 1024 stops it near 500 sandboxes
/// (`create` then fails with "Too many open files"). Sandbox programs start with the usual
/// soft limit again ([`isolation::exec::SANDBOX_NOFILE_SOFT`](crate::isolation::exec::SANDBOX_NOFILE_SOFT)).
/// Best effort: a failure only leaves the limit where it was.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let raised = getrlimit(Resource::RLIMIT_NOFILE).and_then(|(soft, hard)| {
        if soft < hard {
            setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
        } else {
            Ok(())
        }
    });
    if let Err(e) = raised {
        tracing::warn!("cannot raise the soft limit of open files: {e}");
    }
}

/// Entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with the defaults of `e2b-local serve`.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

/// Configures and starts a server.
#[derive(Debug, Clone)]
#[must_use]
pub struct ServerBuilder {
    data_dir: Option<PathBuf>,
    listen: String,
    domain: Option<String>,
    max_lifetime: Duration,
    limits: Limits,
    helper_exe: Option<PathBuf>,
    cgroup_parent: Option<String>,
    capacity: Option<crate::lifecycle::Capacity>,
    http_limits: HttpLimits,
    network: Option<crate::network::NetworkOptions>,
    debian_base: bool,
    trust_host_cas: bool,
    volume_mib: u64,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            data_dir: None,
            listen: DEFAULT_LISTEN.into(),
            domain: None,
            max_lifetime: Duration::from_secs(24 * 3600),
            limits: default_limits(),
            helper_exe: None,
            cgroup_parent: None,
            capacity: None,
            http_limits: HttpLimits::default(),
            network: None,
            debian_base: false,
            trust_host_cas: true,
            volume_mib: crate::volumes::DEFAULT_VOLUME_MIB,
        }
    }
}

impl ServerBuilder {
    /// Admission limits of creates (default [`Capacity::from_host`](crate::lifecycle::Capacity::from_host)).
    pub fn capacity(mut self, capacity: crate::lifecycle::Capacity) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Data directory (default [`default_data_dir`]).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Listen address `host:port` (default `127.0.0.1:3000`; port 0 picks a free one).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Domain reported to SDKs; `<port>-<sandboxID>.<domain>` then reaches any port of a
    /// sandbox through this listener, and a Host naming any other domain is not routed
    /// (default `localhost:<listen port>`).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Maximum sandbox lifetime (default 24 h).
    pub fn max_lifetime(mut self, d: Duration) -> Self {
        self.max_lifetime = d;
        self
    }

    /// Limits of every sandbox (default [`default_limits`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The disk budget of every sandbox in MiB (`e2b-local serve --disk-mib`; default
    /// [`DEFAULT_DISK_MIB`]): a sparse ext4 image of that size; `0` for none (upper
    /// directories on the data directory's filesystem, unbounded). Sets `disk_bytes` of
    /// [`limits`](Self::limits).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), e2b_local::ServerError> {
    /// let server = e2b_local::Server::builder().disk_mib(2048).start().await?;
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn disk_mib(mut self, mib: u64) -> Self {
        self.limits.disk_bytes = (mib > 0).then(|| mib.saturating_mul(1 << 20));
        self
    }

    /// Size of each new volume in MiB (`e2b-local serve --volume-mib`; default
    /// [`DEFAULT_VOLUME_MIB`](crate::volumes::DEFAULT_VOLUME_MIB), at least
    /// [`MIN_VOLUME_MIB`](crate::volumes::MIN_VOLUME_MIB)): a sparse ext4 image of that
    /// size, so a volume that fills up gives `ENOSPC`. Volumes made earlier keep their size.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), e2b_local::ServerError> {
    /// let server = e2b_local::Server::builder().volume_mib(1024).start().await?;
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn volume_mib(mut self, mib: u64) -> Self {
        self.volume_mib = mib;
        self
    }

    /// Executable re-run as the runtime's helper and as envd (default: the current one). Its
    /// `main` must call [`run_role_if_requested`](crate::envd_role::run_role_if_requested)
    /// first, or the crate's `embed` feature must be on.
    pub fn helper_exe(mut self, exe: impl Into<PathBuf>) -> Self {
        self.helper_exe = Some(exe.into());
        self
    }

    /// Cgroup parent of all sandboxes (default `e2b-local`).
    pub fn cgroup_parent(mut self, name: impl Into<String>) -> Self {
        self.cgroup_parent = Some(name.into());
        self
    }

    /// Timeouts and the per-peer connection cap of the listener (default
    /// [`HttpLimits::default`]).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), e2b_local::ServerError> {
    /// use e2b_local::server::HttpLimits;
    ///
    /// let server = e2b_local::Server::builder()
    ///     .http_limits(HttpLimits {
    ///         max_connections_per_peer: 2048,
    ///         ..HttpLimits::default()
    ///     })
    ///     .start()
    ///     .await?;
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn http_limits(mut self, limits: HttpLimits) -> Self {
        self.http_limits = limits;
        self
    }

    /// Gives every sandbox a network: an address from the pool, NAT out of the host, DNS
    /// through the server, and E2B's egress rules (default: loopback only; `e2b-local
    /// serve` turns it on). See `docs/network.md`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), e2b_local::ServerError> {
    /// use e2b_local::network::NetworkOptions;
    ///
    /// let server = e2b_local::Server::builder()
    ///     .network(NetworkOptions::from_host()?)
    ///     .start()
    ///     .await?;
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn network(mut self, options: crate::network::NetworkOptions) -> Self {
        self.network = Some(options);
        self
    }

    /// Makes `base` the `debian` template: Debian bookworm with what E2B's base image offers
    /// (`python`, `pip`, `node`, `npm`, `git`, `curl`, passwordless `sudo` for `user`), built
    /// with `mmdebstrap` from Debian's package archive when the server starts (a few minutes
    /// the first time; creates meanwhile get 503), instead of the host-derived `base`
    /// (default). The template is also available as `debian` either way.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = e2b_local::Server::builder().debian_base(true).start().await?;
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn debian_base(mut self, on: bool) -> Self {
        self.debian_base = on;
        self
    }

    /// Whether every sandbox and build step trusts the host's extra CAs (those of
    /// `/usr/local/share/ca-certificates/`, appended to the template's CA bundle, with pip
    /// and npm pointed at it): on by default, so that where the host reaches package
    /// registries through a TLS-intercepting proxy, `pip`, `npm` and `apt` work inside too.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = e2b_local::Server::builder().trust_host_cas(false).start().await?;
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn trust_host_cas(mut self, on: bool) -> Self {
        self.trust_host_cas = on;
        self
    }

    /// Checks the host, opens the state, reclaims sandboxes of an earlier run, binds the
    /// listener and serves in the background.
    ///
    /// # Errors
    ///
    /// [`ServerError`] naming the failed step; [`ServerError::Unsupported`] names the missing
    /// kernel feature.
    pub async fn start(self) -> Result<RunningServer, ServerError> {
        let addr: SocketAddr = tokio::net::lookup_host(&self.listen)
            .await
            .map_err(|e| ServerError::Listen(self.listen.clone(), e.to_string()))?
            .next()
            .ok_or_else(|| ServerError::Listen(self.listen.clone(), "no address".into()))?;
        raise_open_files_limit();
        let mut limits = self.limits;
        if let Some(mib) = limits.disk_bytes.map(|b| b >> 20)
            && mib < MIN_DISK_MIB
        {
            return Err(ServerError::DiskBudget(mib));
        }
        if self.volume_mib < crate::volumes::MIN_VOLUME_MIB {
            return Err(ServerError::VolumeSize(self.volume_mib));
        }
        let data_dir = self.data_dir.clone().unwrap_or_else(default_data_dir);
        let mut rc = RuntimeConfig::new(&data_dir);
        rc.pooled_disk_bytes = limits.disk_bytes;
        if let Some(exe) = &self.helper_exe {
            rc.helper_exe = exe.clone();
        }
        if let Some(p) = &self.cgroup_parent {
            rc.cgroup.parent = p.clone();
        }
        let runtime = Runtime::new(rc).map_err(|e| ServerError::DataDir(data_dir.clone(), e))?;
        runtime.check().map_err(ServerError::Unsupported)?;
        if !runtime.can_limit_disk() {
            // Listed by `unavailable`: sandboxes get no budget, and report none.
            limits.disk_bytes = None;
        }
        let store = Store::open(&data_dir)?;
        let networks = match &self.network {
            Some(options) => Some(Arc::new(
                crate::network::Networks::start(options, &data_dir).await?,
            )),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Bind(addr, e))?;
        let local = listener
            .local_addr()
            .map_err(|e| ServerError::Bind(addr, e))?;
        let domain = self
            .domain
            .clone()
            .unwrap_or_else(|| format!("localhost:{}", local.port()));
        let capacity = self
            .capacity
            .unwrap_or_else(crate::lifecycle::Capacity::from_host);
        if nix::unistd::geteuid().is_root()
            && !crate::isolation::rootless::in_user_namespace()
            && let Some((from, to)) = capacity.raise_inotify_limit()
        {
            tracing::info!(
                "raised fs.inotify.max_user_instances from {from} to {to}: each sandbox's \
                     envd holds one inotify instance of the server's uid"
            );
        }
        let mgr = Arc::new(Manager::new(
            runtime,
            store,
            ManagerConfig {
                max_lifetime: self.max_lifetime,
                limits,
                domain: domain.clone(),
                capacity,
                debian_base: self.debian_base,
                trust_host_cas: self.trust_host_cas,
                volume_bytes: self.volume_mib.saturating_mul(1 << 20),
            },
            networks.clone(),
        )?);
        // Listening does not wait for the earlier run's sandboxes to be reclaimed.
        tokio::spawn(mgr.recover());
        if self.debian_base {
            // Starts building it now; `base` creates get 503 until it is ready.
            let _ = mgr.debian_template();
        }
        let stop = CancellationToken::new();
        tokio::spawn(mgr.clone().run_evictor(stop.clone()));
        tokio::spawn(mgr.clone().run_reaper(stop.clone()));
        tokio::spawn(mgr.clone().run_sampler(stop.clone()));
        let rs = crate::router::RouterState {
            mgr: mgr.clone(),
            client: crate::router::client(&mgr),
        };
        let app = crate::api::router(mgr.clone()).layer(axum::middleware::from_fn_with_state(
            rs,
            crate::router::route,
        ));
        let task = tokio::spawn(conn::serve(listener, app, self.http_limits, stop.clone()));
        Ok(RunningServer {
            addr: local,
            api_key: mgr.api_key().to_owned(),
            domain,
            data_dir,
            mgr,
            networks,
            stop,
            task,
        })
    }
}

/// A server serving in the background of the current tokio runtime.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    api_key: String,
    domain: String,
    data_dir: PathBuf,
    mgr: Arc<Manager>,
    networks: Option<Arc<crate::network::Networks>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Control-plane base URL (`E2B_API_URL`), e.g. `http://127.0.0.1:3000`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// envd base URL for every sandbox (`E2B_SANDBOX_URL`): the same listener, routed by the
    /// `E2b-Sandbox-Id` header.
    pub fn sandbox_url(&self) -> String {
        self.api_url()
    }

    /// Base URL of the volume content API (`E2B_VOLUME_API_URL`): the same listener.
    pub fn volume_api_url(&self) -> String {
        self.api_url()
    }

    /// The API key (`E2B_API_KEY`).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The sandbox domain (`E2B_DOMAIN`): `<port>-<sandboxID>.<domain>` reaches a port.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Features the runtime cannot offer on this host, and why (rootless mode without
    /// cgroups: limits, pause); `e2b-local serve` prints them at start-up.
    pub fn unavailable(&self) -> Vec<crate::isolation::Unavailable> {
        self.mgr.runtime().unavailable()
    }

    /// The sandbox manager (for in-process inspection).
    pub fn manager(&self) -> &Arc<Manager> {
        &self.mgr
    }

    /// `(name, value)` of every variable the official SDKs need.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            (ENV_API_URL, self.api_url()),
            (ENV_SANDBOX_URL, self.sandbox_url()),
            (ENV_API_KEY, self.api_key.clone()),
            (ENV_DOMAIN, self.domain.clone()),
            (ENV_VOLUME_API_URL, self.volume_api_url()),
        ]
    }

    /// Stops serving and kills every sandbox (their records are marked killed).
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.mgr.kill_all().await;
        let mgr = self.mgr.clone();
        let _ = tokio::task::spawn_blocking(move || mgr.runtime().close_disks()).await;
        if let Some(networks) = &self.networks {
            networks.shutdown();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }

    /// Serves until ctrl-c or SIGTERM, then shuts down like [`shutdown`](Self::shutdown).
    pub async fn run_until_signal(self) {
        if let Ok(stop) = stop_signals() {
            stop.await;
        } else {
            std::future::pending::<()>().await;
        }
        self.shutdown().await;
    }
}

/// Registers for SIGINT and SIGTERM now (from then on neither kills the process) and
/// resolves at the first of them.
///
/// # Errors
///
/// Registering a signal handler failed.
pub(crate) fn stop_signals() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
