//! [`SandboxBuilder`]: what a new sandbox is made of, and the configuration it is reached
//! with.

use std::collections::BTreeMap;
use std::time::Duration;

use e2b_api::prelude::*;
use e2b_api::types;

use super::api::{api_error, check_id, idempotency_key, send_with_retries, timeout_secs};
use super::{
    DEFAULT_SANDBOX_TIMEOUT, DEFAULT_TEMPLATE, NetworkConfig, OnTimeout, PauseMode, Sandbox,
    default_config,
};
use crate::config::ConnectionConfig;
use crate::envd::parse_version;
use crate::error::{Error, Result};

/// Builds and creates (or connects to) a sandbox: [`Sandbox::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SandboxBuilder {
    template: String,
    timeout: Duration,
    metadata: BTreeMap<String, String>,
    envs: BTreeMap<String, String>,
    allow_internet_access: Option<bool>,
    network: Option<NetworkConfig>,
    on_timeout: OnTimeout,
    auto_resume: bool,
    volume_mounts: Vec<types::SandboxVolumeMount>,
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
            allow_internet_access: None,
            network: None,
            on_timeout: OnTimeout::Kill,
            auto_resume: false,
            volume_mounts: Vec::new(),
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

    /// Whether the sandbox may reach the internet; `false` is the same as
    /// [`NetworkConfig::deny_out`]`([ALL_TRAFFIC])`. Unset, the field is left out of the
    /// request (as the Python SDK does) and the server allows it.
    ///
    /// [ALL_TRAFFIC]: crate::ALL_TRAFFIC
    ///
    /// ```no_run
    /// # async fn demo() -> e2b::Result<()> {
    /// let offline = e2b::Sandbox::builder().allow_internet_access(false).create().await?;
    /// # let _ = offline;
    /// # Ok(()) }
    /// ```
    pub fn allow_internet_access(mut self, allow: bool) -> Self {
        self.allow_internet_access = Some(allow);
        self
    }

    /// The sandbox's network: egress rules, DNS servers, an egress proxy, private URLs
    /// (see [`NetworkConfig`]). Replaces a config set before.
    ///
    /// ```no_run
    /// # async fn demo() -> e2b::Result<()> {
    /// use e2b::{ALL_TRAFFIC, NetworkConfig, NetworkRule, Sandbox};
    ///
    /// let sandbox = Sandbox::builder()
    ///     .network(
    ///         NetworkConfig::new()
    ///             .allow_out(["api.example.com"])
    ///             .deny_out([ALL_TRAFFIC])
    ///             .rules("api.example.com", [NetworkRule::new().header("Authorization", "Bearer k")]),
    ///     )
    ///     .create()
    ///     .await?;
    /// # let _ = sandbox;
    /// # Ok(()) }
    /// ```
    pub fn network(mut self, network: NetworkConfig) -> Self {
        self.network = Some(network);
        self
    }

    /// Pause (keeping memory) instead of kill when the timeout passes (default false); the
    /// short form of [`lifecycle`](Self::lifecycle) without auto-resume.
    pub fn auto_pause(mut self, auto_pause: bool) -> Self {
        self.on_timeout = if auto_pause {
            OnTimeout::Pause(PauseMode::Full)
        } else {
            OnTimeout::Kill
        };
        self.auto_resume = false;
        self
    }

    /// What happens at the timeout, and whether a request to the paused sandbox's envd or
    /// ports resumes it (`auto_resume`: only with [`OnTimeout::Pause`] of
    /// [`PauseMode::Full`], as E2B allows; [`create`](Self::create) refuses other
    /// combinations).
    ///
    /// ```no_run
    /// # async fn demo() -> e2b::Result<()> {
    /// use e2b::{OnTimeout, PauseMode, Sandbox};
    ///
    /// // Paused after 60 s idle; the next command wakes it.
    /// let sandbox = Sandbox::builder()
    ///     .timeout(std::time::Duration::from_secs(60))
    ///     .lifecycle(OnTimeout::Pause(PauseMode::Full), true)
    ///     .create()
    ///     .await?;
    /// # let _ = sandbox;
    /// # Ok(()) }
    /// ```
    pub fn lifecycle(mut self, on_timeout: OnTimeout, auto_resume: bool) -> Self {
        self.on_timeout = on_timeout;
        self.auto_resume = auto_resume;
        self
    }

    /// Mounts the volume named `volume` (read-write, writable by `user`) at the absolute
    /// `path` inside the sandbox; repeat for more. Several sandboxes may mount one volume.
    ///
    /// ```no_run
    /// # async fn demo(config: e2b::ConnectionConfig) -> e2b::Result<()> {
    /// let volume = e2b::Volume::create(&config, "cache").await?;
    /// let sandbox = e2b::Sandbox::builder()
    ///     .config(config)
    ///     .volume_mount(volume.name(), "/mnt/cache")
    ///     .create()
    ///     .await?;
    /// # let _ = sandbox;
    /// # Ok(()) }
    /// ```
    pub fn volume_mount(mut self, volume: impl AsRef<str>, path: impl Into<String>) -> Self {
        self.volume_mounts.push(types::SandboxVolumeMount {
            name: volume.as_ref().to_owned(),
            path: path.into(),
        });
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

    /// Creates the sandbox (`POST /v2/sandboxes`) and returns once it is running. In debug
    /// mode nothing is created: the sandbox is envd at the configured URL.
    ///
    /// The sandbox is always secured: envd requires its access token, which the returned
    /// [`Sandbox`] sends. Answers that allow it (429, 502, 503, 504, `Should-Retry: true`) are
    /// retried up to three times with the same `Idempotency-Key` header, so that a retry
    /// never creates a second sandbox.
    ///
    /// # Errors
    ///
    /// [`Error::Authentication`] without an API key or with a rejected one;
    /// [`Error::InvalidArgument`] for a timeout below 1 s or above `i32::MAX` seconds, a
    /// bad configuration value, an https port of 0 or an egress proxy credential longer than
    /// 255 characters; [`Error::Template`] when the template's envd is too old; others as
    /// mapped from the API (a network rule the server rejects is [`Error::Sandbox`] with
    /// `400: <its message>`).
    pub async fn create(self) -> Result<Sandbox> {
        let config = self.connection_config()?;
        let timeout = timeout_secs(self.timeout, "the sandbox timeout")?;
        if self.template.trim().is_empty() {
            return Err(Error::invalid_argument("the template must not be empty"));
        }
        let (auto_pause, keep_memory) = match self.on_timeout {
            OnTimeout::Kill => (false, true),
            OnTimeout::Pause(mode) => (true, mode.keeps_memory()),
        };
        if self.auto_resume && !auto_pause {
            return Err(Error::invalid_argument(
                "auto_resume can only be true when the timeout pauses the sandbox",
            ));
        }
        if self.auto_resume && !keep_memory {
            return Err(Error::invalid_argument(
                "auto_resume cannot be combined with PauseMode::Filesystem: a files-only pause is resumed with connect",
            ));
        }
        let network = match &self.network {
            Some(network) => network.to_api()?,
            None => None,
        };
        if config.debug() {
            return Sandbox::debug(config);
        }
        let client = config.api_client()?;
        let body = types::NewSandboxV2 {
            allow_internet_access: self.allow_internet_access,
            auto_pause,
            auto_pause_memory: keep_memory,
            auto_resume: self
                .auto_resume
                .then_some(types::SandboxAutoResumeConfig { enabled: true }),
            env_vars: Some(types::EnvVars(self.envs)),
            iam: None,
            mcp: None,
            metadata: Some(types::SandboxMetadata(self.metadata)),
            network,
            template_id: self.template,
            timeout,
            volume_mounts: self.volume_mounts,
        };
        let key = idempotency_key();
        let send = || {
            client
                .post_sandboxes_v2()
                .idempotency_key(key.as_str())
                .body(body.clone())
                .send()
        };
        let created = match send_with_retries(config.request_timeout(), send).await {
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
    /// (`POST /v2/sandboxes/{id}/connect`). The builder's timeout extends (never shortens) the
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
        let body = types::ConnectSandboxV2 {
            memory: None,
            timeout,
        };
        let send = || {
            client
                .post_sandbox_connect_v2()
                .sandbox_id(sandbox_id)
                .body(body.clone())
                .send()
        };
        match send_with_retries(config.request_timeout(), send).await {
            Ok(response) => Sandbox::from_api(config, response.into_inner()),
            Err(e) => {
                let not_found = format!("Paused sandbox {sandbox_id} not found");
                Err(api_error(e, "connecting to a sandbox", Some(not_found)).await)
            }
        }
    }
}
