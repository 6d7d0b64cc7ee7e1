//! Schema helpers for fields schemars cannot describe the way the apiserver needs.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A free-form object kept as written (`x-kubernetes-preserve-unknown-fields`).
pub fn free_form(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// `params`: free-form, but with the keys that have their own spec fields declared, so a
/// CEL rule can refuse them (CEL cannot see undeclared keys of a free-form object).
pub fn params(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "api_base": {"type": "string", "description": "Not allowed here: use spec.apiBase."},
            "api_key": {"type": "string", "description": "Not allowed here: use spec.apiKeySecretRef."},
            "model": {"type": "string", "description": "Not allowed here: use spec.model."},
        },
    })
}

/// Conditions as a list map keyed by `type`, as Kubernetes conventions ask.
pub fn conditions(g: &mut SchemaGenerator) -> Schema {
    let mut s = g.subschema_for::<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>();
    s.insert("x-kubernetes-list-type".into(), "map".into());
    s.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    s
}
