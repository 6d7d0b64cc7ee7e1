//! Fallback chains: a fallback group that fails follows its own fallbacks, recursively,
//! bounded in depth by `max_fallbacks`, never trying a group twice in one request.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::{
    body_bytes, call, chat, chat_stream, dep, error_message, header, post, state, upstream,
};
use modelgate_mock_upstream::{Reply, ReplyKind};
use serde_json::json;

/// `router_settings` with `extra`, then the given `model_list` entries.
fn config(extra: &str, deps: &[String]) -> String {
    format!("router_settings:\n{extra}model_list:\n{}", deps.concat())
}

#[tokio::test]
async fn a_fallback_groups_own_fallbacks_are_followed() {
    let a = upstream(Reply::error(500, "a down")).await;
    let b = upstream(Reply::error(500, "b down")).await;
    let c = upstream(Reply::ok()).await;
    let deps = [
        dep("a", "a", &a.url(), ""),
        dep("b", "b", &b.url(), ""),
        dep("c", "c", &c.url(), ""),
    ];
    let chain = "  fallbacks: [{a: [b]}, {b: [c]}]\n";
    let s = state(&config(&format!("  num_retries: 0\n{chain}"), &deps));
    let r = call(&s, post("/v1/chat/completions", chat("a"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "c");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "2");
    assert_eq!((a.hits(), b.hits(), c.hits()), (1, 1, 1));

    // Each group in the chain gets its own retries; the header counts the serving group's.
    let s = state(&config(&format!("  num_retries: 1\n{chain}"), &deps));
    let r = call(&s, post("/v1/chat/completions", chat("a"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "c");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "2");
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "0");
    assert_eq!((a.hits(), b.hits(), c.hits()), (3, 3, 2));
}

#[tokio::test]
async fn a_cycle_ends_with_the_original_error_without_looping() {
    let a = upstream(Reply::error(503, "a down")).await;
    let b = upstream(Reply::error(500, "b down")).await;
    let c = upstream(Reply::ok()).await;
    let deps = [
        dep("a", "a", &a.url(), ""),
        dep("b", "b", &b.url(), ""),
        dep("c", "c", &c.url(), ""),
    ];
    let s = state(&config(
        "  num_retries: 0\n  fallbacks: [{a: [b]}, {b: [a]}]\n",
        &deps,
    ));
    let r = call(&s, post("/v1/chat/completions", chat("a"))).await;
    assert_eq!(r.status(), 503, "a's own status");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "1");
    let msg = error_message(r).await;
    // a's error, then b's (with its own, empty-handed, fallback suffix) as the fallback error.
    let (original, fallback) = msg.split_once("Error doing the fallback: ").unwrap();
    assert!(original.contains("a down"), "{msg}");
    assert!(original.contains("Received Model Group=a"), "{msg}");
    assert!(fallback.contains("b down"), "{msg}");
    assert!(fallback.contains("Received Model Group=b"), "{msg}");
    assert_eq!((a.hits(), b.hits()), (1, 1), "each group is tried once");

    // A group already tried is skipped without using up depth: b goes on to c.
    let s = state(&config(
        "  num_retries: 0\n  max_fallbacks: 2\n  fallbacks: [{a: [b]}, {b: [a, c]}]\n",
        &deps,
    ));
    let r = call(&s, post("/v1/chat/completions", chat("a"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "c");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "2");
    assert_eq!((a.hits(), b.hits(), c.hits()), (2, 2, 1));
}

#[tokio::test]
async fn max_fallbacks_bounds_the_depth_of_a_chain() {
    let a = upstream(Reply::error(503, "a down")).await;
    let b = upstream(Reply::error(500, "b down")).await;
    let c = upstream(Reply::error(500, "c down")).await;
    let d = upstream(Reply::ok()).await;
    let yaml = |max: u32| {
        config(
            &format!(
                "  num_retries: 0\n  max_fallbacks: {max}\n  fallbacks: [{{a: [b]}}, {{b: [c]}}, {{c: [d]}}]\n"
            ),
            &[
                dep("a", "a", &a.url(), ""),
                dep("b", "b", &b.url(), ""),
                dep("c", "c", &c.url(), ""),
                dep("d", "d", &d.url(), ""),
            ],
        )
    };
    let r = call(&state(&yaml(2)), post("/v1/chat/completions", chat("a"))).await;
    assert_eq!(r.status(), 503, "a's own status");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "2");
    let msg = error_message(r).await;
    assert!(
        msg.contains("c down"),
        "the deepest error is reported: {msg}"
    );
    assert_eq!((a.hits(), b.hits(), c.hits(), d.hits()), (1, 1, 1, 0));

    let r = call(&state(&yaml(3)), post("/v1/chat/completions", chat("a"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "d");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "3");
    assert_eq!(d.hits(), 1);
}

#[tokio::test]
async fn a_context_window_error_in_a_fallback_follows_its_context_window_fallbacks() {
    let a = upstream(Reply::error(500, "a down")).await;
    let b = upstream(Reply::error(
        400,
        "This model's maximum context length is 16 tokens. However, your messages resulted in 60 tokens.",
    ))
    .await;
    let small = upstream(Reply::ok()).await;
    let big = upstream(Reply::ok()).await;
    let generic = upstream(Reply::ok()).await;
    let sized = |group: &str, base: &str, max: u32| {
        format!(
            "  - {{model_name: {group}, litellm_params: {{model: openai/gpt-4o, api_base: '{base}', api_key: k}}, model_info: {{id: {group}, max_input_tokens: {max}}}}}\n"
        )
    };
    let s = state(&config(
        "  fallbacks: [{a: [b]}, {b: [generic]}]\n  context_window_fallbacks: [{b: [small, big]}]\n",
        &[
            dep("a", "a", &a.url(), ""),
            dep("b", "b", &b.url(), ""),
            sized("small", &small.url(), 20),
            sized("big", &big.url(), 100_000),
            dep("generic", "generic", &generic.url(), ""),
        ],
    ));
    let mut long = chat("a");
    long["messages"] = json!([{"role": "user", "content": "word ".repeat(60)}]);
    long["num_retries"] = json!(0);
    let r = call(&s, post("/v1/chat/completions", long)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "big");
    // b (1), small skipped before sending (2), big (3).
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "3");
    assert_eq!(
        (a.hits(), b.hits(), small.hits(), big.hits(), generic.hits()),
        (1, 1, 0, 1, 0),
        "b's context-window fallbacks, not its generic ones; small is never called"
    );
}

#[tokio::test]
async fn a_streamed_chain_falls_back_only_before_the_first_byte() {
    let dies = |die_after| Reply {
        kind: match die_after {
            None => ReplyKind::StreamDiesAtOnce { delay_ms: 20 },
            Some(n) => ReplyKind::Stream {
                chunks: 5,
                chunk_delay_ms: 10,
                die_after: Some(n),
            },
        },
        ..Reply::default()
    };
    let a = upstream(dies(None)).await;
    let b = upstream(dies(None)).await;
    let c = upstream(Reply::ok()).await;
    let s = state(&config(
        "  num_retries: 0\n  fallbacks: [{a: [b]}, {b: [c]}]\n",
        &[
            dep("a", "a", &a.url(), ""),
            dep("b", "b", &b.url(), ""),
            dep("c", "c", &c.url(), ""),
        ],
    ));
    let r = call(&s, post("/v1/chat/completions", chat_stream("a"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "c");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "2");
    let text = String::from_utf8(body_bytes(r).await.to_vec()).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!((a.hits(), b.hits(), c.hits()), (1, 1, 1));

    // Once b has sent a chunk, its break is the client's: c is not called.
    b.set_default(dies(Some(1)));
    let r = call(&s, post("/v1/chat/completions", chat_stream("a"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "b");
    let text = String::from_utf8(body_bytes(r).await.to_vec()).unwrap();
    assert!(text.contains("\"error\""), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    assert_eq!((a.hits(), b.hits(), c.hits()), (2, 2, 1));
}
