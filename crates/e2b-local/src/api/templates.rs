//! Templates: `GET /templates`, `GET /templates/{id}`, `DELETE /templates/{id}`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use e2b_api::types;
use http::StatusCode;

use super::AppState;
use super::bodies::sizes;
use super::error::ApiError;
use super::request::Path;
use crate::lifecycle::{LifecycleError, Manager};

fn template_json(m: &Manager, name: &str, created: DateTime<Utc>) -> types::Template {
    let s = sizes(m);
    types::Template {
        aliases: vec![name.to_owned()],
        build_count: 1,
        build_id: format!("{name}-build"),
        build_status: types::TemplateBuildStatus::Ready,
        cpu_count: s.cpu,
        created_at: created,
        created_by: None,
        disk_size_mb: types::DiskSizeMb(s.disk_mb),
        envd_version: envd::ENVD_VERSION.to_owned().into(),
        last_spawned_at: None,
        memory_mb: types::MemoryMb(s.mem_mb),
        names: vec![name.to_owned()],
        public: false,
        spawn_count: 0,
        template_id: name.to_owned(),
        updated_at: created,
    }
}

fn template_list(m: &Manager) -> Result<Vec<types::Template>, ApiError> {
    let base_created = std::fs::metadata(m.runtime().data_dir().join("templates/base"))
        .and_then(|md| md.modified())
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now());
    let mut out = vec![template_json(m, crate::template::BASE, base_created)];
    for t in m
        .store()
        .templates()
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
        out.push(template_json(m, &t.name, t.created_at));
    }
    Ok(out)
}

/// `GET /templates`.
pub(super) async fn templates(
    State(m): State<AppState>,
) -> Result<Json<Vec<types::Template>>, ApiError> {
    Ok(Json(template_list(&m)?))
}

/// `GET /templates/{templateID}`.
pub(super) async fn template(
    State(m): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<types::TemplateWithBuilds>, ApiError> {
    let t = template_list(&m)?
        .into_iter()
        .find(|t| t.template_id == name)
        .ok_or_else(|| LifecycleError::TemplateNotFound { name })?;
    Ok(Json(types::TemplateWithBuilds {
        aliases: t.aliases,
        builds: Vec::new(),
        created_at: t.created_at,
        last_spawned_at: None,
        names: t.names,
        public: false,
        spawn_count: 0,
        template_id: t.template_id,
        updated_at: t.updated_at,
    }))
}

/// `DELETE /templates/{templateID}`: 204; 404 unknown; 400 for `base`.
pub(super) async fn delete_template(
    State(m): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if name == crate::template::BASE {
        return Err(ApiError::bad_request(
            "the default template base cannot be deleted",
        ));
    }
    if m.store()
        .remove_template(&name)
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(LifecycleError::TemplateNotFound { name }.into())
    }
}
