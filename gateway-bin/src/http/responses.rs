//! `POST /v1/responses`: OpenAI's Responses API, stateless (what the OpenAI Agents
//! SDK speaks by default).
//!
//! The request is decoded into the canonical model, served by any provider, and the
//! answer or stream encoded back as a `response` object or its event sequence
//! ([`modelway_core::dialect::responses`]). What needs state kept by the server or
//! OpenAI-hosted tools (`previous_response_id`, `store: true`, built-in tools, …) is a
//! 400 naming it: the gateway keeps no conversation state and never drops a feature
//! silently.

use bytes::Bytes;
use http::HeaderName;
use modelway_core::chat::{ChatChunk, ChatRequest, Completion};
use modelway_core::dialect::responses::{self, Echo};
use modelway_core::{ClientDialect, GatewayError};

use super::ingress::{Dialect, StreamEncode};

/// OpenAI Responses.
pub(crate) struct Responses;

/// Client headers providers may forward upstream (attribution and trace context).
static FORWARDED: [HeaderName; 4] = [
    HeaderName::from_static("http-referer"),
    HeaderName::from_static("x-title"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

impl Dialect for Responses {
    const CLIENT: ClientDialect = ClientDialect::Responses;
    const OPERATION: &'static str = "chat";
    const PATH: &'static str = "/v1/responses";
    type Ctx = Echo;
    type Encoder = ResponsesSse;

    fn forwarded() -> &'static [HeaderName] {
        &FORWARDED
    }

    fn decode(body: &Bytes) -> Result<(ChatRequest, Echo), GatewayError> {
        let decoded = responses::decode_request(body)?;
        if let Some(feature) = decoded.stateful.first() {
            return Err(GatewayError::bad_request(format!(
                "`{feature}` needs state kept by the server or an OpenAI-hosted tool, which \
                 this gateway does not provide: send the whole conversation in `input` and \
                 use function tools."
            ))
            .with_param(feature.clone()));
        }
        Ok((decoded.request, decoded.echo))
    }

    fn error_body(err: &GatewayError) -> Bytes {
        Bytes::from(err.to_json())
    }

    fn answer(c: Completion, echo: &Echo) -> Result<Bytes, GatewayError> {
        let resp = c
            .into_response()
            .map_err(|e| GatewayError::internal(format!("could not read the answer: {e}")))?;
        Ok(responses::encode_response(&resp, echo))
    }

    fn encoder(echo: Echo, _: &str) -> ResponsesSse {
        ResponsesSse(responses::StreamEncoder::new(echo))
    }
}

/// The Responses event stream.
pub(crate) struct ResponsesSse(responses::StreamEncoder);

impl StreamEncode for ResponsesSse {
    fn chunk(&mut self, chunk: ChatChunk, _cost: Option<f64>, out: &mut Vec<u8>) {
        self.0.chunk(&chunk, out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.0.finish(out);
    }

    fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        self.0.error(err, out);
    }
}
