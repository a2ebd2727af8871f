//! Interactive terminals: `bash -i -l` in a pseudo-terminal.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use e2b_envd::pb::process::{self as pb, ProcessConfig, StartRequest, process_input::Input};

use crate::commands::{self, CommandHandle};
use crate::envd::Envd;
use crate::error::{Error, Result};

/// The stream deadline of a PTY unless set: 60 s, as the official SDKs.
pub const DEFAULT_PTY_TIMEOUT: Duration = Duration::from_secs(60);

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PtySize {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
}

impl PtySize {
    /// A size of `cols` × `rows`.
    pub fn new(cols: u32, rows: u32) -> Self {
        Self { cols, rows }
    }
}

impl Default for PtySize {
    /// 80 × 24.
    fn default() -> Self {
        Self { cols: 80, rows: 24 }
    }
}

/// Options of [`Pty::create`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct PtyOptions {
    pub(crate) size: PtySize,
    pub(crate) user: Option<String>,
    pub(crate) cwd: Option<String>,
    pub(crate) envs: HashMap<String, String>,
    pub(crate) timeout: Option<Duration>,
}

impl PtyOptions {
    /// 80 × 24, default user and cwd, [`DEFAULT_PTY_TIMEOUT`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The terminal size.
    pub fn size(mut self, size: PtySize) -> Self {
        self.size = size;
        self
    }

    /// Runs the shell as `user`.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Starts the shell in `cwd`.
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Adds an environment variable (on top of `TERM=xterm-256color`, `LANG=C.UTF-8`,
    /// `LC_ALL=C.UTF-8`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.insert(key.into(), value.into());
        self
    }

    /// How long the terminal may live; zero means no limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Interactive terminals in a sandbox: `sandbox.pty()`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pty {
    envd: Arc<Envd>,
}

impl Pty {
    pub(crate) fn new(envd: Arc<Envd>) -> Self {
        Self { envd }
    }

    /// Starts `bash -i -l` in a terminal. Its output arrives as
    /// [`CommandEvent::Pty`](crate::CommandEvent::Pty) events of the returned handle; type
    /// into it with [`CommandHandle::send_stdin`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a zero size; others as mapped from envd.
    ///
    /// ```no_run
    /// # async fn demo(sandbox: &e2b::Sandbox) -> e2b::Result<()> {
    /// use e2b::{CommandEvent, PtyOptions, PtySize};
    ///
    /// let mut terminal = sandbox.pty().create(PtyOptions::new().size(PtySize::new(100, 30))).await?;
    /// terminal.send_stdin("echo hi; exit\n").await?;
    /// while let Some(event) = terminal.next_event().await {
    ///     if let CommandEvent::Pty(bytes) = event? {
    ///         print!("{}", String::from_utf8_lossy(&bytes));
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn create(&self, options: PtyOptions) -> Result<CommandHandle> {
        let PtySize { cols, rows } = options.size;
        if cols == 0 || rows == 0 {
            return Err(Error::invalid_argument(format!(
                "a terminal size needs at least one column and one row, got {cols}x{rows}"
            )));
        }
        let mut envs: HashMap<String, String> = [
            ("TERM", "xterm-256color"),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C.UTF-8"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        envs.extend(options.envs);
        let message = StartRequest {
            process: Some(ProcessConfig {
                cmd: "/bin/bash".to_owned(),
                args: vec!["-i".to_owned(), "-l".to_owned()],
                envs,
                cwd: options.cwd,
            }),
            pty: Some(pb::Pty {
                size: Some(pb::pty::Size { cols, rows }),
            }),
            tag: None,
            stdin: None,
        };
        let timeout = options.timeout.unwrap_or(DEFAULT_PTY_TIMEOUT);
        let request = self
            .envd
            .stream_request(message, options.user.as_deref(), Some(timeout));
        commands::start_stream(&self.envd, request, None, true, None, None).await
    }

    /// Attaches to a running terminal by pid.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when no such process runs.
    pub async fn connect(&self, pid: u32, timeout: Option<Duration>) -> Result<CommandHandle> {
        commands::connect_process(&self.envd, pid, timeout, true).await
    }

    /// Types `data` into a terminal.
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub async fn send_stdin(&self, pid: u32, data: impl Into<Bytes>) -> Result<()> {
        commands::send_input(&self.envd, pid, Input::Pty(data.into().to_vec())).await
    }

    /// Resizes a terminal.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a zero size; others as mapped from envd.
    pub async fn resize(&self, pid: u32, size: PtySize) -> Result<()> {
        commands::resize(&self.envd, pid, size.cols, size.rows).await
    }

    /// Kills a terminal's shell; `false` when there was no such process.
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub async fn kill(&self, pid: u32) -> Result<bool> {
        commands::kill(&self.envd, pid).await
    }
}
