//! Async helpers for the tests that run modelgate's own processes against the cluster:
//! the operator and proxy binaries as child processes on the test's kubeconfig, temporary
//! namespaces, server-side apply of resources, and waiting for conditions.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use modelgate_crds::config::Config;
use serde_json::{Value, json};
use std::{
    future::Future,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The operator's default router ConfigMap name.
pub const CM: &str = "modelgate-router";

/// A child process killed (hard) when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// SIGTERM, as Kubernetes stops a pod, then waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn binary(name: &str) -> PathBuf {
    let dir = std::env::var("MODELGATE_BIN_DIR").expect(
        "MODELGATE_BIN_DIR (the cargo target dir holding the binaries; tests/run.sh sets it)",
    );
    PathBuf::from(dir).join(name)
}

/// The operator for one namespace, with a short leader Lease.
pub fn start_operator(ns: &str, lease: &str) -> Process {
    start_operator_with_admin(ns, lease, free_port())
}

/// As [`start_operator`], with its admin endpoints (`/metrics`, `/readyz`) on `admin_port`.
pub fn start_operator_with_admin(ns: &str, lease: &str, admin_port: u16) -> Process {
    operator(Some(ns), ns, lease, admin_port)
}

/// The operator watching every namespace, its leader Lease in `lease_ns`.
pub fn start_operator_all_namespaces(lease_ns: &str, lease: &str, admin_port: u16) -> Process {
    operator(None, lease_ns, lease, admin_port)
}

fn operator(ns: Option<&str>, lease_ns: &str, lease: &str, admin_port: u16) -> Process {
    let scope: Vec<&str> = ns.map(|n| vec!["--namespace", n]).unwrap_or_default();
    Process(
        Command::new(binary("modelgate-operator"))
            .args(scope)
            .args(["--lease-namespace", lease_ns, "--lease-name", lease])
            .args([
                "--lease-duration",
                "4",
                "--admin-port",
                &admin_port.to_string(),
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting modelgate-operator"),
    )
}

/// A proxy replica serving `ns`'s router ConfigMap.
pub struct Proxy {
    pub process: Process,
    pub replica: String,
    pub port: u16,
}

impl Proxy {
    pub fn start(ns: &str, replica: &str, extra: &[&str], master_key: &str) -> Proxy {
        Self::start_with_env(ns, replica, extra, &[], master_key)
    }

    /// As [`Proxy::start`], with extra environment variables (the downward API's, say).
    pub fn start_with_env(
        ns: &str,
        replica: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        master_key: &str,
    ) -> Proxy {
        Self::spawn(&format!("{ns}/{CM}"), replica, extra, env, master_key)
    }

    /// As in a pod: `--configmap` names the ConfigMap alone, the namespace comes from
    /// `POD_NAMESPACE` (the downward API).
    pub fn start_in_pod_namespace(ns: &str, replica: &str, master_key: &str) -> Proxy {
        Self::spawn(CM, replica, &[], &[("POD_NAMESPACE", ns)], master_key)
    }

    fn spawn(
        configmap: &str,
        replica: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        master_key: &str,
    ) -> Proxy {
        let port = free_port();
        let process = Process(
            Command::new(binary("modelgate-proxy"))
                .args(["--configmap", configmap, "--replica-id", replica])
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--lease-duration", "3", "--drain-timeout", "10"])
                .args(extra)
                .envs(env.iter().copied())
                .env("LITELLM_MASTER_KEY", master_key)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("starting modelgate-proxy"),
        );
        Proxy {
            process,
            replica: replica.to_string(),
            port,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

pub async fn client() -> Client {
    assert!(
        std::env::var("KUBECONFIG").is_ok(),
        "{}",
        crate::NO_KUBECONFIG
    );
    Client::try_default().await.expect("a Kubernetes client")
}

pub fn ensure_crds() {
    // The same installer as the CRD tests, so all leave the CRDs owned by one manager.
    crate::Cluster::from_env()
        .ensure_crds()
        .expect("installing the CRDs");
}

/// A namespace deleted (without waiting) when dropped.
pub struct TempNs {
    pub name: String,
}

impl Drop for TempNs {
    fn drop(&mut self) {
        let _ = crate::Cluster::from_env().kubectl(&[
            "delete",
            "namespace",
            &self.name,
            "--wait=false",
        ]);
    }
}

pub async fn temp_ns(client: &Client, prefix: &str) -> TempNs {
    let name = crate::namespace_name(prefix);
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("a namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("creating the test namespace");
    TempNs { name }
}

/// Polls `f` every 50 ms until it returns `Some`; panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Server-side apply as the test's field manager.
pub async fn apply<K>(api: &Api<K>, obj: Value)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    let name = obj["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_string();
    api.patch(
        &name,
        &PatchParams::apply("modelgate-tests").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

pub fn md(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "modelgate.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name}, "spec": spec})
}

pub fn alias(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "modelgate.dev/v1alpha1", "kind": "ModelGroupAlias", "metadata": {"name": name}, "spec": spec})
}

/// The rendered config and its generation, once the ConfigMap satisfies `ok`.
pub async fn config_where(
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

/// (status, reason, message) of one condition in a status object.
pub fn condition(status: &Value, type_: &str) -> Option<(String, String, String)> {
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

pub async fn status_of<K>(api: &Api<K>, name: &str) -> Value
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    let obj = api
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"));
    serde_json::to_value(obj).unwrap_or_default()["status"].clone()
}

/// Waits until `name` has condition `type_` with `status` and `reason`; returns the status.
pub async fn wait_condition<K>(
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
