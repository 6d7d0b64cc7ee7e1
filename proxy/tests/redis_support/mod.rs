//! Helpers for the tests that run real proxy processes against a real redis-server: free
//! ports, starting and stopping both, readiness, requests, metrics and raw Redis reads.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A child process, killed (SIGKILL) when dropped.
pub struct Kill(pub Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Kill {
    /// Sends a signal by name (`STOP`, `CONT`) to the process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server on `port`, with `requirepass` when a password is given.
pub fn redis(port: u16, password: Option<&str>) -> Kill {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(pw) = password {
        args.extend(["--requirepass".to_string(), pw.to_string()]);
    }
    let child = Command::new("redis-server")
        .args(&args)
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

/// Runs redis-cli against the test server and returns its output.
pub fn cli(port: u16, password: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-p", &port.to_string()]).args(args);
    if let Some(pw) = password {
        cmd.env("REDISCLI_AUTH", pw);
    }
    String::from_utf8(cmd.output().unwrap().stdout).unwrap()
}

/// The sum of the shared counters whose keys match `pattern`.
pub fn shared_count(port: u16, password: Option<&str>, pattern: &str) -> u64 {
    cli(port, password, &["--scan", "--pattern", pattern])
        .lines()
        .filter(|k| !k.is_empty())
        .map(|k| {
            cli(port, password, &["GET", k])
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum()
}

/// A proxy process on `config`, with extra environment, its log (stdout and stderr)
/// written to `log` when given.
pub fn proxy(config: &Path, env: &[(&str, &str)], log: Option<&Path>) -> (Kill, String) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_modelgate-proxy"));
    cmd.args([
        "--config",
        config.to_str().unwrap(),
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ])
    .env("RUST_LOG", "warn")
    .envs(env.iter().copied());
    match log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            cmd.stdout(file.try_clone().unwrap()).stderr(file);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        }
    }
    (
        Kill(cmd.spawn().unwrap()),
        format!("http://127.0.0.1:{port}"),
    )
}

pub async fn readiness(http: &reqwest::Client, base: &str) -> Value {
    http.get(format!("{base}/health/readiness"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the proxy's readiness reports Redis `connected` as wanted.
pub async fn await_redis(http: &reqwest::Client, base: &str, connected: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last;
        match http.get(format!("{base}/health/readiness")).send().await {
            Ok(r) => {
                last = r.text().await.unwrap_or_default();
                if let Ok(v) = serde_json::from_str::<Value>(&last)
                    && v["cache"]["connected"] == connected
                {
                    return v;
                }
            }
            Err(e) => last = e.to_string(),
        }
        assert!(
            Instant::now() < deadline,
            "{base}: redis never connected={connected}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn ready(http: &reqwest::Client, base: &str) -> Value {
    await_redis(http, base, true).await
}

pub async fn chat(http: &reqwest::Client, base: &str, model: &str) -> reqwest::Response {
    http.post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

pub async fn metrics(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of an unlabelled counter in a Prometheus text page (0 when absent).
pub fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until at least `margin` seconds are left in the current minute, so a test's
/// requests land in one rpm window.
pub async fn fresh_minute(margin: u64) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if 60 - secs % 60 < margin {
        tokio::time::sleep(Duration::from_secs(60 - secs % 60) + Duration::from_millis(100)).await;
    }
}

/// Waits until every replica lists cooldown `id`; returns how long that took.
pub async fn cooldown_reaches(http: &reqwest::Client, bases: &[String], id: &str) -> Duration {
    let started = Instant::now();
    for b in bases {
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
                .any(|c| c["model_id"] == id)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "cooldown of {id} not shared with {b}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    started.elapsed()
}

/// Sends group `pair` requests to replica 0 until the failing deployment `bad` (mock
/// `upstream`) is cooled there, then checks that the other replicas avoid it: `bad` gets no
/// call but the first. Returns how long the cooldown took to reach the others.
pub async fn cooldown_is_shared(
    http: &reqwest::Client,
    bases: &[String],
    upstream: &modelgate_mock_upstream::MockUpstream,
) -> Duration {
    let mut n = 0;
    while upstream.hits() == 0 {
        assert_eq!(chat(http, &bases[0], "pair").await.status(), 200);
        n += 1;
        assert!(n < 60, "replica 0 never picked the bad deployment");
    }
    let took = cooldown_reaches(http, &bases[1..], "bad").await;
    for b in &bases[1..] {
        for _ in 0..20 {
            assert_eq!(chat(http, b, "pair").await.status(), 200);
        }
    }
    assert_eq!(
        upstream.hits(),
        1,
        "another replica called the cooled deployment"
    );
    took
}
