//! The LiteLLM proxy config format (`model_list`, `router_settings`, ...), shared by the
//! operator, which renders it, and the proxy, which serves it.
//!
//! Every struct keeps unknown keys in an `extra` map: a LiteLLM config must load unchanged,
//! and the operator must be able to write back what it read without losing anything.

mod alias;
mod numbers;

pub use alias::AliasTarget;
pub use numbers::Seconds;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A whole LiteLLM-format config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The deployments, one entry per upstream model.
    #[serde(default)]
    pub model_list: Vec<DeploymentConfig>,
    /// Router constructor arguments: strategy, retries, fallbacks, aliases, Redis.
    #[serde(default, skip_serializing_if = "RouterSettings::is_empty")]
    pub router_settings: RouterSettings,
    /// Process-wide LiteLLM defaults (`num_retries`, `request_timeout`, `fallbacks`, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub litellm_settings: Map<String, Value>,
    /// Proxy settings: master key, health checks, request size.
    #[serde(default, skip_serializing_if = "GeneralSettings::is_empty")]
    pub general_settings: GeneralSettings,
    /// Exported to the process environment before `os.environ/` references are resolved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment_variables: BTreeMap<String, Value>,
    /// Top-level keys modelgate does not use (kept, and named in a warning).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One `model_list` entry: a deployment in a model group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentConfig {
    /// The model group (public name) clients ask for; may contain `*` for wildcard routes.
    pub model_name: String,
    /// How to call the upstream.
    pub litellm_params: LitellmParams,
    /// Listing metadata (`id`, `base_model`, `mode`, prices, custom keys).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub model_info: Map<String, Value>,
    /// Legacy keys beside `model_name` (`rpm`, `tpm`), folded into `litellm_params` by LiteLLM.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `litellm_params`: the provider call. Keys not named here are passed to the provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LitellmParams {
    /// `provider/model`, for example `azure/gpt-4o-eu`; may contain `*`.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    /// A literal key, `os.environ/NAME`, or (from the operator) `secret/<name>/<key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_timeout: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_time: Option<Seconds>,
    /// Answer with this instead of calling the upstream (examples and tests run offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock_response: Option<Value>,
    /// Any other key: sent to the provider with the request.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `router_settings`. Known keys are typed; the rest are kept for later features.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouterSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_strategy: Option<String>,
    /// `alias: group` or `alias: {model: group, hidden: true}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_group_alias: BTreeMap<String, AliasTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_timeout: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallbacks: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RouterSettings {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `general_settings`: the proxy's own settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneralSettings {
    /// Admin key; with one set, every endpoint but liveliness/readiness needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_health_checks: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_interval: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_details: Option<bool>,
    /// Largest accepted request body, in MB (LiteLLM's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_size_mb: Option<f64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl GeneralSettings {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Config {
    /// Parses YAML (JSON is YAML too). Does not resolve `os.environ/` references.
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        // An empty file is a valid, empty config.
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text)
    }

    /// Serialises to YAML, the form the operator writes into the ConfigMap.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }
}

#[cfg(test)]
mod tests;
