//! Limits and cooldowns shared by every replica through Redis (LiteLLM's `redis_host` /
//! `redis_port` / `redis_password` / `redis_url`). rpm/tpm are checked and counted in one
//! round trip by a Lua script, so replicas cannot overshoot together; tokens are added
//! when a response reports them, off the request path; cooldowns are stored with an expiry
//! and announced on a channel every replica listens to. When Redis is slow or gone,
//! requests go on with the local counters (or are refused, if configured fail-closed):
//! each call waits at most `redis_timeout`, and after a few failures in a row requests
//! stop asking until the heartbeat gets an answer again, so sharing resumes by itself.

use super::live::{Live, minute_now};
use crate::config::redis_target::RedisTarget;
use arc_swap::ArcSwapOption;
use futures::StreamExt;
use redis::{AsyncCommands, Script, aio::ConnectionManager};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

const PREFIX: &str = "modelgate";
const CHANNEL: &str = "modelgate:cooldowns";
/// Failures in a row after which requests stop asking Redis until the heartbeat succeeds.
const STRIKES: u32 = 3;

/// Checks the deployment's minute counters against its limits and counts the request if
/// it fits. KEYS: rpm key, tpm key. ARGV: rpm limit (-1 none), tpm limit (-1 none), input
/// tokens. Returns {admitted (0/1), requests, tokens}.
const TAKE: &str = r"
local r = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
local rl = tonumber(ARGV[1])
local tl = tonumber(ARGV[2])
if (rl >= 0 and r + 1 > rl) or (tl >= 0 and t + tonumber(ARGV[3]) > tl) then
  return {0, r, t}
end
r = redis.call('INCR', KEYS[1])
if r == 1 then redis.call('EXPIRE', KEYS[1], 120) end
return {1, r, t}
";

/// Whether a request may go on when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OnOutage {
    /// Use the local counters (the default: an outage must not become downtime).
    Open,
    /// Refuse with 429 until Redis answers again.
    Closed,
}

pub struct SharedStore {
    /// The settings it was started with (the password only inside the connection info).
    pub target: RedisTarget,
    conn: ArcSwapOption<ConnectionManager>,
    healthy: AtomicBool,
    /// Failures since the last answer; at [`STRIKES`] requests go on without asking.
    strikes: AtomicU32,
    last_error: Mutex<Option<String>>,
    errors: prometheus_client::metrics::counter::Counter,
    take: Script,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for SharedStore {
    fn drop(&mut self) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .for_each(tokio::task::JoinHandle::abort);
    }
}

/// What [`SharedStore::take`] decided.
pub enum Take {
    Admitted,
    OverLimit,
    /// Redis did not answer; the caller applies [`OnOutage`].
    Unavailable,
}

fn key(id: &str, kind: &str, minute: u64) -> String {
    format!("{PREFIX}:{{{id}}}:{kind}:{minute}")
}

impl SharedStore {
    /// Connects in the background (retrying forever) and listens for other replicas'
    /// cooldowns, which it copies into `live`.
    pub fn start(
        target: &RedisTarget,
        live: Arc<Live>,
        errors: prometheus_client::metrics::counter::Counter,
    ) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(target.info.clone()).map_err(|e| format!("redis: {e}"))?;
        let store = Arc::new(SharedStore {
            target: target.clone(),
            conn: ArcSwapOption::empty(),
            healthy: AtomicBool::new(false),
            strikes: AtomicU32::new(0),
            last_error: Mutex::new(Some("connecting".into())),
            errors,
            take: Script::new(TAKE),
            tasks: Mutex::new(Vec::new()),
        });
        // The tasks hold weak references: dropping the store (a config without Redis, or
        // another Redis) ends them.
        let weak = Arc::downgrade(&store);
        // The heartbeat and the background writes wait for no request: a longer bound.
        let slow = (target.timeout * 5).max(Duration::from_millis(500));
        let connector = tokio::spawn(connect_loop(client.clone(), weak.clone(), slow));
        let listener = tokio::spawn(listen_loop(client, weak, live));
        store
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend([connector, listener]);
        Ok(store)
    }

    pub fn status(&self) -> (bool, Option<String>) {
        (
            self.healthy.load(Ordering::Relaxed),
            self.last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    fn failed(&self, e: impl std::fmt::Display) {
        self.errors.inc();
        self.strikes.fetch_add(1, Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(redis = %self.target.redacted, error = %e, "redis unavailable; limits and cooldowns are local until it is back");
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
    }

    fn succeeded(&self) {
        self.strikes.store(0, Ordering::Relaxed);
        if !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!(redis = %self.target.redacted, "redis connected; limits and cooldowns are shared");
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// Checks and counts one request against the deployment's limits, for every replica.
    /// On success the local mirror learns the shared counts.
    pub async fn take(
        &self,
        live: &Live,
        id: &str,
        rpm: Option<u64>,
        tpm: Option<u64>,
        tokens: u64,
    ) -> Take {
        let Some(conn) = self.conn.load_full() else {
            return Take::Unavailable;
        };
        if self.strikes.load(Ordering::Relaxed) >= STRIKES {
            return Take::Unavailable;
        }
        let mut conn = (*conn).clone();
        let (minute, _) = minute_now();
        let limit = |l: Option<u64>| l.and_then(|l| i64::try_from(l).ok()).unwrap_or(-1);
        let mut call = self.take.prepare_invoke();
        call.key(key(id, "rpm", minute))
            .key(key(id, "tpm", minute))
            .arg(limit(rpm))
            .arg(limit(tpm))
            .arg(tokens);
        let timeout = self.target.timeout;
        let reply =
            tokio::time::timeout(timeout, call.invoke_async::<(i64, u64, u64)>(&mut conn)).await;
        match reply {
            Ok(Ok((admitted, requests, used_tokens))) => {
                self.succeeded();
                live.mirror(id, minute, requests, used_tokens);
                if admitted == 1 {
                    Take::Admitted
                } else {
                    Take::OverLimit
                }
            }
            Ok(Err(e)) => {
                self.failed(e);
                Take::Unavailable
            }
            Err(_) => {
                self.failed(format!("no answer within {timeout:?}"));
                Take::Unavailable
            }
        }
    }

    /// Adds a response's tokens to the shared minute counter, off the request path.
    pub fn add_tokens(self: &Arc<Self>, id: &str, tokens: u64) {
        let Some(conn) = self.conn.load_full() else {
            return;
        };
        if tokens == 0 {
            return;
        }
        let k = key(id, "tpm", minute_now().0);
        let this = self.clone();
        tokio::spawn(async move {
            let mut conn = (*conn).clone();
            let r: redis::RedisResult<()> = redis::pipe()
                .incr(&k, tokens)
                .ignore()
                .expire(&k, 120)
                .ignore()
                .query_async(&mut conn)
                .await;
            if let Err(e) = r {
                this.failed(e);
            }
        });
    }

    /// Stores a cooldown with its expiry and tells the other replicas at once.
    pub fn publish_cooldown(
        self: &Arc<Self>,
        id: &str,
        duration: Duration,
        status: u16,
        reason: &str,
    ) {
        let Some(conn) = self.conn.load_full() else {
            return;
        };
        let ms = u64::try_from(duration.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let message = format!("{id}\n{ms}\n{status}\n{reason}");
        let k = format!("{PREFIX}:cooldown:{id}");
        let this = self.clone();
        tokio::spawn(async move {
            let mut conn = (*conn).clone();
            let r: redis::RedisResult<()> = redis::pipe()
                .pset_ex(&k, &message, ms)
                .ignore()
                .publish(CHANNEL, &message)
                .ignore()
                .query_async(&mut conn)
                .await;
            if let Err(e) = r {
                this.failed(e);
            }
        });
    }
}

/// Parses a cooldown message and applies it locally (without publishing it again).
fn apply_cooldown(live: &Live, message: &str) {
    let mut parts = message.splitn(4, '\n');
    let (Some(id), Some(ms), Some(status), reason) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let (Ok(ms), Ok(status)) = (ms.parse::<u64>(), status.parse::<u16>()) else {
        return;
    };
    if live.cooldown(id).is_none() {
        live.start_cooldown(
            id,
            Duration::from_millis(ms),
            format!("(shared) {}", reason.unwrap_or("")),
            status,
        );
    }
}

async fn connect_loop(client: redis::Client, store: std::sync::Weak<SharedStore>, slow: Duration) {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(slow)
        .set_max_delay(2000);
    let mut delay = Duration::from_millis(200);
    let conn = loop {
        match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Ok(conn) => break conn,
            Err(e) => {
                let Some(s) = store.upgrade() else { return };
                s.failed(e);
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    };
    match store.upgrade() {
        Some(s) => s.conn.store(Some(Arc::new(conn.clone()))),
        None => return,
    }
    // A heartbeat, so readiness tells the truth even when no request needs Redis (the
    // connection manager reconnects by itself after errors).
    loop {
        let mut c = conn.clone();
        let ping =
            tokio::time::timeout(slow, redis::cmd("PING").query_async::<String>(&mut c)).await;
        let Some(s) = store.upgrade() else { return };
        match ping {
            Ok(Ok(_)) => s.succeeded(),
            Ok(Err(e)) => s.failed(e),
            Err(_) => s.failed("PING timed out"),
        }
        drop(s);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Subscribes to cooldown announcements; on every (re)connect first copies the cooldowns
/// already stored, so a replica that starts or reconnects late still avoids them.
async fn listen_loop(client: redis::Client, store: std::sync::Weak<SharedStore>, live: Arc<Live>) {
    loop {
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            let keys: Vec<String> = conn.keys(format!("{PREFIX}:cooldown:*")).await?;
            for k in keys {
                let (message, ttl): (Option<String>, i64) = redis::pipe()
                    .get(&k)
                    .pttl(&k)
                    .query_async(&mut conn)
                    .await?;
                if let Some(m) = message
                    && ttl > 0
                {
                    // The stored message holds the full duration; the TTL is what is left.
                    let mut parts: Vec<&str> = m.splitn(4, '\n').collect();
                    let left = ttl.to_string();
                    if parts.len() == 4 {
                        parts[1] = &left;
                        apply_cooldown(&live, &parts.join("\n"));
                    }
                }
            }
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                if let Ok(text) = msg.get_payload::<String>() {
                    apply_cooldown(&live, &text);
                }
            }
            Ok::<(), redis::RedisError>(())
        }
        .await;
        if store.upgrade().is_none() {
            return;
        }
        if let Err(e) = connected {
            tracing::debug!(error = %e, "redis cooldown channel lost; reconnecting");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
