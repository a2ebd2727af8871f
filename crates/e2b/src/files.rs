//! The sandbox's filesystem: read, write, list, stat, remove, rename, make directories and
//! watch, through envd's `/files` endpoint and `filesystem.Filesystem` service.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use e2b_envd::pb::filesystem::{
    self as pb, CreateWatcherRequest, GetWatcherEventsRequest, ListDirRequest, MakeDirRequest,
    MoveRequest, RemoveRequest, RemoveWatcherRequest, StatRequest, WatchDirRequest,
    watch_dir_response,
};
use futures_core::Stream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::io::AsyncRead;

use crate::envd::{
    ENVD_FILE_METADATA, ENVD_OCTET_STREAM_UPLOAD, ENVD_RECURSIVE_WATCH, ENVD_WATCH_ENTRY,
    ENVD_WATCH_NETWORK_MOUNTS, Envd,
};
use crate::error::{self, Error, Result};

/// How long a streamed read may wait for the next chunk unless the request timeout says
/// otherwise: 60 s, as the Python SDK's `READ_TIMEOUT`.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What kind of entry a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (envd reports the target's type instead; kept for completeness).
    Symlink,
}

impl FileType {
    fn from_pb(value: i32) -> Option<Self> {
        match pb::FileType::try_from(value).ok()? {
            pb::FileType::File => Some(FileType::File),
            pb::FileType::Directory => Some(FileType::Dir),
            pb::FileType::Symlink => Some(FileType::Symlink),
            pb::FileType::Unspecified => None,
        }
    }
}

/// Information about a file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// The base name.
    pub name: String,
    /// File or directory (for a symlink: its target's type).
    pub file_type: FileType,
    /// The absolute path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
    /// The permissions as `ls -l` shows them, e.g. `-rw-r--r--`.
    pub permissions: String,
    /// The owning user's name.
    pub owner: String,
    /// The owning group's name.
    pub group: String,
    /// Last modification time.
    pub modified_time: Option<DateTime<Utc>>,
    /// For a symlink, the resolved absolute target.
    pub symlink_target: Option<String>,
    /// User metadata stored with the file.
    pub metadata: BTreeMap<String, String>,
}

impl EntryInfo {
    fn from_pb(entry: pb::EntryInfo) -> Option<Self> {
        Some(Self {
            file_type: FileType::from_pb(entry.r#type)?,
            name: entry.name,
            path: entry.path,
            size: u64::try_from(entry.size).unwrap_or(0),
            mode: entry.mode,
            permissions: entry.permissions,
            owner: entry.owner,
            group: entry.group,
            modified_time: entry.modified_time.and_then(|t| t.to_datetime()),
            symlink_target: entry.symlink_target,
            metadata: entry.metadata.into_iter().collect(),
        })
    }
}

/// A file written by [`Filesystem::write`] or [`Filesystem::write_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteInfo {
    /// The base name.
    pub name: String,
    /// The absolute path.
    pub path: String,
    /// Always [`FileType::File`].
    pub file_type: FileType,
    /// The metadata stored with it.
    pub metadata: BTreeMap<String, String>,
}

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

/// A file's content for [`Filesystem::write_files`].
pub struct WriteEntry {
    pub(crate) path: String,
    pub(crate) data: Body,
}

impl fmt::Debug for WriteEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteEntry")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

pub(crate) enum Body {
    Bytes(Bytes),
    Stream(ByteStream),
}

impl WriteEntry {
    /// A file with `data` as its content.
    pub fn new(path: impl Into<String>, data: impl Into<Bytes>) -> Self {
        Self {
            path: path.into(),
            data: Body::Bytes(data.into()),
        }
    }

    /// A file whose content comes from a stream, sent as it arrives.
    pub fn from_stream<S>(path: impl Into<String>, stream: S) -> Self
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        Self {
            path: path.into(),
            data: Body::Stream(Box::pin(stream)),
        }
    }

    /// A file whose content is read from `reader`, sent as it is read.
    pub fn from_reader<R>(path: impl Into<String>, reader: R) -> Self
    where
        R: AsyncRead + Send + 'static,
    {
        Self::from_stream(
            path,
            tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024),
        )
    }
}

/// The content of a file as a stream of chunks: [`Filesystem::read_stream`].
///
/// Reading never holds more than a chunk or two in memory. Each chunk must arrive within the
/// request timeout (or [`STREAM_IDLE_TIMEOUT`]). Dropping the stream closes the download.
pub struct ReadStream {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>,
}

impl fmt::Debug for ReadStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadStream").finish_non_exhaustive()
    }
}

impl Stream for ReadStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl ReadStream {
    /// The stream as an [`AsyncRead`], for `tokio::io::copy` and friends.
    pub fn into_async_read(self) -> impl AsyncRead + Send {
        tokio_util::io::StreamReader::new(self.map_err(std::io::Error::other))
    }
}

/// The sandbox's filesystem: `sandbox.files()`. Cheap to clone.
///
/// Per-call settings are set on a copy of the handle: `files.user("root").exists("/x")`,
/// `files.gzip(true).read("/big.log")`.
#[derive(Debug, Clone)]
pub struct Filesystem {
    envd: Arc<Envd>,
    user: Option<String>,
    request_timeout: Option<Duration>,
    gzip: bool,
    metadata: BTreeMap<String, String>,
}

impl Filesystem {
    pub(crate) fn new(envd: Arc<Envd>) -> Self {
        Self {
            envd,
            user: None,
            request_timeout: None,
            gzip: false,
            metadata: BTreeMap::new(),
        }
    }

    /// A handle acting as `user` (resolving relative paths against their home and owning
    /// written files).
    #[must_use]
    pub fn user(&self, user: impl Into<String>) -> Self {
        Self {
            user: Some(user.into()),
            ..self.clone()
        }
    }

    /// A handle whose calls time out after `timeout` (zero: never) instead of the
    /// connection's request timeout.
    #[must_use]
    pub fn request_timeout(&self, timeout: Duration) -> Self {
        Self {
            request_timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// A handle that compresses transfers with gzip (reads ask for it, writes send it).
    #[must_use]
    pub fn gzip(&self, gzip: bool) -> Self {
        Self {
            gzip,
            ..self.clone()
        }
    }

    /// A handle that stores `metadata` with every file it writes (replacing what the file
    /// had). Keys must be header tokens, values printable ASCII.
    #[must_use]
    pub fn metadata<K: Into<String>, V: Into<String>>(
        &self,
        metadata: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            metadata: metadata
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ..self.clone()
        }
    }

    fn timeout(&self) -> Option<Duration> {
        self.request_timeout
            .or(self.envd.request_timeout)
            .filter(|t| !t.is_zero())
    }

    fn username(&self) -> Option<String> {
        self.envd
            .effective_user(self.user.as_deref())
            .map(str::to_owned)
    }

    // ---- reading ------------------------------------------------------------------------

    /// Reads a file as text (invalid UTF-8 becomes U+FFFD).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the file does not exist, [`Error::InvalidArgument`] for a
    /// directory or an empty path, [`Error::Timeout`] past the request timeout.
    ///
    /// ```no_run
    /// # async fn demo(sandbox: &e2b::Sandbox) -> e2b::Result<()> {
    /// let text = sandbox.files().read("/etc/hostname").await?;
    /// # Ok(()) }
    /// ```
    pub async fn read(&self, path: &str) -> Result<String> {
        let bytes = self.read_bytes(path).await?;
        Ok(match String::from_utf8(bytes.to_vec()) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Reads a file as bytes.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    pub async fn read_bytes(&self, path: &str) -> Result<Bytes> {
        let work = async {
            let mut stream = self.open_read(path, None).await?;
            let mut buf = BytesMut::new();
            while let Some(chunk) = stream.next().await {
                buf.extend_from_slice(&chunk?);
            }
            Ok(buf.freeze())
        };
        match self.timeout() {
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .unwrap_or_else(|_| Err(request_timeout_error("reading", path, limit))),
            None => work.await,
        }
    }

    /// Reads a file as a stream of chunks, without holding it in memory.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read), before the first chunk; later failures come out of the
    /// stream.
    pub async fn read_stream(&self, path: &str) -> Result<ReadStream> {
        let idle = self.timeout().unwrap_or(STREAM_IDLE_TIMEOUT);
        let open = self.open_read(path, Some(idle));
        match self.timeout() {
            Some(limit) => tokio::time::timeout(limit, open)
                .await
                .unwrap_or_else(|_| Err(request_timeout_error("reading", path, limit))),
            None => open.await,
        }
    }

    async fn open_read(&self, path: &str, idle: Option<Duration>) -> Result<ReadStream> {
        check_path(path)?;
        let body: Pin<Box<dyn Stream<Item = std::result::Result<Bytes, ReadFailure>> + Send>> =
            if self.gzip {
                // The generated client cannot ask for gzip (no per-call headers): see the README.
                let mut request = self
                    .envd
                    .raw
                    .get(format!("{}/files", self.envd.base_url))
                    .header(reqwest::header::ACCEPT_ENCODING, "gzip")
                    .query(&[("path", path)]);
                if let Some(user) = self.username() {
                    request = request.query(&[("username", user)]);
                }
                let response = match request.send().await {
                    Ok(r) => r,
                    Err(e) => return Err(self.envd.http_error("GET /files", e).await),
                };
                let status = response.status().as_u16();
                if status != 200 {
                    let body = response.bytes().await.unwrap_or_default();
                    return Err(error::from_files_status(
                        status,
                        &error::body_message(&body),
                    ));
                }
                let gzipped = response
                    .headers()
                    .get(reqwest::header::CONTENT_ENCODING)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
                let raw = response.bytes_stream();
                if gzipped {
                    let reader =
                        tokio_util::io::StreamReader::new(raw.map_err(std::io::Error::other));
                    let decoder = async_compression::tokio::bufread::GzipDecoder::new(
                        tokio::io::BufReader::new(reader),
                    );
                    Box::pin(
                        tokio_util::io::ReaderStream::with_capacity(decoder, 64 * 1024)
                            .map_err(ReadFailure::from),
                    )
                } else {
                    Box::pin(raw.map_err(ReadFailure::Http))
                }
            } else {
                use e2b_envd::http::prelude::*;
                let mut call = self.envd.http.get_files().path(path);
                if let Some(user) = self.username() {
                    call = call.username(user);
                }
                match call.send().await {
                    Ok(response) => Box::pin(
                        response
                            .into_inner()
                            .into_inner()
                            .map_err(ReadFailure::Http),
                    ),
                    Err(e) => return Err(self.files_error("GET /files", e).await),
                }
            };
        let envd = self.envd.clone();
        let stream = futures_util::stream::unfold(Some(body), move |state| {
            let envd = envd.clone();
            async move {
                let mut body = state?;
                let next = match idle {
                    Some(idle) => match tokio::time::timeout(idle, body.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            return Some((
                                Err(Error::timeout(format!(
                                    "no data arrived for {idle:?} while reading a file"
                                ))),
                                None,
                            ));
                        }
                    },
                    None => body.next().await,
                };
                match next {
                    Some(Ok(chunk)) => Some((Ok(chunk), Some(body))),
                    Some(Err(ReadFailure::Http(e))) => {
                        Some((Err(envd.http_error("reading a file", e).await), None))
                    }
                    Some(Err(ReadFailure::Decode(e))) => Some((
                        Err(Error::sandbox(format!(
                            "decoding the gzip download failed: {e}"
                        ))),
                        None,
                    )),
                    None => None,
                }
            }
        });
        Ok(ReadStream {
            inner: Box::pin(stream),
        })
    }

    // ---- writing ------------------------------------------------------------------------

    /// Writes `data` to `path`, creating parent directories and replacing an existing file.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty path, a directory, or invalid metadata;
    /// [`Error::NotEnoughSpace`] when the disk is full; others as mapped from envd.
    ///
    /// ```no_run
    /// # async fn demo(sandbox: &e2b::Sandbox) -> e2b::Result<()> {
    /// let info = sandbox.files().write("/home/user/hello.txt", "hello").await?;
    /// assert_eq!(info.name, "hello.txt");
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, path: &str, data: impl Into<Bytes>) -> Result<WriteInfo> {
        let data = data.into();
        let work = self.write_one(path, Body::Bytes(data));
        match self.timeout() {
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .unwrap_or_else(|_| Err(request_timeout_error("writing", path, limit))),
            None => work.await,
        }
    }

    /// Writes a stream of chunks to `path` as they arrive, never holding the whole file.
    /// Streamed writes have no overall time limit.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write); a failing stream aborts the upload with its error.
    pub async fn write_stream<S>(&self, path: &str, stream: S) -> Result<WriteInfo>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        self.write_one(path, Body::Stream(Box::pin(stream))).await
    }

    /// Writes what `reader` yields to `path`, streamed.
    ///
    /// # Errors
    ///
    /// As [`write_stream`](Self::write_stream).
    pub async fn write_reader<R>(&self, path: &str, reader: R) -> Result<WriteInfo>
    where
        R: AsyncRead + Send + 'static,
    {
        self.write_stream(
            path,
            tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024),
        )
        .await
    }

    /// Writes several files in one multipart request.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write); [`Error::InvalidArgument`] when two entries share a path.
    pub async fn write_files(&self, entries: Vec<WriteEntry>) -> Result<Vec<WriteInfo>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        for entry in &entries {
            check_path(&entry.path)?;
        }
        let streamed = entries.iter().any(|e| matches!(e.data, Body::Stream(_)));
        let work = self.upload_multipart(entries, None);
        match self.timeout().filter(|_| !streamed) {
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .unwrap_or_else(|_| Err(request_timeout_error("writing", "several files", limit))),
            None => work.await,
        }
    }

    async fn write_one(&self, path: &str, body: Body) -> Result<WriteInfo> {
        check_path(path)?;
        let headers = self.metadata_headers()?;
        let mut written = if !self.envd.at_least(ENVD_OCTET_STREAM_UPLOAD) {
            if self.gzip {
                return Err(Error::template(format!(
                    "gzip uploads need envd 0.5.7 or newer; this sandbox runs envd {}",
                    self.envd.version_text
                )));
            }
            self.upload_multipart(
                vec![WriteEntry {
                    path: path.to_owned(),
                    data: body,
                }],
                Some(path),
            )
            .await?
        } else if self.gzip || !headers.is_empty() {
            self.upload_raw(path, body, headers).await?
        } else {
            use e2b_envd::http::prelude::*;
            let body = match body {
                Body::Bytes(bytes) => reqwest::Body::from(bytes),
                Body::Stream(stream) => reqwest::Body::wrap_stream(stream),
            };
            let mut call = self.envd.http.post_files().path(path).body(body);
            if let Some(user) = self.username() {
                call = call.username(user);
            }
            match call.send().await {
                Ok(response) => response
                    .into_inner()
                    .into_iter()
                    .map(|e| WriteInfo {
                        name: e.name,
                        path: e.path,
                        file_type: FileType::File,
                        metadata: e.metadata,
                    })
                    .collect(),
                Err(e) => return Err(self.files_error("POST /files", e).await),
            }
        };
        if written.is_empty() {
            return Err(Error::sandbox(
                "Expected to receive information about written file",
            ));
        }
        Ok(written.swap_remove(0))
    }

    fn metadata_headers(&self) -> Result<Vec<(String, String)>> {
        if self.metadata.is_empty() {
            return Ok(Vec::new());
        }
        if !self.envd.at_least(ENVD_FILE_METADATA) {
            return Err(Error::template(format!(
                "file metadata needs envd 0.6.2 or newer; this sandbox runs envd {}",
                self.envd.version_text
            )));
        }
        let is_token = |k: &str| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        self.metadata
            .iter()
            .map(|(k, v)| {
                if !is_token(k) {
                    return Err(Error::invalid_argument(format!(
                        "metadata key '{k}' is not a valid header token"
                    )));
                }
                if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                    return Err(Error::invalid_argument(format!(
                        "metadata value of '{k}' must be printable ASCII"
                    )));
                }
                Ok((format!("x-metadata-{k}"), v.clone()))
            })
            .collect()
    }

    /// `POST /files` as `application/octet-stream` with headers the generated client cannot
    /// send (`Content-Encoding: gzip`, `X-Metadata-*`).
    async fn upload_raw(
        &self,
        path: &str,
        body: Body,
        headers: Vec<(String, String)>,
    ) -> Result<Vec<WriteInfo>> {
        let stream: ByteStream = match body {
            Body::Bytes(bytes) => Box::pin(futures_util::stream::iter([Ok(bytes)])),
            Body::Stream(stream) => stream,
        };
        let mut request = self
            .envd
            .raw
            .post(format!("{}/files", self.envd.base_url))
            .query(&[("path", path)])
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
        if let Some(user) = self.username() {
            request = request.query(&[("username", user)]);
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request = if self.gzip {
            let reader = tokio_util::io::StreamReader::new(stream);
            let encoder = async_compression::tokio::bufread::GzipEncoder::new(reader);
            request
                .header(reqwest::header::CONTENT_ENCODING, "gzip")
                .body(reqwest::Body::wrap_stream(
                    tokio_util::io::ReaderStream::with_capacity(encoder, 64 * 1024),
                ))
        } else {
            request.body(reqwest::Body::wrap_stream(stream))
        };
        self.send_upload(request).await
    }

    /// The multipart upload (sdk-behavior §4.3): one part per file, form name `file`,
    /// filename the full destination path; the body is streamed part by part.
    async fn upload_multipart(
        &self,
        entries: Vec<WriteEntry>,
        single_path: Option<&str>,
    ) -> Result<Vec<WriteInfo>> {
        let headers = self.metadata_headers()?;
        let boundary = format!("e2b-rust-{:032x}", rand::random::<u128>());
        let mut parts: Vec<ByteStream> = Vec::with_capacity(entries.len() * 3 + 1);
        for entry in entries {
            if entry.path.contains(['\r', '\n', '"']) {
                return Err(Error::invalid_argument(format!(
                    "path {:?} contains a quote or line break, which a multipart upload cannot carry",
                    entry.path
                )));
            }
            let head = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                entry.path
            );
            parts.push(Box::pin(futures_util::stream::iter([Ok(Bytes::from(
                head,
            ))])));
            parts.push(match entry.data {
                Body::Bytes(bytes) => Box::pin(futures_util::stream::iter([Ok(bytes)])),
                Body::Stream(stream) => stream,
            });
            parts.push(Box::pin(futures_util::stream::iter([Ok(
                Bytes::from_static(b"\r\n"),
            )])));
        }
        parts.push(Box::pin(futures_util::stream::iter([Ok(Bytes::from(
            format!("--{boundary}--\r\n"),
        ))])));
        let body = futures_util::stream::iter(parts).flatten();
        let mut request = self
            .envd
            .raw
            .post(format!("{}/files", self.envd.base_url))
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(reqwest::Body::wrap_stream(body));
        if let Some(path) = single_path {
            request = request.query(&[("path", path)]);
        }
        if let Some(user) = self.username() {
            request = request.query(&[("username", user)]);
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        self.send_upload(request).await
    }

    async fn send_upload(&self, request: reqwest::RequestBuilder) -> Result<Vec<WriteInfo>> {
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.envd.http_error("POST /files", e).await),
        };
        let status = response.status().as_u16();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(self.envd.http_error("POST /files", e).await),
        };
        if status != 200 {
            return Err(error::from_files_status(
                status,
                &error::body_message(&body),
            ));
        }
        let entries: Vec<e2b_envd::http::types::EntryInfo> = serde_json::from_slice(&body)
            .map_err(|e| Error::sandbox(format!("POST /files answered unexpected JSON: {e}")))?;
        if entries.is_empty() {
            return Err(Error::sandbox(
                "Expected to receive information about written file",
            ));
        }
        Ok(entries
            .into_iter()
            .map(|e| WriteInfo {
                name: e.name,
                path: e.path,
                file_type: FileType::File,
                metadata: e.metadata,
            })
            .collect())
    }

    async fn files_error(
        &self,
        what: &str,
        err: e2b_envd::http::Error<e2b_envd::http::types::Error>,
    ) -> Error {
        use e2b_envd::http::Error as E;
        match err {
            E::ErrorResponse(response) => {
                let status = response.status().as_u16();
                error::from_files_status(status, &response.into_inner().message)
            }
            E::UnexpectedResponse(response) => {
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap_or_default();
                error::from_files_status(status, &error::body_message(&body))
            }
            E::CommunicationError(e) | E::ResponseBodyError(e) | E::InvalidUpgrade(e) => {
                self.envd.http_error(what, e).await
            }
            E::InvalidRequest(message) | E::Custom(message) => Error::invalid_argument(message),
            E::InvalidResponsePayload(_, e) => {
                Error::sandbox(format!("{what} answered unexpected JSON: {e}"))
            }
        }
    }

    // ---- filesystem RPCs ----------------------------------------------------------------

    async fn rpc<T>(&self, result: std::result::Result<T, e2b_envd::ConnectError>) -> Result<T> {
        match result {
            Ok(value) => Ok(value),
            Err(e) => Err(self.envd.rpc_error(e).await),
        }
    }

    fn request<T>(&self, message: T) -> e2b_envd::Request<T> {
        self.envd
            .request(message, self.user.as_deref(), self.request_timeout)
    }

    /// Lists a directory, `depth` levels deep (1: its children only).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a depth below 1 or a path that is not a directory;
    /// [`Error::NotFound`] when it does not exist.
    pub async fn list(&self, path: &str, depth: u32) -> Result<Vec<EntryInfo>> {
        check_path(path)?;
        if depth < 1 {
            return Err(Error::invalid_argument("depth should be at least one"));
        }
        let message = ListDirRequest {
            path: path.to_owned(),
            depth,
        };
        let response = self
            .rpc(self.envd.filesystem.list_dir(self.request(message)).await)
            .await?;
        Ok(response
            .entries
            .into_iter()
            .filter_map(EntryInfo::from_pb)
            .collect())
    }

    /// Whether `path` exists.
    ///
    /// # Errors
    ///
    /// As mapped from envd, except that "not found" is `Ok(false)`.
    pub async fn exists(&self, path: &str) -> Result<bool> {
        check_path(path)?;
        let message = StatRequest {
            path: path.to_owned(),
        };
        match self.envd.filesystem.stat(self.request(message)).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == e2b_envd::Code::NotFound => Ok(false),
            Err(e) => Err(self.envd.rpc_error(e).await),
        }
    }

    /// Information about `path`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it does not exist.
    pub async fn get_info(&self, path: &str) -> Result<EntryInfo> {
        check_path(path)?;
        let message = StatRequest {
            path: path.to_owned(),
        };
        let response = self
            .rpc(self.envd.filesystem.stat(self.request(message)).await)
            .await?;
        entry_of(response.entry, path)
    }

    /// Removes a file or directory (recursively). Removing a missing path succeeds.
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub async fn remove(&self, path: &str) -> Result<()> {
        check_path(path)?;
        let message = RemoveRequest {
            path: path.to_owned(),
        };
        self.rpc(self.envd.filesystem.remove(self.request(message)).await)
            .await?;
        Ok(())
    }

    /// Renames (moves) `old_path` to `new_path`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when `old_path` does not exist.
    pub async fn rename(&self, old_path: &str, new_path: &str) -> Result<EntryInfo> {
        check_path(old_path)?;
        check_path(new_path)?;
        let message = MoveRequest {
            source: old_path.to_owned(),
            destination: new_path.to_owned(),
        };
        let response = self
            .rpc(self.envd.filesystem.r#move(self.request(message)).await)
            .await?;
        entry_of(response.entry, new_path)
    }

    /// Creates a directory and its parents; `false` when it already existed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when a file is in the way.
    pub async fn make_dir(&self, path: &str) -> Result<bool> {
        check_path(path)?;
        let message = MakeDirRequest {
            path: path.to_owned(),
        };
        match self.envd.filesystem.make_dir(self.request(message)).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == e2b_envd::Code::AlreadyExists => Ok(false),
            Err(e) => Err(self.envd.rpc_error(e).await),
        }
    }

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

fn entry_of(entry: Option<pb::EntryInfo>, path: &str) -> Result<EntryInfo> {
    entry
        .and_then(EntryInfo::from_pb)
        .ok_or_else(|| Error::sandbox(format!("envd returned no usable entry for '{path}'")))
}

fn check_path(path: &str) -> Result<()> {
    if path.is_empty() {
        return Err(Error::invalid_argument("the path must not be empty"));
    }
    if path.contains('\0') {
        return Err(Error::invalid_argument(format!(
            "the path {path:?} contains a NUL byte"
        )));
    }
    Ok(())
}

fn request_timeout_error(what: &str, path: &str, limit: Duration) -> Error {
    Error::timeout(format!(
        "{what} '{path}' took longer than the request timeout of {limit:?}. This error is \
         likely due to exceeding 'request_timeout'."
    ))
}

/// Why reading a download failed: the connection, or decoding its gzip.
enum ReadFailure {
    Http(reqwest::Error),
    Decode(std::io::Error),
}

impl From<std::io::Error> for ReadFailure {
    fn from(error: std::io::Error) -> Self {
        // A connection failure wrapped by the gzip reader is still a connection failure.
        if error.get_ref().is_some_and(|e| e.is::<reqwest::Error>()) {
            if let Some(inner) = error.into_inner() {
                return match inner.downcast::<reqwest::Error>() {
                    Ok(e) => ReadFailure::Http(*e),
                    Err(other) => ReadFailure::Decode(std::io::Error::other(other)),
                };
            }
            return ReadFailure::Decode(std::io::Error::other("unknown read failure"));
        }
        ReadFailure::Decode(error)
    }
}
