//! `/files`: streamed download (gzip, ranges) and upload (multipart or raw, gzip, metadata).

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder};
use axum::body::Body;
use axum::extract::{Query, RawQuery, State as AxState};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _, BufReader};
use tokio_util::io::{ReaderStream, StreamReader};

use e2b_envd::Code;
use e2b_envd::headers;
use e2b_envd::http::types::{EntryInfo, EntryInfoType};
use e2b_envd::signature::Operation;

use crate::auth::{ACCESS_TOKEN_HEADER, SigningInput, validate_signing};
use crate::fs::staged::{NO_ROOM_STEP, StagedFile, StagingError};
use crate::fs::{EnsureDirsError, XATTR_PREFIX, ensure_dirs};
use crate::http::ApiError;
use crate::os_error;
use crate::paths::expand_and_resolve;
use crate::state::State;
use crate::users::User;

/// Query parameters of both `/files` methods.
#[derive(Debug, Default, Deserialize)]
pub struct FilesQuery {
    /// Target path (resolved for the user).
    pub path: Option<String>,
    /// User to act as.
    pub username: Option<String>,
    /// v1 signature.
    pub signature: Option<String>,
    /// Signature expiry, unix seconds.
    pub signature_expiration: Option<String>,
}

fn parse_query(raw: Option<&str>) -> Result<FilesQuery, ApiError> {
    match raw {
        None => Ok(FilesQuery::default()),
        Some(q) => Query::<FilesQuery>::try_from_uri(
            &format!("/?{q}")
                .parse()
                .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?,
        )
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}"))),
    }
}

/// Checks credentials and resolves the user and target path.
fn authorize(
    state: &State,
    headers: &HeaderMap,
    q: &FilesQuery,
    operation: Operation,
) -> Result<(User, Option<PathBuf>), ApiError> {
    let expiration = match &q.signature_expiration {
        Some(s) => Some(s.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid signature_expiration '{s}': not an integer"
            ))
        })?),
        None => None,
    };
    let token = state.token();
    validate_signing(
        token.as_deref(),
        &SigningInput {
            header_token: headers.get(ACCESS_TOKEN_HEADER).map(HeaderValue::as_bytes),
            path: q.path.as_deref().unwrap_or(""),
            username: q.username.as_deref().unwrap_or(""),
            signature: q.signature.as_deref(),
            expiration,
            operation,
        },
    )
    .map_err(ApiError::unauthorized)?;
    let user = state.user(q.username.as_deref()).map_err(|e| {
        let name = q.username.clone().unwrap_or_else(|| state.defaults().user);
        ApiError::unauthorized(format!("error looking up user '{name}': {e}"))
    })?;
    let path = match &q.path {
        Some(p) => Some(resolve(state, p, &user)?),
        None => None,
    };
    Ok((user, path))
}

fn resolve(state: &State, p: &str, user: &User) -> Result<PathBuf, ApiError> {
    expand_and_resolve(p, user, state.defaults().workdir.as_deref())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Which encoding the client accepts, by `Accept-Encoding`.
#[derive(Debug, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

fn negotiate(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(v) = headers.get(header::ACCEPT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let v = v.to_str().unwrap_or("");
    if v.trim().is_empty() {
        return Ok(Encoding::Identity);
    }
    let mut gzip = None;
    let mut identity = None;
    let mut star = None;
    for part in v.split(',') {
        let mut it = part.split(';');
        let name = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for param in it {
            if let Some(val) = param.trim().strip_prefix("q=") {
                q = val.trim().parse().unwrap_or(0.0);
            }
        }
        match name.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q),
            "identity" => identity = Some(q),
            "*" => star = Some(q),
            _ => {}
        }
    }
    let gzip_q = gzip.or(star).unwrap_or(0.0);
    let identity_q = identity.or(star.filter(|q| *q == 0.0)).unwrap_or(1.0);
    // A client that lists gzip at all gets it; identity is the fallback.
    if gzip_q > 0.0 {
        Ok(Encoding::Gzip)
    } else if identity_q > 0.0 {
        Ok(Encoding::Identity)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("no acceptable content encoding in '{v}'; supported: gzip, identity"),
        ))
    }
}

/// A parsed `Range: bytes=` header against a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeReq {
    /// Serve everything (no or unsupported range).
    Full,
    /// Serve `[start, end]` inclusive.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

fn parse_range(v: &str, size: u64) -> RangeReq {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeReq::Unsatisfiable;
    };
    if spec.contains(',') {
        // Several ranges: answering with the whole file is allowed (RFC 9110 §14.2).
        return RangeReq::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return RangeReq::Unsatisfiable;
        };
        if n == 0 || size == 0 {
            return RangeReq::Unsatisfiable;
        }
        return RangeReq::Part(size.saturating_sub(n), size - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeReq::Unsatisfiable;
    };
    if start >= size {
        return RangeReq::Unsatisfiable;
    }
    let end = if b.is_empty() {
        size - 1
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(size - 1),
            _ => return RangeReq::Unsatisfiable,
        }
    };
    RangeReq::Part(start, end)
}

/// `GET /files`.
pub async fn download(
    AxState(state): AxState<Arc<State>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = parse_query(raw.as_deref())?;
    let (user, path) = authorize(&state, &headers, &q, Operation::Read)?;
    let path = match path {
        Some(p) => p,
        None => resolve(&state, "", &user)?,
    };
    let md = match tokio::fs::metadata(&path).await {
        Ok(md) => md,
        Err(e) if os_error::code(&e) == Code::NotFound => {
            return Err(ApiError::not_found(format!(
                "path '{}' does not exist",
                path.display()
            )));
        }
        Err(e) => {
            return Err(ApiError::from_io(
                format_args!("error checking path '{}'", path.display()),
                &e,
            ));
        }
    };
    if md.is_dir() {
        return Err(ApiError::bad_request(format!(
            "path '{}' is a directory",
            path.display()
        )));
    }
    let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::from_io(format_args!("error opening file '{}'", path.display()), &e)
    })?;
    let size = md.len();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    let modified = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let last_modified = httpdate::fmt_http_date(modified);

    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, mime.as_ref())
        .header(
            header::CONTENT_DISPOSITION,
            format!("inline; filename=\"{}\"", name.replace('"', "\\\"")),
        )
        .header(header::VARY, "Accept-Encoding")
        .header(header::LAST_MODIFIED, &last_modified);

    // Conditional and range requests are served as identity, as Go's http.ServeContent does.
    let mtime_secs = md.mtime();
    let header_date = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    };
    if let Some(ius) = header_date(header::IF_UNMODIFIED_SINCE)
        && mtime_secs > ius
    {
        return Ok(StatusCode::PRECONDITION_FAILED.into_response());
    }
    if let Some(ims) = header_date(header::IF_MODIFIED_SINCE)
        && mtime_secs <= ims
    {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == last_modified);
    let conditional = range_header.is_some()
        || headers.contains_key(header::IF_MODIFIED_SINCE)
        || headers.contains_key(header::IF_UNMODIFIED_SINCE);

    if let (Some(r), true) = (range_header, if_range_ok) {
        builder = builder.header(header::ACCEPT_RANGES, "bytes");
        match parse_range(r, size) {
            RangeReq::Unsatisfiable => {
                return builder
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                    .body(Body::empty())
                    .map_err(|e| ApiError::internal(e.to_string()));
            }
            RangeReq::Part(start, end) => {
                file.seek(std::io::SeekFrom::Start(start))
                    .await
                    .map_err(|e| ApiError::from_io("error seeking", &e))?;
                let len = end - start + 1;
                let body =
                    Body::from_stream(ReaderStream::with_capacity(file.take(len), 64 * 1024));
                return builder
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"))
                    .header(header::CONTENT_LENGTH, len)
                    .body(body)
                    .map_err(|e| ApiError::internal(e.to_string()));
            }
            RangeReq::Full => {}
        }
    }
    let encoding = if conditional {
        Encoding::Identity
    } else {
        negotiate(&headers)?
    };
    let body = match encoding {
        Encoding::Gzip => {
            builder = builder.header(header::CONTENT_ENCODING, "gzip");
            Body::from_stream(ReaderStream::with_capacity(
                GzipEncoder::new(BufReader::with_capacity(64 * 1024, file)),
                64 * 1024,
            ))
        }
        Encoding::Identity => {
            builder = builder
                .header(header::ACCEPT_RANGES, "bytes")
                .header(header::CONTENT_LENGTH, size);
            Body::from_stream(ReaderStream::with_capacity(file.take(size), 64 * 1024))
        }
    };
    builder
        .status(StatusCode::OK)
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Longest metadata key (xattr names are at most 255 bytes, minus `user.e2b.`).
const MAX_METADATA_KEY: usize = 255 - XATTR_PREFIX.len();
/// Largest total of metadata keys and values.
const MAX_METADATA_TOTAL: usize = 4096;

fn parse_metadata(headers: &HeaderMap) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    let mut out = BTreeMap::new();
    let mut total = 0;
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(headers::METADATA_PREFIX) else {
            continue;
        };
        if key.is_empty() || key.len() > MAX_METADATA_KEY {
            return Err(ApiError::bad_request(format!(
                "invalid metadata key '{key}': must be 1 to {MAX_METADATA_KEY} bytes"
            )));
        }
        let bytes = value.as_bytes();
        if !bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(ApiError::bad_request(format!(
                "invalid metadata value for key '{key}': only printable ASCII is allowed"
            )));
        }
        total += key.len() + bytes.len();
        if total > MAX_METADATA_TOTAL {
            return Err(ApiError::bad_request(format!(
                "metadata too large: more than {MAX_METADATA_TOTAL} bytes of keys and values"
            )));
        }
        out.insert(key.to_owned(), String::from_utf8_lossy(bytes).into_owned());
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Writes one uploaded file: parents, streamed content, ownership, metadata. The content is
/// staged in an unnamed file and copied into the target only when complete
/// ([`StagedFile`]), so an upload cut off part-way leaves the old file.
async fn write_file(
    path: &Path,
    user: &User,
    body: &mut (dyn AsyncRead + Unpin + Send),
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<EntryInfo, ApiError> {
    let (uid, gid) = (user.uid, user.gid);
    if let Some(parent) = path.parent() {
        let parent = parent.to_owned();
        blocking(move || ensure_dirs(&parent, uid, gid))
            .await?
            .map_err(|e| {
                let message = format!("error ensuring directories: {e}");
                match &e {
                    EnsureDirsError::NotADirectory(_) => ApiError::bad_request(message),
                    EnsureDirsError::Io { source, .. } => {
                        ApiError::new(os_error::http_status(source), message)
                    }
                }
            })?;
    }
    if tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir()) {
        return Err(ApiError::bad_request(format!(
            "path is a directory: {}",
            path.display()
        )));
    }
    let p = path.to_owned();
    let staged = blocking(move || StagedFile::create(&p, uid, gid))
        .await?
        .map_err(staging_error)?;
    let mut file = tokio::fs::File::from_std(staged.writer().map_err(staging_error)?);
    let mut buf = vec![0u8; 256 * 1024];
    let write_failed = |n: Option<u64>, e: &std::io::Error| {
        if os_error::http_status(e) == StatusCode::INSUFFICIENT_STORAGE {
            let attempted = n.map(|n| format!("attempted to write {n} bytes: "));
            ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!(
                    "{}not enough disk space available",
                    attempted.unwrap_or_default()
                ),
            )
        } else {
            ApiError::from_io(format_args!("error writing file '{}'", path.display()), e)
        }
    };
    let mut total = 0u64;
    loop {
        let n = body
            .read(&mut buf)
            .await
            .map_err(|e| ApiError::bad_request(format!("error reading request body: {e}")))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .await
            .map_err(|e| write_failed(Some(n as u64), &e))?;
        if total / ROOM_CHECK_BYTES != (total + n as u64) / ROOM_CHECK_BYTES {
            staged
                .check_room(total + n as u64)
                .map_err(|e| write_failed(Some(n as u64), &e.source))?;
        }
        total += n as u64;
    }
    file.flush().await.map_err(|e| write_failed(None, &e))?;
    drop(file);
    // Each upload replaces the file's metadata.
    let md = metadata.cloned();
    blocking(move || staged.commit(|file, path| set_metadata(file, path, md.as_ref())))
        .await?
        .map_err(|e| match e.step {
            // The target's filesystem is full: the content was not written.
            NO_ROOM_STEP => write_failed(Some(total), &e.source),
            _ => staging_error(e),
        })?;
    Ok(EntryInfo {
        path: path.to_string_lossy().into_owned(),
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        type_: EntryInfoType::File,
        // Serialised only when the upload carried some.
        metadata: metadata.cloned().unwrap_or_default(),
    })
}

/// The longest an upload that failed keeps reading (and discarding) the rest of its body.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads and discards the rest of a failed upload's body (for at most [`DRAIN_LIMIT`]), then
/// gives back `error`. Closing a connection with unread data resets it, and the reset makes
/// the client (or a proxy in between) lose the answer: a 507 would arrive as a broken
/// connection (the router's 502).
async fn drained(error: ApiError, body: &mut (dyn AsyncRead + Unpin + Send)) -> ApiError {
    let _ = tokio::time::timeout(DRAIN_LIMIT, tokio::io::copy(body, &mut tokio::io::sink())).await;
    error
}

/// How often (in bytes staged) an upload checks that it still fits in its target's
/// filesystem: a `fstatvfs` per 8 MiB.
const ROOM_CHECK_BYTES: u64 = 8 << 20;

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))
}

fn staging_error(e: StagingError) -> ApiError {
    ApiError::new(os_error::http_status(&e.source), e.to_string())
}

/// Replaces the `user.e2b.*` attributes of `file` (open at `path`) with `md`. Through the
/// descriptor, so a symlink at `path` does not stop it (no `user.*` attributes on symlinks).
fn set_metadata(
    file: &std::fs::File,
    path: &Path,
    md: Option<&BTreeMap<String, String>>,
) -> Result<(), StagingError> {
    use xattr::FileExt as _;
    let fail = |e: std::io::Error| {
        if e.raw_os_error() == Some(libc::ENOTSUP) {
            tracing::warn!(path = %path.display(), "filesystem does not support xattrs; metadata dropped");
            Ok(())
        } else {
            Err(StagingError {
                step: "setting metadata on",
                path: path.to_owned(),
                source: e,
            })
        }
    };
    if let Ok(names) = file.list_xattr() {
        for n in names {
            if n.to_str().is_some_and(|s| s.starts_with(XATTR_PREFIX))
                && let Err(e) = file.remove_xattr(&n)
            {
                return fail(e);
            }
        }
    }
    for (k, v) in md.into_iter().flatten() {
        if let Err(e) = file.set_xattr(format!("{XATTR_PREFIX}{k}"), v.as_bytes()) {
            return fail(e);
        }
    }
    Ok(())
}

type BoxRead = Box<dyn AsyncRead + Unpin + Send>;

/// The request body as a reader, gunzipped when `Content-Encoding: gzip`.
fn body_reader(headers: &HeaderMap, body: Body) -> Result<BoxRead, ApiError> {
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let reader = StreamReader::new(stream);
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match enc.as_str() {
        "" | "identity" => Ok(Box::new(reader)),
        "gzip" | "x-gzip" => Ok(Box::new(GzipDecoder::new(BufReader::new(reader)))),
        other => Err(ApiError::bad_request(format!(
            "unsupported content encoding '{other}'; supported: gzip, identity"
        ))),
    }
}

fn upload_response(entries: Vec<EntryInfo>) -> Response {
    let body = serde_json::to_string(&entries).unwrap_or_else(|_| "[]".to_owned());
    let mut r = (StatusCode::OK, body).into_response();
    // Upstream sets no type and Go sniffs this one; the SDKs parse JSON regardless.
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `POST /files`.
pub async fn upload(
    AxState(state): AxState<Arc<State>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let q = parse_query(raw.as_deref())?;
    let (user, query_path) = authorize(&state, &headers, &q, Operation::Write)?;
    let metadata = parse_metadata(&headers)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mime: Option<mime_guess::Mime> = ct.parse().ok();
    let essence = mime.as_ref().map(|m| m.essence_str().to_owned());
    match essence.as_deref() {
        Some("application/octet-stream") => {
            let Some(path) = query_path else {
                return Err(ApiError::bad_request(
                    "path query parameter is required for raw body upload",
                ));
            };
            let mut reader = body_reader(&headers, body)?;
            match write_file(&path, &user, &mut reader, metadata.as_ref()).await {
                Ok(entry) => Ok(upload_response(vec![entry])),
                Err(e) => Err(drained(e, &mut reader).await),
            }
        }
        Some("multipart/form-data") => {
            let boundary = mime
                .as_ref()
                .and_then(|m| m.get_param("boundary"))
                .map(|b| b.as_str().to_owned())
                .ok_or_else(|| ApiError::bad_request("multipart body without a boundary"))?;
            let reader = body_reader(&headers, body)?;
            let mut mp =
                multer::Multipart::new(ReaderStream::with_capacity(reader, 64 * 1024), boundary);
            let mut seen = HashSet::new();
            let mut entries = Vec::new();
            loop {
                let field = mp.next_field().await.map_err(|e| {
                    ApiError::bad_request(format!("error parsing multipart body: {e}"))
                })?;
                let Some(field) = field else { break };
                if field.name() != Some("file") {
                    continue;
                }
                let path = match &query_path {
                    Some(p) => p.clone(),
                    None => resolve(&state, field.file_name().unwrap_or(""), &user)?,
                };
                if !seen.insert(path.clone()) {
                    return Err(ApiError::bad_request(format!(
                        "you cannot upload multiple files to the same path '{}' in one upload request",
                        path.display()
                    )));
                }
                let mut reader = StreamReader::new(
                    field.map_err(|e| std::io::Error::other(format!("multipart: {e}"))),
                );
                match write_file(&path, &user, &mut reader, metadata.as_ref()).await {
                    Ok(entry) => entries.push(entry),
                    Err(e) => {
                        let e = drained(e, &mut reader).await;
                        drop(reader);
                        let rest = async {
                            while let Ok(Some(field)) = mp.next_field().await {
                                let mut field =
                                    StreamReader::new(field.map_err(|e| {
                                        std::io::Error::other(format!("multipart: {e}"))
                                    }));
                                let _ = tokio::io::copy(&mut field, &mut tokio::io::sink()).await;
                            }
                        };
                        let _ = tokio::time::timeout(DRAIN_LIMIT, rest).await;
                        return Err(e);
                    }
                }
            }
            Ok(upload_response(entries))
        }
        _ => Err(ApiError::bad_request(format!(
            "unsupported content type '{ct}'; use multipart/form-data or application/octet-stream"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-4", 10), RangeReq::Part(0, 4));
        assert_eq!(parse_range("bytes=5-", 10), RangeReq::Part(5, 9));
        assert_eq!(parse_range("bytes=-3", 10), RangeReq::Part(7, 9));
        assert_eq!(parse_range("bytes=8-100", 10), RangeReq::Part(8, 9));
        assert_eq!(parse_range("bytes=10-", 10), RangeReq::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 10), RangeReq::Unsatisfiable);
        assert_eq!(parse_range("items=0-1", 10), RangeReq::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), RangeReq::Full);
    }

    #[test]
    fn encodings() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
            m
        };
        assert_eq!(negotiate(&HeaderMap::new()).unwrap(), Encoding::Identity);
        assert_eq!(negotiate(&h("gzip")).unwrap(), Encoding::Gzip);
        assert_eq!(negotiate(&h("br, gzip;q=0.5")).unwrap(), Encoding::Gzip);
        assert_eq!(negotiate(&h("br")).unwrap(), Encoding::Identity);
        assert_eq!(negotiate(&h("gzip;q=0")).unwrap(), Encoding::Identity);
        assert_eq!(
            negotiate(&h("br, identity;q=0")).unwrap_err().status,
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            negotiate(&h("*;q=0")).unwrap_err().status,
            StatusCode::NOT_ACCEPTABLE
        );
    }
}
