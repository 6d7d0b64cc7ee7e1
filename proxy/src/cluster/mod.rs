//! The cluster config source: the router ConfigMap and the Secrets its config references,
//! watched through the Kubernetes API (never a mounted file). Every change builds a whole
//! new snapshot and swaps it in; anything that goes wrong (a broken config, a watch error,
//! an API server that is gone, a deleted ConfigMap) leaves the last good snapshot serving.

pub mod lease;
pub mod manage;
mod manage_spec;
mod secrets;

use crate::{
    catalog::Catalog,
    config::{Defaults, hash_text, load, resolve::secret_names},
    state::AppState,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use modelgate_crds::wire::{CONFIG_KEY, GENERATION_ANNOTATION};
use secrets::SecretWatches;
use std::{sync::Arc, time::Duration};
use tokio::{sync::mpsc, time::Instant};

/// How long a new config waits for the Secrets it references to be read before it loads
/// anyway (with those references unresolved and named in a warning).
const SECRET_SYNC_WAIT: Duration = Duration::from_secs(3);

pub struct ClusterSource {
    pub client: Client,
    pub namespace: String,
    pub name: String,
    pub defaults: Defaults,
    pub catalog: Arc<Catalog>,
}

/// What the watchers tell the loading loop.
#[derive(Debug)]
enum Change {
    /// The ConfigMap as it is now; `None` when it does not exist.
    ConfigMap(Option<Box<ConfigMap>>),
    /// A referenced Secret changed (or was read for the first time).
    Secret,
    /// A watch failed; it retries with backoff by itself.
    WatchError(String),
}

/// The config the ConfigMap declares.
struct Declared {
    text: String,
    generation: Option<u64>,
}

impl ClusterSource {
    fn source_name(&self) -> String {
        format!("configmap:{}/{}", self.namespace, self.name)
    }

    /// Watches and loads until the process ends.
    pub async fn run(self, state: AppState) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(watch_configmap(
            Api::namespaced(self.client.clone(), &self.namespace),
            self.name.clone(),
            tx.clone(),
        ));
        let mut secrets = SecretWatches::new(self.client.clone(), &self.namespace, tx);
        let mut declared: Option<Declared> = None;
        // What was last loaded (or rejected): the config text and the Secrets' versions.
        let mut loaded_fingerprint: Option<String> = None;
        let mut waiting_since: Option<Instant> = None;
        loop {
            let wake = waiting_since.map(|t| t + SECRET_SYNC_WAIT);
            let change = tokio::select! {
                c = rx.recv() => match c { Some(c) => Some(c), None => return },
                _ = sleep_until(wake) => None,
            };
            match change {
                Some(Change::ConfigMap(Some(cm))) => {
                    state.set_source_error(None);
                    match cm.data.as_ref().and_then(|d| d.get(CONFIG_KEY)) {
                        Some(text) => {
                            secrets.ensure(secret_names(text));
                            declared = Some(Declared {
                                text: text.clone(),
                                generation: cm
                                    .annotations()
                                    .get(GENERATION_ANNOTATION)
                                    .and_then(|g| g.parse().ok()),
                            });
                        }
                        None => {
                            state.reject(format!(
                                "{}: the ConfigMap has no {CONFIG_KEY} key",
                                self.source_name()
                            ));
                            continue;
                        }
                    }
                }
                Some(Change::ConfigMap(None)) => {
                    state.set_source_error(Some(format!(
                        "{} does not exist; serving the last good config",
                        self.source_name()
                    )));
                    continue;
                }
                Some(Change::WatchError(e)) => {
                    state.set_source_error(Some(e));
                    continue;
                }
                Some(Change::Secret) | None => {}
            }
            let Some(d) = &declared else { continue };
            if !secrets.all_synced() {
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() < SECRET_SYNC_WAIT {
                    continue;
                }
                tracing::warn!(
                    "some referenced Secrets could not be read in time; loading without them"
                );
            }
            waiting_since = None;
            let fingerprint = format!("{}/{}", hash_text(&d.text), secrets.fingerprint());
            if loaded_fingerprint.as_deref() == Some(fingerprint.as_str()) {
                continue;
            }
            loaded_fingerprint = Some(fingerprint);
            let generation = d
                .generation
                .unwrap_or_else(|| state.snapshot().map_or(1, |s| s.meta.generation + 1));
            match load(
                &d.text,
                generation,
                &self.source_name(),
                &self.defaults,
                &self.catalog,
                &secrets.lookup(),
            ) {
                Ok(loaded) => state.install(loaded),
                Err(e) => state.reject(format!(
                    "{} generation {generation}: {e}",
                    self.source_name()
                )),
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Feeds the loading loop from a watch on one ConfigMap, by name.
async fn watch_configmap(api: Api<ConfigMap>, name: String, tx: mpsc::UnboundedSender<Change>) {
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream =
        std::pin::pin!(watcher(api, cfg).backoff(modelgate_crds::backoff::WatchBackoff::default()));
    // Whether the current (re)list found the ConfigMap.
    let mut seen = false;
    while let Some(ev) = stream.next().await {
        let change = match ev {
            Ok(watcher::Event::Init) => {
                seen = false;
                continue;
            }
            Ok(watcher::Event::InitApply(cm)) => {
                seen = true;
                Change::ConfigMap(Some(Box::new(cm)))
            }
            Ok(watcher::Event::InitDone) if seen => continue,
            Ok(watcher::Event::InitDone) | Ok(watcher::Event::Delete(_)) => Change::ConfigMap(None),
            Ok(watcher::Event::Apply(cm)) => Change::ConfigMap(Some(Box::new(cm))),
            Err(e) => Change::WatchError(format!("watching ConfigMap {name}: {e}")),
        };
        if tx.send(change).is_err() {
            return;
        }
    }
}
