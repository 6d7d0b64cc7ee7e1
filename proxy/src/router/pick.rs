//! Choosing the deployment for one attempt, LiteLLM's pipeline: drop cooled-down
//! deployments, run the pre-call checks (context window, region), drop those over their
//! per-minute limits, keep the lowest `order`, then apply the routing strategy.
//! The chosen deployment's request is counted against its rpm in the same step.

use super::{
    deployment::Deployment,
    live::{Live, minute_now},
    policy::{Policy, Strategy},
    select,
};
use rand::seq::IndexedRandom;
use std::{sync::Arc, time::Duration};

/// What a request brings to the choice.
pub struct Ask<'a> {
    pub stream: bool,
    /// Input tokens, when the checks or limits need them.
    pub input_tokens: Option<u64>,
    /// `allowed_model_region` from the request.
    pub region: Option<&'a str>,
}

/// Why no deployment could be chosen.
#[derive(Debug)]
pub enum NoPick {
    /// Every candidate is cooling down; the shortest has this long left.
    CoolingDown(Duration, Vec<String>),
    /// Every remaining candidate is at its rpm/tpm limit for this minute.
    OverLimit(Duration, Vec<String>),
    /// No candidate's context window fits the request.
    ContextWindow {
        max: u64,
        got: u64,
    },
    /// No candidate is in the allowed region.
    Region(String),
    Empty,
}

/// Chooses and counts one deployment.
pub fn pick(
    policy: &Policy,
    live: &Live,
    candidates: &[Arc<Deployment>],
    ask: &Ask<'_>,
) -> Result<Arc<Deployment>, NoPick> {
    if candidates.is_empty() {
        return Err(NoPick::Empty);
    }
    let mut cooling = Vec::new();
    let mut shortest: Option<Duration> = None;
    let mut healthy: Vec<&Arc<Deployment>> = Vec::with_capacity(candidates.len());
    for d in candidates {
        match live.cooldown(&d.id) {
            Some(c) => {
                let left = c.until.saturating_duration_since(std::time::Instant::now());
                shortest = Some(shortest.map_or(left, |s| s.min(left)));
                cooling.push(d.id.clone());
            }
            None => healthy.push(d),
        }
    }
    if healthy.is_empty() {
        return Err(NoPick::CoolingDown(shortest.unwrap_or_default(), cooling));
    }
    if policy.pre_call_checks {
        if let Some(got) = ask.input_tokens {
            let fits: Vec<_> = healthy
                .iter()
                .copied()
                .filter(|d| d.max_input_tokens().is_none_or(|m| got <= m))
                .collect();
            if fits.is_empty() {
                let max = healthy
                    .iter()
                    .filter_map(|d| d.max_input_tokens())
                    .max()
                    .unwrap_or(0);
                return Err(NoPick::ContextWindow { max, got });
            }
            healthy = fits;
        }
        if let Some(region) = ask.region {
            healthy.retain(|d| d.region.as_deref() == Some(region));
            if healthy.is_empty() {
                return Err(NoPick::Region(region.to_string()));
            }
        }
    }
    let mut pool: Vec<&Arc<Deployment>> = healthy.clone();
    let limits = policy.enforces_limits();
    let tokens = ask.input_tokens.unwrap_or(0);
    // Deployments over their limits are dropped before the `order` filter, so a full
    // preferred deployment gives way to the next order instead of failing the request.
    // Try the strategy's choice; one that filled up meanwhile is dropped and we choose again.
    loop {
        if limits {
            pool.retain(|d| {
                let u = live.usage(&d.id);
                !(d.rpm.is_some_and(|l| u.requests + 1 > l)
                    || d.tpm.is_some_and(|l| u.tokens + tokens > l))
            });
        }
        if pool.is_empty() {
            let (_, left) = minute_now();
            let names = healthy.iter().map(|d| d.id.clone()).collect();
            return Err(NoPick::OverLimit(left, names));
        }
        let chosen = choose(policy, live, &select::lowest_order(&pool), ask, tokens);
        if !limits || live.try_take(&chosen.id, chosen.rpm, chosen.tpm, tokens) {
            if !limits {
                live.count_request(&chosen.id);
            }
            return Ok(chosen.clone());
        }
        pool.retain(|d| d.id != chosen.id);
    }
}

fn choose<'a>(
    policy: &Policy,
    live: &Live,
    pool: &[&'a Arc<Deployment>],
    ask: &Ask<'_>,
    tokens: u64,
) -> &'a Arc<Deployment> {
    let mut rng = rand::rng();
    let first = pool[0];
    match policy.strategy {
        Strategy::SimpleShuffle => select::shuffle(pool, &mut rng).unwrap_or(first),
        Strategy::LeastBusy => {
            let min = pool
                .iter()
                .map(|d| live.in_flight(&d.id))
                .min()
                .unwrap_or(0);
            let least: Vec<_> = pool
                .iter()
                .copied()
                .filter(|d| live.in_flight(&d.id) == min)
                .collect();
            least.choose(&mut rng).copied().unwrap_or(first)
        }
        Strategy::UsageBased | Strategy::UsageBasedV2 => {
            // Lowest tokens used this minute (then requests), ties at random.
            let key = |d: &Arc<Deployment>| {
                let u = live.usage(&d.id);
                (u.tokens + tokens, u.requests)
            };
            let min = pool.iter().map(|d| key(d)).min().unwrap_or_default();
            let lowest: Vec<_> = pool.iter().copied().filter(|d| key(d) == min).collect();
            lowest.choose(&mut rng).copied().unwrap_or(first)
        }
        Strategy::LatencyBased => {
            // Unmeasured deployments score 0, so each gets tried; then the fastest, with
            // every deployment within `lowest_latency_buffer` of it picked at random.
            let scores: Vec<f64> = pool
                .iter()
                .map(|d| {
                    live.mean_latency(&d.id, ask.stream, policy.latency_ttl)
                        .unwrap_or(0.0)
                })
                .collect();
            let best = scores.iter().copied().fold(f64::INFINITY, f64::min);
            let limit = best * (1.0 + policy.latency_buffer);
            let close: Vec<_> = pool
                .iter()
                .zip(&scores)
                .filter(|(_, s)| **s <= limit)
                .map(|(d, _)| *d)
                .collect();
            close.choose(&mut rng).copied().unwrap_or(first)
        }
        Strategy::CostBased => {
            let cost = |d: &Arc<Deployment>| d.cost_per_token();
            let mut best = first;
            for d in pool {
                if cost(d) < cost(best) {
                    best = d;
                }
            }
            best
        }
    }
}
