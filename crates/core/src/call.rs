//! A [`Call`]: what a client's request is once an ingress has decoded it, and the
//! [`Attempt`] a provider receives — one call sent to one target.
//!
//! The passthrough rule lives in the type: a `Call` may carry the client's bytes so an
//! upstream speaking the client's dialect receives exactly what was sent, and any edit
//! through [`Call::request_mut`] drops them. No layer can change the request and still
//! forward the old bytes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use crate::chat::ChatRequest;
pub use crate::chat::ClientDialect;
use crate::trace::SpanContext;

/// One client request, decoded: the canonical request, the client's bytes while they
/// still say the same thing, and its metadata. `R` is the kind of request: a chat
/// completion (the default) or embeddings ([`crate::embed::EmbedRequest`]); the engine
/// serves both with the same attempt loop.
#[derive(Debug, Clone)]
pub struct Call<R = ChatRequest> {
    request: R,
    /// The client's body exactly as received; `None` once the request was edited.
    client_body: Option<Bytes>,
    /// The dialect `client_body` is in.
    dialect: ClientDialect,
    /// A feature of the request that only an upstream speaking `dialect` itself can
    /// serve (see [`Self::needing_native`]).
    needs_native: Option<String>,
    pub meta: CallMeta,
}

/// Facts about a call that are not part of the request body.
#[derive(Debug, Clone)]
pub struct CallMeta {
    /// The gateway's request id (the client's `x-request-id`, or a new one).
    pub request_id: String,
    /// The name of the gateway key that made the call, when keys are configured.
    pub caller: Option<String>,
    /// Client headers a provider may forward upstream (attribution such as
    /// `HTTP-Referer`/`X-Title`, and `traceparent`). Never credentials.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A deadline the caller imposes on the whole call; the route's `deadline` may
    /// tighten it.
    pub deadline: Option<Instant>,
    /// The span of the call (the gateway's server span), when it is traced: each
    /// attempt is a child of it and carries its own `traceparent` upstream.
    pub trace: Option<SpanContext>,
    /// The stream keeps its final usage chunk even when the request did not ask for
    /// it (`stream_options.include_usage`): the ingress reads usage for telemetry and
    /// accounting and drops that chunk itself if its client did not ask.
    pub keep_usage: bool,
    /// The client's own key for the provider (`x-modelway-provider-key`), used for
    /// this call only, and only with providers that set `allow_client_key`.
    pub provider_key: Option<crate::config::ApiKey>,
}

impl Default for CallMeta {
    fn default() -> Self {
        Self {
            request_id: new_request_id(),
            caller: None,
            headers: Vec::new(),
            deadline: None,
            trace: None,
            keep_usage: false,
            provider_key: None,
        }
    }
}

impl<R> Call<R> {
    /// A call built in-process (an embedder's): a fresh request id, no client bytes.
    pub fn new(request: R) -> Self {
        Self {
            request,
            client_body: None,
            dialect: ClientDialect::ChatCompletions,
            needs_native: None,
            meta: CallMeta::default(),
        }
    }

    /// A call decoded from a client's body. `body` must be the bytes `request` was
    /// parsed from, so a provider may forward them with only the model changed.
    pub fn from_client(request: R, body: Bytes, meta: CallMeta) -> Self {
        Self::from_client_in(ClientDialect::ChatCompletions, request, body, meta)
    }

    /// A call decoded from a client's body in `dialect`: only an upstream speaking that
    /// dialect may forward `body` (see [`Self::native_body`]); every other one encodes
    /// the canonical `request`.
    pub fn from_client_in(dialect: ClientDialect, request: R, body: Bytes, meta: CallMeta) -> Self {
        Self {
            request,
            client_body: Some(body),
            dialect,
            needs_native: None,
            meta,
        }
    }

    /// The same call, marked as asking for `feature` (a request field, a tool type),
    /// which the canonical model cannot carry and only an upstream speaking the
    /// client's dialect itself can serve: OpenAI's server-side state behind a Responses
    /// client's `previous_response_id`, its hosted tools. The engine then sends the call
    /// only to targets whose provider [forwards the dialect as sent]
    /// (crate::Provider::forwards_natively), and answers 400 naming `feature` when there
    /// is none — translated, the feature would be dropped without a word.
    pub fn needing_native(mut self, feature: impl Into<String>) -> Self {
        self.needs_native = Some(feature.into());
        self
    }

    /// The feature only a passthrough upstream can serve, if the call asks for one
    /// (see [`Self::needing_native`]).
    pub fn needs_native(&self) -> Option<&str> {
        self.needs_native.as_deref()
    }

    /// The dialect the client spoke.
    pub fn dialect(&self) -> ClientDialect {
        self.dialect
    }

    /// The same call with this metadata.
    pub fn with_meta(mut self, meta: CallMeta) -> Self {
        self.meta = meta;
        self
    }

    /// The canonical request.
    pub fn request(&self) -> &R {
        &self.request
    }

    /// The request, to edit: the client's bytes no longer say the same thing and are
    /// dropped, so every provider encodes the edited request.
    pub fn request_mut(&mut self) -> &mut R {
        self.client_body = None;
        &mut self.request
    }

    /// The client's Chat Completions body as received, while the request is unedited.
    /// `None` when the client spoke another dialect.
    pub fn client_body(&self) -> Option<&Bytes> {
        self.native_body(ClientDialect::ChatCompletions)
    }

    /// The client's body as received, when it is in `dialect` and the request is
    /// unedited: what an upstream speaking `dialect` forwards.
    pub fn native_body(&self, dialect: ClientDialect) -> Option<&Bytes> {
        self.client_body
            .as_ref()
            .filter(|_| self.dialect == dialect)
    }

    /// The size of the client's body, whatever its dialect (0 once edited or when
    /// built in-process): what token estimates are made from.
    pub fn client_body_len(&self) -> usize {
        self.client_body.as_ref().map_or(0, Bytes::len)
    }

    /// The request, giving up the call.
    pub fn into_request(self) -> R {
        self.request
    }

    /// The value of a forwarded client header.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.meta
            .headers
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// How long one attempt may take, phase by phase (the engine's policy, already the
/// tightest of the provider's, the route's, the target's and what is left of the
/// call's deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To establish a new upstream connection (TCP and TLS).
    pub connect: Duration,
    /// To the response head; for a JSON answer, to the whole answer.
    pub head: Duration,
    /// Streams: the longest silence between two chunks.
    pub idle: Duration,
}

impl Timeouts {
    /// The same bound for every phase.
    pub fn uniform(d: Duration) -> Self {
        Self {
            connect: d,
            head: d,
            idle: d,
        }
    }
}

/// One call sent to one target: what a [`crate::Provider`] receives. The upstream
/// model is passed beside the request, never written into it, so the client's bytes
/// stay valid for a passthrough provider (which splices the model in).
#[derive(Debug)]
pub struct Attempt<'a, R = ChatRequest> {
    call: &'a Call<R>,
    model: &'a str,
    /// This attempt's bounds.
    pub timeouts: Timeouts,
    /// 1 for the first attempt of a call, counting retries and fallbacks.
    pub number: u32,
    /// This attempt's span, when the call is traced: its `traceparent` goes upstream.
    pub trace: Option<SpanContext>,
}

// By hand: derived, they would require `R: Clone` / `R: Copy`, and an attempt only
// borrows its request.
impl<R> Clone for Attempt<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Attempt<'_, R> {}

impl<'a, R> Attempt<'a, R> {
    /// An attempt of `call` at `model`.
    pub fn new(call: &'a Call<R>, model: &'a str, timeouts: Timeouts) -> Self {
        Self {
            call,
            model,
            timeouts,
            number: 1,
            trace: None,
        }
    }

    /// The call being attempted.
    pub fn call(&self) -> &'a Call<R> {
        self.call
    }

    /// The canonical request (its `model` is the client's; see [`Self::model`]).
    pub fn request(&self) -> &'a R {
        &self.call.request
    }

    /// The model name to send upstream.
    pub fn model(&self) -> &'a str {
        self.model
    }

    /// The client's Chat Completions bytes, when they may be forwarded with the
    /// model spliced in.
    pub fn client_body(&self) -> Option<&'a Bytes> {
        self.call.client_body()
    }

    /// The client's bytes in `dialect`, when they may be forwarded with the model
    /// spliced in (an Anthropic upstream takes a Messages client's body as sent).
    pub fn native_body(&self, dialect: ClientDialect) -> Option<&'a Bytes> {
        self.call.native_body(dialect)
    }

    /// The call's request id.
    pub fn request_id(&self) -> &'a str {
        &self.call.meta.request_id
    }

    /// A forwarded client header.
    pub fn header(&self, name: &str) -> Option<&'a HeaderValue> {
        self.call.header(name)
    }

    /// The client's own provider key, when it sent one for this call (the engine
    /// admits it only for providers with `allow_client_key`): a provider sends it
    /// instead of its configured `api_key`.
    pub fn client_key(&self) -> Option<&'a crate::config::ApiKey> {
        self.call.meta.provider_key.as_ref()
    }

    /// [`Self::client_key`] as a header value after `prefix` (`"Bearer "` or `""`),
    /// marked sensitive. `None` also when it cannot be a header value.
    pub fn client_key_header(&self, prefix: &str) -> Option<HeaderValue> {
        let key = self.client_key()?;
        let mut v = HeaderValue::from_str(&format!("{prefix}{}", key.expose())).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// The `traceparent` to send upstream: this attempt's span when the call is
    /// traced, else the client's own, unchanged.
    pub fn traceparent(&self) -> Option<HeaderValue> {
        match &self.trace {
            Some(t) => Some(t.traceparent()),
            None => self.header("traceparent").cloned(),
        }
    }
}

/// What a call asks for, as telemetry names it (`gen_ai.operation.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A chat completion (any ingress dialect: Chat Completions, Messages, Responses).
    Chat,
    /// Embeddings.
    Embeddings,
}

impl Operation {
    /// The OpenTelemetry GenAI name: `chat`, `embeddings`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Embeddings => "embeddings",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a provider returns: the answer by value, and the request parameters it left
/// out because its upstream cannot express them (`drop_unsupported = true`), which the
/// gateway reports in `x-modelway-dropped-params`.
#[derive(Debug)]
pub struct Answer<T> {
    pub value: T,
    pub dropped: Vec<String>,
    /// The rate limits the upstream reported on this answer, if any.
    pub limits: Option<crate::limits::UpstreamLimits>,
}

impl<T> Answer<T> {
    /// An answer that dropped nothing.
    pub fn new(value: T) -> Self {
        Self {
            value,
            dropped: Vec::new(),
            limits: None,
        }
    }

    /// An answer that dropped `dropped`.
    pub fn with_dropped(value: T, dropped: Vec<String>) -> Self {
        Self {
            value,
            dropped,
            limits: None,
        }
    }

    /// The same dropped list around another value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Answer<U> {
        Answer {
            value: f(self.value),
            dropped: self.dropped,
            limits: self.limits,
        }
    }
}

impl From<crate::chat::ChatResponse> for Answer<crate::chat::Completion> {
    fn from(r: crate::chat::ChatResponse) -> Self {
        Answer::new(crate::chat::Completion::Parsed(Box::new(r)))
    }
}

/// A new request id: `req_` and 32 hex digits, a random per-process prefix then a
/// counter, so ids are unique across restarts and cost no random draw per request.
pub fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Written into a buffer, then copied once: a `push` per digit checks capacity and
    // encodes a char each time.
    let mut buf = [0u8; 36];
    buf[..4].copy_from_slice(b"req_");
    for (w, word) in [prefix, n].into_iter().enumerate() {
        for (j, d) in buf[4 + 16 * w..20 + 16 * w].iter_mut().enumerate() {
            *d = HEX[((word >> ((15 - j) * 4)) & 0xf) as usize];
        }
    }
    std::str::from_utf8(&buf)
        .map(str::to_owned)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_req_and_32_hex_digits_counting_up() {
        let (a, b) = (new_request_id(), new_request_id());
        for id in [&a, &b] {
            assert_eq!(id.len(), 36, "{id}");
            assert!(id.starts_with("req_"), "{id}");
            assert!(id[4..]
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        assert_eq!(a[..20], b[..20], "one prefix per process");
        let n = |id: &str| u64::from_str_radix(&id[20..], 16).unwrap();
        assert!(n(&b) > n(&a));
    }

    #[test]
    fn editing_the_request_drops_the_client_bytes() {
        let req = ChatRequest::new("m", vec![]);
        let mut call = Call::from_client(req, Bytes::from_static(b"{}"), CallMeta::default());
        assert!(call.client_body().is_some());
        // Reading keeps them.
        assert_eq!(call.request().model, "m");
        assert!(call.client_body().is_some());
        call.request_mut().max_tokens = Some(5);
        assert!(call.client_body().is_none());
        assert_eq!(call.client_body_len(), 0);
        let attempt = Attempt::new(&call, "upstream-x", Timeouts::uniform(Duration::ZERO));
        assert_eq!(attempt.model(), "upstream-x");
        assert_eq!(attempt.request().model, "m");
    }

    #[test]
    fn only_an_upstream_of_the_clients_dialect_sees_its_bytes() {
        let req = ChatRequest::new("m", vec![]);
        let body = Bytes::from_static(b"{\"max_tokens\":1}");
        let call = Call::from_client_in(ClientDialect::Messages, req, body, CallMeta::default());
        assert!(call.client_body().is_none());
        assert!(call.native_body(ClientDialect::Responses).is_none());
        assert!(call.native_body(ClientDialect::Messages).is_some());
        assert_eq!(call.client_body_len(), 16);
        assert_eq!(call.needs_native(), None);
        let call = call.needing_native("previous_response_id");
        assert_eq!(call.needs_native(), Some("previous_response_id"));
    }
}
