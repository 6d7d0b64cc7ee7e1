//! The operator as a process on a kubeconfig, against a real kube-apiserver: the
//! ConfigMap it renders, every status condition, missing Secrets, cross-object conflicts,
//! restarts without churn, hand edits, and leader takeover.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use modelgate_crds::{ModelDeployment, ModelGroupAlias, config::Config};
use serde_json::{Value, json};
use std::{
    future::Future,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const CM: &str = "modelgate-router";

struct Operator(Child);
impl Drop for Operator {
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

fn start_operator(ns: &str, lease: &str) -> Operator {
    let bin = std::path::Path::new(&std::env::var("MODELGATE_BIN_DIR").expect("MODELGATE_BIN_DIR"))
        .join("modelgate-operator");
    Operator(
        Command::new(bin)
            .args([
                "--namespace",
                ns,
                "--lease-namespace",
                ns,
                "--lease-name",
                lease,
            ])
            .args([
                "--lease-duration",
                "4",
                "--admin-port",
                &free_port().to_string(),
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

async fn client() -> Client {
    assert!(
        std::env::var("KUBECONFIG").is_ok(),
        "cluster tests need KUBECONFIG; run tests/run.sh or tests/control-plane.sh up"
    );
    Client::try_default().await.unwrap()
}

async fn ensure_crds() {
    // The same installer as the CRD tests, so both leave the CRDs owned by one manager.
    modelgate_tests::Cluster::from_env()
        .ensure_crds()
        .expect("installing the CRDs");
}

struct TempNs {
    name: String,
    client: Client,
}
impl Drop for TempNs {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .output();
        let _ = &self.client;
    }
}

async fn temp_ns(client: &Client, prefix: &str) -> TempNs {
    let name = format!(
        "{prefix}-{}",
        std::process::id() as u64 * 1000 + (Instant::now().elapsed().subsec_nanos() as u64 % 1000)
    );
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    TempNs {
        name,
        client: client.clone(),
    }
}

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn apply<K>(api: &Api<K>, obj: Value)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(
        &name,
        &PatchParams::apply("modelgate-tests").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap();
}

fn md(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "modelgate.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name}, "spec": spec})
}

fn alias(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "modelgate.dev/v1alpha1", "kind": "ModelGroupAlias", "metadata": {"name": name}, "spec": spec})
}

/// The rendered config and its generation, once the ConfigMap satisfies `ok`.
async fn config_where(
    cms: &Api<ConfigMap>,
    what: &str,
    ok: impl Fn(&Config) -> bool,
) -> (Config, i64) {
    eventually(what, Duration::from_secs(20), || async {
        let cm = cms.get_opt(CM).await.ok()??;
        let text = cm.data.as_ref()?.get("config.yaml")?.clone();
        let cfg = Config::from_yaml(&text).ok()?;
        let generation = cm
            .metadata
            .annotations
            .as_ref()?
            .get("modelgate.dev/config-generation")?
            .parse()
            .ok()?;
        ok(&cfg).then_some((cfg, generation))
    })
    .await
}

fn condition(status: &Value, type_: &str) -> Option<(String, String, String)> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
}

async fn status_of<K>(api: &Api<K>, name: &str) -> Value
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    let obj = api.get(name).await.unwrap();
    serde_json::to_value(obj).unwrap()["status"].clone()
}

async fn wait_condition<K>(
    api: &Api<K>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> Value
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    eventually(
        &format!("{name} {type_}={status} ({reason})"),
        Duration::from_secs(20),
        || async {
            let st = status_of(api, name).await;
            let (s, r, _) = condition(&st, type_)?;
            (s == status && r == reason).then_some(st)
        },
    )
    .await
}

#[tokio::test]
async fn renders_reports_and_recovers() {
    let client = client().await;
    ensure_crds().await;
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
    apply(
        &secrets,
        secret(json!({"api-key": "sk-never-in-configmap"})),
    )
    .await;
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
    wait_condition(&mds, "azure-eu", "Programmed", "True", "Programmed").await;
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
    ensure_crds().await;
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

    // Restart: nothing is rewritten.
    drop(op);
    let op = start_operator(&ns.name, "op");
    tokio::time::sleep(Duration::from_secs(6)).await;
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
    drop(standby);
}
