//! One call to one deployment (or its mock): build the upstream request, send it within the
//! effective timeout, and turn the answer into a response or a classified [`Failure`]. For
//! streams, the first chunk is awaited before answering, so a stream that fails before any
//! byte reaches the client can still be retried or fall back.

use crate::{
    error::ApiError,
    mock::{self, MockAnswer},
    relay::{self, ByteStream, Usage},
    router::{
        Route, Snapshot,
        deployment::{Deployment, Endpoint},
        failure::{ErrorClass, Failure, parse_retry_after},
        pattern,
    },
    state::AppState,
    upstream::{self, UpstreamError},
};
use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use futures::{StreamExt, stream};
use http_body_util::BodyExt;
use serde_json::{Map, Value};
use std::{sync::Arc, time::Duration, time::Instant};

/// The parts of a request every attempt shares.
pub struct Call<'a> {
    pub endpoint: Endpoint,
    pub headers: &'a HeaderMap,
    pub body: &'a Map<String, Value>,
    pub stream: bool,
}

/// Calls `d` once. Success and failure are recorded in the router's live state.
pub async fn call_deployment(
    state: &AppState,
    snap: &Snapshot,
    call: &Call<'_>,
    route: &Route,
    d: &Arc<Deployment>,
    timeout: Duration,
) -> Result<Response, Failure> {
    let headers = crate::dispatch::litellm_headers(d, &route.requested);
    let fail = |class: ErrorClass, mut e: ApiError, retry_after: Option<Duration>| {
        for (k, v) in &headers {
            e.headers.push((k.clone(), v.clone()));
        }
        Failure {
            class,
            error: e,
            retry_after,
            deployment: Some(d.id.clone()),
        }
    };

    if let Some(mock) = call.body.get("mock_response").or(d.mock_response.as_ref()) {
        let answer = mock::answer(mock, call.endpoint, &route.requested, call.stream)
            .map_err(|e| fail(ErrorClass::classify(e.status, &e.message), e, None))?;
        state.live.record_success(&d.id);
        state.add_tokens(&d.id, mock::usage_tokens(call.endpoint));
        return Ok(match answer {
            MockAnswer::Json(b) => respond(
                StatusCode::OK,
                "application/json",
                headers.clone(),
                Body::from(b),
            ),
            MockAnswer::Sse(b) => respond(
                StatusCode::OK,
                "text/event-stream",
                headers.clone(),
                Body::from(b),
            ),
        });
    }

    let full_model = match &route.captures {
        Some(caps) => pattern::substitute(&d.model, caps),
        None => d.model.clone(),
    };
    let upstream_model = full_model
        .split_once('/')
        .map_or(full_model.as_str(), |(_, m)| m);
    let payload = upstream::upstream_body(call.body, d, upstream_model);
    let series = state.metrics.series(d);
    let in_flight = state.live.begin(&d.id);
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
    series
        .upstream_duration
        .observe(sent.elapsed().as_secs_f64());
    let failed = |e: UpstreamError| -> Failure {
        state
            .metrics
            .upstream_error(&d.model_name, &d.id, e.label());
        tracing::warn!(deployment = %d.id, model = %d.model, error = ?e, "upstream call failed");
        let (class, retry_after) = match &e {
            UpstreamError::Status {
                status,
                message,
                retry_after,
            } => (
                ErrorClass::classify(*status, message),
                parse_retry_after(retry_after.as_deref()),
            ),
            UpstreamError::Timeout(_) => (ErrorClass::Timeout, None),
            UpstreamError::Connection(_) => (ErrorClass::Connection, None),
            // The client sees a 500; a deployment that cannot be called is cooled like one.
            UpstreamError::Unusable(_) => (ErrorClass::InternalServer, None),
        };
        if class == ErrorClass::Timeout {
            // LiteLLM's latency penalty for a timeout.
            state
                .live
                .record_latency(&d.id, 1000.0, None, snap.settings.policy.latency_window);
        }
        fail(class, e.to_api_error(d), retry_after)
    };
    let resp = resp.map_err(failed)?;
    let mut headers = headers.clone();
    copy_rate_headers(resp.headers(), &mut headers);
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));

    if call.stream && is_sse {
        let mut upstream = resp
            .into_body()
            .into_data_stream()
            .map(|r| r.map_err(std::io::Error::other))
            .boxed();
        // Wait for the first chunk: until it arrives, a failure can still be retried.
        let first = match tokio::time::timeout(timeout, upstream.next()).await {
            Ok(Some(Ok(b))) => b,
            Ok(Some(Err(e))) => {
                return Err(failed(UpstreamError::Connection(format!(
                    "the stream failed before its first chunk: {e}"
                ))));
            }
            Ok(None) => {
                return Err(failed(UpstreamError::Connection(
                    "the stream ended before its first chunk".into(),
                )));
            }
            Err(_) => return Err(failed(UpstreamError::Timeout(timeout))),
        };
        let ttft = sent.elapsed().as_secs_f64();
        let upstream: ByteStream = stream::iter([Ok(first)]).chain(upstream).boxed();
        let live_state = state.clone();
        let id = d.id.clone();
        let d_for_end = Arc::clone(d);
        let window = snap.settings.policy.latency_window;
        let on_end = move |usage: Usage, complete: bool| {
            let _in_flight = in_flight;
            live_state
                .metrics
                .series(&d_for_end)
                .observe_tokens(usage.prompt, usage.completion);
            live_state.add_tokens(&id, usage.prompt + usage.completion);
            if complete {
                live_state.live.record_success(&id);
                let per_token = |s: f64| s / usage.completion.max(1) as f64;
                live_state.live.record_latency(
                    &id,
                    per_token(sent.elapsed().as_secs_f64()),
                    Some(per_token(ttft)),
                    window,
                );
            }
        };
        let relayed = relay::relay_sse(upstream, route.requested.clone(), timeout, on_end);
        return Ok(respond(
            StatusCode::OK,
            "text/event-stream",
            headers,
            Body::from_stream(relayed),
        ));
    }

    let bytes = match tokio::time::timeout(timeout, resp.into_body().collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            return Err(failed(UpstreamError::Connection(format!(
                "reading the response failed: {}",
                crate::client::describe(&*e)
            ))));
        }
        Err(_) => return Err(failed(UpstreamError::Timeout(timeout))),
    };
    drop(in_flight);
    let (out, usage, content_type) = if call.stream {
        let (b, u) = relay::completion_to_sse(&bytes, &route.requested);
        (b, u, "text/event-stream")
    } else {
        let (b, u) = relay::restamp_json(&bytes, &route.requested);
        (b, u, "application/json")
    };
    series.observe_tokens(usage.prompt, usage.completion);
    state.add_tokens(&d.id, usage.prompt + usage.completion);
    state.live.record_success(&d.id);
    let secs = sent.elapsed().as_secs_f64();
    state.live.record_latency(
        &d.id,
        secs / usage.completion.max(1) as f64,
        None,
        snap.settings.policy.latency_window,
    );
    Ok(respond(
        StatusCode::OK,
        content_type,
        headers,
        Body::from(out),
    ))
}

fn copy_rate_headers(from: &HeaderMap, to: &mut HeaderMap) {
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

pub fn respond(
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
