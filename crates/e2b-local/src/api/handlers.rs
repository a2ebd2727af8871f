//! One axum handler per control-plane operation of `openapi/e2b-api.yml`. Requests and
//! responses are `e2b_api::types`; every failure is an [`ApiError`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use e2b_api::types;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::metrics;
use crate::lifecycle::{CreateParams, LifecycleError, Live, Manager, valid_sandbox_id};
use crate::state::{SandboxRecord, SandboxState};

/// `clientID` of every sandbox: a constant E2B keeps for old SDKs.
const CLIENT_ID: &str = "6532622b";

/// Shared state of the handlers.
pub type AppState = Arc<Manager>;

/// Largest accepted JSON body.
const MAX_BODY: usize = 1 << 20;
/// Largest accepted metadata (sum of key and value bytes).
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Largest accepted env vars (sum of key and value bytes).
pub const MAX_ENV_BYTES: usize = 64 * 1024;

/// A request body read whole, up to `MAX_BODY` bytes; larger bodies get 413 with a
/// `{code, message}` body (axum's own limit would answer in plain text).
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, _state: &S) -> Result<Self, ApiError> {
        axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map(RawBody)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body is larger than {MAX_BODY} bytes or unreadable: {e}"),
                )
            })
    }
}

/// Parses a JSON object body, rejecting unknown fields (naming them) and type errors with 400.
/// An empty body is `{}` when `optional`.
fn parse_body<T: DeserializeOwned>(
    body: &Bytes,
    allowed: &[&str],
    optional: bool,
) -> Result<T, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::bad_request(format!(
            "request body is too large: {} bytes (at most {MAX_BODY})",
            body.len()
        )));
    }
    let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        if !optional {
            return Err(ApiError::bad_request(
                "request body is missing: expected a JSON object",
            ));
        }
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?
    };
    let value = match value {
        serde_json::Value::Null if optional => serde_json::Value::Object(serde_json::Map::new()),
        v => v,
    };
    let serde_json::Value::Object(map) = &value else {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown field `{k}` in request body (expected one of: {})",
            allowed.join(", ")
        )));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
pub fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query pairs, decoded.
pub fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Normalizes a path sandbox id: old SDKs send `<id>-<clientID>`; only the first part counts.
fn sandbox_id(raw: &str) -> Result<String, ApiError> {
    let id = raw.split('-').next().unwrap_or("");
    if !valid_sandbox_id(id) {
        return Err(ApiError::bad_request(format!(
            "invalid sandbox ID \"{raw}\": expected lowercase letters and digits"
        )));
    }
    Ok(id.to_owned())
}

fn live(m: &Manager, raw: &str) -> Result<Arc<Live>, ApiError> {
    let id = sandbox_id(raw)?;
    m.get(&id)
        .ok_or_else(|| LifecycleError::not_found(&id).into())
}

fn check_map(what: &str, map: &BTreeMap<String, String>, max: usize) -> Result<(), ApiError> {
    let size: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > max {
        return Err(ApiError::bad_request(format!(
            "{what} is too large: {size} bytes (at most {max})"
        )));
    }
    if map.keys().any(String::is_empty) {
        return Err(ApiError::bad_request(format!("{what} has an empty key")));
    }
    Ok(())
}

fn sandbox_body(m: &Manager, live: &Live) -> types::Sandbox {
    let rec = live.record();
    types::Sandbox {
        alias: Some(rec.template.clone()),
        client_id: CLIENT_ID.into(),
        domain: Some(m.config().domain.clone()),
        envd_access_token: live.token.clone(),
        envd_version: rec.envd_version.into(),
        sandbox_id: rec.id,
        template_id: rec.template,
        traffic_access_token: None,
    }
}

fn api_state(s: SandboxState) -> types::SandboxState {
    match s {
        SandboxState::Paused => types::SandboxState::Paused,
        _ => types::SandboxState::Running,
    }
}

struct Sizes {
    cpu: types::CpuCount,
    mem_mb: i32,
    disk_mb: i32,
}

fn sizes(m: &Manager) -> Sizes {
    let limits = m.config().limits;
    let cpus = limits
        .cpu_millis
        .map(|c| c.div_ceil(1000).max(1))
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
        });
    let mem = limits.memory_bytes.unwrap_or_else(metrics::host_mem_total) >> 20;
    let disk = limits.disk_bytes.unwrap_or_else(|| {
        nix::sys::statvfs::statvfs(m.runtime().data_dir())
            .map(|v| v.blocks() * v.fragment_size())
            .unwrap_or(0)
    }) >> 20;
    Sizes {
        cpu: types::CpuCount(std::num::NonZeroU32::new(cpus).unwrap_or(std::num::NonZeroU32::MIN)),
        mem_mb: i32::try_from(mem).unwrap_or(i32::MAX).max(128),
        disk_mb: i32::try_from(disk).unwrap_or(i32::MAX),
    }
}

fn detail(m: &Manager, live: &Live) -> types::SandboxDetail {
    let rec = live.record();
    let s = sizes(m);
    types::SandboxDetail {
        alias: Some(rec.template.clone()),
        allow_internet_access: rec.allow_internet_access,
        client_id: CLIENT_ID.into(),
        cpu_count: s.cpu,
        disk_size_mb: types::DiskSizeMb(s.disk_mb),
        domain: Some(m.config().domain.clone()),
        end_at: rec.end_at,
        envd_access_token: live.token.clone(),
        envd_version: rec.envd_version.into(),
        lifecycle: Some(types::SandboxLifecycle {
            auto_resume: false,
            on_timeout: if rec.auto_pause {
                types::SandboxOnTimeout::Pause
            } else {
                types::SandboxOnTimeout::Kill
            },
        }),
        memory_mb: types::MemoryMb(s.mem_mb),
        metadata: Some(types::SandboxMetadata(rec.metadata)),
        network: None,
        sandbox_id: rec.id,
        started_at: rec.started_at,
        state: api_state(rec.state),
        template_id: rec.template,
        volume_mounts: Vec::new(),
    }
}

fn listed(m: &Manager, rec: SandboxRecord) -> types::ListedSandbox {
    let s = sizes(m);
    types::ListedSandbox {
        alias: Some(rec.template.clone()),
        client_id: CLIENT_ID.into(),
        cpu_count: s.cpu,
        disk_size_mb: types::DiskSizeMb(s.disk_mb),
        end_at: rec.end_at,
        envd_version: rec.envd_version.into(),
        memory_mb: types::MemoryMb(s.mem_mb),
        metadata: Some(types::SandboxMetadata(rec.metadata)),
        sandbox_id: rec.id,
        started_at: rec.started_at,
        state: api_state(rec.state),
        template_id: rec.template,
        volume_mounts: Vec::new(),
    }
}

const NEW_SANDBOX_V2_FIELDS: &[&str] = &[
    "templateID",
    "timeout",
    "allow_internet_access",
    "metadata",
    "envVars",
    "autoPause",
    "autoPauseMemory",
    "autoResume",
    "network",
    "iam",
    "mcp",
    "volumeMounts",
];

#[allow(clippy::too_many_arguments)]
fn create_params(
    template: String,
    timeout: i32,
    metadata: Option<types::SandboxMetadata>,
    env_vars: Option<types::EnvVars>,
    secure: bool,
    auto_pause: bool,
    allow_internet_access: Option<bool>,
    mcp: bool,
    volume_mounts: usize,
) -> Result<CreateParams, ApiError> {
    if template.is_empty() {
        return Err(ApiError::bad_request("templateID must not be empty"));
    }
    if mcp {
        return Err(ApiError::bad_request(
            "mcp is not supported by e2b-local (no MCP gateway template)",
        ));
    }
    if volume_mounts > 0 {
        return Err(ApiError::bad_request(
            "volumeMounts are not supported by e2b-local",
        ));
    }
    let metadata = metadata.map(|m| m.0).unwrap_or_default();
    check_map("metadata", &metadata, MAX_METADATA_BYTES)?;
    let env_vars = env_vars.map(|e| e.0).unwrap_or_default();
    check_map("envVars", &env_vars, MAX_ENV_BYTES)?;
    // `namespace/alias:tag` references: the tag `default` (or none) names the template.
    let template = match template.split_once(':') {
        Some((name, "default")) => name.to_owned(),
        _ => template,
    };
    Ok(CreateParams {
        template,
        timeout: i64::from(timeout),
        metadata,
        env_vars,
        secure,
        auto_pause,
        allow_internet_access,
    })
}

/// `POST /sandboxes`.
pub async fn create_v1(
    State(m): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let mut fields = NEW_SANDBOX_V2_FIELDS.to_vec();
    fields.push("secure");
    let req: types::NewSandbox = parse_body(&body, &fields, false)?;
    let p = create_params(
        req.template_id,
        req.timeout,
        req.metadata,
        req.env_vars,
        req.secure.unwrap_or(true),
        req.auto_pause,
        req.allow_internet_access,
        req.mcp.is_some(),
        req.volume_mounts.len(),
    )?;
    let live = m.create(p).await?;
    Ok((StatusCode::CREATED, Json(sandbox_body(&m, &live))).into_response())
}

/// `POST /v2/sandboxes` (always secure; a repeated `Idempotency-Key` returns the same sandbox).
pub async fn create_v2(
    State(m): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    // py 2.63 reuses an `Idempotency-Key` on retries of the same create.
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v.to_str().unwrap_or("");
            let ok = (1..=255).contains(&k.len())
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(ApiError::bad_request(
                    "invalid Idempotency-Key header: expected 1 to 255 characters of [a-z0-9-]",
                ));
            }
            Some(k.to_owned())
        }
    };
    if let Some(live) = key.as_deref().and_then(|k| m.idempotent(k)) {
        return Ok((StatusCode::CREATED, Json(sandbox_body(&m, &live))).into_response());
    }
    let req: types::NewSandboxV2 = parse_body(&body, NEW_SANDBOX_V2_FIELDS, false)?;
    let p = create_params(
        req.template_id,
        req.timeout,
        req.metadata,
        req.env_vars,
        true,
        req.auto_pause,
        req.allow_internet_access,
        req.mcp.is_some(),
        req.volume_mounts.len(),
    )?;
    let live = m.create(p).await?;
    if let Some(k) = key {
        m.remember_idempotency(k, live.record().id);
    }
    Ok((StatusCode::CREATED, Json(sandbox_body(&m, &live))).into_response())
}

/// Parses the `metadata` filter: `k=v&k2=v2`, each key and value percent-encoded once more.
fn metadata_filter(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = raw.filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid metadata filter \"{p}\": expected key=value pairs joined by &"
                ))
            })?;
            Ok((percent_decode(k, false), percent_decode(v, false)))
        })
        .collect()
}

fn matches_metadata(rec: &SandboxRecord, filter: &[(String, String)]) -> bool {
    filter
        .iter()
        .all(|(k, v)| rec.metadata.get(k).is_some_and(|x| x == v))
}

/// `GET /sandboxes` (v1: running sandboxes, metadata filter).
pub async fn list_v1(
    State(m): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_query(q.as_deref());
    if let Some((k, _)) = q.iter().find(|(k, _)| k != "metadata") {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter `{k}`"
        )));
    }
    let filter = metadata_filter(query_get(&q, "metadata"))?;
    let mut recs: Vec<SandboxRecord> = m
        .all()
        .iter()
        .map(|l| l.record())
        .filter(|r| r.state == SandboxState::Running && matches_metadata(r, &filter))
        .collect();
    recs.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
    let out: Vec<types::ListedSandbox> = recs.into_iter().map(|r| listed(&m, r)).collect();
    Ok(Json(out).into_response())
}

fn encode_cursor(rec: &SandboxRecord) -> String {
    let ns = rec.started_at.timestamp_nanos_opt().unwrap_or(0);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{ns}__{}", rec.id))
}

fn decode_cursor(tok: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::bad_request(format!("invalid nextToken \"{tok}\""));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok.trim_end_matches('='))
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (ns, id) = raw.split_once("__").ok_or_else(bad)?;
    Ok((ns.parse().map_err(|_| bad())?, id.to_owned()))
}

/// `GET /v2/sandboxes`: filters, order, pagination through `X-Next-Token`, `X-Total-Running`.
pub async fn list_v2(
    State(m): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_query(q.as_deref());
    const KNOWN: &[&str] = &[
        "metadata",
        "state",
        "order",
        "startedAfter",
        "template",
        "nextToken",
        "limit",
    ];
    if let Some((k, _)) = q.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter `{k}`"
        )));
    }
    let filter = metadata_filter(query_get(&q, "metadata"))?;
    let mut states = Vec::new();
    if let Some(s) = query_get(&q, "state").filter(|s| !s.is_empty()) {
        for part in s.split(',') {
            states.push(match part.trim() {
                "running" => SandboxState::Running,
                "paused" => SandboxState::Paused,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "invalid state \"{other}\": expected running or paused"
                    )));
                }
            });
        }
    }
    let asc = match query_get(&q, "order") {
        None | Some("" | "desc") => false,
        Some("asc") => true,
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "invalid order \"{o}\": expected asc or desc"
            )));
        }
    };
    let started_after = query_get(&q, "startedAfter")
        .filter(|s| !s.is_empty())
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| ApiError::bad_request(format!("invalid startedAfter \"{s}\": {e}")))
        })
        .transpose()?;
    let template = query_get(&q, "template").filter(|s| !s.is_empty());
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
    let cursor = query_get(&q, "nextToken")
        .filter(|s| !s.is_empty())
        .map(decode_cursor)
        .transpose()?;

    let all: Vec<SandboxRecord> = m.all().iter().map(|l| l.record()).collect();
    let total_running = all
        .iter()
        .filter(|r| r.state == SandboxState::Running)
        .count();
    let key = |r: &SandboxRecord| {
        (
            r.started_at.timestamp_nanos_opt().unwrap_or(0),
            r.id.clone(),
        )
    };
    let mut recs: Vec<SandboxRecord> = all
        .into_iter()
        .filter(|r| states.is_empty() || states.contains(&r.state))
        .filter(|r| matches_metadata(r, &filter))
        .filter(|r| started_after.is_none_or(|t| r.started_at >= t))
        .filter(|r| template.is_none_or(|t| r.template == t))
        .collect();
    recs.sort_by_key(key);
    if !asc {
        recs.reverse();
    }
    if let Some(c) = &cursor {
        recs.retain(|r| {
            let k = key(r);
            if asc { k > *c } else { k < *c }
        });
    }
    let more = recs.len() > limit;
    recs.truncate(limit);
    let next = if more {
        recs.last().map(encode_cursor)
    } else {
        None
    };
    let out: Vec<types::ListedSandbox> = recs.into_iter().map(|r| listed(&m, r)).collect();
    let mut resp = Json(out).into_response();
    let h = resp.headers_mut();
    if let Some(n) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        h.insert("x-next-token", n);
    }
    h.insert("x-total-running", HeaderValue::from(total_running));
    Ok(resp)
}

/// `GET /sandboxes/{sandboxID}`.
pub async fn get_sandbox(
    State(m): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<types::SandboxDetail>, ApiError> {
    let l = live(&m, &id)?;
    Ok(Json(detail(&m, &l)))
}

/// `DELETE /sandboxes/{sandboxID}`: 204, or 404.
pub async fn kill(
    State(m): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = sandbox_id(&id)?;
    m.kill(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{sandboxID}/timeout`: end = now + timeout (may shorten).
pub async fn set_timeout(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let id = sandbox_id(&id)?;
    let req: types::SandboxTimeoutRequest = parse_body(&body, &["timeout"], false)?;
    m.set_timeout(&id, i64::from(req.timeout))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{sandboxID}/refreshes`: extends only (`duration` ≤ 3600, default 300).
pub async fn refresh(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let id = sandbox_id(&id)?;
    let req: types::SandboxRefreshRequest = parse_body(&body, &["duration"], true)?;
    let d = req.duration.unwrap_or(300);
    if !(0..=3600).contains(&d) {
        return Err(ApiError::bad_request(format!(
            "duration must be between 0 and 3600 seconds (got {d})"
        )));
    }
    m.refresh(&id, d)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{sandboxID}/pause`: 204, 409 when already paused.
pub async fn pause(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let id = sandbox_id(&id)?;
    let _req: serde_json::Value = parse_body(&body, &["memory", "requireHealthyGuest"], true)?;
    m.pause(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{sandboxID}/resume` (deprecated): 201, 409 when running.
pub async fn resume(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let id = sandbox_id(&id)?;
    let req: types::ResumedSandbox = parse_body(&body, &["timeout", "autoPause", "memory"], true)?;
    if req.timeout <= 0 {
        return Err(LifecycleError::TimeoutNotPositive {
            secs: i64::from(req.timeout),
        }
        .into());
    }
    let l = m.resume(&id, i64::from(req.timeout)).await?;
    if let Some(ap) = req.auto_pause {
        crate::lifecycle::lock(&l.rec).auto_pause = ap;
    }
    Ok((StatusCode::CREATED, Json(sandbox_body(&m, &l))).into_response())
}

async fn connect_common(m: &Manager, id: &str, timeout: i64) -> Result<Response, ApiError> {
    let id = sandbox_id(id)?;
    let (l, resumed) = m.connect(&id, timeout).await?;
    let status = if resumed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(sandbox_body(m, &l))).into_response())
}

/// `POST /sandboxes/{sandboxID}/connect`: 200 running (extends only), 201 resumed.
pub async fn connect_v1(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let req: types::ConnectSandbox = parse_body(&body, &["timeout", "memory"], false)?;
    connect_common(&m, &id, i64::from(req.timeout)).await
}

/// `POST /v2/sandboxes/{sandboxID}/connect`: body optional, timeout default 300.
pub async fn connect_v2(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let req: types::ConnectSandboxV2 = parse_body(&body, &["timeout", "memory"], true)?;
    connect_common(&m, &id, i64::from(req.timeout)).await
}

/// `GET /sandboxes/{sandboxID}/metrics`: the current sample.
pub async fn metrics(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<types::SandboxMetric>>, ApiError> {
    let q = parse_query(q.as_deref());
    for key in ["start", "end"] {
        if let Some(v) = query_get(&q, key).filter(|v| v.parse::<i64>().is_err()) {
            return Err(ApiError::bad_request(format!(
                "invalid {key} \"{v}\": expected unix seconds"
            )));
        }
    }
    let l = live(&m, &id)?;
    Ok(Json(vec![metrics::sample(&m, &l).await]))
}

/// `GET /sandboxes/metrics?sandbox_ids=a,b`.
pub async fn metrics_many(
    State(m): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<types::SandboxesWithMetrics>, ApiError> {
    let q = parse_query(q.as_deref());
    let ids = query_get(&q, "sandbox_ids")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("query parameter sandbox_ids is required"))?;
    let ids: Vec<&str> = ids.split(',').collect();
    if ids.len() > 100 {
        return Err(ApiError::bad_request(format!(
            "too many sandbox_ids: {} (at most 100)",
            ids.len()
        )));
    }
    let mut out = BTreeMap::new();
    for raw in ids {
        let id = sandbox_id(raw)?;
        if let Some(l) = m
            .get(&id)
            .filter(|l| l.record().state == SandboxState::Running)
        {
            out.insert(id, metrics::sample(&m, &l).await);
        }
    }
    Ok(Json(types::SandboxesWithMetrics { sandboxes: out }))
}

/// One parsed log line of envd (`<RFC 3339> <LEVEL> <message>`).
fn parse_log_line(line: &str, fallback: DateTime<Utc>) -> types::SandboxLogEntry {
    let t = line.trim_start();
    let (ts, rest) = t.split_once(' ').unwrap_or((t, ""));
    let rest = rest.trim_start();
    let (lvl, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let lvl = Some(lvl).filter(|l| !l.is_empty());
    let ts = DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc));
    let (timestamp, level, message) = match (ts, lvl) {
        (Some(ts), Some(l)) => {
            let level = match l.trim() {
                "TRACE" | "DEBUG" => types::LogLevel::Debug,
                "WARN" => types::LogLevel::Warn,
                "ERROR" => types::LogLevel::Error,
                _ => types::LogLevel::Info,
            };
            (ts, level, rest.trim_start().to_owned())
        }
        _ => (fallback, types::LogLevel::Info, line.to_owned()),
    };
    types::SandboxLogEntry {
        fields: BTreeMap::new(),
        level,
        message,
        timestamp,
    }
}

fn read_logs(l: &Live) -> Vec<(String, types::SandboxLogEntry)> {
    let started = l.record().started_at;
    let text = std::fs::read(&l.log).unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|s| !s.trim().is_empty())
        .map(|s| (s.to_owned(), parse_log_line(s, started)))
        .collect()
}

fn level_rank(l: types::LogLevel) -> u8 {
    match l {
        types::LogLevel::Debug => 0,
        types::LogLevel::Info => 1,
        types::LogLevel::Warn => 2,
        types::LogLevel::Error => 3,
    }
}

/// `GET /sandboxes/{sandboxID}/logs` (deprecated): envd's log lines.
pub async fn logs_v1(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<types::SandboxLogs>, ApiError> {
    let q = parse_query(q.as_deref());
    let start = parse_opt_i64(&q, "start")?.unwrap_or(0);
    let limit = parse_opt_i64(&q, "limit")?.unwrap_or(1000).max(0);
    let l = live(&m, &id)?;
    let mut logs = Vec::new();
    let mut entries = Vec::new();
    for (line, e) in read_logs(&l) {
        if e.timestamp.timestamp_millis() < start {
            continue;
        }
        if logs.len() as i64 >= limit {
            break;
        }
        logs.push(types::SandboxLog {
            line,
            timestamp: e.timestamp,
        });
        entries.push(e);
    }
    Ok(Json(types::SandboxLogs {
        log_entries: entries,
        logs,
    }))
}

fn parse_opt_i64(q: &[(String, String)], key: &str) -> Result<Option<i64>, ApiError> {
    query_get(q, key)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid {key} \"{v}\": expected a non-negative integer"
                ))
            })
        })
        .transpose()
}

/// `GET /v2/sandboxes/{sandboxID}/logs`: cursor, limit, direction, level, search.
pub async fn logs_v2(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<types::SandboxLogsV2Response>, ApiError> {
    let q = parse_query(q.as_deref());
    let cursor = parse_opt_i64(&q, "cursor")?;
    let limit = parse_opt_i64(&q, "limit")?.unwrap_or(1000);
    if limit > 1000 {
        return Err(ApiError::bad_request(format!(
            "invalid limit \"{limit}\": at most 1000"
        )));
    }
    let backward = match query_get(&q, "direction") {
        None | Some("" | "forward") => false,
        Some("backward") => true,
        Some(d) => {
            return Err(ApiError::bad_request(format!(
                "invalid direction \"{d}\": expected forward or backward"
            )));
        }
    };
    let min_level = match query_get(&q, "level") {
        None | Some("") => 0,
        Some(l) => match l.parse::<types::LogLevel>() {
            Ok(l) => level_rank(l),
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "invalid level \"{l}\": expected debug, info, warn or error"
                )));
            }
        },
    };
    let search = query_get(&q, "search").unwrap_or("");
    if search.len() > 256 {
        return Err(ApiError::bad_request(
            "search is longer than 256 characters",
        ));
    }
    let l = live(&m, &id)?;
    let mut entries: Vec<types::SandboxLogEntry> = read_logs(&l)
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| level_rank(e.level) >= min_level && e.message.contains(search))
        .collect();
    if backward {
        entries.reverse();
    }
    let logs = entries
        .into_iter()
        .filter(|e| {
            cursor.is_none_or(|c| {
                let t = e.timestamp.timestamp_millis();
                if backward { t <= c } else { t >= c }
            })
        })
        .take(usize::try_from(limit).unwrap_or(1000))
        .collect();
    Ok(Json(types::SandboxLogsV2Response { logs }))
}

fn template_json(m: &Manager, name: &str, created: DateTime<Utc>) -> types::Template {
    let s = sizes(m);
    types::Template {
        aliases: vec![name.to_owned()],
        build_count: 1,
        build_id: format!("{name}-build"),
        build_status: types::TemplateBuildStatus::Ready,
        cpu_count: s.cpu,
        created_at: created,
        created_by: None,
        disk_size_mb: types::DiskSizeMb(s.disk_mb),
        envd_version: envd::ENVD_VERSION.to_owned().into(),
        last_spawned_at: None,
        memory_mb: types::MemoryMb(s.mem_mb),
        names: vec![name.to_owned()],
        public: false,
        spawn_count: 0,
        template_id: name.to_owned(),
        updated_at: created,
    }
}

fn template_list(m: &Manager) -> Result<Vec<types::Template>, ApiError> {
    let base_created = std::fs::metadata(m.runtime().data_dir().join("templates/base"))
        .and_then(|md| md.modified())
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now());
    let mut out = vec![template_json(m, crate::template::BASE, base_created)];
    for t in m
        .store()
        .templates()
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
        out.push(template_json(m, &t.name, t.created_at));
    }
    Ok(out)
}

/// `GET /templates`.
pub async fn templates(State(m): State<AppState>) -> Result<Json<Vec<types::Template>>, ApiError> {
    Ok(Json(template_list(&m)?))
}

/// `GET /templates/{templateID}`.
pub async fn template(
    State(m): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<types::TemplateWithBuilds>, ApiError> {
    let t = template_list(&m)?
        .into_iter()
        .find(|t| t.template_id == name)
        .ok_or_else(|| LifecycleError::TemplateNotFound { name })?;
    Ok(Json(types::TemplateWithBuilds {
        aliases: t.aliases,
        builds: Vec::new(),
        created_at: t.created_at,
        last_spawned_at: None,
        names: t.names,
        public: false,
        spawn_count: 0,
        template_id: t.template_id,
        updated_at: t.updated_at,
    }))
}

/// `DELETE /templates/{templateID}`: 204; 404 unknown; 400 for `base`.
pub async fn delete_template(
    State(m): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if name == crate::template::BASE {
        return Err(ApiError::bad_request(
            "the default template base cannot be deleted",
        ));
    }
    if m.store()
        .remove_template(&name)
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(LifecycleError::TemplateNotFound { name }.into())
    }
}

/// `GET /health` of the control plane (envd's `/health` is routed by header).
pub async fn health() -> StatusCode {
    StatusCode::OK
}

/// Any other path: 404 with a `{code, message}` body.
pub async fn fallback(method: http::Method, uri: http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {method} {}", uri.path()))
}

/// Used by the auth layer: the API key check.
pub fn check_key(m: &Manager, headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get("x-api-key") {
        None => Err(ApiError::unauthorized(
            "missing API key: send it in the X-API-Key header (`e2b-local key` prints it)",
        )),
        Some(v) if e2b_envd::signature::constant_time_eq(v.as_bytes(), m.api_key().as_bytes()) => {
            Ok(())
        }
        Some(_) => Err(ApiError::unauthorized(
            "invalid API key: it does not match this server's key (`e2b-local key` prints it)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envd_log_lines_parse() {
        let fallback = Utc::now();
        let e = parse_log_line(
            "2026-11-26T10:14:07.985663Z  WARN envd: disk almost full",
            fallback,
        );
        assert_eq!(e.level, types::LogLevel::Warn);
        assert_eq!(e.message, "envd: disk almost full");
        assert_eq!(e.timestamp.timestamp_micros(), 1_795_688_047_985_663);
        let e = parse_log_line("envd: bind failed", fallback);
        assert_eq!(e.level, types::LogLevel::Info);
        assert_eq!(e.message, "envd: bind failed");
        assert_eq!(e.timestamp, fallback);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Db%26c", false), "a=b&c");
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("bad%zz%", false), "bad%zz%");
    }

    #[test]
    fn metadata_filter_decodes_twice_encoded_pairs() {
        // The SDK quotes each key and value, joins with & and =, and the HTTP client encodes
        // the whole string once more; the server has decoded that layer already.
        let f = metadata_filter(Some("user%20id=a%26b&k=v")).unwrap();
        assert_eq!(
            f,
            vec![("user id".into(), "a&b".into()), ("k".into(), "v".into())]
        );
        assert!(metadata_filter(Some("novalue")).is_err());
    }

    #[test]
    fn cursors_round_trip() {
        let rec = SandboxRecord {
            id: "iabc".into(),
            template: "base".into(),
            state: SandboxState::Running,
            started_at: Utc::now(),
            end_at: Utc::now(),
            metadata: BTreeMap::new(),
            env_vars: BTreeMap::new(),
            secure: true,
            auto_pause: false,
            allow_internet_access: None,
            envd_version: "0.6.13".into(),
        };
        let (ns, id) = decode_cursor(&encode_cursor(&rec)).unwrap();
        assert_eq!(id, "iabc");
        assert_eq!(ns, rec.started_at.timestamp_nanos_opt().unwrap());
        assert!(decode_cursor("!!").is_err());
    }

    #[test]
    fn bodies_reject_unknown_fields_and_bad_json() {
        let e = parse_body::<types::SandboxTimeoutRequest>(
            &Bytes::from_static(b"{\"timeout\":1,\"x\":2}"),
            &["timeout"],
            false,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.message,
            "unknown field `x` in request body (expected one of: timeout)"
        );
        let e = parse_body::<types::SandboxTimeoutRequest>(
            &Bytes::from_static(b"{"),
            &["timeout"],
            false,
        )
        .unwrap_err();
        assert!(
            e.message.starts_with("request body is not valid JSON"),
            "{}",
            e.message
        );
        let e = parse_body::<types::SandboxTimeoutRequest>(
            &Bytes::from_static(b"{\"timeout\":\"x\"}"),
            &["timeout"],
            false,
        )
        .unwrap_err();
        assert!(
            e.message.starts_with("invalid request body"),
            "{}",
            e.message
        );
    }
}
