//! HTTPS upstreams (OpenAI, Azure, a vLLM behind TLS): certificates are checked against
//! the public roots plus the system's, and `SSL_CERT_FILE` adds a private CA, as with
//! LiteLLM's httpx. The upstream here is a TLS server with a certificate from a CA the
//! test makes; without that CA the call fails with a clear connection error.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{self, pki_types::PrivateKeyDer},
};

const KEY: &str = "sk-tls-test";

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

/// A one-route HTTPS/1.1 upstream: every request gets the same chat completion.
async fn tls_upstream(cert: rcgen::Certificate, key: &KeyPair) -> u16 {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                // Read the head and the body its content-length announces.
                loop {
                    let Ok(n) = tls.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if got.len() >= head_end + 4 + len {
                            break;
                        }
                    }
                }
                let body = r#"{"id":"c","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"over tls"},"finish_reason":"stop"}]}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

async fn start_proxy(config: &std::path::Path, cert_file: &std::path::Path) -> (Proxy, String) {
    let port = free_port();
    let proxy = Proxy(
        Command::new(env!("CARGO_BIN_EXE_modelgate-proxy"))
            .args(["--config", config.to_str().unwrap()])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("SSL_CERT_FILE", cert_file)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
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
    (proxy, base)
}

async fn chat(base: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_against_the_trusted_roots() {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let port = tls_upstream(leaf, &leaf_key).await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "general_settings: {{master_key: {KEY}, background_health_checks: false}}\nmodel_list:\n  - model_name: g\n    litellm_params: {{model: openai/gpt-4o, api_base: 'https://localhost:{port}/v1', api_key: sk-up}}\n"
        ),
    )
    .unwrap();
    let trusted = dir.path().join("ca.pem");
    std::fs::write(&trusted, ca.pem()).unwrap();
    let (_proxy, base) = start_proxy(&config, &trusted).await;
    let (status, body) = chat(&base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "over tls");
    assert_eq!(body["model"], "g");

    // Without the CA, the certificate is refused and the client is told why.
    let empty = dir.path().join("none.pem");
    std::fs::write(&empty, "").unwrap();
    let (_proxy, base) = start_proxy(&config, &empty).await;
    let (status, body) = chat(&base).await;
    assert_eq!(status, 500, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("litellm.APIConnectionError") && message.contains("certificate"),
        "{message}"
    );
}
