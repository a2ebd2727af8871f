//! What every handler reads from a request: the body (size-limited, unknown fields
//! rejected), query parameters and the path's sandbox id. Every extractor rejects with an
//! [`ApiError`], so a malformed request gets a `{code, message}` body, never axum's plain
//! text: the handlers use [`Path`] and [`Query`] from here instead of axum's.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::lifecycle::{Live, Manager, valid_sandbox_id};

/// Largest accepted JSON body.
const MAX_BODY: usize = 1 << 20;

/// A request body read whole, up to `MAX_BODY` bytes; larger bodies get 413 with a
/// `{code, message}` body (axum's own limit would answer in plain text).
#[derive(Debug)]
pub(super) struct RawBody(pub(super) Bytes);

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

/// axum's `Path`, rejecting with an [`ApiError`] (e.g. a segment that is not UTF-8 once
/// percent-decoded).
#[derive(Debug)]
pub(super) struct Path<T>(pub(super) T);

impl<T, S> axum::extract::FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|r| ApiError::new(r.status(), r.body_text()))
    }
}

/// axum's `Query`, rejecting with an [`ApiError`].
#[derive(Debug)]
pub(super) struct Query<T>(pub(super) T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|r| ApiError::new(r.status(), r.body_text()))
    }
}

/// Parses a JSON object body, rejecting unknown fields (naming them) and type errors with 400.
/// An empty body is `{}` when `optional`.
pub(super) fn parse_body<T: DeserializeOwned>(
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

/// Query parameters in order, decoded (`+` is a space); the extractor is [`Query`].
pub(super) type QueryPairs = Vec<(String, String)>;

/// The first value of query parameter `key`.
pub(super) fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Normalizes a path sandbox id: old SDKs send `<id>-<clientID>`; only the first part counts.
pub(super) fn sandbox_id(raw: &str) -> Result<String, ApiError> {
    let id = raw.split('-').next().unwrap_or("");
    if !valid_sandbox_id(id) {
        return Err(ApiError::bad_request(format!(
            "invalid sandbox ID \"{raw}\": expected lowercase letters and digits"
        )));
    }
    Ok(id.to_owned())
}

/// The live sandbox named by a path id, or its 404 (503 while it is restored after a
/// restart).
pub(super) fn live(m: &Manager, raw: &str) -> Result<Arc<Live>, ApiError> {
    let id = sandbox_id(raw)?;
    Ok(m.live(&id)?)
}

/// Query parameter `key` as a non-negative integer, when present and not empty.
pub(super) fn parse_opt_i64(q: &[(String, String)], key: &str) -> Result<Option<i64>, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use e2b_api::types;

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
