//! The blocking twin of [`crate::commands`].

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;

use super::{Runtime, wait};
use crate::commands::{CommandEvent, CommandResult, ProcessInfo, RunOptions};
use crate::error::{Error, Result};
use crate::pty::PtySize;

/// Runs commands synchronously: the twin of [`crate::Commands`].
#[derive(Debug, Clone)]
pub struct Commands {
    pub(crate) inner: crate::Commands,
    pub(crate) rt: Runtime,
}

impl Commands {
    /// Runs `cmd` in the foreground and waits for it; callbacks in `options` run on the
    /// runtime thread.
    ///
    /// # Errors
    ///
    /// As [`crate::Commands::run`] ([`Error::CommandExit`] for a non-zero exit).
    pub fn run(&self, cmd: &str, options: RunOptions) -> Result<CommandResult> {
        let (commands, cmd) = (self.inner.clone(), cmd.to_owned());
        self.rt
            .run(async move { commands.run(&cmd, options).await })
    }

    /// Starts `cmd` in the background (no deadline unless set).
    ///
    /// # Errors
    ///
    /// As [`crate::Commands::run_background`].
    pub fn run_background(&self, cmd: &str, options: RunOptions) -> Result<CommandHandle> {
        let (commands, cmd) = (self.inner.clone(), cmd.to_owned());
        let handle = self
            .rt
            .run(async move { commands.run_background(&cmd, options).await })?;
        Ok(CommandHandle::new(handle, self.rt.clone()))
    }

    /// Attaches to a running process.
    ///
    /// # Errors
    ///
    /// As [`crate::Commands::connect`].
    pub fn connect(&self, pid: u32, timeout: Option<Duration>) -> Result<CommandHandle> {
        let commands = self.inner.clone();
        let handle = self
            .rt
            .run(async move { commands.connect(pid, timeout).await })?;
        Ok(CommandHandle::new(handle, self.rt.clone()))
    }

    /// The running processes.
    ///
    /// # Errors
    ///
    /// As [`crate::Commands::list`].
    pub fn list(&self) -> Result<Vec<ProcessInfo>> {
        let commands = self.inner.clone();
        self.rt.run(async move { commands.list().await })
    }

    /// Kills a process; `false` when there was none.
    ///
    /// # Errors
    ///
    /// As [`crate::Commands::kill`].
    pub fn kill(&self, pid: u32) -> Result<bool> {
        let commands = self.inner.clone();
        self.rt.run(async move { commands.kill(pid).await })
    }

    /// Writes to a process's stdin.
    ///
    /// # Errors
    ///
    /// As [`crate::Commands::send_stdin`].
    pub fn send_stdin(&self, pid: u32, data: impl Into<Bytes>) -> Result<()> {
        let (commands, data) = (self.inner.clone(), data.into());
        self.rt
            .run(async move { commands.send_stdin(pid, data).await })
    }

    /// Closes a process's stdin.
    ///
    /// # Errors
    ///
    /// As [`crate::Commands::close_stdin`].
    pub fn close_stdin(&self, pid: u32) -> Result<()> {
        let commands = self.inner.clone();
        self.rt.run(async move { commands.close_stdin(pid).await })
    }

    /// Streams what `reader` yields to a process's stdin in one client-streaming call.
    ///
    /// # Errors
    ///
    /// As [`crate::Commands::stream_input`]; a read error ends the input early.
    pub fn stream_input(
        &self,
        pid: u32,
        reader: impl Read,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Some(Ok(chunk)) => Some((chunk, rx)),
                Some(Err(_)) | None => None,
            }
        });
        let commands = self.inner.clone();
        let done = self
            .rt
            .spawn(async move { commands.stream_input(pid, stream, timeout).await });
        super::files::pump(reader, &tx);
        drop(tx);
        wait(done)?
    }
}

/// A started command, used synchronously: the twin of [`crate::CommandHandle`].
///
/// Iterating yields its output as it arrives. **Dropping it disconnects; the process keeps
/// running.** Nothing runs in the background on its behalf.
#[derive(Debug)]
pub struct CommandHandle {
    inner: Option<crate::CommandHandle>,
    control: CommandControl,
    rt: Runtime,
}

impl CommandHandle {
    pub(crate) fn new(inner: crate::CommandHandle, rt: Runtime) -> Self {
        Self {
            control: CommandControl {
                inner: inner.control(),
                rt: rt.clone(),
            },
            inner: Some(inner),
            rt,
        }
    }

    /// Runs `f` on the async handle on the runtime thread and puts the handle back.
    fn with<T, F>(&mut self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut crate::CommandHandle) -> futures_util::future::BoxFuture<'a, T>
            + Send
            + 'static,
    {
        let Some(mut handle) = self.inner.take() else {
            return Err(Error::sandbox(format!(
                "the handle of process {} was lost by an earlier failure",
                self.control.pid()
            )));
        };
        let (handle, out) = self.rt.run_plain(async move {
            let out = f(&mut handle).await;
            (handle, out)
        })?;
        self.inner = Some(handle);
        Ok(out)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.control.pid()
    }

    /// A clonable handle to kill, feed or resize the process from another thread.
    pub fn control(&self) -> CommandControl {
        self.control.clone()
    }

    /// The result, once the end event has arrived.
    pub fn result(&self) -> Option<&CommandResult> {
        self.inner.as_ref().and_then(crate::CommandHandle::result)
    }

    /// Stdout received so far.
    pub fn stdout(&self) -> &str {
        self.inner.as_ref().map_or("", |h| h.stdout())
    }

    /// Stderr received so far.
    pub fn stderr(&self) -> &str {
        self.inner.as_ref().map_or("", |h| h.stderr())
    }

    /// The next chunk of output; `None` at the end. See
    /// [`crate::CommandHandle::next_event`].
    pub fn next_event(&mut self) -> Option<Result<CommandEvent>> {
        match self.with(|h| Box::pin(h.next_event())) {
            Ok(event) => event,
            Err(e) => Some(Err(e)),
        }
    }

    /// Waits for the end.
    ///
    /// # Errors
    ///
    /// As [`crate::CommandHandle::wait`].
    pub fn wait(&mut self) -> Result<CommandResult> {
        self.with(|h| Box::pin(h.wait()))?
    }

    /// Waits for the end, passing output to the callbacks (called on the runtime thread).
    ///
    /// # Errors
    ///
    /// As [`crate::CommandHandle::wait`].
    pub fn wait_with(
        &mut self,
        on_stdout: impl FnMut(&str) + Send + 'static,
        on_stderr: impl FnMut(&str) + Send + 'static,
    ) -> Result<CommandResult> {
        self.with(move |h| Box::pin(h.wait_with(on_stdout, on_stderr)))?
    }

    /// Kills the process; `false` when it was already gone.
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub fn kill(&self) -> Result<bool> {
        self.control.kill()
    }

    /// Writes to its stdin (or terminal).
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub fn send_stdin(&self, data: impl Into<Bytes>) -> Result<()> {
        self.control.send_stdin(data)
    }

    /// Closes its stdin.
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub fn close_stdin(&self) -> Result<()> {
        self.control.close_stdin()
    }

    /// Resizes its terminal (PTY processes only).
    ///
    /// # Errors
    ///
    /// As [`crate::CommandControl::resize`].
    pub fn resize(&self, size: PtySize) -> Result<()> {
        self.control.resize(size)
    }

    /// Stops receiving output; the process keeps running.
    pub fn disconnect(&mut self) {
        if let Some(handle) = &mut self.inner {
            handle.disconnect();
        }
    }
}

impl Iterator for CommandHandle {
    type Item = Result<CommandEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event()
    }
}

/// Kills, feeds and resizes a command from any thread: the twin of
/// [`crate::CommandControl`], taken from [`CommandHandle::control`]. Dropping it does nothing.
///
/// ```no_run
/// # fn demo(sandbox: &e2b::blocking::Sandbox) -> e2b::Result<()> {
/// let mut handle = sandbox.commands().run_background("sleep 60", e2b::RunOptions::new())?;
/// let control = handle.control();
/// std::thread::spawn(move || control.kill());
/// let _ = handle.wait();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CommandControl {
    inner: crate::CommandControl,
    rt: Runtime,
}

impl CommandControl {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// Kills the process with SIGKILL; `false` when it was already gone.
    ///
    /// # Errors
    ///
    /// As [`crate::CommandControl::kill`].
    pub fn kill(&self) -> Result<bool> {
        let control = self.inner.clone();
        self.rt.run(async move { control.kill().await })
    }

    /// Writes to the process's stdin, or to its terminal for a PTY.
    ///
    /// # Errors
    ///
    /// As [`crate::CommandControl::send_stdin`].
    pub fn send_stdin(&self, data: impl Into<Bytes>) -> Result<()> {
        let (control, data) = (self.inner.clone(), data.into());
        self.rt.run(async move { control.send_stdin(data).await })
    }

    /// Closes the process's stdin.
    ///
    /// # Errors
    ///
    /// As [`crate::CommandControl::close_stdin`].
    pub fn close_stdin(&self) -> Result<()> {
        let control = self.inner.clone();
        self.rt.run(async move { control.close_stdin().await })
    }

    /// Resizes the terminal of a PTY process.
    ///
    /// # Errors
    ///
    /// As [`crate::CommandControl::resize`].
    pub fn resize(&self, size: PtySize) -> Result<()> {
        let control = self.inner.clone();
        self.rt.run(async move { control.resize(size).await })
    }
}
