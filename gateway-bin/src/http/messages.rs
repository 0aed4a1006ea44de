//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API,
//! as Claude Code and Anthropic's SDKs speak it.
//!
//! To an Anthropic upstream the client's body goes as it came (the provider splices in
//! the target's model) and the answer and events come back byte for byte; to any
//! other the request is translated to the canonical model and the answer back
//! ([`modelway_core::dialect::messages`]).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use modelway_core::chat::{ChatChunk, ChatRequest, Completion};
use modelway_core::dialect::messages;
use modelway_core::{Attempt, Call, CallMeta, ClientDialect, GatewayError, Timeouts};

use super::ingress::{Dialect, StreamEncode};
use super::{authenticate, Body};
use crate::app::App;
use crate::limits::RateHeaders;

/// Anthropic Messages.
pub(crate) struct Messages;

/// Client headers providers may forward upstream: how to read the body (to an
/// Anthropic upstream taking it as sent) and trace context.
static FORWARDED: [HeaderName; 6] = [
    HeaderName::from_static("anthropic-version"),
    HeaderName::from_static("anthropic-beta"),
    HeaderName::from_static("http-referer"),
    HeaderName::from_static("x-title"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

/// The request id header Anthropic's SDKs read (`_request_id`, error messages).
const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

impl Dialect for Messages {
    const CLIENT: ClientDialect = ClientDialect::Messages;
    const OPERATION: &'static str = "chat";
    const PATH: &'static str = "/v1/messages";
    type Ctx = Ctx;
    type Encoder = MessagesSse;

    fn forwarded() -> &'static [HeaderName] {
        &FORWARDED
    }

    fn decode(body: &Bytes) -> Result<(ChatRequest, Ctx), GatewayError> {
        let (req, anthropic_only) = decode(body, messages::decode_request)?;
        let ctx = Ctx {
            model: req.model.clone(),
            // Only a translated stream's `message_start` reports it.
            input_estimate: if req.is_stream() {
                messages::count_tokens_estimate(&req)
            } else {
                0
            },
            anthropic_only,
        };
        Ok((req, ctx))
    }

    fn needs_native(ctx: &Ctx) -> Option<&str> {
        ctx.anthropic_only.as_deref()
    }

    fn error_body(err: &GatewayError) -> Bytes {
        messages::error_body(err)
    }

    fn error_status(err: &GatewayError) -> u16 {
        // Anthropic's SDKs (and Claude Code's retries) know overload by its 529.
        if messages::error_type(err) == "overloaded_error" {
            529
        } else {
            err.status
        }
    }

    fn answer(c: Completion, Ctx { model, .. }: &Ctx) -> Result<Bytes, GatewayError> {
        if let Some(native) = c.native(ClientDialect::Messages) {
            return Ok(native.clone());
        }
        let resp = c
            .into_response()
            .map_err(|e| GatewayError::internal(format!("could not read the answer: {e}")))?;
        Ok(messages::encode_response(&resp, model))
    }

    fn encoder(ctx: Ctx, _: &str) -> MessagesSse {
        MessagesSse {
            enc: messages::StreamEncoder::new(&ctx.model).with_input_estimate(ctx.input_estimate),
            native: false,
        }
    }

    fn headers(h: &mut HeaderMap, request_id: &str, rate: &RateHeaders) {
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(REQUEST_ID, v);
        }
        rate.apply_anthropic(h);
    }
}

/// What the Messages encoders need of a request.
pub(crate) struct Ctx {
    /// The model the client asked for, reported in translated answers.
    model: String,
    /// Its input tokens, estimated: `message_start`'s usage before the real count.
    input_estimate: u64,
    /// The field naming content only Anthropic can serve (a server tool, a Files API
    /// source): then the call goes only to targets that take the body as sent.
    anthropic_only: Option<String>,
}

/// Decodes with `decode`; a body whose content only Anthropic itself can serve is read
/// minimally instead ([`messages::passthrough_reading`]) and returned with the field
/// that needs it, for the engine to send only where the body goes as it came.
fn decode(
    body: &[u8],
    decode: fn(&[u8]) -> Result<ChatRequest, GatewayError>,
) -> Result<(ChatRequest, Option<String>), GatewayError> {
    match decode(body) {
        Ok(req) => Ok((req, None)),
        Err(e) if e.code.as_deref() == Some(messages::ANTHROPIC_ONLY) => {
            match messages::passthrough_reading(body) {
                Some(req) => Ok((req, e.param.or_else(|| Some("content".to_owned())))),
                None => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Anthropic's event stream: an Anthropic upstream's own events as they came, or
/// canonical chunks translated.
pub(crate) struct MessagesSse {
    enc: messages::StreamEncoder,
    /// The stream is an Anthropic upstream's own: its events are sent, not encoded.
    native: bool,
}

impl StreamEncode for MessagesSse {
    fn chunk(&mut self, chunk: ChatChunk, _cost: Option<f64>, out: &mut Vec<u8>) {
        if let Some(events) = &chunk.native {
            self.native = true;
            out.extend_from_slice(events);
            return;
        }
        if !self.native {
            self.enc.chunk(&chunk, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        // A passthrough stream's `message_stop` came with its last chunk.
        if !self.native {
            self.enc.finish(out);
        }
    }

    fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        self.enc.error(err, out);
    }
}

/// `POST /v1/messages/count_tokens`, in Anthropic's shape: counted by the first of the
/// model's targets that can count (an Anthropic upstream, given the client's body as
/// sent), else an estimate from the request's text (see
/// [`messages::count_tokens_estimate`]). The gateway key is checked as for a call;
/// nothing is counted against limits.
pub(crate) async fn count_tokens(
    app: &App,
    req: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, GatewayError> {
    let snap = app.gateway.snapshot();
    let key = authenticate(&snap, &req)?;
    let limit = snap.config.server().max_body_bytes;
    let (parts, body) = req.into_parts();
    let body = modelway_core::http_client::body_bytes(http_body_util::Limited::new(body, limit))
        .await
        .map_err(|_| GatewayError::payload_too_large(limit))?;
    let (chat, anthropic_only) = decode(&body, messages::decode_count_tokens_request)?;
    if let Some(key) = key {
        if !key.allows(&chat.model) {
            return Err(GatewayError::forbidden(format!(
                "The key `{}` may not use the model `{}`.",
                key.name, chat.model
            )));
        }
    }
    let plan = snap.resolve(&chat.model)?;
    let estimate = messages::count_tokens_estimate(&chat);
    let meta = CallMeta {
        request_id: request_id.to_owned(),
        headers: FORWARDED
            .iter()
            .filter_map(|name| Some((name.clone(), parts.headers.get(name)?.clone())))
            .collect(),
        ..CallMeta::default()
    };
    let call = Call::from_client_in(ClientDialect::Messages, chat, body, meta);
    let mut counted = None;
    for target in plan.targets.iter() {
        // Content only Anthropic can serve is counted only by a target that takes the
        // body as sent.
        if anthropic_only.is_some()
            && !target
                .provider
                .provider
                .forwards_natively(ClientDialect::Messages)
        {
            continue;
        }
        let attempt = Attempt::new(
            &call,
            &target.model,
            Timeouts::uniform(target.policy.timeout),
        );
        let entry = &target.provider;
        match entry.provider.count_tokens(&attempt).await {
            Ok(Some(n)) => {
                counted = Some(n);
                break;
            }
            Ok(None) => {}
            // The upstream refused the request itself: the client hears why.
            Err(e) if !e.is_retryable() => {
                return Err(GatewayError::from_provider(&entry.name, &e));
            }
            Err(e) => {
                tracing::debug!(provider = %entry.name, error = %e.redacted(None), "count_tokens failed; trying the next target");
            }
        }
    }
    let mut resp = super::json_response(
        StatusCode::OK,
        messages::count_tokens_response(counted.unwrap_or(estimate)),
    );
    resp.headers_mut().insert(
        "x-modelway-token-count",
        HeaderValue::from_static(if counted.is_some() {
            "upstream"
        } else {
            "estimate"
        }),
    );
    Ok(resp)
}
