//! `app(state)`: every route of the proxy, with authentication in front.

use crate::{
    error::ApiError,
    handlers::{health, inference, models},
    state::AppState,
};
use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    response::IntoResponse,
    routing::{get, post},
};

pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/models", get(models::list))
        .route("/models", get(models::list))
        .route("/v1/models/{*id}", get(models::one))
        .route("/models/{*id}", get(models::one))
        .route("/model/info", get(models::info))
        .route("/v1/model/info", get(models::info))
        .route("/model_group/info", get(models::group_info))
        .route("/health", get(health::health))
        .route("/health/liveliness", get(health::liveliness))
        .route("/health/liveness", get(health::liveliness))
        .route("/health/readiness", get(health::readiness))
        .route("/metrics", get(health::metrics))
        .route("/v1/chat/completions", post(inference::chat))
        .route("/chat/completions", post(inference::chat))
        .route(
            "/engines/{model}/chat/completions",
            post(inference::chat_for_model),
        )
        .route(
            "/openai/deployments/{model}/chat/completions",
            post(inference::chat_for_model),
        )
        .route("/v1/completions", post(inference::completions))
        .route("/completions", post(inference::completions))
        .route(
            "/engines/{model}/completions",
            post(inference::completions_for_model),
        )
        .route(
            "/openai/deployments/{model}/completions",
            post(inference::completions_for_model),
        )
        .route("/v1/embeddings", post(inference::embeddings))
        .route("/embeddings", post(inference::embeddings))
        .route(
            "/engines/{model}/embeddings",
            post(inference::embeddings_for_model),
        )
        .route(
            "/openai/deployments/{model}/embeddings",
            post(inference::embeddings_for_model),
        )
        .route("/router/cooldowns", get(crate::handlers::router::cooldowns))
        .route("/model/new", post(crate::cluster::manage::new_model))
        .route("/model/update", post(crate::cluster::manage::update_model))
        .route("/model/delete", post(crate::cluster::manage::delete_model))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_key,
        ))
        // The inference handlers enforce the config's own, hot-reloadable limit.
        .layer(DefaultBodyLimit::disable());
    api.with_state(state)
}

/// A separate, unauthenticated router for probes and Prometheus (`--admin-port`).
pub fn admin(state: AppState) -> Router {
    Router::new()
        .route("/health/liveliness", get(health::liveliness))
        .route("/health/readiness", get(health::readiness))
        .route("/metrics", get(health::metrics))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> impl IntoResponse {
    ApiError::not_found(format!("Route {} does not exist on this proxy", uri.path()))
}
