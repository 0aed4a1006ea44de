//! The modelway gateway binary's library half: the HTTP server (raw hyper 1.x,
//! HTTP/1.1 and h2c), its handlers, gateway keys, config loading and reloading.
//!
//! It wires `modelway-core` to the built-in providers (`modelway-providers`); nothing here knows a
//! wire format beyond OpenAI's, which it serves. Start at [`server::serve`], then
//! [`http::handle`].
#![forbid(unsafe_code)]

pub mod app;
pub mod budgets;
pub mod http;
pub mod ledger;
pub mod limits;
pub mod reload;
pub mod server;
pub mod telemetry;
pub mod usage;

/// Every provider kind built into the binary: the registry of `modelway-providers`,
/// re-exported so the binary's callers keep one name for it.
pub use modelway_providers::builtin_registry;
