//! Retries within a group: how many (`model_group_retry_policy` over `retry_policy` over
//! `num_retries`), how long to wait (nothing while another healthy deployment exists,
//! else `Retry-After` or capped exponential backoff), and broken connections retried on
//! another deployment.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::{call, chat, cooling, dep, header, post, send, state, upstream};
use modelgate_mock_upstream::{Reply, ReplyKind};
use std::time::{Duration, Instant};

#[tokio::test]
async fn model_group_retry_policy_beats_retry_policy_and_num_retries() {
    let g = upstream(Reply::error(500, "down").with_header("retry-after", "0.01")).await;
    let h = upstream(Reply::error(500, "down").with_header("retry-after", "0.01")).await;
    let s = state(&format!(
        "router_settings:\n  num_retries: 1\n  retry_policy: {{InternalServerErrorRetries: 0}}\n  model_group_retry_policy: {{g: {{InternalServerErrorRetries: 3}}}}\nmodel_list:\n{}{}",
        dep("g", "g", &g.url(), ""),
        dep("h", "h", &h.url(), "")
    ));
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 500);
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "3");
    assert_eq!(g.hits(), 4, "the group's policy: 3 retries for a 500");
    assert_eq!(send(&s, chat("h")).await.0, 500);
    assert_eq!(h.hits(), 1, "the router's policy: no retry for a 500");
    // A 503 is named by neither policy: num_retries (1) applies.
    g.reset();
    g.set_default(Reply::error(503, "unavailable").with_header("retry-after", "0.01"));
    assert_eq!(send(&s, chat("g")).await.0, 503);
    assert_eq!(g.hits(), 2);
}

#[tokio::test]
async fn retry_after_is_waited_for_only_when_no_other_deployment_is_healthy() {
    let limited = || Reply::error(429, "slow down").with_header("retry-after", "1");
    let a = upstream(Reply::ok()).await;
    let b = upstream(Reply::ok()).await;
    // Alone: the retry waits for the upstream's Retry-After.
    let alone = state(&format!("model_list:\n{}", dep("g", "a", &a.url(), "")));
    a.script([limited()]);
    let started = Instant::now();
    let r = call(&alone, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "1");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(950), "{waited:?}");

    // With a healthy second deployment (cooldowns off, so the retry lands on `a` again,
    // the preferred order): no wait at all.
    let pair = |settings: &str| {
        state(&format!(
            "router_settings: {{{settings}}}\nmodel_list:\n{}{}",
            dep("g", "a", &a.url(), ", order: 1"),
            dep("g", "b", &b.url(), ", order: 2")
        ))
    };
    let s = pair("disable_cooldowns: true");
    a.script([limited()]);
    let started = Instant::now();
    assert_eq!(send(&s, chat("g")).await, (200, "a".to_string()));
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(500), "{waited:?}");
    // With cooldowns on, `a` cools (for Retry-After) and the retry goes straight to `b`.
    let s = pair("num_retries: 2");
    a.script([limited()]);
    let started = Instant::now();
    assert_eq!(send(&s, chat("g")).await, (200, "b".to_string()));
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(500), "{waited:?}");
    assert_eq!(cooling(&s).await, ["a"]);
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn without_retry_after_a_lone_deployment_backs_off_exponentially() {
    let u = upstream(Reply::ok()).await;
    let s = state(&format!(
        "router_settings: {{num_retries: 2}}\nmodel_list:\n{}",
        dep("g", "only", &u.url(), "")
    ));
    u.script([Reply::error(500, "one"), Reply::error(500, "two")]);
    let started = Instant::now();
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    let waited = started.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "2");
    // 0.5 s then 1 s, each shortened by up to 25% of jitter: 1.125 s to 1.5 s.
    assert!(
        waited >= Duration::from_millis(1100) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );
    assert_eq!(u.hits(), 3);
}

#[tokio::test]
async fn a_reset_connection_is_retried_on_another_deployment() {
    let broken = upstream(Reply {
        kind: ReplyKind::Reset,
        ..Reply::default()
    })
    .await;
    let ok = upstream(Reply::ok()).await;
    let s = state(&format!(
        "model_list:\n{}{}",
        dep("g", "broken", &broken.url(), ", order: 1"),
        dep("g", "ok", &ok.url(), ", order: 2")
    ));
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "ok");
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "1");
    assert_eq!((broken.hits(), ok.hits()), (1, 1));
    // The broken deployment cools down (docs/compatibility.md), so it is not tried again.
    assert_eq!(cooling(&s).await, ["broken"]);
    assert_eq!(send(&s, chat("g")).await, (200, "ok".to_string()));
    assert_eq!(broken.hits(), 1);
}

#[tokio::test]
async fn a_404_is_not_retried_even_with_another_deployment() {
    let a = upstream(Reply::error(404, "no such model")).await;
    let b = upstream(Reply::error(404, "no such model")).await;
    let s = state(&format!(
        "router_settings: {{num_retries: 3, disable_cooldowns: true}}\nmodel_list:\n{}{}",
        dep("g", "a", &a.url(), ""),
        dep("g", "b", &b.url(), "")
    ));
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 404);
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "0");
    assert_eq!(a.hits() + b.hits(), 1, "one call, no retry");
}

#[tokio::test]
async fn a_deployments_num_retries_overrides_the_routers() {
    let u = upstream(Reply::error(500, "down").with_header("retry-after", "0.01")).await;
    let s = state(&format!(
        "router_settings: {{num_retries: 0}}\nmodel_list:\n{}",
        dep("g", "only", &u.url(), ", num_retries: 2")
    ));
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 500);
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "2");
    assert_eq!(u.hits(), 3);
}
