//! E2B's template build API: `POST /v3/templates`, the upload link and upload of a COPY
//! step's files, `POST /v2/templates/{id}/builds/{buildID}`, build status and logs, tags
//! and aliases.

use axum::Json;
use axum::extract::State;
use e2b_api::types;
use futures_util::StreamExt as _;
use http::{HeaderMap, StatusCode};
use tokio::io::AsyncWriteExt as _;

use super::AppState;
use super::error::ApiError;
use super::request::{Path, Query, QueryPairs, RawBody, parse_body, query_get};
use crate::lifecycle::{BuildRequest, LifecycleError, Manager};
use crate::state::{BuildLogEntry, BuildRecord, BuildStatus};
use crate::template::steps::is_files_hash;

/// Largest upload of a COPY step's files.
pub(super) const MAX_UPLOAD_BYTES: u64 = 8 << 30;
/// How long an upload link stays valid.
const UPLOAD_LINK_SECS: i64 = 3600;
/// Most log entries one status or logs response carries (the spec's maximum).
const MAX_LOG_PAGE: usize = 100;

pub(super) fn build_status(s: BuildStatus) -> types::TemplateBuildStatus {
    match s {
        BuildStatus::Waiting => types::TemplateBuildStatus::Waiting,
        BuildStatus::Building => types::TemplateBuildStatus::Building,
        BuildStatus::Ready => types::TemplateBuildStatus::Ready,
        BuildStatus::Error => types::TemplateBuildStatus::Error,
    }
}

fn log_level(level: &str) -> types::LogLevel {
    match level {
        "debug" => types::LogLevel::Debug,
        "warn" => types::LogLevel::Warn,
        "error" => types::LogLevel::Error,
        _ => types::LogLevel::Info,
    }
}

/// The rank of a level, for `level` filters (`debug` < `info` < `warn` < `error`).
fn rank(level: &str) -> u8 {
    match level {
        "debug" => 0,
        "info" => 1,
        "warn" => 2,
        "error" => 3,
        _ => 1,
    }
}

fn level_filter(q: &QueryPairs) -> Result<u8, ApiError> {
    match query_get(q, "level") {
        None => Ok(0),
        Some(l @ ("debug" | "info" | "warn" | "error")) => Ok(rank(l)),
        Some(other) => Err(ApiError::bad_request(format!(
            "level '{other}': expected debug, info, warn or error"
        ))),
    }
}

fn entry(e: &BuildLogEntry) -> types::BuildLogEntry {
    types::BuildLogEntry {
        level: log_level(&e.level),
        message: e.message.clone(),
        step: e.step.clone(),
        timestamp: e.timestamp,
    }
}

fn usize_param(q: &QueryPairs, key: &str, default: usize) -> Result<usize, ApiError> {
    query_get(q, key).map_or(Ok(default), |v| {
        v.parse().map_err(|_| {
            ApiError::bad_request(format!("{key} '{v}' is not a non-negative integer"))
        })
    })
}

/// The build `build_id` of template `template` (id or name).
fn build_of(m: &Manager, template: &str, build_id: &str) -> Result<BuildRecord, ApiError> {
    let t = m.existing_template(template)?;
    m.store()
        .build(build_id)
        .map_err(LifecycleError::from)?
        .filter(|b| b.template_id == t.id)
        .ok_or_else(|| {
            LifecycleError::BuildNotFound {
                template: template.to_owned(),
                build: build_id.to_owned(),
            }
            .into()
        })
}

/// `POST /v3/templates`: 202 with the template and its new build.
pub(super) async fn request_build(
    State(m): State<AppState>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<types::TemplateRequestResponseV3>), ApiError> {
    let req: types::TemplateBuildRequestV3 = parse_body(
        &body,
        &[
            "name",
            "alias",
            "tags",
            "cpuCount",
            "memoryMB",
            "minFreeDiskMb",
            "teamID",
        ],
        false,
    )?;
    let name = req
        .name
        .map(|n| n.to_string())
        .or_else(|| req.alias.map(|a| a.to_string()))
        .ok_or_else(|| ApiError::bad_request("name is required"))?;
    let cpu = req.cpu_count.map(|c| c.0.get());
    let mem = req.memory_mb.map(|v| u64::try_from(v.0).unwrap_or(0));
    let (t, b) = m.request_build(&name, req.tags, cpu, mem)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(types::TemplateRequestResponseV3 {
            aliases: vec![t.name.clone()],
            build_id: b.id,
            names: vec![t.name],
            public: t.public,
            tags: b.tags,
            template_id: t.id,
        }),
    ))
}

/// `GET /templates/{templateID}/files/{hash}`: 201 with whether the files are here and,
/// when they are not, a signed upload link to this server.
pub(super) async fn upload_link(
    State(m): State<AppState>,
    Path((template, hash)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<types::TemplateBuildFileUpload>), ApiError> {
    m.existing_template(&template)?;
    if !is_files_hash(&hash) {
        return Err(ApiError::bad_request(format!(
            "hash '{hash}' is not a files hash (64 lowercase hex digits)"
        )));
    }
    let present = m.files_path(&hash).is_file();
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| ApiError::bad_request("the request has no Host header"))?;
    let expires = chrono::Utc::now().timestamp() + UPLOAD_LINK_SECS;
    let signature = m.upload_signature(&hash, expires);
    Ok((
        StatusCode::CREATED,
        Json(types::TemplateBuildFileUpload {
            headers: Default::default(),
            present,
            url: Some(format!(
                "http://{host}/template-files/{hash}?expires={expires}&signature={signature}"
            )),
        }),
    ))
}

/// `PUT /template-files/{hash}?expires=..&signature=..`: stores the archive (the link from
/// [`upload_link`] is the credential, as E2B's presigned storage URL is).
pub(super) async fn upload(
    State(m): State<AppState>,
    Path(hash): Path<String>,
    Query(q): Query<QueryPairs>,
    req: axum::extract::Request,
) -> Result<StatusCode, ApiError> {
    let expires: i64 = query_get(&q, "expires")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::unauthorized("upload link without a valid expires"))?;
    let signature = query_get(&q, "signature").unwrap_or_default();
    if !is_files_hash(&hash)
        || !e2b_envd::signature::constant_time_eq(
            signature.as_bytes(),
            m.upload_signature(&hash, expires).as_bytes(),
        )
    {
        return Err(ApiError::unauthorized(
            "invalid upload link: get one from GET /templates/{templateID}/files/{hash}",
        ));
    }
    if expires < chrono::Utc::now().timestamp() {
        return Err(ApiError::unauthorized("the upload link has expired"));
    }
    let dest = m.files_path(&hash);
    let dir = dest
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    crate::state::create_private_dir(&dir)
        .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    let partial = dir.join(format!(".partial-{}", crate::state::random_hex(8)));
    let result = write_upload(req.into_body(), &partial).await;
    match result {
        Ok(()) => std::fs::rename(&partial, &dest).map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            ApiError::internal(format!("storing the upload: {e}"))
        })?,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    }
    Ok(StatusCode::OK)
}

async fn write_upload(body: axum::body::Body, to: &std::path::Path) -> Result<(), ApiError> {
    let mut file = tokio::fs::File::create(to)
        .await
        .map_err(|e| ApiError::internal(format!("creating {}: {e}", to.display())))?;
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
        total += chunk.len() as u64;
        if total > MAX_UPLOAD_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the upload is larger than {MAX_UPLOAD_BYTES} bytes"),
            ));
        }
        file.write_all(&chunk).await.map_err(|e| {
            let status = if e.raw_os_error() == Some(libc::ENOSPC) {
                StatusCode::INSUFFICIENT_STORAGE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            ApiError::new(status, format!("writing the upload: {e}"))
        })?;
    }
    file.sync_all()
        .await
        .map_err(|e| ApiError::internal(format!("writing the upload: {e}")))
}

/// `POST /v2/templates/{templateID}/builds/{buildID}`: checks the steps and starts the
/// build in the background (202).
pub(super) async fn start_build(
    State(m): State<AppState>,
    Path((template, build_id)): Path<(String, String)>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let req: types::TemplateBuildStartV2 = parse_body(
        &body,
        &[
            "steps",
            "fromTemplate",
            "fromImage",
            "fromImageRegistry",
            "force",
            "startCmd",
            "readyCmd",
        ],
        false,
    )?;
    let b = build_of(&m, &template, &build_id)?;
    let from_image_registry = req
        .from_image_registry
        .map(registry_credentials)
        .transpose()?;
    let plan = m.plan_build(BuildRequest {
        from_template: req.from_template,
        from_image: req.from_image,
        from_image_registry,
        steps: req
            .steps
            .into_iter()
            .map(|s| crate::lifecycle::RawStepOwned {
                kind: s.type_,
                args: s.args,
                files_hash: s.files_hash,
                force: s.force,
            })
            .collect(),
        force: req.force,
        start_cmd: req.start_cmd,
        ready_cmd: req.ready_cmd,
    })?;
    m.start_build(b, plan)?;
    Ok(StatusCode::ACCEPTED)
}

/// The login `fromImageRegistry` gives: a general registry's user and password; AWS and
/// GCP logins (which need their clouds' token exchanges) are refused.
fn registry_credentials(
    registry: types::FromImageRegistry,
) -> Result<crate::template::oci::Credentials, ApiError> {
    match registry {
        types::FromImageRegistry::GeneralRegistry(r) => {
            Ok(crate::template::oci::Credentials::Basic {
                username: r.username,
                password: r.password,
            })
        }
        types::FromImageRegistry::AwsRegistry(_) => Err(ApiError::bad_request(
            "fromImageRegistry: type 'aws' is not supported by e2b-local yet (use type 'registry' with a username and password)",
        )),
        types::FromImageRegistry::GcpRegistry(_) => Err(ApiError::bad_request(
            "fromImageRegistry: type 'gcp' is not supported by e2b-local yet (use type 'registry' with a username and password)",
        )),
    }
}

/// `GET /templates/{templateID}/builds/{buildID}/status`.
pub(super) async fn status(
    State(m): State<AppState>,
    Path((template, build_id)): Path<(String, String)>,
    Query(q): Query<QueryPairs>,
) -> Result<Json<types::TemplateBuildInfo>, ApiError> {
    let b = build_of(&m, &template, &build_id)?;
    let offset = usize_param(&q, "logsOffset", 0)?;
    let limit = usize_param(&q, "limit", MAX_LOG_PAGE)?.min(MAX_LOG_PAGE);
    let min = level_filter(&q)?;
    let logs = m.build_logs(&b);
    let log_entries = logs
        .iter()
        .skip(offset)
        .filter(|e| rank(&e.level) >= min)
        .take(limit)
        .map(entry)
        .collect();
    let reason = b.reason.as_ref().map(|r| {
        let of_step: Vec<&BuildLogEntry> = logs
            .iter()
            .filter(|e| e.step.is_some() && e.step == r.step)
            .collect();
        types::BuildStatusReason {
            log_entries: of_step[of_step.len().saturating_sub(20)..]
                .iter()
                .map(|e| entry(e))
                .collect(),
            message: r.message.clone(),
            step: r.step.clone(),
        }
    });
    Ok(Json(types::TemplateBuildInfo {
        build_id: b.id,
        log_entries,
        logs: Vec::new(),
        reason,
        status: build_status(b.status),
        template_id: b.template_id,
    }))
}

/// `GET /templates/{templateID}/builds/{buildID}/logs`: entries from `cursor` (ms since
/// the epoch), forward (default) or backward.
pub(super) async fn logs(
    State(m): State<AppState>,
    Path((template, build_id)): Path<(String, String)>,
    Query(q): Query<QueryPairs>,
) -> Result<Json<types::TemplateBuildLogsResponse>, ApiError> {
    let b = build_of(&m, &template, &build_id)?;
    let limit = usize_param(&q, "limit", MAX_LOG_PAGE)?.min(MAX_LOG_PAGE);
    let min = level_filter(&q)?;
    let cursor = query_get(&q, "cursor")
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("cursor '{v}' is not milliseconds")))
        })
        .transpose()?;
    let backward = match query_get(&q, "direction") {
        None | Some("forward") => false,
        Some("backward") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "direction '{other}': expected forward or backward"
            )));
        }
    };
    if let Some(source) = query_get(&q, "source")
        && !matches!(source, "temporary" | "persistent")
    {
        return Err(ApiError::bad_request(format!(
            "source '{source}': expected temporary or persistent"
        )));
    }
    let all = m.build_logs(&b);
    let keep = |e: &&BuildLogEntry| {
        rank(&e.level) >= min
            && cursor.is_none_or(|c| {
                let t = e.timestamp.timestamp_millis();
                if backward { t <= c } else { t >= c }
            })
    };
    let logs: Vec<types::BuildLogEntry> = if backward {
        let mut v: Vec<_> = all
            .iter()
            .rev()
            .filter(keep)
            .take(limit)
            .map(entry)
            .collect();
        v.reverse();
        v
    } else {
        all.iter().filter(keep).take(limit).map(entry).collect()
    };
    Ok(Json(types::TemplateBuildLogsResponse { logs }))
}

/// `POST /templates/tags`: points `tags` at the build `target` (`name:tag`) names.
pub(super) async fn assign_tags(
    State(m): State<AppState>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<types::AssignedTemplateTags>), ApiError> {
    let req: types::AssignTemplateTagsRequest = parse_body(&body, &["target", "tags"], false)?;
    let build_id = m.assign_tags(&req.target, &req.tags)?;
    let build_id = uuid::Uuid::parse_str(&build_id)
        .map_err(|e| ApiError::internal(format!("build id {build_id}: {e}")))?;
    Ok((
        StatusCode::CREATED,
        Json(types::AssignedTemplateTags {
            build_id,
            tags: req.tags,
        }),
    ))
}

/// `DELETE /templates/tags`: removes `tags` from template `name`.
pub(super) async fn delete_tags(
    State(m): State<AppState>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let req: types::DeleteTemplateTagsRequest = parse_body(&body, &["name", "tags"], false)?;
    m.remove_tags(&req.name, &req.tags)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /templates/{templateID}/tags`.
pub(super) async fn tags(
    State(m): State<AppState>,
    Path(template): Path<String>,
) -> Result<Json<Vec<types::TemplateTag>>, ApiError> {
    let t = m.existing_template(&template)?;
    let mut out = Vec::new();
    for (tag, build_id) in &t.tags {
        let created_at = m
            .store()
            .build(build_id)
            .map_err(LifecycleError::from)?
            .and_then(|b| b.finished_at)
            .unwrap_or(t.created_at);
        let build_id = uuid::Uuid::parse_str(build_id)
            .map_err(|e| ApiError::internal(format!("build id {build_id}: {e}")))?;
        out.push(types::TemplateTag {
            build_id,
            created_at,
            tag: tag.clone(),
        });
    }
    Ok(Json(out))
}

/// `GET /templates/aliases/{alias}`: 200 when a template has that name, else 404.
pub(super) async fn alias(
    State(m): State<AppState>,
    Path(alias): Path<String>,
) -> Result<Json<types::TemplateAliasResponse>, ApiError> {
    let t = m
        .built_template(&alias)?
        .filter(|t| t.name == alias)
        .ok_or(LifecycleError::TemplateNotFound { name: alias })?;
    Ok(Json(types::TemplateAliasResponse {
        public: t.public,
        template_id: t.id,
    }))
}

/// `PATCH /v2/templates/{templateID}`: sets `public`.
pub(super) async fn update(
    State(m): State<AppState>,
    Path(template): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<types::TemplateUpdateResponse>, ApiError> {
    let req: types::TemplateUpdateRequest = parse_body(&body, &["public"], false)?;
    let t = m.update_template(&template, req.public)?;
    Ok(Json(types::TemplateUpdateResponse {
        names: vec![t.name],
    }))
}
