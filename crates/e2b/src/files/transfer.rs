//! File contents over envd's `/files` endpoint: downloads as whole values or streams, and
//! uploads as octet-stream or multipart bodies.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::io::AsyncRead;

use super::{FileType, Filesystem, WriteInfo, check_path, request_timeout_error};
use crate::envd::{ENVD_FILE_METADATA, ENVD_OCTET_STREAM_UPLOAD};
use crate::error::{self, Error, Result};

/// How long a streamed read may wait for the next chunk unless the request timeout says
/// otherwise: 60 s, as the Python SDK's `READ_TIMEOUT`.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// A stream of `chunks`.
    pub(crate) fn new(chunks: impl Stream<Item = Result<Bytes>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(chunks),
        }
    }

    /// The stream as an [`AsyncRead`], for `tokio::io::copy` and friends.
    pub fn into_async_read(self) -> impl AsyncRead + Send {
        tokio_util::io::StreamReader::new(self.map_err(std::io::Error::other))
    }
}

impl Filesystem {
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
                Ok((
                    format!("{}{k}", e2b_envd::headers::METADATA_PREFIX),
                    v.clone(),
                ))
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

    /// The multipart upload (`docs/envd.md`): one part per file, form name `file`,
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
