//! envd's log lines: `GET /sandboxes/{id}/logs` (v1) and `GET /v2/sandboxes/{id}/logs`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use e2b_api::types;

use super::AppState;
use super::error::ApiError;
use super::request::{Path, Query, QueryPairs, live, parse_opt_i64, query_get};
use crate::lifecycle::Live;

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

/// envd's non-blank log lines with their parsed entries, read as they are asked for, so a
/// page costs memory for its own lines only.
fn read_logs(l: &Live) -> impl Iterator<Item = (String, types::SandboxLogEntry)> + use<> {
    let started = l.record().started_at;
    l.log
        .lines()
        .filter(|s| !s.trim().is_empty())
        .map(move |s| {
            let e = parse_log_line(&s, started);
            (s, e)
        })
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
pub(super) async fn logs_v1(
    State(m): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryPairs>,
) -> Result<Json<types::SandboxLogs>, ApiError> {
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

/// `GET /v2/sandboxes/{sandboxID}/logs`: cursor, limit, direction, level, search.
pub(super) async fn logs_v2(
    State(m): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryPairs>,
) -> Result<Json<types::SandboxLogsV2Response>, ApiError> {
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
    let limit = usize::try_from(limit).unwrap_or(1000);
    let matching = read_logs(&l)
        .map(|(_, e)| e)
        .filter(|e| level_rank(e.level) >= min_level && e.message.contains(search));
    let logs = if backward {
        // The newest `limit` entries at or before the cursor, newest first: only a page is
        // ever held.
        let mut page = std::collections::VecDeque::with_capacity(limit.min(1000));
        for e in matching.filter(|e| cursor.is_none_or(|c| e.timestamp.timestamp_millis() <= c)) {
            if page.len() == limit {
                page.pop_front();
            }
            if limit > 0 {
                page.push_back(e);
            }
        }
        page.into_iter().rev().collect()
    } else {
        matching
            .filter(|e| cursor.is_none_or(|c| e.timestamp.timestamp_millis() >= c))
            .take(limit)
            .collect()
    };
    Ok(Json(types::SandboxLogsV2Response { logs }))
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
}
