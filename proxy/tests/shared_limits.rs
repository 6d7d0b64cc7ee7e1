//! Proxy processes on one config sharing a real redis-server: an rpm limit holds for the
//! whole gateway, a cooldown on one replica is honoured by the others, and a password full
//! of URL characters works and is never shown. Outages are in `redis_outage.rs`.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod redis_support;

use modelgate_mock_upstream::{MockUpstream, Reply};
use redis_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_limits_and_cooldowns() {
    let redis_port = free_port();
    let _server = redis(redis_port, None);
    let bad = MockUpstream::start(Reply::error(500, "broken deployment"))
        .await
        .unwrap();
    let good = MockUpstream::start(Reply::ok()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "general_settings: {{background_health_checks: false}}\nrouter_settings:\n  routing_strategy: usage-based-routing-v2\n  redis_host: 127.0.0.1\n  redis_port: {redis_port}\n  cooldown_time: 30\n  num_retries: 1\n\
             model_list:\n\
             \x20 - {{model_name: limited, litellm_params: {{model: openai/x, mock_response: ok, rpm: 60}}, model_info: {{id: limited}}}}\n\
             \x20 - {{model_name: pair, litellm_params: {{model: openai/gpt-4o, api_base: '{}', api_key: k, rpm: 100000}}, model_info: {{id: bad}}}}\n\
             \x20 - {{model_name: pair, litellm_params: {{model: openai/gpt-4o, api_base: '{}', api_key: k, rpm: 100000}}, model_info: {{id: good}}}}\n\
             \x20 - {{model_name: plenty, litellm_params: {{model: openai/x, mock_response: ok, rpm: 1000000}}, model_info: {{id: plenty}}}}\n",
            bad.url(),
            good.url()
        ),
    )
    .unwrap();
    let replicas: Vec<(Kill, String)> = (0..3).map(|_| proxy(&config, &[], None)).collect();
    let bases: Vec<String> = replicas.iter().map(|r| r.1.clone()).collect();
    let http = reqwest::Client::new();
    for b in &bases {
        ready(&http, b).await;
    }

    // rpm 60 across three replicas: 150 requests spread over them, 10 at a time.
    fresh_minute(20).await;
    let mut tasks = Vec::new();
    for i in 0..150 {
        let base = bases[i % 3].clone();
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let r = chat(&http, &base, "limited").await;
            let retry_after = r.headers().get("retry-after").is_some();
            (r.status().as_u16(), retry_after)
        }));
    }
    let mut admitted = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => admitted += 1,
            (429, true) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    println!(
        "rpm 60 over 3 replicas: {admitted} admitted, {refused} refused with 429 + retry-after"
    );
    assert!((59..=61).contains(&admitted), "admitted {admitted}");
    assert_eq!(admitted + refused, 150);

    // A cooldown on one replica: the others avoid the deployment too.
    let took = cooldown_is_shared(&http, &bases, &bad).await;
    println!(
        "cooldown reached the other replicas in {} ms",
        took.as_millis()
    );
}

/// A password with every URL-special character, read through `os.environ/`: both replicas
/// authenticate and share the limit, and the password appears in no log line, error,
/// readiness answer or metric, even while Redis is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_with_url_characters_shares_limits_and_is_never_shown() {
    const PW: &str = "s3cr:t@h/st#frag%41?q=1&x";
    let redis_port = free_port();
    let server = redis(redis_port, Some(PW));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "general_settings: {{background_health_checks: false}}\nrouter_settings:\n  routing_strategy: usage-based-routing-v2\n  redis_host: 127.0.0.1\n  redis_port: {redis_port}\n  redis_password: os.environ/MG_TEST_REDIS_PW\n\
             model_list:\n\
             \x20 - {{model_name: limited, litellm_params: {{model: openai/x, mock_response: ok, rpm: 20}}, model_info: {{id: limited}}}}\n"
        ),
    )
    .unwrap();
    let env = [("MG_TEST_REDIS_PW", PW), ("RUST_LOG", "debug")];
    let logs: Vec<_> = (0..2)
        .map(|i| dir.path().join(format!("{i}.log")))
        .collect();
    let replicas: Vec<(Kill, String)> =
        logs.iter().map(|l| proxy(&config, &env, Some(l))).collect();
    let bases: Vec<String> = replicas.iter().map(|r| r.1.clone()).collect();
    let http = reqwest::Client::new();
    for b in &bases {
        let v = ready(&http, b).await;
        assert_eq!(
            v["cache"]["url"],
            format!("redis://***@127.0.0.1:{redis_port}/0"),
            "{v}"
        );
    }

    fresh_minute(15).await;
    let (mut admitted, mut refused) = (0, 0);
    for i in 0..40 {
        match chat(&http, &bases[i % 2], "limited")
            .await
            .status()
            .as_u16()
        {
            200 => admitted += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        (20..=21).contains(&admitted),
        "admitted {admitted} of rpm 20"
    );
    assert_eq!(refused, 40 - admitted);
    let counted = shared_count(redis_port, Some(PW), "modelgate:*limited*:rpm:*");
    assert!(
        counted >= 20,
        "the password-protected redis counted {counted}"
    );

    // Down: the errors readiness and metrics report still hold no password.
    drop(server);
    for b in &bases {
        let v = await_redis(&http, b, false).await;
        assert!(v["cache"]["error"].is_string(), "{v}");
        assert!(!v.to_string().contains("s3cr"), "{v}");
        let m = metrics(&http, b).await;
        assert!(counter(&m, "modelgate_redis_errors_total") > 0.0, "{m}");
        assert!(!m.contains("s3cr"), "password in metrics");
    }
    drop(replicas);
    for l in &logs {
        let text = std::fs::read_to_string(l).unwrap();
        assert!(
            text.contains("redis unavailable"),
            "log not captured: {text}"
        );
        assert!(!text.contains("s3cr"), "password in the log:\n{text}");
    }
}
