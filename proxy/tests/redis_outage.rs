//! Redis outages under real proxy processes: killed while requests are in flight (none
//! fails, the error metric rises, readiness says so), restarted (counting and cooldown
//! sharing resume), hung by SIGSTOP (requests are still served promptly on local counters),
//! and the fail-closed mode.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod redis_support;

use modelgate_mock_upstream::{MockUpstream, Reply};
use redis_support::*;
use serde_json::Value;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_fails_nothing_and_sharing_resumes_after_restart() {
    let redis_port = free_port();
    let server = redis(redis_port, None);
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
             \x20 - {{model_name: pair, litellm_params: {{model: openai/gpt-4o, api_base: '{}', api_key: k, rpm: 100000}}, model_info: {{id: bad}}}}\n\
             \x20 - {{model_name: pair, litellm_params: {{model: openai/gpt-4o, api_base: '{}', api_key: k, rpm: 100000}}, model_info: {{id: good}}}}\n\
             \x20 - {{model_name: plenty, litellm_params: {{model: openai/x, mock_response: ok, rpm: 1000000}}, model_info: {{id: plenty}}}}\n",
            bad.url(),
            good.url()
        ),
    )
    .unwrap();
    let replicas: Vec<(Kill, String)> = (0..3).map(|_| proxy(&config, &[], None)).collect();
    let bases: Vec<String> = replicas.iter().map(|r| r.1.clone()).collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut errors_before = Vec::new();
    for b in &bases {
        ready(&http, b).await;
        errors_before.push(counter(
            &metrics(&http, b).await,
            "modelgate_redis_errors_total",
        ));
    }

    // Two clients per replica keep requests in flight while Redis is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let mut clients = Vec::new();
    for i in 0..6 {
        let (http, base) = (http.clone(), bases[i % 3].clone());
        let (stop, killed_at) = (stop.clone(), killed_at.clone());
        clients.push(tokio::spawn(async move {
            let (mut before, mut after, mut failed) = (0, 0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let status = match http
                    .post(format!("{base}/v1/chat/completions"))
                    .json(&serde_json::json!({"model": "plenty", "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                {
                    Ok(r) => r.status().to_string(),
                    Err(e) => e.to_string(),
                };
                if status != "200 OK" {
                    failed.push(status);
                }
                match *killed_at.lock().unwrap() {
                    Some(k) if sent >= k => after += 1,
                    _ => before += 1,
                }
            }
            (before, after, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    *killed_at.lock().unwrap() = Some(Instant::now());
    drop(server);
    for b in &bases {
        let v = await_redis(&http, b, false).await;
        assert!(v["cache"]["error"].is_string(), "{v}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut before, mut after, mut failed) = (0, 0, Vec::new());
    for c in clients {
        let (b, a, f) = c.await.unwrap();
        (before, after) = (before + b, after + a);
        failed.extend(f);
    }
    println!("redis killed under load: {before} requests before, {after} after, 0 failed");
    assert!(
        failed.is_empty(),
        "requests failed during the outage: {failed:?}"
    );
    assert!(before > 0 && after > 0, "{before} before, {after} after");
    for (b, was) in bases.iter().zip(errors_before) {
        let now = counter(&metrics(&http, b).await, "modelgate_redis_errors_total");
        assert!(now > was, "{b}: redis errors {was} -> {now}");
    }

    // Redis back on the same port: counting resumes on every replica without a restart.
    let _server = redis(redis_port, None);
    for b in &bases {
        ready(&http, b).await;
    }
    for i in 0..30 {
        assert_eq!(chat(&http, &bases[i % 3], "plenty").await.status(), 200);
    }
    let count = shared_count(redis_port, None, "modelgate:*plenty*:rpm:*");
    assert!(count >= 30, "the restarted redis counted {count}");
    // Tokens are settled in the shared counter too (the mock answer reports 30 per call).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tokens = shared_count(redis_port, None, "modelgate:*plenty*:tpm:*");
        if tokens >= 30 * 30 {
            break;
        }
        assert!(Instant::now() < deadline, "shared tpm counter at {tokens}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A cooldown set after the restart reaches the other replicas again.
    let took = cooldown_is_shared(&http, &bases, &bad).await;
    println!(
        "after the restart a cooldown reached the others in {} ms",
        took.as_millis()
    );
}

/// A Redis that hangs (SIGSTOP) instead of going away: requests are still served, each
/// within a bound, and after a few timeouts without waiting for it at all; once it
/// resumes (SIGCONT) the shared counters move again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_delays_requests_by_at_most_the_timeout_and_sharing_resumes() {
    let redis_port = free_port();
    let server = redis(redis_port, None);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "general_settings: {{background_health_checks: false}}\nrouter_settings:\n  routing_strategy: usage-based-routing-v2\n  redis_host: 127.0.0.1\n  redis_port: {redis_port}\n  redis_timeout: 0.2\n\
             model_list:\n\
             \x20 - {{model_name: plenty, litellm_params: {{model: openai/x, mock_response: ok, rpm: 1000000}}, model_info: {{id: plenty}}}}\n"
        ),
    )
    .unwrap();
    let replicas: Vec<(Kill, String)> = (0..2).map(|_| proxy(&config, &[], None)).collect();
    let bases: Vec<String> = replicas.iter().map(|r| r.1.clone()).collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for b in &bases {
        ready(&http, b).await;
    }
    assert_eq!(chat(&http, &bases[0], "plenty").await.status(), 200);

    server.signal("STOP");
    let mut took = Vec::new();
    for i in 0..40 {
        let sent = Instant::now();
        let status = chat(&http, &bases[i % 2], "plenty").await.status();
        took.push(sent.elapsed());
        assert_eq!(status, 200, "request {i} while redis hangs");
    }
    let slowest = *took.iter().max().unwrap();
    took.sort();
    let median = took[took.len() / 2];
    println!("redis hung: median {median:?}, slowest {slowest:?} (redis_timeout 200ms)");
    assert!(slowest < Duration::from_secs(1), "slowest {slowest:?}");
    // Without the breaker every request would wait the full 200 ms.
    assert!(median < Duration::from_millis(100), "median {median:?}");
    for b in &bases {
        await_redis(&http, b, false).await;
    }

    server.signal("CONT");
    for b in &bases {
        ready(&http, b).await;
    }
    let pattern = "modelgate:*plenty*:rpm:*";
    let before = shared_count(redis_port, None, pattern);
    for i in 0..20 {
        assert_eq!(chat(&http, &bases[i % 2], "plenty").await.status(), 200);
    }
    let after = shared_count(redis_port, None, pattern);
    assert!(
        after >= before + 20,
        "shared counting did not resume: {before} -> {after}"
    );
}

/// `redis_failure_mode: closed`: while Redis is away, a deployment with limits is refused
/// (429, `retry-after`) rather than served past a limit nobody can check; a deployment
/// without limits keeps serving; all recovers when Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_failure_mode_refuses_limited_deployments_while_redis_is_away() {
    let redis_port = free_port();
    let server = redis(redis_port, None);
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
    let (_proxy, base) = proxy(&config, &[], None);
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

    let _server = redis(redis_port, None);
    let started = Instant::now();
    while chat(&http, &base, "limited").await.status() != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "limited deployment not served after redis came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
