//! Three proxy processes on one config sharing a real redis-server: an rpm limit holds for
//! the whole gateway, a cooldown on one replica is honoured by the others, and a Redis
//! outage fails no request; sharing resumes when Redis is back.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use modelgate_mock_upstream::{MockUpstream, Reply};
use serde_json::{Value, json};
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

struct Kill(Child);
impl Drop for Kill {
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

fn redis(port: u16) -> Kill {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-server must be installed (tests/install-tools.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Kill(child)
}

fn proxy(config: &std::path::Path) -> (Kill, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_modelgate-proxy"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    (Kill(child), format!("http://127.0.0.1:{port}"))
}

async fn ready(http: &reqwest::Client, base: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last;
        match http.get(format!("{base}/health/readiness")).send().await {
            Ok(r) => {
                last = r.text().await.unwrap_or_default();
                if let Ok(v) = serde_json::from_str::<Value>(&last)
                    && v["cache"]["connected"] == true
                {
                    return v;
                }
            }
            Err(e) => last = e.to_string(),
        }
        assert!(
            Instant::now() < deadline,
            "{base} not ready with redis: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn chat(http: &reqwest::Client, base: &str, model: &str) -> reqwest::Response {
    http.post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

/// Waits until at least `margin` seconds are left in the current minute, so a test's
/// requests land in one rpm window.
async fn fresh_minute(margin: u64) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if 60 - secs % 60 < margin {
        tokio::time::sleep(Duration::from_secs(60 - secs % 60) + Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_limits_and_cooldowns_and_survive_redis_outages() {
    let redis_port = free_port();
    let mut server = redis(redis_port);
    let bad = MockUpstream::start(Reply::error(500, "broken deployment"))
        .await
        .unwrap();
    let good = MockUpstream::start(Reply::ok()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "general_settings: {{background_health_checks: false}}\nrouter_settings:\n  routing_strategy: usage-based-routing-v2\n  redis_host: 127.0.0.1\n  redis_port: {redis_port}\n  cooldown_time: 30\n  num_retries: 1\n\
             model_list:\n\
             \x20 - {{model_name: limited, litellm_params: {{model: openai/x, mock_response: ok, rpm: 60}}, model_info: {{id: limited}}}}\n\
             \x20 - {{model_name: pair, litellm_params: {{model: openai/gpt-4o, api_base: '{}', api_key: k, rpm: 100000}}, model_info: {{id: bad}}}}\n\
             \x20 - {{model_name: pair, litellm_params: {{model: openai/gpt-4o, api_base: '{}', api_key: k, rpm: 100000}}, model_info: {{id: good}}}}\n\
             \x20 - {{model_name: plenty, litellm_params: {{model: openai/x, mock_response: ok, rpm: 1000000}}, model_info: {{id: plenty}}}}\n",
            bad.url(),
            good.url()
        ),
    )
    .unwrap();
    let replicas: Vec<(Kill, String)> = (0..3).map(|_| proxy(&config)).collect();
    let bases: Vec<String> = replicas.iter().map(|r| r.1.clone()).collect();
    let http = reqwest::Client::new();
    for b in &bases {
        ready(&http, b).await;
    }

    // rpm 60 across three replicas: 150 requests spread over them, 10 at a time.
    fresh_minute(20).await;
    let mut tasks = Vec::new();
    for i in 0..150 {
        let base = bases[i % 3].clone();
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let r = chat(&http, &base, "limited").await;
            let retry_after = r.headers().get("retry-after").is_some();
            (r.status().as_u16(), retry_after)
        }));
    }
    let mut admitted = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => admitted += 1,
            (429, true) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    println!(
        "rpm 60 over 3 replicas: {admitted} admitted, {refused} refused with 429 + retry-after"
    );
    assert!((59..=61).contains(&admitted), "admitted {admitted}");
    assert_eq!(admitted + refused, 150);

    // A cooldown on one replica: the others avoid the deployment too.
    let mut n = 0;
    while bad.hits() == 0 {
        assert_eq!(chat(&http, &bases[0], "pair").await.status(), 200);
        n += 1;
        assert!(n < 60, "replica 0 never picked the bad deployment");
    }
    let started = Instant::now();
    for b in &bases[1..] {
        loop {
            let v: Value = http
                .get(format!("{b}/router/cooldowns"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if v["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["model_id"] == "bad")
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "cooldown not shared with {b}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    println!(
        "cooldown reached the other replicas in {} ms",
        started.elapsed().as_millis()
    );
    for b in &bases[1..] {
        for _ in 0..20 {
            assert_eq!(chat(&http, b, "pair").await.status(), 200);
        }
    }
    assert_eq!(
        bad.hits(),
        1,
        "the other replicas never called the cooled deployment"
    );

    // Redis killed mid-run: nothing fails; readiness says what is wrong.
    drop(server);
    let mut failed = 0;
    for i in 0..90 {
        if chat(&http, &bases[i % 3], "plenty").await.status() != 200 {
            failed += 1;
        }
    }
    assert_eq!(failed, 0, "requests failed because redis was down");
    let v: Value = http
        .get(format!("{}/health/readiness", bases[0]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["cache"]["connected"], false, "{v}");
    let m = http
        .get(format!("{}/metrics", bases[0]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("modelgate_redis_errors_total"), "{m}");

    // Redis back on the same port: sharing resumes without a restart.
    server = redis(redis_port);
    for b in &bases {
        ready(&http, b).await;
    }
    fresh_minute(15).await;
    let mut admitted = 0;
    // A fresh Redis has no counts: the local mirrors still remember this minute, so use a
    // new minute's worth by checking the shared counter directly.
    for i in 0..30 {
        if chat(&http, &bases[i % 3], "plenty").await.status() == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 30);
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &redis_port.to_string(),
            "--scan",
            "--pattern",
            "modelgate:*plenty*:rpm:*",
        ])
        .output()
        .unwrap();
    let key = String::from_utf8(out.stdout).unwrap();
    let key = key
        .lines()
        .next()
        .expect("the shared counter exists again")
        .to_string();
    let out = Command::new("redis-cli")
        .args(["-p", &redis_port.to_string(), "GET", &key])
        .output()
        .unwrap();
    let count: u64 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        count >= 30,
        "all three replicas counted in the restarted redis ({count})"
    );
    // Tokens are settled in the shared counter too (the mock answer reports 30 per call).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &redis_port.to_string(),
                "GET",
                &key.replace(":rpm:", ":tpm:"),
            ])
            .output()
            .unwrap();
        let tokens: u64 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap_or(0);
        if tokens >= 30 * 30 {
            break;
        }
        assert!(Instant::now() < deadline, "shared tpm counter at {tokens}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(server);
}

/// `redis_failure_mode: closed`: while Redis is away, a deployment with limits is refused
/// (429, `retry-after`) rather than served past a limit nobody can check; a deployment
/// without limits keeps serving; all recovers when Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_failure_mode_refuses_limited_deployments_while_redis_is_away() {
    let redis_port = free_port();
    let mut server = redis(redis_port);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "general_settings: {{background_health_checks: false}}\nrouter_settings:\n  routing_strategy: usage-based-routing-v2\n  redis_host: 127.0.0.1\n  redis_port: {redis_port}\n  redis_failure_mode: closed\n\
             model_list:\n\
             \x20 - {{model_name: limited, litellm_params: {{model: openai/x, mock_response: ok, rpm: 1000}}}}\n\
             \x20 - {{model_name: free, litellm_params: {{model: openai/x, mock_response: ok}}}}\n"
        ),
    )
    .unwrap();
    let (_proxy, base) = proxy(&config);
    let http = reqwest::Client::new();
    let r = ready(&http, &base).await;
    assert_eq!(r["cache"]["on_outage"], "closed", "{r}");
    fresh_minute(20).await;
    assert_eq!(chat(&http, &base, "limited").await.status(), 200);

    drop(server);
    let started = Instant::now();
    let refused = loop {
        let resp = chat(&http, &base, "limited").await;
        if resp.status() == 429 {
            break resp;
        }
        assert_eq!(resp.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still served past a limit nobody can check"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("redis_failure_mode is closed"),
        "{body}"
    );
    assert_eq!(chat(&http, &base, "free").await.status(), 200);

    server = redis(redis_port);
    let started = Instant::now();
    while chat(&http, &base, "limited").await.status() != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "limited deployment not served after redis came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
}
