//! The router core: an immutable [`Snapshot`] of one validated config. Requests resolve
//! their model against it, the listings are rendered from it, and a reload swaps in a new one.

pub mod cooldown;
pub mod deployment;
pub mod failure;
pub mod live;
pub mod pattern;
pub mod pick;
pub mod policy;
pub mod select;
pub mod shared;
pub mod tokens;

use crate::{catalog::Catalog, config::Settings, listing::Listing};
use deployment::Deployment;
use modelgate_crds::config::Config;
use pattern::Pattern;
use std::{collections::HashMap, sync::Arc};

/// The deployments of one model group.
pub type Group = Arc<[Arc<Deployment>]>;

/// Which config a snapshot came from, as readiness and the served-generation report say it.
#[derive(Debug, Clone, Default)]
pub struct ConfigMeta {
    /// Rises with every config that was served; from the ConfigMap in a cluster.
    pub generation: u64,
    /// SHA-256 of the config text, hex.
    pub hash: String,
    /// Where the config came from (`file:/etc/config.yaml`, `configmap:ns/name`).
    pub source: String,
}

/// A model group alias.
#[derive(Debug, Clone)]
pub struct Alias {
    pub name: String,
    pub group: String,
    pub hidden: bool,
}

/// What a requested model name resolved to.
#[derive(Debug, Clone)]
pub struct Route {
    /// The name the client asked for; responses and `x-litellm-model-group` carry it.
    pub requested: String,
    pub candidates: Group,
    /// Segments captured by a wildcard group, substituted into each deployment's model.
    pub captures: Option<Arc<[String]>>,
}

#[derive(Debug)]
pub struct Snapshot {
    pub meta: ConfigMeta,
    pub settings: Settings,
    pub deployments: Vec<Arc<Deployment>>,
    /// Non-wildcard group names in config order.
    pub group_names: Vec<String>,
    groups: HashMap<String, Group>,
    pub aliases: Vec<Alias>,
    alias_index: HashMap<String, usize>,
    by_id: HashMap<String, Arc<Deployment>>,
    by_model: HashMap<String, Group>,
    /// Most specific first.
    pub wildcards: Vec<(Pattern, Group)>,
    model_alias_map: HashMap<String, String>,
    pub listing: Listing,
}

impl Snapshot {
    /// Builds the router from a validated config (ids set, env resolved).
    pub fn build(config: &Config, settings: Settings, meta: ConfigMeta, catalog: &Catalog) -> Self {
        let deployments: Vec<Arc<Deployment>> = config
            .model_list
            .iter()
            .map(|e| Arc::new(Deployment::build(e, catalog)))
            .collect();

        let mut group_names = Vec::new();
        let mut grouped: HashMap<String, Vec<Arc<Deployment>>> = HashMap::new();
        let mut by_model: HashMap<String, Vec<Arc<Deployment>>> = HashMap::new();
        let mut by_id = HashMap::new();
        for d in &deployments {
            let members = grouped.entry(d.model_name.clone()).or_default();
            if members.is_empty() && !d.is_wildcard {
                group_names.push(d.model_name.clone());
            }
            members.push(d.clone());
            by_model.entry(d.model.clone()).or_default().push(d.clone());
            by_id.insert(d.id.clone(), d.clone());
        }
        let mut wildcards: Vec<(Pattern, Group)> = Vec::new();
        let mut groups = HashMap::new();
        for (name, members) in grouped {
            if name.contains('*') {
                wildcards.push((Pattern::new(&name), members.into()));
            } else {
                groups.insert(name, Group::from(members));
            }
        }
        wildcards.sort_by_key(|w| std::cmp::Reverse(w.0.specificity()));

        let aliases: Vec<Alias> = config
            .router_settings
            .model_group_alias
            .iter()
            .map(|(name, target)| Alias {
                name: name.clone(),
                group: target.group().to_string(),
                hidden: target.hidden(),
            })
            .collect();
        let alias_index = aliases
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.clone(), i))
            .collect();
        let model_alias_map = config
            .litellm_settings
            .get("model_alias_map")
            .and_then(|v| v.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();

        let mut snap = Self {
            meta,
            settings,
            deployments,
            group_names,
            groups,
            aliases,
            alias_index,
            by_id,
            by_model: by_model.into_iter().map(|(k, v)| (k, v.into())).collect(),
            wildcards,
            model_alias_map,
            listing: Listing::default(),
        };
        snap.listing = Listing::build(&snap, catalog);
        snap
    }

    /// The deployments of a group, by exact name.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    pub fn alias(&self, name: &str) -> Option<&Alias> {
        self.alias_index.get(name).map(|&i| &self.aliases[i])
    }

    pub fn deployment(&self, id: &str) -> Option<&Arc<Deployment>> {
        self.by_id.get(id)
    }

    /// Resolves a requested model as LiteLLM does: group, deployment id, alias (hidden ones
    /// too), wildcard group, then an exact `litellm_params.model`.
    pub fn resolve(&self, requested: &str) -> Option<Route> {
        let name = self
            .model_alias_map
            .get(requested)
            .map_or(requested, String::as_str);
        let route = |candidates: Group, captures| Route {
            requested: requested.to_string(),
            candidates,
            captures,
        };
        if let Some(g) = self.groups.get(name) {
            return Some(route(g.clone(), None));
        }
        if let Some(d) = self.by_id.get(name) {
            return Some(route(Group::from(vec![d.clone()]), None));
        }
        if let Some(alias) = self.alias(name)
            && let Some(g) = self.groups.get(&alias.group)
        {
            return Some(route(g.clone(), None));
        }
        for (pattern, group) in &self.wildcards {
            if let Some(caps) = pattern.captures(name) {
                return Some(route(group.clone(), Some(caps.into())));
            }
        }
        self.by_model.get(name).map(|g| route(g.clone(), None))
    }
}
