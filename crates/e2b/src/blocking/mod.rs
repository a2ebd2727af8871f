//! The synchronous API: the async API run on one background runtime thread, with no `async`
//! in any signature (as `reqwest::blocking`).
//!
//! One named thread (`e2b-blocking-runtime`) with a single-threaded tokio runtime serves the
//! whole process: it starts with the first blocking call and runs until the process exits.
//! Every sandbox and every handle taken from one ([`Filesystem`], [`Commands`], [`Pty`],
//! [`CommandHandle`], ...) sends its calls to that thread and parks until the answer comes
//! back, so many sandboxes cost no more threads than one. Streams become [`Iterator`]s and
//! byte streams [`std::io::Read`].
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
mod snapshot;
mod template;
mod volume;

pub use commands::{CommandControl, CommandHandle, Commands};
pub use files::{FileReader, Filesystem, WatchEvents, WatchHandle};
pub use pty::Pty;
pub use sandbox::{Sandbox, SandboxBuilder, SandboxGuard, SandboxPaginator};
pub use snapshot::SnapshotPaginator;
pub use template::Template;
pub use volume::Volume;

use std::future::Future;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// The name of the runtime thread.
const THREAD_NAME: &str = "e2b-blocking-runtime";

/// A handle to the process's runtime thread, shared by every blocking sandbox and handle.
#[derive(Debug, Clone)]
pub(crate) struct Runtime {
    handle: tokio::runtime::Handle,
}

impl Runtime {
    /// The process's runtime thread, started on first use.
    ///
    /// One thread serves the whole process, so the control-plane client a
    /// [`ConnectionConfig`](crate::ConnectionConfig) keeps always runs on the runtime its
    /// pooled connections belong to.
    pub(crate) fn shared() -> Result<Self> {
        static SHARED: Mutex<Option<tokio::runtime::Handle>> = Mutex::new(None);
        // A poisoned lock only means a start panicked; the slot is still consistent.
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = &*slot {
            return Ok(Self {
                handle: handle.clone(),
            });
        }
        let handle = start_thread()?;
        *slot = Some(handle.clone());
        Ok(Self { handle })
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

/// Runs `future` on the runtime thread that serves every blocking sandbox, and parks this
/// thread until it is done. For crates that build blocking twins over this one (as
/// e2b-code-interpreter does): their async calls then share the sandboxes' runtime and
/// connection pools.
///
/// ```no_run
/// # fn main() -> e2b::Result<()> {
/// let sandbox = e2b::blocking::Sandbox::create()?;
/// let async_sandbox = sandbox.as_async().clone();
/// let running = e2b::blocking::block_on(async move { async_sandbox.is_running().await })?;
/// assert!(running);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// The future's error, or [`Error::Sandbox`] when the runtime thread cannot start.
///
/// # Panics
///
/// Inside an async runtime (see the module docs).
pub fn block_on<F, T>(future: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    Runtime::shared()?.run(future)
}

/// Starts the runtime thread, which runs for the rest of the process.
fn start_thread() -> Result<tokio::runtime::Handle> {
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(THREAD_NAME.to_owned())
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
            runtime.block_on(std::future::pending::<()>());
        })
        .map_err(|e| Error::sandbox(format!("starting the e2b runtime thread failed: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(handle)) => Ok(handle),
        Ok(Err(e)) => Err(Error::sandbox(format!(
            "building the e2b runtime failed: {e}"
        ))),
        Err(_) => Err(Error::sandbox("the e2b runtime thread exited at start")),
    }
}

/// Parks until `rx` answers.
pub(crate) fn wait<T>(rx: tokio::sync::oneshot::Receiver<T>) -> Result<T> {
    rx.blocking_recv()
        .map_err(|_| Error::sandbox("the e2b runtime thread stopped before the call finished"))
}

/// The next page of a blocking paginator's async one (`None` once it failed or ended), run
/// on `rt`: shared by [`SandboxPaginator`] and [`SnapshotPaginator`].
fn next_page<P>(inner: &mut Option<P>, rt: &Runtime) -> Result<Vec<P::Item>>
where
    P: crate::sandbox::Pages + 'static,
    P::Item: 'static,
{
    let Some(mut pages) = inner.take() else {
        return Ok(Vec::new());
    };
    let (pages, items) = rt.run_plain(async move {
        let items = pages.next_page().await;
        (pages, items)
    })?;
    *inner = Some(pages);
    items
}

/// The next item of a blocking paginator: from `buffer`, else from the next page; after a
/// failed page (returned once) the paginator ends.
fn next_listed<P>(
    inner: &mut Option<P>,
    buffer: &mut std::collections::VecDeque<P::Item>,
    rt: &Runtime,
) -> Option<Result<P::Item>>
where
    P: crate::sandbox::Pages + 'static,
    P::Item: 'static,
{
    loop {
        if let Some(item) = buffer.pop_front() {
            return Some(Ok(item));
        }
        if !inner.as_ref().is_some_and(crate::sandbox::Pages::more) {
            return None;
        }
        match next_page(inner, rt) {
            Ok(items) => buffer.extend(items),
            Err(e) => {
                *inner = None;
                return Some(Err(e));
            }
        }
    }
}
