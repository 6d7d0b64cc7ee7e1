//! The CRDs against a real kube-apiserver, through kubectl: they install, the example
//! manifests apply, invalid objects are rejected with the right message, `kubectl explain`
//! shows the Rust doc comments, `kubectl get` shows the printer columns, and server-side
//! apply is stable.
//!
//! Needs KUBECONFIG (tests/run.sh, or `tests/control-plane.sh up`) and kubectl.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::CustomResourceExt;
use modelgate_tests::{Cluster, parse_tables, repo_root, retry, squash_whitespace};
use serde_json::{Value, json};

/// How long to wait for what the apiserver publishes after a CRD changes (discovery, OpenAPI).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);

fn cluster() -> Cluster {
    let cluster = Cluster::from_env();
    cluster.ensure_crds().unwrap();
    cluster
}

/// `kubectl apply --server-side` of one object (JSON) into `ns`.
fn apply(cluster: &Cluster, ns: &str, obj: &Value) -> modelgate_tests::KubectlOutput {
    cluster
        .kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--validate=strict",
                "-n",
                ns,
                "-o",
                "json",
                "-f",
                "-",
            ],
            &obj.to_string(),
        )
        .unwrap()
}

fn get_json(cluster: &Cluster, ns: &str, kind: &str, name: &str) -> Result<Value> {
    let out = cluster.kubectl_ok(&["get", kind, name, "-n", ns, "-o", "json"])?;
    serde_json::from_str(&out).context("kubectl get -o json")
}

fn is_not_found(cluster: &Cluster, ns: &str, kind: &str, name: &str) -> bool {
    let out = cluster.kubectl(&["get", kind, name, "-n", ns]).unwrap();
    !out.success && out.stderr.contains("NotFound")
}

#[test]
fn crds_install_idempotently_and_become_established() {
    let cluster = Cluster::from_env();
    // Twice: installing over an installed copy must succeed too (every test relies on it).
    cluster.ensure_crds().unwrap();
    cluster.ensure_crds().unwrap();
    for (file, crd) in modelgate_crds::crds() {
        let name = crd.metadata.name.clone().unwrap();
        let out = cluster
            .kubectl_ok(&["get", "crd", &name, "-o", "json"])
            .unwrap();
        let live: Value = serde_json::from_str(&out).unwrap();
        let established = live["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        assert!(established, "{file}: {name} is not Established: {live:#}");
        let names = &live["status"]["acceptedNames"];
        assert_eq!(
            names["kind"],
            json!(crd.spec.names.kind),
            "{file}: acceptedNames"
        );
        assert_eq!(names["categories"], json!(["modelgate"]), "{file}");
        // What the apiserver serves is what the Rust types generate (a stale chart fails here).
        let want = serde_json::to_value(&crd.spec.versions).unwrap();
        assert!(
            contains(&live["spec"]["versions"], &want),
            "{file}: the installed CRD differs from the Rust types; run crdgen\n\
             installed: {:#}\nwant: {want:#}",
            live["spec"]["versions"]
        );
    }
}

/// Every example manifest: (file, its documents).
fn example_manifests() -> Vec<(PathBuf, Vec<Value>)> {
    let dir = repo_root().join("examples/manifests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("# "),
                "{}: start with a comment saying what it shows",
                path.display()
            );
            let docs = split_documents(&text)
                .into_iter()
                .map(|d| {
                    let v: serde_yaml::Value = serde_yaml::from_str(&d)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    serde_json::to_value(v).unwrap()
                })
                .filter(|v| !v.is_null())
                .collect::<Vec<_>>();
            assert!(!docs.is_empty(), "{}: no objects", path.display());
            (path, docs)
        })
        .collect()
}

/// The documents of a multi-document YAML file (split at `---` lines).
fn split_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs
}

/// `have` contains everything `want` says: objects key by key (`have` may have more), arrays
/// element by element, numbers by value (`2` equals `2.0`), the rest equal.
fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| contains(hv, wv))),
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(h, w)| contains(h, w))
        }
        (Value::Number(h), Value::Number(w)) => h.as_f64() == w.as_f64(),
        _ => have == want,
    }
}

#[test]
fn every_example_manifest_applies_into_a_namespace() {
    let cluster = cluster();
    let ns = cluster.temp_namespace("examples").unwrap();
    let manifests = example_manifests();

    let mut kinds = Vec::new();
    for (path, docs) in &manifests {
        for doc in docs {
            assert!(
                doc["metadata"].get("namespace").is_none(),
                "{}: {} sets metadata.namespace; examples apply into any namespace",
                path.display(),
                doc["metadata"]["name"]
            );
            // The Rust types read every modelgate object (what the operator will see).
            match doc["kind"].as_str().unwrap() {
                "ModelDeployment" => {
                    serde_json::from_value::<modelgate_crds::ModelDeployment>(doc.clone())
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
                "ModelGroupAlias" => {
                    serde_json::from_value::<modelgate_crds::ModelGroupAlias>(doc.clone())
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
                _ => {}
            }
            kinds.push(doc["kind"].as_str().unwrap().to_string());
        }
        // Each file as a user applies it: kubectl apply -n <ns> -f <file>.
        cluster
            .kubectl_ok(&[
                "apply",
                "--server-side",
                "--validate=strict",
                "-n",
                ns.name(),
                "-f",
                path.to_str().unwrap(),
            ])
            .unwrap();
    }
    for kind in ["Secret", "ModelDeployment", "ModelGroupAlias"] {
        assert!(kinds.iter().any(|k| k == kind), "no example has a {kind}");
    }

    // Every object exists, in the temp namespace, with nothing pruned or rewritten.
    for (path, docs) in &manifests {
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap();
            let name = doc["metadata"]["name"].as_str().unwrap();
            let live = get_json(&cluster, ns.name(), kind, name)
                .unwrap_or_else(|e| panic!("{}: {kind}/{name}: {e:#}", path.display()));
            assert_eq!(live["metadata"]["namespace"], ns.name());
            if kind == "Secret" {
                // stringData comes back base64-encoded under data.
                let keys: Vec<&String> = doc["stringData"].as_object().unwrap().keys().collect();
                for key in keys {
                    assert!(
                        live["data"].get(key).is_some(),
                        "{}: secret key {key}",
                        path.display()
                    );
                }
            } else {
                assert!(
                    contains(&live["spec"], &doc["spec"]),
                    "{}: {kind}/{name} came back different:\n{:#}\nwant:\n{:#}",
                    path.display(),
                    live["spec"],
                    doc["spec"]
                );
            }
        }
    }

    // The Azure deployments' apiKeySecretRefs name keys of a Secret the examples create.
    for (_, docs) in &manifests {
        for doc in docs {
            if let Some(r) = doc["spec"].get("apiKeySecretRef") {
                let secret = manifests
                    .iter()
                    .flat_map(|(_, d)| d)
                    .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == r["name"])
                    .unwrap_or_else(|| panic!("no example Secret {}", r["name"]));
                let key = r["key"].as_str().unwrap();
                assert!(secret["stringData"].get(key).is_some(), "secret key {key}");
            }
        }
    }
}

/// A ModelDeployment the apiserver accepts; every invalid case breaks it in one place.
fn valid_deployment(name: &str) -> Value {
    json!({
        "apiVersion": "modelgate.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "modelName": "gpt-4o",
            "model": "azure/gpt-4o-eu",
            "apiBase": "https://eu.example.openai.azure.com/",
            "apiKeySecretRef": {"name": "keys", "key": "eu"},
            "rpm": 10,
            "weight": 1.5,
            "timeoutSeconds": 30,
            "params": {"temperature": 0.2},
            "modelInfo": {"mode": "chat", "baseModel": "azure/gpt-4o"}
        }
    })
}

fn valid_alias(name: &str) -> Value {
    json!({
        "apiVersion": "modelgate.dev/v1alpha1",
        "kind": "ModelGroupAlias",
        "metadata": {"name": name},
        "spec": {"alias": "GPT-4", "modelGroup": "gpt-4o"}
    })
}

struct Invalid {
    case: &'static str,
    object: Value,
    /// A fragment of the message the apiserver must answer with.
    message: &'static str,
}

fn deployment_with(
    case: &'static str,
    message: &'static str,
    f: impl FnOnce(&mut Value),
) -> Invalid {
    let mut object = valid_deployment(&format!("bad-{case}"));
    f(&mut object["spec"]);
    Invalid {
        case,
        object,
        message,
    }
}

fn alias_with(case: &'static str, message: &'static str, f: impl FnOnce(&mut Value)) -> Invalid {
    let mut object = valid_alias(&format!("bad-{case}"));
    f(&mut object);
    Invalid {
        case,
        object,
        message,
    }
}

fn invalid_cases() -> Vec<Invalid> {
    vec![
        deployment_with(
            "missing-model-name",
            "spec.modelName: Required value",
            |s| {
                s.as_object_mut().unwrap().remove("modelName");
            },
        ),
        deployment_with(
            "empty-model",
            "spec.model in body should be at least 1 chars long",
            |s| s["model"] = json!(""),
        ),
        deployment_with(
            "model-trailing-slash",
            "model looks like provider/model",
            |s| s["model"] = json!("azure/"),
        ),
        deployment_with(
            "negative-rpm",
            "spec.rpm in body should be greater than or equal to 0",
            |s| s["rpm"] = json!(-1),
        ),
        deployment_with(
            "negative-weight",
            "spec.weight in body should be greater than or equal to 0",
            |s| s["weight"] = json!(-0.5),
        ),
        deployment_with(
            "timeout-zero",
            "spec.timeoutSeconds: Invalid value: 0: timeoutSeconds must be positive",
            |s| s["timeoutSeconds"] = json!(0),
        ),
        deployment_with(
            "stream-timeout-negative",
            "streamTimeoutSeconds must be positive",
            |s| s["streamTimeoutSeconds"] = json!(-1),
        ),
        deployment_with(
            "api-base-not-a-url",
            r#"spec.apiBase: Invalid value: "not a url": apiBase must be an http:// or https:// URL"#,
            |s| s["apiBase"] = json!("not a url"),
        ),
        deployment_with(
            "api-base-ftp",
            r#"spec.apiBase: Invalid value: "ftp://x": apiBase must be an http:// or https:// URL"#,
            |s| s["apiBase"] = json!("ftp://x"),
        ),
        deployment_with(
            "api-base-no-host",
            "apiBase must be an http:// or https:// URL",
            |s| s["apiBase"] = json!("https://"),
        ),
        // Credentials in params must be refused by the apiserver, before anything stores
        // them. CEL cannot see undeclared keys of a free-form object, but it sees declared
        // ones: params needs `api_key`/`api_base`/`model` as properties for `has()` rules.
        deployment_with(
            "params-api-key",
            "params must not set api_key, api_base or model",
            |s| s["params"]["api_key"] = json!("sk-not-a-real-key"),
        ),
        deployment_with(
            "params-api-base",
            "params must not set api_key, api_base or model",
            |s| s["params"]["api_base"] = json!("https://elsewhere.example.com"),
        ),
        deployment_with(
            "mode-bogus",
            r#"spec.modelInfo.mode: Unsupported value: "bogus""#,
            |s| s["modelInfo"]["mode"] = json!("bogus"),
        ),
        deployment_with(
            "secret-ref-empty-name",
            "spec.apiKeySecretRef.name in body should be at least 1 chars long",
            |s| s["apiKeySecretRef"]["name"] = json!(""),
        ),
        alias_with(
            "alias-targets-itself",
            "an alias cannot target itself: spec.alias equals spec.modelGroup",
            |o| o["spec"]["alias"] = json!("gpt-4o"),
        ),
        alias_with(
            "name-targets-itself",
            "an alias cannot target itself: metadata.name equals spec.modelGroup",
            |o| {
                o["spec"].as_object_mut().unwrap().remove("alias");
                o["spec"]["modelGroup"] = json!("bad-name-targets-itself");
            },
        ),
        alias_with(
            "missing-model-group",
            "spec.modelGroup: Required value",
            |o| {
                o["spec"].as_object_mut().unwrap().remove("modelGroup");
            },
        ),
    ]
}

#[test]
fn invalid_objects_are_rejected_with_a_clear_message() {
    let cluster = cluster();
    let ns = cluster.temp_namespace("invalid").unwrap();

    // The objects the cases break are valid, so each rejection is the broken field's doing.
    for valid in [valid_deployment("valid"), valid_alias("valid")] {
        let out = apply(&cluster, ns.name(), &valid);
        assert!(out.success, "a valid object was rejected: {}", out.stderr);
    }
    // Also valid: an alias named after its target, when spec.alias gives it another name.
    let mut renamed = valid_alias("gpt-4o");
    renamed["spec"]["alias"] = json!("gpt-4-latest");
    let out = apply(&cluster, ns.name(), &renamed);
    assert!(out.success, "{}", out.stderr);

    let mut failures = Vec::new();
    for case in invalid_cases() {
        let kind = case.object["kind"].as_str().unwrap();
        let name = case.object["metadata"]["name"].as_str().unwrap();
        let out = apply(&cluster, ns.name(), &case.object);
        if out.success {
            failures.push(format!("{}: accepted:\n{}", case.case, case.object));
        } else if !out.stderr.contains(case.message) {
            failures.push(format!(
                "{}: rejected, but the message lacks {:?}:\n{}",
                case.case, case.message, out.stderr
            ));
        }
        if !is_not_found(&cluster, ns.name(), kind, name) {
            failures.push(format!(
                "{}: {kind}/{name} exists after the apply",
                case.case
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// The description the Rust doc comments put on a field of a CRD (`path` under the schema).
fn doc_comment(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    path: &[&str],
) -> String {
    let mut schema =
        serde_json::to_value(&crd.spec.versions[0].schema).unwrap()["openAPIV3Schema"].clone();
    for field in path {
        schema = schema["properties"][*field].clone();
    }
    schema["description"].as_str().unwrap().to_string()
}

#[test]
fn kubectl_explain_shows_the_doc_comments() {
    let cluster = cluster();
    let md = modelgate_crds::ModelDeployment::crd();
    let mga = modelgate_crds::ModelGroupAlias::crd();
    let cases = [
        (
            "modeldeployment.spec.apiKeySecretRef",
            doc_comment(&md, &["spec", "apiKeySecretRef"]),
            "Keys are never written inline",
        ),
        (
            "modeldeployment.spec.modelName",
            doc_comment(&md, &["spec", "modelName"]),
            "Deployments with the same modelName form one group",
        ),
        (
            "modelgroupalias.spec.hidden",
            doc_comment(&mga, &["spec", "hidden"]),
            "Route the alias but leave it out of every listing",
        ),
    ];
    for (field, doc, fragment) in cases {
        // The doc comment itself says what we look for (so an empty description cannot pass).
        assert!(
            squash_whitespace(&doc).contains(fragment),
            "{field}: {doc:?}"
        );
        // OpenAPI is published a moment after the CRD is Established.
        let out = retry(PUBLISH_TIMEOUT, || {
            let out = cluster.kubectl_ok(&["explain", field])?;
            if !squash_whitespace(&out).contains(&squash_whitespace(&doc)) {
                bail!("`kubectl explain {field}` lacks the doc comment {doc:?}:\n{out}");
            }
            Ok(out)
        })
        .unwrap();
        assert!(out.contains("GROUP:      modelgate.dev"), "{out}");
    }
    // Nested fields are listed with their own docs.
    let out = cluster
        .kubectl_ok(&["explain", "modeldeployment.spec.apiKeySecretRef"])
        .unwrap();
    assert!(out.contains("Name of the Secret."), "{out}");
    assert!(out.contains("Key within the Secret's data."), "{out}");
}

fn ready_condition(status: &str, reason: &str) -> Value {
    json!({
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": "set by the printer column test",
        "lastTransitionTime": "2025-01-01T00:00:00Z"
    })
}

/// Writes `status` through the status subresource, as the operator will.
fn apply_status(cluster: &Cluster, ns: &str, obj: &Value, status: Value) {
    let patch = json!({
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": obj["metadata"]["name"]},
        "status": status,
    });
    let out = cluster
        .kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--subresource=status",
                "--field-manager=modelgate-tests-status",
                "-n",
                ns,
                "-f",
                "-",
            ],
            &patch.to_string(),
        )
        .unwrap();
    assert!(out.success, "status apply: {}", out.stderr);
}

/// `kubectl get <what> -n ns` as tables, retried until every name in `expect` is listed
/// (discovery of new resources and categories can lag a moment).
fn get_tables(
    cluster: &Cluster,
    ns: &str,
    what: &str,
    expect: &[&str],
) -> Vec<modelgate_tests::Table> {
    retry(PUBLISH_TIMEOUT, || {
        let out = cluster.kubectl_ok(&["get", what, "-n", ns])?;
        let tables = parse_tables(&out);
        for name in expect {
            if !tables.iter().any(|t| t.row(name).is_some()) {
                bail!("`kubectl get {what}` does not list {name}:\n{out}");
            }
        }
        Ok(tables)
    })
    .unwrap()
}

const DEPLOYMENT_COLUMNS: [&str; 6] = ["NAME", "GROUP", "MODEL", "READY", "REASON", "AGE"];
const ALIAS_COLUMNS: [&str; 6] = ["NAME", "ALIAS", "TARGET", "HIDDEN", "READY", "AGE"];

#[test]
fn kubectl_get_shows_the_printer_columns() {
    let cluster = cluster();
    let ns = cluster.temp_namespace("columns").unwrap();
    let ns = ns.name();

    let ready = valid_deployment("ready");
    let pending = {
        let mut d = valid_deployment("pending");
        d["spec"]["modelName"] = json!("demo");
        d["spec"]["model"] = json!("openai/demo");
        d
    };
    let listed = {
        let mut a = valid_alias("gpt-4");
        a["spec"].as_object_mut().unwrap().remove("alias");
        a
    };
    let hidden = {
        let mut a = valid_alias("internal-gpt");
        a["spec"]["alias"] = json!("internal/gpt");
        a["spec"]["hidden"] = json!(true);
        a
    };
    for obj in [&ready, &pending, &listed, &hidden] {
        let out = apply(&cluster, ns, obj);
        assert!(out.success, "{}", out.stderr);
    }
    apply_status(
        &cluster,
        ns,
        &ready,
        json!({"conditions": [ready_condition("True", "Ready")]}),
    );
    apply_status(
        &cluster,
        ns,
        &hidden,
        json!({"alias": "internal/gpt", "conditions": [ready_condition("False", "GroupNotFound")]}),
    );

    for what in ["modeldeployments", "md", "modeldeployment.modelgate.dev"] {
        let tables = get_tables(&cluster, ns, what, &["ready", "pending"]);
        assert_eq!(tables.len(), 1, "{what}: {tables:?}");
        let t = &tables[0];
        assert_eq!(t.header, DEPLOYMENT_COLUMNS, "kubectl get {what}");
        let row = t.row("ready").unwrap();
        assert_eq!(t.cell(row, "GROUP"), Some("gpt-4o"));
        assert_eq!(t.cell(row, "MODEL"), Some("azure/gpt-4o-eu"));
        assert_eq!(t.cell(row, "READY"), Some("True"));
        assert_eq!(t.cell(row, "REASON"), Some("Ready"));
        assert!(!t.cell(row, "AGE").unwrap().is_empty());
        let row = t.row("pending").unwrap();
        assert_eq!(t.cell(row, "GROUP"), Some("demo"));
        assert_eq!(t.cell(row, "MODEL"), Some("openai/demo"));
        assert_eq!(t.cell(row, "READY"), Some(""), "no status yet");
        assert_eq!(t.cell(row, "REASON"), Some(""), "no status yet");
    }

    for what in ["modelgroupaliases", "mga"] {
        let tables = get_tables(&cluster, ns, what, &["gpt-4", "internal-gpt"]);
        assert_eq!(tables.len(), 1, "{what}: {tables:?}");
        let t = &tables[0];
        assert_eq!(t.header, ALIAS_COLUMNS, "kubectl get {what}");
        let row = t.row("gpt-4").unwrap();
        assert_eq!(t.cell(row, "TARGET"), Some("gpt-4o"));
        assert_eq!(
            t.cell(row, "HIDDEN"),
            Some("false"),
            "hidden defaults to false"
        );
        assert_eq!(t.cell(row, "ALIAS"), Some(""), "no status yet");
        let row = t.row("internal-gpt").unwrap();
        assert_eq!(t.cell(row, "ALIAS"), Some("internal/gpt"));
        assert_eq!(t.cell(row, "TARGET"), Some("gpt-4o"));
        assert_eq!(t.cell(row, "HIDDEN"), Some("true"));
        assert_eq!(t.cell(row, "READY"), Some("False"));
    }

    // The category lists both kinds, each with its own columns.
    let tables = get_tables(
        &cluster,
        ns,
        "modelgate",
        &["ready", "pending", "gpt-4", "internal-gpt"],
    );
    assert_eq!(tables.len(), 2, "{tables:?}");
    let md = tables.iter().find(|t| t.row("ready").is_some()).unwrap();
    assert_eq!(md.header, DEPLOYMENT_COLUMNS);
    assert_eq!(
        md.row("ready").unwrap()[0],
        "modeldeployment.modelgate.dev/ready"
    );
    let mga = tables.iter().find(|t| t.row("gpt-4").is_some()).unwrap();
    assert_eq!(mga.header, ALIAS_COLUMNS);
    assert_eq!(
        mga.row("gpt-4").unwrap()[0],
        "modelgroupalias.modelgate.dev/gpt-4"
    );
}

fn version_and_generation(obj: &Value) -> (String, i64) {
    (
        obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string(),
        obj["metadata"]["generation"].as_i64().unwrap(),
    )
}

#[test]
fn server_side_apply_of_the_same_object_is_a_no_op() {
    let cluster = cluster();
    let ns = cluster.temp_namespace("ssa").unwrap();
    let ns = ns.name();

    let mut deployment = valid_deployment("stable");
    // Free-form params and fractional numbers must survive the round trip unchanged too.
    deployment["spec"]["params"] =
        json!({"temperature": 0.2, "extra_headers": {"x-team": "research"}});
    deployment["spec"]["modelInfo"]["extra"] = json!({"team": "research"});
    let alias = valid_alias("stable"); // leaves `hidden` to its default

    for obj in [&deployment, &alias] {
        let kind = obj["kind"].as_str().unwrap();
        let first = apply(&cluster, ns, obj);
        assert!(first.success, "{}", first.stderr);
        let first: Value = serde_json::from_str(&first.stdout).unwrap();
        let (rv1, gen1) = version_and_generation(&first);
        assert_eq!(gen1, 1, "{kind}: a new object");

        let second = apply(&cluster, ns, obj);
        assert!(second.success, "{}", second.stderr);
        let second: Value = serde_json::from_str(&second.stdout).unwrap();
        assert_eq!(
            version_and_generation(&second),
            (rv1.clone(), gen1),
            "{kind}: applying the same object again changed it"
        );
        let live = get_json(&cluster, ns, kind, "stable").unwrap();
        assert_eq!(version_and_generation(&live), (rv1.clone(), gen1), "{kind}");

        // The check can fail: a real change bumps both.
        let mut changed = obj.clone();
        match kind {
            "ModelDeployment" => changed["spec"]["rpm"] = json!(11),
            _ => changed["spec"]["hidden"] = json!(true),
        }
        let third = apply(&cluster, ns, &changed);
        assert!(third.success, "{}", third.stderr);
        let third: Value = serde_json::from_str(&third.stdout).unwrap();
        let (rv3, gen3) = version_and_generation(&third);
        assert_ne!(rv3, rv1, "{kind}: a change kept the resourceVersion");
        assert_eq!(gen3, gen1 + 1, "{kind}: a spec change bumps the generation");
    }
}

#[test]
fn temp_namespaces_are_deleted_even_when_a_test_panics() {
    let cluster = Cluster::from_env();
    let name = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ns = cluster.temp_namespace("drop-guard").unwrap();
        let name = ns.name().to_string();
        let phase = cluster
            .kubectl_ok(&["get", "namespace", &name, "-o", "jsonpath={.status.phase}"])
            .unwrap();
        assert_eq!(phase, "Active");
        std::panic::panic_any(name);
    }))
    .unwrap_err()
    .downcast::<String>()
    .unwrap();
    // Deleted: gone, or on its way out.
    let out = cluster
        .kubectl(&["get", "namespace", &name, "-o", "jsonpath={.status.phase}"])
        .unwrap();
    assert!(
        (!out.success && out.stderr.contains("NotFound"))
            || (out.success && out.stdout == "Terminating"),
        "namespace {name} survived its guard: {out:?}"
    );
}
