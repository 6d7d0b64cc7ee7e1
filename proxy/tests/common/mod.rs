//! Shared helpers for the proxy's in-process tests: build the app from YAML and call it.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![allow(dead_code)]

use axum::{
    body::Body,
    http::{Request, Response},
};
use http_body_util::BodyExt;
use modelgate_proxy::{
    AppState, Shared,
    catalog::Catalog,
    config::{Defaults, load, resolve::NoSecrets},
};
use serde_json::Value;
use tower::ServiceExt;

pub const KEY: &str = "sk-test-master";

/// An app state serving `yaml` (which must load).
pub fn state(yaml: &str) -> AppState {
    let state = Shared::new().unwrap();
    let loaded = load(
        yaml,
        1,
        "test",
        &Defaults::default(),
        &Catalog::builtin(),
        &NoSecrets,
    )
    .unwrap_or_else(|e| panic!("config must load: {e}"));
    state.install(loaded);
    state
}

pub async fn call(state: &AppState, req: Request<Body>) -> Response<Body> {
    modelgate_proxy::app(state.clone())
        .oneshot(req)
        .await
        .unwrap()
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap()
}

pub fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub async fn body_bytes(resp: Response<Body>) -> bytes::Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

pub async fn json(resp: Response<Body>) -> Value {
    let b = body_bytes(resp).await;
    serde_json::from_slice(&b)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&b)))
}

pub fn header<'a>(resp: &'a Response<Body>, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The seed scenario of shared/reference/litellm-golden, pointed at `base`.
pub fn alias_config(base: &str, broken: &str) -> String {
    format!(
        r#"
model_list:
  - model_name: model-group-1
    litellm_params: {{model: openai/gpt-4o, api_base: "{base}", api_key: sk-fake}}
  - model_name: model-group-1
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{base}", api_key: sk-fake}}
  - model_name: broken
    litellm_params: {{model: openai/gpt-4o, api_base: "{broken}", api_key: sk-fake}}
router_settings:
  model_group_alias:
    alias-1: model-group-1
    hidden-alias: {{model: model-group-1, hidden: true}}
general_settings:
  master_key: {KEY}
"#
    )
}

/// A one-message chat request for `model`.
pub fn chat(model: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// The same, streamed.
pub fn chat_stream(model: &str) -> Value {
    let mut body = chat(model);
    body["stream"] = Value::Bool(true);
    body
}

/// A mock upstream on 127.0.0.1 answering `reply` unless scripted.
pub async fn upstream(
    reply: modelgate_mock_upstream::Reply,
) -> modelgate_mock_upstream::MockUpstream {
    modelgate_mock_upstream::MockUpstream::start(reply)
        .await
        .unwrap()
}

/// One `model_list` entry calling `base`, with id `id`; `extra` is appended inside
/// `litellm_params` (start it with `, `).
pub fn dep(group: &str, id: &str, base: &str, extra: &str) -> String {
    format!(
        "  - {{model_name: {group}, litellm_params: {{model: openai/gpt-4o, api_base: '{base}', api_key: sk-x{extra}}}, model_info: {{id: {id}}}}}\n"
    )
}

/// Sends a chat request; returns the status and the deployment that answered (or failed).
pub async fn send(state: &AppState, body: Value) -> (u16, String) {
    let r = call(state, post("/v1/chat/completions", body)).await;
    (
        r.status().as_u16(),
        header(&r, "x-litellm-model-id").to_string(),
    )
}

/// The ids of the deployments cooling down now, from `GET /router/cooldowns`.
pub async fn cooling(state: &AppState) -> Vec<String> {
    let v = json(call(state, get("/router/cooldowns")).await).await;
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["model_id"].as_str().unwrap().to_string())
        .collect()
}

/// The error message of an error response.
pub async fn error_message(resp: Response<Body>) -> String {
    json(resp).await["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
