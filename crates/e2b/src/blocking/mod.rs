//! The synchronous API: the async API run on one background runtime thread, with no `async`
//! in any signature (as `reqwest::blocking`).
//!
//! Each [`Sandbox`] created or connected here starts one named thread
//! (`e2b-blocking-runtime`) with a single-threaded tokio runtime; the sandbox and every handle
//! taken from it ([`Filesystem`], [`Commands`], [`Pty`], [`CommandHandle`], ...) send their
//! calls to that thread and park until the answer comes back. The thread ends when the last of
//! them is dropped. Streams become [`Iterator`]s and byte streams [`std::io::Read`].
//!
//! # Panics
//!
//! Calling a blocking method from inside an async runtime panics ("Cannot block the current
//! thread from within a runtime"), because it would stall that runtime. From async code use
//! the async API, or move the blocking call to `tokio::task::spawn_blocking`.
//!
//! ```no_run
//! use e2b::blocking::Sandbox;
//! use e2b::RunOptions;
//!
//! # fn main() -> e2b::Result<()> {
//! let sandbox = Sandbox::create()?;
//! let result = sandbox.commands().run("echo hello", RunOptions::new())?;
//! println!("{}", result.stdout);
//! sandbox.kill()?;
//! # Ok(()) }
//! ```

mod commands;
mod files;
mod pty;
mod sandbox;

pub use commands::{CommandHandle, Commands};
pub use files::{FileReader, Filesystem, WatchHandle};
pub use pty::Pty;
pub use sandbox::{Sandbox, SandboxBuilder, SandboxGuard, SandboxPaginator};

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// The runtime thread shared by a blocking sandbox and its handles.
#[derive(Debug)]
pub(crate) struct Runtime {
    handle: tokio::runtime::Handle,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Runtime {
    /// Starts the thread.
    pub(crate) fn start() -> Result<Arc<Self>> {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("e2b-blocking-runtime".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async {
                    let _ = shutdown_rx.await;
                });
            })
            .map_err(|e| Error::sandbox(format!("starting the e2b runtime thread failed: {e}")))?;
        let handle = match ready_rx.recv() {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => {
                return Err(Error::sandbox(format!(
                    "building the e2b runtime failed: {e}"
                )));
            }
            Err(_) => return Err(Error::sandbox("the e2b runtime thread exited at start")),
        };
        Ok(Arc::new(Self {
            handle,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }))
    }

    /// Spawns `future` on the runtime thread; the receiver yields its output.
    pub(crate) fn spawn<F>(&self, future: F) -> tokio::sync::oneshot::Receiver<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.handle.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx
    }

    /// Runs `future` on the runtime thread and parks this thread until it is done.
    ///
    /// # Panics
    ///
    /// Inside an async runtime (see the module docs).
    pub(crate) fn run<F, T>(&self, future: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        wait(self.spawn(future))?
    }

    /// Runs a future whose output is not a `Result`.
    pub(crate) fn run_plain<F>(&self, future: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        wait(self.spawn(future))
    }
}

/// Parks until `rx` answers.
pub(crate) fn wait<T>(rx: tokio::sync::oneshot::Receiver<T>) -> Result<T> {
    rx.blocking_recv()
        .map_err(|_| Error::sandbox("the e2b runtime thread stopped before the call finished"))
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}
