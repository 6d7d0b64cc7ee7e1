//! `modelgate-operator`: reconcile ModelDeployments and ModelGroupAliases into each
//! namespace's router ConfigMap.

use anyhow::Context as _;
use clap::Parser;
use modelgate_crds::config::Config;
use modelgate_operator::{
    admin, controller::Controller, leader::LeaderElection, metrics::Metrics,
    proxy_access::ProxyAccess,
};
use std::{
    path::PathBuf,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Reconciles modelgate resources into router ConfigMaps"
)]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "MODELGATE_NAMESPACE")]
    namespace: Option<String>,
    /// Name of the router ConfigMap written in each namespace.
    #[arg(long, default_value = "modelgate-router", env = "MODELGATE_CONFIGMAP")]
    configmap: String,
    /// Base LiteLLM config (router_settings, litellm_settings, ...) merged under the rendered model_list.
    #[arg(long, env = "MODELGATE_BASE_CONFIG")]
    base_config: Option<PathBuf>,
    /// Port for /metrics, /healthz and /readyz.
    #[arg(long, default_value_t = 8080, env = "MODELGATE_ADMIN_PORT")]
    admin_port: u16,
    /// Elect a leader through a Lease so that several replicas can run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    #[arg(long, default_value = "modelgate-operator")]
    lease_name: String,
    /// Seconds a leader's Lease is valid without renewal; the standby takes over after it.
    #[arg(long, default_value_t = 8)]
    lease_duration: u64,
    /// This replica's identity in the Lease (default: POD_NAME or host name plus pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// The proxies' ServiceAccount: when given, each gateway namespace gets a Role and
    /// RoleBinding (`<configmap>-proxy-secrets`) that let it read exactly the Secrets its
    /// config references, and nothing else.
    #[arg(long, env = "MODELGATE_PROXY_SERVICE_ACCOUNT")]
    proxy_service_account: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    modelgate_crds::logging::init(&args.log_format);
    let base = match &args.base_config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::from_yaml(&text)
                .with_context(|| format!("parsing base config {}", p.display()))?
        }
        None => Config::default(),
    };
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let metrics = Arc::new(Metrics::default());
    let controller = Controller::new(
        client.clone(),
        args.namespace.as_deref(),
        args.configmap.clone(),
        base,
        metrics.clone(),
        args.proxy_service_account
            .clone()
            .map(|service_account| ProxyAccess { service_account }),
    );
    let ready = controller.ready.clone();
    let leading = Arc::new(AtomicBool::new(!args.leader_election));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let admin_app = admin::router(admin::AdminState {
        metrics: metrics.clone(),
        ready,
    });
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", args.admin_port))
        .await
        .with_context(|| format!("listening on admin port {}", args.admin_port))?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, admin_app).await;
    });

    let election = if args.leader_election {
        let identity = args.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let ns = args
            .lease_namespace
            .clone()
            .or(args.namespace.clone())
            .unwrap_or_else(|| "default".into());
        let le = LeaderElection::new(
            client,
            &ns,
            &args.lease_name,
            identity,
            Duration::from_secs(args.lease_duration),
        );
        let (leading, rx, m) = (leading.clone(), stop_rx.clone(), metrics.clone());
        Some(tokio::spawn(async move {
            let watch_leading = leading.clone();
            let gauge = tokio::spawn(async move {
                loop {
                    m.leader.set(i64::from(
                        watch_leading.load(std::sync::atomic::Ordering::Relaxed),
                    ));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
            le.run(leading, rx).await;
            gauge.abort();
        }))
    } else {
        metrics.leader.set(1);
        None
    };
    let worker = tokio::spawn(controller.run(leading, stop_rx));

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = worker.await;
    if let Some(e) = election {
        let _ = e.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}
