//! The effective proxy settings of one config (LiteLLM's precedence: `router_settings` >
//! `litellm_settings` > built-in default), and the list of settings that are set but not
//! implemented yet, which the proxy names in a warning instead of ignoring silently.

use super::ConfigError;
use crate::router::deployment::ApiKey;
use modelgate_crds::config::Config;
use serde_json::Value;
use std::time::Duration;

/// Settings the command line provides, overridden by the config where it sets them.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub max_body_bytes: usize,
    /// `LITELLM_MASTER_KEY`, used when the config sets no master key.
    pub master_key_env: Option<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            master_key_env: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub master_key: Option<ApiKey>,
    pub max_body_bytes: usize,
    /// Request timeout when neither the request nor the deployment sets one.
    pub timeout: Duration,
    pub stream_timeout: Option<Duration>,
    /// modelgate checks health in the background unless the config says `false`.
    pub background_health_checks: bool,
    pub health_check_interval: Duration,
    pub health_check_details: bool,
    /// Strategy, retries, cooldowns, fallbacks, pre-call checks.
    pub policy: crate::router::policy::Policy,
    /// Where limits and cooldowns are shared with the other replicas, if anywhere.
    pub redis: Option<super::redis_target::RedisTarget>,
}

/// LiteLLM's `request_timeout` default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6000);
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(300);

impl Settings {
    pub fn from_config(config: &Config, defaults: &Defaults) -> Result<Self, ConfigError> {
        let gs = &config.general_settings;
        let rs = &config.router_settings;
        let max_body_bytes = match gs.max_request_size_mb {
            Some(mb) if mb > 0.0 && mb.is_finite() => (mb * 1024.0 * 1024.0) as usize,
            Some(mb) => {
                return Err(ConfigError::Invalid(format!(
                    "general_settings.max_request_size_mb must be positive, got {mb}"
                )));
            }
            None => defaults.max_body_bytes,
        };
        let litellm_timeout = config
            .litellm_settings
            .get("request_timeout")
            .and_then(Value::as_f64)
            .filter(|t| *t > 0.0)
            .map(Duration::from_secs_f64);
        Ok(Self {
            master_key: gs
                .master_key
                .clone()
                .or_else(|| defaults.master_key_env.clone())
                .filter(|k| !k.is_empty())
                .map(ApiKey::new),
            max_body_bytes,
            timeout: rs
                .timeout
                .map(|s| s.as_duration())
                .or(litellm_timeout)
                .unwrap_or(DEFAULT_TIMEOUT),
            stream_timeout: rs.stream_timeout.map(|s| s.as_duration()),
            background_health_checks: gs.background_health_checks.unwrap_or(true),
            health_check_interval: gs
                .health_check_interval
                .map(|s| s.as_duration())
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_HEALTH_INTERVAL),
            health_check_details: gs.health_check_details.unwrap_or(true),
            policy: crate::router::policy::Policy::from_config(config)
                .map_err(ConfigError::Invalid)?,
            redis: super::redis_target::redis_target(config)?,
        })
    }
}

/// Settings modelgate reads and honours; anything else that is set gets a warning.
const ROUTER_SUPPORTED: &[&str] = &[
    "routing_strategy",
    "routing_strategy_args",
    "model_group_alias",
    "timeout",
    "stream_timeout",
    "num_retries",
    "retry_policy",
    "model_group_retry_policy",
    "retry_after",
    "allowed_fails",
    "allowed_fails_policy",
    "cooldown_time",
    "disable_cooldowns",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "default_fallbacks",
    "max_fallbacks",
    "enable_pre_call_checks",
    "redis_url",
    "redis_host",
    "redis_port",
    "redis_password",
    "redis_failure_mode",
    "redis_timeout",
    "redis_username",
];
const LITELLM_SUPPORTED: &[&str] = &[
    "request_timeout",
    "model_alias_map",
    "num_retries",
    "retry_policy",
    "allowed_fails",
    "cooldown_time",
    "disable_cooldowns",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "default_fallbacks",
    "max_fallbacks",
];
const GENERAL_SUPPORTED: &[&str] = &[
    "master_key",
    "background_health_checks",
    "health_check_interval",
    "health_check_details",
    "max_request_size_mb",
];

/// One line per setting that is present but not implemented yet.
pub fn unsupported(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let rs = serde_json::to_value(&config.router_settings).unwrap_or(Value::Null);
    let gs = serde_json::to_value(&config.general_settings).unwrap_or(Value::Null);
    let sections = [
        ("router_settings", rs.as_object(), ROUTER_SUPPORTED),
        (
            "litellm_settings",
            Some(&config.litellm_settings),
            LITELLM_SUPPORTED,
        ),
        ("general_settings", gs.as_object(), GENERAL_SUPPORTED),
    ];
    for (section, map, supported) in sections {
        for (key, value) in map.into_iter().flatten() {
            if !value.is_null() && !supported.contains(&key.as_str()) {
                out.push(format!("{section}.{key}"));
            }
        }
    }
    for key in config.extra.keys() {
        out.push(key.clone());
    }
    out.into_iter()
        .map(|s| format!("setting {s} is not supported yet and has no effect"))
        .collect()
}
