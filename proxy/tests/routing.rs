//! The router under injected faults: retries, cooldowns, fallbacks, limits, strategies,
//! timeouts and pre-call checks, against real mock upstreams on 127.0.0.1. Each test
//! asserts what the client sees and how many calls each upstream got.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::{call, get, header, json, post, state};
use modelgate_mock_upstream::{MockUpstream, Reply};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

async fn up(reply: Reply) -> MockUpstream {
    MockUpstream::start(reply).await.unwrap()
}

fn dep(group: &str, id: &str, base: &str, extra: &str) -> String {
    format!(
        "  - {{model_name: {group}, litellm_params: {{model: openai/gpt-4o, api_base: '{base}', api_key: sk-x{extra}}}, model_info: {{id: {id}}}}}\n"
    )
}

#[tokio::test]
async fn a_retry_moves_to_another_deployment_and_the_failed_one_cools_down() {
    let bad = up(Reply::error(500, "upstream exploded")).await;
    let good = up(Reply::ok()).await;
    let s = state(&format!(
        "model_list:\n{}{}",
        dep("g", "bad", &bad.url(), ""),
        dep("g", "good", &good.url(), "")
    ));
    let mut retried = 0;
    for _ in 0..40 {
        let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-litellm-model-id"), "good");
        if header(&r, "x-litellm-attempted-retries") == "1" {
            retried += 1;
        }
    }
    // The first failure of a deployment in a busy group cools it down (failure rate > 50%),
    // so the bad one is called once (the chance it was never picked first is 2^-40).
    assert_eq!(bad.hits(), 1);
    assert_eq!(retried, 1);
    assert_eq!(good.hits(), 40);
    let v = json(call(&s, get("/router/cooldowns")).await).await;
    assert_eq!(v["data"][0]["model_id"], "bad");
    assert_eq!(v["data"][0]["status_code"], 500);
    assert!(v["data"][0]["remaining_seconds"].as_f64().unwrap() > 3.0);
    let m = String::from_utf8(
        common::body_bytes(call(&s, get("/metrics")).await)
            .await
            .to_vec(),
    )
    .unwrap();
    assert!(
        m.contains("modelgate_deployment_cooldowns_total{model_group=\"g\",deployment=\"bad\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn a_lone_deployment_is_retried_after_retry_after_and_never_cooled_for_5xx() {
    let u = up(Reply::ok()).await;
    let s = state(&format!("model_list:\n{}", dep("g", "only", &u.url(), "")));
    // 429 with Retry-After 1: the lone deployment is retried after a second, not cooled.
    u.script([Reply::error(429, "slow down").with_header("retry-after", "1")]);
    let started = Instant::now();
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "1");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    // Three 500s (first try + 2 retries): the client gets the first error; still not cooled.
    u.reset();
    u.script([
        Reply::error(500, "first").with_header("retry-after", "0.05"),
        Reply::error(500, "second").with_header("retry-after", "0.05"),
        Reply::error(500, "third").with_header("retry-after", "0.05"),
    ]);
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 500);
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "2");
    assert!(
        json(r).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("first")
    );
    assert_eq!(u.hits(), 3);
    assert_eq!(
        call(&s, post("/v1/chat/completions", chat("g")))
            .await
            .status(),
        200
    );
    // 404 (not being transient) cools even a lone deployment. That it is never retried is
    // checked with two deployments in retries.rs, where a retry would have somewhere to go.
    u.reset();
    u.script([Reply::error(404, "no such model")]);
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 404);
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 429);
    assert!(header(&r, "retry-after").parse::<u64>().unwrap() >= 1);
    assert!(
        json(r).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("No deployments available")
    );
}

#[tokio::test]
async fn retry_policies_and_request_retries() {
    let u = up(Reply::error(429, "limited").with_header("retry-after", "0.01")).await;
    let s = state(&format!(
        "router_settings:\n  retry_policy: {{RateLimitErrorRetries: 4}}\n  disable_cooldowns: true\nmodel_list:\n{}",
        dep("g", "only", &u.url(), "")
    ));
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 429);
    assert_eq!(u.hits(), 5, "the policy's 4 retries for rate limits");
    u.reset();
    let mut body = chat("g");
    body["num_retries"] = json!(0);
    // The policy names the count per error type, so it wins over the request's num_retries.
    call(&s, post("/v1/chat/completions", body)).await;
    assert_eq!(u.hits(), 5);
}

#[tokio::test]
async fn everything_cooling_down_gives_429_with_retry_after() {
    let a = up(Reply::error(429, "busy").with_header("retry-after", "3")).await;
    let b = up(Reply::error(429, "busy").with_header("retry-after", "3")).await;
    let s = state(&format!(
        "model_list:\n{}{}",
        dep("g", "a", &a.url(), ""),
        dep("g", "b", &b.url(), "")
    ));
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 429);
    assert_eq!(
        a.hits() + b.hits(),
        2,
        "each deployment once, then none is left"
    );
    let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
    assert_eq!(r.status(), 429);
    let secs: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=3).contains(&secs), "{secs}");
    let msg = json(r).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("cooldown_list") && msg.contains("\"a\"") && msg.contains("\"b\""),
        "{msg}"
    );
    assert_eq!(a.hits() + b.hits(), 2, "cooled deployments are not called");
}

#[tokio::test]
async fn fallbacks_run_in_order_and_total_failure_keeps_the_original_status() {
    let primary = up(Reply::error(503, "primary down")).await;
    let broken = up(Reply::error(500, "backup one down")).await;
    let backup = up(Reply::ok()).await;
    let yaml = |fallback_ok: bool| {
        format!(
            "router_settings:\n  num_retries: 0\n  fallbacks: [{{primary: [missing, backup1, backup2]}}]\nmodel_list:\n{}{}{}",
            dep("primary", "p", &primary.url(), ""),
            dep("backup1", "b1", &broken.url(), ""),
            dep(
                "backup2",
                "b2",
                &if fallback_ok {
                    backup.url()
                } else {
                    broken.url()
                },
                ""
            ),
        )
    };
    let s = state(&yaml(true));
    let r = call(&s, post("/v1/chat/completions", chat("primary"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "3");
    assert_eq!(header(&r, "x-litellm-model-id"), "b2");
    assert_eq!(json(r).await["model"], "backup2");
    // disable_fallbacks: the original error.
    let mut body = chat("primary");
    body["disable_fallbacks"] = json!(true);
    assert_eq!(
        call(&s, post("/v1/chat/completions", body)).await.status(),
        503
    );

    let s = state(&yaml(false));
    let r = call(&s, post("/v1/chat/completions", chat("primary"))).await;
    assert_eq!(r.status(), 503, "the original error's status");
    let msg = json(r).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("primary down"), "{msg}");
    assert!(msg.contains("Received Model Group=primary"), "{msg}");
    assert!(msg.contains("Error doing the fallback"), "{msg}");

    // A client-side list and mock_testing_fallbacks (no upstream call for the primary).
    primary.reset();
    let mut body = chat("primary");
    body["mock_testing_fallbacks"] = json!(true);
    body["fallbacks"] = json!(["backup1", "backup2"]);
    let s = state(&yaml(true));
    let r = call(&s, post("/v1/chat/completions", body)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(primary.hits(), 0);
}

#[tokio::test]
async fn context_window_fallbacks_skip_models_that_are_too_small_before_sending() {
    let primary = up(Reply::error(400, "This model's maximum context length is 16 tokens. However, your messages resulted in 60 tokens.")).await;
    let small = up(Reply::ok()).await;
    let big = up(Reply::ok()).await;
    let s = state(&format!(
        "router_settings:\n  context_window_fallbacks: [{{primary: [small, big]}}]\nmodel_list:\n{}  - {{model_name: small, litellm_params: {{model: openai/gpt-4o, api_base: '{}', api_key: k}}, model_info: {{id: s, max_input_tokens: 20}}}}\n  - {{model_name: big, litellm_params: {{model: openai/gpt-4o, api_base: '{}', api_key: k}}, model_info: {{id: b, max_input_tokens: 100000}}}}\n",
        dep("primary", "p", &primary.url(), ""),
        small.url(),
        big.url()
    ));
    let long =
        json!({"model": "primary", "messages": [{"role": "user", "content": "word ".repeat(60)}]});
    let r = call(&s, post("/v1/chat/completions", long)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "b");
    assert_eq!(
        primary.hits(),
        1,
        "a context-window error is not retried when fallbacks exist"
    );
    assert_eq!(
        small.hits(),
        0,
        "the small model was skipped without a call"
    );
    assert_eq!(big.hits(), 1);
}

#[tokio::test]
async fn rpm_limits_hold_and_are_reported() {
    let s = state(
        "router_settings: {routing_strategy: usage-based-routing-v2}\nmodel_list:\n  - {model_name: m, litellm_params: {model: openai/x, mock_response: hi, rpm: 3}}\n",
    );
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = call(&s, post("/v1/chat/completions", chat("m"))).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
        remaining.push(header(&r, "x-ratelimit-remaining-requests").to_string());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = call(&s, post("/v1/chat/completions", chat("m"))).await;
    assert_eq!(r.status(), 429);
    let secs: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&secs));
    let msg = json(r).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("rpm/tpm limit"), "{msg}");
}

#[tokio::test]
async fn least_busy_spreads_concurrent_requests() {
    let a = up(Reply::ok().with_latency(400)).await;
    let b = up(Reply::ok().with_latency(400)).await;
    let s = state(&format!(
        "router_settings: {{routing_strategy: least-busy}}\nmodel_list:\n{}{}",
        dep("g", "a", &a.url(), ""),
        dep("g", "b", &b.url(), "")
    ));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            call(&s, post("/v1/chat/completions", chat("g")))
                .await
                .status()
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        (a.hits(), b.hits()),
        (5, 5),
        "each new request goes to the idler deployment"
    );
}

#[tokio::test]
async fn latency_based_routing_settles_on_the_fast_deployment() {
    let fast = up(Reply::ok()).await;
    let slow = up(Reply::ok().with_latency(80)).await;
    let s = state(&format!(
        "router_settings: {{routing_strategy: latency-based-routing}}\nmodel_list:\n{}{}",
        dep("g", "fast", &fast.url(), ""),
        dep("g", "slow", &slow.url(), "")
    ));
    for _ in 0..20 {
        assert_eq!(
            call(&s, post("/v1/chat/completions", chat("g")))
                .await
                .status(),
            200
        );
    }
    assert!(
        slow.hits() <= 2,
        "slow {} fast {}",
        slow.hits(),
        fast.hits()
    );
    assert!(fast.hits() >= 18);
}

#[tokio::test]
async fn cost_based_routing_and_region_checks() {
    let s = state(
        "router_settings: {routing_strategy: cost-based-routing, enable_pre_call_checks: true}\nmodel_list:\n  - {model_name: g, litellm_params: {model: openai/x, mock_response: a, region_name: eu, input_cost_per_token: 0.00001}, model_info: {id: dear}}\n  - {model_name: g, litellm_params: {model: openai/x, mock_response: b, region_name: us, input_cost_per_token: 0.000001}, model_info: {id: cheap}}\n",
    );
    for _ in 0..5 {
        let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
        assert_eq!(header(&r, "x-litellm-model-id"), "cheap");
    }
    let mut body = chat("g");
    body["allowed_model_region"] = json!("eu");
    let r = call(&s, post("/v1/chat/completions", body)).await;
    assert_eq!(header(&r, "x-litellm-model-id"), "dear");
    assert_eq!(header(&r, "x-litellm-model-region"), "eu");
}

#[tokio::test]
async fn a_timeout_is_a_408_that_retries_elsewhere_and_cools_down() {
    let slow = up(Reply::ok().with_latency(2000)).await;
    let ok = up(Reply::ok()).await;
    let s = state(&format!(
        "model_list:\n{}{}",
        dep("g", "slow", &slow.url(), ", timeout: 0.2"),
        dep("g", "ok", &ok.url(), "")
    ));
    for _ in 0..10 {
        let started = Instant::now();
        let r = call(&s, post("/v1/chat/completions", chat("g"))).await;
        assert_eq!(r.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    assert_eq!(slow.hits(), 1);
    let v = json(call(&s, get("/router/cooldowns")).await).await;
    assert_eq!(v["data"][0]["status_code"], 408);
}

#[test]
fn an_unknown_strategy_is_a_config_error() {
    let e = modelgate_proxy::config::load(
        "router_settings: {routing_strategy: fastest-please}\n",
        1,
        "t",
        &Default::default(),
        &modelgate_proxy::catalog::Catalog::builtin(),
        &modelgate_proxy::config::resolve::NoSecrets,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("fastest-please"), "{e}");
}
