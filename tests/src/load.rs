//! A steady client load on proxy replicas, counting every failure a user would see:
//! non-2xx answers, transport errors, and streams that do not end with `[DONE]`.

use serde_json::json;
use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

/// Which requests a [`Load`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Every other request streamed.
    Mixed,
    /// Streams only.
    Streams,
}

/// Chat requests from `workers` clients, round-robin over the replicas, until
/// [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `urls` are the replicas' base URLs; `key` the bearer token.
    pub fn start(urls: Vec<String>, model: &str, workers: usize, mix: Mix, key: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..workers)
            .map(|w| {
                let (stop, ok, failed, failures) =
                    (stop.clone(), ok.clone(), failed.clone(), failures.clone());
                let (urls, model, key) = (urls.clone(), model.to_string(), key.to_string());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap_or_default();
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let stream = mix == Mix::Streams || i % 2 == 0;
                        let url = &urls[i % urls.len()];
                        match one_request(&http, url, &key, &model, stream).await {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                failures
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .push(e);
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            failures,
            tasks,
        }
    }

    /// Stops the clients (requests in flight finish); returns (succeeded, failed, the first
    /// failures).
    pub async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .take(5)
            .cloned()
            .collect();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            failures,
        )
    }
}

/// One chat request; `Err` says what the client saw go wrong.
pub async fn one_request(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    model: &str,
    stream: bool,
) -> Result<(), String> {
    let r = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "stream": stream,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = r.status();
    let body = r.text().await.map_err(|e| format!("body: {e}"))?;
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    if stream && !body.trim_end().ends_with("data: [DONE]") {
        return Err(format!("broken stream: {body}"));
    }
    Ok(())
}
