//! Translating LiteLLM's `/model/new` and `/model/update` bodies into a ModelDeployment spec.
//! Pure, so every mapping rule is unit-tested. API keys are accepted only as
//! `secret/<name>/<key>` references: the proxy never writes a key into a resource.

use super::manage::{Info, Spec, secret_ref};
use crate::error::ApiError;
use modelgate_crds::model_deployment::Mode;
use serde_json::{Map, Value};

/// The ModelDeployment's name (from `model_info.id`, if given) and its spec, built over
/// `base` when updating.
pub fn from_litellm(
    body: &Map<String, Value>,
    base: Option<&Spec>,
) -> Result<(Option<String>, Spec), ApiError> {
    let mut spec = base.cloned().unwrap_or_default();
    if let Some(name) = body.get("model_name") {
        spec.model_name = as_string(name, "model_name")?;
    }
    let empty = Map::new();
    let params = object(body.get("litellm_params"), "litellm_params")?.unwrap_or(&empty);
    let info = object(body.get("model_info"), "model_info")?.unwrap_or(&empty);
    let mut extra_params = spec.params.take().unwrap_or_default();
    for (k, v) in params {
        let field = format!("litellm_params.{k}");
        match k.as_str() {
            "model" => spec.model = as_string(v, &field)?,
            "api_base" => spec.api_base = opt_string(v, &field)?,
            "api_version" => spec.api_version = opt_string(v, &field)?,
            "api_key" => {
                spec.api_key_secret_ref = match v {
                    Value::Null => None,
                    Value::String(s) => Some(secret_ref(s).ok_or_else(|| {
                        ApiError::bad_request(
                            "litellm_params.api_key must be a Secret reference, secret/<name>/<key>: modelgate does not store API keys from HTTP requests",
                        )
                        .with_param("litellm_params.api_key")
                    })?),
                    _ => return Err(wrong_type(&field, "a string")),
                }
            }
            "rpm" => spec.rpm = opt_u64(v, &field)?,
            "tpm" => spec.tpm = opt_u64(v, &field)?,
            "order" => {
                spec.order = opt_u64(v, &field)?
                    .map(u32::try_from)
                    .transpose()
                    .map_err(|_| wrong_type(&field, "a small whole number"))?;
            }
            "weight" => spec.weight = opt_f64(v, &field)?,
            "timeout" => spec.timeout_seconds = opt_f64(v, &field)?,
            "stream_timeout" => spec.stream_timeout_seconds = opt_f64(v, &field)?,
            "region_name" => spec.region = opt_string(v, &field)?,
            "mock_response" => spec.mock_response = opt_string(v, &field)?,
            _ if v.is_null() => {
                extra_params.remove(k);
            }
            _ => {
                extra_params.insert(k.clone(), v.clone());
            }
        }
    }
    spec.params = (!extra_params.is_empty()).then_some(extra_params);

    let mut mi: Info = spec.model_info.take().unwrap_or_default();
    let mut extra_info = mi.extra.take().unwrap_or_default();
    let mut name = None;
    for (k, v) in info {
        let field = format!("model_info.{k}");
        match k.as_str() {
            "id" => name = Some(resource_name(v)?),
            "base_model" => mi.base_model = opt_string(v, &field)?,
            "mode" => {
                mi.mode = serde_json::from_value::<Option<Mode>>(v.clone()).map_err(|_| {
                    wrong_type(&field, "one of chat, completion, embedding, image_generation, audio_transcription, audio_speech, rerank, moderation")
                })?;
            }
            "max_input_tokens" => mi.max_input_tokens = opt_u64(v, &field)?,
            "max_output_tokens" => mi.max_output_tokens = opt_u64(v, &field)?,
            "input_cost_per_token" => mi.input_cost_per_token = opt_f64(v, &field)?,
            "output_cost_per_token" => mi.output_cost_per_token = opt_f64(v, &field)?,
            _ if v.is_null() => {
                extra_info.remove(k);
            }
            _ => {
                extra_info.insert(k.clone(), v.clone());
            }
        }
    }
    mi.extra = (!extra_info.is_empty()).then_some(extra_info);
    spec.model_info = (mi != Info::default()).then_some(mi);

    if spec.model_name.is_empty() {
        return Err(ApiError::bad_request("model_name is required").with_param("model_name"));
    }
    if spec.model.is_empty() {
        return Err(
            ApiError::bad_request("litellm_params.model is required").with_param("litellm_params")
        );
    }
    Ok((name, spec))
}

/// A fresh resource name for a model group: its name made DNS-safe plus a random suffix.
pub fn generated_name(model_name: &str) -> String {
    let base = modelgate_crds::wire::dns_safe(model_name, 200);
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    if base.is_empty() {
        format!("model-{suffix}")
    } else {
        format!("{base}-{suffix}")
    }
}

/// `model_info.id` names the resource, so it must be a valid Kubernetes name.
fn resource_name(v: &Value) -> Result<String, ApiError> {
    let id = as_string(v, "model_info.id")?;
    let valid = !id.is_empty()
        && id.len() <= 253
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(id)
    } else {
        Err(ApiError::bad_request(format!(
            "model_info.id {id:?} names the ModelDeployment, so it must be lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
        ))
        .with_param("model_info.id"))
    }
}

fn wrong_type(field: &str, what: &str) -> ApiError {
    ApiError::bad_request(format!("{field} must be {what}"))
}

fn object<'a>(
    v: Option<&'a Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(wrong_type(field, "an object")),
    }
}

fn as_string(v: &Value, field: &str) -> Result<String, ApiError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| wrong_type(field, "a string"))
}

fn opt_string(v: &Value, field: &str) -> Result<Option<String>, ApiError> {
    if v.is_null() {
        return Ok(None);
    }
    as_string(v, field).map(Some)
}

fn opt_u64(v: &Value, field: &str) -> Result<Option<u64>, ApiError> {
    match v {
        Value::Null => Ok(None),
        // LiteLLM accepts numbers written as strings in configs; do the same here.
        Value::String(s) => s
            .parse()
            .map(Some)
            .map_err(|_| wrong_type(field, "a whole number")),
        _ => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| wrong_type(field, "a whole number")),
    }
}

fn opt_f64(v: &Value, field: &str) -> Result<Option<f64>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => s
            .parse()
            .map(Some)
            .map_err(|_| wrong_type(field, "a number")),
        _ => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| wrong_type(field, "a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn new_model_maps_every_field() {
        let (name, spec) = from_litellm(
            &body(json!({
                "model_name": "gpt-4o",
                "litellm_params": {"model": "azure/gpt-4o-eu", "api_base": "https://eu.example.com",
                    "api_key": "secret/azure-eu/api-key", "api_version": "2024-06-01", "rpm": 600,
                    "tpm": "100000", "weight": 2, "timeout": 30, "region_name": "eu", "temperature": 0.2},
                "model_info": {"id": "gpt-4o-eu", "base_model": "azure/gpt-4o", "mode": "chat",
                    "max_input_tokens": 128000, "team": "search"}
            })),
            None,
        )
        .unwrap();
        assert_eq!(name.as_deref(), Some("gpt-4o-eu"));
        assert_eq!(spec.model, "azure/gpt-4o-eu");
        assert_eq!(spec.api_key_secret_ref.as_ref().unwrap().name, "azure-eu");
        assert_eq!(spec.api_key_secret_ref.as_ref().unwrap().key, "api-key");
        assert_eq!(
            (spec.rpm, spec.tpm, spec.weight),
            (Some(600), Some(100000), Some(2.0))
        );
        assert_eq!(spec.region.as_deref(), Some("eu"));
        assert_eq!(spec.params.unwrap()["temperature"], json!(0.2));
        let mi = spec.model_info.unwrap();
        assert_eq!(mi.max_input_tokens, Some(128000));
        assert_eq!(mi.mode, Some(Mode::Chat));
        assert_eq!(mi.extra.unwrap()["team"], json!("search"));
    }

    #[test]
    fn literal_keys_and_bad_ids_are_refused() {
        let e = from_litellm(
            &body(json!({"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "sk-123"}})),
            None,
        )
        .unwrap_err();
        assert!(e.body().to_string().contains("Secret reference"));
        assert!(!e.body().to_string().contains("sk-123"));
        let e = from_litellm(
            &body(json!({"model_name": "m", "litellm_params": {"model": "openai/x"}, "model_info": {"id": "Not_OK"}})),
            None,
        )
        .unwrap_err();
        assert!(e.body().to_string().contains("model_info.id"));
        assert!(from_litellm(&body(json!({"model_name": "m"})), None).is_err());
    }

    #[test]
    fn update_merges_over_the_current_spec() {
        let (_, base) = from_litellm(
            &body(json!({"model_name": "m", "litellm_params": {"model": "openai/x", "rpm": 10, "seed": 1}})),
            None,
        )
        .unwrap();
        let (_, spec) = from_litellm(
            &body(
                json!({"litellm_params": {"rpm": 20, "seed": null}, "model_info": {"id": "m-1"}}),
            ),
            Some(&base),
        )
        .unwrap();
        assert_eq!(spec.model, "openai/x");
        assert_eq!(spec.rpm, Some(20));
        assert!(spec.params.is_none());
    }

    #[test]
    fn generated_names_are_dns_safe() {
        let n = generated_name("GPT 4o/Mini");
        assert!(n.starts_with("gpt-4o-mini-"), "{n}");
        assert_eq!(n.len(), "gpt-4o-mini-".len() + 8);
    }
}
