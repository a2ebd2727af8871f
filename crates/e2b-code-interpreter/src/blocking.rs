//! The synchronous API: the async [`crate::Sandbox`] run on `e2b::blocking`'s runtime thread
//! (one for the process, shared with every `e2b::blocking` sandbox), with no `async` in any
//! signature.
//!
//! # Panics
//!
//! As `e2b::blocking`: calling a blocking method from inside an async runtime panics.
//!
//! ```no_run
//! use e2b_code_interpreter::RunCodeOptions;
//! use e2b_code_interpreter::blocking::Sandbox;
//!
//! # fn main() -> e2b::Result<()> {
//! let sandbox = Sandbox::create()?;
//! let execution = sandbox.run_code("1 + 1", RunCodeOptions::new())?;
//! assert_eq!(execution.text(), Some("2"));
//! sandbox.kill()?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::execution::{Context, Execution};
use crate::sandbox::{CreateCodeContextOptions, DEFAULT_TEMPLATE, RunCodeOptions, forward};

/// A sandbox with a code interpreter, used synchronously: the twin of [`crate::Sandbox`].
/// Every [`e2b::blocking::Sandbox`] method is reachable through `Deref`.
///
/// Cheap to clone. **Dropping it does not kill the sandbox.**
#[derive(Debug, Clone)]
pub struct Sandbox {
    inner: e2b::blocking::Sandbox,
    code: crate::Sandbox,
}

impl std::ops::Deref for Sandbox {
    type Target = e2b::blocking::Sandbox;

    fn deref(&self) -> &e2b::blocking::Sandbox {
        &self.inner
    }
}

impl Sandbox {
    /// A builder; its template is [`DEFAULT_TEMPLATE`] unless set.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder {
            inner: e2b::blocking::Sandbox::builder().template(DEFAULT_TEMPLATE),
        }
    }

    /// Creates a sandbox from [`DEFAULT_TEMPLATE`]. See [`crate::Sandbox::create`].
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::create`].
    pub fn create() -> e2b::Result<Sandbox> {
        Self::builder().create()
    }

    /// Connects to a sandbox by id. See [`crate::Sandbox::connect`].
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::connect`].
    pub fn connect(sandbox_id: &str) -> e2b::Result<Sandbox> {
        Self::builder().connect(sandbox_id)
    }

    /// Wraps a blocking sandbox made with the `e2b` crate.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::new`].
    pub fn new(sandbox: e2b::blocking::Sandbox) -> e2b::Result<Sandbox> {
        let code = crate::Sandbox::new(sandbox.as_async().clone())?;
        Ok(Sandbox {
            inner: sandbox,
            code,
        })
    }

    /// The async twin, sharing this sandbox's connections.
    pub fn as_async(&self) -> &crate::Sandbox {
        &self.code
    }

    /// Runs code. See [`crate::Sandbox::run_code`]; the callbacks run on the runtime thread.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::run_code`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn run_code(&self, code: &str, options: RunCodeOptions) -> e2b::Result<Execution> {
        let sandbox = self.code.clone();
        let code = code.to_owned();
        e2b::blocking::block_on(async move { sandbox.run_code(&code, options).await })
    }

    /// Creates a code context. See [`crate::Sandbox::create_code_context`].
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::create_code_context`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn create_code_context(&self, options: CreateCodeContextOptions) -> e2b::Result<Context> {
        let sandbox = self.code.clone();
        e2b::blocking::block_on(async move { sandbox.create_code_context(options).await })
    }

    /// Lists the code contexts. See [`crate::Sandbox::list_code_contexts`].
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::list_code_contexts`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn list_code_contexts(&self) -> e2b::Result<Vec<Context>> {
        let sandbox = self.code.clone();
        e2b::blocking::block_on(async move { sandbox.list_code_contexts().await })
    }

    /// Removes a code context. See [`crate::Sandbox::remove_code_context`].
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::remove_code_context`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn remove_code_context(&self, context: impl AsRef<str>) -> e2b::Result<()> {
        let sandbox = self.code.clone();
        let id = context.as_ref().to_owned();
        e2b::blocking::block_on(async move { sandbox.remove_code_context(id).await })
    }

    /// Restarts a code context. See [`crate::Sandbox::restart_code_context`].
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::restart_code_context`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn restart_code_context(&self, context: impl AsRef<str>) -> e2b::Result<()> {
        let sandbox = self.code.clone();
        let id = context.as_ref().to_owned();
        e2b::blocking::block_on(async move { sandbox.restart_code_context(id).await })
    }
}

/// Builds and creates a sandbox: [`Sandbox::builder`]. Wraps [`e2b::blocking::SandboxBuilder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SandboxBuilder {
    inner: e2b::blocking::SandboxBuilder,
}

impl SandboxBuilder {
    forward! {
        /// The template (default [`DEFAULT_TEMPLATE`]).
        template(template: impl Into<String>);
        /// The sandbox's lifetime (default 300 s).
        timeout(timeout: Duration);
        /// Adds a metadata entry.
        metadata(key: impl Into<String>, value: impl Into<String>);
        /// Adds an environment variable every command and kernel in the sandbox sees.
        env(key: impl Into<String>, value: impl Into<String>);
        /// Whether the sandbox may reach the internet.
        allow_internet_access(allow: bool);
        /// The sandbox's network.
        network(network: e2b::NetworkConfig);
        /// Pause instead of kill at the timeout.
        auto_pause(auto_pause: bool);
        /// Uses `config` instead of the environment.
        config(config: e2b::ConnectionConfig);
        /// Overrides the API key.
        api_key(api_key: impl Into<String>);
        /// Overrides the domain.
        domain(domain: impl Into<String>);
        /// Overrides the control-plane URL.
        api_url(api_url: impl Into<String>);
        /// Overrides the sandbox URL (envd's, and the code interpreter's).
        sandbox_url(sandbox_url: impl Into<String>);
        /// Overrides debug mode.
        debug(debug: bool);
        /// Overrides the request timeout.
        request_timeout(timeout: Option<Duration>);
    }

    /// Creates the sandbox.
    ///
    /// # Errors
    ///
    /// As [`crate::SandboxBuilder::create`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn create(self) -> e2b::Result<Sandbox> {
        Sandbox::new(self.inner.create()?)
    }

    /// Connects to a sandbox by id.
    ///
    /// # Errors
    ///
    /// As [`crate::SandboxBuilder::connect`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn connect(self, sandbox_id: &str) -> e2b::Result<Sandbox> {
        Sandbox::new(self.inner.connect(sandbox_id)?)
    }
}
