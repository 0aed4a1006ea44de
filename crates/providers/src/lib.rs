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
//! Invariants: this crate holds no provider code of its own, only the registration
//! lines; it depends on `modelway-core` and the provider crates, and nothing depends on
//! it but the binary and embedders. Adding a built-in provider is its crate, its
//! optional dependency here (whose name is its feature, on by default) and one line in
//! [`builtin_registry`]; `cargo xtask new-provider NAME` writes all three.
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

/// Registers each factory whose cargo feature is on.
macro_rules! register {
    ($reg:ident; $($feature:literal => $factory:expr,)*) => {
        $(
            #[cfg(feature = $feature)]
            $reg.register($factory);
        )*
    };
}

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
    #[allow(unused_mut)] // with no feature on, nothing is registered
    let mut reg = ProviderRegistry::new();
    #[cfg(feature = "openai")]
    for f in modelway_openai::OpenAiFactory::all() {
        reg.register(f);
    }
    // One line per provider: the cargo feature it is behind, and its factory.
    register! { reg;
        "anthropic" => modelway_anthropic::AnthropicFactory,
        "gemini" => modelway_gemini::GeminiFactory,
        "mock" => modelway_mock::MockFactory,
    }
    reg
}

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
