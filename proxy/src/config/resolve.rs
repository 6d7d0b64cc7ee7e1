//! Resolution of references inside a raw config before it is typed: `os.environ/NAME`
//! anywhere (as LiteLLM does), `secret/<name>/<key>` under credential-looking keys (written
//! by the operator, resolved from Secrets in a cluster), and LiteLLM-compatible deployment
//! ids for entries that do not set `model_info.id`.

use crate::router::deployment::is_secret_name;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Looks up `secret/<name>/<key>` references; `None` when the Secret or key is missing.
pub trait SecretLookup {
    fn secret(&self, name: &str, key: &str) -> Option<String>;
}

/// No Secrets at all: the file-based proxy.
pub struct NoSecrets;

impl SecretLookup for NoSecrets {
    fn secret(&self, _: &str, _: &str) -> Option<String> {
        None
    }
}

/// What resolution could not find; reported as warnings, never with values.
#[derive(Debug, Default)]
pub struct Unresolved {
    pub env: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}

pub struct Resolver<'a> {
    /// The config's own `environment_variables`, consulted before the process environment.
    pub config_env: Map<String, Value>,
    pub secrets: &'a dyn SecretLookup,
    pub unresolved: Unresolved,
}

impl Resolver<'_> {
    /// Replaces every reference in `value`, recursively.
    pub fn resolve(&mut self, value: &mut Value, key: Option<&str>) {
        match value {
            Value::String(s) => {
                if let Some(name) = s.strip_prefix("os.environ/") {
                    *value = self.env(name);
                } else if key.is_some_and(is_secret_name)
                    && let Some(reference) = s.strip_prefix("secret/")
                {
                    *value = self.secret(reference);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.resolve(v, key)),
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    self.resolve(v, Some(k));
                }
            }
            _ => {}
        }
    }

    fn env(&mut self, name: &str) -> Value {
        let from_config = self.config_env.get(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        match from_config.or_else(|| std::env::var(name).ok()) {
            Some(v) => Value::String(v),
            None => {
                self.unresolved.env.insert(name.to_string());
                Value::Null
            }
        }
    }

    fn secret(&mut self, reference: &str) -> Value {
        let found = reference
            .split_once('/')
            .and_then(|(name, key)| self.secrets.secret(name, key));
        match found {
            Some(v) => Value::String(v),
            None => {
                self.unresolved.secrets.insert(reference.to_string());
                Value::Null
            }
        }
    }
}

/// The names of the Secrets a config's `secret/<name>/<key>` references point at, found
/// by the same rule [`Resolver`] resolves them with. Unparseable text has none.
pub fn secret_names(text: &str) -> std::collections::BTreeSet<String> {
    fn walk(v: &Value, key: Option<&str>, out: &mut std::collections::BTreeSet<String>) {
        match v {
            Value::String(s) if key.is_some_and(is_secret_name) => {
                if let Some((name, _)) = s.strip_prefix("secret/").and_then(|r| r.split_once('/')) {
                    out.insert(name.to_string());
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, key, out)),
            Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, Some(k), out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    if let Ok(v) = serde_yaml::from_str::<Value>(text) {
        walk(&v, None, &mut out);
    }
    out
}

/// Sets `model_info.id` on every entry that lacks one, with LiteLLM's formula: SHA-256 of
/// `model_name` followed by each `litellm_params` key and value in file order. The same
/// config therefore gets the same ids under LiteLLM and modelgate.
pub fn assign_ids(model_list: &mut [Value]) {
    for entry in model_list.iter_mut() {
        let Some(obj) = entry.as_object_mut() else {
            continue;
        };
        let has_id = obj
            .get("model_info")
            .and_then(|m| m.get("id"))
            .is_some_and(|id| !id.is_null());
        if has_id {
            continue;
        }
        let mut hasher = Sha256::new();
        if let Some(name) = obj.get("model_name").and_then(Value::as_str) {
            hasher.update(name.as_bytes());
        }
        if let Some(params) = obj.get("litellm_params").and_then(Value::as_object) {
            for (k, v) in params {
                hasher.update(k.as_bytes());
                hasher.update(python_str(v).as_bytes());
            }
        }
        let id = hex::encode(hasher.finalize());
        let info = obj
            .entry("model_info")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = info {
            m.insert("id".into(), Value::String(id));
        } else {
            *info = serde_json::json!({ "id": id });
        }
    }
}

/// `str(v)` as Python would print a YAML value (dicts as `json.dumps`).
fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::Object(_) => json_dumps(v),
        Value::Array(items) => {
            let inner: Vec<String> = items
                .iter()
                .map(|i| match i {
                    Value::String(s) => format!("'{s}'"),
                    other => python_str(other),
                })
                .collect();
            format!("[{}]", inner.join(", "))
        }
    }
}

/// Python's `json.dumps` default separators (`, ` and `: `).
fn json_dumps(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), json_dumps(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(json_dumps).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_match_litellm() {
        // Ids LiteLLM 1.106.0 gave these deployments (shared/reference/litellm-golden).
        let mut list = vec![json!({"model_name": "model-group-1", "litellm_params": {
            "model": "openai/gpt-4o", "api_base": "http://127.0.0.1:18080/v1", "api_key": "sk-fake"}})];
        assign_ids(&mut list);
        assert_eq!(
            list[0]["model_info"]["id"],
            "6c7cf6b24151b8b23e5a7ec744282899430c9979fdfd0d633af2f565486ac332"
        );
    }

    #[test]
    fn env_and_secret_references_resolve_or_are_reported() {
        struct One;
        impl SecretLookup for One {
            fn secret(&self, name: &str, key: &str) -> Option<String> {
                (name == "azure" && key == "api-key").then(|| "k1".to_string())
            }
        }
        let mut r = Resolver {
            config_env: Map::from_iter([("FROM_CFG".to_string(), json!("v"))]),
            secrets: &One,
            unresolved: Unresolved::default(),
        };
        let mut v = json!({"a": "os.environ/FROM_CFG", "b": "os.environ/MODELGATE_NOPE_X",
                           "api_key": "secret/azure/api-key", "other_key": "secret/gone/k",
                           "model": "secret/not-a-ref"});
        r.resolve(&mut v, None);
        assert_eq!(v["a"], "v");
        assert_eq!(v["b"], Value::Null);
        assert_eq!(v["api_key"], "k1");
        assert_eq!(v["other_key"], Value::Null);
        assert_eq!(v["model"], "secret/not-a-ref");
        assert!(r.unresolved.env.contains("MODELGATE_NOPE_X"));
        assert!(r.unresolved.secrets.contains("gone/k"));
    }
}
