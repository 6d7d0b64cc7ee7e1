//! `/health`: every deployment checked once (never an alias copy), in the background, with
//! LiteLLM's shape and no stack traces or keys; readiness reports the served config.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;
use common::*;
use modelgate_mock_upstream::{MockUpstream, Reply};
use modelgate_proxy::{
    catalog::Catalog,
    config::{Defaults, load, resolve::NoSecrets},
};
use std::time::Duration;

async fn wait_checked(s: &modelgate_proxy::AppState) -> serde_json::Value {
    for _ in 0..100 {
        let v = json(call(s, get("/health")).await).await;
        if v["pending_endpoints"].as_array().unwrap().is_empty() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("health checks did not finish");
}

#[tokio::test]
async fn each_deployment_is_checked_once_in_the_background() {
    let ok = MockUpstream::start(Reply::ok()).await.unwrap();
    let bad = MockUpstream::start(Reply::error(500, "The server had an error (mock)"))
        .await
        .unwrap();
    let s = state(&alias_config(&ok.url(), &bad.url()));
    tokio::spawn(modelgate_proxy::health::run(s.clone()));
    let v = wait_checked(&s).await;
    assert_eq!(v["healthy_count"], 2);
    assert_eq!(v["unhealthy_count"], 1);
    // Three deployments, two aliases: three checks, not five.
    assert_eq!(ok.hits() + bad.hits(), 3);
    let unhealthy = &v["unhealthy_endpoints"][0];
    assert_eq!(unhealthy["model"], "openai/gpt-4o");
    let err = unhealthy["error"].as_str().unwrap();
    assert!(err.contains("The server had an error (mock)"), "{err}");
    assert!(!err.contains("Traceback") && !err.contains('\n'));
    let text = v.to_string();
    assert!(!text.contains("sk-fake") && !text.to_lowercase().contains("authorization"));
    assert!(v["healthy_endpoints"][0]["model_id"].is_string());
    // Cached: asking again does not call the upstreams.
    let _ = json(call(&s, get("/health")).await).await;
    assert_eq!(ok.hits() + bad.hits(), 3);
    // Filters.
    let one = json(call(&s, get("/health?model=broken")).await).await;
    assert_eq!(one["unhealthy_count"], 1);
    assert_eq!(one["healthy_count"], 0);
}

#[tokio::test]
async fn on_demand_checks_when_background_checks_are_off() {
    let ok = MockUpstream::start(Reply::ok()).await.unwrap();
    let cfg = format!(
        "general_settings: {{background_health_checks: false}}\nmodel_list: [{{model_name: g, litellm_params: {{model: openai/gpt-4o, api_base: '{}'}}}}]",
        ok.url()
    );
    let s = state(&cfg);
    let v = json(call(&s, get("/health")).await).await;
    assert_eq!(v["healthy_count"], 1);
    assert_eq!(ok.hits(), 1);
}

#[tokio::test]
async fn readiness_reports_generation_and_hash() {
    let s = state("model_list: []");
    let v = json(call(&s, get("/health/readiness")).await).await;
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["config"]["generation"], 1);
    assert_eq!(v["config"]["hash"].as_str().unwrap().len(), 64);
    let live = json(call(&s, get("/health/liveliness")).await).await;
    assert_eq!(live, "I'm alive!");
}

#[tokio::test]
async fn readiness_is_false_before_any_config() {
    let s = modelgate_proxy::Shared::new().unwrap();
    let r = call(&s, get("/health/readiness")).await;
    assert_eq!(r.status(), 503);
    let r = call(&s, get("/v1/models")).await;
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn metrics_count_requests_tokens_and_reloads() {
    let up = MockUpstream::start(Reply::ok()).await.unwrap();
    let s = state(&alias_config(&up.url(), &up.url()));
    call(
        &s,
        post(
            "/v1/chat/completions",
            serde_json::json!({"model": "alias-1", "messages": []}),
        ),
    )
    .await;
    call(
        &s,
        post(
            "/v1/chat/completions",
            serde_json::json!({"model": "nope", "messages": []}),
        ),
    )
    .await;
    let text =
        String::from_utf8(body_bytes(call(&s, get("/metrics")).await).await.to_vec()).unwrap();
    assert!(text.contains("modelgate_requests_total{route=\"/chat/completions\",model_group=\"alias-1\",status=\"200\"} 1"), "{text}");
    assert!(
        text.contains("model_group=\"unknown\",status=\"400\"} 1"),
        "{text}"
    );
    // Per-deployment series carry the deployment's own group, whatever name was asked for.
    assert!(
        text.contains("modelgate_tokens_total{model_group=\"model-group-1\""),
        "{text}"
    );
    assert!(
        text.contains("modelgate_config_reloads_total{result=\"success\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("modelgate_upstream_duration_seconds_bucket"),
        "{text}"
    );
    assert!(!text.contains("sk-fake"));

    // A deployment that leaves the config takes its series along.
    let next = load(
        &format!(
            "model_list:\n  - model_name: other\n    litellm_params: {{model: openai/x, api_base: \"{}\"}}\n",
            up.url()
        ),
        2,
        "test",
        &Defaults::default(),
        &Catalog::builtin(),
        &NoSecrets,
    )
    .unwrap();
    s.install(next);
    let text =
        String::from_utf8(body_bytes(call(&s, get("/metrics")).await).await.to_vec()).unwrap();
    assert!(!text.contains("model-group-1"), "{text}");
    assert!(text.contains("modelgate_requests_total{route=\"/chat/completions\",model_group=\"alias-1\",status=\"200\"} 1"), "{text}");
}
