//! The real `modelgate-proxy` binary on a config file: edits under steady load show up in
//! `/v1/models` with no failed request; a broken file is reported and the last good config
//! keeps serving.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use modelgate_mock_upstream::{MockUpstream, Reply};
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

const KEY: &str = "sk-reload-test";

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

fn config(upstream: &str, groups: &[String]) -> String {
    let mut s = format!("general_settings: {{master_key: {KEY}}}\nmodel_list:\n");
    for g in groups {
        s.push_str(&format!(
            "  - model_name: {g}\n    litellm_params: {{model: openai/gpt-4o, api_base: '{upstream}'}}\n"
        ));
    }
    s
}

/// Replaces the file the way editors and config managers do: write aside, then rename.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn model_ids(http: &reqwest::Client, base: &str) -> Vec<String> {
    let v: serde_json::Value = http
        .get(format!("{base}/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_under_load_apply_without_failed_requests() {
    let up = MockUpstream::start(Reply::ok().with_latency(2))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let mut groups = vec!["stable".to_string()];
    std::fs::write(&path, config(&up.url(), &groups)).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _proxy = Proxy(
        Command::new(env!("CARGO_BIN_EXE_modelgate-proxy"))
            .args([
                "--config",
                path.to_str().unwrap(),
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("proxy.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let proxy_log = || std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default();
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http
        .get(format!("{base}/health/readiness"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "proxy did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Steady load: chat requests (normal and streaming) on the group that never changes.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reasons = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for i in 0..4 {
        let (http, base, stop, ok, failed, reasons) = (
            http.clone(),
            base.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
            reasons.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let body = serde_json::json!({"model": "stable", "stream": i % 2 == 0,
                                              "messages": [{"role": "user", "content": "hi"}]});
                let r = http
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(KEY)
                    .json(&body)
                    .send()
                    .await;
                let verdict = match r {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(t) if i % 2 != 0 || t.ends_with("data: [DONE]\n\n") => Ok(()),
                        Ok(t) => Err(format!("broken stream: {t}")),
                        Err(e) => Err(format!("body: {e}")),
                    },
                    Ok(r) => Err(format!(
                        "{}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => Err(format!("transport: {e}")),
                };
                match verdict {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        let mut r = reasons.lock().unwrap();
                        if r.len() < 5 {
                            r.push(e);
                        }
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }

    let mut latencies = Vec::new();
    for n in 0..20 {
        groups.push(format!("added-{n}"));
        let text = config(&up.url(), &groups);
        let t0 = Instant::now();
        if n % 2 == 0 {
            write_atomically(&path, &text)
        } else {
            std::fs::write(&path, &text).unwrap()
        }
        loop {
            if model_ids(&http, &base)
                .await
                .contains(&format!("added-{n}"))
            {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "edit {n} not visible after 5 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(t0.elapsed());
    }
    latencies.sort();
    println!(
        "file edit to /v1/models: p50 {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );

    // Half the edits above were plain (non-atomic) writes: a file caught half-written is
    // judged at the re-read, never reported as a broken config.
    let failures = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("modelgate_config_reloads_total{result=\"failure\"} "))
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    let metrics_text = || async {
        http.get(format!("{base}/metrics"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert_eq!(
        failures(&metrics_text().await),
        0,
        "edits were rejected:\n{}",
        proxy_log()
    );

    // A broken file: reported once (re-reads of the same file do not count again), and
    // the last good config keeps serving.
    let before = model_ids(&http, &base).await;
    write_atomically(&path, "model_list: [this is: not: valid");
    let t0 = Instant::now();
    loop {
        let r: serde_json::Value = http
            .get(format!("{base}/health/readiness"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["config"]["last_reload_error"].is_string() {
            assert_eq!(r["status"], "healthy");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "broken config not reported"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(model_ids(&http, &base).await, before);
    // Wait past the re-read 150 ms after the change: a double count would show here.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = metrics_text().await;
    assert_eq!(
        failures(&metrics),
        1,
        "{metrics}\nproxy log:\n{}",
        proxy_log()
    );

    // Fixed again: recovers.
    groups.push("after-fix".into());
    write_atomically(&path, &config(&up.url(), &groups));
    let t0 = Instant::now();
    while !model_ids(&http, &base)
        .await
        .contains(&"after-fix".to_string())
    {
        assert!(t0.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("requests during 21 reloads: {ok} ok, {failed} failed");
    assert!(ok > 100, "too little load to prove anything: {ok}");
    assert_eq!(failed, 0, "failures: {:?}", reasons.lock().unwrap());
}
