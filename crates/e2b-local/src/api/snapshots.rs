//! Snapshots: `POST /sandboxes/{sandboxID}/snapshots` makes one, `GET /snapshots` lists
//! them; they are templates, deleted with `DELETE /templates/{templateID}`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use e2b_api::types;
use http::{HeaderValue, StatusCode};

use super::AppState;
use super::error::ApiError;
use super::request::{Path, Query, QueryPairs, RawBody, parse_body, query_get, sandbox_id};
use crate::lifecycle::{SnapshotEntry, SnapshotQuery};

/// `SandboxSnapshotRequest`. Its `memory` (py 2.63's snapshot mode) is allowed and has no
/// effect: a snapshot here is the sandbox's files (COMPATIBILITY.md).
#[derive(Debug, serde::Deserialize)]
struct SnapshotBody {
    name: Option<String>,
}

fn info(e: SnapshotEntry) -> types::SnapshotInfo {
    types::SnapshotInfo {
        snapshot_id: e.snapshot_id,
        names: e.names,
    }
}

/// `POST /sandboxes/{sandboxID}/snapshots`: 201 with the snapshot's id and names; 400 for
/// a bad name, 404 for an unknown or killed sandbox.
pub(super) async fn create(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let id = sandbox_id(&id)?;
    let req: SnapshotBody = parse_body(&body, &["name", "memory"], true)?;
    let name = req.name.filter(|n| !n.is_empty());
    // Runs to its end even if the client goes away, so no capture is left unrecorded.
    let made = {
        let m = m.clone();
        tokio::spawn(async move { m.snapshot(&id, name.as_deref()).await })
            .await
            .map_err(|e| ApiError::internal(format!("snapshotting a sandbox: {e}")))??
    };
    Ok((StatusCode::CREATED, Json(info(made))).into_response())
}

/// `GET /snapshots`: newest first; filters `sandboxID` and `name`; pages of `limit` (1 to
/// 100, default 100) through `nextToken` and `X-Next-Token`.
pub(super) async fn list(
    State(m): State<AppState>,
    Query(q): Query<QueryPairs>,
) -> Result<Response, ApiError> {
    const KNOWN: &[&str] = &["sandboxID", "name", "limit", "nextToken"];
    if let Some((k, _)) = q.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter `{k}`"
        )));
    }
    let limit = match query_get(&q, "limit") {
        None | Some("") => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=100) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid limit \"{l}\": expected an integer from 1 to 100"
                )));
            }
        },
    };
    let non_empty = |k| {
        query_get(&q, k)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let page = m.snapshots(&SnapshotQuery {
        sandbox_id: non_empty("sandboxID"),
        name: non_empty("name"),
        limit,
        next_token: non_empty("nextToken"),
    })?;
    let items: Vec<types::SnapshotInfo> = page.items.into_iter().map(info).collect();
    let mut response = Json(items).into_response();
    if let Some(next) = page.next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert("x-next-token", next);
    }
    Ok(response)
}
