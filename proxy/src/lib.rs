//! modelgate's proxy: a LiteLLM-compatible LLM gateway. [`app`] builds the HTTP surface over
//! an [`AppState`] whose config snapshot is swapped atomically on reload.

pub mod app;
pub mod attempt;
pub mod auth;
pub mod catalog;
pub mod client;
pub mod cluster;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod handlers;
pub mod health;
pub mod listing;
pub mod metrics;
pub mod mock;
pub mod relay;
pub mod restamp;
pub mod router;
pub mod state;
pub mod upstream;
pub mod wire;

pub use app::{admin, app};
pub use state::{AppState, Shared};
