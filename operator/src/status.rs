//! Status conditions from verdicts, keeping `lastTransitionTime` unless a status flips,
//! and the comparison that keeps an unchanged status from being rewritten.

use crate::{
    render::{Check, Verdict},
    replicas::{self, Replicas},
};
use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use modelgate_crds::conditions::{reasons, types};

/// Where the object's spec was written, if it was.
#[derive(Debug, Clone)]
pub struct Programmed {
    pub configmap: String,
    /// The ConfigMap generation that first carried the object as it is now.
    pub generation: Option<i64>,
}

fn condition(type_: &str, check: &Check, ok_reason: &str, generation: Option<i64>) -> Condition {
    let (status, reason, message) = match check {
        Ok(msg) => ("True", ok_reason.to_string(), msg.clone()),
        Err((reason, msg)) => ("False", reason.to_string(), msg.clone()),
    };
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason,
        message,
        observed_generation: generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

/// The conditions an object should carry now.
pub fn desired(
    verdict: &Verdict,
    generation: Option<i64>,
    programmed: &Programmed,
    replicas: &Replicas,
) -> Vec<Condition> {
    let accepted = condition(
        types::ACCEPTED,
        &verdict.accepted,
        reasons::ACCEPTED,
        generation,
    );
    let resolved = condition(
        types::RESOLVED_REFS,
        &verdict.resolved,
        reasons::RESOLVED,
        generation,
    );
    let prog: Check = match (verdict.included, programmed.generation) {
        (true, Some(n)) => Ok(format!(
            "written into ConfigMap {} generation {n}",
            programmed.configmap
        )),
        (true, None) => Err((
            reasons::NOT_PROGRAMMED,
            "the ConfigMap is not written yet".into(),
        )),
        (false, _) => {
            let why = verdict
                .accepted
                .as_ref()
                .err()
                .or(verdict.resolved.as_ref().err())
                .map_or("", |e| e.1.as_str());
            Err((
                reasons::NOT_PROGRAMMED,
                format!("left out of the router config: {why}"),
            ))
        }
    };
    let programmed_cond = condition(types::PROGRAMMED, &prog, reasons::PROGRAMMED, generation);
    let (status, reason, message) = match (verdict.included, programmed.generation) {
        (true, Some(n)) => replicas::ready(replicas, n),
        _ => (
            "False",
            reasons::NOT_PROGRAMMED,
            "not in the router config, so no replica serves it".to_string(),
        ),
    };
    let ready = Condition {
        type_: types::READY.to_string(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(Timestamp::now()),
    };
    vec![accepted, resolved, programmed_cond, ready]
}

/// Keeps each previous `lastTransitionTime` where the status did not flip.
pub fn carry_transition_times(next: &mut [Condition], previous: &[Condition]) {
    for c in next.iter_mut() {
        if let Some(p) = previous
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status)
        {
            c.last_transition_time = p.last_transition_time.clone();
        }
    }
}

/// Whether two condition lists say the same thing (times aside).
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    let mut ka: Vec<_> = a.iter().map(key).collect();
    let mut kb: Vec<_> = b.iter().map(key).collect();
    ka.sort();
    kb.sort();
    ka == kb
}

/// Conditions whose status changed, as (type, new condition), for Events.
pub fn flips<'a>(next: &'a [Condition], previous: &[Condition]) -> Vec<&'a Condition> {
    next.iter()
        .filter(|c| c.type_ != types::READY)
        .filter(|c| {
            previous
                .iter()
                .find(|p| p.type_ == c.type_)
                .is_none_or(|p| p.status != c.status)
        })
        .collect()
}
