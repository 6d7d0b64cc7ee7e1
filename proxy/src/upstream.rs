//! Calling one deployment: the provider's URL, auth header and body, and the mapping of
//! what went wrong into the error a client sees (as LiteLLM maps it).

use crate::client::{self, Upstream};
use crate::{
    error::ApiError,
    router::deployment::{Deployment, Endpoint, Provider},
};
use axum::http::{Method, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::{Serialize, Serializer, ser::SerializeMap};
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

/// The upstream body: the client's fields without router fields, the deployment's
/// model, and the deployment's extra params where the client did not set them.
/// Serialised straight from the client's parsed body, so nothing is cloned per attempt.
pub fn upstream_body(client: &Map<String, Value>, d: &Deployment, model: &str) -> Bytes {
    let body = UpstreamBody { client, d, model };
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

struct UpstreamBody<'a> {
    client: &'a Map<String, Value>,
    d: &'a Deployment,
    model: &'a str,
}

impl<'a> Serialize for UpstreamBody<'a> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let forwarded = |k: &str| !ROUTER_FIELDS.contains(&k);
        let mut map = s.serialize_map(None)?;
        let mut model_written = false;
        for (k, v) in self.client {
            if k == "model" {
                map.serialize_entry("model", self.model)?;
                model_written = true;
            } else if forwarded(k) {
                map.serialize_entry(k, v)?;
            }
        }
        if !model_written {
            map.serialize_entry("model", self.model)?;
        }
        // Deployment params fill in what the client left out (`extra_body` spread out
        // first come, first served), as LiteLLM merges them.
        let mut written: Vec<&str> = Vec::new();
        let mut fill = |map: &mut S::SerializeMap, k: &'a str, v: &Value| {
            let taken = k == "model"
                || (forwarded(k) && self.client.contains_key(k))
                || written.contains(&k);
            if !taken {
                written.push(k);
                map.serialize_entry(k, v)?;
            }
            Ok(())
        };
        for (k, v) in &self.d.passthrough {
            match (k.as_str(), v) {
                ("extra_body", Value::Object(extra)) => {
                    for (ek, ev) in extra {
                        fill(&mut map, ek, ev)?;
                    }
                }
                ("extra_body", _) => {}
                _ => fill(&mut map, k, v)?,
            }
        }
        map.end()
    }
}

/// Sends one request to a deployment and waits for the response head (not the body).
pub async fn send(
    http: &Upstream,
    d: &Deployment,
    endpoint: Endpoint,
    upstream_model: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<Response<client::Body>, UpstreamError> {
    if let Provider::Unsupported { name } = &d.provider {
        return Err(UpstreamError::Unusable(format!(
            "provider {name:?} (model {}) is not supported by modelgate yet",
            d.model
        )));
    }
    let uri = d
        .wire
        .url(d, endpoint, upstream_model)
        .map_err(UpstreamError::Unusable)?;
    let mut req = Request::new(body);
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri;
    *req.headers_mut() = d.wire.request_headers.clone();
    let resp = match tokio::time::timeout(timeout, http.send(req)).await {
        Err(_) => return Err(UpstreamError::Timeout(timeout)),
        Ok(Err(e)) if is_timeout(&*e) => return Err(UpstreamError::Timeout(timeout)),
        Ok(Err(e)) => return Err(UpstreamError::Connection(client::describe(&*e))),
        Ok(Ok(r)) => r,
    };
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let text = match tokio::time::timeout(timeout, resp.into_body().collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        _ => Bytes::new(),
    };
    Err(UpstreamError::Status {
        status,
        message: error_message(&text),
        retry_after,
    })
}

/// Whether a client error is a timeout (connecting, say), which LiteLLM reports as
/// `litellm.Timeout` rather than a connection error.
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || err
                .downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_timeout)
        {
            return true;
        }
        cur = err.source();
    }
    false
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use modelgate_crds::config::DeploymentConfig;

    #[test]
    fn the_body_drops_router_fields_sets_the_model_and_fills_in_deployment_params() {
        let mut entry: DeploymentConfig = serde_yaml::from_str(
            "model_name: g\nlitellm_params: {model: openai/up, api_base: 'http://h', temperature: 0.1, seed: 7, extra_body: {top_k: 3, seed: 9, num_retries: 1}}",
        )
        .unwrap();
        entry.model_info.insert("id".into(), "d".into());
        let d = Deployment::build(&entry, &Catalog::default());
        let client: Map<String, Value> = serde_json::from_str(
            r#"{"model":"alias","messages":[],"num_retries":2,"temperature":0.5,"metadata":{"a":1}}"#,
        )
        .unwrap();
        let body = upstream_body(&client, &d, "up");
        // Key order: the client's (model in its place), then what the deployment adds.
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"model":"up","messages":[],"temperature":0.5,"seed":7,"top_k":3,"num_retries":1}"#
        );
        let bare: Map<String, Value> = serde_json::from_str(r#"{"input":"x"}"#).unwrap();
        let body: Value = serde_json::from_slice(&upstream_body(&bare, &d, "up")).unwrap();
        assert_eq!(body["model"], "up");
        assert_eq!(body["input"], "x");
    }
}
