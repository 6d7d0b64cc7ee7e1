//! `modelgate-proxy`: serve a LiteLLM-format config from a file (reloaded when it changes)
//! or from a ConfigMap watched through the Kubernetes API (`--configmap`).

use anyhow::Context;
use axum::serve::ListenerExt;
use clap::Parser;
use modelgate_proxy::{
    Shared, admin, app,
    catalog::Catalog,
    cluster::{ClusterSource, lease::ReplicaLease, manage::ModelStore},
    config::{Defaults, watch::FileSource},
    health,
};
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(version, about = "A LiteLLM-compatible LLM gateway")]
struct Args {
    /// LiteLLM-format config file; reloaded whenever it changes.
    #[arg(
        long,
        env = "MODELGATE_CONFIG",
        required_unless_present = "configmap",
        conflicts_with = "configmap"
    )]
    config: Option<PathBuf>,
    /// The router ConfigMap to serve, `namespace/name` or `name` (in the pod's namespace),
    /// watched through the Kubernetes API together with the Secrets it references.
    #[arg(long, env = "MODELGATE_CONFIGMAP")]
    configmap: Option<String>,
    /// This replica's name in its Lease (default: the pod name, else host name and port).
    #[arg(long, env = "POD_NAME")]
    replica_id: Option<String>,
    /// The pod's UID (from the downward API). With it, the replica Lease is owned by the
    /// Pod named by --replica-id, so the garbage collector deletes the Lease of a pod that
    /// died without shutting down (only when the pod runs in the ConfigMap's namespace).
    #[arg(long, env = "POD_UID")]
    pod_uid: Option<String>,
    /// How long the replica Lease lives without renewal (it is renewed every third of this).
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    lease_duration: Duration,
    /// Let admins create, update and delete ModelDeployments through `/model/new`,
    /// `/model/update` and `/model/delete` (cluster mode only).
    #[arg(long, env = "MODELGATE_MODEL_MANAGEMENT")]
    model_management: bool,
    #[arg(long, default_value = "0.0.0.0", env = "MODELGATE_HOST")]
    host: String,
    #[arg(long, default_value_t = 4000, env = "MODELGATE_PORT")]
    port: u16,
    /// Unauthenticated port for probes and Prometheus (`/metrics`, `/health/*`); off if unset.
    #[arg(long, env = "MODELGATE_ADMIN_PORT")]
    admin_port: Option<u16>,
    /// Model facts in LiteLLM's model_prices_and_context_window.json format, instead of the
    /// built-in catalog.
    #[arg(long, env = "MODELGATE_MODEL_CATALOG")]
    model_catalog: Option<PathBuf>,
    /// Largest request body in bytes, unless the config sets general_settings.max_request_size_mb.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests and streams to finish.
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    drain_timeout: Duration,
    /// Log format: `text` or `json`.
    #[arg(long, default_value = "text", env = "MODELGATE_LOG_FORMAT")]
    log_format: String,
    /// Tokio worker threads (default: one per core).
    #[arg(long, env = "MODELGATE_WORKER_THREADS")]
    worker_threads: Option<usize>,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|f| *f >= 0.0 && f.is_finite())
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("not a number of seconds: {s}"))
}

/// mimalloc: about 200 allocations per request made the system allocator a fifth of the
/// CPU (docs/bench/findings.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    modelgate_crds::logging::init(&args.log_format);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads {
        rt.worker_threads(n);
    }
    rt.enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let catalog = match &args.model_catalog {
        Some(path) => Catalog::from_file(path)?,
        None => Catalog::builtin(),
    };
    let state =
        Shared::new().map_err(|e| anyhow::anyhow!("building the upstream HTTP client: {e}"))?;
    let defaults = Defaults {
        max_body_bytes: args.max_body_bytes,
        master_key_env: std::env::var("LITELLM_MASTER_KEY").ok(),
    };
    let catalog = Arc::new(catalog);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut lease_task = None;
    match (&args.config, &args.configmap) {
        (Some(path), _) => {
            let source = FileSource {
                path: path.clone(),
                defaults,
                catalog,
            };
            // A broken file at start-up is fatal: there is no last good config to fall back to.
            source
                .reload(&state)
                .map_err(|e| anyhow::anyhow!("cannot start: {e}"))?;
            tokio::spawn(source.watch(state.clone()));
        }
        (None, Some(cm)) => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API (kubeconfig or in-cluster)")?;
            let (namespace, name) = match cm.split_once('/') {
                Some((ns, name)) => (ns.to_string(), name.to_string()),
                None => (pod_namespace(&client), cm.clone()),
            };
            let identity = args
                .replica_id
                .clone()
                .unwrap_or_else(|| format!("{}-{}", host_name(), args.port));
            if args.model_management {
                let _ = state
                    .model_store
                    .set(ModelStore::new(client.clone(), &namespace));
            }
            let owner = match (&args.pod_uid, &args.replica_id) {
                // An owner in another namespace counts as absent: the GC would delete
                // the Lease at once.
                (Some(uid), Some(pod)) if pod_namespace(&client) == namespace => {
                    Some((pod.clone(), uid.clone()))
                }
                _ => None,
            };
            let lease = ReplicaLease::new(
                client.clone(),
                &namespace,
                &identity,
                &name,
                args.lease_duration,
            )
            .owned_by_pod(owner);
            lease_task = Some(tokio::spawn(lease.run(state.clone(), stop_rx.clone())));
            tracing::info!(%namespace, configmap = %name, replica = %identity, "serving a ConfigMap");
            // Readiness stays false until the first valid config arrives.
            tokio::spawn(
                ClusterSource {
                    client,
                    namespace,
                    name,
                    defaults,
                    catalog,
                }
                .run(state.clone()),
            );
        }
        (None, None) => anyhow::bail!("give --config FILE or --configmap NAMESPACE/NAME"),
    }
    tokio::spawn(health::run(state.clone()));

    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .with_context(|| format!("bad listen address {}:{}", args.host, args.port))?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "modelgate proxy listening");
    if let Some(port) = args.admin_port {
        let admin_addr = SocketAddr::new(addr.ip(), port);
        let admin_listener = TcpListener::bind(admin_addr)
            .await
            .with_context(|| format!("cannot listen on {admin_addr}"))?;
        let admin_app = admin(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(admin_listener, admin_app).await;
        });
    }

    // Without TCP_NODELAY, Nagle holds back small writes (every SSE chunk) until the
    // client's delayed ACK: ~40 ms stalls in streams.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: draining in-flight requests");
            let _ = stop_tx.send(true);
        })
        .into_future();
    let drain = args.drain_timeout;
    let mut stop_rx = stop_rx;
    tokio::select! {
        r = server => r.context("server failed")?,
        _ = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
            tokio::time::sleep(drain).await;
        } => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
    if let Some(task) = lease_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(())
}

/// The pod's namespace in a cluster, else the kubeconfig's.
fn pod_namespace(client: &kube::Client) -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string())
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "proxy".into())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
