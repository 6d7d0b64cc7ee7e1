//! Reconciling one namespace: read its resources from the watch caches, plan, write the
//! ConfigMap only when its content changed, then each object's status only when it changed.

use crate::{
    GENERATION_ANNOTATION, HASH_ANNOTATION, MANAGED_BY, MANAGER, Result,
    metrics::{Metrics, NamespaceLabels},
    proxy_access::{self, ProxyAccess},
    render::{self, Plan, SecretKeys, Verdict},
    replicas::{self, Replicas},
    status::{self, Programmed},
};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{ConfigMap, Secret},
    },
    apimachinery::pkg::apis::meta::v1::Condition,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        events::{Event, EventType, Recorder},
        reflector::Store,
    },
};
use modelgate_crds::{ModelDeployment, ModelGroupAlias, conditions::types, config::Config};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

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
    /// The proxy replicas' Leases (labelled with the ConfigMap they serve).
    pub replicas: Store<Lease>,
    /// Since when the Lease watch has run without a gap (or this replica has led).
    pub replicas_seen_since: Arc<std::sync::Mutex<std::time::Instant>>,
    /// The namespace given with `--namespace`: it always gets a router ConfigMap, even
    /// empty, so its proxies become ready before the first model is declared.
    pub home: Option<String>,
    /// The last generation this process wrote per namespace: with the replicas' Leases and
    /// the statuses, it keeps generations rising when the ConfigMap is deleted.
    pub written: std::sync::Mutex<BTreeMap<String, i64>>,
    /// When set, each namespace's proxies get read access to exactly the Secrets its
    /// config references.
    pub proxy_access: Option<ProxyAccess>,
    /// The Secret names last granted per namespace, so unchanged grants are not re-sent.
    pub granted: std::sync::Mutex<BTreeMap<String, BTreeSet<String>>>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn in_ns<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>, ns: &str) -> Vec<K> {
    store
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .map(|o| (**o).clone())
        .collect()
}

/// How many status writes one reconcile keeps in flight.
const STATUS_WRITES_AT_ONCE: usize = 16;

/// Reconciles one namespace; returns when the next proxy replica Lease expires, since
/// that can change `Ready` without any watch event.
pub async fn reconcile(ctx: &Context, ns: &str) -> Result<Option<Timestamp>> {
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
    if deployments.is_empty()
        && aliases.is_empty()
        && current.is_none()
        && ctx.home.as_deref() != Some(ns)
        && !serving_namespaces(ctx).contains(ns)
    {
        // Nothing declared here, nothing written before, no proxy waiting: not a gateway.
        return Ok(None);
    }
    let plan = render::plan(&ctx.base, &deployments, &aliases, &secrets);
    let leases = ctx.replicas.state();
    // What replicas serve and statuses record bounds the next generation from below, so a
    // deleted and recreated ConfigMap never reuses a number.
    let floor = deployments
        .iter()
        .filter_map(|d| d.status.as_ref()?.config_generation)
        .chain(
            aliases
                .iter()
                .filter_map(|a| a.status.as_ref()?.config_generation),
        )
        .chain(lock(&ctx.written).get(ns).copied())
        .fold(
            replicas::highest_served(leases.iter().map(|l| &**l), ns, &ctx.configmap_name),
            i64::max,
        );
    // Access first: a proxy that sees a new Secret reference can read it at once.
    if let Some(access) = &ctx.proxy_access {
        let names = proxy_access::secret_names(&plan.config);
        if lock(&ctx.granted).get(ns) != Some(&names) {
            // A grant that cannot be written must not hold back the config: the proxies still
            // get every other change, and the grant is tried again on the next reconcile.
            match proxy_access::apply(&ctx.client, ns, &ctx.configmap_name, access, &names).await {
                Ok(()) => {
                    lock(&ctx.granted).insert(ns.to_string(), names);
                }
                Err(e) => tracing::warn!(namespace = ns, error = %e,
                    "could not grant the proxies their Secrets; the config is written anyway"),
            }
        }
    }
    let generation = apply_configmap(ctx, &cms, current.as_ref(), &plan, floor).await?;
    lock(&ctx.written).insert(ns.to_string(), generation);
    ctx.metrics
        .rendered_deployments
        .get_or_create(&NamespaceLabels {
            namespace: ns.to_string(),
        })
        .set(i64::try_from(plan.config.model_list.len()).unwrap_or(i64::MAX));

    let seen_for = ctx
        .replicas_seen_since
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .elapsed();
    let mut replicas = replicas::live(
        leases.iter().map(|l| &**l),
        ns,
        &ctx.configmap_name,
        Timestamp::now(),
    );
    replicas.settle(
        leases.iter().map(|l| &**l),
        ns,
        &ctx.configmap_name,
        seen_for,
    );
    // Status writes are independent round trips: run several at once, or 2,000 new
    // objects wait about a minute for their first status.
    let writes: Vec<_> = deployments
        .iter()
        .filter_map(|d| {
            let v = plan.deployments.get(&d.name_any())?;
            let id = ("deploymentId", d.name_any());
            let st = d.status.as_ref();
            let prior = Prior {
                conditions: st.map(|s| s.conditions.as_slice()).unwrap_or_default(),
                observed: st.and_then(|s| s.observed_generation),
                carried: st.and_then(|s| s.config_generation),
                id_matches: st.and_then(|s| s.deployment_id.as_deref()) == Some(id.1.as_str()),
            };
            let replicas = &replicas;
            Some(async move { write_status(ctx, d, v, &prior, generation, replicas, id).await })
        })
        .collect();
    stream::iter(writes)
        .buffer_unordered(STATUS_WRITES_AT_ONCE)
        .try_collect::<Vec<()>>()
        .await?;
    let writes: Vec<_> = aliases
        .iter()
        .filter_map(|a| {
            let v = plan.aliases.get(&a.name_any())?;
            let id = ("alias", a.alias_name());
            let st = a.status.as_ref();
            let prior = Prior {
                conditions: st.map(|s| s.conditions.as_slice()).unwrap_or_default(),
                observed: st.and_then(|s| s.observed_generation),
                carried: st.and_then(|s| s.config_generation),
                id_matches: st.and_then(|s| s.alias.as_deref()) == Some(id.1.as_str()),
            };
            let replicas = &replicas;
            Some(async move { write_status(ctx, a, v, &prior, generation, replicas, id).await })
        })
        .collect();
    stream::iter(writes)
        .buffer_unordered(STATUS_WRITES_AT_ONCE)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(replicas.next_expiry)
}

/// What an object's status says now.
struct Prior<'a> {
    conditions: &'a [Condition],
    observed: Option<i64>,
    /// The ConfigMap generation that first carried the object as it is.
    carried: Option<i64>,
    /// Whether the status names the object's id (deployment id or alias) as it is now.
    id_matches: bool,
}

impl Prior<'_> {
    /// The ConfigMap generation that carries the object as it is now: the one recorded,
    /// while the object has not changed and stayed programmed; else the current one. Keeping
    /// it is what lets an unrelated change leave this object's status (and Ready) alone.
    fn carried_in(&self, object_generation: Option<i64>, included: bool, current: i64) -> i64 {
        let programmed = self
            .conditions
            .iter()
            .any(|c| c.type_ == types::PROGRAMMED && c.status == "True");
        match self.carried {
            Some(g)
                if included && programmed && self.observed == object_generation && g <= current =>
            {
                g
            }
            _ => current,
        }
    }
}

/// Writes the ConfigMap when its content differs from the plan (including hand edits);
/// returns the generation that carries the plan. A new generation is above both the old one
/// and `floor`.
async fn apply_configmap(
    ctx: &Context,
    cms: &Api<ConfigMap>,
    current: Option<&ConfigMap>,
    plan: &Plan,
    floor: i64,
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
    let generation = old_generation.max(floor) + 1;
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

/// Writes an object's status when anything in it changed (times aside), with Events for
/// the conditions that flipped.
async fn write_status<K>(
    ctx: &Context,
    obj: &K,
    verdict: &Verdict,
    prior: &Prior<'_>,
    configmap_generation: i64,
    replicas: &Replicas,
    (id_field, id): (&str, String),
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let generation = obj.meta().generation;
    let carried = prior.carried_in(generation, verdict.included, configmap_generation);
    let programmed = Programmed {
        configmap: ctx.configmap_name.clone(),
        generation: Some(carried),
    };
    let mut conds = status::desired(verdict, generation, &programmed, replicas);
    if replicas.settling && prior.carried == Some(carried) {
        // Right after a gap in the Lease watch, an expired Lease may only be one whose
        // renewals we missed: keep what Ready said until the replicas had time to renew.
        if let Some(old) = prior.conditions.iter().find(|c| c.type_ == types::READY) {
            for c in conds.iter_mut().filter(|c| c.type_ == types::READY) {
                *c = old.clone();
                c.observed_generation = generation;
            }
        }
    }
    status::carry_transition_times(&mut conds, prior.conditions);
    let unchanged_fields =
        prior.observed == generation && prior.id_matches && prior.carried == Some(carried);
    if unchanged_fields && status::same(&conds, prior.conditions) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": {
            "observedGeneration": generation,
            "conditions": conds,
            id_field: id,
            "configGeneration": carried,
        },
    });
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.metrics.status_writes.inc();
    for c in status::flips(&conds, prior.conditions) {
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
    if let Some(home) = &ctx.home {
        out.insert(home.clone(), ());
    }
    for ns in ctx.deployments.state().iter().filter_map(|o| o.namespace()) {
        out.insert(ns, ());
    }
    for ns in ctx.aliases.state().iter().filter_map(|o| o.namespace()) {
        out.insert(ns, ());
    }
    for ns in serving_namespaces(ctx) {
        out.insert(ns, ());
    }
    out
}

/// Namespaces where proxy replicas wait for this operator's ConfigMap (their Leases say so):
/// they are gateways even before the first model, and get an empty config to be ready on.
fn serving_namespaces(ctx: &Context) -> BTreeSet<String> {
    ctx.replicas
        .state()
        .iter()
        .filter(|l| {
            l.labels().get(modelgate_crds::wire::REPLICA_OF_LABEL) == Some(&ctx.configmap_name)
        })
        .filter_map(|l| l.namespace())
        .collect()
}
