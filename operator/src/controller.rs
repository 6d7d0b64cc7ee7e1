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
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
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
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => {
                    let _ = tx.send(o.meta().namespace.clone());
                }
                // A (re)list finished: anything may have changed while we were not watching.
                Ok(watcher::Event::InitDone) => {
                    let _ = tx.send(None);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "watch error; retrying with backoff"),
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
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let cfg = watcher::Config::default();
        let (deployments, w) = reflector::store();
        spawn_feed(
            reflector(
                w,
                watcher(api(&client, namespace), cfg.clone()).default_backoff(),
            ),
            tx.clone(),
        );
        let (aliases, w) = reflector::store();
        spawn_feed(
            reflector(
                w,
                watcher(api(&client, namespace), cfg.clone()).default_backoff(),
            ),
            tx.clone(),
        );
        let (secrets, w) = reflector::store::<Secret>();
        spawn_feed(
            reflector(
                w,
                watcher(api(&client, namespace), cfg.clone()).default_backoff(),
            ),
            tx.clone(),
        );
        let managed = cfg.labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
        let (configmaps, w) = reflector::store::<ConfigMap>();
        spawn_feed(
            reflector(
                w,
                watcher(api(&client, namespace), managed).default_backoff(),
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
        let _ = self.configmaps.wait_until_ready().await;
        self.ready.store(true, Ordering::Relaxed);
        tracing::info!("caches synced");
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut retry: BTreeMap<String, (Instant, u32)> = BTreeMap::new();
        let mut all = true;
        let mut was_leading = false;
        let mut next_resync = Instant::now() + RESYNC;
        loop {
            let now_leading = leading.load(Ordering::Relaxed);
            if now_leading && !was_leading {
                all = true;
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
                        Ok(()) => {
                            retry.remove(&ns);
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
