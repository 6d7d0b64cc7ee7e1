//! The router's live state, kept across config reloads and keyed by deployment id: per
//! minute usage (rpm/tpm), cooldowns, failure counts, requests in flight and latencies.
//! Each map has its own short-held lock; nothing here waits on I/O.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// The current UTC minute (LiteLLM's `<HH-MM>` window) and the time left in it.
pub fn minute_now() -> (u64, Duration) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let minute = now.as_secs() / 60;
    let left = Duration::from_secs((minute + 1) * 60).saturating_sub(now);
    (minute, left.max(Duration::from_millis(1)))
}

#[derive(Debug, Default, Clone, Copy)]
pub struct MinuteUsage {
    pub minute: u64,
    pub requests: u64,
    pub tokens: u64,
}

impl MinuteUsage {
    fn current(&mut self, minute: u64) -> &mut Self {
        if self.minute != minute {
            *self = Self {
                minute,
                ..Self::default()
            };
        }
        self
    }
}

#[derive(Debug, Clone)]
pub struct Cooldown {
    pub until: Instant,
    pub reason: String,
    pub status: u16,
    pub duration: Duration,
}

#[derive(Debug, Default)]
struct Health {
    minute: u64,
    fails: u64,
    successes: u64,
    /// v1 rule: failures counted within the cooldown window.
    window_fails: u32,
    window_start: Option<Instant>,
}

#[derive(Debug, Default)]
struct Latency {
    values: VecDeque<f64>,
    ttft: VecDeque<f64>,
    updated: Option<Instant>,
}

#[derive(Default)]
pub struct Live {
    usage: Mutex<HashMap<String, MinuteUsage>>,
    cooldowns: Mutex<HashMap<String, Cooldown>>,
    health: Mutex<HashMap<String, Health>>,
    in_flight: Mutex<HashMap<String, i64>>,
    latency: Mutex<HashMap<String, Latency>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Live {
    /// This minute's usage of a deployment.
    pub fn usage(&self, id: &str) -> MinuteUsage {
        let (minute, _) = minute_now();
        let mut map = lock(&self.usage);
        *map.entry(id.to_string()).or_default().current(minute)
    }

    /// Counts a request against `rpm` if it fits: checked and counted under one lock, so
    /// concurrent requests cannot overshoot. `tpm` is checked against tokens already used
    /// plus this request's input tokens.
    pub fn try_take(
        &self,
        id: &str,
        rpm: Option<u64>,
        tpm: Option<u64>,
        input_tokens: u64,
    ) -> bool {
        let (minute, _) = minute_now();
        let mut map = lock(&self.usage);
        let u = map.entry(id.to_string()).or_default().current(minute);
        if rpm.is_some_and(|l| u.requests + 1 > l)
            || tpm.is_some_and(|l| u.tokens + input_tokens > l)
        {
            return false;
        }
        u.requests += 1;
        true
    }

    /// Forgets deployments that are no longer configured, so reloads do not grow memory.
    pub fn retain(&self, keep: &std::collections::HashSet<&str>) {
        lock(&self.usage).retain(|id, _| keep.contains(id.as_str()));
        lock(&self.cooldowns).retain(|id, _| keep.contains(id.as_str()));
        lock(&self.health).retain(|id, _| keep.contains(id.as_str()));
        lock(&self.in_flight).retain(|id, n| *n > 0 || keep.contains(id.as_str()));
        lock(&self.latency).retain(|id, _| keep.contains(id.as_str()));
    }

    /// Counts a request without a limit check (for the rate-limit headers).
    pub fn count_request(&self, id: &str) {
        let (minute, _) = minute_now();
        lock(&self.usage)
            .entry(id.to_string())
            .or_default()
            .current(minute)
            .requests += 1;
    }

    /// Learns the shared (all replicas') counts for a minute; local counts never go down.
    pub fn mirror(&self, id: &str, minute: u64, requests: u64, tokens: u64) {
        let mut map = lock(&self.usage);
        let u = map.entry(id.to_string()).or_default().current(minute);
        if u.minute == minute {
            u.requests = u.requests.max(requests);
            u.tokens = u.tokens.max(tokens);
        }
    }

    pub fn add_tokens(&self, id: &str, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let (minute, _) = minute_now();
        lock(&self.usage)
            .entry(id.to_string())
            .or_default()
            .current(minute)
            .tokens += tokens;
    }

    pub fn cooldown(&self, id: &str) -> Option<Cooldown> {
        let mut map = lock(&self.cooldowns);
        match map.get(id) {
            Some(c) if c.until > Instant::now() => Some(c.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn cooldowns(&self) -> Vec<(String, Cooldown)> {
        let now = Instant::now();
        let mut map = lock(&self.cooldowns);
        map.retain(|_, c| c.until > now);
        let mut out: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn start_cooldown(&self, id: &str, duration: Duration, reason: String, status: u16) {
        lock(&self.cooldowns).insert(
            id.to_string(),
            Cooldown {
                until: Instant::now() + duration,
                reason,
                status,
                duration,
            },
        );
    }

    /// Records a failure; returns (failures, calls) this minute and the failures counted in
    /// the current cooldown window of length `window` (the v1 rule).
    pub fn record_failure(&self, id: &str, window: Duration) -> (u64, u64, u32) {
        let (minute, _) = minute_now();
        let mut map = lock(&self.health);
        let h = map.entry(id.to_string()).or_default();
        if h.minute != minute {
            (h.minute, h.fails, h.successes) = (minute, 0, 0);
        }
        h.fails += 1;
        let now = Instant::now();
        if h.window_start
            .is_none_or(|s| now.duration_since(s) > window)
        {
            h.window_start = Some(now);
            h.window_fails = 0;
        }
        h.window_fails += 1;
        (h.fails, h.fails + h.successes, h.window_fails)
    }

    pub fn record_success(&self, id: &str) {
        let (minute, _) = minute_now();
        let mut map = lock(&self.health);
        let h = map.entry(id.to_string()).or_default();
        if h.minute != minute {
            (h.minute, h.fails, h.successes) = (minute, 0, 0);
        }
        h.successes += 1;
    }

    pub fn in_flight(&self, id: &str) -> i64 {
        lock(&self.in_flight).get(id).copied().unwrap_or(0)
    }

    /// Counts a call in flight until the guard drops.
    pub fn begin(self: &std::sync::Arc<Self>, id: &str) -> InFlight {
        *lock(&self.in_flight).entry(id.to_string()).or_default() += 1;
        InFlight {
            live: self.clone(),
            id: id.to_string(),
        }
    }

    /// Records a call's latency (seconds per completion token, as LiteLLM does) and, for
    /// streams, its time to first token.
    pub fn record_latency(&self, id: &str, value: f64, ttft: Option<f64>, window: usize) {
        let mut map = lock(&self.latency);
        let l = map.entry(id.to_string()).or_default();
        push_bounded(&mut l.values, value, window);
        if let Some(t) = ttft {
            push_bounded(&mut l.ttft, t, window);
        }
        l.updated = Some(Instant::now());
    }

    /// Mean latency (or TTFT for streams, when known), if recorded within `ttl`.
    pub fn mean_latency(&self, id: &str, stream: bool, ttl: Duration) -> Option<f64> {
        let map = lock(&self.latency);
        let l = map.get(id)?;
        if l.updated.is_none_or(|t| t.elapsed() > ttl) {
            return None;
        }
        let values = if stream && !l.ttft.is_empty() {
            &l.ttft
        } else {
            &l.values
        };
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }
}

fn push_bounded(q: &mut VecDeque<f64>, v: f64, max: usize) {
    if q.len() >= max.max(1) {
        q.pop_front();
    }
    q.push_back(v);
}

pub struct InFlight {
    live: std::sync::Arc<Live>,
    id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = lock(&self.live.in_flight).get_mut(&self.id) {
            *n -= 1;
        }
    }
}
