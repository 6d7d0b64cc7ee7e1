//! Calling one deployment: the provider's URL, auth header and body, and the mapping of
//! what went wrong into the error a client sees (as LiteLLM maps it).

use crate::{
    error::ApiError,
    router::deployment::{Deployment, Endpoint, Provider},
};
use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Map, Value};
use std::time::Duration;

/// Request fields that steer the router and are never sent upstream.
const ROUTER_FIELDS: &[&str] = &[
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "num_retries",
    "timeout",
    "request_timeout",
    "stream_timeout",
    "disable_fallbacks",
    "mock_response",
    "mock_testing_fallbacks",
    "mock_testing_context_fallbacks",
    "mock_testing_content_policy_fallbacks",
    "mock_testing_rate_limit_error",
    "cooldown_time",
    "metadata",
    "tags",
    "allowed_model_region",
    "api_key",
    "api_base",
    "litellm_metadata",
];

/// Why an upstream call failed.
#[derive(Debug)]
pub enum UpstreamError {
    /// The upstream answered with an error status.
    Status {
        status: StatusCode,
        message: String,
        retry_after: Option<String>,
    },
    Timeout(Duration),
    Connection(String),
    /// The deployment cannot be called (unsupported provider, no api_base).
    Unusable(String),
}

impl UpstreamError {
    /// A short label for metrics.
    pub fn label(&self) -> String {
        match self {
            UpstreamError::Status { status, .. } => status.as_u16().to_string(),
            UpstreamError::Timeout(_) => "timeout".into(),
            UpstreamError::Connection(_) => "connection".into(),
            UpstreamError::Unusable(_) => "unusable".into(),
        }
    }

    /// The client-facing error, worded like LiteLLM's (`litellm.RateLimitError: ...`).
    pub fn to_api_error(&self, d: &Deployment) -> ApiError {
        let tag = match d.provider {
            Provider::Azure => "AzureException",
            _ => "OpenAIException",
        };
        match self {
            UpstreamError::Status {
                status,
                message,
                retry_after,
            } => {
                let (class, kind) = ApiError::class_for(*status);
                let mut e = ApiError::new(
                    *status,
                    kind,
                    format!("litellm.{class}: {class}: {tag} - {message}"),
                );
                if let Some(ra) = retry_after {
                    e = e.with_header("retry-after", ra);
                }
                e
            }
            UpstreamError::Timeout(t) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout_error",
                format!(
                    "litellm.Timeout: {tag} - request timed out after {:.3}s. model={}",
                    t.as_secs_f64(),
                    d.model
                ),
            ),
            UpstreamError::Connection(msg) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_connection_error",
                format!(
                    "litellm.APIConnectionError: {tag} - {msg}. model={}",
                    d.model
                ),
            ),
            UpstreamError::Unusable(msg) => ApiError::internal(msg.clone()),
        }
    }
}

/// Builds the upstream body: the client's fields without router fields, the deployment's
/// model, and the deployment's extra params where the client did not set them.
pub fn upstream_body(
    client: &Map<String, Value>,
    d: &Deployment,
    model: &str,
) -> Map<String, Value> {
    let mut body = Map::with_capacity(client.len() + d.passthrough.len());
    for (k, v) in client {
        if !ROUTER_FIELDS.contains(&k.as_str()) {
            body.insert(k.clone(), v.clone());
        }
    }
    body.insert("model".into(), Value::String(model.to_string()));
    for (k, v) in &d.passthrough {
        if k == "extra_body" {
            if let Value::Object(extra) = v {
                for (ek, ev) in extra {
                    body.entry(ek.clone()).or_insert_with(|| ev.clone());
                }
            }
        } else {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    body
}

/// Sends one request to a deployment and waits for the response head (not the body).
pub async fn send(
    http: &reqwest::Client,
    d: &Deployment,
    endpoint: Endpoint,
    upstream_model: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<reqwest::Response, UpstreamError> {
    if let Provider::Unsupported { name } = &d.provider {
        return Err(UpstreamError::Unusable(format!(
            "provider {name:?} (model {}) is not supported by modelgate yet",
            d.model
        )));
    }
    let url = d.url(endpoint, upstream_model).ok_or_else(|| {
        UpstreamError::Unusable(format!("deployment {} ({}) has no api_base", d.id, d.model))
    })?;
    let mut req = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(key) = &d.api_key {
        req = match d.provider {
            Provider::Azure => req.header("api-key", key.expose()),
            _ => req.bearer_auth(key.expose()),
        };
    }
    for (k, v) in &d.extra_headers {
        req = req.header(k, v);
    }
    let resp = match tokio::time::timeout(timeout, req.send()).await {
        Err(_) => return Err(UpstreamError::Timeout(timeout)),
        Ok(Err(e)) if e.is_timeout() => return Err(UpstreamError::Timeout(timeout)),
        Ok(Err(e)) => return Err(UpstreamError::Connection(connection_message(e))),
        Ok(Ok(r)) => r,
    };
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let text = match tokio::time::timeout(timeout, resp.bytes()).await {
        Ok(Ok(b)) => b,
        _ => Bytes::new(),
    };
    Err(UpstreamError::Status {
        status,
        message: error_message(&text),
        retry_after,
    })
}

/// The upstream's own error message, from an OpenAI envelope if it sent one.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let msg = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
            .map(String::from)
    });
    let msg = msg.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    // Upstream pages can be large HTML; a message only needs the gist.
    msg.chars().take(1000).collect()
}

/// A connection error without URLs (they may carry query-string credentials).
fn connection_message(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}
