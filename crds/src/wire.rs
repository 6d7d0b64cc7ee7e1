//! Names the operator and the proxy agree on: the router ConfigMap's annotations and the
//! per-replica Leases through which each proxy says which config it serves.

/// ConfigMap annotation: the config's generation, which rises only when its content changes.
pub const GENERATION_ANNOTATION: &str = "modelgate.dev/config-generation";
/// ConfigMap annotation: SHA-256 (hex) of `config.yaml`.
pub const HASH_ANNOTATION: &str = "modelgate.dev/config-hash";
/// The ConfigMap key that holds the LiteLLM-format config.
pub const CONFIG_KEY: &str = "config.yaml";

/// Label on a proxy replica's Lease; its value is the name of the ConfigMap it serves.
pub const REPLICA_OF_LABEL: &str = "modelgate.dev/proxy-replica-of";
/// Lease annotation: the config generation the replica serves.
pub const SERVED_GENERATION_ANNOTATION: &str = "modelgate.dev/served-generation";
/// Lease annotation: the hash of the config the replica serves.
pub const SERVED_HASH_ANNOTATION: &str = "modelgate.dev/served-hash";
/// Lease annotation: why the replica rejected a newer config, if it did.
pub const CONFIG_ERROR_ANNOTATION: &str = "modelgate.dev/config-error";
/// Name prefix of the proxy replicas' Leases.
pub const REPLICA_LEASE_PREFIX: &str = "modelgate-proxy-";

/// `text` as a Kubernetes name: lower-case letters and digits, anything else a `-`, at most
/// `max` characters, no `-` at either end (possibly empty).
pub fn dns_safe(text: &str, max: usize) -> String {
    let mut name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(max);
    name.trim_matches('-').to_string()
}

/// A replica Lease name from any identity (a pod name, usually).
pub fn replica_lease_name(identity: &str) -> String {
    let name = dns_safe(identity, 253 - REPLICA_LEASE_PREFIX.len());
    format!("{REPLICA_LEASE_PREFIX}{name}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn lease_names_are_dns_safe() {
        assert_eq!(
            super::replica_lease_name("Proxy_0.example"),
            "modelgate-proxy-proxy-0-example"
        );
    }
}
