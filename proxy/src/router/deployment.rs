//! One upstream deployment, resolved from its `model_list` entry: where to send requests,
//! how to authenticate, its limits, and the sanitised facts the listings show.

use crate::{catalog::Catalog, metrics::DeploymentSeries, wire::Wire};
use modelgate_crds::config::DeploymentConfig;
use serde_json::{Map, Value, json};
use std::{fmt, sync::OnceLock, time::Duration};

/// How a deployment's upstream is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI or any OpenAI-compatible server (vLLM, Ollama, LM Studio, ...).
    OpenAi { name: String },
    /// Azure OpenAI: deployment URLs, `api-version`, `api-key` header.
    Azure,
    /// A provider modelgate cannot call yet; requests get a clear error.
    Unsupported { name: String },
}

impl Provider {
    /// The provider name as LiteLLM writes it (`openai`, `azure`, `hosted_vllm`, ...).
    pub fn name(&self) -> &str {
        match self {
            Provider::OpenAi { name } | Provider::Unsupported { name } => name,
            Provider::Azure => "azure",
        }
    }

    fn from_prefix(prefix: &str) -> Self {
        match prefix {
            "openai"
            | "text-completion-openai"
            | "hosted_vllm"
            | "vllm"
            | "ollama"
            | "ollama_chat"
            | "lm_studio"
            | "custom_openai"
            | "openai_like"
            | "llamafile"
            | "litellm_proxy"
            | "xinference" => Provider::OpenAi {
                name: prefix.to_string(),
            },
            "azure" | "azure_text" => Provider::Azure,
            other => Provider::Unsupported {
                name: other.to_string(),
            },
        }
    }
}

/// An API key that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> Self {
        Self(key)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Upstream endpoints a request can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

impl Endpoint {
    pub const COUNT: usize = 3;
    pub const ALL: [Endpoint; Endpoint::COUNT] =
        [Endpoint::Chat, Endpoint::Completions, Endpoint::Embeddings];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }
}

#[derive(Debug)]
pub struct Deployment {
    /// `model_info.id`: the id `/model/info` shows and `x-litellm-model-id` carries.
    pub id: String,
    /// The model group (the entry's `model_name`).
    pub model_name: String,
    /// `litellm_params.model`, as configured.
    pub model: String,
    pub provider: Provider,
    /// The model name the upstream is asked for (provider prefix removed).
    pub upstream_model: String,
    /// Base URL without a trailing slash; `None` when the provider needs one and it is unset.
    pub api_base: Option<String>,
    pub api_key: Option<ApiKey>,
    pub api_version: Option<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub weight: Option<f64>,
    pub order: Option<i64>,
    pub timeout: Option<Duration>,
    pub stream_timeout: Option<Duration>,
    pub region: Option<String>,
    /// `litellm_params.cooldown_time`: this deployment's cooldown (0 = never cooled down).
    pub cooldown_time: Option<Duration>,
    /// `litellm_params.num_retries`: retries after this deployment fails.
    pub num_retries: Option<u32>,
    pub mock_response: Option<Value>,
    /// Extra `litellm_params` sent in the request body unless the client set them.
    pub passthrough: Map<String, Value>,
    /// Extra headers from `litellm_params.extra_headers` and `organization`.
    pub extra_headers: Vec<(String, String)>,
    /// `model_info.mode` or the catalog's mode; decides the health-check call.
    pub mode: String,
    /// Sanitised `litellm_params` for listings: no keys, no secrets.
    pub public_params: Map<String, Value>,
    /// `model_info` merged with catalog facts (user keys win).
    pub model_info: Map<String, Value>,
    /// The group name contains `*`: a pattern route.
    pub is_wildcard: bool,
    /// URLs and headers prebuilt for calling this deployment.
    pub wire: Wire,
    /// Its metric series (see `Metrics::series`).
    pub series: OnceLock<DeploymentSeries>,
}

impl Deployment {
    /// The context window the pre-call check compares against: `model_info.max_input_tokens`
    /// (the user's value, else the catalog's for the model or its `base_model`).
    pub fn max_input_tokens(&self) -> Option<u64> {
        self.model_info
            .get("max_input_tokens")
            .and_then(Value::as_u64)
    }

    /// Input plus output cost per token for cost-based routing; LiteLLM's 5.0 when unknown.
    pub fn cost_per_token(&self) -> f64 {
        let get = |k: &str| {
            self.public_params
                .get(k)
                .or_else(|| self.model_info.get(k))
                .and_then(Value::as_f64)
        };
        match (get("input_cost_per_token"), get("output_cost_per_token")) {
            (None, None) => 5.0,
            (i, o) => i.unwrap_or(0.0) + o.unwrap_or(0.0),
        }
    }
}

/// Keys that are router or accounting settings, never sent to the provider.
const NOT_FORWARDED: &[&str] = &[
    "cooldown_time",
    "num_retries",
    "input_cost_per_token",
    "output_cost_per_token",
    "input_cost_per_second",
    "output_cost_per_second",
    "tags",
    "max_parallel_requests",
    "organization",
    "use_in_pass_through",
    "use_litellm_proxy",
    "merge_reasoning_content_in_choices",
    "litellm_credential_name",
    "custom_llm_provider",
    "configurable_clientside_auth_params",
    "drop_params",
    "additional_drop_params",
    "extra_headers",
    "health_check_model",
    "supported_environments",
];

/// Model-info keys every `/model/info` entry carries, null when unknown (LiteLLM's shape).
const STANDARD_INFO_KEYS: &[&str] = &[
    "key",
    "max_tokens",
    "max_input_tokens",
    "max_output_tokens",
    "input_cost_per_token",
    "output_cost_per_token",
    "litellm_provider",
    "mode",
    "supports_system_messages",
    "supports_response_schema",
    "supports_vision",
    "supports_function_calling",
    "supports_tool_choice",
    "supports_parallel_function_calling",
    "supports_prompt_caching",
    "supports_reasoning",
    "supports_web_search",
    "supports_pdf_input",
    "tpm",
    "rpm",
];

/// Whether a parameter name looks like it holds a credential. Such parameters never
/// appear in listings, health results or logs.
pub fn is_secret_name(name: &str) -> bool {
    const SEGMENTS: &[&str] = &[
        "key",
        "apikey",
        "password",
        "passwd",
        "secret",
        "token",
        "auth",
        "credential",
        "credentials",
        "access",
        "private",
        "certificate",
    ];
    let lower = name.to_ascii_lowercase();
    if lower.contains("cost") || lower == "litellm_credential_name" {
        return false;
    }
    lower
        .split(['_', '-', '.'])
        .any(|seg| SEGMENTS.contains(&seg))
}

impl Deployment {
    /// Builds a deployment from a validated entry whose `model_info.id` is already set.
    pub fn build(entry: &DeploymentConfig, catalog: &Catalog) -> Self {
        let p = &entry.litellm_params;
        let (provider, upstream_model) = match p.model.split_once('/') {
            Some((prefix, rest)) => (Provider::from_prefix(prefix), rest.to_string()),
            None => (
                Provider::OpenAi {
                    name: "openai".into(),
                },
                p.model.clone(),
            ),
        };
        let api_base = effective_api_base(&provider, p.api_base.as_deref());
        let id = match entry.model_info.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let base_model = entry.model_info.get("base_model").and_then(Value::as_str);
        let hit = catalog.lookup(base_model, &p.model);
        let mode = entry
            .model_info
            .get("mode")
            .and_then(Value::as_str)
            .or_else(|| hit.and_then(|(_, m)| m.get("mode")).and_then(Value::as_str))
            .unwrap_or("chat")
            .to_string();

        let mut model_info = Map::new();
        model_info.insert("id".into(), json!(id));
        model_info.insert("db_model".into(), json!(false));
        for (k, v) in &entry.model_info {
            if k != "id" && (k == "key" || !is_secret_name(k)) {
                model_info.insert(k.clone(), v.clone());
            }
        }
        if let Some((key, record)) = hit {
            model_info.entry("key").or_insert_with(|| json!(key));
            for (k, v) in record {
                model_info.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        model_info.entry("mode").or_insert_with(|| json!(mode));
        model_info
            .entry("litellm_provider")
            .or_insert_with(|| json!(provider.name()));
        if let Some(rpm) = p.rpm {
            model_info.entry("rpm").or_insert_with(|| json!(rpm));
        }
        if let Some(tpm) = p.tpm {
            model_info.entry("tpm").or_insert_with(|| json!(tpm));
        }
        for k in STANDARD_INFO_KEYS {
            model_info.entry(*k).or_insert(Value::Null);
        }

        let mut passthrough = Map::new();
        let mut extra_headers = Vec::new();
        for (k, v) in &p.extra {
            if k == "extra_headers" {
                if let Value::Object(h) = v {
                    for (hk, hv) in h {
                        if let Some(s) = hv.as_str() {
                            extra_headers.push((hk.clone(), s.to_string()));
                        }
                    }
                }
            } else if k == "organization" {
                if let Some(org) = v.as_str() {
                    extra_headers.push(("openai-organization".into(), org.to_string()));
                }
            } else if !NOT_FORWARDED.contains(&k.as_str()) && !is_secret_name(k) {
                passthrough.insert(k.clone(), v.clone());
            }
        }

        // Typed fields of `litellm_params` (never in `extra`).
        let cooldown_time = p.cooldown_time.map(|s| s.as_duration());
        let num_retries = p.num_retries;
        let mut d = Self {
            cooldown_time,
            num_retries,
            id,
            model_name: entry.model_name.clone(),
            model: p.model.clone(),
            upstream_model,
            api_base,
            api_key: p.api_key.clone().filter(|k| !k.is_empty()).map(ApiKey),
            api_version: p.api_version.clone(),
            rpm: p
                .rpm
                .or_else(|| entry.extra.get("rpm").and_then(Value::as_u64)),
            tpm: p
                .tpm
                .or_else(|| entry.extra.get("tpm").and_then(Value::as_u64)),
            weight: p.weight,
            order: p.order,
            timeout: p.timeout.map(|s| s.as_duration()),
            stream_timeout: p.stream_timeout.map(|s| s.as_duration()),
            region: p.region_name.clone(),
            mock_response: p.mock_response.clone(),
            passthrough,
            extra_headers,
            mode,
            public_params: public_params(entry),
            model_info,
            is_wildcard: entry.model_name.contains('*'),
            provider,
            wire: Wire::default(),
            series: OnceLock::new(),
        };
        d.wire = Wire::build(&d);
        d
    }

    /// The upstream URL for an endpoint, or `None` when no `api_base` is known.
    pub fn url(&self, endpoint: Endpoint, model: &str) -> Option<String> {
        let base = self.api_base.as_deref()?;
        Some(match self.provider {
            Provider::Azure => format!(
                "{base}/openai/deployments/{model}{}?api-version={}",
                endpoint.path(),
                self.api_version
                    .as_deref()
                    .unwrap_or(AZURE_DEFAULT_API_VERSION)
            ),
            _ => format!("{base}{}", endpoint.path()),
        })
    }
}

/// Used when an Azure deployment sets no `api_version` (the newest GA version when written).
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

fn effective_api_base(provider: &Provider, configured: Option<&str>) -> Option<String> {
    let base = match (provider, configured) {
        (_, Some(b)) => b.trim_end_matches('/').to_string(),
        (Provider::OpenAi { name }, None) if name == "openai" => "https://api.openai.com/v1".into(),
        (Provider::OpenAi { name }, None) if name.starts_with("ollama") => {
            "http://localhost:11434".into()
        }
        _ => return None,
    };
    // Ollama's OpenAI-compatible API lives under /v1; LiteLLM configs give the bare host.
    if matches!(provider, Provider::OpenAi { name } if name.starts_with("ollama"))
        && !base.ends_with("/v1")
    {
        return Some(format!("{base}/v1"));
    }
    Some(base)
}

fn public_params(entry: &DeploymentConfig) -> Map<String, Value> {
    let mut out = match serde_json::to_value(&entry.litellm_params) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    out.retain(|k, _| !is_secret_name(k));
    for k in [
        "use_in_pass_through",
        "use_litellm_proxy",
        "merge_reasoning_content_in_choices",
    ] {
        out.entry(k).or_insert(Value::Bool(false));
    }
    out
}
