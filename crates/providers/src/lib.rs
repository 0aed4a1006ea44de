//! modelway-providers: the providers modelway ships, gathered behind one
//! [`builtin_registry`], so the gateway binary and a service embedding
//! `modelway-core` get the same set without copying the list.
//!
//! Each provider is a cargo feature, all on by default: `openai` (OpenAI and every
//! OpenAI-compatible preset: OpenRouter, Groq, Together, Mistral, DeepSeek, Fireworks,
//! xAI, Ollama, vLLM), `anthropic`, `gemini` and `mock` (the in-process deterministic
//! provider). An embedder that wants only some turns the defaults off:
//!
//! ```toml
//! modelway-providers = { version = "0.1", default-features = false, features = ["anthropic"] }
//! ```
//!
//! Invariants: this crate holds no provider code of its own, only its list of
//! dependencies; it depends on `modelway-core` and the provider crates, and nothing depends on
//! it but the binary and embedders. Every `modelway-*` dependency here but
//! `modelway-core` is a provider crate: `build.rs` reads `Cargo.toml` and
//! [`builtin_registry`] calls each one's `pub fn register(&mut ProviderRegistry)`,
//! behind the feature that turns it on when it is optional. So adding a provider is its
//! crate and one line, its dependency here; `cargo xtask new-provider NAME` writes both.
//! (To put it behind a feature of its own as the shipped ones are, add
//! `optional = true` and the feature.)
#![forbid(unsafe_code)]

use modelway_core::ProviderRegistry;

#[cfg(feature = "anthropic")]
pub use modelway_anthropic as anthropic;
#[cfg(feature = "gemini")]
pub use modelway_gemini as gemini;
#[cfg(feature = "mock")]
pub use modelway_mock as mock;
#[cfg(feature = "openai")]
pub use modelway_openai as openai;

/// Every provider kind this build of the crate holds (its enabled features), ready to
/// hand to [`modelway_core::Gateway`]. Add one of your own with
/// [`ProviderRegistry::register`].
///
/// ```
/// let registry = modelway_providers::builtin_registry();
/// # #[cfg(all(feature = "openai", feature = "mock"))]
/// assert!(registry.kinds().any(|k| k == "openai") && registry.kinds().any(|k| k == "mock"));
/// ```
pub fn builtin_registry() -> ProviderRegistry {
    let mut registry = ProviderRegistry::new();
    register_dependencies(&mut registry);
    registry
}

// `register_dependencies`: each provider crate's `register`, in `Cargo.toml`'s order,
// written by `build.rs` from this crate's `[dependencies]`.
include!(concat!(env!("OUT_DIR"), "/registry.rs"));

#[cfg(test)]
mod tests {
    #[test]
    fn each_enabled_feature_registers_its_kinds_and_no_other() {
        let registry = super::builtin_registry();
        let has = |kind: &str| registry.kinds().any(|k| k == kind);
        assert_eq!(has("openai"), cfg!(feature = "openai"));
        assert_eq!(has("groq"), cfg!(feature = "openai"));
        assert_eq!(has("anthropic"), cfg!(feature = "anthropic"));
        assert_eq!(has("gemini"), cfg!(feature = "gemini"));
        assert_eq!(has("mock"), cfg!(feature = "mock"));
    }
}
