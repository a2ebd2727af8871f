//! [`Sandbox`]: an `e2b::Sandbox` from the `code-interpreter-v1` template, plus `run_code`
//! and code contexts over the server on port 49999.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use e2b::error::{Context as ErrorContext, Error};
use e2b_envd::headers;
use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode, Url};
use tokio::time::Instant;

use crate::execution::{Context, Execution, ExecutionError, OutputMessage, Result};
use crate::wire::{ContextJson, CreateContextRequest, Event, ExecuteRequest, JUPYTER_PORT};

/// The template sandboxes are created from unless set: `code-interpreter-v1`.
pub const DEFAULT_TEMPLATE: &str = "code-interpreter-v1";
/// How long a run may take unless set: 300 s (the Python SDK's default).
pub const DEFAULT_EXECUTION_TIMEOUT: Duration = Duration::from_secs(300);

const REQUEST_TIMED_OUT: &str =
    "Request timed out — the 'request_timeout' option can be used to increase this timeout";
const EXECUTION_TIMED_OUT: &str =
    "Execution timed out — the 'timeout' option can be used to increase this timeout";
const SANDBOX_KILLED: &str = "The sandbox was killed while the request was in progress. This \
can happen when the sandbox times out or is killed manually. You can modify the sandbox timeout \
by passing 'timeout' when starting the sandbox or calling '.set_timeout' on the sandbox with the \
desired timeout";

/// A sandbox with a code interpreter: every [`e2b::Sandbox`] method (through `Deref`: files,
/// commands, `kill`, ...) plus [`run_code`](Self::run_code) and code contexts.
///
/// Cheap to clone. **Dropping it does not kill the sandbox** (see [`e2b::Sandbox`]).
///
/// ```no_run
/// # async fn demo() -> e2b::Result<()> {
/// use e2b_code_interpreter::{RunCodeOptions, Sandbox};
///
/// let sandbox = Sandbox::create().await?;
/// sandbox.run_code("x = 1", RunCodeOptions::new()).await?;
/// let execution = sandbox.run_code("x + 1", RunCodeOptions::new()).await?;
/// assert_eq!(execution.text(), Some("2"));
/// sandbox.kill().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Sandbox {
    inner: e2b::Sandbox,
    http: reqwest::Client,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("sandbox", &self.inner)
            .field("jupyter_url", &self.jupyter_url())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Sandbox {
    type Target = e2b::Sandbox;

    fn deref(&self) -> &e2b::Sandbox {
        &self.inner
    }
}

impl Sandbox {
    /// A builder for creating or connecting to a sandbox; its template is
    /// [`DEFAULT_TEMPLATE`] unless set.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder {
            inner: e2b::Sandbox::builder().template(DEFAULT_TEMPLATE),
        }
    }

    /// Creates a sandbox from [`DEFAULT_TEMPLATE`] with the environment's configuration.
    ///
    /// # Errors
    ///
    /// As [`e2b::SandboxBuilder::create`].
    pub async fn create() -> e2b::Result<Sandbox> {
        Self::builder().create().await
    }

    /// Connects to a sandbox by id, resuming it if paused.
    ///
    /// # Errors
    ///
    /// As [`e2b::SandboxBuilder::connect`].
    pub async fn connect(sandbox_id: &str) -> e2b::Result<Sandbox> {
        Self::builder().connect(sandbox_id).await
    }

    /// Wraps a sandbox made with the `e2b` crate (its template must run the code
    /// interpreter's server, as `code-interpreter-v1` does).
    ///
    /// # Errors
    ///
    /// [`Error::Sandbox`] when the HTTP client cannot be built (no TLS roots).
    pub fn new(sandbox: e2b::Sandbox) -> e2b::Result<Sandbox> {
        let mut tls = e2b_envd::tls_config().map_err(|e| sandbox_error(e.to_string()))?;
        // HTTP/1.1 only, as the official SDKs: a dropped run then closes its connection, which
        // the server sees and answers by interrupting the kernel (an HTTP/2 stream reset can
        // go unnoticed behind a proxy).
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .http1_only()
            .user_agent(e2b::config::USER_AGENT)
            .build()
            .map_err(|e| {
                sandbox_error(format!(
                    "building the code interpreter's HTTP client failed: {}",
                    e2b_envd::error_chain(&e)
                ))
            })?;
        Ok(Sandbox {
            inner: sandbox,
            http,
        })
    }

    /// The underlying sandbox.
    pub fn sandbox(&self) -> &e2b::Sandbox {
        &self.inner
    }

    /// The underlying sandbox, by value.
    pub fn into_inner(self) -> e2b::Sandbox {
        self.inner
    }

    /// The URL of the code interpreter's server: the sandbox URL override (e2b-local's
    /// router, which routes by the `E2b-Sandbox-Id`/`E2b-Sandbox-Port` headers), else
    /// `http://localhost:49999` in debug mode, else `https://49999-<id>.<domain>`.
    pub fn jupyter_url(&self) -> String {
        let config = self.inner.connection_config();
        if let Some(url) = config.sandbox_url() {
            return url.to_owned();
        }
        let host = self.inner.get_host(JUPYTER_PORT);
        if config.debug() {
            format!("http://{host}")
        } else {
            format!("https://{host}")
        }
    }

    /// Runs `code` in the language's default context (Python unless
    /// [`RunCodeOptions::language`] says otherwise) or in [`RunCodeOptions::context`], and
    /// returns once it finished. State (variables, imports) stays in the context for later
    /// runs.
    ///
    /// Output reaches the callbacks as it comes. An exception raised by the code is not an
    /// `Err`: it is [`Execution::error`].
    ///
    /// ```no_run
    /// # async fn demo() -> e2b::Result<()> {
    /// use std::time::Duration;
    /// use e2b_code_interpreter::{RunCodeOptions, Sandbox};
    ///
    /// let sandbox = Sandbox::create().await?;
    /// let execution = sandbox
    ///     .run_code(
    ///         "import os; print(os.environ['GREETING']); 1 / 0",
    ///         RunCodeOptions::new()
    ///             .env("GREETING", "hello")
    ///             .timeout(Duration::from_secs(30))
    ///             .on_stdout(|m| print!("{}", m.line)),
    ///     )
    ///     .await?;
    /// assert_eq!(execution.logs.stdout, ["hello\n"]);
    /// assert_eq!(execution.error.unwrap().name, "ZeroDivisionError");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidArgument`] when both a language and a context are given.
    /// - [`Error::Timeout`] when the server does not answer within the request timeout
    ///   ("Request timed out ..."), the run takes longer than its timeout ("Execution timed
    ///   out ...": the connection is closed, so the server interrupts the kernel), or the
    ///   sandbox was killed mid-run.
    /// - [`Error::NotFound`] for an unknown context (404), [`Error::Timeout`] for a gone
    ///   sandbox (502), [`Error::Sandbox`] for other statuses, a malformed answer, or an
    ///   answer that ended before its `end_of_execution` (the server or kernel died).
    pub async fn run_code(&self, code: &str, options: RunCodeOptions) -> e2b::Result<Execution> {
        let RunCodeOptions {
            language,
            context,
            envs,
            timeout,
            request_timeout,
            mut handlers,
        } = options;
        if context.is_some() && language.is_some() {
            return Err(Error::InvalidArgument(ErrorContext::new(
                "You can provide context or language, but not both at the same time.",
            )));
        }
        let timeout = Some(timeout.unwrap_or(DEFAULT_EXECUTION_TIMEOUT)).filter(|t| !t.is_zero());
        let request_timeout =
            request_timeout.or_else(|| self.inner.connection_config().request_timeout());
        let body = ExecuteRequest {
            code,
            context_id: context.as_deref(),
            language: language.as_deref(),
            env_vars: (!envs.is_empty()).then_some(&envs),
        };
        let mut request = self.request(Method::POST, &["execute"])?.json(&body);
        if let Some(token) = self.inner.envd_access_token() {
            request = request.header(headers::ACCESS_TOKEN, token);
        }
        let response = match within(request_timeout, request.send()).await {
            None => return Err(Error::Timeout(ErrorContext::new(REQUEST_TIMED_OUT))),
            Some(Err(e)) => return Err(self.transport_error("POST /execute", e).await),
            Some(Ok(response)) => response,
        };
        let response = check_status(response).await?;

        // The run's own deadline starts once the server accepted it (as the JS SDK's).
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut body = response.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        let mut run = Run::default();
        loop {
            let chunk = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, body.next()).await {
                    Ok(chunk) => chunk,
                    Err(_) => return Err(Error::Timeout(ErrorContext::new(EXECUTION_TIMED_OUT))),
                },
                None => body.next().await,
            };
            match chunk {
                Some(Ok(bytes)) => {
                    pending.extend_from_slice(&bytes);
                    while let Some(newline) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=newline).collect();
                        run.line(&line[..newline], &mut handlers)?;
                    }
                }
                // A connection lost after the last event loses nothing.
                Some(Err(_)) if run.ended => break,
                Some(Err(e)) => return Err(self.transport_error("POST /execute", e).await),
                None => break,
            }
        }
        if !pending.is_empty() {
            run.line(&pending, &mut handlers)?;
        }
        if !run.ended {
            if let Ok(false) = self.inner.is_running().await {
                return Err(Error::Timeout(ErrorContext::new(SANDBOX_KILLED)));
            }
            return Err(sandbox_error(
                "the code interpreter's answer ended before its end_of_execution event: the \
                 server or the context's kernel stopped during the run",
            ));
        }
        Ok(run.execution)
    }

    /// Creates a code context: a kernel of its own, in `language` (default Python) with
    /// working directory `cwd` (default `/home/user`).
    ///
    /// ```no_run
    /// # async fn demo() -> e2b::Result<()> {
    /// use e2b_code_interpreter::{CreateCodeContextOptions, RunCodeOptions, Sandbox};
    ///
    /// let sandbox = Sandbox::create().await?;
    /// let context = sandbox
    ///     .create_code_context(CreateCodeContextOptions::new().language("bash").cwd("/tmp"))
    ///     .await?;
    /// let execution = sandbox.run_code("pwd", RunCodeOptions::new().context(&context)).await?;
    /// assert_eq!(execution.logs.stdout, ["/tmp\n"]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] past the request timeout; statuses as for
    /// [`run_code`](Self::run_code).
    pub async fn create_code_context(
        &self,
        options: CreateCodeContextOptions,
    ) -> e2b::Result<Context> {
        let body = CreateContextRequest {
            language: options.language.as_deref(),
            cwd: options.cwd.as_deref(),
        };
        let request = self.request(Method::POST, &["contexts"])?.json(&body);
        let limit = options
            .request_timeout
            .or_else(|| self.inner.connection_config().request_timeout());
        let bytes = self.unary("POST /contexts", request, limit).await?;
        let context: ContextJson = parse_json("POST /contexts", &bytes)?;
        Ok(context.into())
    }

    /// The sandbox's code contexts.
    ///
    /// # Errors
    ///
    /// As [`create_code_context`](Self::create_code_context).
    pub async fn list_code_contexts(&self) -> e2b::Result<Vec<Context>> {
        let request = self.request(Method::GET, &["contexts"])?;
        let limit = self.inner.connection_config().request_timeout();
        let bytes = self.unary("GET /contexts", request, limit).await?;
        let contexts: Vec<ContextJson> = parse_json("GET /contexts", &bytes)?;
        Ok(contexts.into_iter().map(Context::from).collect())
    }

    /// Removes a code context (a [`Context`] or its id), stopping its kernel.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no such context; otherwise as
    /// [`create_code_context`](Self::create_code_context).
    pub async fn remove_code_context(&self, context: impl AsRef<str>) -> e2b::Result<()> {
        let request = self.request(Method::DELETE, &["contexts", context.as_ref()])?;
        let limit = self.inner.connection_config().request_timeout();
        self.unary("DELETE /contexts/{id}", request, limit).await?;
        Ok(())
    }

    /// Restarts a code context's kernel (a [`Context`] or its id): its state is gone, its
    /// id, language and working directory stay.
    ///
    /// # Errors
    ///
    /// As [`remove_code_context`](Self::remove_code_context).
    pub async fn restart_code_context(&self, context: impl AsRef<str>) -> e2b::Result<()> {
        let request = self.request(Method::POST, &["contexts", context.as_ref(), "restart"])?;
        let limit = self.inner.connection_config().request_timeout();
        self.unary("POST /contexts/{id}/restart", request, limit)
            .await?;
        Ok(())
    }

    /// A request to the server with the headers every request carries.
    fn request(&self, method: Method, segments: &[&str]) -> e2b::Result<reqwest::RequestBuilder> {
        let base = self.jupyter_url();
        let mut url = Url::parse(&base).map_err(|e| {
            Error::InvalidArgument(ErrorContext::new(format!(
                "the code interpreter's URL '{base}' is not a URL: {e}"
            )))
        })?;
        url.path_segments_mut()
            .map_err(|()| {
                Error::InvalidArgument(ErrorContext::new(format!(
                    "the code interpreter's URL '{base}' cannot have a path"
                )))
            })?
            .pop_if_empty()
            .extend(segments);
        let mut request = self
            .http
            .request(method, url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(headers::SANDBOX_ID, self.inner.sandbox_id())
            .header(headers::SANDBOX_PORT, JUPYTER_PORT.to_string());
        if let Some(token) = self.inner.traffic_access_token() {
            request = request.header(headers::TRAFFIC_ACCESS_TOKEN, token);
        }
        Ok(request)
    }

    /// Sends a request and reads its whole answer within `limit`.
    async fn unary(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
        limit: Option<Duration>,
    ) -> e2b::Result<bytes::Bytes> {
        let exchange = async {
            let response = request.send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        match within(limit, exchange).await {
            None => Err(Error::Timeout(ErrorContext::new(REQUEST_TIMED_OUT))),
            Some(Err(e)) => Err(self.transport_error(what, e).await),
            Some(Ok((status, body))) if status.is_success() => Ok(body),
            Some(Ok((status, body))) => Err(status_error(status, &body)),
        }
    }

    /// A transport failure: the sandbox was killed mid-request if it no longer runs (as the
    /// official SDKs check), else the failure itself.
    async fn transport_error(&self, what: &str, err: reqwest::Error) -> Error {
        if let Ok(false) = self.inner.is_running().await {
            return Error::Timeout(ErrorContext::new(SANDBOX_KILLED).source(err.without_url()));
        }
        let text = e2b_envd::error_chain(&err);
        Error::Sandbox(
            ErrorContext::new(format!("{what} failed: {text}")).source(err.without_url()),
        )
    }
}

/// The fold of `/execute`'s lines into an [`Execution`].
#[derive(Default)]
struct Run {
    execution: Execution,
    ended: bool,
}

impl Run {
    fn line(&mut self, line: &[u8], handlers: &mut Handlers) -> e2b::Result<()> {
        let line = std::str::from_utf8(line)
            .map_err(|e| {
                sandbox_error(format!(
                    "the code interpreter sent a line that is not UTF-8: {e}"
                ))
            })?
            .trim_end_matches('\r');
        if line.trim().is_empty() {
            return Ok(());
        }
        let event = Event::parse(line).map_err(|e| {
            sandbox_error(format!("the code interpreter sent a malformed line: {e}"))
        })?;
        apply(&mut self.execution, event, handlers, &mut self.ended)
    }
}

/// Applies one event to an execution, calling the matching handler.
fn apply(
    execution: &mut Execution,
    event: Event,
    handlers: &mut Handlers,
    ended: &mut bool,
) -> e2b::Result<()> {
    match event {
        Event::Stdout(output) => {
            execution.logs.stdout.push(output.text.clone());
            if let Some(on_stdout) = &mut handlers.on_stdout {
                on_stdout(OutputMessage::from_wire(output, false));
            }
        }
        Event::Stderr(output) => {
            execution.logs.stderr.push(output.text.clone());
            if let Some(on_stderr) = &mut handlers.on_stderr {
                on_stderr(OutputMessage::from_wire(output, true));
            }
        }
        Event::Result(result) => {
            let result = Result::from_wire(result).map_err(|e| {
                sandbox_error(format!("the code interpreter sent a malformed result: {e}"))
            })?;
            if let Some(on_result) = &mut handlers.on_result {
                on_result(result.clone());
            }
            execution.results.push(result);
        }
        Event::Error(error) => {
            let error = ExecutionError::from(error);
            if let Some(on_error) = &mut handlers.on_error {
                on_error(error.clone());
            }
            execution.error = Some(error);
        }
        Event::NumberOfExecutions { execution_count } => {
            execution.execution_count = Some(execution_count);
        }
        Event::EndOfExecution => *ended = true,
        Event::Other(_) => {}
    }
    Ok(())
}

/// Runs `future` within `limit` (none: without one); `None` when it ran out.
async fn within<F: std::future::Future>(limit: Option<Duration>, future: F) -> Option<F::Output> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future).await.ok(),
        None => Some(future.await),
    }
}

/// Passes a success through; reads an error status's body into its error.
async fn check_status(response: reqwest::Response) -> e2b::Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.bytes().await.unwrap_or_default();
    Err(status_error(status, &body))
}

/// An error status as the official SDKs classify it: 404 is not found (the body is the
/// message), 502 is a gone sandbox, anything else a sandbox error with status and body.
fn status_error(status: StatusCode, body: &[u8]) -> Error {
    let text = String::from_utf8_lossy(body);
    let code = status.as_u16();
    match code {
        404 => Error::NotFound(ErrorContext::new(text.into_owned()).status(code)),
        502 => Error::Timeout(
            ErrorContext::new(format!(
                "{text}: This error is likely due to sandbox timeout. You can modify the \
                 sandbox timeout by passing 'timeout' when starting the sandbox or calling \
                 '.set_timeout' on the sandbox with the desired timeout."
            ))
            .status(code),
        ),
        _ => {
            let body = text.trim();
            let reason = status.canonical_reason().unwrap_or("");
            let message = if body.is_empty() {
                format!("{code} {reason}")
            } else {
                format!("{code} {reason}: {body}")
            };
            Error::Sandbox(ErrorContext::new(message).status(code))
        }
    }
}

fn parse_json<T: for<'de> serde::Deserialize<'de>>(what: &str, body: &[u8]) -> e2b::Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        sandbox_error(format!(
            "{what} answered with unexpected JSON ({e}): {}",
            String::from_utf8_lossy(body)
        ))
    })
}

fn sandbox_error(message: impl Into<String>) -> Error {
    Error::Sandbox(ErrorContext::new(message))
}

type Callback<T> = Box<dyn FnMut(T) + Send>;

/// The callbacks of a run.
#[derive(Default)]
pub(crate) struct Handlers {
    on_stdout: Option<Callback<OutputMessage>>,
    on_stderr: Option<Callback<OutputMessage>>,
    on_result: Option<Callback<Result>>,
    on_error: Option<Callback<ExecutionError>>,
}

/// How to run code: [`Sandbox::run_code`]'s options. `Default` runs Python in the default
/// context with a 300 s timeout and the configuration's request timeout.
///
/// ```
/// use std::time::Duration;
/// use e2b_code_interpreter::RunCodeOptions;
///
/// let options = RunCodeOptions::new()
///     .language("bash")
///     .env("NAME", "value")
///     .timeout(Duration::from_secs(10))
///     .on_stderr(|m| eprint!("{}", m.line));
/// # let _ = options;
/// ```
#[derive(Default)]
#[must_use]
pub struct RunCodeOptions {
    language: Option<String>,
    context: Option<String>,
    envs: BTreeMap<String, String>,
    timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    handlers: Handlers,
}

impl fmt::Debug for RunCodeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunCodeOptions")
            .field("language", &self.language)
            .field("context", &self.context)
            .field("envs", &self.envs.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("request_timeout", &self.request_timeout)
            .field("on_stdout", &self.handlers.on_stdout.is_some())
            .field("on_stderr", &self.handlers.on_stderr.is_some())
            .field("on_result", &self.handlers.on_result.is_some())
            .field("on_error", &self.handlers.on_error.is_some())
            .finish()
    }
}

impl RunCodeOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs in the default context of `language`: `python` (the default), `javascript`,
    /// `typescript`, `r`, `java`, `bash`, or another the server knows. Excludes
    /// [`context`](Self::context).
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// Runs in this context (a [`Context`] or its id). Excludes [`language`](Self::language).
    pub fn context(mut self, context: impl AsRef<str>) -> Self {
        self.context = Some(context.as_ref().to_owned());
        self
    }

    /// Adds an environment variable for this run only.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.insert(key.into(), value.into());
        self
    }

    /// Adds environment variables for this run only.
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        envs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.envs
            .extend(envs.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// How long the run may take once the server accepted it (default
    /// [`DEFAULT_EXECUTION_TIMEOUT`]); zero means no limit. Past it the run's connection is
    /// closed, the server interrupts the kernel, and `run_code` returns
    /// [`e2b::Error::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long to wait for the server to accept the run (default: the configuration's
    /// request timeout).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Called with each chunk of standard output as it comes.
    pub fn on_stdout(mut self, f: impl FnMut(OutputMessage) + Send + 'static) -> Self {
        self.handlers.on_stdout = Some(Box::new(f));
        self
    }

    /// Called with each chunk of standard error as it comes.
    pub fn on_stderr(mut self, f: impl FnMut(OutputMessage) + Send + 'static) -> Self {
        self.handlers.on_stderr = Some(Box::new(f));
        self
    }

    /// Called with each result as it comes.
    pub fn on_result(mut self, f: impl FnMut(Result) + Send + 'static) -> Self {
        self.handlers.on_result = Some(Box::new(f));
        self
    }

    /// Called with the exception, if the code raises one.
    pub fn on_error(mut self, f: impl FnMut(ExecutionError) + Send + 'static) -> Self {
        self.handlers.on_error = Some(Box::new(f));
        self
    }
}

/// How to create a code context: [`Sandbox::create_code_context`]'s options.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct CreateCodeContextOptions {
    language: Option<String>,
    cwd: Option<String>,
    request_timeout: Option<Duration>,
}

impl CreateCodeContextOptions {
    /// The defaults: Python in `/home/user`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The context's language (default `python`).
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// The context's working directory (default `/home/user`).
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// The request's timeout (default: the configuration's).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }
}

/// Builds and creates (or connects to) a sandbox: [`Sandbox::builder`]. Wraps
/// [`e2b::SandboxBuilder`] with the template [`DEFAULT_TEMPLATE`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SandboxBuilder {
    inner: e2b::SandboxBuilder,
}

macro_rules! forward {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            $(#[$doc])*
            pub fn $name(self, $($arg: $ty),*) -> Self {
                Self { inner: self.inner.$name($($arg),*) }
            }
        )*
    };
}
pub(crate) use forward;

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
        /// Whether the sandbox may reach the internet. See
        /// [`e2b::SandboxBuilder::allow_internet_access`].
        allow_internet_access(allow: bool);
        /// The sandbox's network. See [`e2b::SandboxBuilder::network`].
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
        /// Overrides debug mode (the code interpreter at `http://localhost:49999`).
        debug(debug: bool);
        /// Overrides the request timeout.
        request_timeout(timeout: Option<Duration>);
    }

    /// The `e2b` builder inside, for settings made there.
    pub fn into_inner(self) -> e2b::SandboxBuilder {
        self.inner
    }

    /// Creates the sandbox. See [`e2b::SandboxBuilder::create`].
    ///
    /// # Errors
    ///
    /// As [`e2b::SandboxBuilder::create`] and [`Sandbox::new`].
    pub async fn create(self) -> e2b::Result<Sandbox> {
        Sandbox::new(self.inner.create().await?)
    }

    /// Connects to a sandbox by id. See [`e2b::SandboxBuilder::connect`].
    ///
    /// # Errors
    ///
    /// As [`e2b::SandboxBuilder::connect`] and [`Sandbox::new`].
    pub async fn connect(self, sandbox_id: &str) -> e2b::Result<Sandbox> {
        Sandbox::new(self.inner.connect(sandbox_id).await?)
    }
}

impl From<e2b::SandboxBuilder> for SandboxBuilder {
    /// Keeps the builder's template (`base` unless set: set one that runs the code
    /// interpreter).
    fn from(inner: e2b::SandboxBuilder) -> Self {
        SandboxBuilder { inner }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_are_classified_as_the_official_sdks_do() {
        let e = status_error(StatusCode::NOT_FOUND, b"context 'x' not found");
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "context 'x' not found");
        assert_eq!(e.http_status(), Some(404));
        let e = status_error(StatusCode::BAD_GATEWAY, b"sandbox gone");
        assert!(e.is_timeout());
        assert!(
            e.to_string()
                .starts_with("sandbox gone: This error is likely due to sandbox timeout.")
        );
        let e = status_error(StatusCode::INTERNAL_SERVER_ERROR, b" boom \n");
        assert!(e.is_sandbox());
        assert_eq!(e.to_string(), "500 Internal Server Error: boom");
        let e = status_error(StatusCode::SERVICE_UNAVAILABLE, b"");
        assert_eq!(e.to_string(), "503 Service Unavailable");
    }
}
