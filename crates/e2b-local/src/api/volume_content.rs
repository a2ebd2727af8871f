//! The volume content API (`openapi/volume-content.yml`): a volume's files without a
//! sandbox, as the official SDKs' `Volume` reads and writes them. Authenticated by the
//! volume's own token (`Authorization: Bearer`), not the API key; errors are
//! `{"code": "<status>", "message": ...}` (the code a string, as the SDKs declare it).
//! Every path is resolved beneath the volume's root ([`crate::volumes::files`]).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use e2b_api::volume_content::types;
use futures_util::StreamExt as _;
use http::{HeaderMap, StatusCode};
use tokio::io::AsyncWriteExt as _;

use super::AppState;
use super::error::ApiError;
use super::request::{Path, Query, QueryPairs, RawBody, parse_body, query_get};
use crate::lifecycle::Manager;
use crate::volumes::files::{Attrs, Entry, EntryKind, FsError, VolumeFiles, VolumePath};

/// An error of the content API: its status and message, with the code as a string.
#[derive(Debug)]
pub(super) struct ContentError(ApiError);

impl From<ApiError> for ContentError {
    fn from(e: ApiError) -> Self {
        ContentError(e)
    }
}

impl From<FsError> for ContentError {
    fn from(e: FsError) -> Self {
        let status = match &e {
            FsError::NotFound(_) => StatusCode::NOT_FOUND,
            FsError::Invalid(..)
            | FsError::Escapes(_)
            | FsError::NotADirectory(_)
            | FsError::NotAFile(_)
            | FsError::BadParameter(_) => StatusCode::BAD_REQUEST,
            FsError::Exists(_) => StatusCode::CONFLICT,
            FsError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
            FsError::Io(..) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ContentError(ApiError::new(status, e.to_string()))
    }
}

impl IntoResponse for ContentError {
    fn into_response(self) -> Response {
        let body = types::Error {
            code: self.0.status.as_u16().to_string(),
            message: self.0.message,
        };
        (self.0.status, Json(body)).into_response()
    }
}

type Result<T> = std::result::Result<T, ContentError>;

/// The files of volume `id` when `headers` carry its token.
fn authorize(m: &Manager, id: &str, headers: &HeaderMap) -> Result<VolumeFiles> {
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing volume token: send `Authorization: Bearer <token>` with the token of GET /volumes/{volumeID}",
            )
        })?;
    let rec = m
        .store()
        .volume(id)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .filter(|v| v.id == id)
        .ok_or_else(|| ApiError::not_found(format!("volume '{id}' not found")))?;
    if !e2b_envd::signature::constant_time_eq(token.as_bytes(), rec.token.as_bytes()) {
        return Err(ApiError::unauthorized(format!("invalid token for volume '{id}'")).into());
    }
    m.volumes()
        .files(&rec.id)
        .map_err(|e| ApiError::internal(e.to_string()).into())
}

/// The `path` query parameter, parsed.
fn path_of(q: &QueryPairs) -> Result<VolumePath> {
    let raw = query_get(q, "path")
        .ok_or_else(|| ApiError::bad_request("missing query parameter `path`"))?;
    Ok(VolumePath::parse(raw)?)
}

/// Query parameter `key` parsed as `T`, when present.
fn param<T: std::str::FromStr>(q: &QueryPairs, key: &str, expected: &str) -> Result<Option<T>> {
    query_get(q, key)
        .map(|v| {
            v.parse::<T>().map_err(|_| {
                ApiError::bad_request(format!("invalid {key} {v:?}: expected {expected}")).into()
            })
        })
        .transpose()
}

fn attrs_of(q: &QueryPairs) -> Result<Attrs> {
    Ok(Attrs {
        uid: param(q, "uid", "a user id")?,
        gid: param(q, "gid", "a group id")?,
        mode: param(q, "mode", "a permission mode")?,
    })
}

fn force_of(q: &QueryPairs) -> Result<bool> {
    Ok(param(q, "force", "true or false")?.unwrap_or(false))
}

/// The wire form of an entry.
fn stat(e: Entry) -> types::VolumeEntryStat {
    types::VolumeEntryStat {
        atime: e.atime,
        ctime: e.ctime,
        gid: e.gid,
        mode: e.mode,
        mtime: e.mtime,
        name: e.name,
        path: e.path,
        size: i64::try_from(e.size).unwrap_or(i64::MAX),
        target: e.target,
        type_: match e.kind {
            EntryKind::File => types::VolumeEntryType::File,
            EntryKind::Directory => types::VolumeEntryType::Directory,
            EntryKind::Symlink => types::VolumeEntryType::Symlink,
            EntryKind::Other => types::VolumeEntryType::Unknown,
        },
        uid: e.uid,
    }
}

/// Runs a filesystem operation off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, FsError> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("a volume operation: {e}")))?
        .map_err(ContentError::from)
}

/// `GET /volumecontent/{volumeID}/dir?path=&depth=`.
pub(super) async fn list_dir(
    State(m): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> Result<Json<Vec<types::VolumeEntryStat>>> {
    let files = authorize(&m, &id, &headers)?;
    let path = path_of(&q)?;
    let depth = param(&q, "depth", "a positive number")?.unwrap_or(1);
    let entries = blocking(move || files.list(&path, depth)).await?;
    Ok(Json(entries.into_iter().map(stat).collect()))
}

/// `POST /volumecontent/{volumeID}/dir?path=&uid=&gid=&mode=&force=`: 201.
pub(super) async fn make_dir(
    State(m): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> Result<(StatusCode, Json<types::VolumeEntryStat>)> {
    let files = authorize(&m, &id, &headers)?;
    let (path, attrs, force) = (path_of(&q)?, attrs_of(&q)?, force_of(&q)?);
    let entry = blocking(move || files.make_dir(&path, attrs, force)).await?;
    Ok((StatusCode::CREATED, Json(stat(entry))))
}

/// `GET /volumecontent/{volumeID}/path?path=`.
pub(super) async fn stat_path(
    State(m): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> Result<Json<types::VolumeEntryStat>> {
    let files = authorize(&m, &id, &headers)?;
    let path = path_of(&q)?;
    Ok(Json(stat(blocking(move || files.stat(&path)).await?)))
}

/// `PATCH /volumecontent/{volumeID}/path?path=` with `{uid?, gid?, mode?}`.
pub(super) async fn update_path(
    State(m): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
    RawBody(body): RawBody,
) -> Result<Json<types::VolumeEntryStat>> {
    let files = authorize(&m, &id, &headers)?;
    let path = path_of(&q)?;
    let req: types::VolumeEntryUpdate = parse_body(&body, &["uid", "gid", "mode"], true)?;
    let attrs = Attrs {
        uid: req.uid,
        gid: req.gid,
        mode: req.mode,
    };
    Ok(Json(stat(
        blocking(move || files.update(&path, attrs)).await?,
    )))
}

/// `DELETE /volumecontent/{volumeID}/path?path=`: 204.
pub(super) async fn remove_path(
    State(m): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> Result<StatusCode> {
    let files = authorize(&m, &id, &headers)?;
    let path = path_of(&q)?;
    blocking(move || files.remove(&path)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /volumecontent/{volumeID}/file?path=`: the bytes, streamed.
pub(super) async fn read_file(
    State(m): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> Result<Response> {
    let files = authorize(&m, &id, &headers)?;
    let path = path_of(&q)?;
    let given = path.given().to_owned();
    let file = blocking(move || files.open_read(&path)).await?;
    let len = file
        .metadata()
        .map_err(|e| ContentError::from(FsError::Io(given, e)))?
        .len();
    let stream =
        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 1 << 20);
    Ok((
        [
            (
                http::header::CONTENT_TYPE,
                "application/octet-stream".to_owned(),
            ),
            (http::header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `PUT /volumecontent/{volumeID}/file?path=&uid=&gid=&mode=&force=`: the body becomes the
/// whole file (streamed to a new unnamed file, synced, then renamed over the old one), 201
/// with its stat. A write that fails (the volume full: 507) or a body cut off leaves the old
/// file as it was.
pub(super) async fn write_file(
    State(m): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
    body: Body,
) -> Result<(StatusCode, Json<types::VolumeEntryStat>)> {
    let files = std::sync::Arc::new(authorize(&m, &id, &headers)?);
    let (path, attrs, force) = (path_of(&q)?, attrs_of(&q)?, force_of(&q)?);
    let pending = {
        let (files, path) = (files.clone(), path.clone());
        blocking(move || files.open_write(&path, attrs, force)).await?
    };
    let mut file =
        tokio::fs::File::from_std(pending.file.try_clone().map_err(|e| io_error(&path, e))?);
    let written: std::result::Result<(), ContentError> = async {
        // Refused part-way (507), the rest of the body is read and dropped, so the client
        // gets the answer rather than a broken pipe.
        let mut stream = Body::new(crate::router::DrainOnDrop::new(body)).into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| io_error(&path, e))?;
        }
        file.flush().await.map_err(|e| io_error(&path, e))?;
        file.sync_all().await.map_err(|e| io_error(&path, e))
    }
    .await;
    drop(file);
    // Dropped uncommitted on failure: the new file goes, the old one stays.
    written?;
    blocking(move || {
        pending.commit()?;
        files.stat(&path)
    })
    .await
    .map(|entry| (StatusCode::CREATED, Json(stat(entry))))
}

/// A write's I/O error: `ENOSPC`/`EDQUOT` is the volume being full.
fn io_error(path: &VolumePath, e: std::io::Error) -> ContentError {
    let given = path.given().to_owned();
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => FsError::NoSpace(given),
        _ => FsError::Io(given, e),
    }
    .into()
}
