//! The operator as a process on a kubeconfig, against a real kube-apiserver: the
//! ConfigMap it renders, every status condition, missing Secrets, cross-object conflicts,
//! restarts without churn, hand edits, and leader takeover.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{ConfigMap, Secret},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, PostParams},
};
use modelgate_crds::{ModelDeployment, ModelGroupAlias};
use modelgate_tests::harness::{
    CM, Proxy, alias, apply, client, condition, config_where, ensure_crds, eventually, free_port,
    md, start_operator, start_operator_all_namespaces, start_operator_with_admin, status_of,
    temp_ns, wait_condition,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::{
    process::Command,
    time::{Duration, Instant},
};

#[tokio::test]
async fn renders_reports_and_recovers() {
    let client = client().await;
    ensure_crds();
    let ns = temp_ns(&client, "mg-op").await;
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns.name);
    let aliases: Api<ModelGroupAlias> = Api::namespaced(client.clone(), &ns.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let _op = start_operator(&ns.name, "op-a");

    // A mock deployment, one that needs a Secret that does not exist yet, and an alias.
    apply(
        &mds,
        md(
            "demo",
            json!({"modelName": "demo", "model": "openai/gpt-4o", "mockResponse": "hi", "rpm": 60}),
        ),
    )
    .await;
    apply(&mds, md("azure-eu", json!({"modelName": "gpt-4o", "model": "azure/gpt-4o-eu",
        "apiBase": "https://eu.example.com", "apiKeySecretRef": {"name": "azure", "key": "api-key"}}))).await;
    apply(&aliases, alias("gpt-4", json!({"modelGroup": "gpt-4o"}))).await;

    let (cfg, g1) = config_where(&cms, "the demo deployment", |c| c.model_list.len() == 1).await;
    assert_eq!(cfg.model_list[0].model_name, "demo");
    assert_eq!(cfg.model_list[0].model_info["id"], "demo");
    let st = wait_condition(&mds, "demo", "Programmed", "True", "Programmed").await;
    assert_eq!(st["deploymentId"], "demo");
    assert!(
        condition(&st, "Programmed")
            .unwrap()
            .2
            .contains(&format!("generation {g1}"))
    );
    assert_eq!(condition(&st, "Accepted").unwrap().0, "True");
    let st = wait_condition(&mds, "azure-eu", "ResolvedRefs", "False", "SecretNotFound").await;
    assert!(
        condition(&st, "ResolvedRefs")
            .unwrap()
            .2
            .contains("\"azure\"")
    );
    assert_eq!(condition(&st, "Programmed").unwrap().0, "False");
    wait_condition(&aliases, "gpt-4", "ResolvedRefs", "False", "GroupNotFound").await;

    // kubectl wait works on Programmed.
    let ok = Command::new("kubectl")
        .args([
            "wait",
            "-n",
            &ns.name,
            "--for=condition=Programmed",
            "--timeout=20s",
            "modeldeployment/demo",
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok);

    // The Secret appears (with the wrong key first): each step is reported, then it recovers.
    let secret = |data: Value| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "azure"}, "stringData": data});
    apply(&secrets, secret(json!({"other": "x"}))).await;
    wait_condition(
        &mds,
        "azure-eu",
        "ResolvedRefs",
        "False",
        "SecretKeyNotFound",
    )
    .await;
    secrets
        .delete("azure", &DeleteParams::default())
        .await
        .unwrap();
    // `kubectl wait` started while azure-eu is not programmed returns once it is.
    let waiting_ns = ns.name.clone();
    let waiter = std::thread::spawn(move || {
        Command::new("kubectl")
            .args([
                "wait",
                "-n",
                &waiting_ns,
                "--for=condition=Programmed",
                "--timeout=30s",
            ])
            .arg("modeldeployment/azure-eu")
            .status()
            .unwrap()
            .success()
    });
    std::thread::sleep(Duration::from_millis(300));
    let st = status_of(&mds, "azure-eu").await;
    assert_eq!(condition(&st, "Programmed").unwrap().0, "False");
    apply(
        &secrets,
        secret(json!({"api-key": "sk-never-in-configmap"})),
    )
    .await;
    assert!(
        waiter.join().unwrap(),
        "kubectl wait did not see Programmed"
    );
    let (cfg, g2) = config_where(&cms, "azure-eu rendered", |c| c.model_list.len() == 2).await;
    assert!(g2 > g1);
    let azure = cfg
        .model_list
        .iter()
        .find(|d| d.model_name == "gpt-4o")
        .unwrap();
    assert_eq!(
        azure.litellm_params.api_key.as_deref(),
        Some("secret/azure/api-key")
    );
    let raw = cms.get(CM).await.unwrap().data.unwrap()["config.yaml"].clone();
    assert!(!raw.contains("sk-never-in-configmap"));
    let st = wait_condition(&mds, "azure-eu", "Programmed", "True", "Programmed").await;
    let object = mds.get("azure-eu").await.unwrap();
    assert_eq!(st["observedGeneration"], json!(object.metadata.generation));
    // The content hash annotation is the SHA-256 of what the ConfigMap holds.
    let cm = cms.get(CM).await.unwrap();
    let digest = Sha256::digest(cm.data.as_ref().unwrap()["config.yaml"].as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(cm.annotations()["modelgate.dev/config-hash"], hex);
    // Each flip of a condition was an Event: the missing Secret a Warning, the recovery
    // a Normal one.
    let events = Command::new("kubectl")
        .args(["get", "events", "-n", &ns.name, "-o", "json"])
        .args(["--field-selector", "involvedObject.name=azure-eu"])
        .output()
        .unwrap();
    let events: Value = serde_json::from_slice(&events.stdout).unwrap();
    let seen: Vec<(String, String)> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    for expected in [
        ("Warning", "SecretNotFound"),
        ("Normal", "Resolved"),
        ("Normal", "Programmed"),
    ] {
        assert!(
            seen.iter()
                .any(|(t, r)| (t.as_str(), r.as_str()) == expected),
            "no {expected:?} Event in {seen:?}"
        );
    }
    wait_condition(&aliases, "gpt-4", "ResolvedRefs", "True", "Resolved").await;
    let (cfg, _) = config_where(&cms, "alias rendered", |c| {
        !c.router_settings.model_group_alias.is_empty()
    })
    .await;
    assert_eq!(
        cfg.router_settings.model_group_alias["gpt-4"].group(),
        "gpt-4o"
    );

    // Conflicts: shadowing a group, and two aliases with one name (the older wins).
    apply(
        &aliases,
        alias("shadow", json!({"alias": "demo", "modelGroup": "gpt-4o"})),
    )
    .await;
    wait_condition(&aliases, "shadow", "ResolvedRefs", "False", "ShadowsGroup").await;
    apply(
        &aliases,
        alias("first", json!({"alias": "best", "modelGroup": "demo"})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // creationTimestamp has 1 s resolution
    apply(
        &aliases,
        alias(
            "second",
            json!({"alias": "best", "modelGroup": "gpt-4o", "hidden": true}),
        ),
    )
    .await;
    let st = wait_condition(
        &aliases,
        "second",
        "ResolvedRefs",
        "False",
        "DuplicateAlias",
    )
    .await;
    assert!(condition(&st, "ResolvedRefs").unwrap().2.contains("first"));
    let (cfg, _) = config_where(&cms, "best alias", |c| {
        c.router_settings.model_group_alias.contains_key("best")
    })
    .await;
    assert_eq!(
        cfg.router_settings.model_group_alias["best"].group(),
        "demo"
    );

    // Update: the content changes, the generation rises; lastTransitionTime stays.
    let before = status_of(&mds, "demo").await;
    apply(&mds, md("demo", json!({"modelName": "demo", "model": "openai/gpt-4o", "mockResponse": "hi", "rpm": 120}))).await;
    let (_, g3) = config_where(&cms, "rpm 120", |c| {
        c.model_list
            .iter()
            .any(|d| d.litellm_params.rpm == Some(120))
    })
    .await;
    let after = wait_condition(&mds, "demo", "Programmed", "True", "Programmed").await;
    let t = |s: &Value| {
        s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Accepted")
            .unwrap()["lastTransitionTime"]
            .clone()
    };
    assert_eq!(
        t(&before),
        t(&after),
        "Accepted did not flip, so its time must not move"
    );
    assert!(g3 > g2);

    // A hand edit is restored.
    let mut cm = cms.get(CM).await.unwrap();
    cm.data
        .as_mut()
        .unwrap()
        .insert("config.yaml".into(), "model_list: []\n".into());
    cms.replace(CM, &PostParams::default(), &cm).await.unwrap();
    let (cfg, g4) = config_where(&cms, "hand edit restored", |c| c.model_list.len() == 2).await;
    assert!(g4 > g3);
    assert_eq!(cfg.model_list.len(), 2);
    let events = Command::new("kubectl")
        .args(["get", "events", "-n", &ns.name, "-o", "json"])
        .output()
        .unwrap();
    let events: Value = serde_json::from_slice(&events.stdout).unwrap();
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "ConfigMapRestored"),
        "no restore Event"
    );

    // Deleted: recreated, numbered above every generation before (a replica still serving
    // an old one must not count as serving the new).
    cms.delete(CM, &DeleteParams::default()).await.unwrap();
    let (_, g5) = config_where(&cms, "ConfigMap recreated", |c| c.model_list.len() == 2).await;
    assert!(g5 > g4, "recreated as generation {g5} after {g4}");

    // Delete everything: a valid empty config remains.
    for name in ["demo", "azure-eu"] {
        mds.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in ["gpt-4", "shadow", "first", "second"] {
        aliases
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    config_where(&cms, "empty config", |c| {
        c.model_list.is_empty() && c.router_settings.model_group_alias.is_empty()
    })
    .await;
}

#[tokio::test]
async fn restarts_cause_no_churn_and_a_standby_takes_over() {
    let client = client().await;
    ensure_crds();
    let ns = temp_ns(&client, "mg-le").await;
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns.name);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &mds,
        md(
            "one",
            json!({"modelName": "g", "model": "openai/gpt-4o", "mockResponse": "1"}),
        ),
    )
    .await;
    let op = start_operator(&ns.name, "op");
    let (_, g1) = config_where(&cms, "first render", |c| c.model_list.len() == 1).await;
    wait_condition(&mds, "one", "Programmed", "True", "Programmed").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rv_cm = cms.get(CM).await.unwrap().metadata.resource_version;
    let rv_md = mds.get("one").await.unwrap().metadata.resource_version;

    // Restart: the new process leads and reconciles (seen on its own metrics), and
    // rewrites nothing.
    drop(op);
    let admin = free_port();
    let op = start_operator_with_admin(&ns.name, "op", admin);
    let metrics = eventually(
        "the restarted operator leads and reconciles",
        Duration::from_secs(20),
        || async {
            let text = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let leads = metric(&text, "modelgate_operator_leader") == Some(1.0);
            let reconciled = metric(&text, "modelgate_operator_reconciles_total{result=\"ok\"}")
                .is_some_and(|n| n >= 1.0);
            (leads && reconciled).then_some(text)
        },
    )
    .await;
    assert_eq!(
        metric(&metrics, "modelgate_operator_configmap_writes_total"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "modelgate_operator_status_writes_total"),
        Some(0.0),
        "{metrics}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        cms.get(CM).await.unwrap().metadata.resource_version,
        rv_cm,
        "ConfigMap rewritten on restart"
    );
    assert_eq!(
        mds.get("one").await.unwrap().metadata.resource_version,
        rv_md,
        "status rewritten on restart"
    );
    let (_, g) = config_where(&cms, "same generation", |_| true).await;
    assert_eq!(g, g1);

    // Two replicas; kill the leader (hard, no step-down): the standby takes over.
    let standby = start_operator(&ns.name, "op");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    let mut op = op;
    let _ = op.0.kill();
    apply(
        &mds,
        md(
            "two",
            json!({"modelName": "g", "model": "openai/gpt-4o-mini", "mockResponse": "2"}),
        ),
    )
    .await;
    config_where(&cms, "standby reconciles after takeover", |c| {
        c.model_list.len() == 2
    })
    .await;
    println!(
        "standby took over and reconciled {:?} after the leader was killed",
        killed.elapsed()
    );

    // A leader stopped as Kubernetes stops a pod (SIGTERM) releases its Lease on the way
    // out, so a standby need not wait for it to expire.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let holder = || async {
        leases
            .get("op")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.holder_identity)
    };
    assert!(holder().await.is_some(), "the standby leads");
    let mut standby = standby;
    assert!(
        standby.terminate(Duration::from_secs(10)),
        "no exit on SIGTERM"
    );
    assert_eq!(
        holder().await,
        None,
        "the Lease still names the stopped leader"
    );
}

#[tokio::test]
async fn an_all_namespaces_operator_serves_every_gateway_namespace() {
    let client = client().await;
    ensure_crds();
    let x = temp_ns(&client, "mg-all-x").await;
    let y = temp_ns(&client, "mg-all-y").await;
    let z = temp_ns(&client, "mg-all-z").await;
    for (ns, group) in [(&x, "gx"), (&y, "gy")] {
        let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns.name);
        apply(
            &mds,
            md(
                "m",
                json!({"modelName": group, "model": "openai/gpt-4o", "mockResponse": "hi"}),
            ),
        )
        .await;
    }
    let admin = free_port();
    let _op = start_operator_all_namespaces(&x.name, "op-all", admin);
    for (ns, group) in [(&x, "gx"), (&y, "gy")] {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
        config_where(&cms, &format!("{group} rendered"), |c| {
            c.model_list.len() == 1 && c.model_list[0].model_name == group
        })
        .await;
    }
    // A namespace with only a proxy replica waiting is a gateway too: it gets an empty
    // config, and the replica becomes ready on it. (The replica names its ConfigMap alone,
    // as in a pod, and takes the namespace from POD_NAMESPACE.)
    let proxy = Proxy::start_in_pod_namespace(&z.name, "z", "sk-all");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &z.name);
    config_where(&cms, "empty config for a waiting proxy", |c| {
        c.model_list.is_empty()
    })
    .await;
    let ready: Value = eventually(
        "the waiting proxy is ready",
        Duration::from_secs(20),
        || async {
            let r = reqwest::get(proxy.url("/health/readiness")).await.ok()?;
            if !r.status().is_success() {
                return None;
            }
            r.json().await.ok()
        },
    )
    .await;
    assert_eq!(
        ready["config"]["source"],
        format!("configmap:{}/{CM}", z.name),
        "{ready}"
    );
    let healthz = reqwest::get(format!("http://127.0.0.1:{admin}/healthz"))
        .await
        .unwrap();
    assert!(healthz.status().is_success());
}

/// The value of the sample `series` (name and labels, as printed) in a Prometheus text body.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
