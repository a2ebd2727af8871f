//! Sandboxes: create, connect, list, inspect, time out, pause and kill; their network; signed
//! file URLs.

pub(crate) mod api;
mod builder;
mod info;
mod lifecycle;
mod list;
mod network;
mod snapshot;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use e2b_api::prelude::*;
use e2b_api::types;
use e2b_envd::signature::Operation;

use crate::commands::Commands;
use crate::config::{ConnectionConfig, DEBUG_ENVD_VERSION, DEBUG_SANDBOX_ID};
use crate::envd::{Envd, parse_version};
use crate::error::{self, Error, Result};
use crate::files::Filesystem;
use crate::percent;
use crate::pty::Pty;
use api::{api_error, check_id, send_with_retries, timeout_secs};

pub use builder::SandboxBuilder;
pub use info::{SandboxInfo, SandboxMetrics, SandboxState};
pub use lifecycle::{OnTimeout, PauseMode, SandboxLifecycle};
pub(crate) use list::Pages;
pub use list::{SandboxPaginator, SandboxQuery};
pub use network::{
    ALL_TRAFFIC, EgressProxy, EgressProxyInfo, EgressProxyTls, EgressProxyTlsInfo, NetworkConfig,
    NetworkInfo, NetworkRule, NetworkTransform, NetworkUpdate, TRAFFIC_ACCESS_TOKEN_HEADER,
};
pub use snapshot::{ForkOptions, MAX_FORK_COUNT, SnapshotInfo, SnapshotPaginator, SnapshotQuery};

/// A sandbox's lifetime unless set: 300 s.
pub const DEFAULT_SANDBOX_TIMEOUT: Duration = Duration::from_secs(300);
/// The template unless set.
pub const DEFAULT_TEMPLATE: &str = "base";

/// A running sandbox: run commands in it ([`commands`](Self::commands)), use its files
/// ([`files`](Self::files)) and terminals ([`pty`](Self::pty)).
///
/// Cheap to clone; clones share connections.
///
/// **Dropping a `Sandbox` does not kill it**: it keeps running until its timeout, so that it
/// can be connected to again by id. Call [`kill`](Self::kill), or hold a
/// [`kill_on_drop`](Self::kill_on_drop) guard for scoped use.
///
/// ```no_run
/// # async fn demo() -> e2b::Result<()> {
/// use std::time::Duration;
/// use e2b::{RunOptions, Sandbox};
///
/// let sandbox = Sandbox::builder()
///     .template("base")
///     .timeout(Duration::from_secs(600))
///     .metadata("purpose", "docs")
///     .create()
///     .await?;
/// let result = sandbox.commands().run("uname -a", RunOptions::new()).await?;
/// println!("{}", result.stdout);
/// sandbox.kill().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    sandbox_id: String,
    sandbox_domain: Option<String>,
    traffic_access_token: Option<String>,
    config: ConnectionConfig,
    envd: Arc<Envd>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("sandbox_id", &self.inner.sandbox_id)
            .field("sandbox_domain", &self.inner.sandbox_domain)
            .field("envd_url", &self.inner.envd.base_url)
            .field("envd_version", &self.inner.envd.version_text)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// A builder for creating or connecting to a sandbox.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// Creates a sandbox from the `base` template with the environment's configuration.
    ///
    /// # Errors
    ///
    /// As [`SandboxBuilder::create`].
    pub async fn create() -> Result<Sandbox> {
        Self::builder().create().await
    }

    /// Connects to a sandbox by id with the environment's configuration, resuming it if
    /// paused.
    ///
    /// # Errors
    ///
    /// As [`SandboxBuilder::connect`].
    pub async fn connect(sandbox_id: &str) -> Result<Sandbox> {
        Self::builder().connect(sandbox_id).await
    }

    fn debug(config: ConnectionConfig) -> Result<Sandbox> {
        Self::debug_with_id(config, DEBUG_SANDBOX_ID)
    }

    fn debug_with_id(config: ConnectionConfig, sandbox_id: &str) -> Result<Sandbox> {
        let url = config.envd_url(sandbox_id, None);
        let envd = Envd::new(
            &url,
            sandbox_id,
            DEBUG_ENVD_VERSION,
            None,
            config.request_timeout(),
        )?;
        Ok(Sandbox {
            inner: Arc::new(Inner {
                sandbox_id: sandbox_id.to_owned(),
                sandbox_domain: None,
                traffic_access_token: None,
                config,
                envd,
            }),
        })
    }

    fn from_api(config: ConnectionConfig, sandbox: types::Sandbox) -> Result<Sandbox> {
        let domain = sandbox.domain.filter(|d| !d.is_empty());
        let url = config.envd_url(&sandbox.sandbox_id, domain.as_deref());
        let envd = Envd::new(
            &url,
            &sandbox.sandbox_id,
            &sandbox.envd_version,
            sandbox.envd_access_token,
            config.request_timeout(),
        )?;
        Ok(Sandbox {
            inner: Arc::new(Inner {
                sandbox_id: sandbox.sandbox_id,
                sandbox_domain: domain,
                traffic_access_token: sandbox.traffic_access_token,
                config,
                envd,
            }),
        })
    }

    /// The sandbox's id.
    pub fn sandbox_id(&self) -> &str {
        &self.inner.sandbox_id
    }

    /// The domain of the sandbox's URLs (the configuration's unless the API named one).
    pub fn sandbox_domain(&self) -> &str {
        self.inner
            .sandbox_domain
            .as_deref()
            .unwrap_or(self.inner.config.domain())
    }

    /// The version of envd running in the sandbox.
    pub fn envd_version(&self) -> &str {
        &self.inner.envd.version_text
    }

    /// The URL envd is reached at.
    pub fn envd_api_url(&self) -> &str {
        &self.inner.envd.base_url
    }

    /// The token for the sandbox's port URLs, if the API gave one: a sandbox created with
    /// [`NetworkConfig::allow_public_traffic`]`(false)` answers requests to its
    /// [`get_host`](Self::get_host) URLs only when they carry it in the
    /// [`TRAFFIC_ACCESS_TOKEN_HEADER`] header (else 403). The SDK itself never calls those
    /// URLs; send the header from your own HTTP client.
    pub fn traffic_access_token(&self) -> Option<&str> {
        self.inner.traffic_access_token.as_deref()
    }

    /// The token envd and the sandbox's own servers (the code interpreter on port 49999)
    /// require in `X-Access-Token`, if the sandbox is secured. A secret: never log it.
    pub fn envd_access_token(&self) -> Option<&str> {
        self.inner.envd.access_token.as_deref()
    }

    /// The configuration the sandbox was reached with.
    pub fn connection_config(&self) -> &ConnectionConfig {
        &self.inner.config
    }

    /// The sandbox's filesystem.
    pub fn files(&self) -> Filesystem {
        Filesystem::new(self.inner.envd.clone())
    }

    /// Commands in the sandbox.
    pub fn commands(&self) -> Commands {
        Commands::new(self.inner.envd.clone())
    }

    /// Terminals in the sandbox.
    pub fn pty(&self) -> Pty {
        Pty::new(self.inner.envd.clone())
    }

    /// `host:port` to reach `port` of the sandbox from outside: `<port>-<id>.<domain>`
    /// (`localhost:<port>` in debug mode). A private sandbox
    /// ([`NetworkConfig::allow_public_traffic`]`(false)`) needs
    /// [`traffic_access_token`](Self::traffic_access_token) on every request to it.
    pub fn get_host(&self, port: u16) -> String {
        self.inner.config.get_host(
            &self.inner.sandbox_id,
            self.inner.sandbox_domain.as_deref(),
            port,
        )
    }

    /// Whether envd answers (`GET /health`): false when the proxy says the sandbox is gone
    /// (502).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when envd does not answer within the request timeout; other error
    /// statuses as mapped from envd.
    pub async fn is_running(&self) -> Result<bool> {
        let limit = self
            .inner
            .config
            .request_timeout()
            .unwrap_or(Duration::from_secs(3600 * 24));
        match self.inner.envd.health(limit).await? {
            Some(status) if (200..300).contains(&status) => Ok(true),
            Some(502) => Ok(false),
            Some(status) => Err(error::from_files_status(status, "GET /health failed")),
            None => Err(Error::timeout(format!(
                "GET /health did not answer within {limit:?}"
            ))),
        }
    }

    /// A URL that downloads `path` without any header (for browsers and plain HTTP
    /// clients). For a secure sandbox it carries a v1 signature, valid for
    /// `expires_in_secs` seconds when given (else forever).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when an expiry is asked of a sandbox without an access
    /// token (debug mode, or one created unsecured by an older SDK), or for an empty path.
    pub fn download_url(
        &self,
        path: &str,
        user: Option<&str>,
        expires_in_secs: Option<i64>,
    ) -> Result<String> {
        self.file_url(path, Operation::Read, user, expires_in_secs)
    }

    /// A URL that accepts a multipart upload (form field `file`) to `path` without any
    /// header; signed as [`download_url`](Self::download_url).
    ///
    /// # Errors
    ///
    /// As [`download_url`](Self::download_url).
    pub fn upload_url(
        &self,
        path: &str,
        user: Option<&str>,
        expires_in_secs: Option<i64>,
    ) -> Result<String> {
        self.file_url(path, Operation::Write, user, expires_in_secs)
    }

    fn file_url(
        &self,
        path: &str,
        operation: Operation,
        user: Option<&str>,
        expires_in_secs: Option<i64>,
    ) -> Result<String> {
        if path.is_empty() {
            return Err(Error::invalid_argument("the path must not be empty"));
        }
        let envd = &self.inner.envd;
        let user = envd.effective_user(user);
        let base = self
            .inner
            .config
            .envd_direct_url(&self.inner.sandbox_id, self.inner.sandbox_domain.as_deref());
        let mut url = format!("{base}/files?path={}", percent::quote(path));
        if let Some(user) = user {
            url.push_str(&format!("&username={}", percent::quote(user)));
        }
        match &envd.access_token {
            Some(token) => {
                let expiration = match expires_in_secs {
                    Some(secs) => {
                        Some(Utc::now().timestamp().checked_add(secs).ok_or_else(|| {
                            Error::invalid_argument(format!(
                                "a signature expiring in {secs} s does not fit a timestamp"
                            ))
                        })?)
                    }
                    None => None,
                };
                let sig = e2b_envd::signature::sign(
                    path,
                    operation,
                    user.unwrap_or(""),
                    token,
                    expiration,
                );
                url.push_str(&format!("&signature={}", percent::quote(&sig)));
                if let Some(expiration) = expiration {
                    url.push_str(&format!("&signature_expiration={expiration}"));
                }
            }
            None if expires_in_secs.is_some() => {
                return Err(Error::invalid_argument(
                    "Signature expiration can be used only when sandbox is created as secured.",
                ));
            }
            None => {}
        }
        Ok(url)
    }

    /// Kills the sandbox; `false` when it no longer existed. A no-op returning true in debug
    /// mode.
    ///
    /// # Errors
    ///
    /// As mapped from the API.
    pub async fn kill(&self) -> Result<bool> {
        if self.inner.config.debug() {
            return Ok(true);
        }
        Self::kill_by_id(&self.inner.config, &self.inner.sandbox_id).await
    }

    /// Kills a sandbox by id; `false` when it did not exist.
    ///
    /// # Errors
    ///
    /// As mapped from the API.
    pub async fn kill_by_id(config: &ConnectionConfig, sandbox_id: &str) -> Result<bool> {
        check_id(sandbox_id)?;
        let client = config.api_client()?;
        let send = || client.delete_sandbox().sandbox_id(sandbox_id).send();
        match send_with_retries(config.request_timeout(), send).await {
            Ok(_) => Ok(true),
            Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => Ok(false),
            Err(e) => Err(api_error(e, "killing a sandbox", None).await),
        }
    }

    /// Sets the sandbox to end `timeout` from now (shortening or extending it). A no-op in
    /// debug mode.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a timeout that does not fit; [`Error::NotFound`] when
    /// the sandbox is gone.
    pub async fn set_timeout(&self, timeout: Duration) -> Result<()> {
        if self.inner.config.debug() {
            return Ok(());
        }
        Self::set_timeout_by_id(&self.inner.config, &self.inner.sandbox_id, timeout).await
    }

    /// [`set_timeout`](Self::set_timeout) by id.
    ///
    /// # Errors
    ///
    /// As [`set_timeout`](Self::set_timeout).
    pub async fn set_timeout_by_id(
        config: &ConnectionConfig,
        sandbox_id: &str,
        timeout: Duration,
    ) -> Result<()> {
        check_id(sandbox_id)?;
        let timeout = timeout_secs(timeout, "the sandbox timeout")?;
        let client = config.api_client()?;
        let send = || {
            client
                .post_sandbox_timeout()
                .sandbox_id(sandbox_id)
                .body(types::SandboxTimeoutRequest { timeout })
                .send()
        };
        match send_with_retries(config.request_timeout(), send).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let not_found = format!("Sandbox {sandbox_id} not found");
                Err(api_error(e, "setting the sandbox timeout", Some(not_found)).await)
            }
        }
    }

    /// Replaces the sandbox's egress rules at once (`PUT /sandboxes/{id}/network`).
    ///
    /// The update replaces the whole egress configuration: whatever `update` leaves out is
    /// cleared, not kept (see [`NetworkUpdate`]). Connections to destinations that become
    /// denied are cut.
    ///
    /// ```no_run
    /// # async fn demo(sandbox: e2b::Sandbox) -> e2b::Result<()> {
    /// use e2b::{ALL_TRAFFIC, NetworkUpdate};
    ///
    /// sandbox
    ///     .update_network(NetworkUpdate::new().allow_out(["pypi.org"]).deny_out([ALL_TRAFFIC]))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an https port of 0 or a proxy credential longer than
    /// 255 characters; [`Error::NotFound`] (`Sandbox {id} not found`) when the sandbox is
    /// gone; a rule the server rejects is [`Error::Sandbox`] with `400: <its message>`, as in
    /// the Python SDK; others as mapped from the API.
    pub async fn update_network(&self, update: NetworkUpdate) -> Result<()> {
        Self::update_network_by_id(&self.inner.config, &self.inner.sandbox_id, update).await
    }

    /// [`update_network`](Self::update_network) by id.
    ///
    /// ```no_run
    /// # async fn demo() -> e2b::Result<()> {
    /// use e2b::{ConnectionConfig, NetworkUpdate, Sandbox};
    ///
    /// let config = ConnectionConfig::from_env()?;
    /// Sandbox::update_network_by_id(&config, "sandbox-id", NetworkUpdate::new().allow_internet_access(false))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`update_network`](Self::update_network).
    pub async fn update_network_by_id(
        config: &ConnectionConfig,
        sandbox_id: &str,
        update: NetworkUpdate,
    ) -> Result<()> {
        check_id(sandbox_id)?;
        let body = update.to_api()?;
        let client = config.api_client()?;
        let send = || {
            client
                .put_sandbox_network()
                .sandbox_id(sandbox_id)
                .body(body.clone())
                .send()
        };
        match send_with_retries(config.request_timeout(), send).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let not_found = format!("Sandbox {sandbox_id} not found");
                Err(api_error(e, "updating the sandbox network", Some(not_found)).await)
            }
        }
    }

    /// Information about the sandbox (`GET /sandboxes/{id}`).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it is gone.
    pub async fn get_info(&self) -> Result<SandboxInfo> {
        Self::get_info_by_id(&self.inner.config, &self.inner.sandbox_id).await
    }

    /// [`get_info`](Self::get_info) by id.
    ///
    /// # Errors
    ///
    /// As [`get_info`](Self::get_info).
    pub async fn get_info_by_id(
        config: &ConnectionConfig,
        sandbox_id: &str,
    ) -> Result<SandboxInfo> {
        check_id(sandbox_id)?;
        let client = config.api_client()?;
        let send = || client.get_sandbox().sandbox_id(sandbox_id).send();
        match send_with_retries(config.request_timeout(), send).await {
            Ok(response) => Ok(SandboxInfo::from_detail(response.into_inner(), config)),
            Err(e) => {
                let not_found = format!("Sandbox {sandbox_id} not found");
                Err(api_error(e, "getting sandbox info", Some(not_found)).await)
            }
        }
    }

    /// The sandbox's resource usage samples between `start` and `end` (all when `None`).
    /// Empty in debug mode.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it is gone.
    pub async fn get_metrics(
        &self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Vec<SandboxMetrics>> {
        if self.inner.config.debug() {
            return Ok(Vec::new());
        }
        if parse_version(&self.inner.envd.version_text) < (0, 1, 5) {
            return Err(Error::template(
                "You need to update the template to use metrics (envd 0.1.5 or newer).",
            ));
        }
        let sandbox_id = &self.inner.sandbox_id;
        let client = self.inner.config.api_client()?;
        let send = || {
            let mut call = client.get_sandbox_metrics().sandbox_id(sandbox_id.as_str());
            if let Some(start) = start {
                call = call.start(start.timestamp());
            }
            if let Some(end) = end {
                call = call.end(end.timestamp());
            }
            call.send()
        };
        match send_with_retries(self.inner.config.request_timeout(), send).await {
            Ok(response) => Ok(response
                .into_inner()
                .into_iter()
                .map(SandboxMetrics::from_api)
                .collect()),
            Err(e) => {
                let not_found = format!("Sandbox {sandbox_id} not found");
                Err(api_error(e, "getting sandbox metrics", Some(not_found)).await)
            }
        }
    }

    /// Pauses the sandbox (keeping memory); `false` when it was already paused. Resume it
    /// with [`Sandbox::connect`].
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it is gone.
    pub async fn pause(&self) -> Result<bool> {
        self.pause_with(PauseMode::Full).await
    }

    /// Pauses the sandbox keeping what `mode` says: with [`PauseMode::Filesystem`] the
    /// resume boots it again on its files. `false` when it was already paused.
    ///
    /// # Errors
    ///
    /// As [`pause`](Self::pause).
    ///
    /// ```no_run
    /// # async fn demo(sandbox: e2b::Sandbox) -> e2b::Result<()> {
    /// sandbox.pause_with(e2b::PauseMode::Filesystem).await?;
    /// # Ok(()) }
    /// ```
    pub async fn pause_with(&self, mode: PauseMode) -> Result<bool> {
        Self::pause_by_id_with(&self.inner.config, &self.inner.sandbox_id, mode).await
    }

    /// [`pause`](Self::pause) by id.
    ///
    /// # Errors
    ///
    /// As [`pause`](Self::pause).
    pub async fn pause_by_id(config: &ConnectionConfig, sandbox_id: &str) -> Result<bool> {
        Self::pause_by_id_with(config, sandbox_id, PauseMode::Full).await
    }

    /// [`pause_with`](Self::pause_with) by id.
    ///
    /// # Errors
    ///
    /// As [`pause`](Self::pause).
    pub async fn pause_by_id_with(
        config: &ConnectionConfig,
        sandbox_id: &str,
        mode: PauseMode,
    ) -> Result<bool> {
        check_id(sandbox_id)?;
        let client = config.api_client()?;
        let send = || {
            client
                .post_sandbox_pause()
                .sandbox_id(sandbox_id)
                .body(types::SandboxPauseRequest {
                    memory: mode.keeps_memory(),
                })
                .send()
        };
        match send_with_retries(config.request_timeout(), send).await {
            Ok(_) => Ok(true),
            Err(e) if e.status().map(|s| s.as_u16()) == Some(409) => Ok(false),
            Err(e) => {
                let not_found = format!("Sandbox {sandbox_id} not found");
                Err(api_error(e, "pausing a sandbox", Some(not_found)).await)
            }
        }
    }

    /// Lists sandboxes (`GET /v2/sandboxes`), page by page.
    ///
    /// # Errors
    ///
    /// The paginator's calls fail as mapped from the API; creating it fails only without an
    /// API key.
    ///
    /// ```no_run
    /// # async fn demo() -> e2b::Result<()> {
    /// use futures_util::TryStreamExt as _;
    /// use e2b::{ConnectionConfig, Sandbox, SandboxQuery, SandboxState};
    ///
    /// let config = ConnectionConfig::from_env()?;
    /// let query = SandboxQuery::new().metadata("purpose", "docs").state(SandboxState::Running);
    /// let all: Vec<_> = Sandbox::list(&config, query)?.into_stream().try_collect().await?;
    /// # Ok(()) }
    /// ```
    pub fn list(config: &ConnectionConfig, query: SandboxQuery) -> Result<SandboxPaginator> {
        SandboxPaginator::new(config, query)
    }

    /// A guard that kills the sandbox when dropped (best effort: the kill is spawned on the
    /// current tokio runtime). Prefer [`SandboxGuard::kill`] where an `.await` is possible.
    pub fn kill_on_drop(self) -> SandboxGuard {
        SandboxGuard {
            sandbox: Some(self),
        }
    }
}

/// Kills its sandbox when dropped: [`Sandbox::kill_on_drop`]. Derefs to the [`Sandbox`].
#[derive(Debug)]
pub struct SandboxGuard {
    sandbox: Option<Sandbox>,
}

impl SandboxGuard {
    /// Kills the sandbox now and disarms the guard.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::kill`].
    pub async fn kill(mut self) -> Result<bool> {
        match self.sandbox.take() {
            Some(sandbox) => sandbox.kill().await,
            None => Ok(false),
        }
    }

    /// Disarms the guard, returning the sandbox (which then lives on).
    pub fn into_inner(mut self) -> Sandbox {
        self.sandbox
            .take()
            .unwrap_or_else(|| unreachable!("the sandbox is only taken by consuming methods"))
    }
}

impl std::ops::Deref for SandboxGuard {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        self.sandbox
            .as_ref()
            .unwrap_or_else(|| unreachable!("the sandbox is only taken by consuming methods"))
    }
}

impl Drop for SandboxGuard {
    fn drop(&mut self) {
        let Some(sandbox) = self.sandbox.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = sandbox.kill().await {
                        tracing::warn!(sandbox_id = sandbox.sandbox_id(), error = %e, "killing the sandbox on drop failed");
                    }
                });
            }
            Err(_) => tracing::warn!(
                sandbox_id = sandbox.sandbox_id(),
                "SandboxGuard dropped outside a tokio runtime; the sandbox was not killed"
            ),
        }
    }
}

/// The environment's configuration; with the `local` feature, the embedded host's when the
/// environment names neither an API key nor an API URL.
pub(crate) fn default_config() -> Result<ConnectionConfig> {
    #[cfg(feature = "local")]
    {
        crate::local::default_config()
    }
    #[cfg(not(feature = "local"))]
    {
        ConnectionConfig::from_env()
    }
}
