//! Picking one deployment among a group's candidates: the lowest `order` present, then a
//! weighted random choice (simple-shuffle).

use super::deployment::Deployment;
use rand::Rng;
use std::sync::Arc;

/// Keeps the deployments with the lowest `order` present; without any `order`, all of them.
/// Deployments without an `order` lose to any that have one, as in LiteLLM.
/// Borrows the candidates as they are (no copy) in the common case of no `order` at all.
pub fn lowest_order<'p, 'a>(
    candidates: &'p [&'a Arc<Deployment>],
) -> std::borrow::Cow<'p, [&'a Arc<Deployment>]> {
    match candidates.iter().filter_map(|d| d.order).min() {
        Some(min) => candidates
            .iter()
            .copied()
            .filter(|d| d.order == Some(min))
            .collect(),
        None => std::borrow::Cow::Borrowed(candidates),
    }
}

/// The weight simple-shuffle gives a deployment. The first of `weight`, `rpm`, `tpm` that any
/// candidate sets is used for all of them (a deployment without it weighs 0); LiteLLM looks
/// only at the first deployment, which makes the choice depend on config order.
fn weights(candidates: &[&Arc<Deployment>]) -> Vec<f64> {
    let by_weight = candidates.iter().any(|d| d.weight.is_some());
    let by_rpm = candidates.iter().any(|d| d.rpm.is_some());
    let by_tpm = candidates.iter().any(|d| d.tpm.is_some());
    candidates
        .iter()
        .map(|d| {
            if by_weight {
                d.weight.unwrap_or(0.0)
            } else if by_rpm {
                d.rpm.unwrap_or(0) as f64
            } else if by_tpm {
                d.tpm.unwrap_or(0) as f64
            } else {
                1.0
            }
        })
        .map(|w| if w.is_finite() && w > 0.0 { w } else { 0.0 })
        .collect()
}

/// Weighted random choice; uniform when every weight is zero.
pub fn shuffle<'a, R: Rng + ?Sized>(
    candidates: &[&'a Arc<Deployment>],
    rng: &mut R,
) -> Option<&'a Arc<Deployment>> {
    match candidates.len() {
        0 => return None,
        1 => return Some(candidates[0]),
        _ => {}
    }
    let w = weights(candidates);
    let total: f64 = w.iter().sum();
    if total <= 0.0 {
        return Some(candidates[rng.random_range(0..candidates.len())]);
    }
    let mut point = rng.random_range(0.0..total);
    for (d, weight) in candidates.iter().zip(&w) {
        if point < *weight {
            return Some(d);
        }
        point -= weight;
    }
    candidates.last().copied()
}
