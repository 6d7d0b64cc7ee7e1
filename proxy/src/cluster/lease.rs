//! The replica's Lease: a heartbeat that says which config generation and hash this proxy
//! serves. The operator reads these Leases to set `Ready` only when every live replica
//! serves a change. The Lease is renewed every third of its duration and at once after
//! every reload; it is deleted on shutdown, expires if the process dies, and is garbage
//! collected with its Pod when it names one as owner.

use crate::state::AppState;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams},
};
use modelgate_crds::wire::{
    CONFIG_ERROR_ANNOTATION, REPLICA_OF_LABEL, SERVED_GENERATION_ANNOTATION,
    SERVED_HASH_ANNOTATION, replica_lease_name,
};
use std::{collections::BTreeMap, time::Duration};

const MANAGER: &str = "modelgate-proxy";
/// Longest rejection message carried in the Lease (annotations are for short facts).
const MAX_ERROR_CHARS: usize = 512;

pub struct ReplicaLease {
    api: Api<Lease>,
    name: String,
    identity: String,
    configmap: String,
    duration: Duration,
    acquired: Timestamp,
    /// The Pod (name, uid) this replica runs in, as the Lease's owner.
    owner: Option<(String, String)>,
}

impl ReplicaLease {
    pub fn new(
        client: Client,
        namespace: &str,
        identity: &str,
        configmap: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: replica_lease_name(identity),
            identity: identity.to_string(),
            configmap: configmap.to_string(),
            duration,
            acquired: Timestamp::now(),
            owner: None,
        }
    }

    /// Makes the Pod the Lease's owner, so a pod that dies without deleting its Lease
    /// (OOM kill, lost node) does not leave it behind once the pod object is gone.
    pub fn owned_by_pod(mut self, pod: Option<(String, String)>) -> Self {
        self.owner = pod;
        self
    }

    fn lease(&self, state: &AppState) -> Lease {
        let mut annotations = BTreeMap::new();
        if let Some(snap) = state.snapshot() {
            annotations.insert(
                SERVED_GENERATION_ANNOTATION.to_string(),
                snap.meta.generation.to_string(),
            );
            annotations.insert(SERVED_HASH_ANNOTATION.to_string(), snap.meta.hash.clone());
        }
        if let Some(e) = state.last_error() {
            annotations.insert(
                CONFIG_ERROR_ANNOTATION.to_string(),
                e.chars().take(MAX_ERROR_CHARS).collect(),
            );
        }
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(BTreeMap::from([
                    (REPLICA_OF_LABEL.to_string(), self.configmap.clone()),
                    (
                        "app.kubernetes.io/name".to_string(),
                        "modelgate-proxy".to_string(),
                    ),
                ])),
                annotations: Some(annotations),
                owner_references: self.owner.as_ref().map(|(name, uid)| {
                    vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Pod".into(),
                        name: name.clone(),
                        uid: uid.clone(),
                        ..OwnerReference::default()
                    }]
                }),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(
                    i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX),
                ),
                acquire_time: Some(MicroTime(self.acquired)),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..LeaseSpec::default()
            }),
        }
    }

    async fn publish(&self, state: &AppState) -> Result<(), kube::Error> {
        let mut lease = serde_json::to_value(self.lease(state)).map_err(kube::Error::SerdeError)?;
        if let Some(obj) = lease.as_object_mut() {
            obj.insert("apiVersion".into(), "coordination.k8s.io/v1".into());
            obj.insert("kind".into(), "Lease".into());
        }
        self.api
            .patch(
                &self.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&lease),
            )
            .await?;
        Ok(())
    }

    /// Publishes until `shutdown` turns true, then deletes the Lease so the operator stops
    /// counting this replica at once rather than when the Lease expires.
    pub async fn run(self, state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut changed = state.subscribe();
        let mut failing = false;
        loop {
            match self.publish(&state).await {
                Ok(()) if failing => {
                    tracing::info!(lease = %self.name, "replica Lease published again");
                    failing = false;
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    tracing::warn!(lease = %self.name, error = %e, "cannot publish the replica Lease; retrying");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(self.duration / 3) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        match self.api.delete(&self.name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(lease = %self.name, "replica Lease released"),
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "could not delete the replica Lease; it will expire")
            }
        }
    }
}
