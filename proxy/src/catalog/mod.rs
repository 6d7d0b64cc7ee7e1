//! The model catalog: facts about well-known models (context window, max output, prices,
//! provider, mode, capability flags) merged into `/model/info`, in LiteLLM's
//! `model_prices_and_context_window.json` format. A built-in catalog ships with the binary;
//! `--model-catalog FILE` replaces it.

use serde_json::{Map, Value};
use std::{collections::HashMap, path::Path};

/// Written by hand from the providers' public model pages; small on purpose.
const BUILTIN: &str = include_str!("builtin.json");

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: HashMap<String, Map<String, Value>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read model catalog {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("model catalog {path} is not a JSON object of models: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

impl Catalog {
    pub fn builtin() -> Self {
        // The built-in file is checked by a unit test, so this cannot fail at run time.
        Self::parse(BUILTIN).unwrap_or_default()
    }

    pub fn from_file(path: &Path) -> Result<Self, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|source| CatalogError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let raw: Map<String, Value> = serde_json::from_str(text)?;
        let entries = raw
            .into_iter()
            // LiteLLM's file documents its own format in a `sample_spec` entry.
            .filter(|(k, _)| k != "sample_spec")
            .filter_map(|(k, v)| match v {
                Value::Object(m) => Some((k, m)),
                _ => None,
            })
            .collect();
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Finds the record for a deployment the way LiteLLM does: `base_model` first, then
    /// `litellm_params.model`, then the name after the provider prefix. Returns the key hit.
    pub fn lookup(
        &self,
        base_model: Option<&str>,
        model: &str,
    ) -> Option<(&str, &Map<String, Value>)> {
        let stripped = model.split_once('/').map(|(_, rest)| rest);
        base_model
            .into_iter()
            .chain([model])
            .chain(stripped)
            .find_map(|key| self.entries.get_key_value(key))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// Catalog models of one provider (for listing wildcard routes such as `openai/*`).
    pub fn models_of_provider<'a>(&'a self, provider: &'a str) -> impl Iterator<Item = &'a str> {
        self.entries
            .iter()
            .filter(move |(k, v)| {
                !k.contains('/')
                    && v.get("litellm_provider").and_then(Value::as_str) == Some(provider)
            })
            .map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_knows_common_models() {
        let cat = Catalog::parse(BUILTIN).expect("builtin catalog must parse");
        assert!(cat.len() > 20);
        let (key, gpt4o) = cat.lookup(None, "openai/gpt-4o").unwrap();
        assert_eq!(key, "gpt-4o");
        assert_eq!(gpt4o["max_input_tokens"], 128000);
        let (key, _) = cat
            .lookup(Some("azure/gpt-4o"), "azure/my-deployment")
            .unwrap();
        assert_eq!(key, "azure/gpt-4o");
        assert!(cat.lookup(None, "hosted_vllm/llama-3-70b").is_none());
    }

    #[test]
    fn a_litellm_format_file_replaces_the_builtin_catalog() {
        let dir = std::env::temp_dir().join(format!("mg-catalog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model_prices_and_context_window.json");
        std::fs::write(
            &path,
            r#"{"sample_spec": {"max_tokens": "set to max_output_tokens"},
                "my-llama": {"max_input_tokens": 8192, "max_output_tokens": 2048,
                             "litellm_provider": "hosted_vllm", "mode": "chat"}}"#,
        )
        .unwrap();
        let cat = Catalog::from_file(&path).unwrap();
        assert_eq!(cat.len(), 1, "sample_spec is documentation, not a model");
        let (_, llama) = cat.lookup(None, "hosted_vllm/my-llama").unwrap();
        assert_eq!(llama["max_input_tokens"], 8192);
        assert!(cat.lookup(None, "openai/gpt-4o").is_none());
        std::fs::write(&path, "not json").unwrap();
        let err = Catalog::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("not a JSON object"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
