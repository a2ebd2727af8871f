//! `/volumes`: create, list, get and delete volumes, and the status of every volume error.

use axum::Json;
use axum::extract::State;
use e2b_api::types;
use http::StatusCode;

use super::AppState;
use super::error::ApiError;
use super::request::{Path, RawBody, parse_body};
use crate::state::VolumeRecord;
use crate::volumes::VolumeError;

/// The status of a volume error.
pub(super) fn status(e: &VolumeError) -> StatusCode {
    match e {
        VolumeError::NotFound(_) => StatusCode::NOT_FOUND,
        VolumeError::InvalidName(_) | VolumeError::InvalidMount(_) => StatusCode::BAD_REQUEST,
        VolumeError::NameTaken(_) | VolumeError::InUse { .. } => StatusCode::CONFLICT,
        // The request is fine; this server lacks the functionality.
        VolumeError::Unavailable(_) => StatusCode::NOT_IMPLEMENTED,
        VolumeError::Host(..) | VolumeError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn with_token(v: VolumeRecord) -> types::VolumeAndToken {
    types::VolumeAndToken {
        domain: None,
        name: v.name,
        token: v.token,
        volume_id: v.id,
    }
}

/// `GET /volumes`: every volume, oldest first.
pub(super) async fn list(State(m): State<AppState>) -> Result<Json<Vec<types::Volume>>, ApiError> {
    let vols = m
        .store()
        .volumes()
        .map_err(crate::lifecycle::LifecycleError::from)?;
    Ok(Json(
        vols.into_iter()
            .map(|v| types::Volume {
                name: v.name,
                volume_id: v.id,
            })
            .collect(),
    ))
}

/// `POST /volumes`: 201 with the new volume and its token.
pub(super) async fn create(
    State(m): State<AppState>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<types::VolumeAndToken>), ApiError> {
    let req: types::NewVolume = parse_body(&body, &["name"], false)?;
    let v = m.create_volume(&req.name).await?;
    Ok((StatusCode::CREATED, Json(with_token(v))))
}

/// `GET /volumes/{volumeID}` (an id or a name): the volume and its token.
pub(super) async fn get(
    State(m): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<types::VolumeAndToken>, ApiError> {
    Ok(Json(with_token(m.volume(&id)?)))
}

/// `DELETE /volumes/{volumeID}`: 204; 409 naming the sandboxes that mount it.
pub(super) async fn delete(
    State(m): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    m.delete_volume(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
