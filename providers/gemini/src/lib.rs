//! modelway-gemini: the provider for Google Gemini generateContent, translating
//! OpenAI Chat Completions requests, responses and streams to and from it.
//! (Skeleton: being built.)
#![forbid(unsafe_code)]

use std::sync::Arc;

use modelway_core::{BuildError, HttpClient, Provider, ProviderConfig, ProviderFactory};

/// Builds Gemini providers for `kind = "gemini"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GeminiFactory;

impl ProviderFactory for GeminiFactory {
    fn kind(&self) -> &str {
        "gemini"
    }

    fn build(
        &self,
        cfg: &ProviderConfig,
        _http: &HttpClient,
    ) -> Result<Arc<dyn Provider>, BuildError> {
        Err(BuildError(format!(
            "provider `{}`: kind `gemini` is not built yet",
            cfg.name
        )))
    }
}
