//! Listing sandboxes: `GET /sandboxes` (v1) and `GET /v2/sandboxes` (filters, order,
//! pagination).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use e2b_api::types;
use http::HeaderValue;

use super::AppState;
use super::bodies::listed;
use super::error::ApiError;
use super::request::{Query, QueryPairs, query_get};
use crate::state::{SandboxRecord, SandboxState};

/// Percent-decodes one key or value of the `metadata` filter (`+` stays a plus).
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
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
            Ok((decode(k), decode(v)))
        })
        .collect()
}

fn matches_metadata(rec: &SandboxRecord, filter: &[(String, String)]) -> bool {
    filter
        .iter()
        .all(|(k, v)| rec.metadata.get(k).is_some_and(|x| x == v))
}

/// `GET /sandboxes` (v1: running sandboxes, metadata filter).
pub(super) async fn list_v1(
    State(m): State<AppState>,
    Query(q): Query<QueryPairs>,
) -> Result<Response, ApiError> {
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
pub(super) async fn list_v2(
    State(m): State<AppState>,
    Query(q): Query<QueryPairs>,
) -> Result<Response, ApiError> {
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

    let all: Vec<SandboxRecord> = m.records();
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("a%3Db%26c"), "a=b&c");
        assert_eq!(decode("a+b"), "a+b");
        assert_eq!(decode("bad%zz%"), "bad%zz%");
        // Query parameters (axum's `Query`): `+` is a space, a bare name has an empty value.
        let uri: http::Uri = "/sandboxes?a+b=c%2Bd&e".parse().unwrap();
        let axum::extract::Query(q) =
            axum::extract::Query::<QueryPairs>::try_from_uri(&uri).unwrap();
        assert_eq!(
            q,
            vec![("a b".into(), "c+d".into()), ("e".into(), String::new())]
        );
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
            auto_pause_memory: true,
            auto_resume: false,
            timeout: 300,
            allow_internet_access: None,
            network: None,
            envd_version: "0.6.13".into(),
            volume_mounts: Vec::new(),
            layers: Vec::new(),
        };
        let (ns, id) = decode_cursor(&encode_cursor(&rec)).unwrap();
        assert_eq!(id, "iabc");
        assert_eq!(ns, rec.started_at.timestamp_nanos_opt().unwrap());
        assert!(decode_cursor("!!").is_err());
    }
}
