//! Every error in OpenAI's envelope with the right status: auth, bad input, unknown model,
//! oversized bodies, and upstream failures mapped as LiteLLM maps them.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;
use axum::{body::Body, http::Request};
use common::*;
use modelgate_mock_upstream::{MockUpstream, Reply, ReplyKind};
use serde_json::json;

fn chat(model: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn assert_envelope(v: &serde_json::Value, status: u16) {
    let e = &v["error"];
    assert!(e["message"].is_string(), "{v}");
    assert!(e.get("type").is_some() && e.get("param").is_some(), "{v}");
    assert_eq!(e["code"], status.to_string(), "{v}");
}

#[tokio::test]
async fn auth_is_required_except_for_probes() {
    let s = state(&alias_config(
        "http://127.0.0.1:9/v1",
        "http://127.0.0.1:9/v1",
    ));
    let anon = |p: &str| Request::get(p).body(Body::empty()).unwrap();
    let r = call(&s, anon("/v1/models")).await;
    assert_eq!(r.status(), 401);
    assert_envelope(&json(r).await, 401);
    let bad = Request::get("/v1/models")
        .header("authorization", "Bearer sk-wrong")
        .body(Body::empty())
        .unwrap();
    let r = call(&s, bad).await;
    assert_eq!(r.status(), 401);
    assert_eq!(json(r).await["error"]["type"], "auth_error");
    let azure_style = Request::get("/v1/models")
        .header("api-key", KEY)
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&s, azure_style).await.status(), 200);
    for open in ["/health/liveliness", "/health/readiness"] {
        assert_eq!(call(&s, anon(open)).await.status(), 200, "{open}");
    }
    for closed in ["/health", "/model/info", "/model_group/info", "/metrics"] {
        assert_eq!(call(&s, anon(closed)).await.status(), 401, "{closed}");
    }
}

#[tokio::test]
async fn bad_requests() {
    let s = state(&alias_config(
        "http://127.0.0.1:9/v1",
        "http://127.0.0.1:9/v1",
    ));
    let r = call(&s, post("/chat/completions", chat("does-not-exist"))).await;
    assert_eq!(r.status(), 400);
    let v = json(r).await;
    assert_envelope(&v, 400);
    assert_eq!(
        v["error"]["message"],
        "/chat/completions: Invalid model name passed in model=does-not-exist. Call `/v1/models` to view available models for your key."
    );

    let r = call(&s, post("/v1/embeddings", json!({"input": "x"}))).await;
    assert_eq!(r.status(), 400);
    assert!(
        json(r).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/embeddings: Invalid model name passed in model=None")
    );

    let raw = Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::from("{\"model\":"))
        .unwrap();
    let r = call(&s, raw).await;
    assert_eq!(r.status(), 400);
    let v = json(r).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON payload"),
        "{v}"
    );
    assert_eq!(v["error"]["param"], "request_body");

    let r = call(&s, get("/no/such/route")).await;
    assert_eq!(r.status(), 404);
    assert_envelope(&json(r).await, 404);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let s = state(
        "general_settings: {max_request_size_mb: 0.001}\nmodel_list: [{model_name: m, litellm_params: {model: openai/x, mock_response: hi}}]",
    );
    let big = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(5000)}]});
    let r = call(&s, post("/v1/chat/completions", big.clone())).await;
    assert_eq!(r.status(), 413);
    assert_envelope(&json(r).await, 413);
    // Without a Content-Length (chunked), the limit still holds.
    let chunks = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(
        big.to_string(),
    ))]);
    let req = Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::from_stream(chunks))
        .unwrap();
    assert_eq!(call(&s, req).await.status(), 413);
}

#[tokio::test]
async fn upstream_errors_keep_their_status() {
    let up = MockUpstream::start(Reply::ok()).await.unwrap();
    // Retries are tested in routing.rs; here each error must reach the client as it is.
    let s = state(&format!(
        "router_settings: {{num_retries: 0, disable_cooldowns: true}}\nmodel_list: [{{model_name: g, litellm_params: {{model: openai/gpt-4o, api_base: '{}', api_key: sk-upstream-secret}}}}]",
        up.url()
    ));
    up.script([
        Reply::error(429, "Rate limit reached for requests (mock)").with_header("retry-after", "7"),
        Reply::error(500, "boom"),
        Reply::error(401, "Incorrect API key provided: sk-upstream-secret"),
        Reply {
            kind: ReplyKind::Error {
                status: 404,
                message: "no such model".into(),
                code: None,
            },
            ..Reply::default()
        },
    ]);
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), "7");
    let v = json(r).await;
    assert_envelope(&v, 429);
    assert_eq!(
        v["error"]["message"],
        "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for requests (mock)"
    );
    assert_eq!(
        call(&s, post("/v1/chat/completions", chat("g")))
            .await
            .status(),
        500
    );
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        call(&s, post("/v1/chat/completions", chat("g")))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn unreachable_and_slow_upstreams() {
    let s = state(
        "router_settings: {num_retries: 0}\nmodel_list: [{model_name: down, litellm_params: {model: openai/x, api_base: 'http://127.0.0.1:9/v1'}}]",
    );
    let r = call(&s, post("/v1/chat/completions", chat("down"))).await;
    assert_eq!(r.status(), 500);
    let v = json(r).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("litellm.APIConnectionError"),
        "{v}"
    );

    let up = MockUpstream::start(Reply::ok().with_latency(2000))
        .await
        .unwrap();
    let s = state(&format!(
        "router_settings: {{num_retries: 0}}\nmodel_list: [{{model_name: slow, litellm_params: {{model: openai/x, api_base: '{}', timeout: 0.2}}}}]",
        up.url()
    ));
    let started = std::time::Instant::now();
    let r = call(&s, post("/v1/chat/completions", chat("slow"))).await;
    assert_eq!(r.status(), 408);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    // The request's own timeout wins over the deployment's.
    let mut body = chat("slow");
    body["timeout"] = json!(0.05);
    let started = std::time::Instant::now();
    assert_eq!(
        call(&s, post("/v1/chat/completions", body)).await.status(),
        408
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(180));
}
