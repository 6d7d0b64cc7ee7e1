//! Log setup shared by both binaries: `RUST_LOG` (default `info`), text or JSON lines on
//! stderr.

/// Installs the global subscriber. `format` is `json` or anything else for text.
pub fn init(format: &str) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let mut filter = tracing_subscriber::EnvFilter::new(&spec);
    // kube's client logs every failed request as an error; our watches report failures
    // once, with context, so its line is noise unless asked for.
    if !spec.contains("kube_client")
        && let Ok(d) = "kube_client::client::builder=off".parse()
    {
        filter = filter.add_directive(d);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
