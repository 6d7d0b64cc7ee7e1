//! Upstream calls honour `HTTP_PROXY`/`HTTPS_PROXY` as LiteLLM's (httpx) do: clusters
//! often reach OpenAI or Azure only through an egress proxy. The "proxy" here is a mock
//! upstream, which answers the absolute-form requests a client sends to an HTTP proxy;
//! the configured upstream host does not exist, so only the proxied path can succeed.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use modelgate_mock_upstream::{MockUpstream, Reply};
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const KEY: &str = "sk-egress-test";

struct Proxy(Child);
impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_calls_go_through_the_environments_proxy() {
    let egress = MockUpstream::start(Reply::ok()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "general_settings: {{master_key: {KEY}, background_health_checks: false}}\nmodel_list:\n  - model_name: g\n    litellm_params: {{model: openai/gpt-4o, api_base: 'http://upstream.invalid:9/v1', api_key: sk-up}}\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let _proxy = Proxy(
        Command::new(env!("CARGO_BIN_EXE_modelgate-proxy"))
            .args(["--config", path.to_str().unwrap()])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("HTTP_PROXY", format!("http://{}", egress.addr()))
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while http
        .get(format!("{base}/health/readiness"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "proxy not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let r = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let records = egress.records();
    assert_eq!(
        records.len(),
        1,
        "{:?}",
        records
            .iter()
            .map(|r| (&r.path, &r.key, &r.body))
            .collect::<Vec<_>>()
    );
    assert_eq!(records[0].path, "/v1/chat/completions");
    assert_eq!(records[0].key.as_deref(), Some("sk-up"));
}
