//! `mock-upstream`: serves the scriptable OpenAI-compatible mock on a port until killed.

use clap::Parser;
use modelgate_mock_upstream::{MockUpstream, Reply, ReplyKind};
use std::net::SocketAddr;

#[derive(Parser)]
#[command(about = "A fast, scriptable OpenAI-compatible upstream for tests and benchmarks")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
    /// Delay before every default response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Answer every request with this HTTP error status instead of a normal response.
    #[arg(long)]
    status: Option<u16>,
    /// Do not keep a record of requests (flat memory under benchmark load).
    #[arg(long)]
    no_record: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n);
    }
    rt.enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut default = Reply::ok().with_latency(args.latency_ms);
    if let Some(status) = args.status {
        default.kind = ReplyKind::Error {
            status,
            message: format!("mock error {status}"),
            code: None,
        };
    }
    let mock = MockUpstream::bind(args.listen, default, !args.no_record).await?;
    eprintln!("mock-upstream listening on {}", mock.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
