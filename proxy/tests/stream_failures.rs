//! Streams that fail: before the first byte reaches the client a failure is retried like
//! any other; after it, the stream ends with an OpenAI error event and nothing is retried.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::{body_bytes, call, chat_stream, cooling, dep, header, json, post, state, upstream};
use modelgate_mock_upstream::{Reply, ReplyKind};
use serde_json::Value;

fn dies_at_once() -> Reply {
    Reply {
        kind: ReplyKind::StreamDiesAtOnce { delay_ms: 30 },
        ..Reply::default()
    }
}

fn events(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .collect()
}

#[tokio::test]
async fn a_stream_that_dies_before_its_first_event_is_retried_on_another_deployment() {
    let dies = upstream(dies_at_once()).await;
    let ok = upstream(Reply::ok()).await;
    // `dies` is preferred (order 1), so the first attempt always goes there.
    let s = state(&format!(
        "model_list:\n{}{}",
        dep("g", "dies", &dies.url(), ", order: 1"),
        dep("g", "ok", &ok.url(), ", order: 2")
    ));
    let r = call(&s, post("/v1/chat/completions", chat_stream("g"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "ok");
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "1");
    let text = String::from_utf8(body_bytes(r).await.to_vec()).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(!text.contains("\"error\""), "{text}");
    assert_eq!((dies.hits(), ok.hits()), (1, 1));
    assert_eq!(cooling(&s).await, ["dies"]);
}

#[tokio::test]
async fn a_lone_stream_that_dies_before_its_first_event_is_an_error_status() {
    let dies = upstream(dies_at_once()).await;
    let s = state(&format!(
        "router_settings: {{num_retries: 0}}\nmodel_list:\n{}",
        dep("g", "dies", &dies.url(), "")
    ));
    let r = call(&s, post("/v1/chat/completions", chat_stream("g"))).await;
    // Nothing was sent yet, so the failure is the HTTP status, not an event in a 200.
    assert_eq!(r.status(), 500);
    assert!(header(&r, "content-type").starts_with("application/json"));
    let msg = json(r).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("APIConnectionError") && msg.contains("before its first chunk"),
        "{msg}"
    );
    assert_eq!(dies.hits(), 1);
}

#[tokio::test]
async fn a_stream_that_dies_after_its_first_event_ends_with_an_error_event_and_no_retry() {
    let dies = upstream(Reply {
        kind: ReplyKind::Stream {
            chunks: 5,
            chunk_delay_ms: 10,
            die_after: Some(1),
        },
        ..Reply::default()
    })
    .await;
    let ok = upstream(Reply::ok()).await;
    let backup = upstream(Reply::ok()).await;
    let s = state(&format!(
        "router_settings: {{num_retries: 3, fallbacks: [{{g: [backup]}}]}}\nmodel_list:\n{}{}{}",
        dep("g", "dies", &dies.url(), ", order: 1"),
        dep("g", "ok", &ok.url(), ", order: 2"),
        dep("backup", "backup", &backup.url(), "")
    ));
    let r = call(&s, post("/v1/chat/completions", chat_stream("g"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "dies");
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "0");
    let text = String::from_utf8(body_bytes(r).await.to_vec()).unwrap();
    assert!(!text.contains("[DONE]"), "{text}");
    let evs = events(&text);
    // The role chunk and the first content chunk, then the error event.
    assert!(evs.len() >= 3, "{text}");
    assert!(text.contains("tok0"), "{text}");
    let last: Value = serde_json::from_str(evs.last().unwrap().strip_prefix("data: ").unwrap())
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MidStreamFallbackError"),
        "{last}"
    );
    assert_eq!(last["error"]["code"], "503");
    // Neither a retry in the group nor a fallback: the client already has part of an answer.
    assert_eq!((dies.hits(), ok.hits(), backup.hits()), (1, 0, 0));
}
