//! What went wrong with one deployment call, classified the way LiteLLM's router decides:
//! which errors cool a deployment down, which are retried, and which go to which fallbacks.

use crate::error::ApiError;
use axum::http::StatusCode;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    BadRequest,
    ContextWindow,
    ContentPolicy,
    Authentication,
    PermissionDenied,
    NotFound,
    Timeout,
    RateLimit,
    InternalServer,
    BadGateway,
    ServiceUnavailable,
    /// No HTTP answer at all (refused, reset): LiteLLM's APIConnectionError.
    Connection,
    Other,
}

impl ErrorClass {
    /// `RateLimitErrorRetries` → `RateLimit` (the name without its policy suffix).
    pub fn from_policy_name(name: &str) -> Option<Self> {
        Some(match name {
            "BadRequestError" => Self::BadRequest,
            "ContextWindowExceededError" => Self::ContextWindow,
            "ContentPolicyViolationError" => Self::ContentPolicy,
            "AuthenticationError" => Self::Authentication,
            "PermissionDeniedError" => Self::PermissionDenied,
            "NotFoundError" => Self::NotFound,
            "TimeoutError" => Self::Timeout,
            "RateLimitError" => Self::RateLimit,
            "InternalServerError" => Self::InternalServer,
            "BadGatewayError" => Self::BadGateway,
            "ServiceUnavailableError" => Self::ServiceUnavailable,
            _ => return None,
        })
    }

    /// From a status and the upstream's error message (context-window and content-policy
    /// errors are 400s told apart by their wording, which differs per provider).
    pub fn classify(status: StatusCode, message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        match status.as_u16() {
            400 | 413 | 422 if is_context_window(&m) => Self::ContextWindow,
            400 if is_content_policy(&m) => Self::ContentPolicy,
            400 | 413 | 422 => Self::BadRequest,
            401 => Self::Authentication,
            403 => Self::PermissionDenied,
            404 => Self::NotFound,
            408 => Self::Timeout,
            429 => Self::RateLimit,
            502 => Self::BadGateway,
            503 => Self::ServiceUnavailable,
            s if s >= 500 => Self::InternalServer,
            _ => Self::Other,
        }
    }

    /// Whether this error puts a deployment in cooldown: 429, 401, 404, 408, 5xx and
    /// timeouts; not other 4xx (400, 403, 405, 409, 410, 415, 422, ...) nor 3xx: the
    /// request was bad, not the deployment. A refused or reset connection qualifies too:
    /// LiteLLM exempts it, which keeps sending every request to a deployment that is down
    /// (docs/compatibility.md).
    pub fn qualifies_for_cooldown(self) -> bool {
        match self {
            Self::RateLimit
            | Self::Authentication
            | Self::NotFound
            | Self::Timeout
            | Self::InternalServer
            | Self::BadGateway
            | Self::ServiceUnavailable
            | Self::Connection => true,
            Self::BadRequest
            | Self::ContextWindow
            | Self::ContentPolicy
            | Self::PermissionDenied
            | Self::Other => false,
        }
    }

    /// LiteLLM's `_should_retry` on a status: 408, 409, 429 and 5xx.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Timeout
                | Self::RateLimit
                | Self::InternalServer
                | Self::BadGateway
                | Self::ServiceUnavailable
                | Self::Connection
        )
    }
}

fn is_context_window(m: &str) -> bool {
    [
        "context_length_exceeded",
        "context length",
        "context window",
        "maximum context",
        "prompt is too long",
        "too many tokens",
        "input is too long",
        "reduce the length",
        "exceeds the maximum",
    ]
    .iter()
    .any(|p| m.contains(p))
}

fn is_content_policy(m: &str) -> bool {
    [
        "content_filter",
        "content management policy",
        "content_policy_violation",
        "content policy",
        "responsibleaipolicyviolation",
        "safety system",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// One failed call: what the client would see, and what the router needs to know.
#[derive(Debug)]
pub struct Failure {
    pub class: ErrorClass,
    pub error: ApiError,
    /// The upstream's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
    /// The deployment that failed; `None` when no deployment was called.
    pub deployment: Option<String>,
}

impl Failure {
    pub fn new(class: ErrorClass, error: ApiError) -> Self {
        Self {
            class,
            error,
            retry_after: None,
            deployment: None,
        }
    }
}

/// `Retry-After` in seconds or as `retry-after-ms`; an HTTP date is not worth parsing here.
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let s = value?.trim();
    let secs: f64 = s.parse().ok()?;
    (secs > 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_window_wording_of_each_provider() {
        for m in [
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens",
            "{\"code\": \"context_length_exceeded\"}",
            "prompt is too long: 210000 tokens > 200000 maximum",
            "The input is too long for the requested model.",
        ] {
            assert_eq!(
                ErrorClass::classify(StatusCode::BAD_REQUEST, m),
                ErrorClass::ContextWindow,
                "{m}"
            );
        }
        assert_eq!(
            ErrorClass::classify(
                StatusCode::BAD_REQUEST,
                "The response was filtered due to the prompt triggering Azure OpenAI's content management policy"
            ),
            ErrorClass::ContentPolicy
        );
        assert_eq!(
            ErrorClass::classify(StatusCode::BAD_REQUEST, "bad param"),
            ErrorClass::BadRequest
        );
    }

    #[test]
    fn cooldown_qualification() {
        assert!(ErrorClass::RateLimit.qualifies_for_cooldown());
        assert!(ErrorClass::Timeout.qualifies_for_cooldown());
        assert!(!ErrorClass::BadRequest.qualifies_for_cooldown());
        assert!(ErrorClass::Connection.qualifies_for_cooldown());
        for status in [301, 302, 400, 403, 405, 409, 410, 415, 422] {
            let class = ErrorClass::classify(StatusCode::from_u16(status).unwrap(), "x");
            assert!(
                !class.qualifies_for_cooldown(),
                "{status} must not cool down"
            );
        }
        for status in [401, 404, 408, 429, 500, 502, 503, 504, 529] {
            let class = ErrorClass::classify(StatusCode::from_u16(status).unwrap(), "x");
            assert!(class.qualifies_for_cooldown(), "{status} must cool down");
        }
    }
}
