//! The mock's HTTP server: OpenAI routes, the `/__mock/*` control routes, and the record
//! of every request it served.

use crate::reply::{Ask, Reply, ReplyKind, render};
use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Response, StatusCode, Uri},
    routing::{get, post},
};
use futures::stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// What the mock saw of one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub path: String,
    /// The credential it carried: `Authorization` (without `Bearer `) or `api-key`.
    pub key: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    /// Replies used once each, in order, before falling back to `default`.
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    records: Mutex<Vec<Record>>,
    record: bool,
    hits: AtomicU64,
}

/// A running mock upstream. Dropping it does not stop the server; it lives until the
/// test process (or the binary) exits.
#[derive(Clone)]
pub struct MockUpstream {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl MockUpstream {
    /// Starts a mock on 127.0.0.1 with an OS-chosen port, answering `default` unless scripted.
    pub async fn start(default: Reply) -> std::io::Result<Self> {
        Self::bind(
            "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
            default,
            true,
        )
        .await
    }

    /// Starts a mock on `addr`. `record: false` keeps memory flat under benchmark load.
    pub async fn bind(addr: SocketAddr, default: Reply, record: bool) -> std::io::Result<Self> {
        let inner = Arc::new(Inner {
            default: Mutex::new(default),
            record,
            ..Inner::default()
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = router(inner.clone());
        tokio::spawn(async move {
            // TCP_NODELAY, or every streamed chunk waits for the client's delayed ACK.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, inner })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to put in `api_base`, ending in `/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues replies, used one per request before the default applies again.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.inner.script).extend(replies);
    }

    /// Replaces the default reply.
    pub fn set_default(&self, reply: Reply) {
        *lock(&self.inner.default) = reply;
    }

    /// Requests served so far (including failures it was scripted to give).
    pub fn hits(&self) -> u64 {
        self.inner.hits.load(Ordering::Relaxed)
    }

    pub fn records(&self) -> Vec<Record> {
        lock(&self.inner.records).clone()
    }

    /// Forgets the script, the records and the hit count.
    pub fn reset(&self) {
        lock(&self.inner.script).clear();
        lock(&self.inner.records).clear();
        self.inner.hits.store(0, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not wedge every later request.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/__mock/script", post(control_script))
        .route("/__mock/default", post(control_default))
        .route("/__mock/records", get(control_records))
        .route("/__mock/reset", post(control_reset))
        .fallback(serve)
        .with_state(inner)
}

async fn serve(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    inner.hits.fetch_add(1, Ordering::Relaxed);
    let reply = lock(&inner.script)
        .pop_front()
        .unwrap_or_else(|| lock(&inner.default).clone());
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path();
    if inner.record {
        let key = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_start_matches("Bearer ").to_string())
            .or_else(|| {
                headers
                    .get("api-key")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from)
            });
        lock(&inner.records).push(Record {
            path: path.to_string(),
            key,
            body: parsed.clone(),
        });
    }
    if reply.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(reply.latency_ms)).await;
    }
    if matches!(reply.kind, ReplyKind::Reset) {
        // Headers go out, then the body fails: the connection is dropped mid-response.
        let broken = stream::iter([Err::<Bytes, _>(std::io::Error::other("reset"))]);
        return Response::new(Body::from_stream(broken));
    }
    let ask = Ask {
        path,
        model: parsed
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("mock"),
        stream: parsed
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        include_usage: parsed
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    render(&reply, &ask)
}

async fn control_script(State(inner): State<Arc<Inner>>, Json(r): Json<Vec<Reply>>) -> StatusCode {
    lock(&inner.script).extend(r);
    StatusCode::NO_CONTENT
}

async fn control_default(State(inner): State<Arc<Inner>>, Json(r): Json<Reply>) -> StatusCode {
    *lock(&inner.default) = r;
    StatusCode::NO_CONTENT
}

async fn control_records(State(inner): State<Arc<Inner>>) -> Json<Value> {
    let records = lock(&inner.records).clone();
    Json(serde_json::json!({"hits": inner.hits.load(Ordering::Relaxed), "records": records}))
}

async fn control_reset(State(inner): State<Arc<Inner>>) -> StatusCode {
    lock(&inner.script).clear();
    lock(&inner.records).clear();
    inner.hits.store(0, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}
