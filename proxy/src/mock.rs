//! `mock_response` (on a deployment or in the request): an answer made up locally instead of
//! an upstream call, as LiteLLM makes it, so examples and tests run with no network.
//! Special strings raise the error they name (`litellm.RateLimitError`, ...).

use crate::{error::ApiError, router::deployment::Endpoint};
use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a mock answers: a body, streamed or not, or an error.
pub enum MockAnswer {
    Json(Bytes),
    Sse(Bytes),
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The error a special mock string stands for, if it is one.
fn mock_error(text: &str) -> Option<ApiError> {
    let (status, kind, msg) = match text {
        "litellm.RateLimitError" => (
            StatusCode::TOO_MANY_REQUESTS,
            "throttling_error",
            "litellm.RateLimitError: mock rate limit",
        ),
        "litellm.InternalServerError" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "litellm.InternalServerError: mock internal server error",
        ),
        "litellm.ContextWindowExceededError" => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "litellm.ContextWindowExceededError: mock context window exceeded",
        ),
        t if t.starts_with("Exception: content_filter_policy") => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "litellm.ContentPolicyViolationError: mock content policy violation",
        ),
        _ => return None,
    };
    Some(ApiError::new(status, kind, msg))
}

/// Tokens a mock answer reports (LiteLLM's fixed usage), for the tpm counters.
pub fn usage_tokens(endpoint: Endpoint) -> u64 {
    match endpoint {
        Endpoint::Embeddings => 10,
        _ => 30,
    }
}

/// Answers a request from a mock value.
pub fn answer(
    mock: &Value,
    endpoint: Endpoint,
    model: &str,
    stream: bool,
) -> Result<MockAnswer, ApiError> {
    let content = match mock {
        Value::String(s) => {
            if let Some(err) = mock_error(s) {
                return Err(err);
            }
            s.clone()
        }
        // A whole response object is returned as given, with the model stamped in.
        Value::Object(_) => {
            let mut v = mock.clone();
            v["model"] = json!(model);
            return Ok(MockAnswer::Json(Bytes::from(v.to_string())));
        }
        other => other.to_string(),
    };
    let created = now();
    let usage = json!({"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30});
    let body = match endpoint {
        Endpoint::Embeddings => json!({"object": "list", "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3, 0.4]}],
            "usage": {"prompt_tokens": 10, "total_tokens": 10}}),
        Endpoint::Completions => json!({"id": "cmpl-mock", "object": "text_completion",
            "created": created, "model": model,
            "choices": [{"index": 0, "text": content, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage}),
        Endpoint::Chat if stream => {
            return Ok(MockAnswer::Sse(stream_chunks(&content, model, created)));
        }
        Endpoint::Chat => json!({"id": "chatcmpl-mock", "object": "chat.completion",
            "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": usage}),
    };
    Ok(MockAnswer::Json(Bytes::from(body.to_string())))
}

fn stream_chunks(content: &str, model: &str, created: u64) -> Bytes {
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                       "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut out = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    for word in content.split_inclusive(' ') {
        out.push_str(&chunk(json!({"content": word}), Value::Null));
    }
    out.push_str(&chunk(json!({}), json!("stop")));
    out.push_str("data: [DONE]\n\n");
    Bytes::from(out)
}
