//! The control plane's one error type: an HTTP status and a message, rendered as E2B's
//! `{"code": <status>, "message": "..."}` body (`e2b_api::types::Error`). The lifecycle's
//! [`LifecycleError`]s get their statuses here, in one `match`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::lifecycle::LifecycleError;

/// An error answered to a control-plane request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status (also the body's `code`).
    pub status: StatusCode,
    /// Human-readable message naming what was wrong.
    pub message: String,
}

impl ApiError {
    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the client sent something invalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: missing or wrong API key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 404: no such sandbox, template or route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the sandbox is in the wrong state for the operation.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 500: the server failed (never for a client's mistake).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        let status = match &e {
            LifecycleError::SandboxNotFound { .. }
            | LifecycleError::TemplateNotFound { .. }
            | LifecycleError::BuildNotFound { .. } => StatusCode::NOT_FOUND,
            LifecycleError::InvalidBuild(_) | LifecycleError::InvalidArgument(_) => {
                StatusCode::BAD_REQUEST
            }
            LifecycleError::BuildConflict(_) => StatusCode::CONFLICT,
            LifecycleError::AlreadyPaused { .. }
            | LifecycleError::AlreadyRunning { .. }
            | LifecycleError::Paused { .. } => StatusCode::CONFLICT,
            LifecycleError::TimeoutNotPositive { .. }
            | LifecycleError::TimeoutNegative { .. }
            | LifecycleError::TimeoutPastLifetime { .. } => StatusCode::BAD_REQUEST,
            // The request is well-formed; this server lacks the functionality.
            LifecycleError::FreezerUnavailable { .. } => StatusCode::NOT_IMPLEMENTED,
            // E2B's concurrency limit answer: the SDKs raise their rate-limit error.
            LifecycleError::TooManySandboxes { .. } | LifecycleError::MemoryCommitted { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            LifecycleError::HostLimit { .. }
            | LifecycleError::Restoring { .. }
            | LifecycleError::TemplateBuilding { .. }
            | LifecycleError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            LifecycleError::Internal { .. } | LifecycleError::Store(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            LifecycleError::Volume(v) => super::volumes::status(v),
        };
        ApiError::new(status, e.to_string())
    }
}

impl ApiError {
    /// The `{code, message}` body (`e2b_api::types::Error`), for answers written without
    /// axum (the listener's own).
    pub(crate) fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.wire()).unwrap_or_default()
    }

    pub(super) fn wire(&self) -> e2b_api::types::Error {
        e2b_api::types::Error {
            code: i32::from(self.status.as_u16()),
            error_code: None,
            message: self.message.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.wire())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Both 503s (a sandbox being restored, a host limit) pass; the SDKs that retry
            // wait this long.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read, so the connection cannot carry another
            // request; saying so keeps clients from reusing it and failing their next call.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_errors_get_their_status_and_message() {
        let cases = [
            (
                LifecycleError::not_found("iabc"),
                StatusCode::NOT_FOUND,
                "sandbox \"iabc\" doesn't exist or you don't have access to it",
            ),
            (
                LifecycleError::AlreadyPaused { id: "iabc".into() },
                StatusCode::CONFLICT,
                "sandbox 'iabc' is already paused",
            ),
            (
                LifecycleError::TimeoutPastLifetime {
                    secs: 90_000,
                    max_secs: 86_400,
                },
                StatusCode::BAD_REQUEST,
                "timeout of 90000 s exceeds the maximum sandbox lifetime of 86400 s",
            ),
            (
                LifecycleError::InvalidArgument("count must be between 1 and 100 (got 0)".into()),
                StatusCode::BAD_REQUEST,
                "count must be between 1 and 100 (got 0)",
            ),
            (
                LifecycleError::TooManySandboxes { max: 2 },
                StatusCode::TOO_MANY_REQUESTS,
                "you have reached the maximum number of concurrent E2B sandboxes (2) (e2b-local serve --max-sandboxes)",
            ),
            (
                LifecycleError::Restoring { id: "iabc".into() },
                StatusCode::SERVICE_UNAVAILABLE,
                "sandbox \"iabc\" is being restored after a server restart; retry in a moment",
            ),
            (
                LifecycleError::internal("killing sandbox iabc", "cgroup busy"),
                StatusCode::INTERNAL_SERVER_ERROR,
                "killing sandbox iabc: cgroup busy",
            ),
        ];
        for (e, status, message) in cases {
            assert_eq!(ApiError::from(e), ApiError::new(status, message));
        }
    }

    #[test]
    fn errors_are_send_sync_static() {
        fn assert<T: Send + Sync + 'static>() {}
        assert::<ApiError>();
        assert::<LifecycleError>();
    }
}
