//! Reconciling one namespace: read its resources from the watch caches, plan, write the
//! ConfigMap only when its content changed, then each object's status only when it changed.

use crate::{
    GENERATION_ANNOTATION, HASH_ANNOTATION, MANAGED_BY, MANAGER, Result,
    metrics::{Metrics, NamespaceLabels},
    render::{self, Plan, SecretKeys},
    status::{self, Programmed},
};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Secret},
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        events::{Event, EventType, Recorder},
        reflector::Store,
    },
};
use modelgate_crds::{ModelDeployment, ModelGroupAlias, config::Config};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::{collections::BTreeMap, sync::Arc};

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub base: Config,
    pub configmap_name: String,
    pub deployments: Store<ModelDeployment>,
    pub aliases: Store<ModelGroupAlias>,
    pub secrets: Store<Secret>,
}

fn in_ns<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>, ns: &str) -> Vec<K> {
    store
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .map(|o| (**o).clone())
        .collect()
}

pub async fn reconcile(ctx: &Context, ns: &str) -> Result<()> {
    let deployments = in_ns(&ctx.deployments, ns);
    let aliases = in_ns(&ctx.aliases, ns);
    let secrets: SecretKeys = in_ns(&ctx.secrets, ns)
        .into_iter()
        .map(|s| {
            let mut keys: std::collections::BTreeSet<String> =
                s.data.iter().flatten().map(|(k, _)| k.clone()).collect();
            keys.extend(s.string_data.iter().flatten().map(|(k, _)| k.clone()));
            (s.name_any(), keys)
        })
        .collect();

    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let current = cms.get_opt(&ctx.configmap_name).await?;
    if deployments.is_empty() && aliases.is_empty() && current.is_none() {
        // Nothing declared here and nothing written before: not a gateway namespace.
        return Ok(());
    }
    let plan = render::plan(&ctx.base, &deployments, &aliases, &secrets);
    let generation = apply_configmap(ctx, &cms, current.as_ref(), &plan).await?;
    ctx.metrics
        .rendered_deployments
        .get_or_create(&NamespaceLabels {
            namespace: ns.to_string(),
        })
        .set(i64::try_from(plan.config.model_list.len()).unwrap_or(i64::MAX));

    let programmed = Programmed {
        configmap: ctx.configmap_name.clone(),
        generation: Some(generation),
    };
    for d in &deployments {
        if let Some(v) = plan.deployments.get(&d.name_any()) {
            let prev = d
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            let conds = status::desired(v, d.metadata.generation, &programmed);
            let unchanged = d.status.as_ref().is_some_and(|s| {
                s.observed_generation == d.metadata.generation
                    && s.deployment_id.as_deref() == Some(d.name_any().as_str())
                    && s.config_generation == Some(generation)
            });
            let extra = json!({"deploymentId": d.name_any(), "configGeneration": generation});
            write_status(ctx, d, conds, &prev, unchanged, extra).await?;
        }
    }
    for a in &aliases {
        if let Some(v) = plan.aliases.get(&a.name_any()) {
            let prev = a
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            let conds = status::desired(v, a.metadata.generation, &programmed);
            let unchanged = a.status.as_ref().is_some_and(|s| {
                s.observed_generation == a.metadata.generation
                    && s.alias.as_deref() == Some(a.alias_name().as_str())
                    && s.config_generation == Some(generation)
            });
            let extra = json!({"alias": a.alias_name(), "configGeneration": generation});
            write_status(ctx, a, conds, &prev, unchanged, extra).await?;
        }
    }
    Ok(())
}

/// Writes the ConfigMap when its content differs from the plan (including hand edits);
/// returns the generation that carries the plan.
async fn apply_configmap(
    ctx: &Context,
    cms: &Api<ConfigMap>,
    current: Option<&ConfigMap>,
    plan: &Plan,
) -> Result<i64> {
    let annotation = |k: &str| current.and_then(|c| c.annotations().get(k).cloned());
    let old_generation: i64 = annotation(GENERATION_ANNOTATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    let data = current
        .and_then(|c| c.data.as_ref())
        .and_then(|d| d.get("config.yaml"))
        .cloned();
    let data_hash = data
        .as_deref()
        .map(|d| hex::encode(Sha256::digest(d.as_bytes())));
    if data_hash.as_deref() == Some(plan.hash.as_str())
        && annotation(HASH_ANNOTATION).as_deref() == Some(plan.hash.as_str())
        && old_generation > 0
    {
        return Ok(old_generation);
    }
    let hand_edited = current.is_some()
        && annotation(HASH_ANNOTATION).is_some_and(|h| data_hash.as_deref() != Some(h.as_str()));
    let generation = old_generation + 1;
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ctx.configmap_name,
            "labels": {MANAGED_BY.0: MANAGED_BY.1, "app.kubernetes.io/name": "modelgate-router"},
            "annotations": {GENERATION_ANNOTATION: generation.to_string(), HASH_ANNOTATION: plan.hash},
        },
        "data": {"config.yaml": plan.yaml},
    });
    let written = cms
        .patch(
            &ctx.configmap_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await?;
    ctx.metrics.configmap_writes.inc();
    tracing::info!(namespace = ?written.namespace(), generation, hand_edited, "router ConfigMap written");
    if hand_edited {
        let event = Event {
            type_: EventType::Warning,
            reason: "ConfigMapRestored".into(),
            note: Some(format!(
                "{} was edited by hand; restored the rendered config as generation {generation}",
                ctx.configmap_name
            )),
            action: "Restore".into(),
            secondary: None,
        };
        publish(ctx, &written, &event).await;
    }
    Ok(generation)
}

async fn write_status<K>(
    ctx: &Context,
    obj: &K,
    mut conds: Vec<Condition>,
    previous: &[Condition],
    unchanged_fields: bool,
    extra: serde_json::Value,
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    status::carry_transition_times(&mut conds, previous);
    if unchanged_fields && status::same(&conds, previous) {
        return Ok(());
    }
    let mut st = json!({"observedGeneration": obj.meta().generation, "conditions": conds});
    if let (Some(st), Some(extra)) = (st.as_object_mut(), extra.as_object()) {
        st.extend(extra.clone());
    }
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": st});
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    for c in status::flips(&conds, previous) {
        let warning = c.status != "True";
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: c.reason.clone(),
            note: Some(format!("{}: {}", c.type_, c.message)),
            action: "Reconcile".into(),
            secondary: None,
        };
        publish(ctx, obj, &event).await;
    }
    Ok(())
}

async fn publish<K: Resource<DynamicType = ()>>(ctx: &Context, obj: &K, event: &Event) {
    if let Err(e) = ctx.recorder.publish(event, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish an Event");
    }
}

/// Namespaces that hold any of the watched resources.
pub fn namespaces(ctx: &Context) -> BTreeMap<String, ()> {
    let mut out = BTreeMap::new();
    for ns in ctx.deployments.state().iter().filter_map(|o| o.namespace()) {
        out.insert(ns, ());
    }
    for ns in ctx.aliases.state().iter().filter_map(|o| o.namespace()) {
        out.insert(ns, ());
    }
    out
}
