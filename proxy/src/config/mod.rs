//! Loading a config: text → references resolved → typed → validated → [`Snapshot`].
//! Loading is all-or-nothing, so a broken config never replaces a good one.

pub mod redis_target;
pub mod resolve;
mod settings;
pub mod watch;

pub use settings::{Defaults, Settings};

use crate::{
    catalog::Catalog,
    router::{ConfigMeta, Snapshot},
};
use modelgate_crds::config::Config;
use resolve::{Resolver, SecretLookup, Unresolved};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashSet;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("config field {path}: {message}")]
    Field { path: String, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// A loaded config ready to be swapped in, with what the operator should be told about it.
pub struct Loaded {
    pub snapshot: Snapshot,
    /// Settings that are set but not implemented, unresolved references, doubtful aliases.
    pub warnings: Vec<String>,
}

/// SHA-256 of a config's text, hex: the hash readiness reports.
pub fn hash_text(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Parses, resolves and validates a whole config and builds its router.
pub fn load(
    text: &str,
    generation: u64,
    source: &str,
    defaults: &Defaults,
    catalog: &Catalog,
    secrets: &dyn SecretLookup,
) -> Result<Loaded, ConfigError> {
    let mut raw: Value = if text.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        serde_yaml::from_str(text)?
    };
    if raw.is_null() {
        raw = Value::Object(Default::default());
    }
    let Some(obj) = raw.as_object_mut() else {
        return Err(ConfigError::Invalid(
            "the top level must be a mapping (model_list, router_settings, ...)".into(),
        ));
    };
    let config_env = obj
        .get("environment_variables")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut resolver = Resolver {
        config_env,
        secrets,
        unresolved: Unresolved::default(),
    };
    resolver.resolve(&mut raw, None);
    if let Some(list) = raw.get_mut("model_list").and_then(Value::as_array_mut) {
        resolve::assign_ids(list);
    }
    let config: Config = serde_path_to_error::deserialize(raw).map_err(|e| ConfigError::Field {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    validate(&config)?;

    let mut warnings = settings::unsupported(&config);
    warnings.extend(
        resolver
            .unresolved
            .env
            .iter()
            .map(|n| format!("environment variable {n} is not set; its value is null")),
    );
    warnings.extend(
        resolver
            .unresolved
            .secrets
            .iter()
            .map(|r| format!("secret reference secret/{r} cannot be resolved; its value is null")),
    );
    let groups: HashSet<&str> = config
        .model_list
        .iter()
        .map(|d| d.model_name.as_str())
        .collect();
    for (alias, target) in &config.router_settings.model_group_alias {
        if !groups.contains(target.group()) {
            warnings.push(format!(
                "alias {alias:?} points at model group {:?}, which has no deployments",
                target.group()
            ));
        }
        if groups.contains(alias.as_str()) {
            warnings.push(format!(
                "alias {alias:?} has the name of a model group; the group wins"
            ));
        }
    }

    let settings = Settings::from_config(&config, defaults)?;
    let meta = ConfigMeta {
        generation,
        hash: hash_text(text),
        source: source.to_string(),
    };
    Ok(Loaded {
        snapshot: Snapshot::build(&config, settings, meta, catalog),
        warnings,
    })
}

const STRATEGIES: &[&str] = &[
    "simple-shuffle",
    "least-busy",
    "usage-based-routing",
    "usage-based-routing-v2",
    "latency-based-routing",
    "cost-based-routing",
];

fn validate(config: &Config) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    for (i, d) in config.model_list.iter().enumerate() {
        if d.model_name.trim().is_empty() {
            return Err(ConfigError::Invalid(format!(
                "model_list[{i}]: model_name is empty"
            )));
        }
        if d.litellm_params.model.trim().is_empty() {
            return Err(ConfigError::Invalid(format!(
                "model_list[{i}] ({}): litellm_params.model is empty",
                d.model_name
            )));
        }
        if d.litellm_params
            .weight
            .is_some_and(|w| w.is_nan() || w < 0.0)
        {
            return Err(ConfigError::Invalid(format!(
                "model_list[{i}] ({}): weight must be a non-negative number",
                d.model_name
            )));
        }
        let id = d.model_info.get("id").map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        if let Some(id) = id
            && !ids.insert(id.clone())
        {
            return Err(ConfigError::Invalid(format!(
                "model_list[{i}] ({}): model_info.id {id:?} is used by another deployment",
                d.model_name
            )));
        }
    }
    let rs = &config.router_settings;
    if let Some(s) = &rs.routing_strategy
        && !STRATEGIES.contains(&s.as_str())
    {
        return Err(ConfigError::Invalid(format!(
            "router_settings.routing_strategy {s:?} is unknown; use one of {}",
            STRATEGIES.join(", ")
        )));
    }
    if rs.extra.contains_key("health_check_interval") {
        return Err(ConfigError::Invalid(
            "health_check_interval belongs in general_settings, not router_settings".into(),
        ));
    }
    let fallback_lists = [
        ("router_settings.fallbacks", rs.fallbacks.as_ref()),
        (
            "router_settings.context_window_fallbacks",
            rs.extra.get("context_window_fallbacks"),
        ),
        (
            "router_settings.content_policy_fallbacks",
            rs.extra.get("content_policy_fallbacks"),
        ),
        (
            "litellm_settings.fallbacks",
            config.litellm_settings.get("fallbacks"),
        ),
        (
            "litellm_settings.context_window_fallbacks",
            config.litellm_settings.get("context_window_fallbacks"),
        ),
        (
            "litellm_settings.content_policy_fallbacks",
            config.litellm_settings.get("content_policy_fallbacks"),
        ),
    ];
    for (name, value) in fallback_lists {
        check_fallbacks(name, value)?;
    }
    Ok(())
}

/// Fallbacks are a list of single-key maps `{group: [groups]}`, as LiteLLM requires.
fn check_fallbacks(name: &str, value: Option<&Value>) -> Result<(), ConfigError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let bad = || {
        ConfigError::Invalid(format!(
            "{name} must be a list of single-key maps like [{{\"gpt-4o\": [\"gpt-4o-mini\"]}}]"
        ))
    };
    let list = value.as_array().ok_or_else(bad)?;
    for item in list {
        let map = item.as_object().ok_or_else(bad)?;
        if map.len() != 1 || !map.values().all(Value::is_array) {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
