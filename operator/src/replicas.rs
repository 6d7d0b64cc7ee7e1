//! The proxy replicas serving a namespace's router ConfigMap, read from their Leases, and
//! the `Ready` verdict they give an object: ready when every live replica serves the
//! generation that carries it or a later one. Pure, so it is unit-tested without a cluster.

use k8s_openapi::{api::coordination::v1::Lease, jiff::Timestamp};
use kube::ResourceExt;
use modelgate_crds::{
    conditions::reasons,
    wire::{CONFIG_ERROR_ANNOTATION, REPLICA_OF_LABEL, SERVED_GENERATION_ANNOTATION},
};

/// One live replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    pub name: String,
    /// The generation it serves; `None` before its first config loads.
    pub generation: Option<i64>,
    /// Why it rejected a newer config, if it did.
    pub error: Option<String>,
}

/// The live replicas of one ConfigMap, and when the next of them expires.
#[derive(Debug, Default, Clone)]
pub struct Replicas {
    pub live: Vec<Replica>,
    /// When to look again: the next Lease expiry, or the end of settling.
    pub next_expiry: Option<Timestamp>,
    /// The Lease watch had a gap too recently to tell a dead replica from a missed renewal.
    pub settling: bool,
}

impl Replicas {
    /// Marks the verdict as settling while the Lease watch has run for less than the
    /// longest Lease duration (plus a second), and asks to be looked at again after.
    pub fn settle<'a>(
        &mut self,
        leases: impl IntoIterator<Item = &'a Lease>,
        namespace: &str,
        configmap: &str,
        watched_for: std::time::Duration,
    ) {
        let longest = leases
            .into_iter()
            .filter(|l| {
                l.metadata.namespace.as_deref() == Some(namespace)
                    && l.labels().get(REPLICA_OF_LABEL).map(String::as_str) == Some(configmap)
            })
            .filter_map(|l| l.spec.as_ref()?.lease_duration_seconds)
            .max();
        let Some(longest) = longest else { return };
        let settle = std::time::Duration::from_secs(u64::try_from(longest).unwrap_or(0) + 1);
        if let Some(left) = settle.checked_sub(watched_for)
            && let Ok(at) = Timestamp::now().checked_add(left)
        {
            self.settling = true;
            self.next_expiry = Some(self.next_expiry.map_or(at, |e| e.min(at)));
        }
    }
}

/// The highest generation any replica of `configmap` in `namespace` reports serving, expired
/// or not. A ConfigMap recreated after a deletion must start above it: numbering from 1 again
/// would let a replica still serving the old content count as serving the new.
pub fn highest_served<'a>(
    leases: impl IntoIterator<Item = &'a Lease>,
    namespace: &str,
    configmap: &str,
) -> i64 {
    leases
        .into_iter()
        .filter(|l| {
            l.metadata.namespace.as_deref() == Some(namespace)
                && l.labels().get(REPLICA_OF_LABEL).map(String::as_str) == Some(configmap)
        })
        .filter_map(|l| {
            l.annotations()
                .get(SERVED_GENERATION_ANNOTATION)?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// Replicas whose Lease for `configmap` in `namespace` has not expired at `now`.
pub fn live<'a>(
    leases: impl IntoIterator<Item = &'a Lease>,
    namespace: &str,
    configmap: &str,
    now: Timestamp,
) -> Replicas {
    let mut out = Replicas::default();
    for lease in leases {
        if lease.metadata.namespace.as_deref() != Some(namespace)
            || lease.labels().get(REPLICA_OF_LABEL).map(String::as_str) != Some(configmap)
        {
            continue;
        }
        let Some(spec) = &lease.spec else { continue };
        let (Some(renewed), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
            continue;
        };
        let Ok(expiry) = renewed
            .0
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(i64::from(
                secs,
            )))
        else {
            continue;
        };
        if expiry <= now {
            continue;
        }
        out.next_expiry = Some(out.next_expiry.map_or(expiry, |e| e.min(expiry)));
        let annotations = lease.annotations();
        out.live.push(Replica {
            name: spec
                .holder_identity
                .clone()
                .unwrap_or_else(|| lease.name_any()),
            generation: annotations
                .get(SERVED_GENERATION_ANNOTATION)
                .and_then(|g| g.parse().ok()),
            error: annotations.get(CONFIG_ERROR_ANNOTATION).cloned(),
        });
    }
    out.live.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `Ready` for an object carried in ConfigMap generation `carried_in`:
/// (status, reason, message).
pub fn ready(replicas: &Replicas, carried_in: i64) -> (&'static str, &'static str, String) {
    let total = replicas.live.len();
    if total == 0 {
        return (
            "Unknown",
            reasons::NO_REPLICAS,
            "no live proxy replica reports the config it serves".into(),
        );
    }
    let behind: Vec<&Replica> = replicas
        .live
        .iter()
        .filter(|r| r.generation.is_none_or(|g| g < carried_in))
        .collect();
    if behind.is_empty() {
        return (
            "True",
            reasons::READY,
            format!("served by {total}/{total} replicas (config generation {carried_in} or later)"),
        );
    }
    let detail: Vec<String> = behind
        .iter()
        .map(|r| {
            let serving = r
                .generation
                .map_or("no config yet".to_string(), |g| format!("serves {g}"));
            match &r.error {
                Some(e) => format!("{} {serving}, rejected a newer config: {e}", r.name),
                None => format!("{} {serving}", r.name),
            }
        })
        .collect();
    (
        "False",
        reasons::REPLICAS_BEHIND,
        format!(
            "{}/{total} replicas serve config generation {carried_in}; waiting for {}",
            total - behind.len(),
            detail.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{
        api::coordination::v1::LeaseSpec, apimachinery::pkg::apis::meta::v1::MicroTime,
    };

    fn lease(name: &str, cm: &str, generation: Option<i64>, renewed: Timestamp) -> Lease {
        let mut l = Lease::default();
        l.metadata.name = Some(name.into());
        l.metadata.namespace = Some("ns".into());
        l.metadata.labels = Some([(REPLICA_OF_LABEL.to_string(), cm.to_string())].into());
        if let Some(g) = generation {
            l.metadata.annotations =
                Some([(SERVED_GENERATION_ANNOTATION.to_string(), g.to_string())].into());
        }
        l.spec = Some(LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(10),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        });
        l
    }

    #[test]
    fn expired_and_foreign_leases_do_not_count() {
        let now = Timestamp::now();
        let old = now - k8s_openapi::jiff::SignedDuration::from_secs(11);
        let leases = [
            lease("a", "modelgate-router", Some(3), now),
            lease("b", "modelgate-router", Some(2), old),
            lease("c", "other", Some(1), now),
        ];
        let r = live(&leases, "ns", "modelgate-router", now);
        assert_eq!(r.live.len(), 1);
        assert_eq!(r.live[0].name, "a");
        assert!(r.next_expiry.is_some());
    }

    #[test]
    fn highest_served_counts_expired_leases_of_this_configmap_only() {
        let now = Timestamp::now();
        let old = now - k8s_openapi::jiff::SignedDuration::from_secs(60);
        let leases = [
            lease("a", "cm", Some(3), now),
            lease("b", "cm", Some(7), old),
            lease("c", "other", Some(9), now),
            lease("d", "cm", None, now),
        ];
        assert_eq!(highest_served(&leases, "ns", "cm"), 7);
        assert_eq!(highest_served(&leases, "ns", "none"), 0);
    }

    #[test]
    fn ready_needs_every_live_replica() {
        let now = Timestamp::now();
        let leases = [
            lease("a", "cm", Some(5), now),
            lease("b", "cm", Some(4), now),
        ];
        let r = live(&leases, "ns", "cm", now);
        assert_eq!(ready(&r, 4).0, "True");
        assert!(ready(&r, 4).2.contains("2/2"));
        let (status, reason, message) = ready(&r, 5);
        assert_eq!((status, reason), ("False", reasons::REPLICAS_BEHIND));
        assert!(
            message.contains("1/2") && message.contains("b serves 4"),
            "{message}"
        );
        assert_eq!(ready(&Replicas::default(), 1).0, "Unknown");
    }
}
