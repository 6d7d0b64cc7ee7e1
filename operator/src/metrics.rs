//! The operator's Prometheus metrics: reconciles, errors, durations, rendered deployments.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabels, Counter>,
    pub duration: Histogram,
    pub rendered_deployments: Family<NamespaceLabels, Gauge>,
    pub configmap_writes: Counter,
    pub status_writes: Counter,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("modelgate_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let duration = Histogram::new([
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]);
        let rendered_deployments = Family::<NamespaceLabels, Gauge>::default();
        let configmap_writes = Counter::default();
        let status_writes = Counter::default();
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Namespace reconciles by result (ok, error)",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time per namespace reconcile",
            duration.clone(),
        );
        registry.register(
            "rendered_deployments",
            "Deployments written into the router ConfigMap, per namespace",
            rendered_deployments.clone(),
        );
        registry.register(
            "configmap_writes",
            "Router ConfigMap writes (content changes only)",
            configmap_writes.clone(),
        );
        registry.register(
            "status_writes",
            "Status writes on ModelDeployments and ModelGroupAliases (changes only)",
            status_writes.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            duration,
            rendered_deployments,
            configmap_writes,
            status_writes,
            leader,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
