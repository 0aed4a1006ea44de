//! The bytes on the wire: the client's request (OpenAI chat or Anthropic Messages, see
//! [`ClientDialect`]), the mock upstream's answers and stream chunks, and the stamp each
//! streamed content chunk carries.
//!
//! Every content chunk's text is `c{index}@{unix_ns} `: its position in the stream
//! (so the client can check the stream arrived whole and in order) and the wall-clock
//! time the upstream wrote it (so the client, on the same machine, measures each chunk's
//! transit through the proxy in between to the microsecond, independent of how evenly
//! the upstream's timer paces the stream).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;

/// The model name the upstream reports (and the gateway's route points at).
pub const UPSTREAM_MODEL: &str = "bench-model";

const SYSTEM_PROMPT: &str = "You are the support assistant of an online bookshop. \
Answer in at most three sentences, quote prices only from the catalogue, and say so \
plainly when you do not know.";
const USER_PROMPT: &str = "Do you have the paperback edition of The Left Hand of \
Darkness in stock, and how many working days does standard delivery to Lyon usually take?";

/// A small realistic chat request (about 400 bytes), compact JSON as SDKs send it.
pub fn chat_request(model: &str, stream: bool) -> Bytes {
    let v = serde_json::json!({
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PROMPT},
        ],
        "temperature": 0.2,
    });
    let mut s = v.to_string();
    if stream {
        // Keep key order stable: `stream` last, as the OpenAI Python SDK sends it.
        s.pop();
        s.push_str(r#","stream":true}"#);
    }
    Bytes::from(s)
}

/// The same question as [`chat_request`] as an Anthropic Messages request (about 400
/// bytes): the system prompt top-level, `max_tokens` required, compact JSON.
pub fn messages_request(model: &str, stream: bool) -> Bytes {
    let v = serde_json::json!({
        "model": model,
        "max_tokens": 1024,
        "system": SYSTEM_PROMPT,
        "messages": [{"role": "user", "content": USER_PROMPT}],
        "temperature": 0.2,
    });
    let mut s = v.to_string();
    if stream {
        s.pop();
        s.push_str(r#","stream":true}"#);
    }
    Bytes::from(s)
}

/// What the load generator speaks to a target: the endpoint, the body and headers an
/// SDK of that API sends, and how its answers and streams read. Not the upstream's
/// dialect (`bench-upstream --dialect`): a gateway may translate between the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientDialect {
    /// OpenAI Chat Completions, `POST /v1/chat/completions`.
    Openai,
    /// Anthropic Messages, `POST /v1/messages` with `anthropic-version`, as Anthropic's
    /// SDKs and Claude Code send it.
    Anthropic,
}

impl ClientDialect {
    /// The `loadgen --dialect` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
        }
    }

    /// The endpoint requests go to.
    pub fn path(self) -> &'static str {
        match self {
            Self::Openai => "/v1/chat/completions",
            Self::Anthropic => "/v1/messages",
        }
    }

    /// The request body ([`chat_request`] or [`messages_request`]).
    pub fn request(self, model: &str, stream: bool) -> Bytes {
        match self {
            Self::Openai => chat_request(model, stream),
            Self::Anthropic => messages_request(model, stream),
        }
    }

    /// Headers every request carries besides host, content type and key.
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Openai => &[],
            Self::Anthropic => &[("anthropic-version", "2023-06-01")],
        }
    }

    /// The header an SDK of this API puts `key` in, and its value.
    pub fn key_header(self, key: &str) -> (&'static str, String) {
        match self {
            Self::Openai => ("authorization", format!("Bearer {key}")),
            Self::Anthropic => ("x-api-key", key.to_owned()),
        }
    }

    /// Bytes every successful non-streaming answer contains.
    pub fn answer_marker(self) -> &'static [u8] {
        match self {
            Self::Openai => br#""choices""#,
            Self::Anthropic => br#""type":"message""#,
        }
    }

    /// The event that ends a complete stream, as messages name it.
    pub fn stream_end(self) -> &'static str {
        match self {
            Self::Openai => "[DONE]",
            Self::Anthropic => "message_stop",
        }
    }
}

const ID: &str = "chatcmpl-bench00000000000000000001";

/// The text of every non-streaming answer, whatever the dialect.
const ANSWER: &str = "Yes, the paperback edition is in stock. Standard delivery to Lyon \
usually takes three to five working days; express delivery takes one to two.";
const CREATED: u64 = 1_735_689_600;

/// The non-streaming answer (about 600 bytes).
pub fn completion() -> Bytes {
    let v = serde_json::json!({
        "id": ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": UPSTREAM_MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": ANSWER,
                "refusal": null,
            },
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": 64,
            "completion_tokens": 33,
            "total_tokens": 97,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    });
    Bytes::from(v.to_string())
}

fn chunk(delta: serde_json::Value, finish: Option<&str>) -> Bytes {
    let v = serde_json::json!({
        "id": ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": UPSTREAM_MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    });
    sse_data(&v.to_string())
}

fn sse_data(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

/// The first event of a stream: the role, no content.
pub fn role_chunk() -> Bytes {
    chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        None,
    )
}

/// Content chunk `index`, stamped with the current wall-clock time.
pub fn content_chunk(index: u32) -> Bytes {
    chunk(
        serde_json::json!({"content": format!("c{index}@{} ", unix_nanos())}),
        None,
    )
}

/// The chunk carrying `finish_reason: "stop"`.
pub fn finish_chunk() -> Bytes {
    chunk(serde_json::json!({}), Some("stop"))
}

/// The usage chunk OpenAI sends last when the request asked for
/// `stream_options.include_usage`.
pub fn usage_chunk() -> Bytes {
    let v = serde_json::json!({
        "id": ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": UPSTREAM_MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [],
        "usage": {"prompt_tokens": 64, "completion_tokens": 100, "total_tokens": 164},
    });
    sse_data(&v.to_string())
}

/// The end of every stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// The Anthropic Messages answers carrying the same text as the OpenAI ones, so every
/// path moves the same content.
pub mod anthropic {
    use bytes::Bytes;

    use super::{unix_nanos, ANSWER, UPSTREAM_MODEL};

    const ID: &str = "msg_bench0000000000000000001";

    /// The non-streaming `message`.
    pub fn completion() -> Bytes {
        let v = serde_json::json!({
            "id": ID,
            "type": "message",
            "role": "assistant",
            "model": UPSTREAM_MODEL,
            "content": [{"type": "text", "text": ANSWER}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 64, "output_tokens": 33,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        });
        Bytes::from(v.to_string())
    }

    fn event(name: &str, data: &serde_json::Value) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    /// `message_start` and the text block's `content_block_start`.
    pub fn start() -> Bytes {
        let mut s = event(
            "message_start",
            &serde_json::json!({"type": "message_start", "message": {
                "id": ID, "type": "message", "role": "assistant", "model": UPSTREAM_MODEL,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 64, "output_tokens": 1}}}),
        );
        s.push_str(&event(
            "content_block_start",
            &serde_json::json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ));
        Bytes::from(s)
    }

    /// Text delta `index`, stamped like [`super::content_chunk`].
    pub fn content_chunk(index: u32) -> Bytes {
        Bytes::from(event(
            "content_block_delta",
            &serde_json::json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": format!("c{index}@{} ", unix_nanos())}}),
        ))
    }

    /// `content_block_stop`, `message_delta` (stop reason, usage) and `message_stop`.
    pub fn finish(chunks: u32) -> Bytes {
        let mut s = event(
            "content_block_stop",
            &serde_json::json!({"type": "content_block_stop", "index": 0}),
        );
        s.push_str(&event(
            "message_delta",
            &serde_json::json!({"type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": chunks}}),
        ));
        s.push_str(&event(
            "message_stop",
            &serde_json::json!({"type": "message_stop"}),
        ));
        Bytes::from(s)
    }
}

/// The Gemini `generateContent` answers carrying the same text as the OpenAI ones.
pub mod gemini {
    use bytes::Bytes;

    use super::{unix_nanos, ANSWER, UPSTREAM_MODEL};

    const ID: &str = "bench0000000000000001";

    fn response(text: &str, finish: bool, output_tokens: u32) -> serde_json::Value {
        let mut candidate = serde_json::json!({
            "content": {"parts": [{"text": text}], "role": "model"},
            "index": 0,
        });
        if finish {
            candidate["finishReason"] = "STOP".into();
        }
        serde_json::json!({
            "candidates": [candidate],
            "usageMetadata": {"promptTokenCount": 64, "candidatesTokenCount": output_tokens,
                              "totalTokenCount": 64 + output_tokens},
            "modelVersion": UPSTREAM_MODEL,
            "responseId": ID,
        })
    }

    /// The non-streaming answer.
    pub fn completion() -> Bytes {
        Bytes::from(response(ANSWER, true, 33).to_string())
    }

    fn sse(v: &serde_json::Value) -> Bytes {
        // Google's servers end each event with CRLF pairs.
        Bytes::from(format!("data: {v}\r\n\r\n"))
    }

    /// Streamed text part `index`, stamped like [`super::content_chunk`].
    pub fn content_chunk(index: u32) -> Bytes {
        sse(&response(
            &format!("c{index}@{} ", unix_nanos()),
            false,
            index + 1,
        ))
    }

    /// The last event: an empty text part with the finish reason and final usage.
    pub fn finish(chunks: u32) -> Bytes {
        sse(&response("", true, chunks))
    }
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Parses a content text written by [`content_chunk`]: `(index, unix_ns)`.
pub fn parse_stamp(content: &str) -> Option<(u32, u64)> {
    let rest = content.trim_end().strip_prefix('c')?;
    let (index, ns) = rest.split_once('@')?;
    Some((index.parse().ok()?, ns.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_realistic_and_valid_json() {
        for stream in [false, true] {
            let body = chat_request("bench", stream);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["model"], "bench");
            assert_eq!(v["messages"].as_array().unwrap().len(), 2);
            assert_eq!(v.get("stream").is_some(), stream);
            assert!((350..500).contains(&body.len()), "{}", body.len());
            assert_eq!(crate::contains(&body, br#""stream":true"#), stream);
        }
    }

    #[test]
    fn messages_request_is_realistic_and_valid_json() {
        for stream in [false, true] {
            let body = messages_request("bench", stream);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["model"], "bench");
            assert_eq!(v["max_tokens"], 1024);
            assert_eq!(v["system"], SYSTEM_PROMPT);
            assert_eq!(v["messages"][0]["content"], USER_PROMPT);
            assert_eq!(v.get("stream").is_some(), stream);
            assert!((350..500).contains(&body.len()), "{}", body.len());
            assert_eq!(crate::contains(&body, br#""stream":true"#), stream);
        }
    }

    #[test]
    fn each_dialect_names_itself_and_recognises_its_answer() {
        use clap::ValueEnum;
        let answers = [
            (ClientDialect::Openai, completion()),
            (ClientDialect::Anthropic, anthropic::completion()),
        ];
        for (d, answer) in answers {
            assert_eq!(
                ClientDialect::from_str(d.as_str(), false),
                Ok(d),
                "{d:?} does not parse back from {:?}",
                d.as_str()
            );
            assert!(crate::contains(&answer, d.answer_marker()), "{d:?}");
        }
        for d in [ClientDialect::Openai, ClientDialect::Anthropic] {
            // loadgen builds these with `from_static`, which panics on a bad name.
            for (name, value) in d.headers() {
                assert!(http::HeaderName::from_bytes(name.as_bytes()).is_ok_and(|n| n == *name));
                assert!(http::HeaderValue::from_str(value).is_ok(), "{value}");
            }
            let (name, value) = d.key_header("sk-x");
            assert!(http::HeaderName::from_bytes(name.as_bytes()).is_ok_and(|n| n == name));
            assert!(value.ends_with("sk-x"), "{value}");
        }
        assert!(!crate::contains(
            &completion(),
            ClientDialect::Anthropic.answer_marker()
        ));
        assert!(!crate::contains(
            &anthropic::completion(),
            ClientDialect::Openai.answer_marker()
        ));
    }

    #[test]
    fn stamps_round_trip() {
        let c = content_chunk(42);
        let text = std::str::from_utf8(&c).unwrap();
        let json = text.strip_prefix("data: ").unwrap().trim_end();
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let content = v["choices"][0]["delta"]["content"].as_str().unwrap();
        let (i, ns) = parse_stamp(content).unwrap();
        assert_eq!(i, 42);
        assert!(ns > 0);
        assert_eq!(parse_stamp("hello"), None);
        assert!(serde_json::from_slice::<serde_json::Value>(&completion()).is_ok());
    }

    #[test]
    fn translated_dialects_are_valid_and_stamped() {
        for body in [anthropic::completion(), gemini::completion()] {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(v.to_string().contains(ANSWER));
        }
        let mut events = Vec::new();
        for bytes in [
            anthropic::start(),
            anthropic::content_chunk(7),
            anthropic::finish(1),
            gemini::content_chunk(7),
            gemini::finish(1),
        ] {
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
                events.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
            }
        }
        assert_eq!(events.len(), 8);
        let a = events[2]["delta"]["text"].as_str().unwrap();
        let g = events[6]["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap();
        assert_eq!(parse_stamp(a).unwrap().0, 7);
        assert_eq!(parse_stamp(g).unwrap().0, 7);
        assert_eq!(events[7]["candidates"][0]["finishReason"], "STOP");
    }
}
