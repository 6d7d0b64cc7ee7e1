//! Prometheus metrics. Labels are bounded: routes are a fixed set, model groups and
//! deployments come from the config (an unknown requested model counts as `unknown`).

use crate::router::deployment::Deployment;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::{
    collections::HashSet,
    sync::{Mutex, PoisonError},
    time::Duration,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub model_group: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
    pub model_group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub model_group: String,
    pub deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub model_group: String,
    pub deployment: String,
    /// HTTP status, or `timeout` / `connection`.
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub model_group: String,
    pub deployment: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// One deployment's series, resolved once (label hashing and `String` keys cost more
/// than the increment itself) and kept on the deployment.
#[derive(Debug, Clone)]
pub struct DeploymentSeries {
    pub upstream_duration: Histogram,
    pub prompt_tokens: Counter,
    pub completion_tokens: Counter,
    pub cooldowns: Counter,
}

impl DeploymentSeries {
    pub fn observe_tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.inc_by(prompt);
        self.completion_tokens.inc_by(completion);
    }
}

pub struct Metrics {
    registry: Registry,
    /// Upstream error series created so far, so a removed deployment's can be dropped.
    error_series: Mutex<HashSet<UpstreamErrorLabels>>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram>,
    pub upstream_duration: Family<DeploymentLabels, Histogram>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub cooldowns: Family<DeploymentLabels, Counter>,
    pub redis_errors: Counter,
    pub cooling_down: Gauge,
    pub retries: Family<RouteLabels, Counter>,
    pub fallbacks: Family<RouteLabels, Counter>,
    pub tokens: Family<TokenLabels, Counter>,
    pub config_reloads: Family<ResultLabels, Counter>,
    pub config_generation: Gauge,
    pub config_source_errors: Counter,
    pub deployments: Gauge,
    pub health_checks: Family<ResultLabels, Counter>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0, 120.0,
    ]
    .into_iter()
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("modelgate");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let upstream_duration = Family::<DeploymentLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        let cooldowns = Family::<DeploymentLabels, Counter>::default();
        let redis_errors = Counter::default();
        let cooling_down = Gauge::default();
        let retries = Family::<RouteLabels, Counter>::default();
        let fallbacks = Family::<RouteLabels, Counter>::default();
        let tokens = Family::<TokenLabels, Counter>::default();
        let config_reloads = Family::<ResultLabels, Counter>::default();
        let config_generation = Gauge::default();
        let config_source_errors = Counter::default();
        let deployments = Gauge::default();
        let health_checks = Family::<ResultLabels, Counter>::default();
        registry.register(
            "requests",
            "Client requests by route, model group and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers (streams: to first byte)",
            request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Upstream call time to response headers, per deployment",
            upstream_duration.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed upstream calls by deployment and error",
            upstream_errors.clone(),
        );
        registry.register(
            "deployment_cooldowns",
            "Cooldowns started, per deployment",
            cooldowns.clone(),
        );
        registry.register("retries", "Retries within a model group", retries.clone());
        registry.register(
            "deployments_cooling_down",
            "Deployments in cooldown now (see /router/cooldowns)",
            cooling_down.clone(),
        );
        registry.register(
            "redis_errors",
            "Failed or timed-out Redis calls (limits and cooldowns fell back to local state)",
            redis_errors.clone(),
        );
        registry.register(
            "fallbacks",
            "Requests that fell back to another model group (by the group asked for)",
            fallbacks.clone(),
        );
        registry.register(
            "tokens",
            "Tokens reported by upstreams (prompt, completion)",
            tokens.clone(),
        );
        registry.register(
            "config_reloads",
            "Config loads by result (success, failure)",
            config_reloads.clone(),
        );
        registry.register(
            "config_source_errors",
            "Problems with the config source (watch errors, missing ConfigMap)",
            config_source_errors.clone(),
        );
        registry.register(
            "config_generation",
            "Generation of the config being served",
            config_generation.clone(),
        );
        registry.register(
            "deployments",
            "Deployments in the config being served",
            deployments.clone(),
        );
        registry.register(
            "health_checks",
            "Background health checks by result (healthy, unhealthy)",
            health_checks.clone(),
        );
        Self {
            registry,
            error_series: Mutex::default(),
            requests,
            request_duration,
            upstream_duration,
            upstream_errors,
            cooldowns,
            redis_errors,
            cooling_down,
            retries,
            fallbacks,
            tokens,
            config_reloads,
            config_generation,
            config_source_errors,
            deployments,
            health_checks,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn observe_request(&self, route: &'static str, group: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                model_group: group.to_string(),
                status,
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels {
                route,
                model_group: group.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// A deployment's series, resolved on first use and kept on the deployment.
    pub fn series<'d>(&self, d: &'d Deployment) -> &'d DeploymentSeries {
        d.series
            .get_or_init(|| self.deployment_series(&d.model_name, &d.id))
    }

    /// The series of deployment `id` in model group `group`.
    pub fn deployment_series(&self, group: &str, id: &str) -> DeploymentSeries {
        let labels = DeploymentLabels {
            model_group: group.to_string(),
            deployment: id.to_string(),
        };
        let tokens = |kind| {
            self.tokens
                .get_or_create(&TokenLabels {
                    model_group: group.to_string(),
                    deployment: id.to_string(),
                    kind,
                })
                .clone()
        };
        DeploymentSeries {
            upstream_duration: self.upstream_duration.get_or_create(&labels).clone(),
            prompt_tokens: tokens("prompt"),
            completion_tokens: tokens("completion"),
            cooldowns: self.cooldowns.get_or_create(&labels).clone(),
        }
    }

    pub fn upstream_error(&self, group: &str, id: &str, error: String) {
        let labels = UpstreamErrorLabels {
            model_group: group.to_string(),
            deployment: id.to_string(),
            error,
        };
        self.upstream_errors.get_or_create(&labels).inc();
        self.error_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(labels);
    }

    /// Drops every series of a deployment that left the config, so `/metrics` shows the
    /// declared state and does not grow with every deployment ever served.
    pub fn forget_deployment(&self, group: &str, id: &str) {
        let labels = DeploymentLabels {
            model_group: group.to_string(),
            deployment: id.to_string(),
        };
        self.upstream_duration.remove(&labels);
        self.cooldowns.remove(&labels);
        for kind in ["prompt", "completion"] {
            self.tokens.remove(&TokenLabels {
                model_group: group.to_string(),
                deployment: id.to_string(),
                kind,
            });
        }
        self.error_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|l| {
                let gone = l.model_group == group && l.deployment == id;
                if gone {
                    self.upstream_errors.remove(l);
                }
                !gone
            });
    }
}
