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
