//! The whole loop on a real kube-apiserver: resources applied with the API reach every
//! proxy replica (two `modelgate-proxy` processes on `--configmap`, with the operator
//! between), `Ready` says so only when it is true, Secrets rotate without a restart, and
//! nothing a client sees breaks while configs change, break, or the API server goes away.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{ConfigMap, Secret},
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
};
use modelgate_crds::{ModelDeployment, ModelGroupAlias};
use modelgate_mock_upstream::{MockUpstream, Reply};
use modelgate_tests::harness::{
    CM, Proxy, alias, apply, client, condition, config_where, ensure_crds, eventually, md,
    start_operator, status_of, temp_ns,
};
use serde_json::{Value, json};
use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

const KEY: &str = "sk-test-master";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let r = http.get(url).bearer_auth(KEY).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

fn model_ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Waits until `check` holds on every replica's `path`; prints and returns the time each
/// replica took from `since`.
async fn visible_on_all(
    what: &str,
    proxies: &[&Proxy],
    path: &str,
    since: Instant,
    check: impl Fn(&Value) -> bool,
) -> Vec<Duration> {
    let seen = time_until_visible(what, proxies, path, since, check).await;
    let shown: Vec<String> = proxies
        .iter()
        .zip(&seen)
        .map(|(p, d)| format!("{} {} ms", p.replica, d.as_millis()))
        .collect();
    println!("apply-to-visible, {what}: {}", shown.join(", "));
    seen
}

async fn time_until_visible(
    what: &str,
    proxies: &[&Proxy],
    path: &str,
    since: Instant,
    check: impl Fn(&Value) -> bool,
) -> Vec<Duration> {
    let http = http();
    let mut seen: Vec<Option<Duration>> = vec![None; proxies.len()];
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.iter().any(Option::is_none) {
        for (i, p) in proxies.iter().enumerate() {
            if seen[i].is_none()
                && let Some(v) = get_json(&http, &p.url(path)).await
                && check(&v)
            {
                seen[i] = Some(since.elapsed());
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not visible on every replica after 20 s ({seen:?})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    seen.into_iter().flatten().collect()
}

async fn chat(http: &reqwest::Client, p: &Proxy, model: &str) -> reqwest::Response {
    http.post(p.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

fn kubectl_wait_ready(ns: &str, object: &str) -> bool {
    Command::new("kubectl")
        .args([
            "wait",
            "-n",
            ns,
            "--for=condition=Ready",
            "--timeout=30s",
            object,
        ])
        .status()
        .unwrap()
        .success()
}

async fn ready_message<K>(api: &Api<K>, name: &str) -> String
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    condition(&status_of(api, name).await, "Ready")
        .map(|c| c.2)
        .unwrap_or_default()
}

fn secret(name: &str, key: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
           "stringData": {"api-key": key}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_state_reaches_every_replica() {
    let client = client().await;
    ensure_crds();
    let ns = temp_ns(&client, "mg-px").await;
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns.name);
    let aliases: Api<ModelGroupAlias> = Api::namespaced(client.clone(), &ns.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let mock = MockUpstream::start(Reply::ok()).await.unwrap();
    apply(&secrets, secret("upstream", "key-1")).await;
    let a = Proxy::start(&ns.name, "a", &["--model-management"], KEY);
    let b = Proxy::start(&ns.name, "b", &["--model-management"], KEY);
    let http = http();

    // No ConfigMap yet: not ready, and saying why.
    let r = eventually("proxy a answers", Duration::from_secs(10), || async {
        http.get(a.url("/health/readiness")).send().await.ok()
    })
    .await;
    assert_eq!(r.status(), 503);
    // The operator writes an empty config for its namespace: ready, with no models.
    let _op = start_operator(&ns.name, "op");
    visible_on_all(
        "empty config",
        &[&a, &b],
        "/v1/models",
        Instant::now(),
        |v| v["data"].as_array().is_some_and(Vec::is_empty),
    )
    .await;

    // Apply: a deployment with its key in a Secret.
    let spec = |rpm: u64, max_input: u64| {
        json!({"modelName": "chat", "model": "openai/gpt-4o", "apiBase": mock.url(),
               "apiKeySecretRef": {"name": "upstream", "key": "api-key"}, "rpm": rpm,
               "modelInfo": {"maxInputTokens": max_input}})
    };
    let t = Instant::now();
    apply(&mds, md("m1", spec(60, 1000))).await;
    visible_on_all("create", &[&a, &b], "/v1/models", t, |v| {
        model_ids(v) == ["chat"]
    })
    .await;
    for p in [&a, &b] {
        let info = get_json(&http, &p.url("/model/info")).await.unwrap();
        assert_eq!(info["data"][0]["model_info"]["id"], "m1");
        assert_eq!(info["data"][0]["litellm_params"]["rpm"], 60);
        assert!(
            !info.to_string().contains("key-1"),
            "a secret leaked: {info}"
        );
        let groups = get_json(&http, &p.url("/model_group/info")).await.unwrap();
        assert_eq!(groups["data"][0]["model_group"], "chat");
        let r = chat(&http, p, "chat").await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    assert!(
        mock.records()
            .iter()
            .all(|r| r.key.as_deref() == Some("key-1")),
        "every upstream call carries the key from the Secret"
    );
    eventually("/health on both", Duration::from_secs(10), || async {
        let mut ok = true;
        for p in [&a, &b] {
            let h = get_json(&http, &p.url("/health")).await?;
            ok &= h["healthy_count"] == 1 && h["unhealthy_count"] == 0;
        }
        ok.then_some(())
    })
    .await;
    assert!(kubectl_wait_ready(&ns.name, "modeldeployment/m1"));
    let msg = ready_message(&mds, "m1").await;
    assert!(msg.contains("2/2"), "{msg}");

    // Update rpm and model info. `kubectl wait` returns only once both replicas serve it.
    let t = Instant::now();
    apply(&mds, md("m1", spec(120, 2000))).await;
    assert!(kubectl_wait_ready(&ns.name, "modeldeployment/m1"));
    let waited = t.elapsed();
    for p in [&a, &b] {
        let info = get_json(&http, &p.url("/model/info")).await.unwrap();
        assert_eq!(
            info["data"][0]["litellm_params"]["rpm"], 120,
            "Ready before {} served the change",
            p.replica
        );
        assert_eq!(info["data"][0]["model_info"]["max_input_tokens"], 2000);
    }
    println!(
        "apply-to-Ready (kubectl wait) for an update: {} ms",
        waited.as_millis()
    );

    // Aliases: listed, hidden, removed.
    let t = Instant::now();
    apply(&aliases, alias("gpt", json!({"modelGroup": "chat"}))).await;
    visible_on_all("alias", &[&a, &b], "/v1/models", t, |v| {
        model_ids(v) == ["chat", "gpt"]
    })
    .await;
    assert!(kubectl_wait_ready(&ns.name, "modelgroupalias/gpt"));
    let t = Instant::now();
    apply(
        &aliases,
        alias("gpt", json!({"modelGroup": "chat", "hidden": true})),
    )
    .await;
    visible_on_all("hidden alias", &[&a, &b], "/v1/models", t, |v| {
        model_ids(v) == ["chat"]
    })
    .await;
    for p in [&a, &b] {
        assert_eq!(chat(&http, p, "gpt").await.status(), 200);
    }
    aliases
        .delete("gpt", &DeleteParams::default())
        .await
        .unwrap();
    let t = Instant::now();
    visible_on_all("alias removed", &[&a, &b], "/model/info", t, |v| {
        v["data"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    eventually("alias unroutable", Duration::from_secs(10), || async {
        let mut gone = true;
        for p in [&a, &b] {
            gone &= chat(&http, p, "gpt").await.status() == 400;
        }
        gone.then_some(())
    })
    .await;

    // Secret rotation: the next requests carry the new key, with no restart.
    let t = Instant::now();
    apply(&secrets, secret("upstream", "key-2")).await;
    eventually("rotated key used", Duration::from_secs(10), || async {
        mock.reset();
        for p in [&a, &b] {
            if chat(&http, p, "chat").await.status() != 200 {
                return None;
            }
        }
        let keys: Vec<_> = mock.records().into_iter().filter_map(|r| r.key).collect();
        (keys.len() >= 2 && keys.iter().all(|k| k == "key-2")).then_some(())
    })
    .await;
    println!(
        "secret rotation to both replicas: {} ms",
        t.elapsed().as_millis()
    );

    // Model management over HTTP: a model created through replica a is served by b.
    let r = http
        .post(a.url("/model/new"))
        .bearer_auth(KEY)
        .json(
            &json!({"model_name": "api-made", "litellm_params": {"model": "openai/gpt-4o-mini",
               "api_base": mock.url(), "api_key": "secret/upstream/api-key"},
               "model_info": {"id": "api-made-1"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["model_id"], "api-made-1");
    let t = Instant::now();
    visible_on_all("/model/new", &[&b], "/v1/models", t, |v| {
        model_ids(v) == ["api-made", "chat"]
    })
    .await;
    assert_eq!(chat(&http, &b, "api-made").await.status(), 200);
    assert!(mds.get_opt("api-made-1").await.unwrap().is_some());
    // A literal key is refused, and not echoed.
    let r = http
        .post(a.url("/model/new"))
        .bearer_auth(KEY)
        .json(&json!({"model_name": "x", "litellm_params": {"model": "openai/x", "api_key": "sk-literal"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(!r.text().await.unwrap().contains("sk-literal"));
    // Only with the master key.
    let r = http
        .post(a.url("/model/delete"))
        .json(&json!({"id": "api-made-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(b.url("/model/update"))
        .bearer_auth(KEY)
        .json(&json!({"model_info": {"id": "api-made-1"}, "litellm_params": {"rpm": 7}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let t = Instant::now();
    visible_on_all("/model/update", &[&a, &b], "/model/info", t, |v| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["model_info"]["id"] == "api-made-1" && m["litellm_params"]["rpm"] == 7)
    })
    .await;
    let r = http
        .post(b.url("/model/delete"))
        .bearer_auth(KEY)
        .json(&json!({"id": "api-made-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Delete: every replica serves an empty list.
    mds.delete("m1", &DeleteParams::default()).await.unwrap();
    let t = Instant::now();
    visible_on_all("delete", &[&a, &b], "/v1/models", t, |v| {
        model_ids(v).is_empty()
    })
    .await;
}

/// Sends chat requests (every other one streamed) to every proxy until stopped; counts
/// failures: non-2xx, transport errors, and streams that do not end with `[DONE]`.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(urls: Vec<String>, model: &str, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..workers)
            .map(|w| {
                let (stop, ok, failed, failures) =
                    (stop.clone(), ok.clone(), failed.clone(), failures.clone());
                let urls = urls.clone();
                let model = model.to_string();
                tokio::spawn(async move {
                    let http = http();
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let stream = i % 2 == 0;
                        let url = &urls[i % urls.len()];
                        let result = http
                            .post(format!("{url}/v1/chat/completions"))
                            .bearer_auth(KEY)
                            .json(&json!({"model": model, "stream": stream,
                                          "messages": [{"role": "user", "content": "hi"}]}))
                            .send()
                            .await;
                        let verdict = match result {
                            Ok(r) if r.status().is_success() => match r.text().await {
                                Ok(body)
                                    if !stream || body.trim_end().ends_with("data: [DONE]") =>
                                {
                                    Ok(())
                                }
                                Ok(body) => Err(format!("broken stream: {body}")),
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
                                failures.lock().unwrap().push(e);
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            failures,
            tasks,
        }
    }

    /// Stops the clients; returns (succeeded, failed, the first failures).
    async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let failures = self
            .failures
            .lock()
            .unwrap()
            .iter()
            .take(5)
            .cloned()
            .collect();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            failures,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_breakage_and_outages_fail_no_request() {
    let client = client().await;
    ensure_crds();
    let ns = temp_ns(&client, "mg-zd").await;
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns.name);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let mock = MockUpstream::start(Reply::ok()).await.unwrap();
    let _op = start_operator(&ns.name, "op");
    let stable = json!({"modelName": "chat", "model": "openai/gpt-4o", "apiBase": mock.url()});
    apply(&mds, md("stable", stable.clone())).await;
    let a = Proxy::start(&ns.name, "a", &[], KEY);
    let mut b = Proxy::start(&ns.name, "b", &[], KEY);
    visible_on_all(
        "first config",
        &[&a, &b],
        "/v1/models",
        Instant::now(),
        |v| model_ids(v) == ["chat"],
    )
    .await;
    assert!(kubectl_wait_ready(&ns.name, "modeldeployment/stable"));
    let urls = vec![a.url(""), b.url("")];

    // 60 config changes in a row under steady load (normal and streaming requests).
    let load = Load::start(urls.clone(), "chat", 8);
    let mut latencies = Vec::new();
    for i in 0..60u64 {
        let t = Instant::now();
        apply(
            &mds,
            md(
                "stable",
                json!({"modelName": "chat", "model": "openai/gpt-4o", "apiBase": mock.url(),
                       "rpm": 1000 + i}),
            ),
        )
        .await;
        let d = time_until_visible("change", &[&a, &b], "/model/info", t, |v| {
            v["data"][0]["litellm_params"]["rpm"] == 1000 + i
        })
        .await;
        latencies.extend(d);
    }
    let (ok, failed, failures) = load.finish().await;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_millis();
    println!(
        "60 changes under load: {ok} requests ok, {failed} failed; apply-to-visible p50 {} ms, p99 {} ms, max {} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    assert_eq!(
        failed, 0,
        "requests failed during config changes: {failures:?}"
    );
    assert!(ok > 100, "the load generator barely ran ({ok})");

    // A hand-broken ConfigMap: rejected, the last good config keeps serving; the operator
    // restores it.
    let load = Load::start(urls.clone(), "chat", 4);
    let mut cm = cms.get(CM).await.unwrap();
    cm.data
        .as_mut()
        .unwrap()
        .insert("config.yaml".into(), "model_list: [ {broken".into());
    cms.replace(CM, &PostParams::default(), &cm).await.unwrap();
    eventually(
        "the rejection is counted",
        Duration::from_secs(10),
        || async {
            let m = http()
                .get(a.url("/metrics"))
                .bearer_auth(KEY)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            m.contains("modelgate_config_reloads_total{result=\"failure\"} 1")
                .then_some(())
        },
    )
    .await;
    config_where(&cms, "restored", |c| c.model_list.len() == 1).await;

    // The API server goes away for 4 s (and the operator with it): requests keep working,
    // readiness says what is wrong, and everything resumes afterwards.
    let cm_rv = cms.get(CM).await.unwrap().metadata.resource_version;
    let md_rv = mds.get("stable").await.unwrap().metadata.resource_version;
    // Only the control plane this repository starts can be stopped; on your own cluster
    // (MODELGATE_USE_KUBECONFIG=1) this part is skipped.
    let own_plane = std::env::var("MODELGATE_USE_KUBECONFIG").as_deref() != Ok("1");
    if !own_plane {
        println!("skipping the API server outage: MODELGATE_USE_KUBECONFIG=1");
    }
    let restarter = tokio::task::spawn_blocking(move || {
        if !own_plane {
            return true;
        }
        Command::new("tests/control-plane.sh")
            .current_dir(modelgate_tests::repo_root())
            .args(["restart-apiserver", "4"])
            .status()
            .unwrap()
            .success()
    });
    let mut saw_source_error = false;
    while !restarter.is_finished() {
        let r: Value = http()
            .get(a.url("/health/readiness"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        saw_source_error |= !r["config"]["source_error"].is_null();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(restarter.await.unwrap(), "restarting the API server failed");
    let (ok, failed, failures) = load.finish().await;
    println!("broken ConfigMap + API server outage: {ok} requests ok, {failed} failed");
    assert_eq!(failed, 0, "requests failed: {failures:?}");
    assert!(
        saw_source_error,
        "readiness never reported the lost API server"
    );
    // No churn: the operator and proxies reconnect without rewriting anything.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        cms.get(CM).await.unwrap().metadata.resource_version,
        cm_rv,
        "ConfigMap rewritten after the API server restart"
    );
    assert_eq!(
        mds.get("stable").await.unwrap().metadata.resource_version,
        md_rv,
        "status rewritten after the API server restart"
    );
    let t = Instant::now();
    apply(
        &mds,
        md(
            "stable",
            json!({"modelName": "chat", "model": "openai/gpt-4o", "apiBase": mock.url(), "rpm": 5}),
        ),
    )
    .await;
    visible_on_all("after the outage", &[&a, &b], "/model/info", t, |v| {
        v["data"][0]["litellm_params"]["rpm"] == 5
    })
    .await;
    eventually("source error cleared", Duration::from_secs(10), || async {
        let r = get_json(&http(), &a.url("/health/readiness")).await?;
        r["config"]["source_error"].is_null().then_some(())
    })
    .await;

    // A replica that dies stops counting once its Lease expires; one that stops cleanly
    // at once.
    assert!(kubectl_wait_ready(&ns.name, "modeldeployment/stable"));
    let _ = b.process.0.kill();
    let killed = Instant::now();
    eventually("b's lease expires", Duration::from_secs(15), || async {
        let msg = ready_message(&mds, "stable").await;
        msg.contains("1/1").then_some(())
    })
    .await;
    println!(
        "a killed replica stopped counting after {} ms (lease 3 s)",
        killed.elapsed().as_millis()
    );
    apply(
        &mds,
        md(
            "stable",
            json!({"modelName": "chat", "model": "openai/gpt-4o", "apiBase": mock.url(), "rpm": 6}),
        ),
    )
    .await;
    assert!(kubectl_wait_ready(&ns.name, "modeldeployment/stable"));
    let mut c = Proxy::start(&ns.name, "c", &[], KEY);
    eventually("c counted", Duration::from_secs(15), || async {
        ready_message(&mds, "stable")
            .await
            .contains("2/2")
            .then_some(())
    })
    .await;
    assert!(
        c.process.terminate(Duration::from_secs(10)),
        "c did not exit on SIGTERM"
    );
    let names: Vec<String> = leases
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|l| l.metadata.name)
        .collect();
    assert!(
        !names.contains(&"modelgate-proxy-c".to_string()),
        "c kept its Lease: {names:?}"
    );
    eventually("c no longer counted", Duration::from_secs(10), || async {
        ready_message(&mds, "stable")
            .await
            .contains("1/1")
            .then_some(())
    })
    .await;
    let _ = &mut b;
}
