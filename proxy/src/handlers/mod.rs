//! Thin HTTP handlers: extract, call into the router core, map the result.

pub mod health;
pub mod inference;
pub mod models;
pub mod router;

use crate::{error::ApiError, router::Snapshot, state::AppState};
use std::sync::Arc;

/// The config being served, or 503 while none has loaded yet.
pub fn snapshot(state: &AppState) -> Result<Arc<Snapshot>, ApiError> {
    state.snapshot().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable_error",
            "No configuration loaded yet; see /health/readiness",
        )
    })
}
