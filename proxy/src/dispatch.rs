//! One inference request from body to response: parse, resolve the model, pick a
//! deployment, call it (or its mock), and relay the answer with LiteLLM's headers.

use crate::{
    error::ApiError,
    metrics::{DeploymentLabels, UpstreamErrorLabels},
    mock::{self, MockAnswer},
    relay::{self, Usage},
    router::{
        Route, Snapshot,
        deployment::{Deployment, Endpoint},
        pattern, select,
    },
    state::AppState,
    upstream::{self, UpstreamError},
};
use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value};
use std::{sync::Arc, time::Duration, time::Instant};

/// An inference call as the HTTP layer hands it over.
pub struct Inference {
    /// The route family for messages and metrics (`/chat/completions`, ...).
    pub route: &'static str,
    pub endpoint: Endpoint,
    /// The model from the path (`/openai/deployments/{model}/...`), which wins over the body's.
    pub path_model: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub async fn handle(state: AppState, snap: Arc<Snapshot>, call: Inference) -> Response {
    let started = Instant::now();
    let (group, result) = run(&state, &snap, &call).await;
    let resp = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state.metrics.observe_request(
        call.route,
        &group,
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

/// Returns the metrics label for the model group with the outcome.
async fn run(
    state: &AppState,
    snap: &Snapshot,
    call: &Inference,
) -> (String, Result<Response, ApiError>) {
    let unknown = "unknown".to_string();
    let body: Map<String, Value> = match serde_json::from_slice(&call.body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            let e = ApiError::bad_request("Invalid JSON payload: the body must be a JSON object")
                .with_param("request_body");
            return (unknown, Err(e));
        }
        Err(e) => {
            let e = ApiError::bad_request(format!("Invalid JSON payload: {e}"))
                .with_param("request_body");
            return (unknown, Err(e));
        }
    };
    let requested = call
        .path_model
        .clone()
        .or_else(|| body.get("model").and_then(Value::as_str).map(String::from))
        .filter(|m| !m.is_empty());
    let Some(requested) = requested else {
        return (unknown, Err(ApiError::unknown_model(call.route, None)));
    };
    let Some(route) = snap.resolve(&requested) else {
        return (
            unknown,
            Err(ApiError::unknown_model(call.route, Some(&requested))),
        );
    };
    let group = route.requested.clone();
    let result = attempt(state, snap, call, &route, &body).await;
    (group, result)
}

async fn attempt(
    state: &AppState,
    snap: &Snapshot,
    call: &Inference,
    route: &Route,
    body: &Map<String, Value>,
) -> Result<Response, ApiError> {
    let candidates = select::lowest_order(&route.candidates);
    let d = select::shuffle(&candidates, &mut rand::rng()).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttling_error",
            format!(
                "No deployments available for selected model. Passed model={}",
                route.requested
            ),
        )
    })?;
    let stream = call.endpoint != Endpoint::Embeddings
        && body.get("stream").and_then(Value::as_bool) == Some(true);
    let headers = litellm_headers(d, &route.requested);

    if let Some(mock) = body.get("mock_response").or(d.mock_response.as_ref()) {
        let answer = mock::answer(mock, call.endpoint, &route.requested, stream)
            .map_err(|e| with_headers(e, &headers))?;
        return Ok(match answer {
            MockAnswer::Json(b) => {
                respond(StatusCode::OK, "application/json", headers, Body::from(b))
            }
            MockAnswer::Sse(b) => {
                respond(StatusCode::OK, "text/event-stream", headers, Body::from(b))
            }
        });
    }

    let full_model = match &route.captures {
        Some(caps) => pattern::substitute(&d.model, caps),
        None => d.model.clone(),
    };
    let upstream_model = full_model
        .split_once('/')
        .map_or(full_model.as_str(), |(_, m)| m);
    let timeout = effective_timeout(snap, d, &call.headers, body, stream);
    let payload = upstream::upstream_body(body, d, upstream_model);
    let payload = Bytes::from(serde_json::to_vec(&payload).unwrap_or_default());

    let labels = DeploymentLabels {
        model_group: route.requested.clone(),
        deployment: d.id.clone(),
    };
    let sent = Instant::now();
    let resp = upstream::send(
        &state.http,
        d,
        call.endpoint,
        upstream_model,
        payload,
        timeout,
    )
    .await;
    state
        .metrics
        .upstream_duration
        .get_or_create(&labels)
        .observe(sent.elapsed().as_secs_f64());
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return Err(upstream_failed(state, &labels, d, &e, &headers)),
    };
    let mut headers = headers;
    copy_rate_headers(resp.headers(), &mut headers);

    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if stream && is_sse {
        let idle = timeout;
        let metrics_state = state.clone();
        let on_end = move |usage: Usage, _complete: bool| {
            metrics_state.metrics.observe_tokens(
                &labels.model_group,
                &labels.deployment,
                usage.prompt,
                usage.completion,
            );
        };
        let upstream = resp
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other))
            .boxed();
        let relayed = relay::relay_sse(upstream, route.requested.clone(), idle, on_end);
        return Ok(respond(
            StatusCode::OK,
            "text/event-stream",
            headers,
            Body::from_stream(relayed),
        ));
    }

    let bytes = match tokio::time::timeout(timeout, resp.bytes()).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let e = UpstreamError::Connection(format!(
                "reading the response failed: {}",
                e.without_url()
            ));
            return Err(upstream_failed(state, &labels, d, &e, &headers));
        }
        Err(_) => {
            let e = UpstreamError::Timeout(timeout);
            return Err(upstream_failed(state, &labels, d, &e, &headers));
        }
    };
    let (out, usage, content_type) = if stream {
        let (b, u) = relay::completion_to_sse(&bytes, &route.requested);
        (b, u, "text/event-stream")
    } else {
        let (b, u) = relay::restamp_json(&bytes, &route.requested);
        (b, u, "application/json")
    };
    state.metrics.observe_tokens(
        &labels.model_group,
        &labels.deployment,
        usage.prompt,
        usage.completion,
    );
    Ok(respond(
        StatusCode::OK,
        content_type,
        headers,
        Body::from(out),
    ))
}

fn upstream_failed(
    state: &AppState,
    labels: &DeploymentLabels,
    d: &Deployment,
    e: &UpstreamError,
    headers: &HeaderMap,
) -> ApiError {
    state
        .metrics
        .upstream_errors
        .get_or_create(&UpstreamErrorLabels {
            model_group: labels.model_group.clone(),
            deployment: labels.deployment.clone(),
            error: e.label(),
        })
        .inc();
    tracing::warn!(deployment = %d.id, model = %d.model, error = ?e, "upstream call failed");
    with_headers(e.to_api_error(d), headers)
}

fn with_headers(mut e: ApiError, headers: &HeaderMap) -> ApiError {
    for (k, v) in headers {
        e.headers.push((k.clone(), v.clone()));
    }
    e
}

/// The effective timeout, LiteLLM's precedence: header or request > deployment > router.
fn effective_timeout(
    snap: &Snapshot,
    d: &Deployment,
    headers: &HeaderMap,
    body: &Map<String, Value>,
    stream: bool,
) -> Duration {
    let secs = |v: Option<&Value>| -> Option<Duration> {
        let v = v?;
        let f = v.as_f64().or_else(|| v.as_str()?.trim().parse().ok())?;
        (f > 0.0 && f.is_finite()).then(|| Duration::from_secs_f64(f))
    };
    let header_timeout = headers
        .get("x-litellm-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| *f > 0.0 && f.is_finite())
        .map(Duration::from_secs_f64);
    let plain = header_timeout
        .or_else(|| secs(body.get("timeout")))
        .or_else(|| secs(body.get("request_timeout")))
        .or(d.timeout)
        .unwrap_or(snap.settings.timeout);
    if !stream {
        return plain;
    }
    secs(body.get("stream_timeout"))
        .or(d.stream_timeout)
        .or(snap.settings.stream_timeout)
        .unwrap_or(plain)
}

fn litellm_headers(d: &Deployment, requested: &str) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(8);
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put("x-litellm-model-id", &d.id);
    put("x-litellm-model-group", requested);
    put("x-litellm-model-name", &d.model);
    if let Some(base) = &d.api_base {
        put(
            "x-litellm-model-api-base",
            base.split('?').next().unwrap_or(base),
        );
    }
    put("x-litellm-attempted-retries", "0");
    put("x-litellm-attempted-fallbacks", "0");
    put("x-litellm-call-id", &uuid::Uuid::new_v4().to_string());
    h
}

fn copy_rate_headers(from: &reqwest::header::HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        let name = k.as_str();
        if name.starts_with("x-ratelimit-") || name == "retry-after" {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                to.insert(k.clone(), v);
            }
        } else if name == "x-request-id"
            && let Ok(v) = HeaderValue::from_bytes(v.as_bytes())
        {
            to.insert("llm_provider-x-request-id", v);
        }
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == "text/event-stream" {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp.headers_mut()
            .insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    resp
}
