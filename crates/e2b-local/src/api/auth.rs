//! The API key check in front of every control-plane route but `/health`.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;

use super::AppState;
use super::error::ApiError;
use crate::lifecycle::Manager;

/// Used by the auth layer: the API key check.
pub(super) fn check_key(m: &Manager, headers: &HeaderMap) -> Result<(), ApiError> {
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

/// The middleware: runs the request only when [`check_key`] passes.
pub(super) async fn require_key(State(m): State<AppState>, req: Request, next: Next) -> Response {
    match check_key(&m, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}
