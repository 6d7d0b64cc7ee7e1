//! `/v1/models`, `/model/info`, `/model_group/info`: served from the snapshot's listing.

use super::snapshot;
use crate::{error::ApiError, listing, state::AppState};
use axum::{
    extract::{Path, Query, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::Deserialize;

fn json_bytes(b: Bytes) -> Response {
    let mut r = b.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[derive(Deserialize, Default)]
pub struct ModelsQuery {
    #[serde(default)]
    return_wildcard_routes: Option<bool>,
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ModelsQuery>,
) -> Result<Response, ApiError> {
    let snap = snapshot(&state)?;
    Ok(json_bytes(if q.return_wildcard_routes == Some(true) {
        snap.listing.models_with_wildcards.clone()
    } else {
        snap.listing.models.clone()
    }))
}

pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snap = snapshot(&state)?;
    match snap.listing.model(&id) {
        Some(item) => Ok(json_bytes(item.clone())),
        None => Err(ApiError::not_found(format!(
            "The model `{id}` does not exist. Call `/v1/models` to view available models for your key."
        ))
        .with_param("model")),
    }
}

#[derive(Deserialize, Default)]
pub struct InfoQuery {
    litellm_model_id: Option<String>,
}

pub async fn info(
    State(state): State<AppState>,
    Query(q): Query<InfoQuery>,
) -> Result<Response, ApiError> {
    let snap = snapshot(&state)?;
    let Some(id) = q.litellm_model_id else {
        return Ok(json_bytes(snap.listing.model_info.clone()));
    };
    match snap.listing.deployment(&id) {
        Some(entry) => Ok(json_bytes(listing::data_of(Some(entry)))),
        None => Err(
            ApiError::bad_request(format!("Model id = {id} not found on litellm proxy"))
                .with_param("litellm_model_id"),
        ),
    }
}

#[derive(Deserialize, Default)]
pub struct GroupQuery {
    model_group: Option<String>,
}

pub async fn group_info(
    State(state): State<AppState>,
    Query(q): Query<GroupQuery>,
) -> Result<Response, ApiError> {
    let snap = snapshot(&state)?;
    let Some(name) = q.model_group else {
        return Ok(json_bytes(snap.listing.model_group_info.clone()));
    };
    Ok(json_bytes(listing::data_of(snap.listing.group(&name))))
}
