//! The proxy's read access to exactly the Secrets its config references: one Role and one
//! RoleBinding per gateway namespace, kept in step with the rendered ConfigMap, so the proxy
//! ServiceAccount needs no standing permission on Secrets at all.
//!
//! RBAC can name the Secrets because the proxy watches each one by name (a `metadata.name`
//! field selector), which Kubernetes authorises against `resourceNames`.

use crate::{MANAGED_BY, MANAGER, Result};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use modelgate_crds::config::Config;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Whom the operator grants the Secret access to.
#[derive(Debug, Clone)]
pub struct ProxyAccess {
    /// The proxy's ServiceAccount, in each gateway namespace.
    pub service_account: String,
}

/// The name of the Role and RoleBinding for the proxies of router ConfigMap `configmap`.
pub fn object_name(configmap: &str) -> String {
    format!("{configmap}-proxy-secrets")
}

/// Every Secret a `secret/<name>/<key>` value in the config points at, wherever it is.
pub fn secret_names(config: &Config) -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::String(s) => {
                if let Some((name, _)) = s.strip_prefix("secret/").and_then(|r| r.split_once('/')) {
                    out.insert(name.to_string());
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(map) => map.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    if let Ok(v) = serde_json::to_value(config) {
        walk(&v, &mut out);
    }
    out
}

/// The Role: get, list and watch on the named Secrets. No names, no rule: an empty
/// `resourceNames` would mean every Secret.
pub fn role(name: &str, secrets: &BTreeSet<String>) -> Value {
    let rules = if secrets.is_empty() {
        json!([])
    } else {
        json!([{
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": secrets,
            "verbs": ["get", "list", "watch"],
        }])
    };
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        "rules": rules,
    })
}

/// The RoleBinding of the Role to the proxy ServiceAccount of `namespace`.
pub fn binding(name: &str, namespace: &str, service_account: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    })
}

/// Applies the Role and its binding in `namespace` (server-side apply: a no-op when they
/// already say this).
pub async fn apply(
    client: &Client,
    namespace: &str,
    configmap: &str,
    access: &ProxyAccess,
    secrets: &BTreeSet<String>,
) -> Result<()> {
    let name = object_name(configmap);
    let params = PatchParams::apply(MANAGER).force();
    let roles: Api<Role> = Api::namespaced(client.clone(), namespace);
    roles
        .patch(&name, &params, &Patch::Apply(role(&name, secrets)))
        .await?;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), namespace);
    bindings
        .patch(
            &name,
            &params,
            &Patch::Apply(binding(&name, namespace, &access.service_account)),
        )
        .await?;
    tracing::info!(namespace, role = %name, ?secrets, "proxy Secret access applied");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_referenced_secret_and_no_rule_without_any() {
        let config = Config::from_yaml(
            "model_list:\n\
             - model_name: a\n  litellm_params: {model: azure/a, api_key: secret/azure/key}\n\
             - model_name: b\n  litellm_params: {model: openai/b, api_key: os.environ/B}\n\
             - model_name: c\n  litellm_params: {model: openai/c, api_key: secret/openai/k2}\n",
        )
        .expect("config");
        let names = secret_names(&config);
        assert_eq!(
            names.iter().map(String::as_str).collect::<Vec<_>>(),
            ["azure", "openai"]
        );
        let r = role("x", &names);
        assert_eq!(r["rules"][0]["resourceNames"], json!(["azure", "openai"]));
        assert_eq!(r["rules"][0]["verbs"], json!(["get", "list", "watch"]));
        assert_eq!(role("x", &BTreeSet::new())["rules"], json!([]));
    }
}
