//! The HTTP API on port 49999, as E2B's code-interpreter server answers it: `POST /execute`
//! (NDJSON events), `/contexts` (create, list, delete, restart) and `GET /health`. Errors are
//! plain-text bodies with E2B's status codes (404 for an unknown context, which the SDKs map
//! to their not-found error).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::Config;
use crate::events::Event;
use crate::kernel::{self, ContextHandle, Control, Job};
use crate::kernelspec::{self, normalize_language};

/// A context as `/contexts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextInfo {
    /// The context's id.
    pub id: String,
    /// Its language (normalized: `python`, `bash`, `javascript`, …).
    pub language: String,
    /// The directory its kernel runs in.
    pub cwd: String,
}

/// An error answer: a status and a plain-text message.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.1,
        )
            .into_response()
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("Context {id} not found"))
}

#[derive(Deserialize)]
struct ExecuteRequest {
    code: String,
    #[serde(default)]
    context_id: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    env_vars: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct CreateContext {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    cwd: Option<String>,
}

struct Entry {
    info: ContextInfo,
    handle: ContextHandle,
}

/// The server's contexts.
pub(crate) struct State {
    config: Arc<Config>,
    contexts: Mutex<BTreeMap<String, Entry>>,
    /// Each language's default context, behind a lock held while it is being created so
    /// that concurrent first executions share one kernel.
    defaults: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<String>>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The request body as JSON, or a 422 naming what is wrong with it (FastAPI's status for an
/// invalid body).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the request body is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the request body is not a valid request: {e}"),
        )
    })
}

/// `Some` unless empty (E2B treats an empty `context_id` or `language` as absent).
fn given(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

impl State {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            config: Arc::new(config),
            contexts: Mutex::new(BTreeMap::new()),
            defaults: Mutex::new(HashMap::new()),
        }
    }

    fn handle(&self, id: &str) -> Option<ContextHandle> {
        lock(&self.contexts).get(id).map(|e| e.handle.clone())
    }

    async fn create(&self, language: String, cwd: Option<String>) -> Result<ContextInfo, ApiError> {
        let specs = kernelspec::installed(&self.config.kernel_dirs);
        let Some(spec) = kernelspec::for_language(&specs, &language) else {
            let mut installed: Vec<&str> = specs.iter().map(|s| s.language.as_str()).collect();
            installed.dedup();
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "Unknown language '{language}': no Jupyter kernel for it is installed (installed: {})",
                    if installed.is_empty() {
                        "none".to_owned()
                    } else {
                        installed.join(", ")
                    }
                ),
            ));
        };
        let cwd = cwd.map_or_else(|| self.config.default_cwd.clone(), PathBuf::from);
        if !cwd.is_dir() {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("cwd '{}' is not a directory", cwd.display()),
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let handle = kernel::start(
            id.clone(),
            language.clone(),
            spec.clone(),
            cwd.clone(),
            self.config.clone(),
        )
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Failed to create context: {e}"),
            )
        })?;
        let info = ContextInfo {
            id: id.clone(),
            language,
            cwd: cwd.to_string_lossy().into_owned(),
        };
        lock(&self.contexts).insert(
            id,
            Entry {
                info: info.clone(),
                handle,
            },
        );
        Ok(info)
    }

    /// `language`'s default context, created on first use.
    pub(crate) async fn default_context(
        &self,
        language: &str,
    ) -> Result<(String, ContextHandle), ApiError> {
        let slot = lock(&self.defaults)
            .entry(language.to_owned())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(id) = slot.as_deref()
            && let Some(handle) = self.handle(id)
        {
            return Ok((id.to_owned(), handle));
        }
        let info = self.create(language.to_owned(), None).await?;
        *slot = Some(info.id.clone());
        let handle = self.handle(&info.id).ok_or_else(|| not_found(&info.id))?;
        Ok((info.id, handle))
    }

    /// Stops every kernel.
    pub(crate) async fn shutdown(&self) {
        let entries: Vec<Entry> = std::mem::take(&mut *lock(&self.contexts))
            .into_values()
            .collect();
        for entry in entries {
            let (tx, rx) = oneshot::channel();
            if entry
                .handle
                .control
                .send(Control::Shutdown(tx))
                .await
                .is_ok()
            {
                let _ = rx.await;
            }
        }
    }
}

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/execute", post(execute))
        .route("/contexts", post(create_context).get(list_contexts))
        .route("/contexts/{id}", delete(remove_context))
        .route("/contexts/{id}/restart", post(restart_context))
        .with_state(state)
}

async fn health() -> Json<&'static str> {
    Json("OK")
}

async fn execute(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ExecuteRequest = parse(&body)?;
    let (context_id, language) = (given(request.context_id), given(request.language));
    if context_id.is_some() && language.is_some() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "Only one of context_id or language can be provided".to_owned(),
        ));
    }
    let env_vars = request.env_vars.unwrap_or_default();
    if let Some(bad) = env_vars.keys().find(|k| !crate::env_vars::valid_name(k)) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "env var name '{bad}' is not valid: use letters, digits and '_', not starting with a digit"
            ),
        ));
    }
    let (id, handle) = match context_id {
        Some(id) => {
            let handle = state.handle(&id).ok_or_else(|| not_found(&id))?;
            (id, handle)
        }
        None => {
            state
                .default_context(&normalize_language(language.as_deref()))
                .await?
        }
    };
    let (events, rx) = mpsc::channel(64);
    let job = Job {
        code: request.code,
        env_vars,
        access_token: headers
            .get("x-access-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        events,
    };
    // The context's task is gone only when it was removed meanwhile.
    handle.jobs.send(job).await.map_err(|_| not_found(&id))?;

    let keepalive = state.config.keepalive_interval;
    let max = state.config.max_event_bytes;
    let lines = futures_util::stream::unfold((rx, false), move |(mut rx, ended)| async move {
        if ended {
            return None;
        }
        let (event, ended) = match tokio::time::timeout(keepalive, rx.recv()).await {
            Ok(Some(event)) => (event, false),
            Ok(None) => (Event::EndOfExecution, true),
            Err(_) => (Event::Keepalive, false),
        };
        Some((
            Ok::<_, Infallible>(Bytes::from(event.to_line(max))),
            (rx, ended),
        ))
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(lines))
        .unwrap_or_default())
}

async fn create_context(
    AxState(state): AxState<Arc<State>>,
    body: Bytes,
) -> Result<Json<ContextInfo>, ApiError> {
    let request: CreateContext = if body.iter().all(u8::is_ascii_whitespace) {
        CreateContext::default()
    } else {
        parse(&body)?
    };
    let language = normalize_language(request.language.as_deref());
    Ok(Json(state.create(language, given(request.cwd)).await?))
}

async fn list_contexts(AxState(state): AxState<Arc<State>>) -> Json<Vec<ContextInfo>> {
    Json(
        lock(&state.contexts)
            .values()
            .map(|e| e.info.clone())
            .collect(),
    )
}

async fn remove_context(
    AxState(state): AxState<Arc<State>>,
    Path(id): Path<String>,
) -> Result<Json<()>, ApiError> {
    let entry = lock(&state.contexts)
        .remove(&id)
        .ok_or_else(|| not_found(&id))?;
    let (tx, rx) = oneshot::channel();
    if entry
        .handle
        .control
        .send(Control::Shutdown(tx))
        .await
        .is_ok()
    {
        let _ = rx.await;
    }
    Ok(Json(()))
}

async fn restart_context(
    AxState(state): AxState<Arc<State>>,
    Path(id): Path<String>,
) -> Result<Json<()>, ApiError> {
    let handle = state.handle(&id).ok_or_else(|| not_found(&id))?;
    let (tx, rx) = oneshot::channel();
    let failed = |e: String| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Failed to restart context {id}: {e}"),
        )
    };
    handle
        .control
        .send(Control::Restart(tx))
        .await
        .map_err(|_| failed("its kernel task is gone".to_owned()))?;
    match rx.await {
        Ok(Ok(())) => Ok(Json(())),
        Ok(Err(e)) => Err(failed(e)),
        Err(_) => Err(failed("its kernel task is gone".to_owned())),
    }
}
