//! A started command: [`CommandHandle`] owns its event stream and decodes its output;
//! [`CommandControl`] kills, feeds and resizes it from anywhere.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use e2b_envd::ConnectError;
use e2b_envd::pb::process::{
    ProcessEvent, process_event::Event, process_event::data_event::Output, process_input::Input,
};
use futures_core::Stream;
use futures_util::StreamExt as _;

use crate::envd::Envd;
use crate::error::{Error, Result};

use super::{CommandResult, OutputCallback, close_stdin, kill, resize, send_input};

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

pub(crate) type EventStream =
    Pin<Box<dyn Stream<Item = std::result::Result<Option<ProcessEvent>, ConnectError>> + Send>>;

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
    /// As [`Commands::close_stdin`](super::Commands::close_stdin).
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
    pub(super) async fn open(
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
    /// As [`Commands::close_stdin`](super::Commands::close_stdin).
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
    /// [`Commands::connect`](super::Commands::connect).
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
