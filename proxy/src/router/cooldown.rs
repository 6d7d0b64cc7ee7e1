//! Deciding whether a failed deployment cools down, and for how long (LiteLLM's rules,
//! spec 3.5). A cooled-down deployment is skipped by every request until its time is up.

use super::{deployment::Deployment, failure::Failure, live::Live, policy::Policy};
use std::time::Duration;

/// Calls in one minute after which a deployment failing every call cools down even alone.
const ALL_FAILING_MIN_CALLS: u64 = 1000;

/// Records the failure and starts a cooldown when the rules say so; returns its length.
pub fn on_failure(
    policy: &Policy,
    live: &Live,
    d: &Deployment,
    group_size: usize,
    f: &Failure,
) -> Option<Duration> {
    let window = policy.cooldown_time.max(Duration::from_secs(1));
    let (fails, calls, window_fails) = live.record_failure(&d.id, window);
    if policy.disable_cooldowns || d.is_wildcard || !f.class.qualifies_for_cooldown() {
        return None;
    }
    // The deployment's own setting, then the upstream's Retry-After, then the router's.
    let duration = d
        .cooldown_time
        .or(f.retry_after)
        .unwrap_or(policy.cooldown_time);
    if duration.is_zero() {
        return None;
    }
    let cool = if policy.counts_fails() {
        // v1: more failures than allowed within the window (a policy value of 0 means unset).
        let allowed = policy
            .allowed_fails_policy
            .as_ref()
            .and_then(|p| p.get(f.class))
            .filter(|n| *n > 0)
            .unwrap_or(policy.allowed_fails);
        window_fails > allowed
    } else {
        // v2: a group with somewhere else to go cools on a 429 or a >50% failure rate; an
        // error that is not transient (401, 404) cools even a lone deployment; a lone
        // deployment failing every one of many calls cools too.
        let multi = group_size > 1;
        (multi && (f.class == super::failure::ErrorClass::RateLimit || fails * 2 > calls))
            || !f.class.is_transient()
            || (fails == calls && calls >= ALL_FAILING_MIN_CALLS)
    };
    if !cool {
        return None;
    }
    let reason = f.error.message.chars().take(300).collect::<String>();
    live.start_cooldown(&d.id, duration, reason, f.error.status.as_u16());
    tracing::warn!(deployment = %d.id, cooldown_s = duration.as_secs_f64(), class = ?f.class, "deployment cooling down");
    Some(duration)
}
