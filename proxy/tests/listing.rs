//! `/v1/models`, `/model/info`, `/model_group/info`: the LiteLLM shapes, aliases listed on
//! all three (per deployment on /model/info), hidden aliases nowhere, no secrets.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

fn ids(v: &Value, field: &str) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[field].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn models_list_groups_and_visible_aliases() {
    let s = state(&alias_config(
        "http://127.0.0.1:9/v1",
        "http://127.0.0.1:9/v1",
    ));
    for path in ["/v1/models", "/models"] {
        let v = json(call(&s, get(path)).await).await;
        assert_eq!(v["object"], "list");
        let got: BTreeSet<String> = ids(&v, "id").into_iter().collect();
        let want: BTreeSet<String> = ["alias-1", "model-group-1", "broken"]
            .map(String::from)
            .into();
        assert_eq!(got, want);
        let first = &v["data"][0];
        assert_eq!(first["object"], "model");
        assert_eq!(first["created"], 1677610602);
        assert_eq!(first["owned_by"], "openai");
        assert_eq!(first["max_input_tokens"], 128000);
    }
    let r = call(&s, get("/v1/models/alias-1")).await;
    assert_eq!(
        r.status(),
        200,
        "LiteLLM 404s a listed alias here; we do not"
    );
    assert_eq!(json(r).await["id"], "alias-1");
    let r = call(&s, get("/v1/models/hidden-alias")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["error"]["code"], "404");
}

#[tokio::test]
async fn model_info_repeats_each_deployment_under_a_visible_alias() {
    // The golden scenario's exact addresses, so the ids can be compared with LiteLLM's.
    let s = state(&alias_config(
        "http://127.0.0.1:18080/v1",
        "http://127.0.0.1:18082/v1",
    ));
    let v = json(call(&s, get("/model/info")).await).await;
    let names = ids(&v, "model_name");
    assert_eq!(names.iter().filter(|n| *n == "alias-1").count(), 2);
    assert_eq!(names.iter().filter(|n| *n == "model-group-1").count(), 2);
    assert_eq!(names.iter().filter(|n| *n == "broken").count(), 1);
    assert!(!names.iter().any(|n| n == "hidden-alias"));
    let data = v["data"].as_array().unwrap();
    let group_ids: BTreeSet<&str> = data
        .iter()
        .filter(|e| e["model_name"] == "model-group-1")
        .map(|e| e["model_info"]["id"].as_str().unwrap())
        .collect();
    let alias_ids: BTreeSet<&str> = data
        .iter()
        .filter(|e| e["model_name"] == "alias-1")
        .map(|e| e["model_info"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(group_ids, alias_ids);
    // The same ids LiteLLM 1.106.0 gives this config.
    assert!(group_ids.contains("6d58ccde5ca8f65b68dc4363010cae5afca4bd5cc2612d95bf5581f16e1ee276"));
    let text = v.to_string();
    assert!(
        !text.contains("sk-fake") && !text.contains("api_key"),
        "secrets leaked: {text}"
    );
    assert_eq!(data[0]["model_info"]["litellm_provider"], "openai");
    assert_eq!(
        data[0]["litellm_params"]["api_base"],
        "http://127.0.0.1:18080/v1"
    );

    let v1 = json(call(&s, get("/v1/model/info")).await).await;
    assert_eq!(v1, v);
    let one = json(call(&s, get("/model/info?litellm_model_id=6d58ccde5ca8f65b68dc4363010cae5afca4bd5cc2612d95bf5581f16e1ee276")).await).await;
    assert_eq!(
        one["data"][0]["litellm_params"]["model"],
        "openai/gpt-4o-mini"
    );
    let r = call(&s, get("/model/info?litellm_model_id=nope")).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn model_group_info_lists_aliases_as_groups() {
    let s = state(&alias_config(
        "http://127.0.0.1:9/v1",
        "http://127.0.0.1:9/v1",
    ));
    let v = json(call(&s, get("/model_group/info")).await).await;
    let got: BTreeSet<String> = ids(&v, "model_group").into_iter().collect();
    assert_eq!(
        got,
        ["alias-1", "model-group-1", "broken"]
            .map(String::from)
            .into()
    );
    let one = json(call(&s, get("/model_group/info?model_group=alias-1")).await).await;
    let g = &one["data"][0];
    assert_eq!(g["model_group"], "alias-1");
    assert_eq!(g["providers"], serde_json::json!(["openai"]));
    assert_eq!(g["max_input_tokens"], 128000);
    assert_eq!(g["mode"], "chat");
    assert_eq!(g["supports_function_calling"], true);
    let hidden = json(call(&s, get("/model_group/info?model_group=hidden-alias")).await).await;
    assert_eq!(hidden["data"], serde_json::json!([]));
}

#[tokio::test]
async fn user_model_info_wins_and_secret_looking_params_never_show() {
    let s = state(
        r#"
model_list:
  - model_name: g
    litellm_params:
      model: azure/my-gpt4o
      api_base: https://eu.example.com
      api_key: sk-very-secret
      client_secret: cs-very-secret
      aws_secret_access_key: aws-very-secret
      temperature: 0.1
      rpm: 600
    model_info:
      base_model: azure/gpt-4o
      max_input_tokens: 1000
      team: research
"#,
    );
    let v = json(call(&s, get("/model/info")).await).await;
    let text = v.to_string();
    for secret in ["sk-very-secret", "cs-very-secret", "aws-very-secret"] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
    let info = &v["data"][0]["model_info"];
    assert_eq!(info["max_input_tokens"], 1000, "user value wins");
    assert_eq!(info["max_output_tokens"], 16384, "catalog fills the rest");
    assert_eq!(info["team"], "research");
    assert_eq!(info["key"], "azure/gpt-4o");
    assert_eq!(info["litellm_provider"], "azure");
    assert_eq!(v["data"][0]["litellm_params"]["temperature"], 0.1);
    let g = json(call(&s, get("/model_group/info")).await).await;
    assert_eq!(g["data"][0]["rpm"], 600);
}

#[tokio::test]
async fn wildcard_groups_expand_from_the_catalog() {
    let s = state(
        "model_list: [{model_name: 'openai/*', litellm_params: {model: 'openai/*', api_key: x}}]",
    );
    let v = json(call(&s, get("/v1/models")).await).await;
    let names = ids(&v, "id");
    assert!(names.contains(&"openai/gpt-4o".to_string()), "{names:?}");
    assert!(!names.contains(&"openai/*".to_string()));
    let v = json(call(&s, get("/v1/models?return_wildcard_routes=true")).await).await;
    assert!(ids(&v, "id").contains(&"openai/*".to_string()));
}
