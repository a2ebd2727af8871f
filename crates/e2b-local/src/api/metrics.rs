//! Metrics: `GET /sandboxes/{id}/metrics` and `GET /sandboxes/metrics`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Timelike as _, Utc};
use e2b_api::types;

use super::AppState;
use super::error::ApiError;
use super::request::{Path, Query, QueryPairs, live, query_get, sandbox_id};
use crate::lifecycle::MetricSample;
use crate::state::SandboxState;

/// The wire form of a sample.
fn metric(s: MetricSample) -> types::SandboxMetric {
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    types::SandboxMetric {
        cpu_count: i32::try_from(s.cpu_count).unwrap_or(i32::MAX),
        cpu_used_pct: s.cpu_used_pct,
        disk_total: int(s.disk_total),
        disk_used: int(s.disk_used),
        mem_cache: 0,
        mem_total: int(s.mem_total),
        mem_used: int(s.mem_used),
        timestamp: s.at,
        timestamp_unix: s.at.timestamp(),
    }
}

/// `GET /sandboxes/{sandboxID}/metrics?start&end`: the samples recorded in that range
/// (unix seconds, both included; from the sandbox's start to now by default), oldest first.
pub(super) async fn metrics(
    State(m): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryPairs>,
) -> Result<Json<Vec<types::SandboxMetric>>, ApiError> {
    let bound = |key: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(v) = query_get(&q, key) else {
            return Ok(None);
        };
        v.parse::<i64>()
            .ok()
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!("invalid {key} \"{v}\": expected unix seconds"))
            })
    };
    let (start, end) = (bound("start")?, bound("end")?);
    let l = live(&m, &id)?;
    let rec = l.record();
    // Whole seconds: a sample taken during the start's second is in range.
    let start = start.unwrap_or(rec.started_at.with_nanosecond(0).unwrap_or(rec.started_at));
    // The end second is included whole.
    let end = end.map_or_else(Utc::now, |e| e + chrono::Duration::nanoseconds(999_999_999));
    if start > end {
        return Err(ApiError::bad_request(format!(
            "start ({}) is after end ({})",
            start.timestamp(),
            end.timestamp()
        )));
    }
    Ok(Json(
        m.metrics_between(&rec.id, start, end)
            .into_iter()
            .map(metric)
            .collect(),
    ))
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
            out.insert(id, metric(m.sample(&l).await));
        }
    }
    Ok(Json(types::SandboxesWithMetrics { sandboxes: out }))
}
