//! The provider kit: what every HTTP provider shares, behind one trait a provider
//! implements with its dialect only.
//!
//! An HTTP upstream differs from its siblings in how it spells a request, an answer,
//! a stream event, an error body and a model list. Everything else is the same and
//! lives here, once: sending on the pooled [`HttpClient`], a non-success status read
//! into a [`ProviderError`] with its retry class and `Retry-After`, the prelude of a
//! streamed answer (a JSON body in place of the event stream is an error), the rate
//! limits an answer reports, the model listing and its [`ModelsCache`], and the
//! `list_models` switch every HTTP factory offers as an option.
//!
//! A provider implements [`HttpProvider`] — like pingora's proxy trait, a hook per
//! phase of a request's life, each optional one with a default — and its factory
//! returns [`Kit::shared`]. [`Kit`] is the [`Provider`] the engine sees.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use modelway_core::chat::Completion;
//! use modelway_core::kit::{HttpProvider, Kit, UpstreamBody, UpstreamRequest};
//! use modelway_core::{Answer, Attempt, ChunkStream, HttpClient, ProviderError};
//!
//! struct Echo { url: http::Uri }
//!
//! impl HttpProvider for Echo {
//!     type Plan = ();
//!     fn chat_request(&self, attempt: &Attempt<'_>, stream: bool)
//!         -> Result<(UpstreamRequest, ()), ProviderError> {
//!         let body = serde_json::to_vec(attempt.request())
//!             .map_err(|e| ProviderError::Malformed(e.to_string()))?;
//!         let req = modelway_core::kit::post(self.url.clone(), body.into(), stream, attempt, &[], |_| {});
//!         Ok((req, ()))
//!     }
//!     fn parse_answer(&self, _: &Attempt<'_>, _: (), body: Bytes)
//!         -> Result<Answer<Completion>, ProviderError> {
//!         serde_json::from_slice(&body)
//!             .map(|r| Answer::new(Completion::Parsed(Box::new(r))))
//!             .map_err(|e| ProviderError::Malformed(e.to_string()))
//!     }
//!     fn parse_stream(&self, _: &Attempt<'_>, _: (), _body: UpstreamBody)
//!         -> Result<Answer<ChunkStream>, ProviderError> {
//!         Err(ProviderError::Malformed("no streams here".into()))
//!     }
//! }
//!
//! let echo = Echo { url: http::Uri::from_static("http://127.0.0.1:9/chat") };
//! let provider = Kit::new(echo, &HttpClient::new()).list_models(false).shared();
//! # let _ = provider;
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::Stream;
use http_body_util::Full;
use hyper::body::Incoming;

use crate::call::{Answer, Attempt, ClientDialect, Operation, Timeouts};
use crate::chat::Completion;
use crate::embed::{EmbedRequest, Embeddings};
use crate::error::ProviderError;
use crate::http_client::{error_chain, is_json, read_body, sse_events, HttpClient};
use crate::limits::UpstreamLimits;
use crate::provider::{ChunkStream, ModelInfo, ModelsCache, Provider};
use crate::sse::SseEvent;

/// A request to an upstream, as the pooled client sends it.
pub type UpstreamRequest = http::Request<Full<Bytes>>;

/// An HTTP upstream's dialect: how it spells a request, an answer, a stream, an error
/// and a model list. The hooks are named after the phase of the request they serve;
/// the optional ones have the [`Provider`] trait's defaults. Wrap the dialect in a
/// [`Kit`] to get the [`Provider`].
#[async_trait]
pub trait HttpProvider: Send + Sync + Sized + 'static {
    /// What building a request remembers for reading its answer: the parameters the
    /// translation dropped, which of the upstream's APIs it went to, … (`()` if
    /// nothing).
    type Plan: Send + 'static;

    /// The upstream request for a chat attempt (its URL, headers and body; see
    /// [`post`]) and its plan. `stream`: the client asked for a stream.
    fn chat_request(
        &self,
        attempt: &Attempt<'_>,
        stream: bool,
    ) -> Result<(UpstreamRequest, Self::Plan), ProviderError>;

    /// Reads a whole answer (the body of a success) into the canonical one. The kit
    /// adds the rate limits the answer's headers report.
    fn parse_answer(
        &self,
        attempt: &Attempt<'_>,
        plan: Self::Plan,
        body: Bytes,
    ) -> Result<Answer<Completion>, ProviderError>;

    /// Translates a streamed answer, event by event ([`UpstreamBody::sse_events`] or
    /// [`UpstreamBody::frames`]). The kit has already checked that the upstream sent
    /// a stream and not an error. Dropping the returned stream must drop `body`: that
    /// closes the upstream connection.
    fn parse_stream(
        &self,
        attempt: &Attempt<'_>,
        plan: Self::Plan,
        body: UpstreamBody,
    ) -> Result<Answer<ChunkStream>, ProviderError>;

    /// A non-success answer: its status, body and `Retry-After` (`retry-after-ms` or
    /// `retry-after`, already read) into the error. The default keeps them as they
    /// came ([`ProviderError::Status`]), which suits an upstream whose error bodies are
    /// OpenAI's; a dialect with its own error shape rewrites the body into OpenAI's
    /// (so the client-facing mapping reads its message) and may refine the status.
    fn parse_error(
        &self,
        status: u16,
        body: Bytes,
        retry_after: Option<Duration>,
    ) -> ProviderError {
        ProviderError::Status {
            status,
            body,
            retry_after,
        }
    }

    /// A 2xx answer to a stream request whose body is JSON, not events: the upstream
    /// reporting an error in place of the stream. The default: [`not_a_stream`].
    fn stream_refused(&self, body: &[u8]) -> ProviderError {
        not_a_stream(body)
    }

    /// The request listing this upstream's models (see [`get`]); `None`: it cannot
    /// list. Sent at most once per [`ModelsCache::TTL`], bounded by 5 s.
    fn models_request(&self) -> Option<Result<UpstreamRequest, ProviderError>> {
        None
    }

    /// Reads a model listing's body.
    fn parse_models(&self, body: &[u8]) -> Result<Vec<ModelInfo>, ProviderError> {
        let _ = body;
        Ok(Vec::new())
    }

    /// Embeddings, sent through `upstream`. The default cannot embed (see
    /// [`Provider::embed`]).
    async fn embed(
        &self,
        upstream: Upstream<'_, Self>,
        attempt: &Attempt<'_, EmbedRequest>,
    ) -> Result<Answer<Embeddings>, ProviderError> {
        let _ = (upstream, attempt);
        Err(ProviderError::Unsupported(Operation::Embeddings))
    }

    /// Counts input tokens upstream, sent through `upstream` (see
    /// [`Provider::count_tokens`]). The default cannot count.
    async fn count_tokens(
        &self,
        upstream: Upstream<'_, Self>,
        attempt: &Attempt<'_>,
    ) -> Result<Option<u64>, ProviderError> {
        let _ = (upstream, attempt);
        Ok(None)
    }

    /// See [`Provider::speaks_openrouter_fields`].
    fn speaks_openrouter_fields(&self) -> bool {
        false
    }

    /// See [`Provider::forwards_natively`].
    fn forwards_natively(&self, dialect: ClientDialect) -> bool {
        let _ = dialect;
        false
    }
}

/// The error for a JSON body sent in place of an event stream that is no error the
/// dialect knows: [`ProviderError::Malformed`] quoting its start.
pub fn not_a_stream(body: &[u8]) -> ProviderError {
    ProviderError::Malformed(format!(
        "expected an event stream, got JSON: {}",
        crate::translate::snippet(body)
    ))
}

/// A `POST` of a JSON `body` to `url`: `user-agent`, `content-type`, `accept` (events
/// when `stream`), the client's `traceparent`, what `dialect_headers` adds
/// (credentials, version headers), then the provider's `configured` headers, last.
pub fn post<R>(
    url: http::Uri,
    body: Bytes,
    stream: bool,
    attempt: &Attempt<'_, R>,
    configured: &[(http::HeaderName, http::HeaderValue)],
    dialect_headers: impl FnOnce(&mut http::HeaderMap),
) -> UpstreamRequest {
    crate::http_client::upstream_request(
        http::Method::POST,
        url,
        Some(body),
        stream,
        Some(attempt),
        configured,
        dialect_headers,
    )
}

/// A `GET` of `url` outside any attempt (a model listing), with the headers as for
/// [`post`].
pub fn get(
    url: http::Uri,
    configured: &[(http::HeaderName, http::HeaderValue)],
    dialect_headers: impl FnOnce(&mut http::HeaderMap),
) -> UpstreamRequest {
    crate::http_client::upstream_request(
        http::Method::GET,
        url,
        None,
        false,
        None::<&Attempt<'_>>,
        configured,
        dialect_headers,
    )
}

/// The body of a 2xx answer to a stream request, still arriving.
#[derive(Debug)]
pub struct UpstreamBody(Incoming);

impl UpstreamBody {
    /// The body as SSE events, each yielded as soon as it is complete; a body error
    /// yields one [`ProviderError::StreamCut`] and ends.
    pub fn sse_events(self) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send {
        sse_events(self.0)
    }

    /// The body's data frames as they arrive, for a dialect that reads more than the
    /// events (Gemini looks for a bare JSON error after the last one); a body error
    /// yields one [`ProviderError::StreamCut`] and ends.
    pub fn frames(self) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send {
        BodyFrames(Some(self.0))
    }
}

/// [`UpstreamBody::frames`], polled by hand (no future built per frame); `None` once
/// the body ended or failed.
struct BodyFrames(Option<Incoming>);

impl Stream for BodyFrames {
    type Item = Result<Bytes, ProviderError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use hyper::body::Body as _;
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            let Some(body) = this.0.as_mut() else {
                return Poll::Ready(None);
            };
            match std::pin::Pin::new(body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.0 = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.0 = None;
                    return Poll::Ready(Some(Err(ProviderError::StreamCut(error_chain(&e)))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
            }
        }
    }
}

/// A whole answer's body and the rate limits its head reported.
#[derive(Debug)]
pub struct Received {
    /// The whole body, as the upstream sent it.
    pub body: Bytes,
    /// The rate limits the head reported (`x-ratelimit-*`, `anthropic-ratelimit-*`).
    pub limits: Option<UpstreamLimits>,
}

/// A streamed answer whose head was a success and whose body is events, and the rate
/// limits its head reported.
#[derive(Debug)]
pub struct Opened {
    /// The body, read as it arrives.
    pub body: UpstreamBody,
    /// The rate limits the head reported (`x-ratelimit-*`, `anthropic-ratelimit-*`).
    pub limits: Option<UpstreamLimits>,
}

/// The pooled client bound to one dialect, for the hooks that send requests of their
/// own (embeddings, token counts): a non-success answer goes through the dialect's
/// [`HttpProvider::parse_error`].
pub struct Upstream<'a, P> {
    http: &'a HttpClient,
    dialect: &'a P,
}

impl<P> Clone for Upstream<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for Upstream<'_, P> {}

impl<P: HttpProvider> Upstream<'_, P> {
    /// Sends `req` (a new connection bounded by `t.connect`; the wait for the head is
    /// the engine's, around the whole attempt) and returns a success's head.
    async fn send(
        &self,
        req: UpstreamRequest,
        t: &Timeouts,
    ) -> Result<http::Response<Incoming>, ProviderError> {
        let resp = self.http.send_attempt(req, t).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let dialect = self.dialect;
        Err(
            crate::http_client::status_error_with(resp, t.head, |s, b, r| {
                dialect.parse_error(s, b, r)
            })
            .await,
        )
    }

    /// Sends `req` and reads the whole answer (within `t.head`).
    ///
    /// # Errors
    /// The send's, the dialect's reading of a non-success answer, a body that did not
    /// arrive in time.
    pub async fn answer(
        &self,
        req: UpstreamRequest,
        t: &Timeouts,
    ) -> Result<Received, ProviderError> {
        let resp = self.send(req, t).await?;
        let limits = UpstreamLimits::from_headers(resp.headers());
        let body = read_body(resp.into_body(), t.head).await?;
        Ok(Received { body, limits })
    }

    /// Sends a stream request and checks that events come back: a JSON body in their
    /// place is read (within `t.head`) into the dialect's
    /// [`HttpProvider::stream_refused`] error.
    ///
    /// # Errors
    /// As [`Self::answer`], and the error sent in place of the stream.
    pub async fn stream(
        &self,
        req: UpstreamRequest,
        t: &Timeouts,
    ) -> Result<Opened, ProviderError> {
        let resp = self.send(req, t).await?;
        let limits = UpstreamLimits::from_headers(resp.headers());
        if is_json(&resp) {
            let body = read_body(resp.into_body(), t.head).await?;
            return Err(self.dialect.stream_refused(&body));
        }
        Ok(Opened {
            body: UpstreamBody(resp.into_body()),
            limits,
        })
    }
}

/// An [`HttpProvider`] on the shared plumbing: the [`Provider`] the engine calls.
pub struct Kit<P> {
    dialect: P,
    http: HttpClient,
    list_models: bool,
    models: ModelsCache,
}

impl<P: HttpProvider> Kit<P> {
    /// `dialect` on the process's pooled `http` client, listing the upstream's
    /// models for `GET /v1/models`.
    pub fn new(dialect: P, http: &HttpClient) -> Self {
        Self {
            dialect,
            http: http.clone(),
            list_models: true,
            models: ModelsCache::new(),
        }
    }

    /// Whether `GET /v1/models` lists the upstream's models (the `list_models` option
    /// every HTTP kind declares; default `true`).
    #[must_use]
    pub fn list_models(mut self, on: bool) -> Self {
        self.list_models = on;
        self
    }

    /// The provider the engine calls: what a factory's `build` returns.
    pub fn shared(self) -> Arc<dyn Provider> {
        Arc::new(self)
    }

    /// The dialect.
    pub fn dialect(&self) -> &P {
        &self.dialect
    }

    /// The pooled client bound to this dialect.
    pub fn upstream(&self) -> Upstream<'_, P> {
        Upstream {
            http: &self.http,
            dialect: &self.dialect,
        }
    }
}

impl<P> std::fmt::Debug for Kit<P>
where
    P: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kit")
            .field("dialect", &self.dialect)
            .field("list_models", &self.list_models)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<P: HttpProvider> Provider for Kit<P> {
    async fn chat(&self, attempt: &Attempt<'_>) -> Result<Answer<Completion>, ProviderError> {
        let (req, plan) = self.dialect.chat_request(attempt, false)?;
        let Received { body, limits } = self.upstream().answer(req, &attempt.timeouts).await?;
        let mut answer = self.dialect.parse_answer(attempt, plan, body)?;
        answer.limits = limits;
        Ok(answer)
    }

    async fn chat_stream(
        &self,
        attempt: &Attempt<'_>,
    ) -> Result<Answer<ChunkStream>, ProviderError> {
        let (req, plan) = self.dialect.chat_request(attempt, true)?;
        let Opened { body, limits } = self.upstream().stream(req, &attempt.timeouts).await?;
        let mut answer = self.dialect.parse_stream(attempt, plan, body)?;
        answer.limits = limits;
        Ok(answer)
    }

    async fn embed(
        &self,
        attempt: &Attempt<'_, EmbedRequest>,
    ) -> Result<Answer<Embeddings>, ProviderError> {
        self.dialect.embed(self.upstream(), attempt).await
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        if !self.list_models {
            return Ok(Vec::new());
        }
        let Some(request) = self.dialect.models_request() else {
            return Ok(Vec::new());
        };
        let d = &self.dialect;
        self.models
            .get_or_fetch(
                &self.http,
                || request,
                |s, b, r| d.parse_error(s, b, r),
                |body| d.parse_models(body),
            )
            .await
    }

    async fn count_tokens(&self, attempt: &Attempt<'_>) -> Result<Option<u64>, ProviderError> {
        self.dialect.count_tokens(self.upstream(), attempt).await
    }

    fn speaks_openrouter_fields(&self) -> bool {
        self.dialect.speaks_openrouter_fields()
    }

    fn forwards_natively(&self, dialect: ClientDialect) -> bool {
        self.dialect.forwards_natively(dialect)
    }
}
