//! Access control: the `X-Access-Token` gate and `/files` URL signatures (v1).

use std::sync::Arc;

use axum::extract::{Request, State as AxState};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use http::Method;
use sha2::{Digest, Sha256};

use crate::http::ApiError;
use crate::state::State;

/// Header carrying the access token.
pub const ACCESS_TOKEN_HEADER: &str = "x-access-token";

/// The message of the gate's 401 answer (upstream's exact text).
pub const UNAUTHORIZED_MESSAGE: &str =
    "unauthorized access, please provide a valid access token or method signing if supported";

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a request may pass without the token: `GET /health`, `GET|POST /files`, `POST /init`
/// (the last two check credentials themselves). CORS preflights never reach this gate.
fn exempt(method: &Method, path: &str) -> bool {
    matches!(
        (method, path),
        (&Method::GET, "/health")
            | (&Method::GET | &Method::POST, "/files")
            | (&Method::POST, "/init")
    )
}

/// Middleware: once a token is set, every non-exempt request needs `X-Access-Token`.
pub async fn gate(AxState(state): AxState<Arc<State>>, req: Request, next: Next) -> Response {
    if let Some(token) = state.token()
        && !exempt(req.method(), req.uri().path())
    {
        let ok = req
            .headers()
            .get(ACCESS_TOKEN_HEADER)
            .is_some_and(|v| constant_time_eq(v.as_bytes(), token.as_bytes()));
        if !ok {
            return ApiError::new(http::StatusCode::UNAUTHORIZED, UNAUTHORIZED_MESSAGE)
                .into_response();
        }
    }
    next.run(req).await
}

/// Computes a v1 signature:
/// `"v1_" + base64_nopad(sha256("<path>:<op>:<user>:<token>[:<expiration>]"))`.
pub fn signature(
    path: &str,
    operation: &str,
    username: &str,
    token: &str,
    expiration: Option<i64>,
) -> String {
    let mut raw = format!("{path}:{operation}:{username}:{token}");
    if let Some(exp) = expiration {
        raw.push(':');
        raw.push_str(&exp.to_string());
    }
    let digest = Sha256::digest(raw.as_bytes());
    format!(
        "v1_{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// What `/files` checks a request against.
#[derive(Debug)]
pub struct SigningInput<'a> {
    /// `X-Access-Token` header value, if any.
    pub header_token: Option<&'a [u8]>,
    /// `path` query value as sent (decoded, not resolved); `""` when absent.
    pub path: &'a str,
    /// `username` query value; `""` when absent.
    pub username: &'a str,
    /// `signature` query value.
    pub signature: Option<&'a str>,
    /// `signature_expiration` query value (unix seconds).
    pub expiration: Option<i64>,
    /// `"read"` (GET) or `"write"` (POST).
    pub operation: &'a str,
}

/// Checks `/files` credentials in upstream's order; the error is the exact 401 message.
///
/// # Errors
/// One of `access token present in header but does not match`, `missing signature query
/// parameter`, `invalid signature`, `signature is already expired`.
pub fn validate_signing(token: Option<&str>, input: &SigningInput<'_>) -> Result<(), &'static str> {
    let Some(token) = token else { return Ok(()) };
    if let Some(h) = input.header_token {
        return if constant_time_eq(h, token.as_bytes()) {
            Ok(())
        } else {
            Err("access token present in header but does not match")
        };
    }
    let Some(sig) = input.signature else {
        return Err("missing signature query parameter");
    };
    let expected = signature(
        input.path,
        input.operation,
        input.username,
        token,
        input.expiration,
    );
    if !constant_time_eq(expected.as_bytes(), sig.as_bytes()) {
        return Err("invalid signature");
    }
    if let Some(exp) = input.expiration
        && exp < chrono::Utc::now().timestamp()
    {
        return Err("signature is already expired");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_sdk_algorithm() {
        // sha256("/a:read::tok") computed independently with Python's hashlib.
        let s = signature("/a", "read", "", "tok", None);
        assert_eq!(s, "v1_2/gNbgFPxFSqkheS/SD0NHlzA121E/nxkOtc/ovxeoI");
        assert_ne!(s, signature("/a", "read", "", "tok", Some(1)));
        let input = |sig: Option<&'static str>, exp| SigningInput {
            header_token: None,
            path: "/a",
            username: "",
            signature: sig,
            expiration: exp,
            operation: "read",
        };
        assert_eq!(validate_signing(None, &input(None, None)), Ok(()));
        assert_eq!(
            validate_signing(Some("tok"), &input(None, None)),
            Err("missing signature query parameter")
        );
        assert_eq!(
            validate_signing(Some("tok"), &input(Some("v1_x"), None)),
            Err("invalid signature")
        );
        let good: &'static str = Box::leak(s.into_boxed_str());
        assert_eq!(
            validate_signing(Some("tok"), &input(Some(good), None)),
            Ok(())
        );
        let expired: &'static str =
            Box::leak(signature("/a", "read", "", "tok", Some(10)).into_boxed_str());
        assert_eq!(
            validate_signing(Some("tok"), &input(Some(expired), Some(10))),
            Err("signature is already expired")
        );
    }
}
