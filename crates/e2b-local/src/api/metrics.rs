//! Metrics: `GET /sandboxes/{id}/metrics` and `GET /sandboxes/metrics`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use e2b_api::types;

use super::AppState;
use super::error::ApiError;
use super::request::{Path, Query, QueryPairs, live, query_get, sandbox_id};
use crate::envd_client;
use crate::isolation::Limits;
use crate::lifecycle::{Live, Manager, lock};
use crate::state::SandboxState;

/// One metric sample of `live`: cgroup CPU and memory; disk from the sandbox's image, or
/// without a budget from envd's `/metrics` when reachable.
pub(crate) async fn sample(m: &Manager, live: &Live) -> types::SandboxMetric {
    let stats = live.handle.stats();
    let now = Instant::now();
    // Without cgroups (rootless mode) the configured limits are not enforced: report
    // the host's CPUs and memory instead.
    let limits = if live.handle.cgroup().is_enabled() {
        m.config().limits
    } else {
        Limits::default()
    };
    let cpus = i32::try_from(
        limits
            .cpu_millis
            .map(|m| m.div_ceil(1000).max(1) as usize)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    )
    .unwrap_or(1);
    let pct = {
        let mut prev = lock(&live.cpu_prev);
        let (t0, c0) = prev.unwrap_or_else(|| {
            let started = live.record().started_at;
            let age = (Utc::now() - started).to_std().unwrap_or(Duration::ZERO);
            (now.checked_sub(age).unwrap_or(now), 0)
        });
        *prev = Some((now, stats.cpu_usage_ns));
        let wall = now.duration_since(t0).as_nanos().max(1) as f64;
        let used = stats.cpu_usage_ns.saturating_sub(c0) as f64;
        ((used / wall / f64::from(cpus.max(1))) * 10000.0).round() / 100.0
    };
    let mem_total = stats
        .memory_limit_bytes
        .or(limits.memory_bytes)
        .unwrap_or_else(host_mem_total);
    // With a disk budget, statvfs of the sandbox's mounted image (paused ones too).
    let (disk_used, disk_total) = match live.handle.disk_usage() {
        Some(usage) => usage,
        None if live.record().state == SandboxState::Running => {
            envd_client::disk_usage(&live.handle, live.token.as_deref())
                .await
                .unwrap_or((0, 0))
        }
        None => (0, 0),
    };
    let ts = Utc::now();
    types::SandboxMetric {
        cpu_count: cpus,
        cpu_used_pct: pct as f32,
        disk_total: i64::try_from(disk_total).unwrap_or(i64::MAX),
        disk_used: i64::try_from(disk_used).unwrap_or(i64::MAX),
        mem_cache: 0,
        mem_total: i64::try_from(mem_total).unwrap_or(i64::MAX),
        mem_used: i64::try_from(stats.memory_bytes).unwrap_or(i64::MAX),
        timestamp: ts,
        timestamp_unix: ts.timestamp(),
    }
}

/// Host `MemTotal` in bytes.
pub(crate) fn host_mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// `GET /sandboxes/{sandboxID}/metrics`: the current sample.
pub(super) async fn metrics(
    State(m): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryPairs>,
) -> Result<Json<Vec<types::SandboxMetric>>, ApiError> {
    for key in ["start", "end"] {
        if let Some(v) = query_get(&q, key).filter(|v| v.parse::<i64>().is_err()) {
            return Err(ApiError::bad_request(format!(
                "invalid {key} \"{v}\": expected unix seconds"
            )));
        }
    }
    let l = live(&m, &id)?;
    Ok(Json(vec![sample(&m, &l).await]))
}

/// `GET /sandboxes/metrics?sandbox_ids=a,b`.
pub(super) async fn metrics_many(
    State(m): State<AppState>,
    Query(q): Query<QueryPairs>,
) -> Result<Json<types::SandboxesWithMetrics>, ApiError> {
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
            out.insert(id, sample(&m, &l).await);
        }
    }
    Ok(Json(types::SandboxesWithMetrics { sandboxes: out }))
}
