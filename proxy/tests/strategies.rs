//! Routing strategies choosing among healthy deployments: latency-based with
//! `lowest_latency_buffer`, usage-based picking the least-used deployment, and a deployment
//! over its tpm limit for the minute being skipped.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::{call, chat, dep, error_message, post, send, state, upstream};
use modelgate_mock_upstream::Reply;
use modelgate_proxy::router::{live::minute_now, tokens};
use std::time::Duration;

/// Tokens the mock upstream reports for every chat answer (`usage.total_tokens`).
const TOKENS_PER_ANSWER: u64 = 15;

/// Usage counts per UTC minute: start a test early enough in a minute to finish in it.
async fn fresh_minute() {
    let (_, left) = minute_now();
    if left < Duration::from_secs(5) {
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn latency_routing_spreads_over_deployments_within_the_buffer() {
    let a = upstream(Reply::ok().with_latency(40)).await;
    let b = upstream(Reply::ok().with_latency(60)).await;
    let c = upstream(Reply::ok().with_latency(400)).await;
    // Within 300% of the fastest: `a` and `b` (60 < 4 x 40), never `c` (400 > 4 x 40).
    // The margins are wide because one slow sample (a busy machine) sticks: a deployment
    // outside the buffer is never called again, so never measured again.
    let s = state(&format!(
        "router_settings:\n  routing_strategy: latency-based-routing\n  routing_strategy_args: {{lowest_latency_buffer: 3.0}}\nmodel_list:\n{}{}{}",
        dep("g", "a", &a.url(), ""),
        dep("g", "b", &b.url(), ""),
        dep("g", "c", &c.url(), "")
    ));
    for _ in 0..30 {
        assert_eq!(send(&s, chat("g")).await.0, 200);
    }
    // Each deployment is tried once while unmeasured; then `c` is out of the buffer and
    // the other 27 calls are split at random between `a` and `b`: either getting fewer
    // than 4 of them has a chance of about 5e-5 (and with no buffer `b` would get none).
    assert_eq!(c.hits(), 1);
    assert!(
        a.hits() >= 5 && b.hits() >= 5,
        "a {} b {}",
        a.hits(),
        b.hits()
    );
    assert_eq!(a.hits() + b.hits(), 29);
}

#[tokio::test]
async fn usage_based_routing_picks_the_least_used_deployment() {
    fresh_minute().await;
    let a = upstream(Reply::ok()).await;
    let b = upstream(Reply::ok()).await;
    let s = state(&format!(
        "router_settings: {{routing_strategy: usage-based-routing}}\nmodel_list:\n{}{}",
        dep("g", "a", &a.url(), ""),
        dep("g", "b", &b.url(), "")
    ));
    // Three calls straight to `a` (by deployment id) use 45 tokens of its minute.
    for _ in 0..3 {
        assert_eq!(send(&s, chat("a")).await, (200, "a".to_string()));
    }
    // The group's next three calls all go to `b`, the less used (0, 15, 30 < 45 tokens).
    for i in 0..3 {
        assert_eq!(
            send(&s, chat("g")).await,
            (200, "b".to_string()),
            "call {i}"
        );
    }
    // From a tie, each call goes to whichever has used less: they take turns.
    for _ in 0..4 {
        assert_eq!(send(&s, chat("g")).await.0, 200);
    }
    assert_eq!((a.hits(), b.hits()), (5, 5));
}

#[tokio::test]
async fn a_deployment_over_its_tpm_limit_is_skipped() {
    fresh_minute().await;
    let a = upstream(Reply::ok()).await;
    let b = upstream(Reply::ok()).await;
    let body = chat("g");
    let input = tokens::count("openai/gpt-4o", body.as_object().unwrap());
    // `a` is preferred (order 1) and has room for exactly one answer this minute: after
    // it, the used tokens plus this request's input exceed the limit by one.
    let limit = TOKENS_PER_ANSWER + input - 1;
    let s = state(&format!(
        "router_settings: {{routing_strategy: usage-based-routing}}\nmodel_list:\n{}{}  - {{model_name: lone, litellm_params: {{model: openai/gpt-4o, api_base: '{}', api_key: k, tpm: {limit}}}, model_info: {{id: lone}}}}\n",
        dep("g", "a", &a.url(), &format!(", order: 1, tpm: {limit}")),
        dep("g", "b", &b.url(), ", order: 2, tpm: 1000000"),
        a.url()
    ));
    assert_eq!(send(&s, body.clone()).await, (200, "a".to_string()));
    for _ in 0..2 {
        assert_eq!(send(&s, body.clone()).await, (200, "b".to_string()));
    }
    assert_eq!(a.hits(), 1);
    // A lone deployment over its limit: nothing is left, so the client gets 429.
    assert_eq!(send(&s, chat("lone")).await.0, 200);
    let r = call(&s, post("/v1/chat/completions", chat("lone"))).await;
    assert_eq!(r.status(), 429);
    assert!(error_message(r).await.contains("rpm/tpm limit"));
    assert_eq!(a.hits(), 2);

    // One token more and `a` takes a second answer before giving way.
    let s = state(&format!(
        "router_settings: {{routing_strategy: usage-based-routing}}\nmodel_list:\n{}{}",
        dep(
            "g",
            "a",
            &a.url(),
            &format!(", order: 1, tpm: {}", limit + 1)
        ),
        dep("g", "b", &b.url(), ", order: 2, tpm: 1000000"),
    ));
    for expected in ["a", "a", "b"] {
        assert_eq!(send(&s, body.clone()).await, (200, expected.to_string()));
    }
}
