//! Process-wide state: the swappable config snapshot, the upstream HTTP client, metrics,
//! health results and reload status. A request loads the snapshot once and keeps it, so it
//! finishes on the config it started with even if a reload happens meanwhile.

use crate::{config::Loaded, health::HealthCache, metrics::Metrics, router::Snapshot};
use arc_swap::ArcSwapOption;
use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};
use tokio::sync::watch;

pub type AppState = Arc<Shared>;

pub struct Shared {
    config: ArcSwapOption<Snapshot>,
    pub http: crate::client::Upstream,
    pub metrics: Metrics,
    pub health: HealthCache,
    /// Usage, cooldowns, in-flight counts and latencies, kept across reloads.
    pub live: Arc<crate::router::live::Live>,
    /// The last reload failure, shown on readiness until a good config loads.
    last_error: Mutex<Option<String>>,
    /// What is wrong with the config source itself (a failing watch, a missing ConfigMap),
    /// shown on readiness until the source recovers. The last good config keeps serving.
    source_error: Mutex<Option<String>>,
    /// Creates, updates and deletes ModelDeployments for `/model/new` and friends, when the
    /// proxy runs in a cluster with model management switched on.
    pub model_store: std::sync::OnceLock<crate::cluster::manage::ModelStore>,
    /// Warnings already logged, so each is named once rather than on every reload.
    warned: Mutex<BTreeSet<String>>,
    /// The Redis link for shared limits and cooldowns, kept while the config names the same
    /// Redis.
    shared_store: ArcSwapOption<crate::router::shared::SharedStore>,
    /// Bumped on every swap; the health checker waits on it.
    changed: watch::Sender<u64>,
}

impl Shared {
    pub fn new() -> Result<AppState, crate::client::BoxError> {
        let http = crate::client::Upstream::new()?;
        let (changed, _) = watch::channel(0);
        Ok(Arc::new(Self {
            config: ArcSwapOption::empty(),
            http,
            metrics: Metrics::default(),
            health: HealthCache::default(),
            live: Arc::default(),
            last_error: Mutex::new(None),
            source_error: Mutex::new(None),
            model_store: std::sync::OnceLock::new(),
            shared_store: ArcSwapOption::empty(),
            warned: Mutex::new(BTreeSet::new()),
            changed,
        }))
    }

    /// The config being served, if one has loaded.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.config.load_full()
    }

    /// Swaps in a new config. Requests in flight keep the snapshot they loaded.
    pub fn install(&self, loaded: Loaded) {
        {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            for w in &loaded.warnings {
                if warned.insert(w.clone()) {
                    tracing::warn!(warning = %w, "config");
                }
            }
        }
        let snap = loaded.snapshot;
        self.connect_shared(snap.settings.redis.as_ref());
        let ids: std::collections::HashSet<&str> =
            snap.deployments.iter().map(|d| d.id.as_str()).collect();
        self.live.retain(&ids);
        tracing::info!(
            generation = snap.meta.generation,
            hash = %&snap.meta.hash[..12.min(snap.meta.hash.len())],
            deployments = snap.deployments.len(),
            source = %snap.meta.source,
            "config loaded"
        );
        self.metrics
            .config_generation
            .set(i64::try_from(snap.meta.generation).unwrap_or(i64::MAX));
        self.metrics
            .deployments
            .set(i64::try_from(snap.deployments.len()).unwrap_or(i64::MAX));
        self.metrics
            .config_reloads
            .get_or_create(&crate::metrics::ResultLabels { result: "success" })
            .inc();
        let old = self.config.swap(Some(Arc::new(snap)));
        if let (Some(old), Some(new)) = (old, self.config.load_full()) {
            let kept: std::collections::HashSet<(&str, &str)> = new
                .deployments
                .iter()
                .map(|d| (d.model_name.as_str(), d.id.as_str()))
                .collect();
            for d in &old.deployments {
                if !kept.contains(&(d.model_name.as_str(), d.id.as_str())) {
                    self.metrics.forget_deployment(&d.model_name, &d.id);
                }
            }
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.changed.send_modify(|n| *n += 1);
    }

    /// Counts a response's tokens for its deployment, here and (when configured) in Redis.
    pub fn add_tokens(&self, id: &str, tokens: u64) {
        self.live.add_tokens(id, tokens);
        if let Some(store) = self.shared_store() {
            store.add_tokens(id, tokens);
        }
    }

    /// The Redis link, when the config names one.
    pub fn shared_store(&self) -> Option<Arc<crate::router::shared::SharedStore>> {
        self.shared_store.load_full()
    }

    /// Starts (or keeps, or drops) the Redis link for the config being installed.
    fn connect_shared(&self, want: Option<&crate::config::redis_target::RedisTarget>) {
        let current = self.shared_store.load_full();
        match (want, &current) {
            (None, None) => {}
            (None, Some(_)) => self.shared_store.store(None),
            (Some(target), cur) => {
                if cur.as_ref().is_some_and(|c| c.target == *target) {
                    return;
                }
                if tokio::runtime::Handle::try_current().is_err() {
                    tracing::error!("cannot connect to redis outside the runtime");
                    return;
                }
                match crate::router::shared::SharedStore::start(
                    target,
                    self.live.clone(),
                    self.metrics.redis_errors.clone(),
                ) {
                    Ok(s) => self.shared_store.store(Some(s)),
                    Err(e) => {
                        tracing::error!(error = %e, "redis settings unusable; limits stay local")
                    }
                }
            }
        }
    }

    /// Records a config that failed to load; the current one keeps serving.
    pub fn reject(&self, error: String) {
        tracing::error!(error = %error, "config rejected; still serving the last good config");
        self.metrics
            .config_reloads
            .get_or_create(&crate::metrics::ResultLabels { result: "failure" })
            .inc();
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets or clears the config source's problem; logs and counts each new one.
    pub fn set_source_error(&self, error: Option<String>) {
        let mut current = self.source_error.lock().unwrap_or_else(|e| e.into_inner());
        if *current == error {
            return;
        }
        match &error {
            Some(e) => {
                tracing::warn!(error = %e, "config source problem; still serving the last good config");
                self.metrics.config_source_errors.inc();
            }
            None if current.is_some() => tracing::info!("config source recovered"),
            None => {}
        }
        *current = error;
    }

    pub fn source_error(&self) -> Option<String> {
        self.source_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
