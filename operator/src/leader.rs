//! Leader election on a `coordination.k8s.io` Lease: one replica writes, the others keep
//! warm caches and take over when the leader's lease expires (or at once when it steps down
//! on shutdown). Takeover uses the Lease's resourceVersion, so two replicas cannot both win.

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

pub struct LeaderElection {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
}

impl LeaderElection {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: String,
        lease_duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity,
            lease_duration,
        }
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: create, renew or take over the Lease. Returns whether we lead now.
    async fn round(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return Ok(self
                .api
                .create(&PostParams::default(), &lease)
                .await
                .is_ok());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(t), Some(d)) => t.0 + SignedDuration::from_secs(i64::from(d)) < Timestamp::now(),
            _ => true,
        };
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        if !ours && !expired && !free {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours { spec.acquire_time } else { None };
        lease.spec = Some(self.spec(transitions, acquired));
        // replace() carries the resourceVersion we read: a concurrent winner makes this fail.
        Ok(self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .is_ok())
    }

    /// Campaigns until `shutdown`, keeping `leading` current; steps down on the way out.
    pub async fn run(
        self,
        leading: Arc<AtomicBool>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let retry = self.lease_duration / 4;
        let mut last_renewed = None::<std::time::Instant>;
        loop {
            match self.round().await {
                Ok(true) => {
                    if !leading.swap(true, Ordering::Relaxed) {
                        tracing::info!(identity = %self.identity, "became leader");
                    }
                    last_renewed = Some(std::time::Instant::now());
                }
                Ok(false) => {
                    if leading.swap(false, Ordering::Relaxed) {
                        tracing::warn!("lost the leader Lease");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leader election round failed");
                    // Keep leading only while our last renewal is surely still valid.
                    if last_renewed.is_none_or(|t| t.elapsed() > self.lease_duration * 2 / 3) {
                        leading.store(false, Ordering::Relaxed);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.changed() => break,
            }
        }
        if leading.swap(false, Ordering::Relaxed) {
            self.step_down().await;
        }
    }

    async fn step_down(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            let _ = self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await;
            tracing::info!("released the leader Lease");
        }
    }
}
