//! The one model listing behind `/v1/models`, `/model/info` and `/model_group/info`, so the
//! three cannot drift apart. Built once per config and served as ready-made JSON.
//!
//! The visible names are the non-hidden aliases whose group exists, then the groups in
//! config order, then wildcard groups. An alias is listed everywhere a group is; on
//! `/model/info` it repeats each deployment of its group with the same `model_info.id`.
//! Hidden aliases are listed nowhere (they still route).

use crate::{
    catalog::Catalog,
    router::{Group, Snapshot, deployment::Deployment},
};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::{collections::HashMap, ops::Range, sync::Arc};

/// LiteLLM reports this creation time for every model.
const CREATED: u64 = 1677610602;

const CHAT_PARAMS: &[&str] = &[
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "max_tokens",
    "max_completion_tokens",
    "modalities",
    "prediction",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "function_call",
    "functions",
    "parallel_tool_calls",
    "audio",
    "service_tier",
    "store",
    "response_format",
    "reasoning_effort",
    "user",
];
const EMBEDDING_PARAMS: &[&str] = &["dimensions", "encoding_format", "user"];

/// One listed name and the deployments behind it.
#[derive(Debug, Clone)]
pub struct ListedName {
    pub name: String,
    pub deployments: Group,
}

/// The listings as served. Only bytes are kept: each single item (`/v1/models/{id}`,
/// one group's info, one deployment's info) is a slice of the full body that holds it, so
/// 10,000 deployments cost their JSON and little more (JSON trees cost ~40 KB each).
#[derive(Debug, Default)]
pub struct Listing {
    pub names: Vec<ListedName>,
    /// `/v1/models` bodies without and with raw wildcard routes.
    pub models: Bytes,
    pub models_with_wildcards: Bytes,
    pub model_info: Bytes,
    pub model_group_info: Bytes,
    model_items: HashMap<String, Bytes>,
    group_items: HashMap<String, Bytes>,
    info_by_id: HashMap<String, Bytes>,
}

impl Listing {
    pub fn build(snap: &Snapshot, catalog: &Catalog) -> Self {
        let mut names: Vec<ListedName> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut push = |name: &str, deployments: &Group| {
            if seen.insert(name.to_string()) {
                names.push(ListedName {
                    name: name.to_string(),
                    deployments: deployments.clone(),
                });
            }
        };
        for alias in snap.aliases.iter().filter(|a| !a.hidden) {
            if let Some(g) = snap.group(&alias.group) {
                push(&alias.name, g);
            }
        }
        for name in &snap.group_names {
            if let Some(g) = snap.group(name) {
                push(name, g);
            }
        }
        for (pattern, g) in &snap.wildcards {
            push(pattern.raw(), g);
        }

        let mut models = JsonArray::new(b"{\"data\":[");
        let mut wildcard_items = Vec::new();
        let mut model_spans = Vec::new();
        let mut groups = JsonArray::new(b"{\"data\":[");
        let mut group_spans = Vec::with_capacity(names.len());
        let mut infos = JsonArray::new(b"{\"data\":[");
        let mut info_spans = Vec::new();
        for listed in &names {
            let group = group_info(&listed.name, &listed.deployments);
            let item = model_item(&listed.name, &group);
            if listed.name.contains('*') {
                wildcard_items.push(item);
                for expanded in expand_wildcard(&listed.name, catalog) {
                    models.push(&expanded);
                }
            } else {
                model_spans.push((listed.name.clone(), models.push(&item)));
            }
            group_spans.push((listed.name.clone(), groups.push(&group)));
            for d in listed.deployments.iter() {
                let span = infos.push(&InfoEntry {
                    model_name: &listed.name,
                    litellm_params: &d.public_params,
                    model_info: &d.model_info,
                });
                if listed.name == d.model_name {
                    info_spans.push((d.id.clone(), span));
                }
            }
        }
        let mut with_wildcards = models.clone();
        for item in &wildcard_items {
            with_wildcards.push(item);
        }
        let models = models.finish(b"],\"object\":\"list\"}");
        let model_group_info = groups.finish(b"]}");
        let model_info = infos.finish(b"]}");
        let slices = |body: &Bytes, spans: Vec<(String, Range<usize>)>| -> HashMap<String, Bytes> {
            spans.into_iter().map(|(k, r)| (k, body.slice(r))).collect()
        };
        Self {
            model_items: slices(&models, model_spans),
            group_items: slices(&model_group_info, group_spans),
            info_by_id: slices(&model_info, info_spans),
            models_with_wildcards: with_wildcards.finish(b"],\"object\":\"list\"}"),
            models,
            model_info,
            model_group_info,
            names,
        }
    }

    /// One `/v1/models/{id}` item: groups and non-hidden aliases.
    pub fn model(&self, id: &str) -> Option<&Bytes> {
        self.model_items.get(id)
    }

    /// One `/model_group/info` entry.
    pub fn group(&self, name: &str) -> Option<&Bytes> {
        self.group_items.get(name)
    }

    /// One `/model/info` entry by deployment id.
    pub fn deployment(&self, id: &str) -> Option<&Bytes> {
        self.info_by_id.get(id)
    }
}

/// `{"data":[` + `item` + `]}`: a one-entry list around a stored item.
pub fn data_of(item: Option<&Bytes>) -> Bytes {
    let mut out = Vec::with_capacity(item.map_or(0, Bytes::len) + 12);
    out.extend_from_slice(b"{\"data\":[");
    if let Some(item) = item {
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// A JSON array written item by item, remembering where each item sits.
#[derive(Clone)]
struct JsonArray {
    buf: Vec<u8>,
    empty: bool,
}

impl JsonArray {
    fn new(prefix: &[u8]) -> Self {
        Self {
            buf: prefix.to_vec(),
            empty: true,
        }
    }

    fn push(&mut self, item: &impl Serialize) -> Range<usize> {
        if !self.empty {
            self.buf.push(b',');
        }
        self.empty = false;
        let start = self.buf.len();
        // Serialising maps and strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, item);
        start..self.buf.len()
    }

    fn finish(mut self, suffix: &[u8]) -> Bytes {
        self.buf.extend_from_slice(suffix);
        Bytes::from(self.buf)
    }
}

#[derive(Serialize)]
struct InfoEntry<'a> {
    model_name: &'a str,
    litellm_params: &'a Map<String, Value>,
    model_info: &'a Map<String, Value>,
}

fn model_item(name: &str, group: &Value) -> Value {
    let mut item = json!({"id": name, "object": "model", "created": CREATED, "owned_by": "openai",
                          "mode": group["mode"]});
    for k in ["max_input_tokens", "max_output_tokens"] {
        if !group[k].is_null() {
            item[k] = group[k].clone();
        }
    }
    item
}

/// `openai/*` lists the catalog's OpenAI models as `openai/<model>`.
fn expand_wildcard(pattern: &str, catalog: &Catalog) -> Vec<Value> {
    let Some(provider) = pattern.strip_suffix("/*").filter(|p| !p.contains('*')) else {
        return Vec::new();
    };
    let mut names: Vec<&str> = catalog.models_of_provider(provider).collect();
    names.sort_unstable();
    names
        .into_iter()
        .map(|m| {
            json!({"id": format!("{provider}/{m}"), "object": "model", "created": CREATED,
                   "owned_by": "openai"})
        })
        .collect()
}

fn group_info(name: &str, deployments: &[Arc<Deployment>]) -> Value {
    let info = |d: &Deployment, k: &str| d.model_info.get(k).cloned().unwrap_or(Value::Null);
    let max_of = |k: &str| {
        deployments
            .iter()
            .filter_map(|d| info(d, k).as_f64())
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.max(v)))
            })
    };
    let sum_of = |f: fn(&Deployment) -> Option<u64>| {
        deployments
            .iter()
            .filter_map(|d| f(d))
            .fold(None, |acc: Option<u64>, v| Some(acc.unwrap_or(0) + v))
    };
    let any = |k: &str| {
        deployments
            .iter()
            .any(|d| info(d, k).as_bool() == Some(true))
    };
    let mut providers: Vec<&str> = Vec::new();
    for d in deployments {
        if !providers.contains(&d.provider.name()) {
            providers.push(d.provider.name());
        }
    }
    let mode = deployments.first().map_or("chat", |d| d.mode.as_str());
    let params = if mode == "embedding" {
        EMBEDDING_PARAMS
    } else {
        CHAT_PARAMS
    };
    let int = |v: Option<f64>| v.map(|x| json!(x as u64));
    let mut out = Map::new();
    out.insert("model_group".into(), json!(name));
    out.insert("providers".into(), json!(providers));
    out.insert(
        "max_input_tokens".into(),
        json!(int(max_of("max_input_tokens"))),
    );
    out.insert(
        "max_output_tokens".into(),
        json!(int(max_of("max_output_tokens"))),
    );
    out.insert(
        "input_cost_per_token".into(),
        json!(max_of("input_cost_per_token").unwrap_or(0.0)),
    );
    out.insert(
        "output_cost_per_token".into(),
        json!(max_of("output_cost_per_token").unwrap_or(0.0)),
    );
    out.insert("input_cost_per_pixel".into(), Value::Null);
    out.insert("mode".into(), json!(mode));
    out.insert("tpm".into(), json!(sum_of(|d| d.tpm)));
    out.insert("rpm".into(), json!(sum_of(|d| d.rpm)));
    for flag in [
        "supports_parallel_function_calling",
        "supports_vision",
        "supports_web_search",
        "supports_url_context",
        "supports_reasoning",
        "supports_function_calling",
    ] {
        out.insert(flag.into(), json!(any(flag)));
    }
    out.insert("supported_openai_params".into(), json!(params));
    out.insert("configurable_clientside_auth_params".into(), Value::Null);
    out.insert("is_public_model_group".into(), json!(false));
    Value::Object(out)
}
