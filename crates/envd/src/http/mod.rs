//! envd's plain HTTP endpoints: `/health`, `/metrics`, `/envs`, `/init` and `/files`.

pub mod files;
pub mod misc;

use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};

use crate::os_error;
use crate::state::State;

/// An HTTP error with upstream's body `{"code": <status>, "message": "<text>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable reason.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// The status [`os_error::http_status`] gives `e`, with the message `"{context}: {e}"`.
    pub fn from_io(context: impl std::fmt::Display, e: &std::io::Error) -> Self {
        Self::new(os_error::http_status(e), format!("{context}: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = e2b_envd::http::types::Error {
            code: self.status.as_u16().into(),
            message: self.message,
        };
        let body = serde_json::to_string(&body).expect("an error body always serializes");
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        resp
    }
}

/// The plain HTTP routes.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/health", get(misc::health))
        .route("/metrics", get(misc::metrics))
        .route("/envs", get(misc::envs))
        .route("/init", post(misc::init))
        .route("/files", get(files::download).post(files::upload))
        .with_state(state)
}
