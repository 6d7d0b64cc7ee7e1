//! Deployment health: each deployment (never an alias copy) is checked once per interval
//! in the background with a minimal real call, and `/health` serves the cached results in
//! LiteLLM's shape. New or changed deployments are checked as soon as a config loads.
//! Errors are one line of text: no stack traces, headers or keys.

use crate::{
    router::{
        Snapshot,
        deployment::{Deployment, Endpoint},
    },
    state::AppState,
    upstream,
};
use arc_swap::ArcSwap;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

/// At most this many checks run at once, so a big config does not flood its upstreams.
const CONCURRENCY: usize = 16;
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct HealthResult {
    pub healthy: bool,
    pub error: Option<String>,
    /// What was checked; a deployment whose target changes is checked again.
    fingerprint: String,
    checked: Instant,
    rate_headers: Vec<(String, String)>,
}

#[derive(Default)]
pub struct HealthCache {
    results: ArcSwap<HashMap<String, Arc<HealthResult>>>,
}

fn fingerprint(d: &Deployment) -> String {
    format!(
        "{}|{}|{}",
        d.model,
        d.api_base.as_deref().unwrap_or(""),
        d.mock_response.is_some()
    )
}

/// Checks one deployment with a minimal request of its mode.
pub async fn check(http: &crate::client::Upstream, d: &Deployment) -> HealthResult {
    let done = |healthy: bool, error: Option<String>, rate_headers| HealthResult {
        healthy,
        error,
        fingerprint: fingerprint(d),
        checked: Instant::now(),
        rate_headers,
    };
    if d.mock_response.is_some() {
        return done(true, None, Vec::new());
    }
    let timeout = d
        .model_info
        .get("health_check_timeout")
        .and_then(Value::as_f64)
        .filter(|t| *t > 0.0)
        .map_or(DEFAULT_CHECK_TIMEOUT, Duration::from_secs_f64);
    let model = d
        .model_info
        .get("health_check_model")
        .and_then(Value::as_str)
        .map_or(d.upstream_model.as_str(), |m| {
            m.split_once('/').map_or(m, |(_, r)| r)
        });
    let (endpoint, body) = match d.mode.as_str() {
        "embedding" => (Endpoint::Embeddings, json!({"input": ["ping"]})),
        "completion" => (
            Endpoint::Completions,
            json!({"prompt": "ping", "max_tokens": 1}),
        ),
        _ => (
            Endpoint::Chat,
            json!({"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}),
        ),
    };
    let Value::Object(body) = body else {
        return done(false, Some("internal: bad probe".into()), Vec::new());
    };
    let payload = upstream::upstream_body(&body, d, model);
    match upstream::send(http, d, endpoint, model, payload, timeout).await {
        Ok(resp) => {
            let rate = resp
                .headers()
                .iter()
                .filter(|(k, _)| {
                    matches!(
                        k.as_str(),
                        "x-ratelimit-remaining-requests" | "x-ratelimit-remaining-tokens"
                    )
                })
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                .collect();
            // Drain the body so the connection returns to the pool.
            let _ = tokio::time::timeout(timeout, resp.into_body().collect()).await;
            done(true, None, rate)
        }
        Err(e) => {
            let msg = e.to_api_error(d).message;
            done(false, Some(msg), Vec::new())
        }
    }
}

/// Runs checks forever: due deployments on every interval, new ones on every config swap.
pub async fn run(state: AppState) {
    let mut changed = state.subscribe();
    loop {
        let next = match state.snapshot() {
            Some(snap) if snap.settings.background_health_checks => {
                check_due(&state, &snap).await;
                snap.settings.health_check_interval
            }
            _ => Duration::from_secs(3600),
        };
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(next) => {}
        }
    }
}

async fn check_due(state: &AppState, snap: &Snapshot) {
    let current = state.health.results.load_full();
    let interval = snap.settings.health_check_interval;
    let due: Vec<Arc<Deployment>> = snap
        .deployments
        .iter()
        .filter(|d| match current.get(&d.id) {
            Some(r) => {
                r.fingerprint != fingerprint(d)
                    || r.checked.elapsed() + Duration::from_millis(50) >= interval
            }
            None => true,
        })
        .cloned()
        .collect();
    let fresh = run_checks(state, due).await;
    let live: std::collections::HashSet<&str> =
        snap.deployments.iter().map(|d| d.id.as_str()).collect();
    state.health.results.rcu(|old| {
        let mut next: HashMap<String, Arc<HealthResult>> = old
            .iter()
            .filter(|(id, _)| live.contains(id.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, r) in &fresh {
            next.insert(id.clone(), r.clone());
        }
        next
    });
}

async fn run_checks(
    state: &AppState,
    due: Vec<Arc<Deployment>>,
) -> Vec<(String, Arc<HealthResult>)> {
    futures::stream::iter(due)
        .map(|d| {
            let http = state.http.clone();
            async move {
                let r = check(&http, &d).await;
                (d.id.clone(), Arc::new(r))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .inspect(|(_, r)| {
            let result = if r.healthy { "healthy" } else { "unhealthy" };
            state
                .metrics
                .health_checks
                .get_or_create(&crate::metrics::ResultLabels { result })
                .inc();
        })
        .collect()
        .await
}

/// Filters for `/health?model=...&model_id=...`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct HealthQuery {
    pub model: Option<String>,
    pub model_id: Option<String>,
}

/// The `/health` body. With background checks off, checks run now (LiteLLM's behaviour).
pub async fn report(state: &AppState, snap: &Snapshot, q: &HealthQuery) -> Value {
    let mut selected: Vec<&Arc<Deployment>> = snap.deployments.iter().collect();
    if let Some(id) = &q.model_id {
        selected.retain(|d| &d.id == id);
    } else if let Some(m) = &q.model {
        let by_model: Vec<_> = selected.iter().copied().filter(|d| &d.model == m).collect();
        selected = if by_model.is_empty() {
            match snap.resolve(m) {
                Some(route) => selected
                    .into_iter()
                    .filter(|d| route.candidates.iter().any(|c| c.id == d.id))
                    .collect(),
                None => Vec::new(),
            }
        } else {
            by_model
        };
    }
    let results: HashMap<String, Arc<HealthResult>> = if snap.settings.background_health_checks {
        state.health.results.load_full().as_ref().clone()
    } else {
        run_checks(state, selected.iter().map(|d| (*d).clone()).collect())
            .await
            .into_iter()
            .collect()
    };
    let details = snap.settings.health_check_details;
    let (mut healthy, mut unhealthy, mut pending) = (Vec::new(), Vec::new(), Vec::new());
    for d in selected {
        let mut entry = if details {
            let mut m = d.public_params.clone();
            m.remove("mock_response");
            m.insert("model_id".into(), json!(d.id));
            m
        } else {
            Map::from_iter([("model".to_string(), json!(d.model))])
        };
        match results
            .get(&d.id)
            .filter(|r| r.fingerprint == fingerprint(d))
        {
            Some(r) if r.healthy => {
                for (k, v) in &r.rate_headers {
                    entry.insert(k.clone(), json!(v));
                }
                healthy.push(Value::Object(entry));
            }
            Some(r) => {
                entry.insert("error".into(), json!(r.error));
                unhealthy.push(Value::Object(entry));
            }
            None => pending.push(Value::Object(entry)),
        }
    }
    json!({"healthy_endpoints": healthy, "unhealthy_endpoints": unhealthy,
           "healthy_count": healthy.len(), "unhealthy_count": unhealthy.len(),
           "pending_endpoints": pending})
}
