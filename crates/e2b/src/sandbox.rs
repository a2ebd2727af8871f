//! Sandboxes: create, connect, list, inspect, time out, pause and kill; signed file URLs.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use e2b_api::prelude::*;
use e2b_api::types;
use futures_core::Stream;

use crate::commands::Commands;
use crate::config::{ConnectionConfig, DEBUG_ENVD_VERSION, DEBUG_SANDBOX_ID};
use crate::envd::{Envd, parse_version};
use crate::error::{self, Context, Error, Result};
use crate::files::Filesystem;
use crate::pty::Pty;
use crate::signature;
use e2b_envd::signature::Operation;

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

/// Builds and creates (or connects to) a sandbox: [`Sandbox::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SandboxBuilder {
    template: String,
    timeout: Duration,
    metadata: BTreeMap<String, String>,
    envs: BTreeMap<String, String>,
    secure: bool,
    allow_internet_access: bool,
    auto_pause: bool,
    config: Option<ConnectionConfig>,
    overrides: Vec<Override>,
}

#[derive(Debug, Clone)]
enum Override {
    ApiKey(String),
    Domain(String),
    ApiUrl(String),
    SandboxUrl(String),
    Debug(bool),
    RequestTimeout(Option<Duration>),
}

impl Default for SandboxBuilder {
    fn default() -> Self {
        Self {
            template: DEFAULT_TEMPLATE.to_owned(),
            timeout: DEFAULT_SANDBOX_TIMEOUT,
            metadata: BTreeMap::new(),
            envs: BTreeMap::new(),
            secure: true,
            allow_internet_access: true,
            auto_pause: false,
            config: None,
            overrides: Vec::new(),
        }
    }
}

impl SandboxBuilder {
    /// The template to start from (default `base`).
    pub fn template(mut self, template: impl Into<String>) -> Self {
        self.template = template.into();
        self
    }

    /// How long the sandbox lives before it is killed (or paused, with
    /// [`auto_pause`](Self::auto_pause)); default 300 s, whole seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a metadata entry, for finding the sandbox in [`Sandbox::list`].
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Adds an environment variable every command in the sandbox sees.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.insert(key.into(), value.into());
        self
    }

    /// Whether envd requires the access token (default true).
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Whether the sandbox may reach the internet (default true).
    pub fn allow_internet_access(mut self, allow: bool) -> Self {
        self.allow_internet_access = allow;
        self
    }

    /// Pause instead of kill when the timeout passes (default false).
    pub fn auto_pause(mut self, auto_pause: bool) -> Self {
        self.auto_pause = auto_pause;
        self
    }

    /// Uses `config` instead of [`ConnectionConfig::from_env`] (or, with the `local` feature
    /// and no key or URL in the environment, the embedded local host).
    pub fn config(mut self, config: ConnectionConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Overrides the API key.
    pub fn api_key(mut self, api_key: impl Into<String>) -> Self {
        self.overrides.push(Override::ApiKey(api_key.into()));
        self
    }

    /// Overrides the domain.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.overrides.push(Override::Domain(domain.into()));
        self
    }

    /// Overrides the control-plane URL.
    pub fn api_url(mut self, api_url: impl Into<String>) -> Self {
        self.overrides.push(Override::ApiUrl(api_url.into()));
        self
    }

    /// Overrides the envd URL.
    pub fn sandbox_url(mut self, sandbox_url: impl Into<String>) -> Self {
        self.overrides
            .push(Override::SandboxUrl(sandbox_url.into()));
        self
    }

    /// Overrides debug mode.
    pub fn debug(mut self, debug: bool) -> Self {
        self.overrides.push(Override::Debug(debug));
        self
    }

    /// Overrides the request timeout (`None`: no limit).
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.overrides.push(Override::RequestTimeout(timeout));
        self
    }

    /// The connection configuration this builder uses: the given one (or the environment's)
    /// with the builder's overrides applied.
    ///
    /// # Errors
    ///
    /// As [`ConnectionConfig::from_env`].
    pub fn connection_config(&self) -> Result<ConnectionConfig> {
        let mut config = match &self.config {
            Some(config) => config.clone(),
            None => default_config()?,
        };
        for o in &self.overrides {
            config = match o.clone() {
                Override::ApiKey(v) => config.with_api_key(v),
                Override::Domain(v) => config.with_domain(v),
                Override::ApiUrl(v) => config.with_api_url(v),
                Override::SandboxUrl(v) => config.with_sandbox_url(v),
                Override::Debug(v) => config.with_debug(v),
                Override::RequestTimeout(v) => config.with_request_timeout(v),
            };
        }
        Ok(config)
    }

    /// Creates the sandbox (`POST /sandboxes`) and returns once it is running. In debug mode
    /// nothing is created: the sandbox is envd at the configured URL.
    ///
    /// # Errors
    ///
    /// [`Error::Authentication`] without an API key or with a rejected one;
    /// [`Error::InvalidArgument`] for a timeout below 1 s or above `i32::MAX` seconds, or a
    /// bad configuration value; [`Error::Template`] when the template's envd is too old;
    /// others as mapped from the API.
    pub async fn create(self) -> Result<Sandbox> {
        let config = self.connection_config()?;
        let timeout = timeout_secs(self.timeout, "the sandbox timeout")?;
        if self.template.trim().is_empty() {
            return Err(Error::invalid_argument("the template must not be empty"));
        }
        if config.debug() {
            return Sandbox::debug(config);
        }
        let client = config.api_client()?;
        let body = types::NewSandbox {
            allow_internet_access: Some(self.allow_internet_access),
            auto_pause: self.auto_pause,
            auto_pause_memory: true,
            auto_resume: None,
            env_vars: Some(types::EnvVars(self.envs)),
            iam: None,
            mcp: None,
            metadata: Some(types::SandboxMetadata(self.metadata)),
            network: None,
            secure: Some(self.secure),
            template_id: self.template,
            timeout,
            volume_mounts: Vec::new(),
        };
        let created = match client.post_sandboxes().body(body).send().await {
            Ok(response) => response.into_inner(),
            Err(e) => return Err(api_error(e, "creating a sandbox", None).await),
        };
        let sandbox = Sandbox::from_api(config, created)?;
        if parse_version(&sandbox.inner.envd.version_text) < (0, 1, 0) {
            let _ = sandbox.kill().await;
            return Err(Error::template(
                "You need to update the template to use the new SDK.",
            ));
        }
        Ok(sandbox)
    }

    /// Connects to an existing sandbox, resuming it if it is paused
    /// (`POST /sandboxes/{id}/connect`). The builder's timeout extends (never shortens) the
    /// sandbox's lifetime.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no such sandbox; others as
    /// [`create`](Self::create).
    pub async fn connect(self, sandbox_id: &str) -> Result<Sandbox> {
        let config = self.connection_config()?;
        let timeout = timeout_secs(self.timeout, "the sandbox timeout")?;
        check_id(sandbox_id)?;
        if config.debug() {
            return Sandbox::debug_with_id(config, sandbox_id);
        }
        let client = config.api_client()?;
        let body = types::ConnectSandbox {
            memory: None,
            timeout,
        };
        match client
            .post_sandbox_connect()
            .sandbox_id(sandbox_id)
            .body(body)
            .send()
            .await
        {
            Ok(response) => Sandbox::from_api(config, response.into_inner()),
            Err(e) => {
                let not_found = format!("Paused sandbox {sandbox_id} not found");
                Err(api_error(e, "connecting to a sandbox", Some(not_found)).await)
            }
        }
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

    /// The token for the sandbox's ports through E2B's proxy, if the API gave one
    /// (`e2b-traffic-access-token` header).
    pub fn traffic_access_token(&self) -> Option<&str> {
        self.inner.traffic_access_token.as_deref()
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
    /// (`localhost:<port>` in debug mode).
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
    /// [`Error::InvalidArgument`] when an expiry is asked of a sandbox created with
    /// `secure(false)`, or for an empty path.
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
        let mut url = format!("{base}/files?path={}", signature::quote(path));
        if let Some(user) = user {
            url.push_str(&format!("&username={}", signature::quote(user)));
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
                url.push_str(&format!("&signature={}", signature::quote(&sig)));
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
        match client.delete_sandbox().sandbox_id(sandbox_id).send().await {
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
        match client
            .post_sandbox_timeout()
            .sandbox_id(sandbox_id)
            .body(types::SandboxTimeoutRequest { timeout })
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let not_found = format!("Sandbox {sandbox_id} not found");
                Err(api_error(e, "setting the sandbox timeout", Some(not_found)).await)
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
        match client.get_sandbox().sandbox_id(sandbox_id).send().await {
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
        let mut call = client.get_sandbox_metrics().sandbox_id(sandbox_id.as_str());
        if let Some(start) = start {
            call = call.start(start.timestamp());
        }
        if let Some(end) = end {
            call = call.end(end.timestamp());
        }
        match call.send().await {
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
        Self::pause_by_id(&self.inner.config, &self.inner.sandbox_id).await
    }

    /// [`pause`](Self::pause) by id.
    ///
    /// # Errors
    ///
    /// As [`pause`](Self::pause).
    pub async fn pause_by_id(config: &ConnectionConfig, sandbox_id: &str) -> Result<bool> {
        check_id(sandbox_id)?;
        let client = config.api_client()?;
        match client
            .post_sandbox_pause()
            .sandbox_id(sandbox_id)
            .body(types::SandboxPauseRequest { memory: true })
            .send()
            .await
        {
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
        Ok(SandboxPaginator {
            client: config.api_client()?,
            config: config.clone(),
            next_token: query.next_token.clone(),
            query,
            has_next: true,
        })
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

/// Whether a sandbox runs or is paused.
pub use e2b_api::types::SandboxState;

/// Information about a sandbox.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SandboxInfo {
    /// Its id.
    pub sandbox_id: String,
    /// The template it was created from.
    pub template_id: String,
    /// The template's alias, if any.
    pub name: Option<String>,
    /// Its metadata.
    pub metadata: BTreeMap<String, String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it will end.
    pub end_at: DateTime<Utc>,
    /// Running or paused.
    pub state: SandboxState,
    /// CPU cores.
    pub cpu_count: u32,
    /// Memory in MiB.
    pub memory_mb: i32,
    /// Disk in MiB.
    pub disk_size_mb: i32,
    /// envd's version.
    pub envd_version: String,
    /// The domain of its URLs.
    pub sandbox_domain: String,
    /// Whether internet access was set (None: never set).
    pub allow_internet_access: Option<bool>,
}

impl SandboxInfo {
    fn from_detail(d: types::SandboxDetail, config: &ConnectionConfig) -> Self {
        Self {
            sandbox_id: d.sandbox_id,
            template_id: d.template_id,
            name: d.alias,
            metadata: d.metadata.map(|m| m.0).unwrap_or_default(),
            started_at: d.started_at,
            end_at: d.end_at,
            state: d.state,
            cpu_count: d.cpu_count.0.get(),
            memory_mb: *d.memory_mb,
            disk_size_mb: *d.disk_size_mb,
            envd_version: d.envd_version.0,
            sandbox_domain: d
                .domain
                .filter(|x| !x.is_empty())
                .unwrap_or_else(|| config.domain().to_owned()),
            allow_internet_access: d.allow_internet_access,
        }
    }

    fn from_listed(d: types::ListedSandbox, config: &ConnectionConfig) -> Self {
        Self {
            sandbox_id: d.sandbox_id,
            template_id: d.template_id,
            name: d.alias,
            metadata: d.metadata.map(|m| m.0).unwrap_or_default(),
            started_at: d.started_at,
            end_at: d.end_at,
            state: d.state,
            cpu_count: d.cpu_count.0.get(),
            memory_mb: *d.memory_mb,
            disk_size_mb: *d.disk_size_mb,
            envd_version: d.envd_version.0,
            sandbox_domain: config.domain().to_owned(),
            allow_internet_access: None,
        }
    }
}

/// One resource usage sample of a sandbox.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SandboxMetrics {
    /// When it was taken.
    pub timestamp: DateTime<Utc>,
    /// CPU cores.
    pub cpu_count: i32,
    /// CPU usage in percent.
    pub cpu_used_pct: f32,
    /// Memory used, bytes.
    pub mem_used: i64,
    /// Memory total, bytes.
    pub mem_total: i64,
    /// Page cache, bytes.
    pub mem_cache: i64,
    /// Disk used, bytes.
    pub disk_used: i64,
    /// Disk total, bytes.
    pub disk_total: i64,
}

impl SandboxMetrics {
    fn from_api(m: types::SandboxMetric) -> Self {
        Self {
            timestamp: m.timestamp,
            cpu_count: m.cpu_count,
            cpu_used_pct: m.cpu_used_pct,
            mem_used: m.mem_used,
            mem_total: m.mem_total,
            mem_cache: m.mem_cache,
            disk_used: m.disk_used,
            disk_total: m.disk_total,
        }
    }
}

/// Filters and page size for [`Sandbox::list`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SandboxQuery {
    metadata: BTreeMap<String, String>,
    states: Vec<SandboxState>,
    template: Option<String>,
    started_after: Option<DateTime<Utc>>,
    limit: Option<u32>,
    next_token: Option<String>,
}

impl SandboxQuery {
    /// All sandboxes, running and paused, in pages of the server's default size.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only sandboxes with this metadata entry (entries are ANDed).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Only sandboxes in `state` (several calls allow several states).
    pub fn state(mut self, state: SandboxState) -> Self {
        if !self.states.contains(&state) {
            self.states.push(state);
        }
        self
    }

    /// Only sandboxes of this template.
    pub fn template(mut self, template: impl Into<String>) -> Self {
        self.template = Some(template.into());
        self
    }

    /// Only sandboxes started after `time`.
    pub fn started_after(mut self, time: DateTime<Utc>) -> Self {
        self.started_after = Some(time);
        self
    }

    /// Page size (1 to 100).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Starts from this page token (from [`SandboxPaginator::next_token`]).
    pub fn next_token(mut self, token: impl Into<String>) -> Self {
        self.next_token = Some(token.into());
        self
    }

    /// `k=v&k2=v2`, each part quoted twice, as the Python SDK sends it (sdk-behavior §2.3).
    fn metadata_param(&self) -> Option<String> {
        if self.metadata.is_empty() {
            return None;
        }
        let twice = |s: &str| {
            let once = quote_keep_slash(s);
            once.replace('%', "%25").replace('/', "%2F")
        };
        Some(
            self.metadata
                .iter()
                .map(|(k, v)| format!("{}={}", twice(k), twice(v)))
                .collect::<Vec<_>>()
                .join("&"),
        )
    }
}

fn quote_keep_slash(value: &str) -> String {
    signature::quote(value).replace("%2F", "/")
}

/// Pages of sandboxes: [`Sandbox::list`].
#[derive(Debug)]
pub struct SandboxPaginator {
    client: e2b_api::Client,
    config: ConnectionConfig,
    query: SandboxQuery,
    next_token: Option<String>,
    has_next: bool,
}

impl SandboxPaginator {
    /// Whether another page may follow.
    pub fn has_next(&self) -> bool {
        self.has_next
    }

    /// The token of the next page, if any.
    pub fn next_token(&self) -> Option<&str> {
        self.next_token.as_deref()
    }

    /// The next page; empty once there are no more.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a limit outside 1..=100; others as mapped from the API.
    pub async fn next_items(&mut self) -> Result<Vec<SandboxInfo>> {
        if !self.has_next {
            return Ok(Vec::new());
        }
        let mut call = self.client.get_sandboxes_v2();
        if let Some(limit) = self.query.limit {
            if !(1..=100).contains(&limit) {
                return Err(Error::invalid_argument(format!(
                    "the list limit must be between 1 and 100, got {limit}"
                )));
            }
            call = call.limit(limit);
        }
        if let Some(metadata) = self.query.metadata_param() {
            call = call.metadata(metadata);
        }
        if !self.query.states.is_empty() {
            let states: Vec<String> = self.query.states.iter().map(|s| s.to_string()).collect();
            call = call.state(states.join(","));
        }
        if let Some(template) = &self.query.template {
            call = call.template(template.as_str());
        }
        if let Some(after) = self.query.started_after {
            call = call.started_after(after);
        }
        if let Some(token) = &self.next_token {
            call = call.next_token(token.as_str());
        }
        let response = match call.send().await {
            Ok(r) => r,
            Err(e) => return Err(api_error(e, "listing sandboxes", None).await),
        };
        let token = response
            .headers()
            .get("x-next-token")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        self.has_next = token.is_some();
        self.next_token = token;
        Ok(response
            .into_inner()
            .into_iter()
            .map(|s| SandboxInfo::from_listed(s, &self.config))
            .collect())
    }

    /// Every sandbox of every remaining page, fetching pages as the stream is read.
    pub fn into_stream(self) -> impl Stream<Item = Result<SandboxInfo>> + Send {
        futures_util::stream::unfold(
            (self, VecDeque::new(), false),
            |(mut pages, mut buffer, failed)| async move {
                if failed {
                    return None;
                }
                loop {
                    if let Some(item) = buffer.pop_front() {
                        return Some((Ok(item), (pages, buffer, false)));
                    }
                    if !pages.has_next {
                        return None;
                    }
                    match pages.next_items().await {
                        Ok(items) => buffer.extend(items),
                        Err(e) => return Some((Err(e), (pages, buffer, true))),
                    }
                }
            },
        )
    }
}

/// The environment's configuration; with the `local` feature, the embedded host's when the
/// environment names neither an API key nor an API URL.
fn default_config() -> Result<ConnectionConfig> {
    #[cfg(feature = "local")]
    {
        crate::local::default_config()
    }
    #[cfg(not(feature = "local"))]
    {
        ConnectionConfig::from_env()
    }
}

fn check_id(sandbox_id: &str) -> Result<()> {
    if sandbox_id.trim().is_empty() {
        return Err(Error::invalid_argument("the sandbox id must not be empty"));
    }
    if sandbox_id.contains(['/', '?', '#', '\0']) || sandbox_id.chars().any(char::is_whitespace) {
        return Err(Error::invalid_argument(format!(
            "the sandbox id '{sandbox_id}' contains characters an id cannot have"
        )));
    }
    Ok(())
}

/// Whole seconds, rounded up, that fit the API's int32.
fn timeout_secs(timeout: Duration, what: &str) -> Result<i32> {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    if secs == 0 {
        return Err(Error::invalid_argument(format!(
            "{what} must be at least 1 second, got {timeout:?}"
        )));
    }
    i32::try_from(secs).map_err(|_| {
        Error::invalid_argument(format!(
            "{what} of {secs} s does not fit: at most {} s",
            i32::MAX
        ))
    })
}

/// Maps a control-plane failure (sdk-behavior §2.4); `not_found` is the message for a 404.
async fn api_error(
    err: e2b_api::Error<types::Error>,
    what: &str,
    not_found: Option<String>,
) -> Error {
    use e2b_api::Error as E;
    let (status, message) = match err {
        E::ErrorResponse(response) => {
            let status = response.status().as_u16();
            (status, response.into_inner().message)
        }
        E::UnexpectedResponse(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            (status, error::body_message(&body))
        }
        E::CommunicationError(e) | E::ResponseBodyError(e) | E::InvalidUpgrade(e) => {
            return error::from_reqwest(what, e);
        }
        E::InvalidRequest(message) | E::Custom(message) => {
            return Error::invalid_argument(format!("{what}: {message}"));
        }
        E::InvalidResponsePayload(_, e) => {
            return Error::sandbox(format!("{what}: the API answered unexpected JSON: {e}"));
        }
    };
    if status == 404
        && let Some(text) = not_found
    {
        return Error::NotFound(Context::new(text).status(404));
    }
    error::from_api_status(status, &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_whole_seconds_that_fit() {
        assert_eq!(timeout_secs(Duration::from_millis(1500), "t").unwrap(), 2);
        assert_eq!(timeout_secs(Duration::from_secs(300), "t").unwrap(), 300);
        let e = timeout_secs(Duration::ZERO, "the sandbox timeout").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the sandbox timeout must be at least 1 second, got 0ns"
        );
        let e = timeout_secs(Duration::from_secs(1 << 40), "t").unwrap_err();
        assert!(e.is_invalid_argument());
    }

    #[test]
    fn metadata_is_encoded_like_the_python_sdk() {
        let q = SandboxQuery::new()
            .metadata("a b", "c/d")
            .metadata("k", "v");
        assert_eq!(q.metadata_param().unwrap(), "a%2520b=c%2Fd&k=v");
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("").unwrap_err().is_invalid_argument());
        assert!(check_id("a/b").unwrap_err().is_invalid_argument());
        assert!(check_id("i1234abcd").is_ok());
    }
}
