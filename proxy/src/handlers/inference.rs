//! `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and their aliases: read the
//! body within the size limit, then hand over to [`crate::dispatch`].

use super::snapshot;
use crate::{
    dispatch::{self, Inference},
    error::ApiError,
    router::deployment::Endpoint,
    state::AppState,
};
use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use http_body_util::{BodyExt, LengthLimitError, Limited};

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        format!("Request body is too large: the limit is {limit} bytes (general_settings.max_request_size_mb)"),
    )
    .with_param("request_body")
}

async fn serve(
    state: AppState,
    route: &'static str,
    endpoint: Endpoint,
    path_model: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let snap = match snapshot(&state) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let limit = snap.settings.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return too_large(limit).into_response();
    }
    let body = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(limit).into_response();
        }
        Err(e) => {
            return ApiError::bad_request(format!("could not read the request body: {e}"))
                .into_response();
        }
    };
    let call = Inference {
        route,
        endpoint,
        path_model,
        headers,
        body,
    };
    dispatch::handle(state, snap, call).await
}

macro_rules! endpoint {
    ($plain:ident, $with_model:ident, $route:literal, $endpoint:expr) => {
        pub async fn $plain(
            State(state): State<AppState>,
            headers: HeaderMap,
            body: Body,
        ) -> Response {
            serve(state, $route, $endpoint, None, headers, body).await
        }

        pub async fn $with_model(
            State(state): State<AppState>,
            Path(model): Path<String>,
            headers: HeaderMap,
            body: Body,
        ) -> Response {
            serve(state, $route, $endpoint, Some(model), headers, body).await
        }
    };
}

endpoint!(chat, chat_for_model, "/chat/completions", Endpoint::Chat);
endpoint!(
    completions,
    completions_for_model,
    "/completions",
    Endpoint::Completions
);
endpoint!(
    embeddings,
    embeddings_for_model,
    "/embeddings",
    Endpoint::Embeddings
);
