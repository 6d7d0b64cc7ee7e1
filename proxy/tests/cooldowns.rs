//! Which failures cool a deployment down and for how long: only 429, 401, 404, 408, 5xx,
//! timeouts and broken connections qualify; per-deployment and router `cooldown_time`
//! (0 = never); `allowed_fails` and `allowed_fails_policy` (the counting rule).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::{
    body_bytes, call, chat, cooling, dep, error_message, get, post, send, state, upstream,
};
use modelgate_mock_upstream::Reply;
use std::time::Duration;

#[tokio::test]
async fn other_4xx_and_3xx_never_cool_a_lone_deployment() {
    let u = upstream(Reply::ok()).await;
    let s = state(&format!(
        "router_settings: {{num_retries: 0}}\nmodel_list:\n{}",
        dep("g", "only", &u.url(), "")
    ));
    for status in [302, 400, 403, 405, 409, 410, 415, 422] {
        u.reset();
        u.script([Reply::error(status, "not the deployment's fault")]);
        let (got, _) = send(&s, chat("g")).await;
        assert_eq!(got, status);
        assert!(cooling(&s).await.is_empty(), "{status} cooled it down");
        // Still routable: the next request reaches the upstream.
        assert_eq!(send(&s, chat("g")).await, (200, "only".to_string()));
        assert_eq!(u.hits(), 2, "{status}");
    }
}

#[tokio::test]
async fn other_4xx_never_cool_a_deployment_of_a_busy_group() {
    // `a` is preferred (order 1); a 409 must leave it in place, although as the only call
    // of the minute it is a 100% failure rate (which would cool it for a 5xx).
    let a = upstream(Reply::ok()).await;
    let b = upstream(Reply::ok()).await;
    let s = state(&format!(
        "router_settings: {{num_retries: 0}}\nmodel_list:\n{}{}",
        dep("g", "a", &a.url(), ", order: 1"),
        dep("g", "b", &b.url(), ", order: 2")
    ));
    for status in [405, 409, 410, 415] {
        a.script([Reply::error(status, "conflict")]);
        assert_eq!(send(&s, chat("g")).await, (status, "a".to_string()));
        assert!(cooling(&s).await.is_empty(), "{status} cooled it down");
        assert_eq!(send(&s, chat("g")).await, (200, "a".to_string()));
    }
    assert_eq!(b.hits(), 0);
    // A 500 does cool it, and the next request goes to `b` (fresh failure counters).
    let s = state(&format!(
        "router_settings: {{num_retries: 0}}\nmodel_list:\n{}{}",
        dep("g", "a", &a.url(), ", order: 1"),
        dep("g", "b", &b.url(), ", order: 2")
    ));
    a.script([Reply::error(500, "boom")]);
    assert_eq!(send(&s, chat("g")).await, (500, "a".to_string()));
    assert_eq!(cooling(&s).await, ["a"]);
    assert_eq!(send(&s, chat("g")).await, (200, "b".to_string()));
}

#[tokio::test]
async fn a_deployments_cooldown_time_overrides_the_routers() {
    let a = upstream(Reply::error(500, "down")).await;
    let b = upstream(Reply::ok()).await;
    let s = state(&format!(
        "router_settings: {{cooldown_time: 30}}\nmodel_list:\n{}{}",
        dep("g", "a", &a.url(), ", order: 1, cooldown_time: 0.3"),
        dep("g", "b", &b.url(), ", order: 2")
    ));
    assert_eq!(send(&s, chat("g")).await, (200, "b".to_string()));
    let v = common::json(call(&s, get("/router/cooldowns")).await).await;
    assert_eq!(v["data"][0]["model_id"], "a");
    assert!(v["data"][0]["remaining_seconds"].as_f64().unwrap() <= 0.3);
    assert_eq!(send(&s, chat("g")).await, (200, "b".to_string()));
    assert_eq!(a.hits(), 1, "cooling down");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // 0.3 s later `a` is back (the router's 30 s would still hold it).
    assert_eq!(send(&s, chat("g")).await, (200, "b".to_string()));
    assert_eq!(a.hits(), 2);
}

#[tokio::test]
async fn cooldown_time_zero_never_cools_down() {
    let a = upstream(Reply::error(500, "down")).await;
    let b = upstream(Reply::ok()).await;
    let deployment_level = format!(
        "router_settings: {{num_retries: 0}}\nmodel_list:\n{}{}",
        dep("g", "a", &a.url(), ", order: 1, cooldown_time: 0"),
        dep("g", "b", &b.url(), ", order: 2")
    );
    let router_level = format!(
        "router_settings: {{cooldown_time: 0, num_retries: 0}}\nmodel_list:\n{}{}",
        dep("g", "a", &a.url(), ", order: 1"),
        dep("g", "b", &b.url(), ", order: 2")
    );
    for yaml in [deployment_level, router_level] {
        a.reset();
        let s = state(&yaml);
        for _ in 0..3 {
            // `a` fails every time and is never skipped (cooled, it would give way to `b`).
            assert_eq!(send(&s, chat("g")).await, (500, "a".to_string()));
        }
        assert_eq!(a.hits(), 3, "{yaml}");
        assert_eq!(b.hits(), 0);
        assert!(cooling(&s).await.is_empty());
    }
}

#[tokio::test]
async fn allowed_fails_counts_failures_even_for_a_lone_deployment() {
    let u = upstream(Reply::error(500, "down")).await;
    let s = state(&format!(
        "router_settings: {{allowed_fails: 1, num_retries: 0}}\nmodel_list:\n{}",
        dep("g", "only", &u.url(), "")
    ));
    // v1 rule: more than `allowed_fails` failures in the cooldown window cool it down,
    // even alone (where the default rule never cools a lone deployment for a 5xx).
    assert_eq!(send(&s, chat("g")).await.0, 500);
    assert_eq!(send(&s, chat("g")).await.0, 500);
    assert_eq!(send(&s, chat("g")).await.0, 429);
    assert_eq!(u.hits(), 2);
    let m = body_bytes(call(&s, get("/metrics")).await).await;
    let m = String::from_utf8_lossy(&m);
    assert!(m.contains("modelgate_deployments_cooling_down 1"), "{m}");
}

#[tokio::test]
async fn allowed_fails_policy_sets_the_count_per_error_type() {
    let five = upstream(Reply::error(500, "down")).await;
    let auth = upstream(Reply::error(401, "bad key")).await;
    let s = state(&format!(
        "router_settings:\n  num_retries: 0\n  cooldown_time: 30\n  allowed_fails_policy: {{InternalServerErrorAllowedFails: 2}}\nmodel_list:\n{}{}",
        dep("five", "five", &five.url(), ""),
        dep("auth", "auth", &auth.url(), "")
    ));
    // 500s: the policy allows 2, the third cools the deployment (alone in its group).
    for _ in 0..3 {
        assert_eq!(send(&s, chat("five")).await.0, 500);
    }
    let r = call(&s, post("/v1/chat/completions", chat("five"))).await;
    assert_eq!(r.status(), 429);
    assert!(error_message(r).await.contains("No deployments available"));
    assert_eq!(five.hits(), 3);
    // 401s are not in the policy: `allowed_fails` (3) applies, so the fourth cools it
    // (without a policy, the default rule would cool it on the first 401).
    for _ in 0..4 {
        assert_eq!(send(&s, chat("auth")).await.0, 401);
    }
    assert_eq!(send(&s, chat("auth")).await.0, 429);
    assert_eq!(auth.hits(), 4);
    let mut ids = cooling(&s).await;
    ids.sort();
    assert_eq!(ids, ["auth", "five"]);
}
