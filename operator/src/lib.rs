//! modelgate's operator: renders each namespace's ModelDeployments and ModelGroupAliases
//! into one router ConfigMap the proxies watch, and tells the truth in their status.
//!
//! The pipeline per namespace: fetch (from watch caches) → [`render::plan`] (pure) →
//! apply the ConfigMap (server-side apply, only when its content changes) → status.

pub mod admin;
pub mod controller;
pub mod leader;
pub mod metrics;
pub mod proxy_access;
pub mod reconcile;
pub mod render;
pub mod replicas;
pub mod status;

/// The field manager for every server-side apply this operator makes.
pub const MANAGER: &str = "modelgate-operator";
pub use modelgate_crds::wire::{GENERATION_ANNOTATION, HASH_ANNOTATION};
/// The label that marks ConfigMaps this operator owns.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "modelgate-operator");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("serialising: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
