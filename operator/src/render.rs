//! The pure middle of reconciliation: from one namespace's resources (and which Secret
//! keys exist) to the router config and a verdict per object. No client, no clock:
//! the same inputs always give the same bytes, so an unchanged namespace is never rewritten.

use modelgate_crds::{
    ModelDeployment, ModelGroupAlias,
    conditions::reasons,
    config::{AliasTarget, Config, DeploymentConfig, LitellmParams, Seconds},
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Which keys each Secret of the namespace holds (values are never needed).
pub type SecretKeys = BTreeMap<String, BTreeSet<String>>;

/// A condition outcome: `Ok(message)` or `Err((reason, message))`.
pub type Check = Result<String, (&'static str, String)>;

/// What the operator concludes about one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub accepted: Check,
    pub resolved: Check,
    /// Whether it is written into the ConfigMap.
    pub included: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub config: Config,
    pub yaml: String,
    /// SHA-256 of `yaml`, hex.
    pub hash: String,
    /// Keyed by resource name.
    pub deployments: BTreeMap<String, Verdict>,
    pub aliases: BTreeMap<String, Verdict>,
}

/// `litellm_params` keys that look like credentials; they belong in a Secret.
fn credential_like(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !k.contains("cost")
        && k.split(['_', '-']).any(|s| {
            matches!(
                s,
                "key" | "secret" | "password" | "token" | "credential" | "credentials"
            )
        })
}

fn name_of<K: kube::Resource>(obj: &K) -> String {
    obj.meta().name.clone().unwrap_or_default()
}

/// Builds the namespace's config over `base` and judges every object.
pub fn plan(
    base: &Config,
    deployments: &[ModelDeployment],
    aliases: &[ModelGroupAlias],
    secrets: &SecretKeys,
) -> Plan {
    let mut config = base.clone();
    let mut verdicts = BTreeMap::new();
    let mut sorted: Vec<&ModelDeployment> = deployments.iter().collect();
    sorted.sort_by_key(|d| (d.spec.model_name.clone(), name_of(*d)));
    let mut groups = BTreeSet::new();
    for d in sorted {
        let accepted = accept_deployment(d);
        let resolved = resolve_deployment(d, secrets);
        let included = accepted.is_ok() && resolved.is_ok();
        if included {
            groups.insert(d.spec.model_name.clone());
            config.model_list.push(entry(d));
        }
        verdicts.insert(
            name_of(d),
            Verdict {
                accepted,
                resolved,
                included,
            },
        );
    }
    for existing in &base.model_list {
        groups.insert(existing.model_name.clone());
    }

    // Older aliases win a name; ties break by resource name, so the outcome is stable.
    let mut by_age: Vec<&ModelGroupAlias> = aliases.iter().collect();
    by_age.sort_by_key(|a| {
        (
            a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            name_of(*a),
        )
    });
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut alias_verdicts = BTreeMap::new();
    for a in by_age {
        let alias = a.alias_name();
        let resolved: Check = if groups.contains(&alias) {
            Err((
                reasons::SHADOWS_GROUP,
                format!(
                    "alias {alias:?} has the name of a model group; the group wins and the alias is not used"
                ),
            ))
        } else if let Some(owner) = owners.get(&alias) {
            Err((
                reasons::DUPLICATE_ALIAS,
                format!("alias {alias:?} is already defined by the older ModelGroupAlias {owner}"),
            ))
        } else if !groups.contains(&a.spec.model_group) {
            Err((
                reasons::GROUP_NOT_FOUND,
                format!(
                    "model group {:?} has no usable ModelDeployment in this namespace",
                    a.spec.model_group
                ),
            ))
        } else {
            Ok(format!(
                "alias {alias:?} routes to model group {:?}",
                a.spec.model_group
            ))
        };
        let included = resolved.is_ok();
        if included {
            owners.insert(alias.clone(), name_of(a));
            let target = if a.spec.hidden {
                AliasTarget::Detailed {
                    model: a.spec.model_group.clone(),
                    hidden: true,
                }
            } else {
                AliasTarget::Group(a.spec.model_group.clone())
            };
            config
                .router_settings
                .model_group_alias
                .insert(alias, target);
        }
        alias_verdicts.insert(
            name_of(a),
            Verdict {
                accepted: Ok("the spec is valid".into()),
                resolved,
                included,
            },
        );
    }

    // Serialising our own types cannot fail; an empty string would still be a valid config.
    let yaml = config.to_yaml().unwrap_or_default();
    let hash = hex::encode(Sha256::digest(yaml.as_bytes()));
    Plan {
        config,
        yaml,
        hash,
        deployments: verdicts,
        aliases: alias_verdicts,
    }
}

fn accept_deployment(d: &ModelDeployment) -> Check {
    const OWN_FIELDS: &[&str] = &[
        "model",
        "api_base",
        "api_version",
        "rpm",
        "tpm",
        "weight",
        "order",
        "timeout",
        "stream_timeout",
        "region_name",
        "mock_response",
    ];
    if let Some(bad) = d
        .spec
        .params
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .find(|k| OWN_FIELDS.contains(&k.as_str()))
    {
        return Err((
            reasons::INVALID,
            format!("params.{bad} duplicates a field of the spec; set the spec field instead"),
        ));
    }
    if let Some(params) = &d.spec.params
        && let Some(bad) = params.keys().find(|k| credential_like(k))
    {
        return Err((
            reasons::INVALID,
            format!(
                "params.{bad} looks like a credential; put it in a Secret and use apiKeySecretRef"
            ),
        ));
    }
    Ok("the spec is valid".into())
}

fn resolve_deployment(d: &ModelDeployment, secrets: &SecretKeys) -> Check {
    let Some(r) = &d.spec.api_key_secret_ref else {
        return Ok("no credentials referenced".into());
    };
    match secrets.get(&r.name) {
        None => Err((
            reasons::SECRET_NOT_FOUND,
            format!("Secret {:?} not found in this namespace", r.name),
        )),
        Some(keys) if !keys.contains(&r.key) => Err((
            reasons::SECRET_KEY_NOT_FOUND,
            format!("Secret {:?} has no key {:?}", r.name, r.key),
        )),
        Some(_) => Ok(format!("Secret {:?} key {:?} found", r.name, r.key)),
    }
}

/// The `model_list` entry of a deployment. Its id is the resource name, stable across edits.
pub fn entry(d: &ModelDeployment) -> DeploymentConfig {
    let s = &d.spec;
    let mut model_info = Map::new();
    model_info.insert("id".into(), json!(name_of(d)));
    if let Some(info) = &s.model_info {
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                model_info.insert(k.to_string(), v);
            }
        };
        put("base_model", info.base_model.clone().map(Value::from));
        put("mode", info.mode.and_then(|m| serde_json::to_value(m).ok()));
        put("max_input_tokens", info.max_input_tokens.map(Value::from));
        put("max_output_tokens", info.max_output_tokens.map(Value::from));
        put(
            "input_cost_per_token",
            info.input_cost_per_token.map(Value::from),
        );
        put(
            "output_cost_per_token",
            info.output_cost_per_token.map(Value::from),
        );
        for (k, v) in info.extra.iter().flatten() {
            model_info.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    DeploymentConfig {
        model_name: s.model_name.clone(),
        litellm_params: LitellmParams {
            model: s.model.clone(),
            api_base: s.api_base.clone(),
            api_key: s
                .api_key_secret_ref
                .as_ref()
                .map(|r| format!("secret/{}/{}", r.name, r.key)),
            api_version: s.api_version.clone(),
            rpm: s.rpm,
            tpm: s.tpm,
            weight: s.weight,
            order: s.order.map(i64::from),
            timeout: s.timeout_seconds.map(Seconds),
            stream_timeout: s.stream_timeout_seconds.map(Seconds),
            region_name: s.region.clone(),
            mock_response: s.mock_response.clone().map(Value::from),
            extra: s.params.clone().unwrap_or_default(),
            ..LitellmParams::default()
        },
        model_info,
        extra: Map::new(),
    }
}

#[cfg(test)]
mod tests;
