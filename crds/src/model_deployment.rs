//! `ModelDeployment`: one upstream LLM deployment in a model group (a `model_list` entry).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One upstream LLM deployment: clients ask for its model group by name and modelgate
/// balances requests across the group's deployments.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "modelgate.dev",
    version = "v1alpha1",
    kind = "ModelDeployment",
    namespaced,
    doc = "One upstream LLM deployment (a LiteLLM model_list entry) in a model group.",
    status = "ModelDeploymentStatus",
    shortname = "md",
    category = "modelgate",
    printcolumn = r#"{"name":"Group","type":"string","jsonPath":".spec.modelName"}"#,
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".spec.model"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentSpec {
    /// The model group clients ask for (`model` in their requests), for example `gpt-4o`.
    /// Deployments with the same modelName form one group and share its traffic.
    #[schemars(length(min = 1, max = 253))]
    pub model_name: String,
    /// The provider and upstream model, as LiteLLM writes it: `azure/gpt-4o-eu`,
    /// `openai/gpt-4o`, `hosted_vllm/meta-llama/Llama-3.1-8B-Instruct`, `ollama_chat/llama3`.
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = kube::core::Rule::new("!self.startsWith('/') && !self.endsWith('/')").message("model looks like provider/model, for example azure/gpt-4o-eu"))]
    pub model: String,
    /// Base URL of the upstream API, for example https://eu.example.openai.azure.com/.
    /// Optional for OpenAI itself; required for Azure and self-hosted servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''").message("apiBase must be an http:// or https:// URL"))]
    pub api_base: Option<String>,
    /// Azure OpenAI API version, for example `2024-06-01`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub api_version: Option<String>,
    /// The Secret key holding the API key, in this namespace. Keys are never written inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Requests per minute this deployment accepts, for the whole gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub rpm: Option<u64>,
    /// Tokens per minute this deployment accepts, for the whole gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub tpm: Option<u64>,
    /// Relative share of the group's traffic (simple-shuffle routing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub weight: Option<f64>,
    /// Priority within the group: deployments with the lowest order present get the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub order: Option<u32>,
    /// Seconds a request may take before it times out (and counts as a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self > 0.0").message("timeoutSeconds must be positive"))]
    pub timeout_seconds: Option<f64>,
    /// Seconds a streaming request may wait for the upstream (to the first byte and between chunks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self > 0.0").message("streamTimeoutSeconds must be positive"))]
    pub stream_timeout_seconds: Option<f64>,
    /// Region of the deployment (`eu`, `us`, ...), matched against a request's allowed region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,
    /// Facts shown on /model/info and used by routing checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_info: Option<ModelInfo>,
    /// Other LiteLLM params passed to the provider (`temperature`, `max_tokens`, `extra_headers`, ...).
    /// Credentials do not belong here: use apiKeySecretRef (the operator also refuses any
    /// credential-looking key with Accepted=False, reason Invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::params")]
    #[x_kube(validation = kube::core::Rule::new("!has(self.api_key) && !has(self.api_base) && !has(self.model)").message("params must not set api_key, api_base or model: use apiKeySecretRef, apiBase and model"))]
    pub params: Option<Map<String, Value>>,
    /// Answer with this text instead of calling the upstream (demos and offline tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock_response: Option<String>,
}

/// A key in a Secret of the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// What kind of calls a deployment serves; decides its health check.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Chat,
    Completion,
    Embedding,
    ImageGeneration,
    AudioTranscription,
    AudioSpeech,
    Rerank,
    Moderation,
}

/// Facts about the model, merged over modelgate's catalog on /model/info.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    /// The catalog model this deployment runs (needed for Azure deployment names), e.g. `azure/gpt-4o`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    /// What kind of calls it serves (default chat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Context window in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_input_tokens: Option<u64>,
    /// Largest completion in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_output_tokens: Option<u64>,
    /// Price per input token, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub input_cost_per_token: Option<f64>,
    /// Price per output token, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub output_cost_per_token: Option<f64>,
    /// Any other keys, shown as given on /model/info (for example `team: research`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form")]
    pub extra: Option<Map<String, Value>>,
}

/// What the operator and the proxies report about a ModelDeployment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    /// The metadata.generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accepted, ResolvedRefs, Programmed and Ready.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The id /model/info shows and x-litellm-model-id carries for this deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// Generation of the router ConfigMap that carries the current spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_generation: Option<i64>,
}
