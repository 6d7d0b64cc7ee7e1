//! Chat, completions and embeddings through the proxy to real mock upstreams on 127.0.0.1:
//! model resolution, provider URLs and keys, headers, and the model name clients see.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;
use common::*;
use modelgate_mock_upstream::{MockUpstream, Reply};
use serde_json::json;

fn chat(model: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn groups_aliases_hidden_aliases_ids_and_exact_models_all_route() {
    let up = MockUpstream::start(Reply::ok()).await.unwrap();
    let s = state(&alias_config(&up.url(), &up.url()));
    let info = json(call(&s, get("/model/info")).await).await;
    let gpt4o_id = info["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["model_name"] == "model-group-1" && e["litellm_params"]["model"] == "openai/gpt-4o"
        })
        .map(|e| e["model_info"]["id"].as_str().unwrap().to_string())
        .unwrap();
    for model in [
        "model-group-1",
        "alias-1",
        "hidden-alias",
        gpt4o_id.as_str(),
        "openai/gpt-4o-mini",
    ] {
        let r = call(&s, post("/v1/chat/completions", chat(model))).await;
        assert_eq!(r.status(), 200, "model {model}");
        assert_eq!(header(&r, "x-litellm-model-group"), model);
        assert!(!header(&r, "x-litellm-model-id").is_empty());
        assert_eq!(header(&r, "x-litellm-model-api-base"), up.url());
        assert_eq!(header(&r, "x-litellm-attempted-retries"), "0");
        let v = json(r).await;
        assert_eq!(v["model"], model, "the response carries the requested name");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Hello from the mock upstream."
        );
    }
    // The deployment id pins one deployment; the exact litellm model pins the other.
    let recs = up.records();
    assert_eq!(recs[3].body["model"], "gpt-4o");
    assert_eq!(recs[4].body["model"], "gpt-4o-mini");
    assert!(recs.iter().all(|r| r.key.as_deref() == Some("sk-fake")));
    assert!(recs.iter().all(|r| r.path == "/v1/chat/completions"));
}

#[tokio::test]
async fn router_fields_are_not_forwarded_and_deployment_params_are() {
    let up = MockUpstream::start(Reply::ok()).await.unwrap();
    let s = state(&format!(
        r#"
model_list:
  - model_name: g
    litellm_params: {{model: hosted_vllm/meta-llama/Llama-3-8B, api_base: "{}", temperature: 0.3, max_tokens: 7}}
"#,
        up.url()
    ));
    let mut body = chat("g");
    body["max_tokens"] = json!(99);
    body["metadata"] = json!({"a": 1});
    body["num_retries"] = json!(1);
    let r = call(&s, post("/chat/completions", body)).await;
    assert_eq!(r.status(), 200);
    let sent = &up.records()[0];
    assert_eq!(sent.body["model"], "meta-llama/Llama-3-8B");
    assert_eq!(sent.body["temperature"], 0.3);
    assert_eq!(sent.body["max_tokens"], 99, "the client's value wins");
    assert!(sent.body.get("metadata").is_none() && sent.body.get("num_retries").is_none());
    assert_eq!(sent.key, None, "no key configured, none sent");
}

#[tokio::test]
async fn azure_deployments_use_deployment_urls_and_the_api_key_header() {
    let up = MockUpstream::start(Reply::ok()).await.unwrap();
    let base = format!("http://{}", up.addr());
    let s = state(&format!(
        r#"
model_list:
  - model_name: gpt-4o
    litellm_params: {{model: azure/gpt-4o-eu, api_base: "{base}/", api_key: az-key, api_version: "2024-06-01"}}
"#
    ));
    let r = call(&s, post("/v1/chat/completions", chat("gpt-4o"))).await;
    assert_eq!(r.status(), 200);
    let rec = &up.records()[0];
    assert_eq!(rec.path, "/openai/deployments/gpt-4o-eu/chat/completions");
    assert_eq!(rec.key.as_deref(), Some("az-key"));
    // Azure-style client routes name the model in the path.
    let r = call(
        &s,
        post(
            "/openai/deployments/gpt-4o/chat/completions",
            json!({"messages": []}),
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn wildcard_groups_substitute_the_requested_model() {
    let up = MockUpstream::start(Reply::ok()).await.unwrap();
    let s = state(&format!(
        r#"
model_list:
  - model_name: "openai/*"
    litellm_params: {{model: "openai/*", api_base: "{}", api_key: k}}
"#,
        up.url()
    ));
    let r = call(
        &s,
        post("/v1/chat/completions", chat("openai/gpt-4.1-mini")),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.records()[0].body["model"], "gpt-4.1-mini");
    assert_eq!(json(r).await["model"], "openai/gpt-4.1-mini");
}

#[tokio::test]
async fn completions_and_embeddings() {
    let up = MockUpstream::start(Reply::ok()).await.unwrap();
    let s = state(&format!(
        r#"
model_list:
  - model_name: embed
    litellm_params: {{model: openai/text-embedding-3-small, api_base: "{u}"}}
  - model_name: text
    litellm_params: {{model: openai/gpt-3.5-turbo-instruct, api_base: "{u}"}}
"#,
        u = up.url()
    ));
    let r = call(
        &s,
        post("/v1/embeddings", json!({"model": "embed", "input": "hi"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    assert_eq!(v["model"], "embed");
    assert_eq!(v["data"][0]["object"], "embedding");
    let r = call(
        &s,
        post("/completions", json!({"model": "text", "prompt": "hi"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["object"], "text_completion");
    let paths: Vec<String> = up.records().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v1/embeddings", "/v1/completions"]);
}

#[tokio::test]
async fn weights_split_traffic() {
    let a = MockUpstream::start(Reply::ok()).await.unwrap();
    let b = MockUpstream::start(Reply::ok()).await.unwrap();
    let s = state(&format!(
        r#"
model_list:
  - {{model_name: g, litellm_params: {{model: openai/a, api_base: "{}", weight: 3}}}}
  - {{model_name: g, litellm_params: {{model: openai/b, api_base: "{}", weight: 1}}}}
"#,
        a.url(),
        b.url()
    ));
    for _ in 0..400 {
        assert_eq!(
            call(&s, post("/v1/chat/completions", chat("g")))
                .await
                .status(),
            200
        );
    }
    // Expected 300 of 400 on `a`; sd = sqrt(400 * 0.75 * 0.25) ≈ 8.7, so ±45 is over 5 sd.
    let on_a = a.hits() as i64;
    assert!((on_a - 300).abs() < 45, "a got {on_a} of 400");
    assert_eq!(a.hits() + b.hits(), 400);
}

#[tokio::test]
async fn lowest_order_is_preferred() {
    let a = MockUpstream::start(Reply::ok()).await.unwrap();
    let b = MockUpstream::start(Reply::ok()).await.unwrap();
    let s = state(&format!(
        r#"
model_list:
  - {{model_name: g, litellm_params: {{model: openai/a, api_base: "{}", order: 2}}}}
  - {{model_name: g, litellm_params: {{model: openai/b, api_base: "{}", order: 1}}}}
"#,
        a.url(),
        b.url()
    ));
    for _ in 0..20 {
        call(&s, post("/v1/chat/completions", chat("g"))).await;
    }
    assert_eq!((a.hits(), b.hits()), (0, 20));
}

#[tokio::test]
async fn mock_response_deployments_answer_offline() {
    let s = state(
        "model_list: [{model_name: demo, litellm_params: {model: openai/gpt-4o, mock_response: 'Hi from a mock'}}]",
    );
    let r = call(&s, post("/v1/chat/completions", chat("demo"))).await;
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    assert_eq!(v["choices"][0]["message"]["content"], "Hi from a mock");
    assert_eq!(v["usage"]["total_tokens"], 30);
    let mut body = chat("demo");
    body["mock_response"] = json!("litellm.RateLimitError");
    let r = call(&s, post("/v1/chat/completions", body)).await;
    assert_eq!(r.status(), 429);
}
