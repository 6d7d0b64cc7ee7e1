//! Fallbacks to other model groups, as LiteLLM's `run_async_fallback`: once a group's
//! retries are spent, the groups its error's list names (context-window, content-policy or
//! generic) are tried in order, each with its own retries and, when it fails too, its own
//! fallbacks, recursively. `max_fallbacks` bounds the depth; a group already tried in this
//! request is skipped, so `A → B → A` ends instead of looping.

use super::Ctx;
use crate::{
    error::ApiError,
    metrics::RouteLabels,
    router::{
        failure::{ErrorClass, Failure},
        policy,
    },
};
use axum::response::Response;
use futures::future::BoxFuture;
use std::collections::HashSet;

/// A response from a fallback group, with the counts its headers report.
pub(super) struct Served {
    pub resp: Response,
    /// Retries within the group that answered.
    pub retries: u32,
    /// Its fallback depth, `x-litellm-attempted-fallbacks`.
    pub depth: u32,
}

/// What one request's fallbacks have seen so far, across every level of the chain.
pub(super) struct Chain {
    /// Groups already tried, starting with the requested one: each is tried at most once,
    /// which bounds the work and breaks cycles.
    tried: HashSet<String>,
    /// The deepest fallback attempted, reported when every group fails.
    pub deepest: u32,
}

impl Chain {
    pub fn new(requested: &str) -> Self {
        Self {
            tried: HashSet::from([requested.to_string()]),
            deepest: 0,
        }
    }
}

impl Ctx<'_> {
    /// Falls back from `group`, which failed with `failure` at fallback depth `depth`.
    /// When nothing serves, the error is `failure`'s own (so the client sees the status of
    /// the group it asked for) with LiteLLM's suffixes naming the fallbacks and the last
    /// fallback error. `fit_context` skips candidates whose window is too small, before
    /// sending.
    ///
    /// Boxed because it recurses: each fallback group's failure is handled by the same rules.
    pub(super) fn fall_back<'a>(
        &'a self,
        group: &'a str,
        failure: Failure,
        depth: u32,
        fit_context: bool,
        chain: &'a mut Chain,
    ) -> BoxFuture<'a, Result<Served, ApiError>> {
        Box::pin(async move {
            let max = self.policy.max_fallbacks;
            let (list, for_context) = self.fallback_groups(group, failure.class);
            if list.is_empty() || depth >= max {
                return Err(failure.error);
            }
            // The request does not shrink: once a window proved too small, every later
            // group in the chain skips the deployments known to be smaller.
            let fit_context = fit_context || for_context;
            // As in LiteLLM, each group tried in this list takes the next depth, so a later
            // sibling reports (and is bounded by) the siblings tried before it.
            let mut depth = depth;
            let mut last: Option<String> = None;
            for next in &list {
                // LiteLLM checks the depth only on entering a group's fallbacks; checking
                // each try keeps every reported depth within max_fallbacks.
                if depth >= max {
                    break;
                }
                if !chain.tried.insert(next.clone()) {
                    continue;
                }
                depth += 1;
                chain.deepest = chain.deepest.max(depth);
                self.state
                    .metrics
                    .fallbacks
                    .get_or_create(&RouteLabels {
                        route: "router",
                        model_group: group.to_string(),
                    })
                    .inc();
                let Some(route) = self.snap.resolve(next) else {
                    last = Some(format!("model group {next} does not exist"));
                    continue;
                };
                let outcome = self.with_retries(&route, false, fit_context).await;
                let failed = match outcome.result {
                    Ok(resp) => {
                        return Ok(Served {
                            resp,
                            retries: outcome.retries,
                            depth,
                        });
                    }
                    Err(f) => f,
                };
                match self
                    .fall_back(next, failed, depth, fit_context, chain)
                    .await
                {
                    Ok(served) => return Ok(served),
                    Err(e) => last = Some(e.message),
                }
            }
            let mut e = failure.error;
            e.message = format!(
                "{}. Received Model Group={group}\nAvailable Model Group Fallbacks={list:?}{}",
                e.message,
                last.map(|l| format!("\nError doing the fallback: {l}"))
                    .unwrap_or_default()
            );
            Err(e)
        })
    }

    /// The groups to fall back to after an error of `class` in `group`, and whether they
    /// must fit the request's context window (checked before sending, not by failing).
    fn fallback_groups(&self, group: &str, class: ErrorClass) -> (Vec<String>, bool) {
        let pick = |request: &Option<Vec<(String, Vec<String>)>>,
                    config: &[(String, Vec<String>)]| {
            let list = request.as_deref().unwrap_or(config);
            policy::fallbacks_for(list, group).map(<[String]>::to_vec)
        };
        match class {
            ErrorClass::ContextWindow => {
                if let Some(l) = pick(
                    &self.opts.context_window_fallbacks,
                    &self.policy.context_window_fallbacks,
                ) {
                    return (l, true);
                }
            }
            ErrorClass::ContentPolicy => {
                if let Some(l) = pick(
                    &self.opts.content_policy_fallbacks,
                    &self.policy.content_policy_fallbacks,
                ) {
                    return (l, false);
                }
            }
            _ => {}
        }
        let generic = match &self.opts.fallbacks {
            Some(client_side) => client_side.clone(),
            None => policy::fallbacks_for(&self.policy.fallbacks, group)
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
        };
        (generic, class == ErrorClass::ContextWindow)
    }
}
