//! An embedded local E2B host: e2b-local's server started inside this process, on a free
//! port of 127.0.0.1, and the [`ConnectionConfig`] that reaches it.
//!
//! With the `local` feature, [`Sandbox::create`](crate::Sandbox::create) (and the builder)
//! use [`LocalServer::shared`] when neither `E2B_API_KEY` nor `E2B_API_URL` is set and no
//! configuration was given, printing one line to stderr saying so. Sandboxes then run on this
//! machine (Linux, as root): no account, no network, no separate install — the program itself
//! is re-executed as the sandbox runtime's helper and as envd inside each sandbox.
//!
//! ```no_run
//! # async fn demo() -> e2b::Result<()> {
//! let local = e2b::local::LocalServer::start()?;
//! let sandbox = e2b::Sandbox::builder().config(local.config()).create().await?;
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::OnceLock;
use std::thread::JoinHandle;

use crate::config::ConnectionConfig;
use crate::error::{Error, Result};

/// A running embedded server. Dropping it stops the server and kills its sandboxes.
#[derive(Debug)]
pub struct LocalServer {
    config: ConnectionConfig,
    data_dir: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl LocalServer {
    /// Starts a server on its own thread (`e2b-local-server`, with its own tokio runtime, so
    /// it serves whatever the caller's runtime does), with state in a fresh directory under
    /// the system's temporary directory.
    ///
    /// # Errors
    ///
    /// [`Error::Sandbox`] naming the step that failed, e.g. when the host cannot isolate
    /// sandboxes (not root, or a missing kernel feature).
    pub fn start() -> Result<Self> {
        remove_stale_data_dirs();
        let data_dir = std::env::temp_dir().join(format!(
            "{DATA_DIR_PREFIX}{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let dir = data_dir.clone();
        let thread = std::thread::Builder::new()
            .name("e2b-local-server".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("building its runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let started = e2b_local::Server::builder()
                        .data_dir(&dir)
                        .listen("127.0.0.1:0")
                        .start()
                        .await;
                    let server = match started {
                        Ok(server) => server,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok((
                        server.api_url(),
                        server.sandbox_url(),
                        server.volume_api_url(),
                        server.api_key().to_owned(),
                        server.domain().to_owned(),
                    )));
                    let _ = shutdown_rx.await;
                    server.shutdown().await;
                });
            })
            .map_err(|e| Error::sandbox(format!("starting the local E2B server thread: {e}")))?;
        let (api_url, sandbox_url, volume_api_url, api_key, domain) = match ready_rx.recv() {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(Error::sandbox(format!(
                    "starting the local E2B server failed: {e}"
                )));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::sandbox(
                    "the local E2B server thread exited while starting",
                ));
            }
        };
        let config = ConnectionConfig::new()
            .with_api_url(api_url)
            .with_sandbox_url(sandbox_url)
            .with_volume_api_url(volume_api_url)
            .with_api_key(api_key)
            .with_domain(domain);
        Ok(Self {
            config,
            data_dir,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// The process-wide server, started on first use and kept for the life of the process.
    /// It is never stopped: its sandboxes outlive the process until the next embedded server
    /// on this machine starts, which kills them and removes what they left.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start); a failure is remembered and returned again.
    pub fn shared() -> Result<&'static LocalServer> {
        static SHARED: OnceLock<std::result::Result<LocalServer, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| LocalServer::start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::sandbox(e.clone()))
    }

    /// The configuration reaching this server: its API URL, sandbox URL, API key and domain.
    /// Each call's configuration has its own API client, since the server outlives the
    /// runtimes of its callers (see [`ConnectionConfig`]).
    pub fn config(&self) -> ConnectionConfig {
        self.config.clone().with_own_api_client()
    }

    /// Where the server keeps its state.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Data directories are `<tmp>/e2b-local-embedded-<pid>-<random>`.
const DATA_DIR_PREFIX: &str = "e2b-local-embedded-";

/// Removes the data directories of processes that no longer run: the process-wide server
/// is never dropped, so its directory outlives the process, with its sandboxes still
/// running (nothing enforces their timeouts any more) and their disks and the ready ones
/// (loop-mounted images) still mounted. Each sandbox of the dead server is killed first
/// (every process of its cgroup; the server's sandboxes are in `e2b-local/<id>`), then
/// the mounts are detached (deepest first; a loop device goes with its last mount). A
/// directory that still has something mounted after that is left alone, so that removal
/// never reaches into a mounted filesystem.
fn remove_stale_data_dirs() {
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return;
    };
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DATA_DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        kill_sandboxes_of(&path);
        let prefix = format!("{}/", path.to_string_lossy());
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|target| target.starts_with(prefix.as_str()))
            .collect();
        under.sort_by_key(|t| std::cmp::Reverse(t.len()));
        let detached = under
            .iter()
            .all(|t| e2b_local::isolation::mounts::unmount_disk(std::path::Path::new(t)).is_ok());
        if detached {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Kills the sandboxes of the dead server whose data directory is `data_dir`: every process
/// in each one's cgroup, then the cgroup.
fn kill_sandboxes_of(data_dir: &std::path::Path) {
    use e2b_local::isolation::{CgroupConfig, SandboxCgroup as _, SandboxCgroupImpl};
    let cgroups = CgroupConfig::detect(EMBEDDED_CGROUP_PARENT);
    let sandboxes = std::fs::read_dir(data_dir.join("sandboxes"));
    for entry in sandboxes.into_iter().flatten().flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        if e2b_local::isolation::validate_id(&id).is_err() {
            continue;
        }
        if let Ok(cgroup) = SandboxCgroupImpl::load(&cgroups, &id) {
            let _ = cgroup.kill_all(std::time::Duration::from_secs(5));
            let _ = cgroup.remove();
        }
    }
}

/// The cgroup parent of the embedded server's sandboxes (the server's default).
const EMBEDDED_CGROUP_PARENT: &str = "e2b-local";

/// The configuration `Sandbox` uses when none was given: the environment's, or — when it
/// names neither an API key nor an API URL and debug mode is off — the embedded server's,
/// announced once on stderr.
pub(crate) fn default_config() -> Result<ConnectionConfig> {
    let config = ConnectionConfig::from_env()?;
    if config.has_api_key_or_url() || config.debug() {
        return Ok(config);
    }
    let server = LocalServer::shared()?;
    static ANNOUNCED: std::sync::Once = std::sync::Once::new();
    ANNOUNCED.call_once(|| {
        eprintln!(
            "e2b: neither E2B_API_KEY nor E2B_API_URL is set; using the embedded local E2B host at {}",
            server.config.api_url()
        );
    });
    let mut local = server.config();
    if let Some(timeout) = config.request_timeout() {
        local = local.with_request_timeout(Some(timeout));
    }
    Ok(local)
}
