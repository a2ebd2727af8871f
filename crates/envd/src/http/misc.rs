//! `/health`, `/metrics`, `/envs` and `/init`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::response::{IntoResponse, Response};
use e2b_envd::http::types::{EnvVars, InitRequest, Metrics};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::ENVD_VERSION;
use e2b_envd::headers;
use e2b_envd::signature::constant_time_eq;

use crate::auth::ACCESS_TOKEN_HEADER;
use crate::http::ApiError;
use crate::state::{State, lock};

/// `GET /health`: 204, no body, never cached.
pub async fn health() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /envs`: the global environment processes get.
pub async fn envs(AxState(state): AxState<Arc<State>>) -> Json<EnvVars> {
    Json(EnvVars(state.global_env()))
}

/// `POST /init`: applies env vars, token, default user and workdir; 204 with the version.
///
/// The host clock (`timestamp`) and the fields only E2B's VMs use (`caBundle`, `hyperloopIP`,
/// `lifecycleID`, `volumeMounts`) are accepted and ignored: envd here shares the host's clock,
/// trust store and network.
pub async fn init(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: InitRequest = if body.iter().all(u8::is_ascii_whitespace) {
        InitRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid init body: {e}")))?
    };
    if body.access_token.as_deref() == Some("") {
        return Err(ApiError::bad_request("access token must not be empty"));
    }
    // The token comes back in the X-Access-Token header, which cannot carry anything else.
    if body
        .access_token
        .as_deref()
        .is_some_and(|t| !t.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ApiError::bad_request(
            "access token must be printable ASCII without spaces, as it is sent in a header",
        ));
    }
    if let Some(current) = state.token() {
        let by_body = body
            .access_token
            .as_deref()
            .is_some_and(|t| constant_time_eq(t.as_bytes(), current.as_bytes()));
        let by_header = headers
            .get(ACCESS_TOKEN_HEADER)
            .is_some_and(|v| constant_time_eq(v.as_bytes(), current.as_bytes()));
        if !by_body && !by_header {
            return Err(ApiError::unauthorized(
                "access token does not match the one already set",
            ));
        }
    }
    // Checked before anything is applied: one bad variable would fail every later spawn.
    if let Some((name, _)) = body
        .env_vars
        .iter()
        .flat_map(|vars| vars.iter())
        .find(|(name, value)| name.is_empty() || name.contains(['=', '\0']) || value.contains('\0'))
    {
        return Err(ApiError::bad_request(format!(
            "invalid envVars entry {name:?}: a name must be non-empty without '=' or NUL, a value without NUL"
        )));
    }
    state.set_token(body.access_token);
    if let Some(vars) = body.env_vars {
        state.replace_user_env(vars.0);
    }
    if let Some(user) = body.default_user.filter(|u| !u.is_empty()) {
        state.set_default_user(user);
    }
    if let Some(dir) = body.default_workdir {
        state.set_default_workdir((!dir.is_empty()).then(|| dir.into()));
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(
        headers::ENVD_VERSION,
        HeaderValue::from_static(ENVD_VERSION),
    );
    Ok(r)
}

/// Aggregate CPU jiffies from `/proc/stat`.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    busy: u64,
    total: u64,
}

fn cpu_sample() -> Option<CpuSample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user/nice).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some(CpuSample {
        busy: total.saturating_sub(idle),
        total,
    })
}

fn meminfo() -> Option<BTreeMap<String, u64>> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(
        s.lines()
            .filter_map(|l| {
                let (k, rest) = l.split_once(':')?;
                let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
                Some((k.to_owned(), kb * 1024))
            })
            .collect(),
    )
}

/// `GET /metrics`: host CPU, memory and root-disk usage (500 with an empty body on failure).
pub async fn metrics(AxState(state): AxState<Arc<State>>) -> Response {
    let compute = || -> Option<Metrics> {
        let now = cpu_sample()?;
        let prev = lock(&state.cpu_sample).replace(now);
        let (busy, total) = match prev {
            Some(p) if now.total > p.total => {
                (now.busy.saturating_sub(p.busy), now.total - p.total)
            }
            _ => (now.busy, now.total.max(1)),
        };
        let pct = ((busy as f64 / total as f64) * 10000.0).round() / 100.0;
        let mem = meminfo()?;
        let g = |k: &str| mem.get(k).copied().unwrap_or(0);
        let mem_total = g("MemTotal");
        let mem_used = mem_total
            .saturating_sub(g("MemFree"))
            .saturating_sub(g("Buffers"))
            .saturating_sub(g("Cached"));
        let vfs = nix::sys::statvfs::statvfs("/").ok()?;
        let frsize = vfs.fragment_size();
        let disk_total = vfs.blocks() * frsize;
        let disk_used = disk_total.saturating_sub(vfs.blocks_available() * frsize);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let int = |v: u64| Some(i64::try_from(v).unwrap_or(i64::MAX));
        Some(Metrics {
            ts: Some(chrono::Utc::now().timestamp()),
            cpu_count: int(cpus as u64),
            cpu_used_pct: Some(pct as f32),
            mem_total_mib: int(mem_total / 1024 / 1024),
            mem_used_mib: int(mem_used / 1024 / 1024),
            mem_total: int(mem_total),
            mem_used: int(mem_used),
            mem_cache: int(g("Cached")),
            disk_used: int(disk_used),
            disk_total: int(disk_total),
        })
    };
    match compute() {
        Some(v) => Json(v).into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
