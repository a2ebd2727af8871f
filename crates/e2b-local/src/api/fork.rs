//! `POST /sandboxes/{sandboxID}/fork`: one capture of the source's files, `count` new
//! sandboxes booted on it, one result each.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use e2b_api::types;
use http::{HeaderValue, StatusCode};

use super::AppState;
use super::bodies::sandbox_body;
use super::error::ApiError;
use super::request::{Path, RawBody, parse_body, sandbox_id};

/// Says what a fork copies, since E2B's `SandboxForkResult` has no field for it.
pub(crate) const FORK_SCOPE_HEADER: &str = "x-e2b-local-fork-scope";
/// [`FORK_SCOPE_HEADER`]'s value: forks are not VM clones here.
pub(crate) const FORK_SCOPE: &str =
    "filesystem: forks boot fresh on the source's files; processes and memory are not cloned";
/// How long the source was frozen for the capture, in milliseconds (0 for a paused one).
pub(crate) const FROZEN_MS_HEADER: &str = "x-e2b-local-frozen-ms";

/// `SandboxForkRequest`, with the numbers wide enough to name a bad one in the error
/// rather than fail to parse it.
#[derive(Debug, serde::Deserialize)]
struct ForkBody {
    /// Seconds to live of each fork (E2B's default: 15).
    timeout: Option<i64>,
    /// How many forks (default 1).
    count: Option<i64>,
}

/// `POST /sandboxes/{sandboxID}/fork`: 201 with one `{sandbox}` or `{error}` per fork;
/// 400 for a bad count or timeout, 404 for an unknown or killed source.
pub(super) async fn fork(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let id = sandbox_id(&id)?;
    let req: ForkBody = parse_body(&body, &["timeout", "count"], true)?;
    // Run to its end even if the client goes away: a fork cut off between its steps would
    // leave sandboxes no one tracks.
    let forked = {
        let m = m.clone();
        tokio::spawn(async move {
            m.fork(&id, req.count.unwrap_or(1), req.timeout.unwrap_or(15))
                .await
        })
        .await
        .map_err(|e| ApiError::internal(format!("forking a sandbox: {e}")))??
    };
    let frozen = forked.capture.frozen;
    let results: Vec<types::SandboxForkResult> = forked
        .forks
        .into_iter()
        .map(|r| match r {
            Ok(live) => types::SandboxForkResult {
                sandbox: Some(sandbox_body(&m, &live)),
                error: None,
            },
            Err(e) => types::SandboxForkResult {
                sandbox: None,
                error: Some(ApiError::from(e).wire()),
            },
        })
        .collect();
    let mut response = (StatusCode::CREATED, Json(results)).into_response();
    let h = response.headers_mut();
    h.insert(FORK_SCOPE_HEADER, HeaderValue::from_static(FORK_SCOPE));
    if let Ok(v) = HeaderValue::from_str(&format!("{:.1}", frozen.as_secs_f64() * 1e3)) {
        h.insert(FROZEN_MS_HEADER, v);
    }
    Ok(response)
}
