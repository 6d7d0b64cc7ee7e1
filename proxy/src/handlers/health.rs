//! `/health` (cached deployment checks), `/health/liveliness`, `/health/readiness`, `/metrics`.

use super::snapshot;
use crate::{error::ApiError, health, state::AppState};
use axum::{
    Json,
    extract::{Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

pub async fn health(
    State(state): State<AppState>,
    Query(q): Query<health::HealthQuery>,
) -> Result<Response, ApiError> {
    let snap = snapshot(&state)?;
    Ok(Json(health::report(&state, &snap, &q).await).into_response())
}

pub async fn liveliness() -> Json<&'static str> {
    Json("I'm alive!")
}

/// Ready once a config is loaded; reports which one, and the last reload failure if any.
pub async fn readiness(State(state): State<AppState>) -> Response {
    let error = state.last_error();
    let source_error = state.source_error();
    let redis = state.shared_store().map(|s| {
        let (connected, error) = s.status();
        json!({"url": s.target.redacted, "connected": connected, "error": error,
               "on_outage": format!("{:?}", s.target.on_outage).to_lowercase()})
    });
    match state.snapshot() {
        Some(snap) => Json(json!({
            "status": "healthy",
            "db": "Not connected",
            "cache": redis,
            "litellm_version": concat!("modelgate-", env!("CARGO_PKG_VERSION")),
            "config": {"generation": snap.meta.generation, "hash": snap.meta.hash,
                       "source": snap.meta.source, "deployments": snap.deployments.len(),
                       "last_reload_error": error, "source_error": source_error},
        }))
        .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "db": "Not connected",
                        "config": {"generation": null, "last_reload_error": error,
                                   "source_error": source_error},
                        "reason": "no valid config loaded yet"})),
        )
            .into_response(),
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let cooling = state.live.cooldowns().len();
    state
        .metrics
        .cooling_down
        .set(i64::try_from(cooling).unwrap_or(i64::MAX));
    let mut r = state.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}
