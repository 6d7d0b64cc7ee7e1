//! The watch side: reflector caches for ModelDeployments, ModelGroupAliases, Secrets and
//! our ConfigMaps, every change mapped to its namespace, and one worker that reconciles
//! dirty namespaces (debounced, retried with backoff, resynced periodically) while this
//! replica leads. A namespace, not an object, is the unit: it renders to one ConfigMap.

use crate::{
    MANAGED_BY,
    metrics::ResultLabels,
    reconcile::{self, Context},
};
use futures::{Stream, StreamExt};
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{ConfigMap, Secret},
};
use kube::{
    Api, Client, Resource,
    runtime::{WatchStreamExt, reflector, watcher},
};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::mpsc;

/// Changes within this window are reconciled together.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Every namespace is reconciled this often even without changes (drift, missed events).
const RESYNC: Duration = Duration::from_secs(300);

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Feeds a reflector and sends the namespace of every change.
fn spawn_feed<K, S>(stream: S, tx: mpsc::UnboundedSender<Option<String>>)
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    spawn_feed_noting_gaps(stream, tx, None);
}

/// As [`spawn_feed`], and records in `gap` when the watch last failed or relisted: the
/// replica Leases seen since then may be stale, so their expiry proves nothing yet.
fn spawn_feed_noting_gaps<K, S>(
    stream: S,
    tx: mpsc::UnboundedSender<Option<String>>,
    gap: Option<Arc<std::sync::Mutex<Instant>>>,
) where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(ev) = stream.next().await {
            if failing && ev.is_ok() {
                tracing::info!(
                    kind = K::kind(&Default::default()).as_ref(),
                    "watch recovered"
                );
                failing = false;
            }
            if let (Some(gap), Ok(watcher::Event::Init) | Err(_)) = (&gap, &ev) {
                *gap.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            }
            match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => {
                    let _ = tx.send(o.meta().namespace.clone());
                }
                // A (re)list finished: anything may have changed while we were not watching.
                Ok(watcher::Event::InitDone) => {
                    let _ = tx.send(None);
                }
                Ok(_) => {}
                // One line per outage, not one per retry.
                Err(e) if !failing => {
                    tracing::warn!(kind = K::kind(&Default::default()).as_ref(), error = %e, "watch failed; retrying with backoff");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    });
}

pub struct Controller {
    pub ctx: Arc<Context>,
    pub ready: Arc<AtomicBool>,
    configmaps: reflector::Store<ConfigMap>,
    rx: mpsc::UnboundedReceiver<Option<String>>,
}

impl Controller {
    pub fn new(
        client: Client,
        namespace: Option<&str>,
        configmap_name: String,
        base: modelgate_crds::config::Config,
        metrics: Arc<crate::metrics::Metrics>,
        proxy_access: Option<crate::proxy_access::ProxyAccess>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let cfg = watcher::Config::default();
        let (deployments, w) = reflector::store();
        spawn_feed(
            reflector(
                w,
                watcher(api(&client, namespace), cfg.clone())
                    .backoff(modelgate_crds::backoff::WatchBackoff::default()),
            ),
            tx.clone(),
        );
        let (aliases, w) = reflector::store();
        spawn_feed(
            reflector(
                w,
                watcher(api(&client, namespace), cfg.clone())
                    .backoff(modelgate_crds::backoff::WatchBackoff::default()),
            ),
            tx.clone(),
        );
        let (secrets, w) = reflector::store::<Secret>();
        spawn_feed(
            reflector(
                w,
                watcher(api(&client, namespace), cfg.clone())
                    .backoff(modelgate_crds::backoff::WatchBackoff::default()),
            ),
            tx.clone(),
        );
        let (replicas, w) = reflector::store::<Lease>();
        let replicas_seen_since = Arc::new(std::sync::Mutex::new(Instant::now()));
        spawn_feed_noting_gaps(
            reflector(
                w,
                watcher(
                    api(&client, namespace),
                    cfg.clone().labels(modelgate_crds::wire::REPLICA_OF_LABEL),
                )
                .backoff(modelgate_crds::backoff::WatchBackoff::default()),
            ),
            tx.clone(),
            Some(replicas_seen_since.clone()),
        );
        let managed = cfg.labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
        let (configmaps, w) = reflector::store::<ConfigMap>();
        spawn_feed(
            reflector(
                w,
                watcher(api(&client, namespace), managed)
                    .backoff(modelgate_crds::backoff::WatchBackoff::default()),
            ),
            tx,
        );

        let reporter = kube::runtime::events::Reporter {
            controller: crate::MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let ctx = Arc::new(Context {
            recorder: kube::runtime::events::Recorder::new(client.clone(), reporter),
            client,
            metrics,
            base,
            configmap_name,
            deployments,
            aliases,
            secrets,
            replicas,
            replicas_seen_since,
            home: namespace.map(String::from),
            written: Default::default(),
            proxy_access,
            granted: Default::default(),
        });
        Self {
            ctx,
            configmaps,
            ready: Arc::new(AtomicBool::new(false)),
            rx,
        }
    }

    /// Reconciles until `shutdown` fires. Only writes while `leading` is true.
    pub async fn run(
        mut self,
        leading: Arc<AtomicBool>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        // A first reconcile on half-filled caches would render a partial config.
        let _ = self.ctx.deployments.wait_until_ready().await;
        let _ = self.ctx.aliases.wait_until_ready().await;
        let _ = self.ctx.secrets.wait_until_ready().await;
        let _ = self.ctx.replicas.wait_until_ready().await;
        let _ = self.configmaps.wait_until_ready().await;
        self.ready.store(true, Ordering::Relaxed);
        tracing::info!("caches synced");
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut retry: BTreeMap<String, (Instant, u32)> = BTreeMap::new();
        // When a proxy replica's Lease next expires, per namespace: Ready may change then.
        let mut expiries: BTreeMap<String, Instant> = BTreeMap::new();
        let mut all = true;
        let mut was_leading = false;
        let mut next_resync = Instant::now() + RESYNC;
        loop {
            let now_leading = leading.load(Ordering::Relaxed);
            if now_leading && !was_leading {
                all = true;
                // Leases renewed while we were not leading may not have reached us yet.
                *self
                    .ctx
                    .replicas_seen_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Instant::now();
            }
            was_leading = now_leading;
            if Instant::now() >= next_resync {
                all = true;
                next_resync = Instant::now() + RESYNC;
            }
            if all {
                dirty.extend(reconcile::namespaces(&self.ctx).into_keys());
                all = false;
            }
            let due: Vec<String> = retry
                .iter()
                .filter(|(_, (at, _))| *at <= Instant::now())
                .map(|(ns, _)| ns.clone())
                .collect();
            dirty.extend(due);
            let expired: Vec<String> = expiries
                .iter()
                .filter(|(_, at)| **at <= Instant::now())
                .map(|(ns, _)| ns.clone())
                .collect();
            for ns in expired {
                expiries.remove(&ns);
                dirty.insert(ns);
            }
            if now_leading {
                for ns in std::mem::take(&mut dirty) {
                    let started = Instant::now();
                    let result = reconcile::reconcile(&self.ctx, &ns).await;
                    self.ctx
                        .metrics
                        .duration
                        .observe(started.elapsed().as_secs_f64());
                    let label = if result.is_ok() { "ok" } else { "error" };
                    self.ctx
                        .metrics
                        .reconciles
                        .get_or_create(&ResultLabels { result: label })
                        .inc();
                    match result {
                        Ok(next_expiry) => {
                            retry.remove(&ns);
                            match next_expiry.and_then(until) {
                                Some(at) => expiries.insert(ns, at),
                                None => expiries.remove(&ns),
                            };
                        }
                        Err(e) => {
                            let attempt = retry.get(&ns).map_or(0, |r| r.1) + 1;
                            let backoff = Duration::from_millis(200 * 2u64.pow(attempt.min(7)));
                            tracing::warn!(namespace = %ns, error = %e, ?backoff, "reconcile failed; retrying");
                            retry.insert(ns, (Instant::now() + backoff, attempt));
                        }
                    }
                }
            } else {
                dirty.clear();
            }
            let wake = retry
                .values()
                .map(|r| r.0)
                .chain(expiries.values().copied())
                .min()
                .unwrap_or(next_resync)
                .min(next_resync);
            let tick = Duration::from_millis(500);
            tokio::select! {
                got = self.rx.recv() => match got {
                    Some(ns) => {
                        self.note(ns, &mut dirty, &mut all);
                        tokio::time::sleep(DEBOUNCE).await;
                        while let Ok(ns) = self.rx.try_recv() {
                            self.note(ns, &mut dirty, &mut all);
                        }
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake.min(Instant::now() + tick))) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    fn note(&self, ns: Option<String>, dirty: &mut BTreeSet<String>, all: &mut bool) {
        match ns {
            Some(ns) => {
                dirty.insert(ns);
            }
            None => *all = true,
        }
    }
}

/// A wall-clock time as an `Instant` (now if it has passed), slightly after it so the
/// Lease is surely expired when we look.
fn until(at: k8s_openapi::jiff::Timestamp) -> Option<Instant> {
    let left = at.duration_since(k8s_openapi::jiff::Timestamp::now());
    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
    Some(Instant::now() + left + Duration::from_millis(100))
}
