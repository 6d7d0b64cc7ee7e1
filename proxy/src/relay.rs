//! Relaying upstream bodies to the client with the requested model name stamped in:
//! whole JSON bodies, and server-sent events event by event as they arrive (no buffering
//! beyond one event). A stream that breaks ends with an OpenAI error event, never a hang.

use crate::error::ApiError;
use crate::restamp::restamp;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::{Map, Value, json};
use std::{pin::Pin, time::Duration};

pub use crate::restamp::Usage;

/// Sets `model` in a JSON body. Bodies that are not JSON objects pass through unchanged.
pub fn restamp_json(body: &[u8], model: &str) -> (Bytes, Usage) {
    restamp(body, model).unwrap_or_else(|| (Bytes::copy_from_slice(body), Usage::default()))
}

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Finds the end of the first complete SSE event: returns (event length, delimiter length).
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Rewrites one SSE event's `data:` JSON with the requested model.
fn restamp_event(event: &[u8], model: &str, usage: &mut Usage) -> Bytes {
    let mut out = BytesMut::with_capacity(event.len() + model.len() + 16);
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let stamped = line
            .strip_prefix(b"data:")
            .map(|d| d.trim_ascii_start())
            .filter(|data| *data != b"[DONE]")
            .and_then(|data| restamp(data, model));
        match stamped {
            Some((data, u)) => {
                if u != Usage::default() {
                    *usage = u;
                }
                out.put_slice(b"data: ");
                out.put_slice(&data);
            }
            None => out.put_slice(line),
        }
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// Relays an upstream SSE body. `idle` bounds the wait for each upstream chunk; when the
/// upstream breaks off or stalls, the client gets an error event and the stream ends
/// (without `[DONE]`, as LiteLLM does). `on_end` receives the usage seen.
pub fn relay_sse(
    upstream: ByteStream,
    model: String,
    idle: Duration,
    on_end: impl FnOnce(Usage, bool) + Send + 'static,
) -> ByteStream {
    struct State<F> {
        upstream: ByteStream,
        buf: BytesMut,
        model: String,
        usage: Usage,
        idle: Duration,
        finished: bool,
        on_end: Option<F>,
    }
    let state = State {
        upstream,
        buf: BytesMut::new(),
        model,
        usage: Usage::default(),
        idle,
        finished: false,
        on_end: Some(on_end),
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.finished {
                return None;
            }
            if let Some((len, delim)) = event_end(&s.buf) {
                let event = s.buf.split_to(len + delim);
                let out = restamp_event(&event[..len], &s.model, &mut s.usage);
                return Some((Ok(out), s));
            }
            match tokio::time::timeout(s.idle, s.upstream.next()).await {
                Ok(Some(Ok(chunk))) => s.buf.extend_from_slice(&chunk),
                Ok(None) => {
                    s.finished = true;
                    if let Some(f) = s.on_end.take() {
                        f(s.usage, true);
                    }
                    if s.buf.is_empty() {
                        return None;
                    }
                    let rest = s.buf.split().freeze();
                    return Some((Ok(rest), s));
                }
                failure => {
                    s.finished = true;
                    if let Some(f) = s.on_end.take() {
                        f(s.usage, false);
                    }
                    let why = match failure {
                        Err(_) => {
                            format!("no data from the upstream for {:.1}s", s.idle.as_secs_f64())
                        }
                        Ok(Some(Err(e))) => format!("upstream stream broke: {e}"),
                        _ => "upstream stream ended".to_string(),
                    };
                    let err = ApiError::new(
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "service_unavailable_error",
                        format!("litellm.MidStreamFallbackError: {why}"),
                    );
                    let event = Bytes::from(format!("data: {}\n\n", err.body()));
                    return Some((Ok(event), s));
                }
            }
        }
    });
    Box::pin(stream)
}

/// Turns a whole (non-streamed) chat completion into SSE chunks, for upstreams that answer
/// `stream: true` with plain JSON. LiteLLM loses the content in that case; we keep it.
pub fn completion_to_sse(body: &[u8], model: &str) -> (Bytes, Usage) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let usage = Usage::from_value(&v).unwrap_or_default();
    let id = v.get("id").cloned().unwrap_or(json!("chatcmpl-modelgate"));
    let created = v.get("created").cloned().unwrap_or(json!(0));
    let mut out = String::new();
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, choice) in choices.iter().enumerate() {
        let message = choice.get("message").cloned().unwrap_or(json!({}));
        let mut delta = Map::new();
        for (k, val) in message.as_object().into_iter().flatten() {
            delta.insert(k.clone(), val.clone());
        }
        let chunk = json!({"id": id, "object": "chat.completion.chunk", "created": created,
                           "model": model, "choices": [{"index": i, "delta": delta,
                           "finish_reason": choice.get("finish_reason")}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    if let Some(u) = v.get("usage") {
        let chunk = json!({"id": id, "object": "chat.completion.chunk", "created": created,
                           "model": model, "choices": [], "usage": u});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    (Bytes::from(out), usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_split_across_chunks_are_restamped_whole() {
        let parts = vec![
            Ok(Bytes::from_static(b"data: {\"model\":\"up\",\"x\":1}\n")),
            Ok(Bytes::from_static(
                b"\ndata: {\"model\":\"up\",\"usage\":{\"prompt_tokens\":3,",
            )),
            Ok(Bytes::from_static(
                b"\"completion_tokens\":4}}\r\n\r\ndata: [DONE]\n\n",
            )),
        ];
        let (tx, rx) = std::sync::mpsc::channel();
        let out: Vec<Bytes> = relay_sse(
            Box::pin(futures::stream::iter(parts)),
            "alias".into(),
            Duration::from_secs(5),
            move |u, ok| tx.send((u.prompt, u.completion, ok)).unwrap(),
        )
        .map(|r| r.unwrap())
        .collect()
        .await;
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[0],
            Bytes::from("data: {\"model\":\"alias\",\"x\":1}\n\n")
        );
        assert!(String::from_utf8_lossy(&out[1]).contains("\"model\":\"alias\""));
        assert_eq!(out[2], Bytes::from("data: [DONE]\n\n"));
        assert_eq!(rx.recv().unwrap(), (3, 4, true));
    }

    #[tokio::test]
    async fn a_broken_upstream_ends_with_an_error_event() {
        let parts = vec![
            Ok(Bytes::from_static(b"data: {\"model\":\"up\"}\n\n")),
            Err(std::io::Error::other("reset")),
        ];
        let out: Vec<Bytes> = relay_sse(
            Box::pin(futures::stream::iter(parts)),
            "m".into(),
            Duration::from_secs(5),
            |_, ok| assert!(!ok),
        )
        .map(|r| r.unwrap())
        .collect()
        .await;
        assert_eq!(out.len(), 2);
        let last = String::from_utf8_lossy(&out[1]);
        assert!(last.starts_with("data: {\"error\""), "{last}");
        assert!(!last.contains("[DONE]"));
    }
}
