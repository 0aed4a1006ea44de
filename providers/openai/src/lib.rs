//! modelway-openai: the provider for OpenAI and every OpenAI-compatible upstream.
//!
//! One [`OpenAiFactory`] per `kind`: `openai`, `openai-compatible` (needs `base_url`)
//! and the presets `openrouter`, `groq`, `together`, `mistral`, `deepseek`,
//! `fireworks`, `xai`, `ollama`, `vllm`, each with its default base URL and the few
//! request rewrites its server needs ([`Preset`]). The client's bytes are forwarded
//! with the attempt's upstream model spliced in, or the canonical request is
//! serialised back as sent (unknown fields included) naming that model; responses are
//! forwarded once checked to be completions, and chunks are parsed into the canonical
//! types. Embeddings go the same way to `{base_url}/embeddings`: the client's bytes
//! with the model spliced in, the answer forwarded unparsed (its usage read in place)
//! unless the upstream ignored `encoding_format`, when it is re-encoded.
//!
//! A Responses client (`POST /v1/responses`) is served by the upstream's own Responses
//! API where it has one (the `openai` kind, or `responses_api = true`): its body goes
//! to `{base_url}/responses` as it came, model spliced, and the answer and events come
//! back byte for byte (`responses/`), so what needs OpenAI's server-side state
//! (`previous_response_id`, `store`, hosted tools) works through the gateway.
//!
//! Depends only on `modelway-core`; the HTTP plumbing is core's [`Kit`], this crate
//! is the dialect. Start at [`OpenAiProvider`]; `request.rs` builds the
//! upstream request, `response.rs` reads answers, `stream.rs` reads SSE, `error.rs`
//! maps upstream failures; `responses/` is the same for the Responses API.
#![forbid(unsafe_code)]

mod error;
mod preset;
mod request;
mod response;
mod responses;
mod splice;
mod stream;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use modelway_core::chat::{Completion, RawCompletion};
use modelway_core::embed::{EmbedRequest, Embeddings};
use modelway_core::kit::{HttpProvider, Kit, Upstream, UpstreamBody, UpstreamRequest};
use modelway_core::{
    Answer, Attempt, BuildError, ChunkStream, ClientDialect, HttpClient, ModelInfo, Provider,
    ProviderConfig, ProviderError, ProviderFactory,
};

pub use preset::{MaxTokensField, Preset, PRESETS};

/// Registers every kind this crate serves (one [`OpenAiFactory`] per preset) in
/// `registry`: what `modelway-providers` calls for each provider crate it depends on.
pub fn register(registry: &mut modelway_core::ProviderRegistry) {
    for factory in OpenAiFactory::all() {
        registry.register(factory);
    }
}

/// Builds [`OpenAiProvider`]s for one preset kind.
///
/// Common keys: `base_url` (the preset's default, else required), `api_key` (sent as
/// `Authorization: Bearer`), `headers`, `timeout`, `drop_unsupported`, `models`.
/// Kind-specific keys:
///
/// | key | type | default | effect |
/// |---|---|---|---|
/// | `list_models` | bool | `true` | list the upstream's models (`GET {base_url}/models`) |
/// | `responses_api` | bool | `true` for kind `openai`, else `false` | the server has OpenAI's Responses API: a `/v1/responses` client's body goes to `{base_url}/responses` as it came, and calls that need OpenAI's server-side state may be routed here |
///
/// ```toml
/// [providers.local]
/// kind = "openai-compatible"
/// base_url = "http://127.0.0.1:8000/v1"
/// responses_api = true   # this server implements POST /v1/responses
/// ```
pub struct OpenAiFactory {
    preset: &'static Preset,
}

impl OpenAiFactory {
    /// The factory for `kind`, if it is one of [`PRESETS`].
    pub fn for_kind(kind: &str) -> Option<Self> {
        PRESETS
            .iter()
            .find(|p| p.kind == kind)
            .map(|preset| Self { preset })
    }

    /// One factory per preset, to register them all.
    pub fn all() -> impl Iterator<Item = Self> {
        PRESETS.iter().map(|preset| Self { preset })
    }
}

/// The kind-specific keys of every OpenAI kind (see [`OpenAiFactory`]).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiOptions {
    /// List the upstream's models on `GET /v1/models` (default `true`).
    pub list_models: Option<bool>,
    /// The server has OpenAI's Responses API (default: the preset's).
    pub responses_api: Option<bool>,
}

impl ProviderFactory for OpenAiFactory {
    type Options = OpenAiOptions;

    fn kind(&self) -> &str {
        self.preset.kind
    }

    fn vendor_prefixes(&self) -> &[&str] {
        self.preset.vendor_prefixes
    }

    fn model_families(&self) -> &[&str] {
        self.preset.model_families
    }

    fn build(
        &self,
        cfg: &ProviderConfig,
        options: OpenAiOptions,
        http: &HttpClient,
    ) -> Result<Arc<dyn Provider>, BuildError> {
        let base_url = match (&cfg.base_url, self.preset.base_url) {
            (Some(u), _) => u.clone(),
            (None, Some(d)) => d.to_owned(),
            (None, None) => {
                return Err(BuildError(format!(
                    "provider `{}` (kind `{}`) needs `base_url`",
                    cfg.name, self.preset.kind
                )))
            }
        };
        let headers = cfg.header_pairs()?;
        let auth = cfg.api_key_header("Bearer ")?;
        let responses_url = options
            .responses_api
            .unwrap_or(self.preset.responses_api)
            .then(|| parse_uri(&cfg.name, &format!("{base_url}/responses")))
            .transpose()?;
        let provider = OpenAiProvider {
            name: cfg.name.clone(),
            preset: self.preset,
            chat_url: parse_uri(&cfg.name, &format!("{base_url}/chat/completions"))?,
            embeddings_url: parse_uri(&cfg.name, &format!("{base_url}/embeddings"))?,
            models_url: parse_uri(&cfg.name, &format!("{base_url}/models"))?,
            responses_url,
            auth,
            headers,
        };
        Ok(Kit::new(provider, http)
            .list_models(options.list_models.unwrap_or(true))
            .shared())
    }
}

fn parse_uri(provider: &str, url: &str) -> Result<http::Uri, BuildError> {
    url.parse().map_err(|e| {
        BuildError(format!(
            "provider `{provider}`: invalid base_url `{url}`: {e}"
        ))
    })
}

/// One configured OpenAI-compatible upstream: its dialect on the shared [`Kit`].
pub struct OpenAiProvider {
    name: String,
    preset: &'static Preset,
    /// Parsed once at build time; cloning a `Uri` shares its bytes.
    chat_url: http::Uri,
    embeddings_url: http::Uri,
    models_url: http::Uri,
    /// `{base_url}/responses` when the server has the Responses API.
    responses_url: Option<http::Uri>,
    auth: Option<HeaderValue>,
    /// Configured extra headers; they win over forwarded client headers.
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl OpenAiProvider {
    /// Where `attempt` goes when it is a Responses client's body this server takes as
    /// it came; `None`: the chat completions path.
    fn responses_url_for(&self, attempt: &Attempt<'_>) -> Option<&http::Uri> {
        attempt.native_body(ClientDialect::Responses)?;
        self.responses_url.as_ref()
    }
}

#[async_trait]
impl HttpProvider for OpenAiProvider {
    type Plan = request::Api;

    fn chat_request(
        &self,
        attempt: &Attempt<'_>,
        stream: bool,
    ) -> Result<(UpstreamRequest, request::Api), ProviderError> {
        if let Some(url) = self.responses_url_for(attempt) {
            let req = responses::request(self, url, attempt, stream)?;
            return Ok((req, request::Api::Responses));
        }
        Ok((
            request::build(self, attempt, stream)?,
            request::Api::ChatCompletions,
        ))
    }

    fn parse_answer(
        &self,
        _attempt: &Attempt<'_>,
        api: request::Api,
        body: Bytes,
    ) -> Result<Answer<Completion>, ProviderError> {
        if api == request::Api::Responses {
            return responses::parse(body).map(Answer::new);
        }
        // The upstream already speaks OpenAI: forward its bytes once they are known
        // to be a completion, without a typed parse and re-encode.
        match RawCompletion::scan(body.clone()) {
            Some(raw) => Ok(Answer::new(Completion::Raw(raw))),
            None => response::parse(&body).map(Answer::from),
        }
    }

    fn parse_stream(
        &self,
        attempt: &Attempt<'_>,
        api: request::Api,
        body: UpstreamBody,
    ) -> Result<Answer<ChunkStream>, ProviderError> {
        let idle = attempt.timeouts.idle;
        Ok(Answer::new(match api {
            request::Api::Responses => responses::chunks(body, idle),
            request::Api::ChatCompletions => stream::chunks(body, idle),
        }))
    }

    fn stream_refused(&self, body: &[u8]) -> ProviderError {
        error::in_place_of_stream(body)
    }

    fn models_request(&self) -> Option<Result<UpstreamRequest, ProviderError>> {
        Some(Ok(request::models(self)))
    }

    fn parse_models(&self, body: &[u8]) -> Result<Vec<ModelInfo>, ProviderError> {
        response::parse_models(body, &self.name)
    }

    async fn embed(
        &self,
        upstream: Upstream<'_, Self>,
        attempt: &Attempt<'_, EmbedRequest>,
    ) -> Result<Answer<Embeddings>, ProviderError> {
        let http_req = request::embeddings(self, attempt)?;
        let got = upstream.answer(http_req, &attempt.timeouts).await?;
        let mut answer = Answer::new(response::embeddings(
            got.body,
            attempt.request().encoding(),
        )?);
        answer.limits = got.limits;
        Ok(answer)
    }

    fn speaks_openrouter_fields(&self) -> bool {
        self.preset.openrouter
    }

    fn forwards_natively(&self, dialect: ClientDialect) -> bool {
        dialect == ClientDialect::Responses && self.responses_url.is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn build(kind: &str, options: &str) -> Result<Arc<dyn Provider>, BuildError> {
        let mut cfg = ProviderConfig::new("p", kind);
        cfg.base_url = Some("http://127.0.0.1:9/v1".into());
        cfg.options = modelway_core::config::ProviderOptions::from_toml_str(options).unwrap();
        modelway_core::provider::build_provider(
            &OpenAiFactory::for_kind(kind).unwrap(),
            &cfg,
            &HttpClient::new(),
        )
    }

    #[test]
    fn the_responses_api_is_openais_unless_configured() {
        let rows = [
            ("openai", "", true),
            ("openai", "responses_api = false", false),
            ("openai-compatible", "", false),
            ("openai-compatible", "responses_api = true", true),
            ("vllm", "responses_api = true", true),
            ("openrouter", "", false),
        ];
        for (kind, options, want) in rows {
            let p = build(kind, options).unwrap();
            assert_eq!(
                p.forwards_natively(ClientDialect::Responses),
                want,
                "{kind} {options:?}"
            );
            for other in [ClientDialect::ChatCompletions, ClientDialect::Messages] {
                assert!(!p.forwards_natively(other), "{kind}: {other:?}");
            }
        }
        let e = build("openai", "responses_api = \"yes\"").err().unwrap();
        assert!(e.0.contains("responses_api") && e.0.contains('p'), "{e}");
    }
}
