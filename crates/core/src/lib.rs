//! modelway-core: the routing engine of the modelway LLM gateway.
//!
//! It holds the canonical OpenAI Chat Completions model ([`chat`]), the [`Provider`]
//! trait every upstream implements, typed errors ([`ProviderError`] upstream,
//! [`GatewayError`] for clients), the config schema ([`Config`]), model resolution
//! ([`router`]), the immutable [`Snapshot`] and the [`Gateway`] facade that embedding
//! services call, plus the SSE codec ([`sse`]).
//!
//! Invariants: this crate knows no concrete provider and nothing of hyper's server
//! side. Providers depend on it; it depends on none of them.
//!
//! Start reading at [`Gateway`], then [`Snapshot::chat`].
#![forbid(unsafe_code)]

pub mod chat;
pub mod config;
pub mod error;
mod gateway;
pub mod http_client;
pub mod json;
pub mod provider;
pub mod router;
mod snapshot;
pub mod sse;
pub mod stream;
pub mod translate;

pub use config::{ApiKey, Config, ConfigError, ProviderConfig};
pub use error::{GatewayError, ProviderError};
pub use gateway::Gateway;
pub use http_client::HttpClient;
pub use provider::{
    BuildError, ChunkStream, ModelInfo, ModelsCache, Provider, ProviderFactory, ProviderRegistry,
    RequestContext,
};
pub use snapshot::{ProviderEntry, Served, Snapshot};

/// Unix time in seconds, for `created` fields.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
