//! The blocking twin of [`crate::files`].

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;

use super::{Runtime, wait};
use crate::error::{Error, Result};
use crate::files::{EntryInfo, FilesystemEvent, ReadStream, WatchOptions, WriteEntry, WriteInfo};

/// Size of the chunks a reader is read in for streamed uploads.
const CHUNK: usize = 64 * 1024;

/// The sandbox's filesystem, used synchronously: the twin of [`crate::Filesystem`].
#[derive(Debug, Clone)]
pub struct Filesystem {
    pub(crate) inner: crate::Filesystem,
    pub(crate) rt: Runtime,
}

impl Filesystem {
    fn with(&self, inner: crate::Filesystem) -> Self {
        Self {
            inner,
            rt: self.rt.clone(),
        }
    }

    /// A handle acting as `user`.
    #[must_use]
    pub fn user(&self, user: impl Into<String>) -> Self {
        self.with(self.inner.user(user))
    }

    /// A handle with its own request timeout (zero: none).
    #[must_use]
    pub fn request_timeout(&self, timeout: Duration) -> Self {
        self.with(self.inner.request_timeout(timeout))
    }

    /// A handle that compresses transfers with gzip.
    #[must_use]
    pub fn gzip(&self, gzip: bool) -> Self {
        self.with(self.inner.gzip(gzip))
    }

    /// A handle that stores `metadata` with every file it writes.
    #[must_use]
    pub fn metadata<K: Into<String>, V: Into<String>>(
        &self,
        metadata: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.with(self.inner.metadata(metadata))
    }

    /// Reads a file as text.
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::read`].
    pub fn read(&self, path: &str) -> Result<String> {
        let (fs, path) = (self.inner.clone(), path.to_owned());
        self.rt.run(async move { fs.read(&path).await })
    }

    /// Reads a file as bytes.
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::read_bytes`].
    pub fn read_bytes(&self, path: &str) -> Result<Bytes> {
        let (fs, path) = (self.inner.clone(), path.to_owned());
        self.rt.run(async move { fs.read_bytes(&path).await })
    }

    /// Opens a file for streamed reading, as a [`std::io::Read`].
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::read_stream`].
    pub fn read_stream(&self, path: &str) -> Result<FileReader> {
        let (fs, path) = (self.inner.clone(), path.to_owned());
        let stream = self.rt.run(async move { fs.read_stream(&path).await })?;
        Ok(FileReader {
            stream: Some(stream),
            chunk: Bytes::new(),
            rt: self.rt.clone(),
        })
    }

    /// Writes `data` to `path`.
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::write`].
    pub fn write(&self, path: &str, data: impl Into<Bytes>) -> Result<WriteInfo> {
        let (fs, path, data) = (self.inner.clone(), path.to_owned(), data.into());
        self.rt.run(async move { fs.write(&path, data).await })
    }

    /// Writes what `reader` yields to `path`, streamed: the reader is read on this thread
    /// while earlier chunks are being sent.
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::write_stream`]; a read error aborts the upload with that error.
    pub fn write_reader(&self, path: &str, reader: impl Read) -> Result<WriteInfo> {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let (fs, path) = (self.inner.clone(), path.to_owned());
        let done = self
            .rt
            .spawn(async move { fs.write_stream(&path, stream).await });
        pump(reader, &tx);
        drop(tx);
        wait(done)?
    }

    /// Writes several files in one multipart request.
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::write_files`].
    pub fn write_files(&self, entries: Vec<WriteEntry>) -> Result<Vec<WriteInfo>> {
        let fs = self.inner.clone();
        self.rt.run(async move { fs.write_files(entries).await })
    }

    /// Lists a directory, `depth` levels deep.
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::list`].
    pub fn list(&self, path: &str, depth: u32) -> Result<Vec<EntryInfo>> {
        let (fs, path) = (self.inner.clone(), path.to_owned());
        self.rt.run(async move { fs.list(&path, depth).await })
    }

    /// Whether `path` exists.
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::exists`].
    pub fn exists(&self, path: &str) -> Result<bool> {
        let (fs, path) = (self.inner.clone(), path.to_owned());
        self.rt.run(async move { fs.exists(&path).await })
    }

    /// Information about `path`.
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::get_info`].
    pub fn get_info(&self, path: &str) -> Result<EntryInfo> {
        let (fs, path) = (self.inner.clone(), path.to_owned());
        self.rt.run(async move { fs.get_info(&path).await })
    }

    /// Removes a file or directory.
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::remove`].
    pub fn remove(&self, path: &str) -> Result<()> {
        let (fs, path) = (self.inner.clone(), path.to_owned());
        self.rt.run(async move { fs.remove(&path).await })
    }

    /// Renames `old_path` to `new_path`.
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::rename`].
    pub fn rename(&self, old_path: &str, new_path: &str) -> Result<EntryInfo> {
        let (fs, old, new) = (self.inner.clone(), old_path.to_owned(), new_path.to_owned());
        self.rt.run(async move { fs.rename(&old, &new).await })
    }

    /// Creates a directory; `false` when it already existed.
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::make_dir`].
    pub fn make_dir(&self, path: &str) -> Result<bool> {
        let (fs, path) = (self.inner.clone(), path.to_owned());
        self.rt.run(async move { fs.make_dir(&path).await })
    }

    /// Watches a directory with the polling RPCs (as the Python sync SDK): collect events with
    /// [`WatchHandle::get_new_events`], end with [`WatchHandle::stop`].
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::watch_dir_polling`].
    pub fn watch_dir(&self, path: &str, options: WatchOptions) -> Result<WatchHandle> {
        let (fs, path) = (self.inner.clone(), path.to_owned());
        let inner = self
            .rt
            .run(async move { fs.watch_dir_polling(&path, options).await })?;
        Ok(WatchHandle {
            inner: Some(inner),
            rt: self.rt.clone(),
        })
    }

    /// Watches a directory over one open stream, as the async
    /// [`watch_dir`](crate::Filesystem::watch_dir) does: an [`Iterator`] that blocks until the
    /// next event.
    ///
    /// # Errors
    ///
    /// As [`crate::Filesystem::watch_dir`].
    ///
    /// ```no_run
    /// # fn demo(sandbox: &e2b::blocking::Sandbox) -> e2b::Result<()> {
    /// let mut events = sandbox.files().watch_dir_events("/tmp", e2b::WatchOptions::new())?;
    /// sandbox.files().write("/tmp/new.txt", "x")?;
    /// if let Some(event) = events.next() {
    ///     println!("{:?} {}", event?.event_type, "/tmp/new.txt");
    /// }
    /// events.stop();
    /// # Ok(()) }
    /// ```
    pub fn watch_dir_events(&self, path: &str, options: WatchOptions) -> Result<WatchEvents> {
        let (fs, path) = (self.inner.clone(), path.to_owned());
        let inner = self
            .rt
            .run(async move { fs.watch_dir(&path, options).await })?;
        Ok(WatchEvents {
            inner: Some(inner),
            rt: self.rt.clone(),
        })
    }
}

/// Reads `reader` in chunks into `tx` until it ends, fails, or the upload stops listening.
pub(crate) fn pump(mut reader: impl Read, tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tx
                    .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
                {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

/// A file being downloaded, as a [`std::io::Read`]: [`Filesystem::read_stream`].
///
/// Holds at most one chunk; dropping it closes the download.
#[derive(Debug)]
pub struct FileReader {
    stream: Option<ReadStream>,
    chunk: Bytes,
    rt: Runtime,
}

impl FileReader {
    /// A reader of `stream`, driven on `rt`.
    pub(crate) fn new(stream: ReadStream, rt: Runtime) -> Self {
        Self {
            stream: Some(stream),
            chunk: Bytes::new(),
            rt,
        }
    }

    /// The next chunk of the file; `None` at the end.
    ///
    /// # Errors
    ///
    /// As the async [`ReadStream`].
    pub fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        if !self.chunk.is_empty() {
            return Some(Ok(std::mem::take(&mut self.chunk)));
        }
        let mut stream = self.stream.take()?;
        let outcome = self.rt.run_plain(async move {
            let next = stream.next().await;
            (stream, next)
        });
        match outcome {
            Ok((stream, Some(Ok(chunk)))) => {
                self.stream = Some(stream);
                Some(Ok(chunk))
            }
            Ok((_, Some(Err(e)))) | Err(e) => Some(Err(e)),
            Ok((_, None)) => None,
        }
    }
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.chunk.is_empty() {
            match self.next_chunk() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// A polled directory watch: [`Filesystem::watch_dir`].
///
/// Dropping it without [`stop`](Self::stop) leaves the watcher in envd until the sandbox ends.
#[derive(Debug)]
pub struct WatchHandle {
    inner: Option<crate::PollingWatchHandle>,
    rt: Runtime,
}

impl WatchHandle {
    /// The events since the last call.
    ///
    /// # Errors
    ///
    /// [`Error::Sandbox`] ("The watcher is already stopped") after [`stop`](Self::stop).
    pub fn get_new_events(&mut self) -> Result<Vec<FilesystemEvent>> {
        let Some(handle) = self.inner.take() else {
            return Err(Error::sandbox("The watcher is already stopped"));
        };
        let (handle, events) = self.rt.run_plain(async move {
            let events = handle.get_new_events().await;
            (handle, events)
        })?;
        self.inner = Some(handle);
        events
    }

    /// Removes the watcher.
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut handle) = self.inner.take() else {
            return Ok(());
        };
        let (handle, result) = self.rt.run_plain(async move {
            let result = handle.stop().await;
            (handle, result)
        })?;
        if result.is_err() {
            self.inner = Some(handle);
        }
        result
    }
}

/// A streaming directory watch: [`Filesystem::watch_dir_events`]. An [`Iterator`] of events
/// that blocks until the next one; the twin of [`crate::WatchHandle`].
///
/// Dropping it (or [`stop`](Self::stop)) closes the stream, which ends the watch in envd.
#[derive(Debug)]
pub struct WatchEvents {
    inner: Option<crate::WatchHandle>,
    rt: Runtime,
}

impl WatchEvents {
    /// Stops watching; the iterator ends.
    pub fn stop(&mut self) {
        self.inner = None;
    }
}

impl Iterator for WatchEvents {
    type Item = Result<FilesystemEvent>;

    /// The next event; `None` after [`stop`](WatchEvents::stop) or when the watch ended. The
    /// watch is over after an error ([`crate::WatchHandle::next_event`]).
    fn next(&mut self) -> Option<Self::Item> {
        let mut watch = self.inner.take()?;
        let outcome = self.rt.run_plain(async move {
            let next = watch.next_event().await;
            (watch, next)
        });
        match outcome {
            Ok((watch, Some(Ok(event)))) => {
                self.inner = Some(watch);
                Some(Ok(event))
            }
            Ok((_, Some(Err(e)))) | Err(e) => Some(Err(e)),
            Ok((_, None)) => None,
        }
    }
}
