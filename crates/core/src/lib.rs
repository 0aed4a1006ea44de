//! modelway-core: the routing engine of the modelway LLM gateway, as a library.
//!
//! Three layers are public, one per kind of user:
//!
//! - **Embedding the gateway** (the crate root): build a [`Gateway`] from a [`Config`]
//!   (parsed from TOML with [`Config::from_toml_str`], or from code with
//!   [`Config::from_value`]) and a [`ProviderRegistry`] (the shipped providers are in
//!   the `modelway-providers` crate), then serve [`Call`]s with [`Gateway::execute`],
//!   [`Gateway::execute_stream`] and [`Gateway::embed`]; swap the config at runtime with
//!   [`Gateway::set_config`] and read the health of every target with
//!   [`Gateway::health_report`]. The requests and answers are the canonical OpenAI
//!   models of [`chat`] and [`embed`]; failures are [`GatewayError`]s.
//! - **Writing a provider** ([`provider`], [`kit`]): the [`provider::Provider`] trait
//!   (one attempt in, an answer out), its [`provider::ProviderFactory`], and what they
//!   are built from and return; and the [`kit`] an HTTP provider is written on — its
//!   dialect only, the plumbing (sending, upstream errors, the stream prelude, model
//!   listing) shared. `cargo xtask new-provider NAME` scaffolds one on it
//!   (`docs/adding-a-provider.md`).
//! - **The config schema** ([`config`]): the validated types a [`Config`] is made of.
//!
//! Everything else is internal to modelway: the modules and items marked
//! `#[doc(hidden)]` are public only so that the gateway binary and the provider
//! crates of this workspace can share them, and may change in any release.
//!
//! ```
//! use modelway_core::{Config, Gateway, ProviderRegistry};
//!
//! let config = Config::from_toml_str(
//!     r#"
//!     [providers.local]
//!     kind = "mock"
//!
//!     [[routes]]
//!     name = "fast"
//!     targets = ["local/mock-fast"]
//!     "#,
//! )?;
//! // No provider kind registered: building the gateway says which is missing.
//! let err = Gateway::new(config, ProviderRegistry::new()).unwrap_err();
//! assert!(err.to_string().contains("mock"), "{err}");
//! # Ok::<(), modelway_core::ConfigError>(())
//! ```
//!
//! Invariants: this crate knows no concrete provider and nothing of hyper's server
//! side; no hyper or toml type appears in its public (non-hidden) API, and its
//! top-level modules do not import each other in a cycle (both checked by
//! `tests/api_surface.rs`). Providers depend on it; it depends on none of them.
//!
//! Start reading at [`Gateway::execute`], then the `engine` module.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The layers an embedder and a provider author see.
pub mod chat;
pub mod config;
pub mod embed;
pub mod kit;
pub mod provider;

// Internals shared with the binary and the provider crates of this workspace.
#[doc(hidden)]
pub mod call;
#[doc(hidden)]
pub mod civil;
#[doc(hidden)]
pub mod dialect;
#[doc(hidden)]
pub mod engine;
#[doc(hidden)]
pub mod error;
mod failure;
mod gateway;
#[doc(hidden)]
pub mod health;
#[doc(hidden)]
pub mod http_client;
#[doc(hidden)]
pub mod json;
#[doc(hidden)]
pub mod limits;
#[doc(hidden)]
pub mod policy;
#[doc(hidden)]
pub mod router;
mod snapshot;
#[doc(hidden)]
pub mod splice;
#[doc(hidden)]
pub mod sse;
#[doc(hidden)]
pub mod stream;
#[doc(hidden)]
pub mod trace;
#[doc(hidden)]
pub mod translate;
#[doc(hidden)]
pub mod usage;

/// UTF-8 text held in `Bytes` (the `bytestring` crate): what stream events and chunks
/// carry their text in, so it can be shared rather than copied.
pub use bytestring::ByteString;
pub use call::{Call, CallMeta, ClientDialect, Operation};
pub use config::{ApiKey, Config, ConfigError};
pub use error::{FailureClass, GatewayError, ProviderError};
pub use gateway::Gateway;
pub use health::HealthReport;
pub use provider::{ChunkStream, ProviderRegistry};
pub use snapshot::Served;
pub use trace::SpanContext;

// The provider author's names, also at the root for the crates that import them from
// there; documented in [`provider`].
#[doc(hidden)]
pub use engine::{Engine, Observer};
#[doc(hidden)]
pub use provider::{
    Answer, Attempt, BuildError, HttpClient, ModelInfo, ModelsCache, Provider, ProviderConfig,
    ProviderFactory, Timeouts,
};
#[doc(hidden)]
pub use snapshot::{ProviderEntry, Snapshot};

/// Unix time in seconds, for `created` fields.
#[doc(hidden)]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
