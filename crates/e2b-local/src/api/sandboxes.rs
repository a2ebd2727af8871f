//! One handler per sandbox operation: create, get, kill, timeout, refresh, pause, resume,
//! connect.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use e2b_api::types;
use http::{HeaderMap, StatusCode};

use super::AppState;
use super::bodies::{detail, sandbox_body};
use super::error::ApiError;
use super::request::{Path, RawBody, live, parse_body, sandbox_id};
use crate::lifecycle::{CreateParams, LifecycleError, Manager};

/// Largest accepted metadata (sum of key and value bytes).
const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Largest accepted env vars (sum of key and value bytes).
const MAX_ENV_BYTES: usize = 64 * 1024;

fn check_map(what: &str, map: &BTreeMap<String, String>, max: usize) -> Result<(), ApiError> {
    let size: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > max {
        return Err(ApiError::bad_request(format!(
            "{what} is too large: {size} bytes (at most {max})"
        )));
    }
    if map.keys().any(String::is_empty) {
        return Err(ApiError::bad_request(format!("{what} has an empty key")));
    }
    Ok(())
}

/// Environment variables must be expressible as `KEY=value` C strings: a NUL or a `=` in a
/// name, or a NUL in a value, would be accepted here and then fail every command in envd.
fn check_env_vars(env: &BTreeMap<String, String>) -> Result<(), ApiError> {
    check_map("envVars", env, MAX_ENV_BYTES)?;
    for (k, v) in env {
        let problem = if k.contains('\0') {
            "has a NUL byte in its name"
        } else if k.contains('=') {
            "has '=' in its name"
        } else if v.contains('\0') {
            "has a NUL byte in its value"
        } else {
            continue;
        };
        return Err(ApiError::bad_request(format!(
            "envVars: variable {k:?} {problem}"
        )));
    }
    Ok(())
}

const NEW_SANDBOX_V2_FIELDS: &[&str] = &[
    "templateID",
    "timeout",
    "allow_internet_access",
    "metadata",
    "envVars",
    "autoPause",
    "autoPauseMemory",
    "autoResume",
    "network",
    "iam",
    "mcp",
    "volumeMounts",
];

/// What a create asks to happen at its timeout and after (`autoPause`, `autoPauseMemory`,
/// `autoResume`).
struct LifecycleRequest {
    auto_pause: bool,
    auto_pause_memory: bool,
    auto_resume: Option<types::SandboxAutoResumeConfig>,
}

#[allow(clippy::too_many_arguments)]
fn create_params(
    m: &Manager,
    template: String,
    timeout: i32,
    metadata: Option<types::SandboxMetadata>,
    env_vars: Option<types::EnvVars>,
    secure: bool,
    lifecycle: LifecycleRequest,
    allow_internet_access: Option<bool>,
    network: Option<&types::SandboxNetworkConfig>,
    mcp: bool,
    volume_mounts: &[types::SandboxVolumeMount],
) -> Result<CreateParams, ApiError> {
    if template.is_empty() {
        return Err(ApiError::bad_request("templateID must not be empty"));
    }
    if mcp {
        return Err(ApiError::bad_request(
            "mcp is not supported by e2b-local (no MCP gateway template)",
        ));
    }
    let auto_resume = lifecycle.auto_resume.is_some_and(|a| a.enabled);
    if auto_resume && !lifecycle.auto_pause {
        return Err(ApiError::bad_request(
            "autoResume.enabled needs autoPause: true (a sandbox killed at its timeout cannot be resumed)",
        ));
    }
    if auto_resume && !lifecycle.auto_pause_memory {
        return Err(ApiError::bad_request(
            "autoResume.enabled cannot be combined with autoPauseMemory: false (a files-only pause is resumed by connect, which reboots it)",
        ));
    }
    let metadata = metadata.map(|m| m.0).unwrap_or_default();
    check_map("metadata", &metadata, MAX_METADATA_BYTES)?;
    let env_vars = env_vars.map(|e| e.0).unwrap_or_default();
    check_env_vars(&env_vars)?;
    let (network, rules) = super::network::create_rules(allow_internet_access, network)?;
    let volume_mounts = m.check_volume_mounts(
        &volume_mounts
            .iter()
            .map(|v| (v.name.clone(), v.path.clone()))
            .collect::<Vec<_>>(),
    )?;
    // `namespace/alias:tag` references: the tag `default` (or none) names the template.
    let template = match template.split_once(':') {
        Some((name, "default")) => name.to_owned(),
        _ => template,
    };
    Ok(CreateParams {
        template,
        timeout: i64::from(timeout),
        metadata,
        env_vars,
        secure,
        auto_pause: lifecycle.auto_pause,
        auto_pause_memory: lifecycle.auto_pause_memory,
        auto_resume,
        allow_internet_access,
        network,
        rules,
        volume_mounts,
        layers: Vec::new(),
    })
}

/// Runs a create to its end even if the client goes away (axum then drops this handler's
/// future): a create cut off between its steps would leave a sandbox no one tracks.
async fn create_detached(
    m: &AppState,
    p: crate::lifecycle::CreateParams,
) -> Result<std::sync::Arc<crate::lifecycle::Live>, ApiError> {
    let m = m.clone();
    tokio::spawn(async move { m.create(p).await })
        .await
        .map_err(|e| ApiError::internal(format!("creating a sandbox: {e}")))?
        .map_err(ApiError::from)
}

/// `POST /sandboxes`.
pub(super) async fn create_v1(
    State(m): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let mut fields = NEW_SANDBOX_V2_FIELDS.to_vec();
    fields.push("secure");
    let req: types::NewSandbox = parse_body(&body, &fields, false)?;
    let p = create_params(
        &m,
        req.template_id,
        req.timeout,
        req.metadata,
        req.env_vars,
        req.secure.unwrap_or(true),
        LifecycleRequest {
            auto_pause: req.auto_pause,
            auto_pause_memory: req.auto_pause_memory,
            auto_resume: req.auto_resume,
        },
        req.allow_internet_access,
        req.network.as_ref(),
        req.mcp.is_some(),
        &req.volume_mounts,
    )?;
    let live = create_detached(&m, p).await?;
    Ok((StatusCode::CREATED, Json(sandbox_body(&m, &live))).into_response())
}

/// `POST /v2/sandboxes` (always secure; a repeated `Idempotency-Key` returns the same sandbox).
pub(super) async fn create_v2(
    State(m): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    // py 2.63 reuses an `Idempotency-Key` on retries of the same create.
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v.to_str().unwrap_or("");
            let ok = (1..=255).contains(&k.len())
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(ApiError::bad_request(
                    "invalid Idempotency-Key header: expected 1 to 255 characters of [a-z0-9-]",
                ));
            }
            Some(k.to_owned())
        }
    };
    if let Some(live) = key.as_deref().and_then(|k| m.idempotent(k)) {
        return Ok((StatusCode::CREATED, Json(sandbox_body(&m, &live))).into_response());
    }
    let req: types::NewSandboxV2 = parse_body(&body, NEW_SANDBOX_V2_FIELDS, false)?;
    let p = create_params(
        &m,
        req.template_id,
        req.timeout,
        req.metadata,
        req.env_vars,
        true,
        LifecycleRequest {
            auto_pause: req.auto_pause,
            auto_pause_memory: req.auto_pause_memory,
            auto_resume: req.auto_resume,
        },
        req.allow_internet_access,
        req.network.as_ref(),
        req.mcp.is_some(),
        &req.volume_mounts,
    )?;
    let live = create_detached(&m, p).await?;
    if let Some(k) = key {
        m.remember_idempotency(k, live.record().id);
    }
    Ok((StatusCode::CREATED, Json(sandbox_body(&m, &live))).into_response())
}

/// `GET /sandboxes/{sandboxID}`.
pub(super) async fn get_sandbox(
    State(m): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<types::SandboxDetail>, ApiError> {
    let l = live(&m, &id)?;
    Ok(Json(detail(&m, &l)))
}

/// `DELETE /sandboxes/{sandboxID}`: 204, or 404.
pub(super) async fn kill(
    State(m): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = sandbox_id(&id)?;
    m.kill(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{sandboxID}/timeout`: end = now + timeout (may shorten).
pub(super) async fn set_timeout(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let id = sandbox_id(&id)?;
    let req: types::SandboxTimeoutRequest = parse_body(&body, &["timeout"], false)?;
    m.set_timeout(&id, i64::from(req.timeout))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{sandboxID}/refreshes`: extends only (`duration` ≤ 3600, default 300).
pub(super) async fn refresh(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let id = sandbox_id(&id)?;
    let req: types::SandboxRefreshRequest = parse_body(&body, &["duration"], true)?;
    let d = req.duration.unwrap_or(300);
    if !(0..=3600).contains(&d) {
        return Err(ApiError::bad_request(format!(
            "duration must be between 0 and 3600 seconds (got {d})"
        )));
    }
    m.refresh(&id, d)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{sandboxID}/pause`: 204, 409 when already paused. `memory: false`
/// keeps only the files (the resume is a new boot).
pub(super) async fn pause(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let id = sandbox_id(&id)?;
    let req: types::SandboxPauseRequest =
        parse_body(&body, &["memory", "requireHealthyGuest"], true)?;
    m.pause(&id, req.memory).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{sandboxID}/resume` (deprecated): 201, 409 when running.
pub(super) async fn resume(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let id = sandbox_id(&id)?;
    let req: types::ResumedSandbox = parse_body(&body, &["timeout", "autoPause", "memory"], true)?;
    if req.timeout <= 0 {
        return Err(LifecycleError::TimeoutNotPositive {
            secs: i64::from(req.timeout),
        }
        .into());
    }
    let l = m.resume(&id, i64::from(req.timeout)).await?;
    if let Some(ap) = req.auto_pause {
        crate::lifecycle::lock(&l.rec).auto_pause = ap;
    }
    Ok((StatusCode::CREATED, Json(sandbox_body(&m, &l))).into_response())
}

async fn connect_common(m: &Manager, id: &str, timeout: i64) -> Result<Response, ApiError> {
    let id = sandbox_id(id)?;
    let (l, resumed) = m.connect(&id, timeout).await?;
    let status = if resumed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(sandbox_body(m, &l))).into_response())
}

/// `POST /sandboxes/{sandboxID}/connect`: 200 running (extends only), 201 resumed.
pub(super) async fn connect_v1(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let req: types::ConnectSandbox = parse_body(&body, &["timeout", "memory"], false)?;
    connect_common(&m, &id, i64::from(req.timeout)).await
}

/// `POST /v2/sandboxes/{sandboxID}/connect`: body optional, timeout default 300.
pub(super) async fn connect_v2(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let req: types::ConnectSandboxV2 = parse_body(&body, &["timeout", "memory"], true)?;
    connect_common(&m, &id, i64::from(req.timeout)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_vars_must_be_c_strings_with_plain_names() {
        let env = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert_eq!(check_env_vars(&env("PATH_X", "a=b c")), Ok(()));
        for (k, v, message) in [
            (
                "A",
                "x\0y",
                r#"envVars: variable "A" has a NUL byte in its value"#,
            ),
            (
                "A\0B",
                "x",
                r#"envVars: variable "A\0B" has a NUL byte in its name"#,
            ),
            ("A=B", "x", r#"envVars: variable "A=B" has '=' in its name"#),
            ("", "x", "envVars has an empty key"),
        ] {
            assert_eq!(
                check_env_vars(&env(k, v)),
                Err(ApiError::bad_request(message)),
                "{k:?}"
            );
        }
    }
}
