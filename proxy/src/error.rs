//! `ApiError`: every error the proxy returns, rendered in OpenAI's envelope
//! `{"error": {"message", "type", "param", "code"}}` with `code` the HTTP status as a string,
//! as the LiteLLM proxy does. Messages never carry secrets or internal detail.

use axum::{
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    /// Headers the client should see with the error (for example `retry-after`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "auth_error", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            message,
        )
    }

    pub fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    /// The unknown-model error, worded like LiteLLM's so existing clients keep matching it.
    pub fn unknown_model(route: &str, model: Option<&str>) -> Self {
        Self::bad_request(format!(
            "{route}: Invalid model name passed in model={}. Call `/v1/models` to view available models for your key.",
            model.unwrap_or("None")
        ))
        .with_param("model")
    }

    /// The error class name LiteLLM uses for a status, as in `litellm.RateLimitError`.
    pub fn class_for(status: StatusCode) -> (&'static str, &'static str) {
        match status.as_u16() {
            400 => ("BadRequestError", "invalid_request_error"),
            401 => ("AuthenticationError", "auth_error"),
            403 => ("PermissionDeniedError", "permission_error"),
            404 => ("NotFoundError", "not_found_error"),
            408 => ("Timeout", "timeout_error"),
            422 => ("UnprocessableEntityError", "invalid_request_error"),
            429 => ("RateLimitError", "throttling_error"),
            502 => ("BadGatewayError", "bad_gateway_error"),
            503 => ("ServiceUnavailableError", "service_unavailable_error"),
            _ => ("InternalServerError", "internal_server_error"),
        }
    }

    /// The JSON body alone (also used for the error event that ends a broken stream).
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind,
                         "param": self.param, "code": self.status.as_u16().to_string()}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body().to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}
