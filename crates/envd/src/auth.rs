//! Access control: the `X-Access-Token` gate and `/files` URL signatures (v1).

use std::sync::Arc;

use axum::extract::{Request, State as AxState};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use e2b_envd::signature::{self, Operation, constant_time_eq};
use http::Method;

use crate::http::ApiError;
use crate::state::State;

/// Header carrying the access token.
pub use e2b_envd::headers::ACCESS_TOKEN as ACCESS_TOKEN_HEADER;

/// The message of the gate's 401 answer (upstream's exact text).
pub const UNAUTHORIZED_MESSAGE: &str =
    "unauthorized access, please provide a valid access token or method signing if supported";

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
    /// [`Operation::Read`] (GET) or [`Operation::Write`] (POST).
    pub operation: Operation,
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
    if !signature::verify(
        sig,
        input.path,
        input.operation,
        input.username,
        token,
        input.expiration,
    ) {
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
    fn validate_signing_checks_in_upstreams_order() {
        let s = signature::sign("/a", Operation::Read, "", "tok", None);
        let input = |sig: Option<&'static str>, exp| SigningInput {
            header_token: None,
            path: "/a",
            username: "",
            signature: sig,
            expiration: exp,
            operation: Operation::Read,
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
            Box::leak(signature::sign("/a", Operation::Read, "", "tok", Some(10)).into_boxed_str());
        assert_eq!(
            validate_signing(Some("tok"), &input(Some(expired), Some(10))),
            Err("signature is already expired")
        );
    }
}
