//! One inference request from body to response: parse, resolve the model, then LiteLLM's
//! control flow — retries within the group (each re-selecting a deployment), then
//! fallbacks to other groups (context-window, content-policy or generic), each fallback
//! group with its own retries and its own fallbacks, bounded by `max_fallbacks` (in
//! [`fallback`]). The single call is in [`crate::attempt`]; the choice of deployment in
//! [`crate::router::pick`].

use crate::{
    attempt::{self, Call},
    error::ApiError,
    metrics::RouteLabels,
    router::{
        Route, Snapshot, cooldown,
        deployment::{Deployment, Endpoint},
        failure::{ErrorClass, Failure},
        pick::{self, Ask, NoPick},
        policy::{self, Policy},
        shared::{OnOutage, Take},
        tokens,
    },
    state::AppState,
};
use axum::{
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use fallback::Chain;
use serde_json::{Map, Value};
use std::{sync::Arc, time::Duration, time::Instant};

mod fallback;

/// An inference call as the HTTP layer hands it over.
pub struct Inference {
    /// The route family for messages and metrics (`/chat/completions`, ...).
    pub route: &'static str,
    pub endpoint: Endpoint,
    /// The model from the path (`/openai/deployments/{model}/...`), which wins over the body's.
    pub path_model: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub async fn handle(state: AppState, snap: Arc<Snapshot>, call: Inference) -> Response {
    let started = Instant::now();
    let (group, result) = run(&state, &snap, &call).await;
    let resp = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state.metrics.observe_request(
        call.route,
        &group,
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

/// What the request body asks of the router (and the test hooks it sets).
struct Options {
    num_retries: Option<u32>,
    disable_fallbacks: bool,
    /// A client-side list: groups tried in order, instead of the configured fallbacks.
    fallbacks: Option<Vec<String>>,
    context_window_fallbacks: Option<Vec<(String, Vec<String>)>>,
    content_policy_fallbacks: Option<Vec<(String, Vec<String>)>>,
    /// `mock_testing_*`: the error the first attempt fails with, without calling upstream.
    mock_error: Option<(ErrorClass, bool)>,
    region: Option<String>,
}

impl Options {
    fn from_body(body: &Map<String, Value>) -> Self {
        let flag = |k: &str| body.get(k).and_then(Value::as_bool) == Some(true);
        // (class, skips retries)
        let mock_error = if flag("mock_testing_fallbacks") {
            Some((ErrorClass::InternalServer, true))
        } else if flag("mock_testing_context_fallbacks") {
            Some((ErrorClass::ContextWindow, true))
        } else if flag("mock_testing_content_policy_fallbacks") {
            Some((ErrorClass::ContentPolicy, true))
        } else if flag("mock_testing_rate_limit_error") {
            Some((ErrorClass::RateLimit, false))
        } else {
            None
        };
        let list = |k: &str| {
            policy::fallback_list(body.get(k), k)
                .ok()
                .filter(|l| !l.is_empty())
        };
        Self {
            num_retries: body
                .get("num_retries")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            disable_fallbacks: flag("disable_fallbacks"),
            fallbacks: body
                .get("fallbacks")
                .and_then(Value::as_array)
                .and_then(|a| {
                    let groups: Vec<String> = a
                        .iter()
                        .filter_map(|g| g.as_str().map(String::from))
                        .collect();
                    (!groups.is_empty()).then_some(groups)
                }),
            context_window_fallbacks: list("context_window_fallbacks"),
            content_policy_fallbacks: list("content_policy_fallbacks"),
            mock_error,
            region: body
                .get("allowed_model_region")
                .and_then(Value::as_str)
                .map(String::from),
        }
    }
}

/// Returns the metrics label for the model group with the outcome.
async fn run(
    state: &AppState,
    snap: &Snapshot,
    call: &Inference,
) -> (String, Result<Response, ApiError>) {
    let unknown = "unknown".to_string();
    let body: Map<String, Value> = match serde_json::from_slice(&call.body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            let e = ApiError::bad_request("Invalid JSON payload: the body must be a JSON object")
                .with_param("request_body");
            return (unknown, Err(e));
        }
        Err(e) => {
            let e = ApiError::bad_request(format!("Invalid JSON payload: {e}"))
                .with_param("request_body");
            return (unknown, Err(e));
        }
    };
    let requested = call
        .path_model
        .clone()
        .or_else(|| body.get("model").and_then(Value::as_str).map(String::from))
        .filter(|m| !m.is_empty());
    let Some(requested) = requested else {
        return (unknown, Err(ApiError::unknown_model(call.route, None)));
    };
    let Some(route) = snap.resolve(&requested) else {
        return (
            unknown,
            Err(ApiError::unknown_model(call.route, Some(&requested))),
        );
    };
    let group = route.requested.clone();
    let stream = call.endpoint != Endpoint::Embeddings
        && body.get("stream").and_then(Value::as_bool) == Some(true);
    let ctx = Ctx {
        state,
        snap,
        policy: &snap.settings.policy,
        call: Call {
            endpoint: call.endpoint,
            headers: &call.headers,
            body: &body,
            stream,
        },
        opts: Options::from_body(&body),
        tokens: std::sync::OnceLock::new(),
    };
    (group, ctx.serve(route).await)
}

/// One request's journey through groups and deployments.
struct Ctx<'a> {
    state: &'a AppState,
    snap: &'a Snapshot,
    policy: &'a Policy,
    call: Call<'a>,
    opts: Options,
    tokens: std::sync::OnceLock<u64>,
}

/// How a group's attempts ended.
struct GroupOutcome {
    result: Result<Response, Failure>,
    retries: u32,
}

impl Ctx<'_> {
    async fn serve(&self, route: Route) -> Result<Response, ApiError> {
        let first = self.with_retries(&route, true, false).await;
        let original = match first.result {
            Ok(resp) => return Ok(with_counts(resp, first.retries, 0)),
            Err(f) => f,
        };
        if self.opts.disable_fallbacks {
            return Err(counted(original.error, first.retries, 0));
        }
        let mut chain = Chain::new(&route.requested);
        match self
            .fall_back(&route.requested, original, 0, false, &mut chain)
            .await
        {
            Ok(s) => Ok(with_counts(s.resp, s.retries, s.depth)),
            Err(e) => Err(counted(e, first.retries, chain.deepest)),
        }
    }

    fn input_tokens(&self, route: &Route) -> u64 {
        *self.tokens.get_or_init(|| {
            let model = route.candidates.first().map_or("", |d| d.model.as_str());
            tokens::count(model, self.call.body)
        })
    }

    /// Tries a group until it succeeds or its retries are spent; returns the first error.
    async fn with_retries(
        &self,
        route: &Route,
        first_group: bool,
        fit_context: bool,
    ) -> GroupOutcome {
        let candidates = &route.candidates;
        let needs_tokens = fit_context
            || self.policy.pre_call_checks
            || (self.policy.enforces_limits() && candidates.iter().any(|d| d.tpm.is_some()));
        let ask = Ask {
            stream: self.call.stream,
            input_tokens: needs_tokens.then(|| self.input_tokens(route)),
            region: self.opts.region.as_deref(),
        };
        let mut first: Option<Failure> = None;
        let mut retries = 0u32;
        let mut budget: Option<u32> = None;
        loop {
            let mock = self.opts.mock_error.filter(|_| first_group && retries == 0);
            let (d, result) = match mock {
                // A test hook fails before a deployment is chosen (as in LiteLLM), so test
                // traffic neither counts against a deployment's limits nor cools one down.
                Some((class, _)) => (None, Err(mock_failure(class, &route.requested))),
                None => {
                    let d = match self.choose(route, &ask, fit_context).await {
                        Ok(d) => d,
                        Err(no) => {
                            let f = first.unwrap_or(no);
                            return GroupOutcome {
                                result: Err(f),
                                retries,
                            };
                        }
                    };
                    let timeout = effective_timeout(
                        self.snap,
                        &d,
                        self.call.headers,
                        self.call.body,
                        self.call.stream,
                    );
                    let result = attempt::call_deployment(
                        self.state, self.snap, &self.call, route, &d, timeout,
                    )
                    .await;
                    (Some(d), result)
                }
            };
            let f = match result {
                Ok(mut resp) => {
                    self.rate_limit_headers(route, &mut resp);
                    if retries > 0 {
                        let max = budget.unwrap_or(0).to_string();
                        if let Ok(v) = HeaderValue::from_str(&max) {
                            resp.headers_mut().insert("x-litellm-max-retries", v);
                        }
                    }
                    return GroupOutcome {
                        result: Ok(resp),
                        retries,
                    };
                }
                Err(f) => f,
            };
            if let Some(d) = &d
                && let Some(duration) =
                    cooldown::on_failure(self.policy, &self.state.live, d, candidates.len(), &f)
            {
                if let Some(store) = self.state.shared_store() {
                    store.publish_cooldown(
                        &d.id,
                        duration,
                        f.error.status.as_u16(),
                        &f.error.message,
                    );
                }
                self.state.metrics.series(d).cooldowns.inc();
            }
            let skip_retries = mock.is_some_and(|(_, skip)| skip);
            let max = *budget.get_or_insert_with(|| {
                let default = self
                    .opts
                    .num_retries
                    .or(d.as_ref().and_then(|d| d.num_retries))
                    .unwrap_or(self.policy.num_retries);
                self.policy.retries_for(&route.requested, f.class, default)
            });
            let healthy = candidates
                .iter()
                .filter(|c| self.state.live.cooldown(&c.id).is_none())
                .count();
            let give_up =
                skip_retries || retries >= max || !self.retryable(&f, candidates.len(), healthy);
            let pause = self.retry_pause(&f, first.as_ref(), candidates.len(), healthy, retries);
            // The first error is the one the client sees if every retry fails too.
            let first_err = first.take().unwrap_or(f);
            if give_up {
                return GroupOutcome {
                    result: Err(first_err),
                    retries,
                };
            }
            first = Some(first_err);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            retries += 1;
            self.state
                .metrics
                .retries
                .get_or_create(&RouteLabels {
                    route: "router",
                    model_group: route.requested.clone(),
                })
                .inc();
        }
    }

    /// Picks a deployment and, where limits are enforced and Redis is configured, counts it
    /// for every replica; one that is full elsewhere is dropped and another picked.
    async fn choose(
        &self,
        route: &Route,
        ask: &Ask<'_>,
        fit_context: bool,
    ) -> Result<Arc<Deployment>, Failure> {
        let mut policy = std::borrow::Cow::Borrowed(self.policy);
        if fit_context && !self.policy.pre_call_checks {
            // Context-window fallbacks skip a too-small model before calling it.
            policy.to_mut().pre_call_checks = true;
        }
        let shared = self
            .state
            .shared_store()
            .filter(|_| policy.enforces_limits());
        loop {
            let d = pick::pick(&policy, &self.state.live, &route.candidates, ask)
                .map_err(|no| no_pick_failure(&route.requested, no, policy.pre_call_checks))?;
            let Some(store) = &shared else { return Ok(d) };
            if d.rpm.is_none() && d.tpm.is_none() {
                return Ok(d);
            }
            let tokens = ask.input_tokens.unwrap_or(0);
            match store
                .take(&self.state.live, &d.id, d.rpm, d.tpm, tokens)
                .await
            {
                Take::Admitted => return Ok(d),
                // The mirror now holds the shared counts, so the next pick skips it.
                Take::OverLimit => continue,
                Take::Unavailable if store.target.on_outage == OnOutage::Open => return Ok(d),
                Take::Unavailable => {
                    return Err(Failure::new(
                        ErrorClass::RateLimit,
                        ApiError::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            "throttling_error",
                            "The shared rate limiter (redis) is unavailable and redis_failure_mode is closed",
                        )
                        .with_header("retry-after", "1"),
                    ));
                }
            }
        }
    }

    /// LiteLLM's `should_retry_this_error`, plus: a bad request is never retried, since it
    /// fails the same way on every deployment.
    fn retryable(&self, f: &Failure, group_size: usize, healthy: usize) -> bool {
        match f.class {
            ErrorClass::NotFound | ErrorClass::BadRequest => false,
            ErrorClass::ContextWindow => {
                self.policy.context_window_fallbacks.is_empty()
                    && self.opts.context_window_fallbacks.is_none()
                    && healthy > 0
            }
            ErrorClass::ContentPolicy => {
                self.policy.content_policy_fallbacks.is_empty()
                    && self.opts.content_policy_fallbacks.is_none()
                    && healthy > 0
            }
            ErrorClass::Authentication => group_size > 1 && healthy > 0,
            ErrorClass::RateLimit if healthy == 0 && !self.policy.fallbacks.is_empty() => false,
            _ => healthy > 0,
        }
    }

    /// No pause when another healthy deployment exists; else the first error's Retry-After
    /// (up to 60 s), else capped exponential backoff with jitter, never below `retry_after`.
    fn retry_pause(
        &self,
        f: &Failure,
        first: Option<&Failure>,
        group_size: usize,
        healthy: usize,
        attempt: u32,
    ) -> Duration {
        if group_size > 1 && healthy >= 1 {
            return Duration::ZERO;
        }
        let retry_after = first
            .unwrap_or(f)
            .retry_after
            .filter(|d| *d <= Duration::from_secs(60));
        let pause = retry_after.unwrap_or_else(|| {
            let base = (0.5 * 2f64.powi(i32::try_from(attempt).unwrap_or(16))).min(8.0);
            Duration::from_secs_f64(base * (1.0 - 0.25 * rand::random::<f64>()))
        });
        pause.max(self.policy.retry_after)
    }

    /// `x-ratelimit-*` for the group when its deployments set limits and the upstream did
    /// not send its own: the group's limits summed, minus this minute's usage.
    fn rate_limit_headers(&self, route: &Route, resp: &mut Response) {
        if resp
            .headers()
            .contains_key("x-ratelimit-remaining-requests")
        {
            return;
        }
        let (mut rpm, mut tpm, mut used_r, mut used_t) = (None::<u64>, None::<u64>, 0, 0);
        for d in route.candidates.iter() {
            let u = self.state.live.usage(&d.id);
            if let Some(l) = d.rpm {
                *rpm.get_or_insert(0) += l;
                used_r += u.requests;
            }
            if let Some(l) = d.tpm {
                *tpm.get_or_insert(0) += l;
                used_t += u.tokens;
            }
        }
        let h = resp.headers_mut();
        let mut put = |name: &'static str, v: u64| {
            h.insert(name, HeaderValue::from(v));
        };
        if let Some(l) = rpm {
            put("x-ratelimit-limit-requests", l);
            put("x-ratelimit-remaining-requests", l.saturating_sub(used_r));
        }
        if let Some(l) = tpm {
            put("x-ratelimit-limit-tokens", l);
            put("x-ratelimit-remaining-tokens", l.saturating_sub(used_t));
        }
    }
}

/// The error a `mock_testing_*` key raises; no deployment is involved.
fn mock_failure(class: ErrorClass, group: &str) -> Failure {
    let (status, kind, name) = match class {
        ErrorClass::ContextWindow => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "ContextWindowExceededError",
        ),
        ErrorClass::ContentPolicy => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "ContentPolicyViolationError",
        ),
        ErrorClass::RateLimit => (
            StatusCode::TOO_MANY_REQUESTS,
            "throttling_error",
            "RateLimitError",
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "InternalServerError",
        ),
    };
    Failure::new(
        class,
        ApiError::new(
            status,
            kind,
            format!("litellm.{name}: This is a mock exception for model={group} (mock_testing)"),
        ),
    )
}

fn no_pick_failure(group: &str, no: NoPick, pre_call_checks: bool) -> Failure {
    let rate_limited = |left: Duration, why: String| {
        let secs = left.as_secs_f64().ceil().max(1.0) as u64;
        Failure {
            class: ErrorClass::RateLimit,
            error: ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttling_error",
                format!("No deployments available for selected model, Try again in {secs} seconds. Passed model={group}. pre-call-checks={pre_call_checks}, {why}"),
            )
            .with_header("retry-after", &secs.to_string()),
            retry_after: Some(left),
            deployment: None,
        }
    };
    match no {
        NoPick::CoolingDown(left, ids) => rate_limited(left, format!("cooldown_list={ids:?}")),
        NoPick::OverLimit(left, ids) => rate_limited(
            left,
            format!("every deployment is at its rpm/tpm limit for this minute: {ids:?}"),
        ),
        NoPick::Region(r) => rate_limited(
            Duration::from_secs(1),
            format!("no deployment in allowed_model_region={r}"),
        ),
        NoPick::ContextWindow { max, got } => Failure::new(
            ErrorClass::ContextWindow,
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!(
                    "litellm.ContextWindowExceededError: Context Window exceeded for given call. No models have context window large enough for this call. Model={group}, Max Input Tokens={max}, Got={got}"
                ),
            ),
        ),
        NoPick::Empty => rate_limited(Duration::from_secs(1), "no deployments".into()),
    }
}

fn with_counts(mut resp: Response, retries: u32, fallbacks: u32) -> Response {
    let h = resp.headers_mut();
    h.insert("x-litellm-attempted-retries", HeaderValue::from(retries));
    h.insert(
        "x-litellm-attempted-fallbacks",
        HeaderValue::from(fallbacks),
    );
    resp
}

fn counted(e: ApiError, retries: u32, fallbacks: u32) -> ApiError {
    e.with_header("x-litellm-attempted-retries", &retries.to_string())
        .with_header("x-litellm-attempted-fallbacks", &fallbacks.to_string())
}

/// The effective timeout, LiteLLM's precedence: header or request > deployment > router.
fn effective_timeout(
    snap: &Snapshot,
    d: &Deployment,
    headers: &HeaderMap,
    body: &Map<String, Value>,
    stream: bool,
) -> Duration {
    let secs = |v: Option<&Value>| -> Option<Duration> {
        let v = v?;
        let f = v.as_f64().or_else(|| v.as_str()?.trim().parse().ok())?;
        (f > 0.0 && f.is_finite()).then(|| Duration::from_secs_f64(f))
    };
    let header_timeout = headers
        .get("x-litellm-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| *f > 0.0 && f.is_finite())
        .map(Duration::from_secs_f64);
    let plain = header_timeout
        .or_else(|| secs(body.get("timeout")))
        .or_else(|| secs(body.get("request_timeout")))
        .or(d.timeout)
        .unwrap_or(snap.settings.timeout);
    if !stream {
        return plain;
    }
    secs(body.get("stream_timeout"))
        .or(d.stream_timeout)
        .or(snap.settings.stream_timeout)
        .unwrap_or(plain)
}

/// Headers every response from a deployment carries.
pub fn litellm_headers(d: &Deployment, requested: &str) -> HeaderMap {
    let mut h = d.wire.response_headers.clone();
    if let Ok(v) = HeaderValue::from_str(requested) {
        h.insert("x-litellm-model-group", v);
    }
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert("x-litellm-call-id", v);
    }
    h
}
