//! `GET /router/cooldowns`: the deployments being skipped right now, why, and for how long.

use super::snapshot;
use crate::{error::ApiError, state::AppState};
use axum::{Json, extract::State};
use serde_json::{Value, json};

pub async fn cooldowns(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let snap = snapshot(&state)?;
    let now = std::time::Instant::now();
    let data: Vec<Value> = state
        .live
        .cooldowns()
        .into_iter()
        .map(|(id, c)| {
            let group = snap
                .deployments
                .iter()
                .find(|d| d.id == id)
                .map(|d| d.model_name.clone());
            json!({
                "model_id": id,
                "model_group": group,
                "status_code": c.status,
                "reason": c.reason,
                "cooldown_time": c.duration.as_secs_f64(),
                "remaining_seconds": c.until.saturating_duration_since(now).as_secs_f64(),
            })
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}
