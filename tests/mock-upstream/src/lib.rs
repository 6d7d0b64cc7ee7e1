//! A fast, scriptable OpenAI-compatible upstream on 127.0.0.1 for modelgate's tests and
//! benchmarks: real HTTP, with latency, error statuses, `Retry-After`, connection resets,
//! streams that die mid-way, and a record of every request (path, key, body).
//!
//! Tests use it in-process ([`MockUpstream::start`]); the `mock-upstream` binary serves the
//! same thing for the Python SDK tests, the cluster tests and the benchmarks, scriptable
//! over `/__mock/*`.

mod reply;
mod server;

pub use reply::{Reply, ReplyKind};
pub use server::{MockUpstream, Record};
