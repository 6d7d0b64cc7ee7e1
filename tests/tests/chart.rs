//! The Helm charts (charts/modelgate, charts/modelgate-crds) with the real `helm` and a real
//! kube-apiserver: `helm lint`; what `helm template` renders, with the defaults and with
//! every optional feature on (tests/chart/all-features.yaml); every rendering checked by
//! `kubectl apply --dry-run=server`; the CRD chart renders exactly the generated CRDs; the
//! binaries accept the arguments the chart gives them; and least privilege, proven with
//! `kubectl auth can-i` and real requests as each ServiceAccount, including the
//! ValidatingAdmissionPolicy that limits a proxy pod to its own Lease.
//!
//! Needs KUBECONFIG, kubectl and helm (`$MODELGATE_TOOLS_BIN`, as tests/run.sh sets it, else
//! `PATH`), and MODELGATE_BIN_DIR for the argument check.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use modelgate_tests::{Cluster, KubectlOutput, namespace_name, repo_root, retry};
use serde::Deserialize;
use serde_json::{Value, json};

const RELEASE: &str = "mg";
/// The defaults' object names for the release `mg`.
const OPERATOR: &str = "mg-modelgate-operator";
const PROXY: &str = "mg-modelgate-proxy";
const ROUTER_CM: &str = "modelgate-router";

fn chart() -> PathBuf {
    repo_root().join("charts/modelgate")
}

fn crd_chart() -> PathBuf {
    repo_root().join("charts/modelgate-crds")
}

fn all_features() -> PathBuf {
    repo_root().join("tests/chart/all-features.yaml")
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The real helm binary with a private, throwaway HOME for its cache, config and data.
struct Helm {
    bin: PathBuf,
    home: PathBuf,
}

impl Helm {
    fn new() -> Helm {
        let bin = match std::env::var_os("MODELGATE_TOOLS_BIN") {
            Some(dir) if !dir.is_empty() => Path::new(&dir).join("helm"),
            _ => PathBuf::from("helm"),
        };
        let home = std::env::temp_dir().join(namespace_name("helm-home"));
        std::fs::create_dir_all(&home).unwrap();
        Helm { bin, home }
    }

    /// Runs helm; Ok(stdout) when it succeeds, Err(stderr and stdout) when it does not.
    fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .args(args)
            .env("HOME", &self.home)
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            // `helm template` never needs a cluster: keep it away from the test cluster.
            .env("KUBECONFIG", self.home.join("no-kubeconfig"))
            .stdin(Stdio::null())
            .output()
            .with_context(|| {
                format!(
                    "cannot start {} (set MODELGATE_TOOLS_BIN or put helm on PATH; \
                     tests/install-tools.sh prints its directory)",
                    self.bin.display()
                )
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            bail!(
                "`helm {}` failed\n--- stderr\n{stderr}\n--- stdout\n{stdout}",
                args.join(" ")
            );
        }
        Ok(stdout)
    }

    /// Runs helm against `cluster` (install, upgrade, uninstall).
    fn run_on(&self, cluster: &Cluster, args: &[&str]) -> Result<String> {
        let kubeconfig = cluster.kubeconfig().to_str().context("kubeconfig path")?;
        let mut all = vec!["--kubeconfig", kubeconfig];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// `helm template mg charts/modelgate --namespace NS` with extra arguments
    /// (`-f FILE`, `--set K=V`).
    fn template(&self, ns: &str, extra: &[&str]) -> Result<String> {
        let chart = chart();
        let mut args = vec!["template", RELEASE, path_str(&chart), "--namespace", ns];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

impl Drop for Helm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// A directory under the system temp dir, removed when dropped (also when the test panics).
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(namespace_name(prefix));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The objects of a multi-document YAML stream (empty documents skipped).
fn objects(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(objs: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objs
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    kinds
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", names(objs)))
}

fn names(objs: &[Value]) -> Vec<String> {
    objs.iter()
        .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
        .collect()
}

/// The objects of `kinds` as one `List`, for `kubectl apply -f -`.
fn list_of(objs: &[Value], kinds: &[&str]) -> String {
    let items: Vec<&Value> = objs
        .iter()
        .filter(|o| kinds.contains(&o["kind"].as_str().unwrap()))
        .collect();
    assert!(!items.is_empty(), "none of {kinds:?} rendered");
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
}

/// The operator's base config, as the chart renders it and the operator parses it.
fn base_config(objs: &[Value]) -> (String, modelgate_crds::config::Config) {
    let cm = find(objs, "ConfigMap", &format!("{OPERATOR}-base-config"));
    let text = cm["data"]["base-config.yaml"].as_str().unwrap().to_string();
    let cfg = modelgate_crds::config::Config::from_yaml(&text)
        .unwrap_or_else(|e| panic!("the base config does not parse: {e}\n{text}"));
    (text, cfg)
}

#[test]
fn both_charts_pass_helm_lint() {
    let helm = Helm::new();
    let (chart, crd_chart, values) = (chart(), crd_chart(), all_features());
    for args in [
        vec!["lint", "--strict", path_str(&crd_chart)],
        vec!["lint", "--strict", path_str(&chart)],
        vec![
            "lint",
            "--strict",
            path_str(&chart),
            "-f",
            path_str(&values),
        ],
    ] {
        let out = helm.run(&args).unwrap();
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{out}"
        );
        assert!(!out.contains("[WARNING]"), "{out}");
    }
}

#[test]
fn the_crd_chart_renders_exactly_the_generated_crds() {
    let helm = Helm::new();
    let crd_chart = crd_chart();
    let rendered = objects(
        &helm
            .run(&["template", "modelgate-crds", path_str(&crd_chart)])
            .unwrap(),
    );
    let want: Vec<Value> = modelgate_crds::crds()
        .into_iter()
        .map(|(_, crd)| objects(&modelgate_crds::crd_yaml(&crd).unwrap()).remove(0))
        .collect();
    assert_eq!(rendered.len(), want.len(), "{:?}", names(&rendered));
    for crd in &want {
        let name = crd["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            find(&rendered, "CustomResourceDefinition", name),
            crd,
            "helm renders {name} differently from crdgen; run `cargo run -p modelgate-crds --bin crdgen`"
        );
    }
}

#[test]
fn the_defaults_render_a_production_ready_install() {
    let helm = Helm::new();
    let objs = objects(&helm.template("llm", &[]).unwrap());
    assert_eq!(
        kinds(&objs),
        [
            "ConfigMap",
            "Deployment",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "Secret",
            "Service",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ],
        "{:?}",
        names(&objs)
    );
    // The lease guard (cluster-scoped) aside, everything lives in the release namespace.
    for o in objs.iter().filter(|o| {
        !o["kind"]
            .as_str()
            .unwrap()
            .starts_with("ValidatingAdmissionPolicy")
    }) {
        assert_eq!(
            o["metadata"]["namespace"], "llm",
            "{}",
            o["metadata"]["name"]
        );
    }

    for (name, component) in [(OPERATOR, "operator"), (PROXY, "proxy")] {
        let d = find(&objs, "Deployment", name);
        let pod = &d["spec"]["template"]["spec"];
        let c = container(d, component);
        assert_eq!(pod["serviceAccountName"], name);
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{name}");
        assert_eq!(psc["runAsUser"], 65532, "{name}");
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
        for kind in ["requests", "limits"] {
            for res in ["cpu", "memory"] {
                assert!(c["resources"][kind][res].is_string(), "{name} {kind}.{res}");
            }
        }
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(c[probe]["httpGet"]["port"], "admin", "{name} {probe}");
        }
        assert_eq!(c["image"], "ghcr.io/modelgate/modelgate:0.1.0");
        assert_eq!(
            c["command"],
            json!([format!("/usr/local/bin/modelgate-{component}")])
        );
    }

    // The proxy: probes on its unauthenticated admin endpoints, a grace period longer than
    // preStop sleep + drain, its ConfigMap in its namespace, the master key from the Secret.
    let proxy = find(&objs, "Deployment", PROXY);
    let c = container(proxy, "proxy");
    assert_eq!(proxy["spec"]["replicas"], 2);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health/liveliness");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health/readiness");
    let a = args(c);
    for want in [
        "--configmap=llm/modelgate-router",
        "--port=4000",
        "--admin-port=4001",
        "--replica-id=$(POD_NAME)",
        "--lease-duration=10",
        "--drain-timeout=30",
        "--log-format=json",
    ] {
        assert!(a.contains(&want.to_string()), "{want} not in {a:?}");
    }
    assert!(!a.iter().any(|a| a == "--model-management"), "{a:?}");
    let sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_i64()
        .unwrap();
    let grace = proxy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap();
    assert!(
        grace > sleep + 30,
        "grace {grace}, preStop {sleep}, drain 30"
    );
    assert_eq!(
        env(c, "LITELLM_MASTER_KEY").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "mg-modelgate-master-key", "key": "master-key"})
    );
    assert!(env(c, "REDIS_PASSWORD").is_none());
    let secret = find(&objs, "Secret", "mg-modelgate-master-key");
    assert!(secret["data"]["master-key"].as_str().unwrap().len() > 40);
    let svc = find(&objs, "Service", PROXY);
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "http", "port": 4000, "targetPort": "http", "protocol": "TCP"}]),
        "the API Service must not expose the unauthenticated admin port"
    );
    let pdb = find(&objs, "PodDisruptionBudget", PROXY);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    // The operator: its namespace only, leader election on, the base config mounted.
    let op = find(&objs, "Deployment", OPERATOR);
    let a = args(container(op, "operator"));
    for want in [
        "--namespace=llm",
        "--configmap=modelgate-router",
        "--base-config=/etc/modelgate/base-config.yaml",
        "--admin-port=8080",
        "--leader-election=true",
        "--lease-namespace=llm",
        "--lease-name=modelgate-operator",
        "--identity=$(POD_NAME)",
    ] {
        assert!(a.contains(&want.to_string()), "{want} not in {a:?}");
    }
    let (text, cfg) = base_config(&objs);
    assert!(cfg.model_list.is_empty());
    assert_eq!(
        cfg.router_settings.routing_strategy.as_deref(),
        Some("simple-shuffle")
    );
    assert_eq!(cfg.router_settings.num_retries, Some(2));
    assert!(!text.contains("redis"), "{text}");
}

#[test]
fn every_optional_feature_renders() {
    let helm = Helm::new();
    let values = all_features();
    let objs = objects(&helm.template("llm", &["-f", path_str(&values)]).unwrap());
    let ks = kinds(&objs);
    for kind in [
        "ClusterRole",
        "ClusterRoleBinding",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ServiceMonitor",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(ks.iter().any(|k| k == kind), "no {kind} in {ks:?}");
    }
    assert_eq!(ks.iter().filter(|k| *k == "PodDisruptionBudget").count(), 2);
    assert_eq!(ks.iter().filter(|k| *k == "NetworkPolicy").count(), 2);
    // The user's master key Secret, not one of ours.
    assert!(!ks.iter().any(|k| k == "Secret"), "{ks:?}");

    // What the optional objects point at exists, by name, label and port.
    let selects = |selector: &Value, labels: &Value| {
        selector
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    };
    let container_ports = |deployment: &Value| -> Vec<String> {
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let hpa = find(&objs, "HorizontalPodAutoscaler", PROXY);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], PROXY);
    assert_eq!(
        (
            hpa["spec"]["minReplicas"].clone(),
            hpa["spec"]["maxReplicas"].clone()
        ),
        (json!(3), json!(12))
    );
    let targets: Vec<(String, i64)> = hpa["spec"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let r = &m["resource"];
            (
                r["name"].as_str().unwrap().into(),
                r["target"]["averageUtilization"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [("cpu".to_string(), 60), ("memory".to_string(), 80)]
    );
    let sm = objs.iter().find(|o| o["kind"] == "ServiceMonitor").unwrap();
    let endpoint_port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    let scraped: Vec<&Value> = objs
        .iter()
        .filter(|o| o["kind"] == "Service")
        .filter(|o| {
            selects(
                &sm["spec"]["selector"]["matchLabels"],
                &o["metadata"]["labels"],
            )
        })
        .collect();
    assert_eq!(
        scraped.len(),
        2,
        "the ServiceMonitor must select both metrics Services"
    );
    for svc in scraped {
        let port = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == endpoint_port)
            .unwrap_or_else(|| panic!("{} has no port {endpoint_port}", svc["metadata"]["name"]));
        let component = svc["metadata"]["labels"]["app.kubernetes.io/component"]
            .as_str()
            .unwrap();
        let deployment = find(&objs, "Deployment", &format!("mg-modelgate-{component}"));
        assert!(
            container_ports(deployment).contains(&port["targetPort"].as_str().unwrap().to_string())
        );
        assert!(selects(
            &svc["spec"]["selector"],
            &deployment["spec"]["template"]["metadata"]["labels"]
        ));
    }
    for (name, component) in [(PROXY, "proxy"), (OPERATOR, "operator")] {
        let np = find(&objs, "NetworkPolicy", name);
        let deployment = find(&objs, "Deployment", name);
        assert!(
            selects(
                &np["spec"]["podSelector"]["matchLabels"],
                &deployment["spec"]["template"]["metadata"]["labels"]
            ),
            "{component}: the NetworkPolicy selects no pod of the Deployment"
        );
        for rule in np["spec"]["ingress"].as_array().unwrap() {
            for p in rule["ports"].as_array().unwrap() {
                assert!(
                    container_ports(deployment).contains(&p["port"].as_str().unwrap().to_string()),
                    "{component}: ingress to a port the container does not have: {p}"
                );
            }
        }
    }
    let proxy_np = find(&objs, "NetworkPolicy", PROXY);
    assert_eq!(
        proxy_np["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["gateway-access"],
        "true"
    );
    assert_eq!(
        proxy_np["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );

    let proxy = find(&objs, "Deployment", PROXY);
    assert!(
        proxy["spec"].get("replicas").is_none(),
        "the HPA owns replicas"
    );
    let c = container(proxy, "proxy");
    assert!(
        c["image"]
            .as_str()
            .unwrap()
            .ends_with("@sha256:0000000000000000000000000000000000000000000000000000000000000000")
    );
    let a = args(c);
    assert!(a.iter().any(|a| a == "--model-management"), "{a:?}");
    assert!(a.iter().any(|a| a == "--drain-timeout=120"), "{a:?}");
    assert_eq!(
        proxy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        150
    );
    assert_eq!(
        env(c, "REDIS_PASSWORD").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "redis-auth", "key": "redis-password"})
    );
    assert_eq!(
        env(c, "LITELLM_MASTER_KEY").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "gateway-master-key", "key": "key"})
    );

    let op = find(&objs, "Deployment", OPERATOR);
    let a = args(container(op, "operator"));
    assert!(
        !a.iter().any(|a| a.starts_with("--namespace")),
        "all namespaces: {a:?}"
    );
    assert_eq!(op["spec"]["replicas"], 2);

    // The password stays a reference: no secret value reaches the ConfigMap.
    let (text, cfg) = base_config(&objs);
    let rs = &cfg.router_settings.extra;
    assert_eq!(rs["redis_host"], "redis.cache.svc", "{text}");
    assert_eq!(rs["redis_port"], 6380, "{text}");
    assert_eq!(rs["redis_password"], "os.environ/REDIS_PASSWORD", "{text}");
    assert_eq!(
        cfg.router_settings.fallbacks,
        Some(json!([{"gpt-4o": ["gpt-4o-mini"]}]))
    );
    assert_eq!(cfg.litellm_settings["drop_params"], true);
    assert_eq!(cfg.general_settings.background_health_checks, Some(true));

    // Changing the base config rolls the operator (a new checksum); the proxy watches its
    // ConfigMap through the API and needs no roll.
    let checksum = |objs: &[Value]| {
        find(objs, "Deployment", OPERATOR)["spec"]["template"]["metadata"]["annotations"]
            ["checksum/base-config"]
            .clone()
    };
    let before = objects(&helm.template("llm", &[]).unwrap());
    let after = objects(
        &helm
            .template("llm", &["--set", "config.router_settings.num_retries=5"])
            .unwrap(),
    );
    assert!(checksum(&before).is_string());
    assert_ne!(checksum(&before), checksum(&after));

    // Per-namespace proxies beside an all-namespaces operator, and an operator alone.
    let proxy_only = objects(
        &helm
            .template("team-a", &["--set", "operator.enabled=false"])
            .unwrap(),
    );
    assert!(
        proxy_only
            .iter()
            .all(|o| o["metadata"]["labels"]["app.kubernetes.io/component"] != "operator"),
        "{:?}",
        names(&proxy_only)
    );
    let operator_only = objects(
        &helm
            .template("llm", &["--set", "proxy.enabled=false"])
            .unwrap(),
    );
    assert!(
        operator_only
            .iter()
            .all(|o| o["metadata"]["labels"]["app.kubernetes.io/component"] != "proxy"),
        "{:?}",
        names(&operator_only)
    );
}

#[test]
fn unsafe_values_are_refused_with_a_message() {
    let helm = Helm::new();
    for (set, message) in [
        (
            "config.general_settings.master_key=sk-1",
            "config.general_settings.master_key is not allowed",
        ),
        (
            "config.model_list[0].model_name=x",
            "config.model_list is not allowed",
        ),
        (
            "proxy.terminationGracePeriodSeconds=30",
            "must be longer than preStopSleepSeconds + drainTimeoutSeconds",
        ),
        (
            "operator.leaderElection.enabled=false,operator.replicas=2",
            "needs operator.leaderElection.enabled",
        ),
        ("redis.enabled=true", "redis.host is required"),
        (
            "proxy.secretAccess=everything",
            "proxy.secretAccess must be managed, names or namespace",
        ),
        ("proxy.secretAccess=names", "needs proxy.secretNames"),
    ] {
        let err = helm.template("llm", &["--set", set]).unwrap_err();
        assert!(format!("{err:#}").contains(message), "--set {set}: {err:#}");
    }
}

/// The binaries accept every argument the chart passes (their clap parsers stop at `--help`
/// only when everything before it parsed).
#[test]
fn the_binaries_accept_the_arguments_the_chart_gives_them() {
    let bin_dir = PathBuf::from(std::env::var("MODELGATE_BIN_DIR").expect("MODELGATE_BIN_DIR"));
    let helm = Helm::new();
    let values = all_features();
    for extra in [vec![], vec!["-f", path_str(&values)]] {
        let objs = objects(&helm.template("llm", &extra).unwrap());
        for (name, component) in [(OPERATOR, "operator"), (PROXY, "proxy")] {
            let c = container(find(&objs, "Deployment", name), component);
            let bin = bin_dir.join(format!("modelgate-{component}"));
            let a: Vec<String> = args(c)
                .into_iter()
                .map(|a| a.replace("$(POD_NAME)", "pod-0"))
                .collect();
            let out = Command::new(&bin)
                .args(&a)
                .arg("--help")
                .env_clear()
                .output()
                .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
            assert!(
                out.status.success(),
                "{} rejects the chart's arguments {a:?}:\n{}",
                bin.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Installs the stand-in ServiceMonitor CRD (tests/chart/servicemonitor-crd.yaml), once.
fn ensure_servicemonitor_crd(cluster: &Cluster) {
    let file = repo_root().join("tests/chart/servicemonitor-crd.yaml");
    cluster
        .kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=modelgate-tests",
            "-f",
            path_str(&file),
        ])
        .unwrap();
    cluster
        .kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
        ])
        .unwrap();
}

/// Cluster-scoped objects a test created (the namespace guard does not remove them).
struct ClusterScoped<'a> {
    cluster: &'a Cluster,
    objects: Vec<String>,
}

impl Drop for ClusterScoped<'_> {
    fn drop(&mut self) {
        for o in &self.objects {
            let _ = self
                .cluster
                .kubectl(&["delete", o, "--ignore-not-found", "--wait=false"]);
        }
    }
}

fn cluster_scoped<'a>(cluster: &'a Cluster, objs: &[Value]) -> ClusterScoped<'a> {
    let objects = objs
        .iter()
        .filter(|o| o["metadata"].get("namespace").is_none())
        .map(|o| {
            let group = o["apiVersion"]
                .as_str()
                .unwrap()
                .rsplit_once('/')
                .map_or("", |(g, _)| g);
            let kind = o["kind"].as_str().unwrap().to_lowercase();
            format!("{kind}.{group}/{}", o["metadata"]["name"].as_str().unwrap())
        })
        .collect();
    ClusterScoped { cluster, objects }
}

#[test]
fn every_rendering_passes_a_server_side_dry_run() {
    let cluster = Cluster::from_env();
    cluster.ensure_crds().unwrap();
    ensure_servicemonitor_crd(&cluster);
    let ns = cluster.temp_namespace("chart-dry-run").unwrap();
    let helm = Helm::new();
    let values = all_features();
    for extra in [
        vec![],
        vec!["-f", path_str(&values)],
        vec!["--set", "operator.enabled=false"],
        vec!["--set", "proxy.enabled=false,operator.allNamespaces=true"],
    ] {
        let yaml = helm.template(ns.name(), &extra).unwrap();
        let count = objects(&yaml).len();
        let out = cluster
            .kubectl_stdin(
                &[
                    "apply",
                    "--dry-run=server",
                    "--validate=strict",
                    "-n",
                    ns.name(),
                    "-f",
                    "-",
                ],
                &yaml,
            )
            .unwrap();
        let stdout = out
            .clone()
            .ok()
            .unwrap_or_else(|e| panic!("{extra:?}: {e:#}"));
        assert_eq!(
            stdout.matches("(server dry run)").count(),
            count,
            "{extra:?}: {stdout}"
        );
        // No deprecation or unknown-field warnings either.
        assert!(!out.stderr.contains("Warning"), "{extra:?}: {}", out.stderr);
    }
}

/// One `kubectl auth can-i` question and the answer least privilege wants.
struct Check<'a> {
    who: &'a str,
    verb: &'a str,
    resource: &'a str,
    ns: &'a str,
    allowed: bool,
}

fn can_i(cluster: &Cluster, sa_ns: &str, c: &Check<'_>) -> Result<bool> {
    let user = format!("system:serviceaccount:{sa_ns}:{}", c.who);
    let (resource, sub) = match c.resource.split_once(':') {
        Some((r, s)) => (r, Some(s)),
        None => (c.resource, None),
    };
    let mut args = vec!["auth", "can-i", c.verb, resource, "--as", &user];
    // An empty namespace: every namespace at once (or a cluster-scoped resource).
    if c.ns.is_empty() {
        args.push("--all-namespaces");
    } else {
        args.extend(["-n", c.ns]);
    }
    let sub_arg;
    if let Some(s) = sub {
        sub_arg = format!("--subresource={s}");
        args.push(&sub_arg);
    }
    let out: KubectlOutput = cluster.kubectl(&args)?;
    match out.stdout.trim() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => bail!("`{}`: {}{}", out.command, out.stdout, out.stderr),
    }
}

/// Asks every question and fails once, listing every wrong answer.
fn assert_checks(cluster: &Cluster, sa_ns: &str, checks: &[Check<'_>]) {
    let mut wrong = Vec::new();
    for c in checks {
        let got = can_i(cluster, sa_ns, c).unwrap();
        if got != c.allowed {
            wrong.push(format!(
                "{} {} {} in {}: got {}, want {}",
                c.who,
                c.verb,
                c.resource,
                c.ns,
                if got { "yes" } else { "no" },
                if c.allowed { "yes" } else { "no" }
            ));
        }
    }
    assert!(wrong.is_empty(), "wrong permissions:\n{}", wrong.join("\n"));
}

const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// `helm template | kubectl apply` of the RBAC objects (for real) into `ns`.
fn apply_rbac(cluster: &Cluster, helm: &Helm, ns: &str, extra: &[&str]) -> Vec<Value> {
    let objs = objects(&helm.template(ns, extra).unwrap());
    cluster
        .kubectl_stdin(
            &["apply", "-n", ns, "-f", "-"],
            &list_of(&objs, &RBAC_KINDS),
        )
        .unwrap()
        .ok()
        .unwrap();
    objs
}

/// Server-side apply of `obj` into `ns` as `user` (impersonated): what the binaries do.
fn apply_as(cluster: &Cluster, user: &str, ns: &str, obj: &Value) -> KubectlOutput {
    cluster
        .kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager=modelgate-tests-as",
                "--as",
                user,
                "-n",
                ns,
                "-f",
                "-",
            ],
            &obj.to_string(),
        )
        .unwrap()
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
           "data": {"config.yaml": "model_list: []\n"}})
}

fn lease(name: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
           "spec": {"holderIdentity": "test"}})
}

#[test]
fn namespaced_service_accounts_get_least_privilege() {
    let cluster = Cluster::from_env();
    cluster.ensure_crds().unwrap();
    let ns = cluster.temp_namespace("chart-rbac").unwrap();
    let other = cluster.temp_namespace("chart-rbac-other").unwrap();
    let (n, o) = (ns.name(), other.name());
    let helm = Helm::new();
    let objs = apply_rbac(&cluster, &helm, n, &[]);
    assert!(!kinds(&objs).iter().any(|k| k.starts_with("Cluster")));

    let check = |who, verb, resource, ns, allowed| Check {
        who,
        verb,
        resource,
        ns,
        allowed,
    };
    let cm = format!("configmaps/{ROUTER_CM}");
    let grant_role = format!("roles.rbac.authorization.k8s.io/{ROUTER_CM}-proxy-secrets");
    let grant_binding = format!("rolebindings.rbac.authorization.k8s.io/{ROUTER_CM}-proxy-secrets");
    assert_checks(
        &cluster,
        n,
        &[
            // The proxy: its ConfigMap, its Lease, and no Secret until the operator grants
            // the referenced ones (below).
            check(PROXY, "get", &cm, n, true),
            check(PROXY, "watch", &cm, n, true),
            check(PROXY, "get", "configmaps/other-name", n, false),
            check(PROXY, "list", "configmaps", n, false),
            check(PROXY, "delete", &cm, n, false),
            check(PROXY, "patch", &cm, n, false),
            check(PROXY, "watch", "secrets", n, false),
            check(PROXY, "get", "secrets/azure-keys", n, false),
            check(PROXY, "list", "secrets", o, false),
            check(PROXY, "get", "secrets/azure-keys", o, false),
            check(PROXY, "create", "leases.coordination.k8s.io", n, true),
            check(
                PROXY,
                "patch",
                "leases.coordination.k8s.io/modelgate-proxy-0",
                n,
                true,
            ),
            check(PROXY, "create", "leases.coordination.k8s.io", o, false),
            check(PROXY, "create", "modeldeployments.modelgate.dev", n, false),
            check(PROXY, "list", "modeldeployments.modelgate.dev", n, false),
            check(PROXY, "create", "pods", n, false),
            check(PROXY, "create", "events.events.k8s.io", n, false),
            // The operator: read the resources, write their status, the router ConfigMap,
            // Events, the leader Lease.
            check(OPERATOR, "list", "modeldeployments.modelgate.dev", n, true),
            check(
                OPERATOR,
                "watch",
                "modelgroupaliases.modelgate.dev",
                n,
                true,
            ),
            check(
                OPERATOR,
                "patch",
                "modeldeployments.modelgate.dev:status",
                n,
                true,
            ),
            check(
                OPERATOR,
                "patch",
                "modelgroupaliases.modelgate.dev:status",
                n,
                true,
            ),
            check(
                OPERATOR,
                "patch",
                "modeldeployments.modelgate.dev",
                n,
                false,
            ),
            check(
                OPERATOR,
                "delete",
                "modeldeployments.modelgate.dev",
                n,
                false,
            ),
            check(
                OPERATOR,
                "create",
                "modeldeployments.modelgate.dev",
                n,
                false,
            ),
            check(OPERATOR, "list", "modeldeployments.modelgate.dev", o, false),
            check(OPERATOR, "watch", "secrets", n, true),
            check(OPERATOR, "get", "secrets/azure-keys", o, false),
            check(OPERATOR, "list", "secrets", o, false),
            check(OPERATOR, "create", "configmaps", n, true),
            check(OPERATOR, "patch", &cm, n, true),
            check(OPERATOR, "patch", "configmaps/other-name", n, false),
            check(OPERATOR, "delete", &cm, n, false),
            check(OPERATOR, "create", "configmaps", o, false),
            check(OPERATOR, "create", "events.events.k8s.io", n, true),
            check(OPERATOR, "patch", "events.events.k8s.io", n, true),
            check(OPERATOR, "list", "leases.coordination.k8s.io", n, true),
            check(OPERATOR, "create", "leases.coordination.k8s.io", n, true),
            check(
                OPERATOR,
                "update",
                "leases.coordination.k8s.io/modelgate-operator",
                n,
                true,
            ),
            check(
                OPERATOR,
                "update",
                "leases.coordination.k8s.io/modelgate-proxy-0",
                n,
                false,
            ),
            check(OPERATOR, "create", "pods", n, false),
            check(OPERATOR, "delete", "secrets", n, false),
            check(OPERATOR, "list", "namespaces", "", false),
            // The proxy's Secret grant, by name (create cannot be limited by name).
            check(
                OPERATOR,
                "create",
                "roles.rbac.authorization.k8s.io",
                n,
                true,
            ),
            check(OPERATOR, "patch", &grant_role, n, true),
            check(OPERATOR, "patch", &grant_binding, n, true),
            check(
                OPERATOR,
                "patch",
                "roles.rbac.authorization.k8s.io/other",
                n,
                false,
            ),
            check(OPERATOR, "delete", &grant_role, n, false),
            check(
                OPERATOR,
                "create",
                "roles.rbac.authorization.k8s.io",
                o,
                false,
            ),
        ],
    );

    // The grant as the operator writes it (server-side apply, as its ServiceAccount): the
    // proxy may then read exactly the named Secret. The API server allows it only because
    // the operator itself may read Secrets (RBAC's escalation check).
    let grant = format!("{ROUTER_CM}-proxy-secrets");
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": grant},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["azure-keys"],
                   "verbs": ["get", "list", "watch"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": grant},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": grant},
        "subjects": [{"kind": "ServiceAccount", "name": PROXY, "namespace": n}]});
    let op_user = format!("system:serviceaccount:{n}:{OPERATOR}");
    for obj in [&role, &binding] {
        apply_as(&cluster, &op_user, n, obj).ok().unwrap();
    }
    assert_checks(
        &cluster,
        n,
        &[
            check(PROXY, "get", "secrets/azure-keys", n, true),
            check(PROXY, "watch", "secrets/azure-keys", n, true),
            check(PROXY, "get", "secrets/other-secret", n, false),
            check(PROXY, "list", "secrets", n, false),
        ],
    );

    // Real requests, as the binaries make them (server-side apply): the operator creates
    // and updates its ConfigMap, and no other; the proxy writes a Lease.
    let proxy_user = format!("system:serviceaccount:{n}:{PROXY}");
    for _ in 0..2 {
        apply_as(&cluster, &op_user, n, &configmap(ROUTER_CM))
            .ok()
            .unwrap();
    }
    let denied = apply_as(&cluster, &op_user, n, &configmap("other-name"));
    assert!(
        !denied.success && denied.stderr.contains("forbidden"),
        "{denied:?}"
    );
    apply_as(&cluster, &proxy_user, n, &lease("modelgate-proxy-0"))
        .ok()
        .unwrap();
    let denied = apply_as(&cluster, &proxy_user, n, &configmap(ROUTER_CM));
    assert!(
        !denied.success && denied.stderr.contains("forbidden"),
        "{denied:?}"
    );

    // Model management on, Secrets restricted to the names the config uses.
    apply_rbac(
        &cluster,
        &helm,
        n,
        &[
            "--set",
            "proxy.modelManagement.enabled=true",
            "--set",
            "proxy.secretAccess=names",
            "--set",
            "proxy.secretNames={azure-keys,vllm-token}",
        ],
    );
    assert_checks(
        &cluster,
        n,
        &[
            check(PROXY, "create", "modeldeployments.modelgate.dev", n, true),
            check(PROXY, "patch", "modeldeployments.modelgate.dev", n, true),
            check(PROXY, "delete", "modeldeployments.modelgate.dev", n, true),
            check(PROXY, "list", "modeldeployments.modelgate.dev", n, true),
            check(PROXY, "create", "modeldeployments.modelgate.dev", o, false),
            check(PROXY, "create", "modelgroupaliases.modelgate.dev", n, false),
            check(
                PROXY,
                "patch",
                "modeldeployments.modelgate.dev:status",
                n,
                false,
            ),
            check(PROXY, "get", "secrets/azure-keys", n, true),
            check(PROXY, "watch", "secrets/vllm-token", n, true),
            check(PROXY, "get", "secrets/other-secret", n, false),
            check(PROXY, "list", "secrets", n, false),
            check(PROXY, "get", &cm, n, true),
        ],
    );
}

#[test]
fn an_all_namespaces_operator_gets_a_cluster_role() {
    let cluster = Cluster::from_env();
    cluster.ensure_crds().unwrap();
    let ns = cluster.temp_namespace("chart-rbac-all").unwrap();
    let other = cluster.temp_namespace("chart-rbac-all-other").unwrap();
    let (n, o) = (ns.name(), other.name());
    let helm = Helm::new();
    let extra = ["--set", "operator.allNamespaces=true"];
    let rendered = objects(&helm.template(n, &extra).unwrap());
    let _cleanup = cluster_scoped(&cluster, &rendered);
    let objs = apply_rbac(&cluster, &helm, n, &extra);
    assert!(kinds(&objs).iter().any(|k| k == "ClusterRole"));

    let check = |who, verb, resource, ns, allowed| Check {
        who,
        verb,
        resource,
        ns,
        allowed,
    };
    let cm = format!("configmaps/{ROUTER_CM}");
    assert_checks(
        &cluster,
        n,
        &[
            check(OPERATOR, "list", "modeldeployments.modelgate.dev", o, true),
            check(
                OPERATOR,
                "watch",
                "modelgroupaliases.modelgate.dev",
                "",
                true,
            ),
            check(
                OPERATOR,
                "patch",
                "modeldeployments.modelgate.dev:status",
                o,
                true,
            ),
            check(OPERATOR, "get", "secrets/azure-keys", o, true),
            check(OPERATOR, "patch", &cm, o, true),
            check(OPERATOR, "patch", "configmaps/other-name", o, false),
            check(OPERATOR, "create", "events.events.k8s.io", o, true),
            check(OPERATOR, "list", "leases.coordination.k8s.io", o, true),
            // Leader election stays in the release namespace.
            check(
                OPERATOR,
                "update",
                "leases.coordination.k8s.io/modelgate-operator",
                n,
                true,
            ),
            check(
                OPERATOR,
                "update",
                "leases.coordination.k8s.io/modelgate-operator",
                o,
                false,
            ),
            check(OPERATOR, "create", "leases.coordination.k8s.io", o, false),
            check(
                OPERATOR,
                "delete",
                "modeldeployments.modelgate.dev",
                o,
                false,
            ),
            check(OPERATOR, "create", "pods", o, false),
            check(OPERATOR, "delete", "secrets", o, false),
            // The proxy stays in its namespace.
            check(PROXY, "get", &cm, o, false),
            check(PROXY, "get", "secrets/azure-keys", o, false),
        ],
    );
}

/// A kubeconfig that authenticates with `token` alone (the admin kubeconfig's client
/// certificate would win over a token on the command line).
fn token_kubeconfig(cluster: &Cluster, token: &str, path: &Path) -> Cluster {
    let raw = cluster
        .kubectl_ok(&["config", "view", "--raw", "--minify", "-o", "json"])
        .unwrap();
    let cfg: Value = serde_json::from_str(&raw).unwrap();
    let c = &cfg["clusters"][0]["cluster"];
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {
            "server": c["server"],
            "certificate-authority-data": c["certificate-authority-data"],
        }}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    });
    std::fs::write(path, kubeconfig.to_string()).unwrap();
    Cluster::from_kubeconfig_var(Some(path.as_os_str().to_owned()))
}

#[test]
fn the_lease_guard_limits_a_proxy_pod_to_its_own_lease() {
    let cluster = Cluster::from_env();
    cluster.ensure_crds().unwrap();
    let ns = cluster.temp_namespace("chart-lease-guard").unwrap();
    let n = ns.name();
    let helm = Helm::new();
    let extra = ["--set", "proxy.leaseGuard.enabled=true"];
    let objs = objects(&helm.template(n, &extra).unwrap());
    let _cleanup = cluster_scoped(&cluster, &objs);
    let mut kinds_to_apply = RBAC_KINDS.to_vec();
    kinds_to_apply.extend([
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]);
    cluster
        .kubectl_stdin(
            &["apply", "-n", n, "-f", "-"],
            &list_of(&objs, &kinds_to_apply),
        )
        .unwrap()
        .ok()
        .unwrap();

    // A proxy pod (it never runs here: no kubelet) and a token bound to it, as the kubelet
    // would mount it: the apiserver adds the pod name to the user's extra fields.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "proxy-a"},
        "spec": {"serviceAccountName": PROXY, "automountServiceAccountToken": false,
                 "containers": [{"name": "proxy", "image": "modelgate"}]}});
    cluster
        .kubectl_stdin(&["apply", "-n", n, "-f", "-"], &pod.to_string())
        .unwrap()
        .ok()
        .unwrap();
    let token = cluster
        .kubectl_ok(&[
            "create",
            "token",
            PROXY,
            "-n",
            n,
            "--bound-object-kind=Pod",
            "--bound-object-name=proxy-a",
            "--duration=10m",
        ])
        .unwrap();
    let dir = TempDir::new("lease-guard");
    let as_pod = token_kubeconfig(&cluster, token.trim(), &dir.0.join("kubeconfig"));
    let whoami = as_pod
        .kubectl_ok(&["auth", "whoami", "-o", "json"])
        .unwrap();
    let whoami: Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(
        whoami["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["proxy-a"])
    );

    let apply = |name: &str| {
        as_pod
            .kubectl_stdin(
                &[
                    "apply",
                    "--server-side",
                    "--field-manager=modelgate-proxy",
                    "-n",
                    n,
                    "-f",
                    "-",
                ],
                &lease(name).to_string(),
            )
            .unwrap()
    };
    // The policy applies once the apiserver has loaded it (asynchronously).
    retry(Duration::from_secs(30), || {
        let out = apply("modelgate-proxy-someone-else");
        if out.success {
            // Admitted before the policy was active: remove it and ask again.
            cluster.kubectl_ok(&["delete", "lease", "modelgate-proxy-someone-else", "-n", n])?;
            bail!("not denied yet");
        }
        if !out
            .stderr
            .contains("may write only its own Lease, modelgate-proxy-<its pod name>")
        {
            bail!("denied for another reason: {}", out.stderr);
        }
        Ok(())
    })
    .unwrap();
    // Its own Lease: create, update, delete.
    apply("modelgate-proxy-proxy-a").ok().unwrap();
    apply("modelgate-proxy-proxy-a").ok().unwrap();
    // Not the operator's leader Lease, not by create, update or delete.
    let denied = apply("modelgate-operator");
    assert!(
        !denied.success && denied.stderr.contains("ValidatingAdmissionPolicy"),
        "{denied:?}"
    );
    cluster
        .kubectl_stdin(
            &["apply", "--server-side", "-n", n, "-f", "-"],
            &lease("modelgate-operator").to_string(),
        )
        .unwrap()
        .ok()
        .unwrap();
    let denied = as_pod
        .kubectl(&["delete", "lease", "modelgate-operator", "-n", n])
        .unwrap();
    assert!(
        !denied.success && denied.stderr.contains("ValidatingAdmissionPolicy"),
        "{denied:?}"
    );
    as_pod
        .kubectl_ok(&["delete", "lease", "modelgate-proxy-proxy-a", "-n", n])
        .unwrap();
    // Other users (here the admin) are not affected.
    cluster
        .kubectl_stdin(
            &["apply", "--server-side", "-n", n, "-f", "-"],
            &lease("modelgate-proxy-someone-else").to_string(),
        )
        .unwrap()
        .ok()
        .unwrap();
}

#[test]
fn helm_install_and_upgrade_keep_the_generated_master_key() {
    let cluster = Cluster::from_env();
    cluster.ensure_crds().unwrap();
    let ns = cluster.temp_namespace("chart-install").unwrap();
    let n = ns.name();
    let helm = Helm::new();
    let chart = chart();
    let secret = || {
        let out = cluster
            .kubectl_ok(&[
                "get",
                "secret",
                "mg-modelgate-master-key",
                "-n",
                n,
                "-o",
                "jsonpath={.data.master-key}",
            ])
            .unwrap();
        assert!(out.len() > 40, "{out}");
        out
    };
    // No --wait: there is no kubelet here, the pods never start.
    helm.run_on(&cluster, &["install", RELEASE, path_str(&chart), "-n", n])
        .unwrap();
    let installed = secret();
    helm.run_on(
        &cluster,
        &[
            "upgrade",
            RELEASE,
            path_str(&chart),
            "-n",
            n,
            "--set",
            "config.router_settings.num_retries=4",
        ],
    )
    .unwrap();
    assert_eq!(secret(), installed, "an upgrade must keep the master key");
    let cm = cluster
        .kubectl_ok(&[
            "get",
            "configmap",
            &format!("{OPERATOR}-base-config"),
            "-n",
            n,
            "-o",
            "jsonpath={.data.base-config\\.yaml}",
        ])
        .unwrap();
    assert!(cm.contains("num_retries: 4"), "{cm}");
    helm.run_on(&cluster, &["uninstall", RELEASE, "-n", n, "--wait=false"])
        .unwrap();
}

/// A child process, killed when dropped; its stderr goes to `log`.
struct Child {
    child: std::process::Child,
    log: PathBuf,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn logs(children: &[&Child]) -> String {
    children
        .iter()
        .map(|c| {
            format!(
                "--- {}\n{}",
                c.log.display(),
                std::fs::read_to_string(&c.log).unwrap_or_default()
            )
        })
        .collect()
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; returns the status and the body.
fn http(port: u16, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binaries, started with the arguments and environment of the chart's containers,
/// each authenticated as the chart's ServiceAccount (the proxy with a token bound to its pod,
/// the lease guard on), serve a first ModelDeployment end to end: proof that the RBAC is
/// enough, not only small enough.
#[test]
fn the_binaries_serve_a_model_with_the_charts_rbac_and_arguments() {
    let bin_dir = PathBuf::from(std::env::var("MODELGATE_BIN_DIR").expect("MODELGATE_BIN_DIR"));
    let cluster = Cluster::from_env();
    cluster.ensure_crds().unwrap();
    let ns = cluster.temp_namespace("chart-e2e").unwrap();
    let n = ns.name();
    let helm = Helm::new();
    let (op_admin, port, admin) = (free_port(), free_port(), free_port());
    let key = "sk-chart-test";
    let set = format!(
        "proxy.leaseGuard.enabled=true,masterKey.value={key},operator.adminPort={op_admin},\
         proxy.port={port},proxy.adminPort={admin}"
    );
    let objs = objects(&helm.template(n, &["--set", &set]).unwrap());
    let _cleanup = cluster_scoped(&cluster, &objs);
    let all: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    cluster
        .kubectl_stdin(&["apply", "-n", n, "-f", "-"], &list_of(&objs, &all))
        .unwrap()
        .ok()
        .unwrap();

    let tmp = TempDir::new("chart-e2e");
    let dir = &tmp.0;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "proxy-a"},
        "spec": {"serviceAccountName": PROXY, "automountServiceAccountToken": false,
                 "containers": [{"name": "proxy", "image": "modelgate"}]}});
    cluster
        .kubectl_stdin(&["apply", "-n", n, "-f", "-"], &pod.to_string())
        .unwrap()
        .ok()
        .unwrap();
    let pod_uid = cluster
        .kubectl_ok(&[
            "get",
            "pod",
            "proxy-a",
            "-n",
            n,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .unwrap()
        .trim()
        .to_string();
    let token = |sa: &str, bound: &[&str]| {
        let mut args = vec!["create", "token", sa, "-n", n, "--duration=10m"];
        args.extend_from_slice(bound);
        cluster.kubectl_ok(&args).unwrap().trim().to_string()
    };
    let op_kc = dir.join("operator.kubeconfig");
    token_kubeconfig(&cluster, &token(OPERATOR, &[]), &op_kc);
    let proxy_kc = dir.join("proxy.kubeconfig");
    let proxy_token = token(
        PROXY,
        &["--bound-object-kind=Pod", "--bound-object-name=proxy-a"],
    );
    token_kubeconfig(&cluster, &proxy_token, &proxy_kc);
    let (base, _) = base_config(&objs);
    let base_file = dir.join("base-config.yaml");
    std::fs::write(&base_file, base).unwrap();

    let start = |component: &str, pod: &str, kubeconfig: &Path| {
        let c = container(
            find(&objs, "Deployment", &format!("mg-modelgate-{component}")),
            component,
        );
        let args: Vec<String> = args(c)
            .into_iter()
            .map(|a| {
                a.replace("$(POD_NAME)", pod)
                    .replace("/etc/modelgate/base-config.yaml", path_str(&base_file))
            })
            .collect();
        let mut cmd = Command::new(bin_dir.join(format!("modelgate-{component}")));
        cmd.args(&args).env_clear().env("KUBECONFIG", kubeconfig);
        for e in c["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap();
            let value = match (name, e["value"].as_str()) {
                (_, Some(v)) => v.to_string(),
                ("POD_NAME", None) => pod.to_string(),
                ("POD_NAMESPACE", None) => n.to_string(),
                ("POD_UID", None) => {
                    assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], "metadata.uid");
                    pod_uid.clone()
                }
                ("LITELLM_MASTER_KEY", None) => {
                    assert_eq!(
                        e["valueFrom"]["secretKeyRef"],
                        json!({"name": "mg-modelgate-master-key", "key": "master-key"})
                    );
                    key.to_string()
                }
                _ => panic!("{component}: no value for {e}"),
            };
            cmd.env(name, value);
        }
        let log = dir.join(format!("{component}.log"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Child { child, log }
    };
    let operator = start("operator", "operator-0", &op_kc);
    let proxy = start("proxy", "proxy-a", &proxy_kc);

    let demo = repo_root().join("examples/manifests/mock-demo.yaml");
    cluster
        .kubectl_ok(&["apply", "-n", n, "-f", path_str(&demo)])
        .unwrap();
    let wait = cluster
        .kubectl(&[
            "wait",
            "-n",
            n,
            "--for=condition=Ready",
            "md/demo-a",
            "md/demo-b",
            "--timeout=60s",
        ])
        .unwrap();
    assert!(
        wait.success,
        "the ModelDeployments never became Ready: {}\n{}",
        wait.stderr,
        logs(&[&operator, &proxy])
    );

    let request = r#"{"model": "demo", "messages": [{"role": "user", "content": "hi"}]}"#;
    let (status, body) = http(port, "POST", "/v1/chat/completions", Some(key), request);
    assert_eq!(status, 200, "{body}\n{}", logs(&[&operator, &proxy]));
    assert!(
        body.contains("Hello from modelgate (mock deployment demo-"),
        "{body}"
    );
    let (status, _) = http(port, "POST", "/v1/chat/completions", None, request);
    assert_eq!(status, 401, "the API needs the master key");
    let (status, body) = http(admin, "GET", "/health/readiness", None, "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(op_admin, "GET", "/readyz", None, "");
    assert_eq!(status, 200, "{body}");
    let holder = cluster
        .kubectl_ok(&[
            "get",
            "lease",
            "modelgate-operator",
            "-n",
            n,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .unwrap();
    assert_eq!(holder, "operator-0");
    // The replica's Lease is owned by its Pod, so it goes with the Pod after a crash.
    let owner = cluster
        .kubectl_ok(&[
            "get",
            "lease",
            "modelgate-proxy-proxy-a",
            "-n",
            n,
            "-o",
            "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].uid}",
        ])
        .unwrap();
    assert_eq!(owner.trim(), format!("Pod/{pod_uid}"));
    // A deployment whose API key is in a Secret: the operator grants the proxy that Secret
    // and no other, and the upstream receives the key.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt
        .block_on(modelgate_mock_upstream::MockUpstream::start(
            modelgate_mock_upstream::Reply::ok(),
        ))
        .unwrap();
    let keyed = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "upstream-key"},
         "stringData": {"api-key": "sk-upstream-from-secret"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "unrelated"},
         "stringData": {"token": "not for the proxy"}},
        {"apiVersion": "modelgate.dev/v1alpha1", "kind": "ModelDeployment",
         "metadata": {"name": "keyed"},
         "spec": {"modelName": "keyed", "model": "openai/gpt-4o", "apiBase": upstream.url(),
                  "apiKeySecretRef": {"name": "upstream-key", "key": "api-key"}}}]});
    cluster
        .kubectl_stdin(&["apply", "-n", n, "-f", "-"], &keyed.to_string())
        .unwrap()
        .ok()
        .unwrap();
    let wait = cluster
        .kubectl(&[
            "wait",
            "-n",
            n,
            "--for=condition=Ready",
            "md/keyed",
            "--timeout=60s",
        ])
        .unwrap();
    assert!(
        wait.success,
        "{}\n{}",
        wait.stderr,
        logs(&[&operator, &proxy])
    );
    let request = r#"{"model": "keyed", "messages": [{"role": "user", "content": "hi"}]}"#;
    let (status, body) = http(port, "POST", "/v1/chat/completions", Some(key), request);
    assert_eq!(status, 200, "{body}\n{}", logs(&[&operator, &proxy]));
    assert_eq!(
        upstream
            .records()
            .last()
            .and_then(|r| r.key.clone())
            .as_deref(),
        Some("sk-upstream-from-secret")
    );
    let check = |verb, resource, allowed| Check {
        who: PROXY,
        verb,
        resource,
        ns: n,
        allowed,
    };
    assert_checks(
        &cluster,
        n,
        &[
            check("get", "secrets/upstream-key", true),
            check("watch", "secrets/upstream-key", true),
            check("get", "secrets/unrelated", false),
            check("get", "secrets/mg-modelgate-master-key", false),
            check("list", "secrets", false),
        ],
    );
    drop(upstream);
    drop(rt);

    let problems: Vec<String> = logs(&[&operator, &proxy])
        .lines()
        .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
        .map(str::to_string)
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    // The processes stop before their log directory goes.
    drop((operator, proxy));
}
