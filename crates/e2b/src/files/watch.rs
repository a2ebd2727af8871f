//! Following changes under a directory: the streaming `WatchDir` RPC and the polling
//! watcher RPCs.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use e2b_envd::pb::filesystem::{
    self as pb, CreateWatcherRequest, GetWatcherEventsRequest, RemoveWatcherRequest,
    WatchDirRequest, watch_dir_response,
};
use futures_core::Stream;
use futures_util::StreamExt as _;

use super::{EntryInfo, Filesystem, check_path, request_timeout_error};
use crate::envd::{ENVD_RECURSIVE_WATCH, ENVD_WATCH_ENTRY, ENVD_WATCH_NETWORK_MOUNTS, Envd};
use crate::error::{Error, Result};

/// What happened to an entry under a watched directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventType {
    /// Created.
    Create,
    /// Written.
    Write,
    /// Removed.
    Remove,
    /// Renamed.
    Rename,
    /// Permissions changed.
    Chmod,
}

/// A change under a watched directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilesystemEvent {
    /// The path relative to the watched directory, e.g. `nested/file.txt`.
    pub name: String,
    /// What happened.
    pub event_type: EventType,
    /// The entry, when asked for with [`WatchOptions::include_entry`] and still present.
    pub entry: Option<EntryInfo>,
}

impl FilesystemEvent {
    fn from_pb(event: pb::FilesystemEvent) -> Option<Self> {
        let event_type = match pb::EventType::try_from(event.r#type).ok()? {
            pb::EventType::Create => EventType::Create,
            pb::EventType::Write => EventType::Write,
            pb::EventType::Remove => EventType::Remove,
            pb::EventType::Rename => EventType::Rename,
            pb::EventType::Chmod => EventType::Chmod,
            pb::EventType::Unspecified => return None,
        };
        Some(Self {
            name: event.name,
            event_type,
            entry: event.entry.and_then(EntryInfo::from_pb),
        })
    }
}

/// Options of [`Filesystem::watch_dir`] and [`Filesystem::watch_dir_polling`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct WatchOptions {
    pub(crate) recursive: bool,
    pub(crate) include_entry: bool,
    pub(crate) allow_network_mounts: bool,
    pub(crate) timeout: Option<Duration>,
}

impl WatchOptions {
    /// Only the directory itself, no entries, no network mounts, no time limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Watches subdirectories too.
    pub fn recursive(mut self, recursive: bool) -> Self {
        self.recursive = recursive;
        self
    }

    /// Attaches the entry's info to create, write and chmod events.
    pub fn include_entry(mut self, include: bool) -> Self {
        self.include_entry = include;
        self
    }

    /// Allows watching directories on network mounts.
    pub fn allow_network_mounts(mut self, allow: bool) -> Self {
        self.allow_network_mounts = allow;
        self
    }

    /// How long a streaming watch may run (zero or unset: no limit).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl Filesystem {
    fn check_watch(&self, options: &WatchOptions) -> Result<()> {
        let gate = |needed: bool, version, what: &str| {
            if needed && !self.envd.at_least(version) {
                return Err(Error::template(format!(
                    "{what} needs a newer envd; this sandbox runs envd {}",
                    self.envd.version_text
                )));
            }
            Ok(())
        };
        gate(options.recursive, ENVD_RECURSIVE_WATCH, "a recursive watch")?;
        gate(options.include_entry, ENVD_WATCH_ENTRY, "include_entry")?;
        gate(
            options.allow_network_mounts,
            ENVD_WATCH_NETWORK_MOUNTS,
            "allow_network_mounts",
        )
    }

    /// Watches a directory through the streaming `WatchDir` RPC. Returns once envd confirms
    /// the watch is in place, so changes made afterwards are seen.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for a missing directory, [`Error::InvalidArgument`] for a file.
    ///
    /// ```no_run
    /// # async fn demo(sandbox: &e2b::Sandbox) -> e2b::Result<()> {
    /// let mut watch = sandbox.files().watch_dir("/tmp", e2b::WatchOptions::new()).await?;
    /// sandbox.files().write("/tmp/new.txt", "x").await?;
    /// if let Some(event) = watch.next_event().await {
    ///     println!("{:?} {}", event?.event_type, "/tmp/new.txt");
    /// }
    /// watch.stop();
    /// # Ok(()) }
    /// ```
    pub async fn watch_dir(&self, path: &str, options: WatchOptions) -> Result<WatchHandle> {
        check_path(path)?;
        self.check_watch(&options)?;
        let message = WatchDirRequest {
            path: path.to_owned(),
            recursive: options.recursive,
            include_entry: options.include_entry,
            allow_network_mounts: options.allow_network_mounts,
        };
        let request = self
            .envd
            .stream_request(message, self.user.as_deref(), options.timeout);
        let first = async {
            let mut stream = self.envd.filesystem.watch_dir(request).await?;
            loop {
                match stream.message().await? {
                    Some(m) => match m.event {
                        Some(watch_dir_response::Event::Start(_)) => return Ok(Ok(stream)),
                        Some(watch_dir_response::Event::Keepalive(_)) => continue,
                        other => {
                            return Ok(Err(Error::sandbox(format!(
                                "expected a start event first, got {other:?}"
                            ))));
                        }
                    },
                    None => {
                        return Ok(Err(Error::sandbox(
                            "the watch stream ended before the start event",
                        )));
                    }
                }
            }
        };
        let outcome = match self.timeout() {
            Some(limit) => tokio::time::timeout(limit, first)
                .await
                .unwrap_or_else(|_| Ok(Err(request_timeout_error("watching", path, limit)))),
            None => first.await,
        };
        match outcome {
            Ok(Ok(stream)) => Ok(WatchHandle::new(self.envd.clone(), stream)),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(self.envd.rpc_error(e).await),
        }
    }

    /// Watches a directory through the polling RPCs (`CreateWatcher`, `GetWatcherEvents`,
    /// `RemoveWatcher`), as the Python sync SDK does. No stream stays open.
    ///
    /// # Errors
    ///
    /// As [`watch_dir`](Self::watch_dir).
    pub async fn watch_dir_polling(
        &self,
        path: &str,
        options: WatchOptions,
    ) -> Result<PollingWatchHandle> {
        check_path(path)?;
        self.check_watch(&options)?;
        let message = CreateWatcherRequest {
            path: path.to_owned(),
            recursive: options.recursive,
            include_entry: options.include_entry,
            allow_network_mounts: options.allow_network_mounts,
        };
        let request = self.request(message).with_header(
            e2b_envd::headers::KEEPALIVE_PING_INTERVAL,
            crate::envd::KEEPALIVE_PING_INTERVAL_SECS,
        );
        let response = self
            .rpc(self.envd.filesystem.create_watcher(request).await)
            .await?;
        Ok(PollingWatchHandle {
            files: self.clone(),
            watcher_id: response.watcher_id,
            stopped: false,
        })
    }
}

/// A streaming directory watch: [`Filesystem::watch_dir`]. A [`Stream`] of events.
///
/// Dropping it (or [`stop`](Self::stop)) closes the stream, which ends the watch in envd.
pub struct WatchHandle {
    events: Option<Pin<Box<dyn Stream<Item = Result<FilesystemEvent>> + Send>>>,
}

impl fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchHandle")
            .field("active", &self.events.is_some())
            .finish_non_exhaustive()
    }
}

impl WatchHandle {
    fn new(envd: Arc<Envd>, stream: e2b_envd::Streaming<pb::WatchDirResponse>) -> Self {
        let events = futures_util::stream::unfold(Some(stream), move |state| {
            let envd = envd.clone();
            async move {
                let mut stream = state?;
                loop {
                    match stream.message().await {
                        Ok(Some(message)) => {
                            if let Some(watch_dir_response::Event::Filesystem(event)) =
                                message.event
                                && let Some(event) = FilesystemEvent::from_pb(event)
                            {
                                return Some((Ok(event), Some(stream)));
                            }
                        }
                        Ok(None) => return None,
                        Err(e) => return Some((Err(envd.rpc_error(e).await), None)),
                    }
                }
            }
        });
        Self {
            events: Some(Box::pin(events)),
        }
    }

    /// The next event; `None` after [`stop`](Self::stop) or when the watch ended cleanly.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the watch's timeout passed or the sandbox went away; others as
    /// mapped from envd. The watch is over after an error.
    pub async fn next_event(&mut self) -> Option<Result<FilesystemEvent>> {
        self.next().await
    }

    /// Stops watching.
    pub fn stop(&mut self) {
        self.events = None;
    }
}

impl Stream for WatchHandle {
    type Item = Result<FilesystemEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(events) = self.events.as_mut() else {
            return Poll::Ready(None);
        };
        let item = std::task::ready!(events.as_mut().poll_next(cx));
        if !matches!(item, Some(Ok(_))) {
            self.events = None;
        }
        Poll::Ready(item)
    }
}

/// A polled directory watch: [`Filesystem::watch_dir_polling`].
///
/// Dropping it does not remove the watcher in envd (that needs a request); call
/// [`stop`](Self::stop).
#[derive(Debug)]
pub struct PollingWatchHandle {
    files: Filesystem,
    watcher_id: String,
    stopped: bool,
}

impl PollingWatchHandle {
    /// The events since the last call.
    ///
    /// # Errors
    ///
    /// [`Error::Sandbox`] after [`stop`](Self::stop); others as mapped from envd.
    pub async fn get_new_events(&self) -> Result<Vec<FilesystemEvent>> {
        if self.stopped {
            return Err(Error::sandbox("The watcher is already stopped"));
        }
        let message = GetWatcherEventsRequest {
            watcher_id: self.watcher_id.clone(),
        };
        let response = self
            .files
            .rpc(
                self.files
                    .envd
                    .filesystem
                    .get_watcher_events(self.files.request(message))
                    .await,
            )
            .await?;
        Ok(response
            .events
            .into_iter()
            .filter_map(FilesystemEvent::from_pb)
            .collect())
    }

    /// Removes the watcher. Stopping twice is not an error.
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub async fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        let message = RemoveWatcherRequest {
            watcher_id: self.watcher_id.clone(),
        };
        self.files
            .rpc(
                self.files
                    .envd
                    .filesystem
                    .remove_watcher(self.files.request(message))
                    .await,
            )
            .await?;
        self.stopped = true;
        Ok(())
    }
}
