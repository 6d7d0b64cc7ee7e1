//! `ModelGroupAlias`: another public name for a model group, listed or hidden.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Another name clients can use for a model group. A hidden alias routes but is listed
/// nowhere (/v1/models, /model/info, /model_group/info).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "modelgate.dev",
    version = "v1alpha1",
    kind = "ModelGroupAlias",
    namespaced,
    doc = "Another public name for a model group, listed or hidden.",
    status = "ModelGroupAliasStatus",
    shortname = "mga",
    category = "modelgate",
    validation = kube::core::Rule::new("has(self.spec.alias) || self.metadata.name != self.spec.modelGroup").message("an alias cannot target itself: metadata.name equals spec.modelGroup"),
    printcolumn = r#"{"name":"Alias","type":"string","jsonPath":".status.alias"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.modelGroup"}"#,
    printcolumn = r#"{"name":"Hidden","type":"boolean","jsonPath":".spec.hidden"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.alias) || self.alias != self.modelGroup").message("an alias cannot target itself: spec.alias equals spec.modelGroup"))]
pub struct ModelGroupAliasSpec {
    /// The name clients may use; any string (`GPT-4`, `gpt-4/latest`). Defaults to metadata.name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub alias: Option<String>,
    /// The model group (a ModelDeployment's modelName) requests for the alias go to.
    #[schemars(length(min = 1, max = 253))]
    pub model_group: String,
    /// Route the alias but leave it out of every listing.
    #[serde(default)]
    pub hidden: bool,
}

/// What the operator and the proxies report about a ModelGroupAlias.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelGroupAliasStatus {
    /// The metadata.generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accepted, ResolvedRefs, Programmed and Ready.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The effective alias name (spec.alias, else metadata.name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Generation of the router ConfigMap that carries the current spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_generation: Option<i64>,
}

impl ModelGroupAlias {
    /// The alias name clients use: spec.alias, else metadata.name.
    pub fn alias_name(&self) -> String {
        self.spec
            .alias
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}
