//! `POST /v1/responses`: OpenAI's Responses API (what the OpenAI Agents SDK speaks by
//! default).
//!
//! To an upstream that has the Responses API itself (a provider of kind `openai`, or one
//! with `responses_api = true`) the client's body goes as it came (the provider splices
//! in the target's model) and the answer and events come back byte for byte. To any
//! other the request is decoded into the canonical model and the answer or stream
//! encoded back as a `response` object or its event sequence
//! ([`modelway_core::dialect::responses`]).
//!
//! What needs state kept by the server or OpenAI-hosted tools (`previous_response_id`,
//! `store: true`, built-in tools, …) can only be forwarded: such a call goes only to
//! targets that take the body as sent, and is a 400 naming the feature when the model
//! has none ([`Call::needing_native`](modelway_core::Call::needing_native)) — never
//! translated with the feature silently dropped.

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

/// What the answer needs of the request.
pub(crate) struct Ctx {
    /// The request fields a translated answer repeats.
    echo: Echo,
    /// The first feature only an OpenAI upstream can serve, if the request has one.
    stateful: Option<String>,
}

impl Dialect for Responses {
    const CLIENT: ClientDialect = ClientDialect::Responses;
    const OPERATION: &'static str = "chat";
    const PATH: &'static str = "/v1/responses";
    type Ctx = Ctx;
    type Encoder = ResponsesSse;

    fn forwarded() -> &'static [HeaderName] {
        &FORWARDED
    }

    fn decode(body: &Bytes) -> Result<(ChatRequest, Ctx), GatewayError> {
        let decoded = responses::decode_request(body)?;
        let ctx = Ctx {
            echo: decoded.echo,
            stateful: decoded.stateful.into_iter().next(),
        };
        Ok((decoded.request, ctx))
    }

    fn needs_native(ctx: &Ctx) -> Option<&str> {
        ctx.stateful.as_deref()
    }

    fn error_body(err: &GatewayError) -> Bytes {
        Bytes::from(err.to_json())
    }

    fn answer(c: Completion, ctx: &Ctx) -> Result<Bytes, GatewayError> {
        if let Some(native) = c.native(ClientDialect::Responses) {
            return Ok(native.clone());
        }
        let resp = c
            .into_response()
            .map_err(|e| GatewayError::internal(format!("could not read the answer: {e}")))?;
        Ok(responses::encode_response(&resp, &ctx.echo))
    }

    fn encoder(ctx: Ctx, _: &str) -> ResponsesSse {
        ResponsesSse {
            enc: responses::StreamEncoder::new(ctx.echo),
            native: None,
        }
    }
}

/// The Responses event stream: an upstream's own events as they came, or canonical
/// chunks encoded.
pub(crate) struct ResponsesSse {
    enc: responses::StreamEncoder,
    /// The stream is the upstream's own: how many of its events were sent.
    native: Option<u64>,
}

impl StreamEncode for ResponsesSse {
    fn chunk(&mut self, chunk: ChatChunk, _cost: Option<f64>, out: &mut Vec<u8>) {
        if let Some(events) = &chunk.native {
            // Each event the provider hands on ends with the one blank line it was
            // written with.
            let n = events.windows(2).filter(|w| w == b"\n\n").count() as u64;
            *self.native.get_or_insert(0) += n;
            out.extend_from_slice(events);
            return;
        }
        if self.native.is_none() {
            self.enc.chunk(&chunk, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        // A passthrough stream's terminal event came with its last chunk.
        if self.native.is_none() {
            self.enc.finish(out);
        }
    }

    fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        match self.native {
            Some(sent) => native_error(err, sent, out),
            None => self.enc.error(err, out),
        }
    }
}

/// A failure in the middle of an upstream's own stream: an `error` event numbered
/// after the events sent (OpenAI numbers them 0, 1, … in order). Not `response.failed`:
/// that would have to repeat a response object only the upstream knows.
fn native_error(err: &GatewayError, sequence_number: u64, out: &mut Vec<u8>) {
    let code = err.code.as_deref().unwrap_or(match err.status {
        429 => "rate_limit_exceeded",
        400 => "invalid_prompt",
        _ => "server_error",
    });
    let event = serde_json::json!({
        "type": "error",
        "code": code,
        "message": err.message,
        "param": err.param,
        "sequence_number": sequence_number,
    });
    out.extend_from_slice(b"event: error\ndata: ");
    out.extend_from_slice(event.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_passthrough_stream_goes_as_it_came_and_a_failure_is_numbered_after_it() {
        let (_, ctx) = Responses::decode(&Bytes::from_static(
            br#"{"model":"m","input":"hi","stream":true,"previous_response_id":"resp_0"}"#,
        ))
        .unwrap();
        assert_eq!(Responses::needs_native(&ctx), Some("previous_response_id"));
        let mut enc = Responses::encoder(ctx, "m");
        let mut out = Vec::new();
        let events: &[u8] = b"event: response.created\ndata: {\"sequence_number\":0}\n\nevent: response.in_progress\ndata: {\"sequence_number\":1}\n\n";
        let mut chunk = ChatChunk::new("resp_1", 1, "m");
        chunk.native = Some(Bytes::from_static(events));
        enc.chunk(chunk, None, &mut out);
        // A canonical chunk without bytes (none comes from a passthrough upstream)
        // is not encoded into its stream.
        enc.chunk(ChatChunk::new("resp_1", 1, "m"), None, &mut out);
        assert_eq!(out, events);
        let err = GatewayError::upstream("cut").with_code("upstream_error");
        enc.error(&err, &mut out);
        let tail = String::from_utf8_lossy(&out[events.len()..]).into_owned();
        let data = tail
            .strip_prefix("event: error\ndata: ")
            .and_then(|d| d.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("not one error event: {tail:?}"));
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            (&v["type"], &v["sequence_number"], &v["code"], &v["message"]),
            (
                &"error".into(),
                &2.into(),
                &"upstream_error".into(),
                &"cut".into()
            )
        );
    }
}
