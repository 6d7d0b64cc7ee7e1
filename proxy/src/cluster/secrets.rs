//! Watches on exactly the Secrets the config references, one watch per Secret by name, so
//! the proxy needs no more than `get/list/watch` on those names. The cache they fill answers
//! `secret/<name>/<key>` references when a config loads.

use super::Change;
use crate::config::resolve::SecretLookup;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
};
use tokio::{sync::mpsc, task::JoinHandle};

/// One Secret as last seen.
#[derive(Default, Clone)]
struct Entry {
    /// Whether the first list finished, so absence means the Secret does not exist.
    synced: bool,
    resource_version: Option<String>,
    data: BTreeMap<String, String>,
}

type Cache = Arc<Mutex<HashMap<String, Entry>>>;

pub struct SecretWatches {
    api: Api<Secret>,
    tx: mpsc::UnboundedSender<Change>,
    cache: Cache,
    watches: HashMap<String, JoinHandle<()>>,
}

impl Drop for SecretWatches {
    fn drop(&mut self) {
        self.watches.values().for_each(JoinHandle::abort);
    }
}

impl SecretWatches {
    pub fn new(client: Client, namespace: &str, tx: mpsc::UnboundedSender<Change>) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            tx,
            cache: Cache::default(),
            watches: HashMap::new(),
        }
    }

    /// Watches exactly `names`: starts the missing watches, stops the unneeded ones.
    pub fn ensure(&mut self, names: BTreeSet<String>) {
        self.watches.retain(|name, task| {
            let keep = names.contains(name);
            if !keep {
                task.abort();
            }
            keep
        });
        lock(&self.cache).retain(|name, _| names.contains(name));
        for name in names {
            if self.watches.contains_key(&name) {
                continue;
            }
            lock(&self.cache).insert(name.clone(), Entry::default());
            let task = tokio::spawn(watch_one(
                self.api.clone(),
                name.clone(),
                self.cache.clone(),
                self.tx.clone(),
            ));
            self.watches.insert(name, task);
        }
    }

    pub fn all_synced(&self) -> bool {
        lock(&self.cache).values().all(|e| e.synced)
    }

    /// The watched Secrets' versions: a config must reload when this changes.
    pub fn fingerprint(&self) -> String {
        let cache = lock(&self.cache);
        let mut parts: Vec<String> = cache
            .iter()
            .map(|(n, e)| format!("{n}@{}", e.resource_version.as_deref().unwrap_or("-")))
            .collect();
        parts.sort();
        parts.join(",")
    }

    /// A consistent copy of the cache to resolve references from.
    pub fn lookup(&self) -> impl SecretLookup + use<> {
        Lookup(lock(&self.cache).clone())
    }
}

fn lock(cache: &Cache) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

struct Lookup(HashMap<String, Entry>);

impl SecretLookup for Lookup {
    fn secret(&self, name: &str, key: &str) -> Option<String> {
        self.0.get(name)?.data.get(key).cloned()
    }
}

fn decode(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| {
            let text = String::from_utf8(v.0.clone()).ok()?;
            // `kubectl create secret --from-file` keeps the file's trailing newline, which
            // no API key has and every upstream rejects.
            Some((k.clone(), text.trim_end_matches(['\r', '\n']).to_string()))
        })
        .collect()
}

async fn watch_one(
    api: Api<Secret>,
    name: String,
    cache: Cache,
    tx: mpsc::UnboundedSender<Change>,
) {
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream =
        std::pin::pin!(watcher(api, cfg).backoff(modelgate_crds::backoff::WatchBackoff::default()));
    // Whether the current (re)list found the Secret; absent after the list means deleted.
    let mut seen = false;
    while let Some(ev) = stream.next().await {
        {
            let mut cache = lock(&cache);
            let Some(entry) = cache.get_mut(&name) else {
                return;
            };
            match ev {
                Ok(watcher::Event::Init) => {
                    seen = false;
                    continue;
                }
                Ok(watcher::Event::InitApply(s)) => {
                    seen = true;
                    entry.resource_version = s.resource_version();
                    entry.data = decode(&s);
                    continue;
                }
                Ok(watcher::Event::Apply(s)) => {
                    entry.resource_version = s.resource_version();
                    entry.data = decode(&s);
                    entry.synced = true;
                }
                Ok(watcher::Event::InitDone) => {
                    if !seen {
                        entry.resource_version = None;
                        entry.data.clear();
                    }
                    entry.synced = true;
                }
                Ok(watcher::Event::Delete(_)) => {
                    entry.resource_version = None;
                    entry.data.clear();
                }
                Err(e) => {
                    drop(cache);
                    let _ = tx.send(Change::WatchError(format!("watching Secret {name}: {e}")));
                    continue;
                }
            }
        }
        if tx.send(Change::Secret).is_err() {
            return;
        }
    }
}
