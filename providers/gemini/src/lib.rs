//! modelway-gemini: the provider for the Google Gemini Developer API
//! (`POST {base_url}/{api_version}/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`), translating OpenAI Chat Completions requests,
//! responses and streams to and from it (WIRE.md §3, §4.2–§4.6), and OpenAI embeddings
//! to and from `:batchEmbedContents` (§9.3).
//!
//! Invariants:
//! - Depends only on `modelway-core`; knows nothing of the gateway binary.
//! - The API key travels only in the `x-goog-api-key` header (marked sensitive), never
//!   in the URL, so it cannot reach logs, traces or error messages.
//! - Translation is loud: a parameter Gemini cannot express is a
//!   [`ProviderError::InvalidRequest`] naming it, unless the provider is configured
//!   `drop_unsupported = true`, in which case it is dropped and reported in the
//!   [`Answer`]'s `dropped` (`x-modelway-dropped-params`). A *hint* — a parameter
//!   that only tunes how the model answers ([`modelway_core::translate::HINTS`]) — is
//!   dropped and reported whatever the setting.
//! - Translation is lossless where the OpenAI format has room: Gemini's
//!   `thoughtSignature`s come back on each tool call (and on the message, for a signed
//!   text part) as `extra_content.google.thought_signature` — the field Google's own
//!   OpenAI-compatible endpoint uses — and are replayed from there on the next turn.
//!   Thought summaries come back as `reasoning_content`.
//! - Gemini sends no tool-call ids (or short ones of its own): calls without one get a
//!   fresh, process-unique `call_…` id; a tool message's `tool_call_id` is mapped back
//!   to its function name through the assistant message that made the call.
//! - Streams are translated event by event, as each arrives; every event is parsed
//!   once into borrowed typed structs.
//!
//! Parameters (OpenAI → Gemini). *dropped*: not sent, listed in
//! `x-modelway-dropped-params`. *400*: refused naming it, or dropped and listed with
//! `drop_unsupported = true`.
//!
//! | OpenAI | Gemini | when Gemini cannot express it |
//! |---|---|---|
//! | `max_completion_tokens`, `max_tokens` | `generationConfig.maxOutputTokens` | — |
//! | `temperature`, `top_p`, `stop`, `n`, `seed`, `presence_penalty`, `frequency_penalty` | `temperature`, `topP`, `stopSequences`, `candidateCount`, `seed`, `presencePenalty`, `frequencyPenalty` | — |
//! | `tools`, `tool_choice` | `functionDeclarations`, `functionCallingConfig` (`AUTO`, `NONE`, `ANY`, `VALIDATED`, `allowedFunctionNames`) | custom tools: 400 |
//! | `parallel_tool_calls: false` | — | 400 |
//! | `response_format: json_object` | `responseMimeType: application/json` | — |
//! | `response_format: json_schema` | `responseMimeType: application/json` + `responseJsonSchema` (or `responseSchema` with `schema = "openapi"`) | — |
//! | `reasoning_effort` | `thinkingConfig` (`thinkingLevel` or `thinkingBudget`) | — |
//! | `store: false`, `service_tier: auto/default`, `modalities: ["text"]` | nothing: what Gemini does anyway | — |
//! | `user`, `safety_identifier`, `verbosity`, `service_tier` (other tiers), `store: true`, `metadata`, `prediction`, `prompt_cache_key`, `prompt_cache_retention`, `prompt_cache_options` | — | dropped |
//! | `logprobs`, `top_logprobs`, `logit_bias`, `audio`, audio out, `web_search_options`, anything else | — | 400 |
//!
//! Streams: the role chunk of a turn that opens with a function call (or a thought)
//! says `content: null`, as OpenAI does; an error object inside the 200 is reported
//! as what it was (`upstream stream error: UNAVAILABLE: …`), classed by its code.
//!
//! The HTTP plumbing is core's [`Kit`]; this crate is the dialect. Start at
//! [`GeminiFactory`] (config keys), then [`GeminiProvider`]; `request.rs`
//! builds the upstream request, `response.rs` reads a whole answer, `stream.rs` is the
//! streaming state machine, `embed.rs` translates embeddings, `error.rs` maps upstream
//! failures.
#![forbid(unsafe_code)]

mod embed;
mod error;
mod request;
mod response;
mod stream;

pub use request::SchemaMode;
use std::sync::Arc;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use modelway_core::chat::Completion;
use modelway_core::embed::{EmbedRequest, Embeddings};
use modelway_core::kit::{self, HttpProvider, Kit, Upstream, UpstreamBody, UpstreamRequest};
use modelway_core::{
    Answer, Attempt, BuildError, ChunkStream, HttpClient, ModelInfo, Provider, ProviderConfig,
    ProviderError, ProviderFactory,
};

/// The base URL Google's SDKs use for the Gemini Developer API.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";
/// The API version path segment used unless configured otherwise.
pub const DEFAULT_API_VERSION: &str = "v1beta";

/// Builds [`GeminiProvider`]s for `kind = "gemini"`.
///
/// Common keys: `base_url` (default `https://generativelanguage.googleapis.com`, what
/// Google's SDKs call the base URL; a trailing `/{api_version}` is tolerated),
/// `api_key` (sent as `x-goog-api-key`, never in the URL), `headers`, `timeout`,
/// `drop_unsupported`, `models`. Kind-specific keys:
///
/// | key | type | default | effect |
/// |---|---|---|---|
/// | `api_version` | string | `"v1beta"` | the version path segment (`v1beta`, `v1`, `v1alpha`) |
/// | `schema` | `"json_schema"` or `"openapi"` | `"json_schema"` | how tool parameters and `response_format` schemas are sent: as JSON Schema (`parametersJsonSchema`, `responseJsonSchema`), or converted to Google's OpenAPI subset (`parameters`, `responseSchema`; unsupported keywords removed, `$ref`s inlined) |
/// | `thought_signature_fallback` | bool | `true` | when a replayed assistant tool-call turn carries no thought signature (a client dropped `extra_content`), send Google's documented `skip_thought_signature_validator` so Gemini 3 accepts the history |
/// | `list_models` | bool | `true` | list the upstream's models (`GET /{api_version}/models`) |
///
/// ```toml
/// [providers.gemini]
/// kind = "gemini"
/// api_key = "${GEMINI_API_KEY}"
/// api_version = "v1beta"
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GeminiFactory;

/// Registers this crate's kind (`gemini`, built by [`GeminiFactory`]) in `registry`: what
/// `modelway-providers` calls for each provider crate it depends on.
pub fn register(registry: &mut modelway_core::ProviderRegistry) {
    registry.register(GeminiFactory);
}

/// The kind-specific keys [`GeminiFactory`] accepts.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeminiOptions {
    /// The API version path segment (default `v1beta`).
    pub api_version: Option<String>,
    /// How tool parameter and `response_format` schemas are sent (default
    /// `json_schema`).
    pub schema: Option<request::SchemaMode>,
    /// Send Gemini's documented dummy `thoughtSignature` for a tool call that has
    /// none (default `true`).
    pub thought_signature_fallback: Option<bool>,
    /// List the upstream's models on `GET /v1/models` (default `true`).
    pub list_models: Option<bool>,
}

impl ProviderFactory for GeminiFactory {
    type Options = GeminiOptions;

    fn kind(&self) -> &str {
        "gemini"
    }

    fn vendor_prefixes(&self) -> &[&str] {
        &["google"]
    }

    fn model_families(&self) -> &[&str] {
        &["gemini"]
    }

    fn build(
        &self,
        cfg: &ProviderConfig,
        options: GeminiOptions,
        http: &HttpClient,
    ) -> Result<Arc<dyn Provider>, BuildError> {
        let list_models = options.list_models.unwrap_or(true);
        let dialect = GeminiProvider::from_config(cfg, options)?;
        Ok(Kit::new(dialect, http).list_models(list_models).shared())
    }
}

/// One configured Gemini upstream.
pub struct GeminiProvider {
    name: String,
    /// `{base_url}/{api_version}`, no trailing slash.
    root: String,
    /// `x-goog-api-key`, marked sensitive.
    api_key: Option<HeaderValue>,
    /// Configured extra headers; they win over everything else.
    headers: Vec<(HeaderName, HeaderValue)>,
    options: request::Options,
}

impl std::fmt::Debug for GeminiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiProvider")
            .field("name", &self.name)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl GeminiProvider {
    /// Builds the dialect from its config table and options (`list_models` is the
    /// [`Kit`]'s).
    ///
    /// # Errors
    /// An invalid `base_url`, header, `api_key` or kind-specific option.
    pub fn from_config(cfg: &ProviderConfig, options: GeminiOptions) -> Result<Self, BuildError> {
        let err = |what: String| BuildError(format!("provider `{}`: {what}", cfg.name));
        let version = options
            .api_version
            .as_deref()
            .unwrap_or(DEFAULT_API_VERSION)
            .trim_matches('/');
        if version.is_empty()
            || !version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(err(format!(
                "`api_version` must be a path segment like `v1beta`, got `{version}`"
            )));
        }
        let base = cfg.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let base = base.trim_end_matches('/');
        let base = base
            .strip_suffix(&format!("/{version}"))
            .unwrap_or(base)
            .trim_end_matches('/');
        let root = format!("{base}/{version}");
        if base.contains('?') || base.contains('#') {
            return Err(err(format!(
                "invalid base_url `{base}`: no query or fragment"
            )));
        }
        root.parse::<http::Uri>()
            .map_err(|e| err(format!("invalid base_url `{base}`: {e}")))?;
        let headers = cfg.header_pairs()?;
        let api_key = cfg.api_key_header("")?;
        let schema = options.schema.unwrap_or_default();
        Ok(Self {
            name: cfg.name.clone(),
            root,
            api_key,
            headers,
            options: request::Options {
                provider: cfg.name.clone(),
                drop_unsupported: cfg.drop_unsupported,
                schema,
                signature_fallback: options.thought_signature_fallback.unwrap_or(true),
            },
        })
    }
}

#[async_trait]
impl HttpProvider for GeminiProvider {
    /// The parameters the translation dropped.
    type Plan = Vec<String>;

    fn chat_request(
        &self,
        attempt: &Attempt<'_>,
        stream: bool,
    ) -> Result<(UpstreamRequest, Vec<String>), ProviderError> {
        let model = attempt.model();
        let translated = request::translate(attempt.request(), model, &self.options)?;
        let req = request::build(self, model, translated.body, attempt, stream)?;
        Ok((req, translated.dropped))
    }

    fn parse_answer(
        &self,
        attempt: &Attempt<'_>,
        dropped: Vec<String>,
        body: Bytes,
    ) -> Result<Answer<Completion>, ProviderError> {
        let parsed = response::parse(&body, attempt.model())?;
        Ok(Answer::with_dropped(
            Completion::Parsed(Box::new(parsed)),
            dropped,
        ))
    }

    fn parse_stream(
        &self,
        attempt: &Attempt<'_>,
        dropped: Vec<String>,
        body: UpstreamBody,
    ) -> Result<Answer<ChunkStream>, ProviderError> {
        let chunks = stream::chunks(body, attempt.model(), attempt.timeouts.idle);
        Ok(Answer::with_dropped(chunks, dropped))
    }

    fn parse_error(
        &self,
        status: u16,
        body: Bytes,
        retry_after: Option<Duration>,
    ) -> ProviderError {
        error::translate_status(status, body, retry_after)
    }

    fn stream_refused(&self, body: &[u8]) -> ProviderError {
        error::in_band(body).unwrap_or_else(|| kit::not_a_stream(body))
    }

    fn models_request(&self) -> Option<Result<UpstreamRequest, ProviderError>> {
        Some(request::models(self))
    }

    fn parse_models(&self, body: &[u8]) -> Result<Vec<ModelInfo>, ProviderError> {
        response::parse_models(body)
    }

    async fn embed(
        &self,
        upstream: Upstream<'_, Self>,
        attempt: &Attempt<'_, EmbedRequest>,
    ) -> Result<Answer<Embeddings>, ProviderError> {
        embed::embed(self, upstream, attempt).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn build(base_url: Option<&str>, options: &str) -> Result<GeminiProvider, BuildError> {
        let mut cfg = ProviderConfig::new("gem", "gemini");
        cfg.base_url = base_url.map(str::to_owned);
        cfg.options = modelway_core::config::ProviderOptions::from_toml_str(options).unwrap();
        // The gateway's path: options checked against the type, then the factory.
        let mut registry = modelway_core::ProviderRegistry::new();
        registry.register(GeminiFactory);
        registry.build(&cfg, &HttpClient::new())?;
        let options = cfg.options.read().unwrap();
        GeminiProvider::from_config(&cfg, options)
    }

    #[test]
    fn base_url_and_api_version_rules() {
        let rows = [
            (None, "", "https://generativelanguage.googleapis.com/v1beta"),
            (Some("http://127.0.0.1:9"), "", "http://127.0.0.1:9/v1beta"),
            (Some("http://127.0.0.1:9/"), "", "http://127.0.0.1:9/v1beta"),
            (
                Some("http://127.0.0.1:9/v1beta"),
                "",
                "http://127.0.0.1:9/v1beta",
            ),
            (
                Some("http://127.0.0.1:9"),
                "api_version = \"v1\"",
                "http://127.0.0.1:9/v1",
            ),
            (
                Some("http://h/proxy/gemini"),
                "",
                "http://h/proxy/gemini/v1beta",
            ),
        ];
        for (base, opts, want) in rows {
            let p = build(base, opts).unwrap();
            assert_eq!(p.root, want, "{base:?} {opts}");
        }
    }

    #[test]
    fn options_are_checked() {
        for bad in [
            "api_version = \"v1/../x\"",
            "api_version = 1",
            "schema = \"xml\"",
            "thought_signature_fallback = \"yes\"",
            "list_models = 1",
        ] {
            let e = build(None, bad).unwrap_err();
            assert!(e.0.contains("gem"), "{bad}: {e}");
        }
        assert!(build(Some("http://exa mple"), "").is_err());
        assert!(build(Some("http://h/?key=x"), "").is_err());
        let p = build(
            None,
            "schema = \"openapi\"\nthought_signature_fallback = false",
        )
        .unwrap();
        assert_eq!(p.options.schema, request::SchemaMode::OpenApi);
        assert!(!p.options.signature_fallback);
    }

    #[test]
    fn api_key_is_sensitive_and_not_in_debug() {
        let mut cfg = ProviderConfig::new("gem", "gemini");
        cfg.api_key = Some(modelway_core::ApiKey::new("AIza-secret"));
        let p = GeminiProvider::from_config(&cfg, GeminiOptions::default()).unwrap();
        assert!(p.api_key.as_ref().unwrap().is_sensitive());
        assert!(!format!("{p:?}").contains("AIza-secret"));
    }
}
