//! The blocking twin of [`crate::sandbox`].

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Commands, Filesystem, Pty, Runtime};
use crate::config::ConnectionConfig;
use crate::error::Result;
use crate::sandbox::{
    NetworkConfig, NetworkUpdate, OnTimeout, PauseMode, SandboxInfo, SandboxMetrics, SandboxQuery,
};

/// A sandbox, used synchronously: the twin of [`crate::Sandbox`].
///
/// Cheap to clone; clones share the runtime thread and connections. **Dropping it does not
/// kill the sandbox**; call [`kill`](Self::kill) or use [`kill_on_drop`](Self::kill_on_drop).
///
/// ```no_run
/// # fn main() -> e2b::Result<()> {
/// use std::time::Duration;
/// use e2b::blocking::Sandbox;
///
/// let sandbox = Sandbox::builder().timeout(Duration::from_secs(120)).create()?;
/// sandbox.files().write("/tmp/a.txt", "hi")?;
/// assert_eq!(sandbox.files().read("/tmp/a.txt")?, "hi");
/// sandbox.kill()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub(crate) inner: crate::Sandbox,
    pub(crate) rt: Runtime,
}

/// Builds and creates a sandbox: [`Sandbox::builder`]. Wraps [`crate::SandboxBuilder`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SandboxBuilder {
    inner: crate::SandboxBuilder,
}

macro_rules! forward {
    ($($(#[$doc:meta])* $name:ident($arg:ident: $ty:ty);)*) => {
        $(
            $(#[$doc])*
            pub fn $name(self, $arg: $ty) -> Self {
                Self { inner: self.inner.$name($arg) }
            }
        )*
    };
}

impl SandboxBuilder {
    forward! {
        /// The template (default `base`).
        template(template: impl Into<String>);
        /// The sandbox's lifetime (default 300 s).
        timeout(timeout: Duration);
        /// Whether the sandbox may reach the internet (unset: left to the server, which
        /// allows it). See [`crate::SandboxBuilder::allow_internet_access`].
        allow_internet_access(allow: bool);
        /// The sandbox's network. See [`crate::SandboxBuilder::network`].
        ///
        /// ```no_run
        /// # fn main() -> e2b::Result<()> {
        /// use e2b::{ALL_TRAFFIC, NetworkConfig};
        ///
        /// let sandbox = e2b::blocking::Sandbox::builder()
        ///     .network(NetworkConfig::new().allow_out(["pypi.org"]).deny_out([ALL_TRAFFIC]))
        ///     .create()?;
        /// # let _ = sandbox;
        /// # Ok(()) }
        /// ```
        network(network: NetworkConfig);
        /// Pause instead of kill at the timeout.
        auto_pause(auto_pause: bool);
        /// Uses `config` instead of the environment.
        config(config: ConnectionConfig);
        /// Overrides the API key.
        api_key(api_key: impl Into<String>);
        /// Overrides the domain.
        domain(domain: impl Into<String>);
        /// Overrides the control-plane URL.
        api_url(api_url: impl Into<String>);
        /// Overrides the envd URL.
        sandbox_url(sandbox_url: impl Into<String>);
        /// Overrides debug mode.
        debug(debug: bool);
        /// Overrides the request timeout.
        request_timeout(timeout: Option<Duration>);
    }

    /// What happens at the timeout, and whether traffic resumes the paused sandbox. See
    /// [`crate::SandboxBuilder::lifecycle`].
    ///
    /// ```no_run
    /// # fn main() -> e2b::Result<()> {
    /// use e2b::{OnTimeout, PauseMode};
    ///
    /// let sandbox = e2b::blocking::Sandbox::builder()
    ///     .lifecycle(OnTimeout::Pause(PauseMode::Full), true)
    ///     .create()?;
    /// # let _ = sandbox;
    /// # Ok(()) }
    /// ```
    pub fn lifecycle(self, on_timeout: OnTimeout, auto_resume: bool) -> Self {
        Self {
            inner: self.inner.lifecycle(on_timeout, auto_resume),
        }
    }

    /// The connection configuration this builder uses. See
    /// [`crate::SandboxBuilder::connection_config`].
    ///
    /// # Errors
    ///
    /// As [`crate::ConnectionConfig::from_env`].
    pub fn connection_config(&self) -> Result<ConnectionConfig> {
        self.inner.connection_config()
    }

    /// Adds a metadata entry.
    pub fn metadata(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            inner: self.inner.metadata(key, value),
        }
    }

    /// Adds an environment variable.
    pub fn env(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            inner: self.inner.env(key, value),
        }
    }

    /// Mounts the volume named `volume` at `path`. See
    /// [`crate::SandboxBuilder::volume_mount`].
    ///
    /// ```no_run
    /// # fn main() -> e2b::Result<()> {
    /// let config = e2b::ConnectionConfig::from_env()?;
    /// let volume = e2b::blocking::Volume::create(&config, "cache")?;
    /// let sandbox = e2b::blocking::Sandbox::builder()
    ///     .config(config)
    ///     .volume_mount(volume.name(), "/mnt/cache")
    ///     .create()?;
    /// # let _ = sandbox;
    /// # Ok(()) }
    /// ```
    pub fn volume_mount(self, volume: impl AsRef<str>, path: impl Into<String>) -> Self {
        Self {
            inner: self.inner.volume_mount(volume, path),
        }
    }

    /// Creates the sandbox. See [`crate::SandboxBuilder::create`].
    ///
    /// # Errors
    ///
    /// As [`crate::SandboxBuilder::create`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime (see [the module docs](crate::blocking)).
    pub fn create(self) -> Result<Sandbox> {
        let rt = Runtime::shared()?;
        let inner = rt.run(self.inner.create())?;
        Ok(Sandbox { inner, rt })
    }

    /// Connects to a sandbox by id, resuming it if paused.
    ///
    /// # Errors
    ///
    /// As [`crate::SandboxBuilder::connect`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn connect(self, sandbox_id: &str) -> Result<Sandbox> {
        let rt = Runtime::shared()?;
        let id = sandbox_id.to_owned();
        let inner = rt.run(async move { self.inner.connect(&id).await })?;
        Ok(Sandbox { inner, rt })
    }
}

impl Sandbox {
    /// A builder.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// Creates a `base` sandbox with the environment's configuration.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::create`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn create() -> Result<Sandbox> {
        Self::builder().create()
    }

    /// Connects to a sandbox by id with the environment's configuration.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::connect`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn connect(sandbox_id: &str) -> Result<Sandbox> {
        Self::builder().connect(sandbox_id)
    }

    /// The async sandbox this wraps.
    pub fn as_async(&self) -> &crate::Sandbox {
        &self.inner
    }

    /// The sandbox's id.
    pub fn sandbox_id(&self) -> &str {
        self.inner.sandbox_id()
    }

    /// The domain of its URLs.
    pub fn sandbox_domain(&self) -> &str {
        self.inner.sandbox_domain()
    }

    /// envd's version.
    pub fn envd_version(&self) -> &str {
        self.inner.envd_version()
    }

    /// The URL envd is reached at.
    pub fn envd_api_url(&self) -> &str {
        self.inner.envd_api_url()
    }

    /// The token for the sandbox's port URLs, if the API gave one; requests to a private
    /// sandbox's URLs carry it in [`crate::TRAFFIC_ACCESS_TOKEN_HEADER`]. See
    /// [`crate::Sandbox::traffic_access_token`].
    pub fn traffic_access_token(&self) -> Option<&str> {
        self.inner.traffic_access_token()
    }

    /// The configuration the sandbox was reached with.
    pub fn connection_config(&self) -> &ConnectionConfig {
        self.inner.connection_config()
    }

    /// The sandbox's filesystem.
    pub fn files(&self) -> Filesystem {
        Filesystem {
            inner: self.inner.files(),
            rt: self.rt.clone(),
        }
    }

    /// Commands in the sandbox.
    pub fn commands(&self) -> Commands {
        Commands {
            inner: self.inner.commands(),
            rt: self.rt.clone(),
        }
    }

    /// Terminals in the sandbox.
    pub fn pty(&self) -> Pty {
        Pty {
            inner: self.inner.pty(),
            rt: self.rt.clone(),
        }
    }

    /// `host:port` to reach `port` of the sandbox.
    pub fn get_host(&self, port: u16) -> String {
        self.inner.get_host(port)
    }

    /// A signed download URL; see [`crate::Sandbox::download_url`].
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::download_url`].
    pub fn download_url(
        &self,
        path: &str,
        user: Option<&str>,
        expires_in_secs: Option<i64>,
    ) -> Result<String> {
        self.inner.download_url(path, user, expires_in_secs)
    }

    /// A signed upload URL; see [`crate::Sandbox::upload_url`].
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::upload_url`].
    pub fn upload_url(
        &self,
        path: &str,
        user: Option<&str>,
        expires_in_secs: Option<i64>,
    ) -> Result<String> {
        self.inner.upload_url(path, user, expires_in_secs)
    }

    /// Whether envd answers. See [`crate::Sandbox::is_running`].
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::is_running`].
    pub fn is_running(&self) -> Result<bool> {
        let inner = self.inner.clone();
        self.rt.run(async move { inner.is_running().await })
    }

    /// Kills the sandbox; `false` when it no longer existed.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::kill`].
    pub fn kill(&self) -> Result<bool> {
        let inner = self.inner.clone();
        self.rt.run(async move { inner.kill().await })
    }

    /// Kills a sandbox by id.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::kill_by_id`].
    pub fn kill_by_id(config: &ConnectionConfig, sandbox_id: &str) -> Result<bool> {
        let (config, id) = (config.clone(), sandbox_id.to_owned());
        Runtime::shared()?.run(async move { crate::Sandbox::kill_by_id(&config, &id).await })
    }

    /// Sets the sandbox to end `timeout` from now.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::set_timeout`].
    pub fn set_timeout(&self, timeout: Duration) -> Result<()> {
        let inner = self.inner.clone();
        self.rt.run(async move { inner.set_timeout(timeout).await })
    }

    /// [`set_timeout`](Self::set_timeout) by id.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::set_timeout_by_id`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn set_timeout_by_id(
        config: &ConnectionConfig,
        sandbox_id: &str,
        timeout: Duration,
    ) -> Result<()> {
        let (config, id) = (config.clone(), sandbox_id.to_owned());
        Runtime::shared()?
            .run(async move { crate::Sandbox::set_timeout_by_id(&config, &id, timeout).await })
    }

    /// Replaces the sandbox's egress rules; what `update` leaves out is cleared. See
    /// [`crate::Sandbox::update_network`].
    ///
    /// ```no_run
    /// # fn demo(sandbox: e2b::blocking::Sandbox) -> e2b::Result<()> {
    /// use e2b::{ALL_TRAFFIC, NetworkUpdate};
    ///
    /// sandbox.update_network(NetworkUpdate::new().deny_out([ALL_TRAFFIC]))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::update_network`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn update_network(&self, update: NetworkUpdate) -> Result<()> {
        let inner = self.inner.clone();
        self.rt
            .run(async move { inner.update_network(update).await })
    }

    /// [`update_network`](Self::update_network) by id.
    ///
    /// ```no_run
    /// # fn main() -> e2b::Result<()> {
    /// use e2b::{ConnectionConfig, NetworkUpdate};
    ///
    /// let config = ConnectionConfig::from_env()?;
    /// let offline = NetworkUpdate::new().allow_internet_access(false);
    /// e2b::blocking::Sandbox::update_network_by_id(&config, "sandbox-id", offline)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::update_network_by_id`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn update_network_by_id(
        config: &ConnectionConfig,
        sandbox_id: &str,
        update: NetworkUpdate,
    ) -> Result<()> {
        let (config, id) = (config.clone(), sandbox_id.to_owned());
        Runtime::shared()?
            .run(async move { crate::Sandbox::update_network_by_id(&config, &id, update).await })
    }

    /// Information about the sandbox.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::get_info`].
    pub fn get_info(&self) -> Result<SandboxInfo> {
        let inner = self.inner.clone();
        self.rt.run(async move { inner.get_info().await })
    }

    /// [`get_info`](Self::get_info) by id.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::get_info_by_id`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn get_info_by_id(config: &ConnectionConfig, sandbox_id: &str) -> Result<SandboxInfo> {
        let (config, id) = (config.clone(), sandbox_id.to_owned());
        Runtime::shared()?.run(async move { crate::Sandbox::get_info_by_id(&config, &id).await })
    }

    /// Resource usage samples.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::get_metrics`].
    pub fn get_metrics(
        &self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Vec<SandboxMetrics>> {
        let inner = self.inner.clone();
        self.rt
            .run(async move { inner.get_metrics(start, end).await })
    }

    /// Pauses the sandbox; `false` when it was already paused.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::pause`].
    pub fn pause(&self) -> Result<bool> {
        let inner = self.inner.clone();
        self.rt.run(async move { inner.pause().await })
    }

    /// Pauses the sandbox keeping what `mode` says; `false` when it was already paused.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::pause_with`].
    pub fn pause_with(&self, mode: PauseMode) -> Result<bool> {
        let inner = self.inner.clone();
        self.rt.run(async move { inner.pause_with(mode).await })
    }

    /// [`pause`](Self::pause) by id.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::pause_by_id`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn pause_by_id(config: &ConnectionConfig, sandbox_id: &str) -> Result<bool> {
        let (config, id) = (config.clone(), sandbox_id.to_owned());
        Runtime::shared()?.run(async move { crate::Sandbox::pause_by_id(&config, &id).await })
    }

    /// Lists sandboxes as an iterator that fetches pages as it goes.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::list`].
    pub fn list(config: &ConnectionConfig, query: SandboxQuery) -> Result<SandboxPaginator> {
        Ok(SandboxPaginator {
            inner: Some(crate::Sandbox::list(config, query)?),
            buffer: VecDeque::new(),
            rt: Runtime::shared()?,
        })
    }

    /// A guard that kills the sandbox when dropped.
    pub fn kill_on_drop(self) -> SandboxGuard {
        SandboxGuard {
            sandbox: Some(self),
        }
    }
}

/// Kills its sandbox when dropped (waiting for the kill): [`Sandbox::kill_on_drop`].
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
    pub fn kill(mut self) -> Result<bool> {
        match self.sandbox.take() {
            Some(sandbox) => sandbox.kill(),
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
        if let Some(sandbox) = self.sandbox.take() {
            // Inside an async runtime a blocking kill would panic in a destructor; skip it.
            if tokio::runtime::Handle::try_current().is_ok() {
                tracing::warn!(
                    sandbox_id = sandbox.sandbox_id(),
                    "blocking SandboxGuard dropped inside an async runtime; not killing"
                );
                return;
            }
            if let Err(e) = sandbox.kill() {
                tracing::warn!(sandbox_id = sandbox.sandbox_id(), error = %e, "killing the sandbox on drop failed");
            }
        }
    }
}

/// Every sandbox of every page, fetched as the iterator advances: [`Sandbox::list`].
#[derive(Debug)]
pub struct SandboxPaginator {
    inner: Option<crate::SandboxPaginator>,
    buffer: VecDeque<SandboxInfo>,
    rt: Runtime,
}

impl SandboxPaginator {
    /// Whether another page may follow.
    pub fn has_next(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(crate::SandboxPaginator::has_next)
    }

    /// The token of the next page, if any.
    pub fn next_token(&self) -> Option<&str> {
        self.inner
            .as_ref()
            .and_then(crate::SandboxPaginator::next_token)
    }

    /// The next page.
    ///
    /// # Errors
    ///
    /// As [`crate::SandboxPaginator::next_items`].
    pub fn next_items(&mut self) -> Result<Vec<SandboxInfo>> {
        super::next_page(&mut self.inner, &self.rt)
    }
}

impl Iterator for SandboxPaginator {
    type Item = Result<SandboxInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        super::next_listed(&mut self.inner, &mut self.buffer, &self.rt)
    }
}
