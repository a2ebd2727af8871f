//! Running commands in a sandbox: foreground, background, attach, list, kill and stdin.
//!
//! Every command runs as `/bin/bash -l -c <cmd>` through envd's `process.Process` service.
//!
//! [`Commands`] starts and addresses processes; a started one is a [`CommandHandle`]
//! (`handle.rs`), which owns its event stream and decodes its output.

mod handle;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use e2b_envd::ConnectError;
use e2b_envd::pb::process::{
    self as pb, CloseStdinRequest, ConnectRequest, ListRequest, ProcessConfig, ProcessInput,
    ProcessSelector, SendInputRequest, SendSignalRequest, Signal, StartRequest, StreamInputRequest,
    UpdateRequest, process_input::Input, process_selector::Selector, stream_input_request,
};
use futures_core::Stream;
use futures_util::StreamExt as _;

use crate::envd::{ENVD_CLOSE_STDIN, ENVD_COMMANDS_STDIN, Envd};
use crate::error::{Error, Result};

pub(crate) use handle::EventStream;
pub use handle::{CommandControl, CommandEvent, CommandHandle};

/// The stream deadline of a foreground command unless set: 60 s, as the official SDKs.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A callback receiving decoded output.
pub type OutputCallback = Box<dyn FnMut(&str) + Send + 'static>;

/// Options of [`Commands::run`] and [`Commands::run_background`].
///
/// ```
/// use std::time::Duration;
/// use e2b::RunOptions;
///
/// let options = RunOptions::new()
///     .env("GREETING", "hi")
///     .cwd("/tmp")
///     .user("root")
///     .timeout(Duration::from_secs(120))
///     .on_stdout(|text| print!("{text}"));
/// # let _ = options;
/// ```
#[derive(Default)]
#[must_use]
pub struct RunOptions {
    pub(crate) envs: HashMap<String, String>,
    pub(crate) user: Option<String>,
    pub(crate) cwd: Option<String>,
    pub(crate) on_stdout: Option<OutputCallback>,
    pub(crate) on_stderr: Option<OutputCallback>,
    pub(crate) stdin: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) tag: Option<String>,
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("envs", &self.envs)
            .field("user", &self.user)
            .field("cwd", &self.cwd)
            .field("on_stdout", &self.on_stdout.is_some())
            .field("on_stderr", &self.on_stderr.is_some())
            .field("stdin", &self.stdin)
            .field("timeout", &self.timeout)
            .field("request_timeout", &self.request_timeout)
            .field("tag", &self.tag)
            .finish()
    }
}

impl RunOptions {
    /// No options: the sandbox's default user, cwd and environment, stdin closed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.insert(key.into(), value.into());
        self
    }

    /// Adds environment variables.
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        envs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.envs
            .extend(envs.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Runs as `user` (default: the sandbox's default user).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Runs in `cwd` (default: the user's home).
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Called with each chunk of stdout, decoded as UTF-8 (invalid bytes become U+FFFD).
    pub fn on_stdout(mut self, callback: impl FnMut(&str) + Send + 'static) -> Self {
        self.on_stdout = Some(Box::new(callback));
        self
    }

    /// Called with each chunk of stderr, decoded as UTF-8.
    pub fn on_stderr(mut self, callback: impl FnMut(&str) + Send + 'static) -> Self {
        self.on_stderr = Some(Box::new(callback));
        self
    }

    /// Keeps stdin open as a pipe, for [`Commands::send_stdin`] (default: `/dev/null`).
    pub fn stdin(mut self, open: bool) -> Self {
        self.stdin = open;
        self
    }

    /// How long the command may run; envd kills it after that. Zero means no limit.
    ///
    /// Default: [`DEFAULT_COMMAND_TIMEOUT`] in the foreground and **no limit in the
    /// background**, so that a background command is not killed after 60 s (unlike the
    /// official SDKs, E2B issue #1074).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The limit of the request starting the command (until envd reports it started).
    /// Default: the connection's request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Tags the process, so that it can be found in [`Commands::list`].
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }
}

/// The outcome of a finished command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandResult {
    /// Everything written to stdout, decoded as UTF-8 (invalid bytes become U+FFFD).
    pub stdout: String,
    /// Everything written to stderr, decoded the same way.
    pub stderr: String,
    /// The exit code; -1 when a signal ended the process.
    pub exit_code: i32,
    /// envd's description of the failure (`"exit status 1"`, `"signal: killed"`), if any.
    pub error: Option<String>,
}

/// A running process listed by [`Commands::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// Its pid inside the sandbox.
    pub pid: u32,
    /// The tag it was started with.
    pub tag: Option<String>,
    /// The program.
    pub cmd: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables it was started with.
    pub envs: HashMap<String, String>,
    /// Its working directory, if one was given.
    pub cwd: Option<String>,
}

/// Runs commands in a sandbox: `sandbox.commands()`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Commands {
    pub(crate) envd: Arc<Envd>,
}

impl Commands {
    pub(crate) fn new(envd: Arc<Envd>) -> Self {
        Self { envd }
    }

    /// Runs `cmd` in the foreground and waits for it.
    ///
    /// # Errors
    ///
    /// [`Error::CommandExit`] carrying the output when it exits with a non-zero code;
    /// [`Error::InvalidArgument`] for an empty command or a missing `cwd`;
    /// [`Error::Timeout`] when the timeout passes or the sandbox goes away; others as mapped
    /// from envd.
    ///
    /// ```no_run
    /// # async fn demo(sandbox: &e2b::Sandbox) -> e2b::Result<()> {
    /// let result = sandbox.commands().run("echo hello", e2b::RunOptions::new()).await?;
    /// assert_eq!(result.stdout, "hello\n");
    /// # Ok(()) }
    /// ```
    pub async fn run(&self, cmd: &str, options: RunOptions) -> Result<CommandResult> {
        let timeout = options.timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT);
        let mut handle = self.start(cmd, options, timeout).await?;
        handle.wait().await
    }

    /// Starts `cmd` in the background and returns once envd reports it started.
    ///
    /// The command has no deadline unless [`RunOptions::timeout`] sets one. Dropping the
    /// handle disconnects from the command; it keeps running.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run), except that the exit code is only known to
    /// [`CommandHandle::wait`].
    ///
    /// ```no_run
    /// # async fn demo(sandbox: &e2b::Sandbox) -> e2b::Result<()> {
    /// let mut server = sandbox
    ///     .commands()
    ///     .run_background("python3 -m http.server 8000", e2b::RunOptions::new())
    ///     .await?;
    /// println!("started pid {}", server.pid());
    /// server.kill().await?;
    /// # Ok(()) }
    /// ```
    pub async fn run_background(&self, cmd: &str, options: RunOptions) -> Result<CommandHandle> {
        let timeout = options.timeout.unwrap_or(Duration::ZERO);
        self.start(cmd, options, timeout).await
    }

    async fn start(
        &self,
        cmd: &str,
        options: RunOptions,
        timeout: Duration,
    ) -> Result<CommandHandle> {
        if cmd.trim().is_empty() {
            return Err(Error::invalid_argument("the command must not be empty"));
        }
        if !options.stdin && !self.envd.at_least(ENVD_COMMANDS_STDIN) {
            return Err(Error::sandbox(format!(
                "envd {} always keeps stdin open; set RunOptions::stdin(true) or update the \
                 template",
                self.envd.version_text
            )));
        }
        let message = StartRequest {
            process: Some(ProcessConfig {
                cmd: "/bin/bash".to_owned(),
                args: vec!["-l".to_owned(), "-c".to_owned(), cmd.to_owned()],
                envs: options.envs,
                cwd: options.cwd,
            }),
            pty: None,
            tag: options.tag,
            stdin: Some(options.stdin),
        };
        let request = self
            .envd
            .stream_request(message, options.user.as_deref(), Some(timeout));
        let handle = start_stream(
            &self.envd,
            request,
            options.request_timeout,
            false,
            options.on_stdout,
            options.on_stderr,
        )
        .await?;
        Ok(handle)
    }

    /// Attaches to a running process by pid. `timeout` limits the attachment (zero or `None`:
    /// no limit); it does not kill the process.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when no such process runs.
    pub async fn connect(&self, pid: u32, timeout: Option<Duration>) -> Result<CommandHandle> {
        connect_process(&self.envd, pid, timeout, false).await
    }

    /// The processes envd started that are still running.
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub async fn list(&self) -> Result<Vec<ProcessInfo>> {
        let request = self.envd.request(ListRequest {}, None, None);
        let response = match self.envd.process.list(request).await {
            Ok(r) => r,
            Err(e) => return Err(self.envd.rpc_error(e).await),
        };
        Ok(response
            .processes
            .into_iter()
            .map(|p| {
                let config = p.config.unwrap_or_default();
                ProcessInfo {
                    pid: p.pid,
                    tag: p.tag,
                    cmd: config.cmd,
                    args: config.args,
                    envs: config.envs,
                    cwd: config.cwd,
                }
            })
            .collect())
    }

    /// Kills a process with SIGKILL; `false` when there was no such process.
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub async fn kill(&self, pid: u32) -> Result<bool> {
        kill(&self.envd, pid).await
    }

    /// Writes `data` to a process's stdin (it must have been started with
    /// [`RunOptions::stdin`]).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when no such process runs.
    pub async fn send_stdin(&self, pid: u32, data: impl Into<Bytes>) -> Result<()> {
        send_input(&self.envd, pid, Input::Stdin(data.into().to_vec())).await
    }

    /// Closes a process's stdin, so that it reads end of file.
    ///
    /// # Errors
    ///
    /// [`Error::Sandbox`] when envd is older than 0.5.2; others as mapped from envd.
    pub async fn close_stdin(&self, pid: u32) -> Result<()> {
        close_stdin(&self.envd, pid).await
    }

    /// Streams `input` to a process's stdin in one client-streaming call
    /// (`process.Process/StreamInput`), for input too large or too slow for
    /// [`send_stdin`](Self::send_stdin). `timeout` limits the whole call (`None`: no limit).
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub async fn stream_input<S>(&self, pid: u32, input: S, timeout: Option<Duration>) -> Result<()>
    where
        S: Stream<Item = Bytes> + Send + 'static,
    {
        let first = StreamInputRequest {
            event: Some(stream_input_request::Event::Start(
                stream_input_request::StartEvent {
                    process: Some(selector(pid)),
                },
            )),
        };
        let data = input.map(|chunk| StreamInputRequest {
            event: Some(stream_input_request::Event::Data(
                stream_input_request::DataEvent {
                    input: Some(ProcessInput {
                        input: Some(Input::Stdin(chunk.to_vec())),
                    }),
                },
            )),
        });
        let messages = futures_util::stream::iter([first]).chain(data);
        let mut request = e2b_envd::Request::new(messages);
        if let Some(timeout) = timeout {
            request = request.with_timeout(timeout);
        }
        match self.envd.process.stream_input(request).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.envd.rpc_error(e).await),
        }
    }
}

pub(crate) fn selector(pid: u32) -> ProcessSelector {
    ProcessSelector {
        selector: Some(Selector::Pid(pid)),
    }
}

pub(crate) async fn kill(envd: &Envd, pid: u32) -> Result<bool> {
    let message = SendSignalRequest {
        process: Some(selector(pid)),
        signal: Signal::Sigkill as i32,
    };
    match envd
        .process
        .send_signal(envd.request(message, None, None))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.code() == e2b_envd::Code::NotFound => Ok(false),
        Err(e) => Err(envd.rpc_error(e).await),
    }
}

pub(crate) async fn send_input(envd: &Envd, pid: u32, input: Input) -> Result<()> {
    let message = SendInputRequest {
        process: Some(selector(pid)),
        input: Some(ProcessInput { input: Some(input) }),
    };
    match envd
        .process
        .send_input(envd.request(message, None, None))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(envd.rpc_error(e).await),
    }
}

pub(crate) async fn close_stdin(envd: &Envd, pid: u32) -> Result<()> {
    if !envd.at_least(ENVD_CLOSE_STDIN) {
        return Err(Error::sandbox(format!(
            "closing stdin needs envd 0.5.2 or newer; this sandbox runs envd {}",
            envd.version_text
        )));
    }
    let message = CloseStdinRequest {
        process: Some(selector(pid)),
    };
    match envd
        .process
        .close_stdin(envd.request(message, None, None))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(envd.rpc_error(e).await),
    }
}

pub(crate) async fn resize(envd: &Envd, pid: u32, cols: u32, rows: u32) -> Result<()> {
    if cols == 0 || rows == 0 {
        return Err(Error::invalid_argument(format!(
            "a terminal size needs at least one column and one row, got {cols}x{rows}"
        )));
    }
    let message = UpdateRequest {
        process: Some(selector(pid)),
        pty: Some(pb::Pty {
            size: Some(pb::pty::Size { cols, rows }),
        }),
    };
    match envd.process.update(envd.request(message, None, None)).await {
        Ok(_) => Ok(()),
        Err(e) => Err(envd.rpc_error(e).await),
    }
}

pub(crate) async fn start_stream(
    envd: &Arc<Envd>,
    request: e2b_envd::Request<StartRequest>,
    request_timeout: Option<Duration>,
    pty: bool,
    on_stdout: Option<OutputCallback>,
    on_stderr: Option<OutputCallback>,
) -> Result<CommandHandle> {
    let open = async {
        let stream = envd.process.start(request).await?;
        Ok::<EventStream, ConnectError>(Box::pin(stream.map(|r| r.map(|m| m.event))))
    };
    CommandHandle::open(envd, open, request_timeout, pty, on_stdout, on_stderr).await
}

pub(crate) async fn connect_process(
    envd: &Arc<Envd>,
    pid: u32,
    timeout: Option<Duration>,
    pty: bool,
) -> Result<CommandHandle> {
    let message = ConnectRequest {
        process: Some(selector(pid)),
    };
    let request = envd.stream_request(message, None, timeout);
    let open = async {
        let stream = envd.process.connect(request).await?;
        Ok::<EventStream, ConnectError>(Box::pin(stream.map(|r| r.map(|m| m.event))))
    };
    CommandHandle::open(envd, open, None, pty, None, None).await
}
