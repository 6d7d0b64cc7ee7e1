//! What the mock answers: a scripted [`Reply`], rendered into an HTTP response.

use axum::{
    body::Body,
    http::{HeaderName, HeaderValue, Response, StatusCode},
};
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

/// One scripted answer. The default answers like OpenAI would.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Reply {
    /// Delay before the response starts, in milliseconds.
    pub latency_ms: u64,
    /// Extra response headers (for example `retry-after`).
    pub headers: Vec<(String, String)>,
    pub kind: ReplyKind,
}

/// The body of a scripted answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReplyKind {
    /// A normal answer for the path: chat, completion, embedding or model list; streamed
    /// when the request says `stream: true`.
    #[default]
    Ok,
    /// A normal answer that is never streamed, as from an upstream that ignores `stream`.
    Plain,
    /// An OpenAI error envelope with this status and message.
    Error {
        status: u16,
        #[serde(default)]
        message: String,
        #[serde(default)]
        code: Option<String>,
    },
    /// A stream of `chunks` content chunks, `chunk_delay_ms` apart, that breaks off
    /// (connection dropped, no `[DONE]`) after `die_after` chunks when set.
    Stream {
        chunks: usize,
        #[serde(default)]
        chunk_delay_ms: u64,
        #[serde(default)]
        die_after: Option<usize>,
    },
    /// An event stream that breaks off before its first event: the `200` and
    /// `text/event-stream` head go out, then after `delay_ms` the connection drops without
    /// a single byte of body (unlike `Stream`, whose role chunk always goes out first).
    StreamDiesAtOnce {
        #[serde(default)]
        delay_ms: u64,
    },
    /// The connection is closed without a response.
    Reset,
}

impl Reply {
    pub fn ok() -> Self {
        Self::default()
    }

    pub fn error(status: u16, message: &str) -> Self {
        Self {
            kind: ReplyKind::Error {
                status,
                message: message.to_string(),
                code: None,
            },
            ..Self::default()
        }
    }

    pub fn with_latency(mut self, ms: u64) -> Self {
        self.latency_ms = ms;
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// What the handler knows about the request when it renders a reply.
pub(crate) struct Ask<'a> {
    pub path: &'a str,
    pub model: &'a str,
    pub stream: bool,
    pub include_usage: bool,
}

pub(crate) fn render(reply: &Reply, ask: &Ask<'_>) -> Response<Body> {
    let mut resp = match &reply.kind {
        ReplyKind::Ok if ask.stream => stream_response(ask, 3, 0, None),
        ReplyKind::Ok | ReplyKind::Plain => json_response(StatusCode::OK, ok_body(ask)),
        ReplyKind::Error {
            status,
            message,
            code,
        } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = json!({"error": {"message": message, "type": error_type(status),
                                        "param": null, "code": code}});
            json_response(status, body.to_string().into())
        }
        ReplyKind::Stream {
            chunks,
            chunk_delay_ms,
            die_after,
        } => stream_response(ask, *chunks, *chunk_delay_ms, *die_after),
        ReplyKind::StreamDiesAtOnce { delay_ms } => dead_stream(*delay_ms),
        // Handled by the server before rendering; answer 500 if it ever gets here.
        ReplyKind::Reset => json_response(StatusCode::INTERNAL_SERVER_ERROR, Bytes::new()),
    };
    for (name, value) in &reply.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            resp.headers_mut().insert(n, v);
        }
    }
    resp
}

fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "invalid_api_key",
        429 => "requests",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert("x-request-id", HeaderValue::from_static("req_mock"));
    resp
}

fn ok_body(ask: &Ask<'_>) -> Bytes {
    let body = if ask.path.ends_with("/embeddings") {
        json!({"object": "list", "model": ask.model,
               "data": [{"object": "embedding", "index": 0,
                         "embedding": [0.0023064255, -0.009327292, 0.015797347, -0.0077780345]}],
               "usage": {"prompt_tokens": 2, "total_tokens": 2}})
    } else if ask.path.ends_with("/models") {
        json!({"object": "list", "data": [{"id": ask.model, "object": "model",
               "created": 1700000000, "owned_by": "mock"}]})
    } else if ask.path.ends_with("/chat/completions") {
        json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 1700000000,
               "model": ask.model,
               "choices": [{"index": 0, "message": {"role": "assistant",
                            "content": "Hello from the mock upstream."},
                            "logprobs": null, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}})
    } else {
        json!({"id": "cmpl-mock", "object": "text_completion", "created": 1700000000,
               "model": ask.model,
               "choices": [{"index": 0, "text": "Hello from the mock upstream.",
                            "logprobs": null, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}})
    };
    body.to_string().into()
}

fn chunk(model: &str, delta: Value, finish: Option<&str>, usage: Option<Value>) -> Bytes {
    let mut c = json!({"id": "chatcmpl-mocksse", "object": "chat.completion.chunk",
                       "created": 1700000000, "model": model,
                       "choices": [{"index": 0, "delta": delta, "logprobs": null,
                                    "finish_reason": finish}]});
    if let Some(u) = usage {
        c["usage"] = u;
    }
    Bytes::from(format!("data: {c}\n\n"))
}

fn stream_response(
    ask: &Ask<'_>,
    chunks: usize,
    delay_ms: u64,
    die_after: Option<usize>,
) -> Response<Body> {
    let model = ask.model.to_string();
    let mut events = vec![chunk(
        &model,
        json!({"role": "assistant", "content": ""}),
        None,
        None,
    )];
    for i in 0..chunks {
        events.push(chunk(
            &model,
            json!({"content": format!("tok{i} ")}),
            None,
            None,
        ));
    }
    let usage =
        json!({"prompt_tokens": 9, "completion_tokens": chunks, "total_tokens": 9 + chunks});
    events.push(chunk(
        &model,
        json!({}),
        Some("stop"),
        ask.include_usage.then_some(usage),
    ));
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    // `die_after` counts content chunks; the role chunk always goes out first.
    let cut = die_after.map(|n| n + 1);
    let body = stream::iter(events.into_iter().enumerate()).then(move |(i, ev)| async move {
        if delay_ms > 0 && i > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        if cut.is_some_and(|c| i >= c) {
            return Err(std::io::Error::other("mock stream cut"));
        }
        Ok::<_, std::io::Error>(ev)
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp
}

fn dead_stream(delay_ms: u64) -> Response<Body> {
    // The head is flushed while the body is pending; then the body fails, which drops the
    // connection.
    let body = stream::once(async move {
        tokio::time::sleep(Duration::from_millis(delay_ms.max(1))).await;
        Err::<Bytes, _>(std::io::Error::other(
            "mock stream cut before its first event",
        ))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp
}
