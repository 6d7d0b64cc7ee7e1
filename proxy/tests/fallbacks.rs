//! Fallbacks to other groups: content-policy and default fallbacks, the `max_fallbacks`
//! bound, and the `mock_testing_*` request keys, which must never cool a deployment down
//! or use up its limits.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::{call, chat, cooling, dep, error_message, header, post, send, state, upstream};
use modelgate_mock_upstream::{MockUpstream, Reply};
use modelgate_proxy::AppState;
use serde_json::json;

const AZURE_FILTERED: &str = "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.";

#[tokio::test]
async fn a_content_policy_error_goes_to_the_content_policy_fallbacks() {
    let primary = upstream(Reply::error(400, AZURE_FILTERED)).await;
    let safe = upstream(Reply::ok()).await;
    let generic = upstream(Reply::ok()).await;
    let s = state(&format!(
        "router_settings:\n  content_policy_fallbacks: [{{primary: [safe]}}]\n  fallbacks: [{{primary: [generic]}}]\nmodel_list:\n{}{}{}",
        dep("primary", "p", &primary.url(), ""),
        dep("safe", "safe", &safe.url(), ""),
        dep("generic", "generic", &generic.url(), "")
    ));
    let r = call(&s, post("/v1/chat/completions", chat("primary"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "safe");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "1");
    assert_eq!(
        (primary.hits(), safe.hits(), generic.hits()),
        (1, 1, 0),
        "not retried in the group, and not sent to the generic fallbacks"
    );
    // The request's own content_policy_fallbacks replace the configured ones.
    let mut body = chat("primary");
    body["content_policy_fallbacks"] = json!([{"primary": ["generic"]}]);
    assert_eq!(send(&s, body).await, (200, "generic".to_string()));
    assert_eq!(safe.hits(), 1);
}

#[tokio::test]
async fn default_fallbacks_catch_groups_without_their_own_entry() {
    let down = upstream(Reply::error(500, "down")).await;
    let backup = upstream(Reply::ok()).await;
    let special_backup = upstream(Reply::ok()).await;
    let s = state(&format!(
        "router_settings:\n  num_retries: 0\n  default_fallbacks: [backup]\n  fallbacks: [{{special: [special-backup]}}]\nmodel_list:\n{}{}{}{}",
        dep("primary", "p", &down.url(), ""),
        dep("special", "sp", &down.url(), ""),
        dep("backup", "backup", &backup.url(), ""),
        dep(
            "special-backup",
            "special-backup",
            &special_backup.url(),
            ""
        )
    ));
    let r = call(&s, post("/v1/chat/completions", chat("primary"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "backup");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "1");
    // A group with its own entry uses it, not the defaults.
    assert_eq!(
        send(&s, chat("special")).await,
        (200, "special-backup".to_string())
    );
    assert_eq!((backup.hits(), special_backup.hits()), (1, 1));
}

#[tokio::test]
async fn max_fallbacks_bounds_how_many_groups_are_tried() {
    let down = upstream(Reply::error(503, "primary down")).await;
    let f1 = upstream(Reply::error(500, "f1 down")).await;
    let f2 = upstream(Reply::error(500, "f2 down")).await;
    let f3 = upstream(Reply::ok()).await;
    let yaml = |max: u32| {
        format!(
            "router_settings:\n  num_retries: 0\n  max_fallbacks: {max}\n  fallbacks: [{{primary: [f1, f2, f3]}}]\nmodel_list:\n{}{}{}{}",
            dep("primary", "p", &down.url(), ""),
            dep("f1", "f1", &f1.url(), ""),
            dep("f2", "f2", &f2.url(), ""),
            dep("f3", "f3", &f3.url(), "")
        )
    };
    let r = call(
        &state(&yaml(2)),
        post("/v1/chat/completions", chat("primary")),
    )
    .await;
    assert_eq!(r.status(), 503, "the original error");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "2");
    let msg = error_message(r).await;
    assert!(msg.contains("Received Model Group=primary"), "{msg}");
    assert!(msg.contains("f2 down"), "{msg}");
    assert_eq!((f1.hits(), f2.hits(), f3.hits()), (1, 1, 0));

    let r = call(
        &state(&yaml(3)),
        post("/v1/chat/completions", chat("primary")),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "3");
    assert_eq!(f3.hits(), 1);
}

/// `primary` (two deployments, both fine) with a fallback group of each kind.
async fn mock_testing_setup() -> (AppState, [MockUpstream; 4]) {
    let a = upstream(Reply::ok()).await;
    let b = upstream(Reply::ok()).await;
    let big = upstream(Reply::ok()).await;
    let generic = upstream(Reply::ok()).await;
    let s = state(&format!(
        "router_settings:\n  fallbacks: [{{primary: [generic]}}]\n  context_window_fallbacks: [{{primary: [big]}}]\n  content_policy_fallbacks: [{{primary: [big]}}]\nmodel_list:\n{}{}{}{}",
        dep("primary", "a", &a.url(), ""),
        dep("primary", "b", &b.url(), ""),
        dep("big", "big", &big.url(), ""),
        dep("generic", "generic", &generic.url(), "")
    ));
    (s, [a, b, big, generic])
}

#[tokio::test]
async fn mock_testing_keys_fail_the_first_try_with_the_error_they_name() {
    let (s, [a, b, big, generic]) = mock_testing_setup().await;
    for (key, served) in [
        ("mock_testing_fallbacks", "generic"),
        ("mock_testing_context_fallbacks", "big"),
        ("mock_testing_content_policy_fallbacks", "big"),
    ] {
        let mut body = chat("primary");
        body[key] = json!(true);
        let r = call(&s, post("/v1/chat/completions", body)).await;
        assert_eq!(r.status(), 200, "{key}");
        assert_eq!(header(&r, "x-litellm-model-id"), served, "{key}");
        assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "1", "{key}");
        assert_eq!(header(&r, "x-litellm-attempted-retries"), "0", "{key}");
    }
    assert_eq!((big.hits(), generic.hits()), (2, 1));
    // The rate-limit hook fails inside the retry layer: retried in the group, no fallback.
    let mut body = chat("primary");
    body["mock_testing_rate_limit_error"] = json!(true);
    let r = call(&s, post("/v1/chat/completions", body.clone())).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "1");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "0");
    assert_eq!(a.hits() + b.hits(), 1, "the mocked try calls no upstream");
    body["num_retries"] = json!(0);
    body["disable_fallbacks"] = json!(true);
    let r = call(&s, post("/v1/chat/completions", body)).await;
    assert_eq!(r.status(), 429);
    assert!(error_message(r).await.contains("RateLimitError"));
    assert_eq!(a.hits() + b.hits(), 1);
}

#[tokio::test]
async fn mock_testing_never_cools_a_deployment_down() {
    let (s, [a, b, _, _]) = mock_testing_setup().await;
    for key in [
        "mock_testing_fallbacks",
        "mock_testing_context_fallbacks",
        "mock_testing_content_policy_fallbacks",
        "mock_testing_rate_limit_error",
    ] {
        let mut body = chat("primary");
        body[key] = json!(true);
        assert_eq!(send(&s, body).await.0, 200, "{key}");
        assert!(cooling(&s).await.is_empty(), "{key} cooled a deployment");
    }
    // Both deployments of the group still serve it directly.
    let mut served = std::collections::HashSet::new();
    for _ in 0..40 {
        let r = call(&s, post("/v1/chat/completions", chat("primary"))).await;
        assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "0");
        served.insert(header(&r, "x-litellm-model-id").to_string());
    }
    // Each is picked at random: both miss one of them in 40 tries with chance 2^-39.
    assert_eq!(served.len(), 2, "{served:?}");
    assert_eq!(a.hits() + b.hits(), 41);
}

#[tokio::test]
async fn mock_testing_does_not_use_up_a_deployments_rpm() {
    let p = upstream(Reply::ok()).await;
    let q = upstream(Reply::ok()).await;
    let s = state(&format!(
        "router_settings:\n  routing_strategy: usage-based-routing-v2\n  fallbacks: [{{p: [q]}}]\nmodel_list:\n{}{}",
        dep("p", "p", &p.url(), ", rpm: 1"),
        dep("q", "q", &q.url(), "")
    ));
    let mut body = chat("p");
    body["mock_testing_fallbacks"] = json!(true);
    assert_eq!(send(&s, body).await, (200, "q".to_string()));
    // p's one request of the minute is still there for real traffic.
    let r = call(&s, post("/v1/chat/completions", chat("p"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-id"), "p");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "0");
    assert_eq!(p.hits(), 1);
}
