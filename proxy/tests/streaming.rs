//! Server-sent events relayed chunk by chunk, with the requested model stamped in; a
//! stream that breaks ends with an error event.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;
use common::*;
use futures::StreamExt;
use modelgate_mock_upstream::{MockUpstream, Reply, ReplyKind};
use serde_json::json;
use std::time::{Duration, Instant};

fn stream_req(model: &str) -> serde_json::Value {
    json!({"model": model, "stream": true, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "hi"}]})
}

fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn chunks_arrive_as_the_upstream_sends_them() {
    let up = MockUpstream::start(Reply {
        kind: ReplyKind::Stream {
            chunks: 4,
            chunk_delay_ms: 150,
            die_after: None,
        },
        ..Reply::default()
    })
    .await
    .unwrap();
    let s = state(&alias_config(&up.url(), &up.url()));
    let started = Instant::now();
    let r = call(&s, post("/v1/chat/completions", stream_req("alias-1"))).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/event-stream"));
    assert_eq!(header(&r, "x-litellm-model-group"), "alias-1");
    let mut body = r.into_body().into_data_stream();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        arrivals.push(started.elapsed());
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    // 6 frames at 150 ms spacing: if the proxy buffered, they would all land at the end.
    assert!(arrivals.len() >= 5, "{arrivals:?}");
    assert!(
        arrivals[0] < Duration::from_millis(300),
        "first chunk late: {arrivals:?}"
    );
    assert!(*arrivals.last().unwrap() > Duration::from_millis(700));
    let evs = events(&text);
    assert_eq!(evs.last().unwrap(), "data: [DONE]");
    for ev in &evs[..evs.len() - 1] {
        let v: serde_json::Value =
            serde_json::from_str(ev.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(v["model"], "alias-1");
    }
}

#[tokio::test]
async fn a_stream_that_dies_ends_with_an_error_event() {
    let up = MockUpstream::start(Reply {
        kind: ReplyKind::Stream {
            chunks: 5,
            chunk_delay_ms: 10,
            die_after: Some(2),
        },
        ..Reply::default()
    })
    .await
    .unwrap();
    let s = state(&alias_config(&up.url(), &up.url()));
    let r = call(
        &s,
        post("/v1/chat/completions", stream_req("model-group-1")),
    )
    .await;
    assert_eq!(r.status(), 200);
    let text = String::from_utf8_lossy(&body_bytes(r).await).to_string();
    let evs = events(&text);
    let last = evs.last().unwrap();
    assert!(last.starts_with("data: {\"error\""), "{text}");
    assert!(!text.contains("[DONE]"));
    assert!(
        evs.len() >= 3,
        "the chunks before the break were relayed: {text}"
    );
}

#[tokio::test]
async fn an_upstream_that_answers_json_to_a_stream_request_is_converted() {
    let up = MockUpstream::start(Reply {
        kind: ReplyKind::Plain,
        ..Reply::default()
    })
    .await
    .unwrap();
    let s = state(&format!(
        "model_list: [{{model_name: j, litellm_params: {{model: openai/x, api_base: '{}'}}}}]",
        up.url()
    ));
    let r = call(&s, post("/v1/chat/completions", stream_req("j"))).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/event-stream"));
    let text = String::from_utf8_lossy(&body_bytes(r).await).to_string();
    assert!(text.contains("\"model\":\"j\""), "{text}");
    assert!(
        text.contains("Hello from the mock upstream."),
        "content kept: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn upstream_errors_before_the_first_chunk_set_the_status() {
    let up = MockUpstream::start(Reply::error(429, "slow down"))
        .await
        .unwrap();
    let s = state(&alias_config(&up.url(), &up.url()));
    let r = call(
        &s,
        post("/v1/chat/completions", stream_req("model-group-1")),
    )
    .await;
    assert_eq!(r.status(), 429);
    assert_eq!(json(r).await["error"]["code"], "429");
}

#[tokio::test]
async fn mock_deployments_stream_too() {
    let s = state(
        "model_list: [{model_name: demo, litellm_params: {model: openai/gpt-4o, mock_response: 'one two three'}}]",
    );
    let r = call(&s, post("/v1/chat/completions", stream_req("demo"))).await;
    let text = String::from_utf8_lossy(&body_bytes(r).await).to_string();
    assert!(text.contains("\"content\":\"three\""), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
}
