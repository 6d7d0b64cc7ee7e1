//! Master-key authentication. With `general_settings.master_key` set, every endpoint but
//! the liveness and readiness probes needs the key, as LiteLLM requires it.

use crate::{error::ApiError, state::AppState};
use axum::{
    extract::{Request, State},
    http::HeaderMap,
    middleware::Next,
    response::{IntoResponse, Response},
};
use subtle::ConstantTimeEq;

/// Routes that answer without a key (probes must work before anyone has one).
const OPEN: &[&str] = &[
    "/health/liveliness",
    "/health/liveness",
    "/health/readiness",
];

/// The key a client sent: `Authorization: Bearer`, Azure's `api-key` or Anthropic's `x-api-key`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        return Some(
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .unwrap_or(v)
                .trim(),
        );
    }
    ["api-key", "x-api-key"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if OPEN.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let Some(snap) = state.snapshot() else {
        return next.run(req).await;
    };
    let Some(master) = &snap.settings.master_key else {
        return next.run(req).await;
    };
    match presented(req.headers()) {
        None | Some("") => ApiError::unauthorized(
            "Authentication Error, No api key passed in. Send 'Authorization: Bearer <key>'.",
        )
        .into_response(),
        Some(key) if bool::from(key.as_bytes().ct_eq(master.expose().as_bytes())) => {
            next.run(req).await
        }
        Some(_) => {
            ApiError::unauthorized("Authentication Error, Invalid proxy server token passed.")
                .into_response()
        }
    }
}
