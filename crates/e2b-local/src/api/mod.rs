//! The control plane: E2B's REST API (`openapi/e2b-api.yml`) on axum.
//!
//! Owns request validation, the API key check and the `{code, message}` error bodies. Does
//! not own the sandbox lifecycle ([`lifecycle`](crate::lifecycle)), isolation (the runtime)
//! or envd traffic ([`router`](crate::router)). Requests and responses are
//! `e2b_api::types`; every failure is an [`ApiError`].
//!
//! One module per resource: `sandboxes` (lifecycle operations), `list`, `logs`, `metrics`,
//! `templates`, `volumes`, `volume_content` (a volume's files, with its own token); `request` reads bodies, queries and path ids, `bodies` builds responses,
//! `auth` checks the API key.

mod auth;
mod bodies;
mod builds;
pub mod error;
mod fork;
mod list;
mod logs;
mod metrics;
mod network;
mod request;
mod sandboxes;
mod snapshots;
mod templates;
mod volume_content;
mod volumes;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, patch, post, put};
use http::StatusCode;

pub use error::ApiError;

use crate::lifecycle::Manager;

/// Shared state of the handlers.
pub type AppState = Arc<Manager>;

/// Every control-plane route, behind the API key check; unknown paths get a 404 body.
pub fn router(m: AppState) -> Router {
    let authed = Router::new()
        .route("/sandboxes", post(sandboxes::create_v1).get(list::list_v1))
        .route(
            "/v2/sandboxes",
            post(sandboxes::create_v2).get(list::list_v2),
        )
        .route("/sandboxes/metrics", get(metrics::metrics_many))
        .route(
            "/sandboxes/{id}",
            get(sandboxes::get_sandbox).delete(sandboxes::kill),
        )
        .route("/sandboxes/{id}/logs", get(logs::logs_v1))
        .route("/v2/sandboxes/{id}/logs", get(logs::logs_v2))
        .route("/sandboxes/{id}/metrics", get(metrics::metrics))
        .route("/sandboxes/{id}/pause", post(sandboxes::pause))
        .route("/sandboxes/{id}/resume", post(sandboxes::resume))
        .route("/sandboxes/{id}/connect", post(sandboxes::connect_v1))
        .route("/v2/sandboxes/{id}/connect", post(sandboxes::connect_v2))
        .route("/sandboxes/{id}/timeout", post(sandboxes::set_timeout))
        .route("/sandboxes/{id}/refreshes", post(sandboxes::refresh))
        .route("/sandboxes/{id}/network", put(network::update_network))
        .route("/sandboxes/{id}/fork", post(fork::fork))
        .route("/sandboxes/{id}/snapshots", post(snapshots::create))
        .route("/snapshots", get(snapshots::list))
        .route("/templates", get(templates::templates))
        .route("/v2/templates", get(templates::templates))
        .route("/v3/templates", post(builds::request_build))
        .route(
            "/templates/{id}",
            get(templates::template).delete(templates::delete_template),
        )
        .route("/v2/templates/{id}", patch(builds::update))
        .route("/templates/{id}/files/{hash}", get(builds::upload_link))
        .route(
            "/v2/templates/{id}/builds/{build}",
            post(builds::start_build),
        )
        .route("/templates/{id}/builds/{build}/status", get(builds::status))
        .route("/templates/{id}/builds/{build}/logs", get(builds::logs))
        .route(
            "/templates/tags",
            post(builds::assign_tags).delete(builds::delete_tags),
        )
        .route("/templates/{id}/tags", get(builds::tags))
        .route("/templates/aliases/{alias}", get(builds::alias))
        .route("/volumes", get(volumes::list).post(volumes::create))
        .route("/volumes/{id}", get(volumes::get).delete(volumes::delete))
        .route_layer(axum::middleware::from_fn_with_state(
            m.clone(),
            auth::require_key,
        ))
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .route("/health", get(health))
        // The signed upload link is the credential, as a presigned URL is.
        .route("/template-files/{hash}", put(builds::upload))
        // The volume's token is the credential (checked per handler), not the API key.
        .route(
            "/volumecontent/{id}/dir",
            get(volume_content::list_dir).post(volume_content::make_dir),
        )
        .route(
            "/volumecontent/{id}/path",
            get(volume_content::stat_path)
                .patch(volume_content::update_path)
                .delete(volume_content::remove_path),
        )
        .route(
            "/volumecontent/{id}/file",
            get(volume_content::read_file).put(volume_content::write_file),
        )
        // Applies to the routes added so far; `authed` has its own.
        .method_not_allowed_fallback(method_not_allowed)
        .merge(authed)
        .fallback(fallback)
        .with_state(m)
}

/// `GET /health` of the control plane (envd's `/health` is routed by header).
async fn health() -> StatusCode {
    StatusCode::OK
}

/// Any other path: 404 with a `{code, message}` body.
async fn fallback(method: http::Method, uri: http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {method} {}", uri.path()))
}

/// A known path with a method it does not serve: 405 with a `{code, message}` body.
async fn method_not_allowed(method: http::Method, uri: http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}
