//! Propagation benchmark (not a test: it asserts nothing about time, it prints figures).
//! With the operator and two proxy replicas on the real control plane: how long from a
//! server-side apply to every replica's `/model/info` showing the change (an rpm change,
//! which `/v1/models` does not show; a new model reaches `/v1/models` in the same reload),
//! with 1 and with 2,000 ModelDeployments declared. Failed requests during 60 changes at
//! steady load are counted by `proxy_cluster.rs` (see docs/bench/propagation.md).
//!
//!     bench/propagation.sh     (starts the control plane; writes docs/bench/propagation.md)
#![allow(clippy::unwrap_used)] // A benchmark fails loudly on purpose.

use kube::Api;
use modelgate_crds::ModelDeployment;
use modelgate_tests::harness::{Proxy, apply, client, ensure_crds, md, start_operator, temp_ns};
use serde_json::{Value, json};
use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

const KEY: &str = "sk-bench";

async fn rpm_of(http: &reqwest::Client, p: &Proxy, id: &str) -> Option<u64> {
    let v: Value = http
        .get(p.url("/model/info"))
        .bearer_auth(KEY)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["data"]
        .as_array()?
        .iter()
        .find(|m| m["model_info"]["id"] == id)?["litellm_params"]["rpm"]
        .as_u64()
}

/// Applies `changes` rpm updates to `probe` one after another; returns each change's time
/// until both replicas serve it, sorted.
async fn measure(
    mds: &Api<ModelDeployment>,
    proxies: &[&Proxy],
    changes: u64,
    base: u64,
) -> Vec<Duration> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for i in 0..changes {
        let rpm = base + i;
        let t = Instant::now();
        apply(
            mds,
            md(
                "probe",
                json!({"modelName": "probe", "model": "openai/x", "mockResponse": "ok", "rpm": rpm}),
            ),
        )
        .await;
        for p in proxies {
            while rpm_of(&http, p, "probe").await != Some(rpm) {
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "change {i} never arrived"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        out.push(t.elapsed());
    }
    out.sort();
    out
}

/// Changes measured per size: enough that p99 is not simply the maximum.
const CHANGES: u64 = 100;

fn pct(v: &[Duration], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with bench/propagation.sh"]
async fn propagation() {
    let client = client().await;
    ensure_crds();
    let ns = temp_ns(&client, "mg-prop").await;
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns.name);
    let _op = start_operator(&ns.name, "op");
    let a = Proxy::start(&ns.name, "a", &[], KEY);
    let b = Proxy::start(&ns.name, "b", &[], KEY);
    let mut report = String::new();

    // Warm-up, not measured: the first change also waits for the operator to win its
    // Lease and sync its caches and for the proxies' first config (about a second).
    measure(&mds, &[&a, &b], 1, 999).await;
    let one = measure(&mds, &[&a, &b], CHANGES, 1000).await;
    let line = format!(
        "| 1 | {} | {:.0} | {:.0} | {:.0} |",
        one.len(),
        pct(&one, 0.5),
        pct(&one, 0.99),
        pct(&one, 1.0)
    );
    println!("{line}");
    report.push_str(&line);
    report.push('\n');

    // 2,000 ModelDeployments, applied 20 at a time.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..1999u32 {
        let mds = mds.clone();
        tasks.push(tokio::spawn(async move {
            apply(
                &mds,
                md(
                    &format!("bulk-{i:04}"),
                    json!({"modelName": format!("group-{}", i % 200), "model": "openai/gpt-4o", "mockResponse": "ok", "rpm": 60}),
                ),
            )
            .await;
        }));
        if tasks.len() == 20 {
            for t in tasks.drain(..) {
                t.await.unwrap();
            }
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let http = reqwest::Client::new();
    for p in [&a, &b] {
        loop {
            let n = http
                .get(p.url("/model/info"))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["data"].as_array().map(Vec::len));
            if n == Some(2000) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let bulk = started.elapsed();
    println!("2,000 ModelDeployments applied and served by both replicas in {bulk:?}");
    // Let the operator finish the first round of status writes (2,000 objects becoming
    // Ready) before measuring single changes.
    loop {
        let ready = mds
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|m| {
                m.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        if ready >= 2000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settled = started.elapsed();
    println!("... and all Ready after {settled:?}");
    let many = measure(&mds, &[&a, &b], CHANGES, 5000).await;
    let line = format!(
        "| 2,000 | {} | {:.0} | {:.0} | {:.0} |",
        many.len(),
        pct(&many, 0.5),
        pct(&many, 0.99),
        pct(&many, 1.0)
    );
    println!("{line}");
    report.push_str(&line);
    report.push('\n');

    let mut md_text = String::new();
    writeln!(
        md_text,
        "## Propagation (cluster)\n\nFrom a server-side apply of one ModelDeployment (an rpm change) until both proxy\nreplicas serve it on `/model/info`, with the operator between (real kube-apiserver\n1.36.3 and etcd on this machine, release binaries). Command: `bench/propagation.sh`.\nOne unmeasured change first, so start-up (leader election, cache sync, first config) is\nnot counted as propagation.\n\n| ModelDeployments declared | changes | p50 ms | p99 ms | max ms |\n|---:|---:|---:|---:|---:|\n{report}\nApplying 2,000 ModelDeployments (20 at a time) until both replicas served all of them took {:.1} s; all 2,000 were `Ready` after {:.1} s (the operator writes up to 16 statuses at once).\n\nWith 2,000 declared, a change costs about half a second: the operator re-renders and\nre-applies the whole ConfigMap and walks every object's status, and each proxy\nre-parses the YAML and rebuilds the router and listings of all 2,000 deployments.\n\nFailed requests during config changes under steady load: `tests/tests/proxy_cluster.rs`\n(`changes_breakage_and_outages_fail_no_request`) runs 60 changes under 8 clients, half\nstreaming, and asserts zero failures; its last run printed its figures in the test log.",
        bulk.as_secs_f64(),
        settled.as_secs_f64()
    )
    .unwrap();
    let out = std::env::var("BENCH_OUT").map_or_else(
        |_| modelgate_tests::repo_root().join("docs/bench/propagation.md"),
        std::path::PathBuf::from,
    );
    std::fs::write(&out, md_text).unwrap();
    println!("wrote {}", out.display());
}
