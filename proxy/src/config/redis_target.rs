//! The Redis that shares limits and cooldowns, as the config names it: `redis_url`, or
//! `redis_host` + `redis_port` + `redis_password` (router_settings first, then
//! litellm_settings.cache_params, as LiteLLM reads them). The connection is built from its
//! parts, so a password holding `@ : / # %` is passed to Redis exactly as written, and it
//! is never printed: logs and readiness show [`RedisTarget::redacted`].

use super::ConfigError;
use crate::router::shared::OnOutage;
use modelgate_crds::config::Config;
use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use serde_json::Value;
use std::{str::FromStr, time::Duration};

/// The longest a request waits for Redis before going on without it, unless the config
/// sets `redis_timeout` (seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct RedisTarget {
    pub info: ConnectionInfo,
    /// The address without credentials, for logs and readiness.
    pub redacted: String,
    /// A hash of everything, password included, to tell a changed config apart.
    pub fingerprint: String,
    pub on_outage: OnOutage,
    /// How long a request waits for Redis (`redis_timeout`).
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("redis", &self.redacted)
            .field("on_outage", &self.on_outage)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PartialEq for RedisTarget {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
            && self.on_outage == other.on_outage
            && self.timeout == other.timeout
    }
}

/// The Redis settings of a config, if it names a Redis.
pub fn redis_target(config: &Config) -> Result<Option<RedisTarget>, ConfigError> {
    let rs = &config.router_settings.extra;
    let cache = config
        .litellm_settings
        .get("cache_params")
        .and_then(Value::as_object);
    let get = |k: &str| -> Option<String> {
        let v = rs.get(k).or_else(|| cache.and_then(|c| c.get(k)))?;
        match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let invalid = |m: String| ConfigError::Invalid(m);
    let info = match (get("redis_url"), get("redis_host")) {
        // The URL's own percent-encoding is decoded by the redis crate; the error never
        // quotes the URL, which may hold the password.
        (Some(url), _) => ConnectionInfo::from_str(&url)
            .map_err(|e| invalid(format!("redis_url is not a usable redis URL: {e}")))?,
        (None, Some(host)) => {
            let port = match get("redis_port") {
                None => 6379,
                Some(p) => p
                    .parse::<u16>()
                    .map_err(|_| invalid(format!("redis_port must be a port number, got {p}")))?,
            };
            ConnectionInfo {
                addr: ConnectionAddr::Tcp(host, port),
                redis: RedisConnectionInfo {
                    username: get("redis_username"),
                    password: get("redis_password"),
                    ..RedisConnectionInfo::default()
                },
            }
        }
        (None, None) => return Ok(None),
    };
    let on_outage = match get("redis_failure_mode").as_deref() {
        None | Some("open") => OnOutage::Open,
        Some("closed") => OnOutage::Closed,
        Some(other) => {
            return Err(invalid(format!(
                "router_settings.redis_failure_mode must be open or closed, got {other:?}"
            )));
        }
    };
    let timeout = match get("redis_timeout") {
        None => DEFAULT_TIMEOUT,
        Some(t) => match t.parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() && s <= 60.0 => Duration::from_secs_f64(s),
            _ => {
                return Err(invalid(format!(
                    "router_settings.redis_timeout must be seconds in (0, 60], got {t}"
                )));
            }
        },
    };
    Ok(Some(RedisTarget {
        redacted: redact(&info),
        fingerprint: fingerprint(&info),
        info,
        on_outage,
        timeout,
    }))
}

fn redact(info: &ConnectionInfo) -> String {
    let r = &info.redis;
    let creds = if r.username.is_some() || r.password.is_some() {
        "***@"
    } else {
        ""
    };
    match &info.addr {
        ConnectionAddr::Tcp(host, port) => format!("redis://{creds}{host}:{port}/{}", r.db),
        ConnectionAddr::TcpTls { host, port, .. } => {
            format!("rediss://{creds}{host}:{port}/{}", r.db)
        }
        ConnectionAddr::Unix(path) => format!("redis+unix://{creds}{}", path.display()),
    }
}

fn fingerprint(info: &ConnectionInfo) -> String {
    let r = &info.redis;
    super::hash_text(&format!(
        "{:?}\n{}\n{:?}\n{:?}\n{:?}",
        info.addr, r.db, r.username, r.password, r.protocol
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn target(yaml: &str) -> RedisTarget {
        let config = Config::from_yaml(yaml).unwrap();
        redis_target(&config).unwrap().unwrap()
    }

    #[test]
    fn a_password_with_url_characters_is_passed_as_written_and_never_shown() {
        let pw = "p@ss:w/rd#1%20?x";
        let t = target(&format!(
            "model_list: []\nrouter_settings: {{redis_host: cache.local, redis_port: 6380, redis_password: '{pw}'}}\n"
        ));
        assert_eq!(t.info.redis.password.as_deref(), Some(pw));
        assert!(
            matches!(&t.info.addr, ConnectionAddr::Tcp(h, 6380) if h == "cache.local"),
            "{:?}",
            t.info.addr
        );
        assert_eq!(t.redacted, "redis://***@cache.local:6380/0");
        assert!(!format!("{t:?}").contains("ss:w"), "{t:?}");
        assert_eq!(t.timeout, DEFAULT_TIMEOUT);
        let other = target(
            "model_list: []\nrouter_settings: {redis_host: cache.local, redis_port: 6380, redis_password: other}\n",
        );
        assert_ne!(t, other, "a changed password must reconnect");
    }

    #[test]
    fn a_url_is_percent_decoded_and_cache_params_are_read() {
        let t = target(
            "model_list: []\nrouter_settings: {redis_url: 'redis://:p%40ss%3Aw@127.0.0.1:7000/2', redis_timeout: 0.05}\n",
        );
        assert_eq!(t.info.redis.password.as_deref(), Some("p@ss:w"));
        assert_eq!(t.redacted, "redis://***@127.0.0.1:7000/2");
        assert_eq!(t.timeout, Duration::from_millis(50));
        let t = target(
            "model_list: []\nlitellm_settings: {cache_params: {redis_host: h, redis_port: 1, redis_password: x}}\n",
        );
        assert_eq!(t.info.redis.password.as_deref(), Some("x"));
        assert_eq!(t.redacted, "redis://***@h:1/0");
    }

    #[test]
    fn bad_values_are_refused_without_quoting_the_url() {
        for rs in [
            "{redis_url: 'nothing://:secret@h'}",
            "{redis_host: h, redis_port: many}",
            "{redis_host: h, redis_timeout: 0}",
            "{redis_host: h, redis_failure_mode: maybe}",
        ] {
            let config =
                Config::from_yaml(&format!("model_list: []\nrouter_settings: {rs}\n")).unwrap();
            let e = redis_target(&config).unwrap_err().to_string();
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
