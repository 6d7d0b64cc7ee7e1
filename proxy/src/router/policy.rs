//! The router's behaviour as a config sets it (LiteLLM's `router_settings`, falling back to
//! `litellm_settings`): strategy, retries, cooldowns, fallbacks and pre-call checks. Read
//! once per config load; the request path only looks fields up.

use super::failure::ErrorClass;
use modelgate_crds::config::Config;
use serde_json::{Map, Value};
use std::{collections::HashMap, time::Duration};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    SimpleShuffle,
    LeastBusy,
    UsageBased,
    UsageBasedV2,
    LatencyBased,
    CostBased,
}

impl Strategy {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "simple-shuffle" => Self::SimpleShuffle,
            "least-busy" => Self::LeastBusy,
            "usage-based-routing" => Self::UsageBased,
            "usage-based-routing-v2" => Self::UsageBasedV2,
            "latency-based-routing" => Self::LatencyBased,
            "cost-based-routing" => Self::CostBased,
            _ => return None,
        })
    }

    /// Whether the strategy enforces rpm/tpm per minute (the others use them as weights).
    pub fn enforces_limits(self) -> bool {
        !matches!(self, Self::SimpleShuffle | Self::LeastBusy)
    }
}

/// Counts per error class (`retry_policy`, `allowed_fails_policy`).
#[derive(Debug, Clone, Default)]
pub struct PerClass(HashMap<ErrorClass, u32>);

impl PerClass {
    fn parse(v: Option<&Value>, suffix: &str) -> Option<Self> {
        let map = v?.as_object()?;
        let mut out = HashMap::new();
        for (k, v) in map {
            let Some(n) = v.as_u64().and_then(|n| u32::try_from(n).ok()) else {
                continue;
            };
            if let Some(class) = k
                .strip_suffix(suffix)
                .and_then(ErrorClass::from_policy_name)
            {
                out.insert(class, n);
            }
        }
        Some(Self(out))
    }

    pub fn get(&self, class: ErrorClass) -> Option<u32> {
        self.0.get(&class).copied()
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub strategy: Strategy,
    /// `routing_strategy_args`: latency `ttl`, `lowest_latency_buffer`, `max_latency_list_size`.
    pub latency_ttl: Duration,
    pub latency_buffer: f64,
    pub latency_window: usize,
    pub num_retries: u32,
    pub retry_policy: Option<PerClass>,
    pub group_retry_policy: HashMap<String, PerClass>,
    /// Minimum sleep before a retry (`retry_after`).
    pub retry_after: Duration,
    pub allowed_fails: u32,
    pub allowed_fails_policy: Option<PerClass>,
    pub cooldown_time: Duration,
    pub disable_cooldowns: bool,
    /// `(group, fallback groups)`, with `default_fallbacks` as `*`.
    pub fallbacks: Vec<(String, Vec<String>)>,
    pub context_window_fallbacks: Vec<(String, Vec<String>)>,
    pub content_policy_fallbacks: Vec<(String, Vec<String>)>,
    pub max_fallbacks: u32,
    pub pre_call_checks: bool,
}

/// LiteLLM's defaults.
const DEFAULT_ALLOWED_FAILS: u32 = 3;
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_MAX_FALLBACKS: u32 = 5;

impl Policy {
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let rs = &config.router_settings;
        let ls = &config.litellm_settings;
        // router_settings wins over litellm_settings, as in LiteLLM.
        let get = |key: &str| -> Option<&Value> {
            rs.extra
                .get(key)
                .filter(|v| !v.is_null())
                .or_else(|| ls.get(key).filter(|v| !v.is_null()))
        };
        let uint = |key: &str| -> Result<Option<u32>, String> {
            match get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| format!("{key} must be a whole number, got {v}")),
            }
        };
        let secs = |key: &str| -> Result<Option<Duration>, String> {
            match get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|f| *f >= 0.0 && f.is_finite())
                    .map(|f| Some(Duration::from_secs_f64(f)))
                    .ok_or_else(|| format!("{key} must be a number of seconds, got {v}")),
            }
        };
        let strategy = match &rs.routing_strategy {
            None => Strategy::SimpleShuffle,
            Some(s) => {
                Strategy::parse(s).ok_or_else(|| format!("unknown routing_strategy {s:?}"))?
            }
        };
        let args = get("routing_strategy_args")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let arg = |k: &str| args.get(k).and_then(Value::as_f64);
        let mut fallbacks = fallback_list(
            rs.fallbacks.as_ref().or_else(|| ls.get("fallbacks")),
            "fallbacks",
        )?;
        if let Some(defaults) = get("default_fallbacks").and_then(Value::as_array) {
            let groups: Vec<String> = defaults
                .iter()
                .filter_map(|g| g.as_str().map(String::from))
                .collect();
            if !groups.is_empty() {
                fallbacks.push(("*".into(), groups));
            }
        }
        let group_retry_policy = get("model_group_retry_policy")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(g, p)| Some((g.clone(), PerClass::parse(Some(p), "Retries")?)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            strategy,
            latency_ttl: Duration::from_secs_f64(arg("ttl").filter(|t| *t > 0.0).unwrap_or(3600.0)),
            latency_buffer: arg("lowest_latency_buffer")
                .filter(|b| *b >= 0.0)
                .unwrap_or(0.0),
            latency_window: arg("max_latency_list_size")
                .filter(|n| *n >= 1.0)
                .map_or(10, |n| n as usize),
            num_retries: rs
                .num_retries
                .or(uint("num_retries")?)
                .unwrap_or(DEFAULT_RETRIES),
            retry_policy: PerClass::parse(get("retry_policy"), "Retries"),
            group_retry_policy,
            retry_after: secs("retry_after")?.unwrap_or_default(),
            allowed_fails: uint("allowed_fails")?.unwrap_or(DEFAULT_ALLOWED_FAILS),
            allowed_fails_policy: PerClass::parse(get("allowed_fails_policy"), "AllowedFails"),
            cooldown_time: secs("cooldown_time")?.unwrap_or(DEFAULT_COOLDOWN),
            disable_cooldowns: get("disable_cooldowns")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            fallbacks,
            context_window_fallbacks: fallback_list(
                get("context_window_fallbacks"),
                "context_window_fallbacks",
            )?,
            content_policy_fallbacks: fallback_list(
                get("content_policy_fallbacks"),
                "content_policy_fallbacks",
            )?,
            max_fallbacks: uint("max_fallbacks")?.unwrap_or(DEFAULT_MAX_FALLBACKS),
            pre_call_checks: get("enable_pre_call_checks")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// Whether per-minute rpm/tpm limits are enforced for this config.
    pub fn enforces_limits(&self) -> bool {
        self.pre_call_checks || self.strategy.enforces_limits()
    }

    /// Retries for an error in `group`: the group's policy, the router's policy, else
    /// `num_retries`.
    pub fn retries_for(&self, group: &str, class: ErrorClass, default: u32) -> u32 {
        self.group_retry_policy
            .get(group)
            .and_then(|p| p.get(class))
            .or_else(|| self.retry_policy.as_ref().and_then(|p| p.get(class)))
            .unwrap_or(default)
    }

    /// The v1 cooldown rule applies when the config sets `allowed_fails` or a policy.
    pub fn counts_fails(&self) -> bool {
        self.allowed_fails_policy.is_some() || self.allowed_fails != DEFAULT_ALLOWED_FAILS
    }
}

/// `[{"group": ["fallback", ...]}, ...]`, in order. Each entry must have exactly one key.
pub fn fallback_list(v: Option<&Value>, name: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let items = v
        .as_array()
        .ok_or_else(|| format!("{name} must be a list of {{group: [fallback groups]}}"))?;
    items
        .iter()
        .map(|item| {
            let map: &Map<String, Value> =
                item.as_object().filter(|m| m.len() == 1).ok_or_else(|| {
                    format!("each {name} entry must have exactly one key, got {item}")
                })?;
            let (group, targets) = map
                .iter()
                .next()
                .ok_or_else(|| format!("empty {name} entry"))?;
            let targets = match targets {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect(),
                _ => return Err(format!("{name}.{group} must be a list of model groups")),
            };
            Ok((group.clone(), targets))
        })
        .collect()
}

/// The fallback groups for `group`: exact key, then the key without a provider prefix,
/// then `*`.
pub fn fallbacks_for<'a>(list: &'a [(String, Vec<String>)], group: &str) -> Option<&'a [String]> {
    let stripped = group.split_once('/').map(|(_, m)| m);
    list.iter()
        .find(|(k, _)| k == group)
        .or_else(|| stripped.and_then(|s| list.iter().find(|(k, _)| k == s)))
        .or_else(|| list.iter().find(|(k, _)| k == "*"))
        .map(|(_, v)| v.as_slice())
}
