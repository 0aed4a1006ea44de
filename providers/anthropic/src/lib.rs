//! modelway-anthropic: the provider for Anthropic's Messages API, translating
//! OpenAI Chat Completions requests, responses and streams to and from it.
//! (Skeleton: being built.)
#![forbid(unsafe_code)]

use std::sync::Arc;

use modelway_core::{BuildError, HttpClient, Provider, ProviderConfig, ProviderFactory};

/// Builds Anthropic providers for `kind = "anthropic"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnthropicFactory;

impl ProviderFactory for AnthropicFactory {
    fn kind(&self) -> &str {
        "anthropic"
    }

    fn build(
        &self,
        cfg: &ProviderConfig,
        _http: &HttpClient,
    ) -> Result<Arc<dyn Provider>, BuildError> {
        Err(BuildError(format!(
            "provider `{}`: kind `anthropic` is not built yet",
            cfg.name
        )))
    }
}
