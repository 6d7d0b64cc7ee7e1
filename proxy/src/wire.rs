//! What is built once per deployment, when a config loads, so a request does not redo it:
//! the parsed upstream URL of each endpoint, the upstream request headers (auth included)
//! and the `x-litellm-*` response headers. A profile put URL parsing, header validation
//! and their allocations at about a tenth of the proxy's CPU per request.

use crate::router::deployment::{Deployment, Endpoint, Provider};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use std::fmt;

/// Prebuilt request parts of one deployment.
#[derive(Default)]
pub struct Wire {
    /// Upstream URL per [`Endpoint`], for the deployment's own upstream model.
    urls: [Option<Uri>; Endpoint::COUNT],
    /// Content type, auth and `extra_headers`, for every upstream request.
    pub request_headers: HeaderMap,
    /// The `x-litellm-*` headers that do not change per request.
    pub response_headers: HeaderMap,
    /// Why this deployment cannot be called (an unparsable `api_base`, a header value
    /// that is not valid in HTTP), reported on each request instead of a vague error.
    pub problem: Option<String>,
}

impl fmt::Debug for Wire {
    // The request headers hold the API key: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wire")
            .field("problem", &self.problem)
            .finish_non_exhaustive()
    }
}

impl Wire {
    pub fn build(d: &Deployment) -> Self {
        let mut wire = Wire::default();
        for endpoint in Endpoint::ALL {
            if let Some(url) = d.url(endpoint, &d.upstream_model) {
                match url.parse::<Uri>() {
                    Ok(u) => wire.urls[endpoint as usize] = Some(u),
                    Err(e) => wire.problem = Some(format!("api_base is not a valid URL: {e}")),
                }
            }
        }

        let h = &mut wire.request_headers;
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(key) = &d.api_key {
            let (name, value) = match d.provider {
                Provider::Azure => (HeaderName::from_static("api-key"), key.expose().to_string()),
                _ => (header::AUTHORIZATION, format!("Bearer {}", key.expose())),
            };
            match HeaderValue::from_str(&value) {
                Ok(mut v) => {
                    // Keeps the value out of HTTP/2 header compression tables and Debug output.
                    v.set_sensitive(true);
                    h.insert(name, v);
                }
                // The message names the header, never the key.
                Err(_) => {
                    wire.problem = Some(format!("the api_key is not a valid {name} header value"))
                }
            }
        }
        for (k, v) in &d.extra_headers {
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                (Ok(name), Ok(value)) => {
                    h.append(name, value);
                }
                _ => {
                    wire.problem = Some(format!("extra_headers: {k:?} is not a valid HTTP header"))
                }
            }
        }

        let r = &mut wire.response_headers;
        let mut put = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                r.insert(name, v);
            }
        };
        put("x-litellm-model-id", &d.id);
        put("x-litellm-model-name", &d.model);
        if let Some(base) = &d.api_base {
            // A query string may carry credentials.
            put(
                "x-litellm-model-api-base",
                base.split('?').next().unwrap_or(base),
            );
        }
        if let Some(region) = &d.region {
            put("x-litellm-model-region", region);
        }
        wire
    }

    /// The upstream URL for `endpoint` when calling `model`: prebuilt for the deployment's
    /// own model, parsed on the spot for a model a wildcard route substituted.
    pub fn url(&self, d: &Deployment, endpoint: Endpoint, model: &str) -> Result<Uri, String> {
        if let Some(problem) = &self.problem {
            return Err(problem.clone());
        }
        if model == d.upstream_model
            && let Some(u) = &self.urls[endpoint as usize]
        {
            return Ok(u.clone());
        }
        let url = d
            .url(endpoint, model)
            .ok_or_else(|| format!("deployment {} ({}) has no api_base", d.id, d.model))?;
        url.parse::<Uri>()
            .map_err(|e| format!("api_base is not a valid URL: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use modelgate_crds::config::DeploymentConfig;

    fn deployment(yaml: &str) -> Deployment {
        let mut entry: DeploymentConfig = serde_yaml::from_str(yaml).unwrap();
        entry
            .model_info
            .insert("id".into(), serde_json::json!("d1"));
        Deployment::build(&entry, &Catalog::default())
    }

    #[test]
    fn openai_urls_and_bearer_auth_are_prebuilt() {
        let d = deployment(
            "model_name: g\nlitellm_params: {model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/v1/', api_key: sk-1, extra_headers: {x-team: a}}",
        );
        let url = d.wire.url(&d, Endpoint::Chat, "gpt-4o").unwrap();
        assert_eq!(url.to_string(), "http://127.0.0.1:9/v1/chat/completions");
        let h = &d.wire.request_headers;
        assert_eq!(h["authorization"], "Bearer sk-1");
        assert!(h["authorization"].is_sensitive());
        assert_eq!(h["x-team"], "a");
        assert!(!format!("{:?}", d.wire).contains("sk-1"));
        assert_eq!(d.wire.response_headers["x-litellm-model-id"], "d1");
    }

    #[test]
    fn azure_uses_deployment_urls_and_api_key_header() {
        let d = deployment(
            "model_name: g\nlitellm_params: {model: azure/gpt-4o-eu, api_base: 'https://x.openai.azure.com', api_key: k, api_version: '2024-06-01'}",
        );
        let url = d.wire.url(&d, Endpoint::Embeddings, "gpt-4o-eu").unwrap();
        assert_eq!(
            url.to_string(),
            "https://x.openai.azure.com/openai/deployments/gpt-4o-eu/embeddings?api-version=2024-06-01"
        );
        // A model a wildcard route substituted gets its own URL.
        let other = d.wire.url(&d, Endpoint::Chat, "other").unwrap();
        assert!(other.path().contains("/deployments/other/"), "{other}");
        assert_eq!(d.wire.request_headers["api-key"], "k");
    }

    #[test]
    fn unusable_parts_are_reported_per_request_without_the_key() {
        let d = deployment(
            "model_name: g\nlitellm_params: {model: openai/m, api_base: 'http://h', api_key: \"bad\\nkey\"}",
        );
        let err = d.wire.url(&d, Endpoint::Chat, "m").unwrap_err();
        assert!(err.contains("api_key"), "{err}");
        assert!(!err.contains("bad"), "{err}");
        let d = deployment("model_name: g\nlitellm_params: {model: hosted_vllm/m}");
        let err = d.wire.url(&d, Endpoint::Chat, "m").unwrap_err();
        assert!(err.contains("no api_base"), "{err}");
    }
}
