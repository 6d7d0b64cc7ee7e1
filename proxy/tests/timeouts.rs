//! Which timeout applies to a call: the `x-litellm-timeout` request header over the
//! deployment's and the router's `timeout`; for streams, the deployment's `stream_timeout`
//! over the router's. A timeout is a 408.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use axum::{body::Body, http::Request};
use common::{KEY, call, chat, chat_stream, dep, send, state, upstream};
use modelgate_mock_upstream::Reply;
use modelgate_proxy::AppState;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The upstream answers after this long; the short timeouts below are well under it.
const LATENCY_MS: u64 = 600;
const QUICK: Duration = Duration::from_millis(450);

fn with_timeout_header(body: &Value, secs: &str) -> Request<Body> {
    Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .header("x-litellm-timeout", secs)
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// Sends `body`; returns the status and how long it took.
async fn timed(s: &AppState, body: Value) -> (u16, Duration) {
    let started = Instant::now();
    let (status, _) = send(s, body).await;
    (status, started.elapsed())
}

#[tokio::test]
async fn the_x_litellm_timeout_header_overrides_the_configured_timeouts() {
    let u = upstream(Reply::ok().with_latency(LATENCY_MS)).await;
    let s = state(&format!(
        "router_settings: {{timeout: 30, num_retries: 0}}\nmodel_list:\n{}",
        dep("g", "only", &u.url(), ", timeout: 5")
    ));
    let started = Instant::now();
    let r = call(&s, with_timeout_header(&chat("g"), "0.15")).await;
    assert_eq!(r.status(), 408);
    assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
    let msg = common::error_message(r).await;
    assert!(msg.contains("litellm.Timeout"), "{msg}");
    // Without the header the deployment's 5 s apply, and the answer arrives.
    let (status, took) = timed(&s, chat("g")).await;
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(LATENCY_MS), "{took:?}");
    // A header that is not a positive number is ignored.
    let r = call(&s, with_timeout_header(&chat("g"), "soon")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(u.hits(), 3);
}

#[tokio::test]
async fn the_routers_stream_timeout_applies_to_streams_only() {
    let u = upstream(Reply::ok().with_latency(LATENCY_MS)).await;
    let s = state(&format!(
        "router_settings: {{timeout: 30, stream_timeout: 0.15, num_retries: 0}}\nmodel_list:\n{}{}",
        dep("g", "g", &u.url(), ""),
        dep("patient", "patient", &u.url(), ", stream_timeout: 5")
    ));
    let (status, took) = timed(&s, chat_stream("g")).await;
    assert_eq!(status, 408);
    assert!(took < QUICK, "{took:?}");
    let (non_stream, stream_patient) =
        tokio::join!(timed(&s, chat("g")), timed(&s, chat_stream("patient")));
    assert_eq!(non_stream.0, 200, "a non-streaming call uses `timeout`");
    assert_eq!(
        stream_patient.0, 200,
        "the deployment's stream_timeout wins over the router's"
    );
}

#[tokio::test]
async fn a_deployments_stream_timeout_applies_to_its_streams() {
    let u = upstream(Reply::ok().with_latency(LATENCY_MS)).await;
    let s = state(&format!(
        "router_settings: {{timeout: 30, num_retries: 0}}\nmodel_list:\n{}",
        dep("g", "g", &u.url(), ", stream_timeout: 0.15")
    ));
    let (status, took) = timed(&s, chat_stream("g")).await;
    assert_eq!(status, 408);
    assert!(took < QUICK, "{took:?}");
    assert_eq!(timed(&s, chat("g")).await.0, 200);
}
