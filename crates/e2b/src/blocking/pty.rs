//! The blocking twin of [`crate::pty`].

use std::time::Duration;

use bytes::Bytes;

use super::{CommandHandle, Runtime};
use crate::error::Result;
use crate::pty::{PtyOptions, PtySize};

/// Terminals, used synchronously: the twin of [`crate::Pty`].
#[derive(Debug, Clone)]
pub struct Pty {
    pub(crate) inner: crate::Pty,
    pub(crate) rt: Runtime,
}

impl Pty {
    /// Starts `bash -i -l` in a terminal; iterate the handle for its output.
    ///
    /// # Errors
    ///
    /// As [`crate::Pty::create`].
    pub fn create(&self, options: PtyOptions) -> Result<CommandHandle> {
        let pty = self.inner.clone();
        let handle = self.rt.run(async move { pty.create(options).await })?;
        Ok(CommandHandle::new(handle, self.rt.clone()))
    }

    /// Attaches to a running terminal.
    ///
    /// # Errors
    ///
    /// As [`crate::Pty::connect`].
    pub fn connect(&self, pid: u32, timeout: Option<Duration>) -> Result<CommandHandle> {
        let pty = self.inner.clone();
        let handle = self
            .rt
            .run(async move { pty.connect(pid, timeout).await })?;
        Ok(CommandHandle::new(handle, self.rt.clone()))
    }

    /// Types into a terminal.
    ///
    /// # Errors
    ///
    /// As [`crate::Pty::send_stdin`].
    pub fn send_stdin(&self, pid: u32, data: impl Into<Bytes>) -> Result<()> {
        let (pty, data) = (self.inner.clone(), data.into());
        self.rt.run(async move { pty.send_stdin(pid, data).await })
    }

    /// Resizes a terminal.
    ///
    /// # Errors
    ///
    /// As [`crate::Pty::resize`].
    pub fn resize(&self, pid: u32, size: PtySize) -> Result<()> {
        let pty = self.inner.clone();
        self.rt.run(async move { pty.resize(pid, size).await })
    }

    /// Kills a terminal's shell.
    ///
    /// # Errors
    ///
    /// As [`crate::Pty::kill`].
    pub fn kill(&self, pid: u32) -> Result<bool> {
        let pty = self.inner.clone();
        self.rt.run(async move { pty.kill(pid).await })
    }
}
