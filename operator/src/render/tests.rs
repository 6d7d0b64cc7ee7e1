//! Rendering from YAML fixtures (`operator/fixtures/<case>/input.yaml`), compared with the
//! committed `expected.yaml`. Set `MODELGATE_BLESS=1` to rewrite the expected files.

use super::*;
use modelgate_crds::conditions::reasons;
use std::path::PathBuf;

struct Inputs {
    deployments: Vec<ModelDeployment>,
    aliases: Vec<ModelGroupAlias>,
    secrets: SecretKeys,
}

fn fixture(case: &str) -> (Inputs, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(case);
    let text = std::fs::read_to_string(dir.join("input.yaml")).unwrap();
    let mut inputs = Inputs {
        deployments: vec![],
        aliases: vec![],
        secrets: SecretKeys::new(),
    };
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = serde_json::Value::deserialize(doc).unwrap();
        match v["kind"].as_str().unwrap() {
            "ModelDeployment" => inputs.deployments.push(serde_json::from_value(v).unwrap()),
            "ModelGroupAlias" => inputs.aliases.push(serde_json::from_value(v).unwrap()),
            "Secret" => {
                let keys = v["data"].as_object().unwrap().keys().cloned().collect();
                inputs
                    .secrets
                    .insert(v["metadata"]["name"].as_str().unwrap().to_string(), keys);
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    (inputs, dir)
}

fn check_expected(dir: &std::path::Path, yaml: &str) {
    let path = dir.join("expected.yaml");
    if std::env::var("MODELGATE_BLESS").is_ok() {
        std::fs::write(&path, yaml).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        yaml,
        want,
        "rendered config differs from {}",
        path.display()
    );
}

use serde::Deserialize;

#[test]
fn azure_group_renders_sorted_with_secret_references() {
    let (i, dir) = fixture("azure-group");
    let p = plan(&Config::default(), &i.deployments, &i.aliases, &i.secrets);
    check_expected(&dir, &p.yaml);
    assert!(p.yaml.contains("api_key: secret/azure-keys/eu"));
    assert!(
        !p.yaml.contains("ZmFrZQ"),
        "secret values never reach the config"
    );
    assert!(p.deployments.values().all(|v| v.included));
    assert!(p.aliases.values().all(|v| v.included));
    // The rendered YAML is what the proxy parses.
    let back = Config::from_yaml(&p.yaml).unwrap();
    assert_eq!(back.model_list.len(), 3);
    assert!(back.router_settings.model_group_alias["internal-gpt"].hidden());
}

#[test]
fn rendering_is_deterministic_whatever_the_input_order() {
    let (mut i, _) = fixture("azure-group");
    let a = plan(&Config::default(), &i.deployments, &i.aliases, &i.secrets);
    i.deployments.reverse();
    i.aliases.reverse();
    let b = plan(&Config::default(), &i.deployments, &i.aliases, &i.secrets);
    assert_eq!(a.yaml, b.yaml);
    assert_eq!(a.hash, b.hash);
}

#[test]
fn conflicts_become_verdicts_and_the_rest_still_renders() {
    let (i, dir) = fixture("conflicts");
    let p = plan(&Config::default(), &i.deployments, &i.aliases, &i.secrets);
    check_expected(&dir, &p.yaml);
    let reason = |v: &Verdict| v.resolved.as_ref().err().map(|e| e.0);
    assert_eq!(
        reason(&p.deployments["no-secret"]),
        Some(reasons::SECRET_NOT_FOUND)
    );
    assert_eq!(
        reason(&p.deployments["no-key"]),
        Some(reasons::SECRET_KEY_NOT_FOUND)
    );
    assert_eq!(
        p.deployments["inline-key"]
            .accepted
            .as_ref()
            .err()
            .map(|e| e.0),
        Some(reasons::INVALID)
    );
    assert!(p.deployments["ok"].included);
    assert_eq!(
        reason(&p.aliases["to-nowhere"]),
        Some(reasons::GROUP_NOT_FOUND)
    );
    assert_eq!(reason(&p.aliases["shadow"]), Some(reasons::SHADOWS_GROUP));
    assert_eq!(reason(&p.aliases["newer"]), Some(reasons::DUPLICATE_ALIAS));
    assert!(p.aliases["older"].included);
    let cfg = Config::from_yaml(&p.yaml).unwrap();
    assert_eq!(cfg.model_list.len(), 1);
    assert!(
        cfg.router_settings.model_group_alias["best"].hidden(),
        "the older alias wins"
    );
}

#[test]
fn no_resources_is_a_valid_empty_config() {
    let p = plan(&Config::default(), &[], &[], &SecretKeys::new());
    let cfg = Config::from_yaml(&p.yaml).unwrap();
    assert!(cfg.model_list.is_empty());
}

#[test]
fn the_base_config_is_kept() {
    let base = Config::from_yaml("router_settings: {num_retries: 3, routing_strategy: least-busy}\nlitellm_settings: {request_timeout: 30}\n").unwrap();
    let (i, _) = fixture("azure-group");
    let p = plan(&base, &i.deployments, &i.aliases, &i.secrets);
    let cfg = Config::from_yaml(&p.yaml).unwrap();
    assert_eq!(cfg.router_settings.num_retries, Some(3));
    assert_eq!(cfg.litellm_settings["request_timeout"], 30);
    assert_eq!(cfg.model_list.len(), 3);
}
