//! The bytes on the wire: the client's chat request, the mock upstream's answers and
//! stream chunks, and the stamp each streamed content chunk carries.
//!
//! Every content chunk's text is `c{index}@{unix_ns} `: its position in the stream
//! (so the client can check the stream arrived whole and in order) and the wall-clock
//! time the upstream wrote it (so the client, on the same machine, measures each chunk's
//! transit through the proxy in between to the microsecond, independent of how evenly
//! the upstream's timer paces the stream).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

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

const ID: &str = "chatcmpl-bench00000000000000000001";
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
                "content": "Yes, the paperback edition is in stock. Standard delivery to \
    Lyon usually takes three to five working days; express delivery takes one to two.",
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
}
