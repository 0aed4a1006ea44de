//! modelway-core: the routing engine of the modelway LLM gateway.
//!
//! It holds the canonical OpenAI Chat Completions and embeddings models ([`chat`],
//! [`embed`]), the [`Call`] an ingress decodes a request into, the [`Provider`] trait
//! every upstream implements (one [`Attempt`] in, an [`Answer`] out), typed errors
//! ([`ProviderError`] upstream, [`GatewayError`] for clients), the config schema
//! ([`Config`]), model resolution ([`router`]), the [`engine`] (attempt loop, policies,
//! strategies, health, observers), the immutable [`Snapshot`] and the [`Gateway`]
//! facade — the one entry point, [`Gateway::execute`] (and [`Gateway::embed`]), that
//! the binary and embedding services both call — plus the SSE codec ([`sse`]) and the
//! [`kit`] an HTTP provider is written on (its dialect only; the plumbing is shared).
//!
//! Invariants: this crate knows no concrete provider and nothing of hyper's server
//! side. Providers depend on it; it depends on none of them.
//!
//! Start reading at [`Gateway::execute`], then [`engine`].
#![forbid(unsafe_code)]

pub mod call;
pub mod chat;
pub mod civil;
pub mod config;
pub mod dialect;
pub mod embed;
pub mod engine;
pub mod error;
mod gateway;
pub mod http_client;
pub mod json;
pub mod kit;
pub mod limits;
pub mod provider;
pub mod router;
mod snapshot;
pub mod splice;
pub mod sse;
pub mod stream;
pub mod trace;
pub mod translate;
pub mod usage;

pub use call::{Answer, Attempt, Call, CallMeta, ClientDialect, Operation, Timeouts};
pub use config::{ApiKey, Config, ConfigError, ProviderConfig};
pub use engine::{Engine, Observer};
pub use error::{GatewayError, ProviderError};
pub use gateway::Gateway;
pub use http_client::HttpClient;
pub use provider::{
    BuildError, ChunkStream, ModelInfo, ModelsCache, Provider, ProviderFactory, ProviderRegistry,
};
pub use snapshot::{ProviderEntry, Served, Snapshot};

/// Unix time in seconds, for `created` fields.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
