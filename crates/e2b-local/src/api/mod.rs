//! The control plane: E2B's REST API (`openapi/e2b-api.yml`) on axum.
//!
//! Owns request validation, the API key check, the `{code, message}` error bodies and the
//! sandbox lifecycle ([`manager`]). Does not own isolation (the runtime) or envd traffic
//! ([`router`](crate::router)).

pub mod error;
pub mod handlers;
pub mod manager;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use error::ApiError;
pub use manager::{Manager, ManagerConfig};

use handlers::AppState;

async fn require_key(State(m): State<AppState>, req: Request, next: Next) -> Response {
    match handlers::check_key(&m, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Every control-plane route, behind the API key check; unknown paths get a 404 body.
pub fn router(m: AppState) -> Router {
    use handlers as h;
    let authed = Router::new()
        .route("/sandboxes", post(h::create_v1).get(h::list_v1))
        .route("/v2/sandboxes", post(h::create_v2).get(h::list_v2))
        .route("/sandboxes/metrics", get(h::metrics_many))
        .route("/sandboxes/{id}", get(h::get_sandbox).delete(h::kill))
        .route("/sandboxes/{id}/logs", get(h::logs_v1))
        .route("/v2/sandboxes/{id}/logs", get(h::logs_v2))
        .route("/sandboxes/{id}/metrics", get(h::metrics))
        .route("/sandboxes/{id}/pause", post(h::pause))
        .route("/sandboxes/{id}/resume", post(h::resume))
        .route("/sandboxes/{id}/connect", post(h::connect_v1))
        .route("/v2/sandboxes/{id}/connect", post(h::connect_v2))
        .route("/sandboxes/{id}/timeout", post(h::set_timeout))
        .route("/sandboxes/{id}/refreshes", post(h::refresh))
        .route("/templates", get(h::templates))
        .route(
            "/templates/{id}",
            get(h::template).delete(h::delete_template),
        )
        .route_layer(axum::middleware::from_fn_with_state(m.clone(), require_key))
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .route("/health", get(h::health))
        // Applies to the routes added so far; `authed` has its own.
        .method_not_allowed_fallback(method_not_allowed)
        .merge(authed)
        .fallback(h::fallback)
        .with_state(m)
}

async fn method_not_allowed(method: http::Method, uri: http::Uri) -> ApiError {
    ApiError::new(
        http::StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}
