//! modelway-anthropic: the provider for Anthropic's Messages API
//! (`POST {base_url}/v1/messages`), translating OpenAI Chat Completions requests,
//! responses and streams to and from it.
//!
//! Invariants:
//! - Depends only on `modelway-core`; knows nothing of the gateway binary.
//! - Translation is loud: a parameter Anthropic cannot express is a
//!   [`ProviderError::InvalidRequest`] naming it, unless the provider is configured
//!   `drop_unsupported = true`, in which case it is dropped and reported in the
//!   [`Answer`]'s `dropped` (`x-modelway-dropped-params`). A *hint* — a parameter
//!   that only tunes how the model answers ([`modelway_core::translate::HINTS`]) — is
//!   dropped and reported whatever the setting.
//! - Translation is lossless where the OpenAI format has room: signed thinking blocks
//!   come back as `reasoning_content` + `thinking_blocks` and are replayed from an
//!   assistant message's `thinking_blocks`; `cache_control` on content parts, messages
//!   and tools reaches Anthropic unchanged.
//! - Streams are translated event by event, as each arrives; every event is parsed once
//!   into borrowed typed structs.
//!
//! Parameters (OpenAI → Anthropic). *dropped*: not sent, listed in
//! `x-modelway-dropped-params`. *400*: refused naming it, or dropped and listed with
//! `drop_unsupported = true`.
//!
//! | OpenAI | Anthropic | when Anthropic cannot express it |
//! |---|---|---|
//! | `max_completion_tokens`, `max_tokens` | `max_tokens` (the provider's `default_max_tokens` when absent) | — |
//! | `temperature` | `temperature` | above 1: 400 (clamped when dropping) |
//! | `top_p`, `stop` | `top_p`, `stop_sequences` | — |
//! | `tools`, `tool_choice`, `parallel_tool_calls` | `tools`, `tool_choice` (`auto`, `none`, `any`, `tool`), `disable_parallel_tool_use` | custom tools, `allowed_tools`: 400 |
//! | `response_format: json_schema` | `output_config.format` (native structured output) | — |
//! | `response_format: json_object` | a forced tool `json_response` whose input schema is any object; its input comes back as the content (streamed as it arrives), finish `stop` | with thinking enabled: 400 (Anthropic refuses a forced tool then) |
//! | `reasoning_effort` | `thinking` with a budget | — |
//! | `user`, `safety_identifier`, `metadata: {user_id}` | `metadata.user_id` (the first of them; the others dropped) | — |
//! | `service_tier` | `auto`; `default` → `standard_only` | other tiers: dropped |
//! | `store: false`, `modalities: ["text"]` | nothing: what Anthropic does anyway | `store: true`: dropped; audio out: 400 |
//! | `verbosity`, `metadata` (other keys), `prediction`, `prompt_cache_key`, `prompt_cache_retention`, `prompt_cache_options` | — | dropped |
//! | `n > 1`, `logprobs`, `top_logprobs`, `seed`, `presence_penalty`, `frequency_penalty`, `logit_bias`, `audio`, `web_search_options`, anything else | — | 400 |
//!
//! Streams: the role chunk says `content: ""` when the turn opens with text (or JSON
//! mode's content) and `content: null` when it opens with tool calls or thinking, as
//! OpenAI does; an `event: error` inside the 200 is reported as what it was
//! (`upstream stream error: overloaded_error: Overloaded`), with the retry class of
//! its type.
//!
//! The HTTP plumbing is core's [`Kit`]; this crate is the dialect. Start at
//! [`AnthropicFactory`] (config keys), then [`AnthropicProvider`];
//! `request.rs` builds the upstream request, `response.rs` reads a whole answer,
//! `stream.rs` is the streaming state machine, `error.rs` maps upstream failures.
#![forbid(unsafe_code)]

mod error;
mod request;
mod response;
mod stream;

use std::sync::Arc;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use modelway_core::chat::{Completion, NativeCompletion};
use modelway_core::config::StringsOption;
use modelway_core::kit::{self, HttpProvider, Kit, Upstream, UpstreamBody, UpstreamRequest};
use modelway_core::{
    Answer, Attempt, BuildError, ChunkStream, ClientDialect, HttpClient, ModelInfo, Provider,
    ProviderConfig, ProviderError, ProviderFactory,
};

/// The base URL Anthropic's SDKs use.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header sent unless configured otherwise.
pub const DEFAULT_VERSION: &str = "2023-06-01";
/// `max_tokens` sent when the client gives neither `max_completion_tokens` nor
/// `max_tokens` (Anthropic requires it; every Claude model can produce this many).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Builds [`AnthropicProvider`]s for `kind = "anthropic"`.
///
/// Common keys: `base_url` (default `https://api.anthropic.com`, as in Anthropic's
/// SDKs; a trailing `/v1` is tolerated), `api_key` (sent as `x-api-key`), `headers`,
/// `timeout`, `drop_unsupported`, `models`. Kind-specific keys:
///
/// | key | type | default | effect |
/// |---|---|---|---|
/// | `anthropic_version` | string | `"2023-06-01"` | the `anthropic-version` header |
/// | `default_max_tokens` | integer ≥ 1 | `4096` | `max_tokens` when the client sets none |
/// | `beta` | string or array of strings | — | sent as `anthropic-beta` (comma-joined) |
/// | `list_models` | bool | `true` | list the upstream's models (`GET /v1/models`) |
///
/// ```toml
/// [providers.anthropic]
/// kind = "anthropic"
/// api_key = "${ANTHROPIC_API_KEY}"
/// default_max_tokens = 8192
/// beta = ["interleaved-thinking-2025-05-14"]
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AnthropicFactory;

/// Registers this crate's kind (`anthropic`, built by [`AnthropicFactory`]) in `registry`: what
/// `modelway-providers` calls for each provider crate it depends on.
pub fn register(registry: &mut modelway_core::ProviderRegistry) {
    registry.register(AnthropicFactory);
}

/// The kind-specific keys [`AnthropicFactory`] accepts.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnthropicOptions {
    /// The `anthropic-version` header sent (default `2023-06-01`).
    pub anthropic_version: Option<String>,
    /// `max_tokens` when the client sets none (Anthropic requires it).
    pub default_max_tokens: Option<u64>,
    /// `anthropic-beta` flags sent on every request (a string or a list).
    pub beta: Option<StringsOption>,
    /// List the upstream's models on `GET /v1/models` (default `true`).
    pub list_models: Option<bool>,
}

impl ProviderFactory for AnthropicFactory {
    type Options = AnthropicOptions;

    fn kind(&self) -> &str {
        "anthropic"
    }

    fn vendor_prefixes(&self) -> &[&str] {
        &["anthropic"]
    }

    fn model_families(&self) -> &[&str] {
        &["claude"]
    }

    fn build(
        &self,
        cfg: &ProviderConfig,
        options: AnthropicOptions,
        http: &HttpClient,
    ) -> Result<Arc<dyn Provider>, BuildError> {
        let list_models = options.list_models.unwrap_or(true);
        let dialect = AnthropicProvider::from_config(cfg, options)?;
        Ok(Kit::new(dialect, http).list_models(list_models).shared())
    }
}

/// One configured Anthropic upstream.
pub struct AnthropicProvider {
    name: String,
    messages_url: http::Uri,
    count_tokens_url: http::Uri,
    models_url: http::Uri,
    /// `x-api-key`, marked sensitive.
    api_key: Option<HeaderValue>,
    version: HeaderValue,
    beta: Option<HeaderValue>,
    /// Configured extra headers; they win over everything else.
    headers: Vec<(HeaderName, HeaderValue)>,
    options: request::Options,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("name", &self.name)
            .field("messages_url", &self.messages_url)
            .finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    /// Builds the dialect from its config table and options (`list_models` is the
    /// [`Kit`]'s).
    ///
    /// # Errors
    /// An invalid `base_url`, header, `api_key` or kind-specific option.
    pub fn from_config(
        cfg: &ProviderConfig,
        options: AnthropicOptions,
    ) -> Result<Self, BuildError> {
        let err = |what: String| BuildError(format!("provider `{}`: {what}", cfg.name));
        let base = cfg.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let uri = |path: &str| -> Result<http::Uri, BuildError> {
            let url = format!("{base}{path}");
            url.parse()
                .map_err(|e| err(format!("invalid base_url `{base}`: {e}")))
        };
        let headers = cfg.header_pairs()?;
        let api_key = cfg.api_key_header("")?;
        let version = options
            .anthropic_version
            .as_deref()
            .unwrap_or(DEFAULT_VERSION);
        let version =
            HeaderValue::from_str(version).map_err(|e| err(format!("`anthropic_version`: {e}")))?;
        let beta = options
            .beta
            .filter(|names| !names.0.is_empty())
            .map(|names| names.0.join(","));
        let beta = beta
            .map(|b| HeaderValue::from_str(&b).map_err(|e| err(format!("`beta`: {e}"))))
            .transpose()?;
        let default_max_tokens = match options.default_max_tokens {
            Some(0) => return Err(err("`default_max_tokens` must be at least 1".into())),
            Some(n) => n,
            None => DEFAULT_MAX_TOKENS,
        };
        Ok(Self {
            name: cfg.name.clone(),
            messages_url: uri("/v1/messages")?,
            count_tokens_url: uri("/v1/messages/count_tokens")?,
            models_url: uri("/v1/models")?,
            api_key,
            version,
            beta,
            headers,
            options: request::Options {
                provider: cfg.name.clone(),
                default_max_tokens,
                drop_unsupported: cfg.drop_unsupported,
            },
        })
    }
}

/// A Messages client's body naming `model`: spliced in place, or — when the splice is
/// unsure (an escaped key, a duplicate `model`) — the body re-encoded with it, so a
/// Messages body always goes upstream as the client wrote it (what
/// [`Provider::forwards_natively`] promises). `None` only for a body that is not a JSON
/// object, which the front door never decodes.
fn with_model(raw: &[u8], model: &str) -> Option<Vec<u8>> {
    modelway_core::splice::with_model(raw, model, b"").or_else(|| {
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(raw).ok()?;
        v.insert("model".to_owned(), model.into());
        serde_json::to_vec(&v).ok()
    })
}

#[async_trait]
impl HttpProvider for AnthropicProvider {
    type Plan = request::Plan;

    fn chat_request(
        &self,
        attempt: &Attempt<'_>,
        stream: bool,
    ) -> Result<(UpstreamRequest, request::Plan), ProviderError> {
        // A Messages client's own bytes go as they came, with only the model named.
        let native = attempt
            .native_body(ClientDialect::Messages)
            .and_then(|raw| with_model(raw, attempt.model()));
        let (body, dropped, reading) = match native {
            Some(body) => (body, Vec::new(), stream::Reading::Native),
            None => {
                let t =
                    request::translate(attempt.request(), attempt.model(), &self.options, stream)?;
                let reading = stream::Reading::Translated {
                    json_mode: t.json_mode,
                };
                (t.body, t.dropped, reading)
            }
        };
        let req = request::build(self, body, attempt, stream);
        Ok((req, request::Plan { dropped, reading }))
    }

    fn parse_answer(
        &self,
        _attempt: &Attempt<'_>,
        request::Plan { dropped, reading }: request::Plan,
        body: Bytes,
    ) -> Result<Answer<Completion>, ProviderError> {
        let json_mode = reading == (stream::Reading::Translated { json_mode: true });
        let parsed = Box::new(response::parse(&body, json_mode)?);
        let completion = if reading == stream::Reading::Native {
            Completion::Native(NativeCompletion {
                dialect: ClientDialect::Messages,
                body,
                parsed,
            })
        } else {
            Completion::Parsed(parsed)
        };
        Ok(Answer::with_dropped(completion, dropped))
    }

    fn parse_stream(
        &self,
        attempt: &Attempt<'_>,
        request::Plan { dropped, reading }: request::Plan,
        body: UpstreamBody,
    ) -> Result<Answer<ChunkStream>, ProviderError> {
        let chunks = stream::chunks(body, attempt.timeouts.idle, reading);
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
        error::embedded(body).unwrap_or_else(|| kit::not_a_stream(body))
    }

    fn models_request(&self) -> Option<Result<UpstreamRequest, ProviderError>> {
        Some(Ok(request::models(self)))
    }

    fn parse_models(&self, body: &[u8]) -> Result<Vec<ModelInfo>, ProviderError> {
        response::parse_models(body)
    }

    fn forwards_natively(&self, dialect: ClientDialect) -> bool {
        dialect == ClientDialect::Messages
    }

    async fn count_tokens(
        &self,
        upstream: Upstream<'_, Self>,
        attempt: &Attempt<'_>,
    ) -> Result<Option<u64>, ProviderError> {
        // Only a Messages client's own body: it is what `count_tokens` takes.
        let Some(body) = attempt
            .native_body(ClientDialect::Messages)
            .and_then(|raw| with_model(raw, attempt.model()))
        else {
            return Ok(None);
        };
        let mut req = request::build(self, body, attempt, false);
        *req.uri_mut() = self.count_tokens_url.clone();
        let got = upstream.answer(req, &attempt.timeouts).await?;
        #[derive(serde::Deserialize)]
        struct Count {
            input_tokens: u64,
        }
        let count: Count = serde_json::from_slice(&got.body)
            .map_err(|e| ProviderError::Malformed(format!("not a count_tokens answer: {e}")))?;
        Ok(Some(count.input_tokens))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn build(base_url: Option<&str>, options: &str) -> Result<AnthropicProvider, BuildError> {
        let mut cfg = ProviderConfig::new("claude", "anthropic");
        cfg.base_url = base_url.map(str::to_owned);
        cfg.options = modelway_core::config::ProviderOptions::from_toml_str(options).unwrap();
        // The gateway's path: options checked against the type, then the factory.
        let mut registry = modelway_core::ProviderRegistry::new();
        registry.register(AnthropicFactory);
        registry.build(&cfg, &HttpClient::new())?;
        let options = cfg.options.read().unwrap();
        AnthropicProvider::from_config(&cfg, options)
    }

    #[test]
    fn base_url_rules() {
        let rows = [
            (None, "https://api.anthropic.com/v1/messages"),
            (Some("http://127.0.0.1:9"), "http://127.0.0.1:9/v1/messages"),
            (
                Some("http://127.0.0.1:9/"),
                "http://127.0.0.1:9/v1/messages",
            ),
            (
                Some("http://127.0.0.1:9/v1"),
                "http://127.0.0.1:9/v1/messages",
            ),
            (
                Some("http://h/proxy/anthropic"),
                "http://h/proxy/anthropic/v1/messages",
            ),
        ];
        for (base, want) in rows {
            let p = build(base, "").unwrap();
            assert_eq!(p.messages_url.to_string(), want, "{base:?}");
        }
    }

    #[test]
    fn options_are_checked() {
        let p = build(None, "beta = [\"a\", \"b\"]\ndefault_max_tokens = 9").unwrap();
        assert_eq!(p.beta.unwrap(), "a,b");
        assert_eq!(p.options.default_max_tokens, 9);
        assert_eq!(p.version, DEFAULT_VERSION);
        let p = build(None, "beta = \"x\"\nanthropic_version = \"2099-01-01\"").unwrap();
        assert_eq!(p.beta.unwrap(), "x");
        assert_eq!(p.version, "2099-01-01");
        for bad in [
            "beta = 3",
            "beta = [1]",
            "default_max_tokens = 0",
            "default_max_tokens = \"x\"",
            "list_models = 1",
        ] {
            let e = build(None, bad).unwrap_err();
            assert!(e.0.contains("claude"), "{bad}: {e}");
        }
        assert!(build(Some("http://exa mple"), "").is_err());
    }

    #[test]
    fn api_key_is_sensitive_and_not_in_debug() {
        let mut cfg = ProviderConfig::new("claude", "anthropic");
        cfg.api_key = Some(modelway_core::ApiKey::new("sk-ant-secret"));
        let p = AnthropicProvider::from_config(&cfg, AnthropicOptions::default()).unwrap();
        assert!(p.api_key.as_ref().unwrap().is_sensitive());
        assert!(!format!("{p:?}").contains("sk-ant-secret"));
    }
}
