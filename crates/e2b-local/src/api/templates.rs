//! Templates: `GET /templates` (and `/v2/templates`), `GET /templates/{id}`,
//! `DELETE /templates/{id}`: the built-in ones (`base`, those added with `template add`)
//! and those made with the build API ([`super::builds`]).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use e2b_api::types;
use http::StatusCode;

use super::AppState;
use super::bodies::sizes;
use super::builds::build_status;
use super::error::ApiError;
use super::request::Path;
use crate::lifecycle::{LifecycleError, Manager};
use crate::state::{BuildRecord, BuiltTemplate, DEFAULT_TAG};

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
    if let Some(d) = crate::template::debian::built(m.runtime().data_dir()) {
        let created = std::fs::metadata(&d.layers[0].lowers[0])
            .and_then(|md| md.modified())
            .map_or_else(|_| Utc::now(), DateTime::<Utc>::from);
        out.push(template_json(m, crate::template::debian::NAME, created));
    }
    for t in m
        .store()
        .templates()
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
        out.push(template_json(m, &t.name, t.created_at));
    }
    let builds = m.store().builds().map_err(LifecycleError::from)?;
    for t in m.store().built_templates().map_err(LifecycleError::from)? {
        out.push(built_json(m, &t, &builds));
    }
    Ok(out)
}

/// A template made with the build API: its default tag's build (else its latest).
fn built_json(m: &Manager, t: &BuiltTemplate, builds: &[BuildRecord]) -> types::Template {
    let ours: Vec<&BuildRecord> = builds.iter().filter(|b| b.template_id == t.id).collect();
    let current = t
        .tags
        .get(DEFAULT_TAG)
        .and_then(|id| ours.iter().find(|b| &b.id == id))
        .or(ours.last())
        .copied();
    let mut json = template_json(m, &t.name, t.created_at);
    json.template_id = t.id.clone();
    json.build_count = i32::try_from(ours.len()).unwrap_or(i32::MAX);
    if let Some(b) = current {
        json.build_id = b.id.clone();
        json.build_status = build_status(b.status);
    }
    if let Some(c) = t.cpu_count.and_then(std::num::NonZeroU32::new) {
        json.cpu_count = types::CpuCount(c);
    }
    if let Some(mb) = t.memory_mb {
        json.memory_mb = types::MemoryMb(i32::try_from(mb).unwrap_or(i32::MAX));
    }
    json.public = t.public;
    json.updated_at = t.updated_at;
    json
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
        .find(|t| t.template_id == name || t.names.contains(&name))
        .ok_or_else(|| LifecycleError::TemplateNotFound { name })?;
    let builds = m
        .store()
        .builds()
        .map_err(LifecycleError::from)?
        .into_iter()
        .filter(|b| b.template_id == t.template_id)
        .filter_map(|b| {
            Some(types::TemplateBuild {
                build_id: uuid::Uuid::parse_str(&b.id).ok()?,
                cpu_count: t.cpu_count.clone(),
                created_at: b.created_at,
                disk_size_mb: Some(t.disk_size_mb.clone()),
                envd_version: Some(t.envd_version.clone()),
                finished_at: b.finished_at,
                memory_mb: t.memory_mb.clone(),
                status: build_status(b.status),
                updated_at: b.finished_at.unwrap_or(b.created_at),
            })
        })
        .collect();
    Ok(Json(types::TemplateWithBuilds {
        aliases: t.aliases,
        builds,
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
        return Ok(StatusCode::NO_CONTENT);
    }
    m.delete_built_template(&name)?;
    Ok(StatusCode::NO_CONTENT)
}
