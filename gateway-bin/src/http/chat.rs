//! `POST /v1/chat/completions`: OpenAI Chat Completions, the canonical dialect —
//! JSON or SSE.

use bytes::Bytes;
use http::HeaderName;
use modelway_core::chat::{ChatChunk, ChatRequest, Completion};
use modelway_core::sse::{encode_data, encode_json_data, DONE};
use modelway_core::{ClientDialect, GatewayError};

use super::ingress::{Dialect, StreamEncode};

/// Chat Completions, as OpenAI's SDKs speak it.
pub(crate) struct Chat;

/// Client headers providers may forward upstream (attribution and trace context).
static FORWARDED: [HeaderName; 4] = [
    HeaderName::from_static("http-referer"),
    HeaderName::from_static("x-title"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

impl Dialect for Chat {
    const CLIENT: ClientDialect = ClientDialect::ChatCompletions;
    const OPERATION: &'static str = "chat";
    const PATH: &'static str = "/v1/chat/completions";
    /// Whether the client asked for the final usage chunk.
    type Ctx = bool;
    type Encoder = ChatSse;

    fn forwarded() -> &'static [HeaderName] {
        &FORWARDED
    }

    fn decode(body: &Bytes) -> Result<(ChatRequest, bool), GatewayError> {
        let req = parse(body)?;
        let send_usage = req.wants_stream_usage();
        Ok((req, send_usage))
    }

    fn error_body(err: &GatewayError) -> Bytes {
        Bytes::from(err.to_json())
    }

    fn answer(c: Completion, _: &bool) -> Result<Bytes, GatewayError> {
        c.to_json()
            .map_err(|e| GatewayError::internal(format!("could not encode the answer: {e}")))
    }

    fn encoder(send_usage: bool, _model: &str) -> ChatSse {
        ChatSse { send_usage }
    }
}

/// Chunks as `data:` events, `[DONE]` at the end, a failure as a `data: {"error":…}`
/// event (as OpenAI does) with no `[DONE]`.
pub(crate) struct ChatSse {
    /// The client asked for the final usage chunk (`stream_options.include_usage`);
    /// the engine sends it regardless, for the record.
    send_usage: bool,
}

impl StreamEncode for ChatSse {
    fn chunk(&mut self, mut chunk: ChatChunk, cost: Option<f64>, out: &mut Vec<u8>) {
        if !self.send_usage && chunk.choices.is_empty() && chunk.usage.is_some() {
            // The usage chunk the client did not ask for: read, not sent.
            return;
        }
        // A chunk from a Chat Completions upstream that nothing changed goes out as the
        // upstream wrote it.
        if let Some(raw) = chunk.raw.as_deref().filter(|_| chunk.usage.is_none()) {
            out.reserve(raw.len() + 8);
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(raw);
            out.extend_from_slice(b"\n\n");
            return;
        }
        // The usage chunk the client asked for carries the call's cost, as
        // OpenRouter's does (an upstream's own figure is kept).
        if let (Some(u), Some(c)) = (chunk.usage.as_mut(), cost) {
            u.extra.entry("cost").or_insert_with(|| c.into());
        }
        match encode_json_data(&chunk) {
            Ok(event) => out.extend_from_slice(&event),
            Err(e) => {
                let err = GatewayError::internal(format!("could not encode a chunk: {e}"));
                out.extend_from_slice(&encode_data(&err.to_json()));
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(DONE);
    }

    fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        out.extend_from_slice(&encode_data(&err.to_json()));
    }
}

/// Parses the body once into the canonical request, with OpenAI-style 400s.
fn parse(body: &Bytes) -> Result<ChatRequest, GatewayError> {
    if body.is_empty() {
        return Err(GatewayError::bad_request(
            "The request body is empty; expected a JSON chat completion request.",
        ));
    }
    // One UTF-8 check of the whole body (fast on ASCII), then a parse that need not
    // check each string again: `from_slice` validates every string it reads, a call
    // per string.
    let text = std::str::from_utf8(body).map_err(|e| {
        GatewayError::bad_request(format!(
            "We could not parse the JSON body of your request: it is not valid UTF-8 \
             (at byte {}).",
            e.valid_up_to()
        ))
    })?;
    let req: ChatRequest = serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        let param = ["model", "messages"]
            .into_iter()
            .find(|f| msg.contains(&format!("`{f}`")));
        let mut err = GatewayError::bad_request(if e.is_syntax() || e.is_eof() {
            format!("We could not parse the JSON body of your request: {msg}")
        } else {
            format!("Invalid request body: {msg}")
        });
        if let Some(p) = param {
            err = err.with_param(p);
        }
        err
    })?;
    // OpenRouter's dialect lets `models` stand in for `model`.
    let has_models = req
        .extra
        .get("models")
        .and_then(|m| m.as_array())
        .is_some_and(|m| !m.is_empty());
    if req.model.trim().is_empty() && !has_models {
        return Err(GatewayError::bad_request("`model` must not be empty.").with_param("model"));
    }
    if req.messages.is_empty() {
        return Err(
            GatewayError::bad_request("`messages` must contain at least one message.")
                .with_param("messages"),
        );
    }
    if req.n == Some(0) {
        return Err(GatewayError::bad_request("`n` must be at least 1.").with_param("n"));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bad_bodies_are_400s_naming_the_field() {
        let rows: &[(&str, Option<&str>)] = &[
            ("", None),
            ("{not json", None),
            (
                r#"{"messages":[{"role":"user","content":"hi"}]}"#,
                Some("model"),
            ),
            (r#"{"model":"m"}"#, Some("messages")),
            (r#"{"model":"m","messages":[]}"#, Some("messages")),
            (
                r#"{"model":"","messages":[{"role":"user","content":"hi"}]}"#,
                Some("model"),
            ),
            (r#"{"model":"m","messages":"hi"}"#, None),
            (
                r#"{"model":42,"messages":[{"role":"user","content":"hi"}]}"#,
                None,
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":0}"#,
                Some("n"),
            ),
            ("[1,2]", None),
        ];
        for (body, param) in rows {
            let err = parse(&Bytes::from(*body)).unwrap_err();
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.kind, "invalid_request_error", "{body}");
            assert_eq!(err.param.as_deref(), *param, "{body}: {}", err.message);
        }
    }

    #[test]
    fn a_body_that_is_not_utf8_is_a_400_saying_where() {
        let body = Bytes::from_static(
            b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}",
        );
        let err = parse(&body).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.kind, "invalid_request_error");
        assert!(
            err.message.contains("not valid UTF-8 (at byte 54)"),
            "{}",
            err.message
        );
        // Non-ASCII text that is UTF-8 parses, escapes and all.
        let ok = parse(&Bytes::from(
            r#"{"model":"m","messages":[{"role":"user","content":"café \u00e9 漢字"}]}"#,
        ))
        .unwrap();
        assert_eq!(ok.messages.len(), 1);
    }
}
