//! The kinds of call the attempt loop serves — chat completions and embeddings — and
//! the little that differs between them: which model the request names, what the
//! OpenRouter fields and telemetry parameters are, and which [`Provider`] method one
//! attempt calls. Everything else (the plan, strategies, health, quotas, retries,
//! fallback, hedging, deadlines, observers) is the same loop for both.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::call::{Answer, Attempt, Operation};
use crate::chat::{ChatRequest, Completion};
use crate::embed::{EmbedRequest, Embeddings};
use crate::error::{GatewayError, ProviderError};
use crate::provider::{ChunkStream, Provider};

use super::observer::RequestParams;
use crate::router::openrouter::Hints;

/// A JSON answer of either kind, or a committed stream.
// See `Completion`: a JSON answer is moved, not boxed.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Output {
    Json(Completion),
    Stream(ChunkStream),
    Embeddings(Embeddings),
}

/// A request the engine serves. Sealed: implemented for [`ChatRequest`] and
/// [`EmbedRequest`] only.
pub(crate) trait RequestKind:
    Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// What observers and telemetry call it.
    const OPERATION: Operation;

    /// The model the client named (the routing key).
    fn model(&self) -> &str;

    /// OpenRouter's request fields (`models`, `provider.*`), when it has any.
    fn hints(&self) -> Result<Option<Hints>, GatewayError> {
        Ok(None)
    }

    /// The parameters telemetry reports with each attempt.
    fn params(&self) -> RequestParams {
        RequestParams::default()
    }

    /// The most output tokens it may cost (for a quota's token estimate).
    fn max_output_tokens(&self) -> Option<u64> {
        None
    }

    /// One JSON attempt at `provider`.
    fn answer<'a>(
        provider: &'a dyn Provider,
        attempt: &'a Attempt<'a, Self>,
    ) -> impl Future<Output = Result<Answer<Output>, ProviderError>> + Send + 'a;

    /// One streamed attempt at `provider`; only chat streams.
    fn stream<'a>(
        provider: &'a dyn Provider,
        attempt: &'a Attempt<'a, Self>,
    ) -> impl Future<Output = Result<Answer<ChunkStream>, ProviderError>> + Send + 'a;
}

impl RequestKind for ChatRequest {
    const OPERATION: Operation = Operation::Chat;

    fn model(&self) -> &str {
        &self.model
    }

    fn hints(&self) -> Result<Option<Hints>, GatewayError> {
        Hints::of(self)
    }

    fn params(&self) -> RequestParams {
        RequestParams::of(self)
    }

    fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    async fn answer<'a>(
        provider: &'a dyn Provider,
        attempt: &'a Attempt<'a, Self>,
    ) -> Result<Answer<Output>, ProviderError> {
        Ok(provider.chat(attempt).await?.map(Output::Json))
    }

    fn stream<'a>(
        provider: &'a dyn Provider,
        attempt: &'a Attempt<'a, Self>,
    ) -> impl Future<Output = Result<Answer<ChunkStream>, ProviderError>> + Send + 'a {
        provider.chat_stream(attempt)
    }
}

impl RequestKind for EmbedRequest {
    const OPERATION: Operation = Operation::Embeddings;

    fn model(&self) -> &str {
        &self.model
    }

    async fn answer<'a>(
        provider: &'a dyn Provider,
        attempt: &'a Attempt<'a, Self>,
    ) -> Result<Answer<Output>, ProviderError> {
        Ok(provider.embed(attempt).await?.map(Output::Embeddings))
    }

    async fn stream<'a>(
        _provider: &'a dyn Provider,
        _attempt: &'a Attempt<'a, Self>,
    ) -> Result<Answer<ChunkStream>, ProviderError> {
        Err(ProviderError::InvalidRequest {
            message: "embeddings do not stream".to_owned(),
            param: Some("stream".to_owned()),
        })
    }
}
