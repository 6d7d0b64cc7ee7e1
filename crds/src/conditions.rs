//! Status condition types and reasons, as constants so the operator, the tests and
//! `kubectl wait --for=condition=...` all spell them the same way.

/// Condition types.
pub mod types {
    /// The spec is valid on its own.
    pub const ACCEPTED: &str = "Accepted";
    /// Everything it refers to exists: the key Secret, the alias's target group.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// It is written into the router ConfigMap (the message names the generation).
    pub const PROGRAMMED: &str = "Programmed";
    /// Every live proxy replica serves a config at or past the one that carries it.
    pub const READY: &str = "Ready";
}

/// Condition reasons (PascalCase, as Kubernetes expects).
pub mod reasons {
    pub const ACCEPTED: &str = "Accepted";
    pub const INVALID: &str = "Invalid";
    pub const RESOLVED: &str = "Resolved";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const SECRET_KEY_NOT_FOUND: &str = "SecretKeyNotFound";
    pub const GROUP_NOT_FOUND: &str = "GroupNotFound";
    pub const SHADOWS_GROUP: &str = "ShadowsGroup";
    pub const DUPLICATE_ALIAS: &str = "DuplicateAlias";
    pub const PROGRAMMED: &str = "Programmed";
    pub const NOT_PROGRAMMED: &str = "NotProgrammed";
    pub const READY: &str = "Ready";
    pub const REPLICAS_BEHIND: &str = "ReplicasBehind";
    pub const NO_REPLICAS: &str = "NoReplicas";
}
