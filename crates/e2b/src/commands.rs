//! Running commands in a sandbox: foreground, background, attach, list, kill and stdin.
//!
//! Every command runs as `/bin/bash -l -c <cmd>` through envd's `process.Process` service.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use e2b_envd::ConnectError;
use e2b_envd::pb::process::{
    self as pb, CloseStdinRequest, ConnectRequest, ListRequest, ProcessConfig, ProcessEvent,
    ProcessInput, ProcessSelector, SendInputRequest, SendSignalRequest, Signal, StartRequest,
    StreamInputRequest, UpdateRequest, process_event::Event, process_event::data_event::Output,
    process_input::Input, process_selector::Selector, stream_input_request,
};
use futures_core::Stream;
use futures_util::StreamExt as _;

use crate::envd::{ENVD_CLOSE_STDIN, ENVD_COMMANDS_STDIN, Envd};
use crate::error::{Error, Result};

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

/// One chunk of output of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandEvent {
    /// Output on stdout.
    Stdout {
        /// Decoded incrementally: a character split across chunks comes out whole.
        text: String,
        /// The bytes as the process wrote them.
        raw: Bytes,
    },
    /// Output on stderr.
    Stderr {
        /// Decoded incrementally.
        text: String,
        /// The bytes as written.
        raw: Bytes,
    },
    /// Output of a pseudo-terminal (raw bytes; terminals are not necessarily UTF-8).
    Pty(Bytes),
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

/// Decodes UTF-8 arriving in chunks, keeping an incomplete trailing character for the next
/// chunk; invalid bytes become U+FFFD (as Python's incremental decoder with `replace`).
#[derive(Debug, Default)]
pub(crate) struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    pub(crate) fn decode(&mut self, chunk: &[u8]) -> String {
        let mut input = std::mem::take(&mut self.pending);
        input.extend_from_slice(chunk);
        let mut out = String::with_capacity(input.len());
        let mut rest = &input[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // The first `valid_up_to` bytes are valid UTF-8 by definition.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(len) => {
                            out.push('\u{FFFD}');
                            rest = &after[len..];
                        }
                        None => {
                            self.pending = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// Flushes an incomplete trailing character as U+FFFD.
    pub(crate) fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            String::new()
        } else {
            self.pending.clear();
            "\u{FFFD}".to_owned()
        }
    }
}

type EventStream =
    Pin<Box<dyn Stream<Item = std::result::Result<Option<ProcessEvent>, ConnectError>> + Send>>;

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

/// Kills, feeds and resizes a command from anywhere: a cheap clone taken from
/// [`CommandHandle::control`]. Dropping it does nothing.
#[derive(Debug, Clone)]
pub struct CommandControl {
    envd: Arc<Envd>,
    pid: u32,
    pty: bool,
}

impl CommandControl {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills the process with SIGKILL; `false` when it was already gone.
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub async fn kill(&self) -> Result<bool> {
        kill(&self.envd, self.pid).await
    }

    /// Writes to the process's stdin, or to its terminal for a PTY.
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub async fn send_stdin(&self, data: impl Into<Bytes>) -> Result<()> {
        let data = data.into().to_vec();
        let input = if self.pty {
            Input::Pty(data)
        } else {
            Input::Stdin(data)
        };
        send_input(&self.envd, self.pid, input).await
    }

    /// Closes the process's stdin.
    ///
    /// # Errors
    ///
    /// As [`Commands::close_stdin`].
    pub async fn close_stdin(&self) -> Result<()> {
        close_stdin(&self.envd, self.pid).await
    }

    /// Resizes the terminal of a PTY process.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a process without a terminal or a zero size.
    pub async fn resize(&self, size: crate::pty::PtySize) -> Result<()> {
        if !self.pty {
            return Err(Error::invalid_argument(format!(
                "process {} has no terminal to resize",
                self.pid
            )));
        }
        resize(&self.envd, self.pid, size.cols, size.rows).await
    }
}

/// A started command (or PTY): its pid, its output as it arrives, and its end.
///
/// Iterate its output with [`next_event`](Self::next_event) or [`events`](Self::events), or
/// wait for the end with [`wait`](Self::wait). The output is also accumulated
/// ([`stdout`](Self::stdout), [`stderr`](Self::stderr)).
///
/// **Dropping the handle disconnects; the process keeps running** (kill it with
/// [`kill`](Self::kill) first if that is what you want). The handle spawns no task: nothing
/// is left behind when it is dropped.
pub struct CommandHandle {
    control: CommandControl,
    events: Option<EventStream>,
    stdout_decoder: Utf8Decoder,
    stderr_decoder: Utf8Decoder,
    stdout: String,
    stderr: String,
    on_stdout: Option<OutputCallback>,
    on_stderr: Option<OutputCallback>,
    end: Option<CommandResult>,
}

impl fmt::Debug for CommandHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandHandle")
            .field("pid", &self.control.pid)
            .field("pty", &self.control.pty)
            .field("connected", &self.events.is_some())
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl CommandHandle {
    async fn open(
        envd: &Arc<Envd>,
        open: impl Future<Output = std::result::Result<EventStream, ConnectError>>,
        request_timeout: Option<Duration>,
        pty: bool,
        on_stdout: Option<OutputCallback>,
        on_stderr: Option<OutputCallback>,
    ) -> Result<Self> {
        // Opening (until the start event) is bounded by the request timeout even when the
        // command itself has no deadline.
        let limit = request_timeout
            .or(envd.request_timeout)
            .filter(|t| !t.is_zero());
        let first = async {
            let mut stream = open.await?;
            loop {
                match stream.next().await {
                    Some(Ok(Some(ProcessEvent {
                        event: Some(Event::Start(start)),
                    }))) => return Ok(Ok((start.pid, stream))),
                    Some(Ok(Some(ProcessEvent {
                        event: Some(Event::Keepalive(_)),
                    }))) => continue,
                    Some(Ok(other)) => {
                        return Ok(Err(Error::sandbox(format!(
                            "expected a start event first, got {other:?}"
                        ))));
                    }
                    Some(Err(e)) => return Err(e),
                    None => {
                        return Ok(Err(Error::sandbox(
                            "the process stream ended before the start event",
                        )));
                    }
                }
            }
        };
        let outcome = match limit {
            Some(limit) => match tokio::time::timeout(limit, first).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    return Err(Error::timeout(format!(
                        "starting the process took longer than the request timeout of {limit:?}"
                    )));
                }
            },
            None => first.await,
        };
        let (pid, stream) = match outcome {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(envd.rpc_error(e).await),
        };
        Ok(Self {
            control: CommandControl {
                envd: envd.clone(),
                pid,
                pty,
            },
            events: Some(stream),
            stdout_decoder: Utf8Decoder::default(),
            stderr_decoder: Utf8Decoder::default(),
            stdout: String::new(),
            stderr: String::new(),
            on_stdout,
            on_stderr,
            end: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.control.pid
    }

    /// A clonable handle to kill, feed or resize the process from another task.
    pub fn control(&self) -> CommandControl {
        self.control.clone()
    }

    /// Stdout received so far.
    pub fn stdout(&self) -> &str {
        &self.stdout
    }

    /// Stderr received so far.
    pub fn stderr(&self) -> &str {
        &self.stderr
    }

    /// The result, once the end event has arrived.
    pub fn result(&self) -> Option<&CommandResult> {
        self.end.as_ref()
    }

    /// The next chunk of output; `None` once the process has ended (see
    /// [`result`](Self::result)) or after [`disconnect`](Self::disconnect).
    ///
    /// # Errors
    ///
    /// The error that broke the stream: [`Error::Timeout`] when the sandbox went away or the
    /// deadline passed; others as mapped from envd. The stream is over after an error.
    pub async fn next_event(&mut self) -> Option<Result<CommandEvent>> {
        loop {
            let stream = self.events.as_mut()?;
            let item = stream.next().await;
            match item {
                Some(Ok(Some(ProcessEvent { event: Some(event) }))) => match event {
                    Event::Start(_) | Event::Keepalive(_) => continue,
                    Event::Data(data) => match data.output {
                        Some(Output::Stdout(bytes)) => {
                            let text = self.stdout_decoder.decode(&bytes);
                            self.stdout.push_str(&text);
                            if let Some(callback) = &mut self.on_stdout {
                                callback(&text);
                            }
                            return Some(Ok(CommandEvent::Stdout {
                                text,
                                raw: Bytes::from(bytes),
                            }));
                        }
                        Some(Output::Stderr(bytes)) => {
                            let text = self.stderr_decoder.decode(&bytes);
                            self.stderr.push_str(&text);
                            if let Some(callback) = &mut self.on_stderr {
                                callback(&text);
                            }
                            return Some(Ok(CommandEvent::Stderr {
                                text,
                                raw: Bytes::from(bytes),
                            }));
                        }
                        Some(Output::Pty(bytes)) => {
                            return Some(Ok(CommandEvent::Pty(Bytes::from(bytes))));
                        }
                        None => continue,
                    },
                    Event::End(end) => {
                        // Read on to the end-of-stream frame that follows, so the connection
                        // goes back to the pool instead of being closed (bounded, in case a
                        // peer keeps the stream open).
                        if let Some(mut stream) = self.events.take() {
                            let drain = async { while let Some(Ok(_)) = stream.next().await {} };
                            let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
                        }
                        let tail = self.stdout_decoder.finish();
                        self.stdout.push_str(&tail);
                        let tail = self.stderr_decoder.finish();
                        self.stderr.push_str(&tail);
                        self.end = Some(CommandResult {
                            stdout: std::mem::take(&mut self.stdout),
                            stderr: std::mem::take(&mut self.stderr),
                            exit_code: end.exit_code,
                            error: end.error,
                        });
                        if let Some(result) = &self.end {
                            self.stdout.clone_from(&result.stdout);
                            self.stderr.clone_from(&result.stderr);
                        }
                        return None;
                    }
                },
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    self.events = None;
                    return Some(Err(self.control.envd.rpc_error(e).await));
                }
                None => {
                    self.events = None;
                    return Some(Err(Error::sandbox(format!(
                        "the stream of process {} ended without an end event",
                        self.control.pid
                    ))));
                }
            }
        }
    }

    /// The output as a `Stream` (borrowing the handle); see [`next_event`](Self::next_event).
    pub fn events(&mut self) -> impl Stream<Item = Result<CommandEvent>> + Send + '_ {
        futures_util::stream::unfold(self, |handle| async move {
            let event = handle.next_event().await?;
            Some((event, handle))
        })
    }

    /// Waits for the process to end, passing output to the callbacks given at start.
    ///
    /// # Errors
    ///
    /// [`Error::CommandExit`] with the result when the exit code is not zero; the stream's
    /// errors as [`next_event`](Self::next_event); [`Error::Sandbox`] after
    /// [`disconnect`](Self::disconnect).
    pub async fn wait(&mut self) -> Result<CommandResult> {
        while let Some(event) = self.next_event().await {
            event?;
        }
        let Some(result) = self.end.clone() else {
            return Err(Error::sandbox(format!(
                "disconnected from process {} before it ended",
                self.control.pid
            )));
        };
        if result.exit_code != 0 {
            return Err(Error::CommandExit(Box::new(result)));
        }
        Ok(result)
    }

    /// As [`wait`](Self::wait), with callbacks for this wait (replacing those given at start).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub async fn wait_with(
        &mut self,
        on_stdout: impl FnMut(&str) + Send + 'static,
        on_stderr: impl FnMut(&str) + Send + 'static,
    ) -> Result<CommandResult> {
        self.on_stdout = Some(Box::new(on_stdout));
        self.on_stderr = Some(Box::new(on_stderr));
        self.wait().await
    }

    /// Kills the process with SIGKILL; `false` when it was already gone.
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub async fn kill(&self) -> Result<bool> {
        self.control.kill().await
    }

    /// Writes to the process's stdin (or terminal).
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub async fn send_stdin(&self, data: impl Into<Bytes>) -> Result<()> {
        self.control.send_stdin(data).await
    }

    /// Closes the process's stdin.
    ///
    /// # Errors
    ///
    /// As [`Commands::close_stdin`].
    pub async fn close_stdin(&self) -> Result<()> {
        self.control.close_stdin().await
    }

    /// Resizes the terminal (PTY processes only).
    ///
    /// # Errors
    ///
    /// As [`CommandControl::resize`].
    pub async fn resize(&self, size: crate::pty::PtySize) -> Result<()> {
        self.control.resize(size).await
    }

    /// Stops receiving events; the process keeps running and can be attached to again with
    /// [`Commands::connect`].
    pub fn disconnect(&mut self) {
        self.events = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_joins_split_characters() {
        let mut d = Utf8Decoder::default();
        let euro = "€".as_bytes();
        assert_eq!(d.decode(&euro[..1]), "");
        assert_eq!(d.decode(&euro[1..2]), "");
        assert_eq!(d.decode(&[euro[2], b'x']), "€x");
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn decoder_replaces_invalid_bytes() {
        let mut d = Utf8Decoder::default();
        assert_eq!(d.decode(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(d.decode(b"c\xe2\x82"), "c");
        assert_eq!(d.finish(), "\u{FFFD}");
        assert_eq!(d.decode(b"\xe2\x82("), "\u{FFFD}(");
    }
}
