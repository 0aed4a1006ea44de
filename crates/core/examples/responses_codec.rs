//! The Responses codec (`modelway_core::dialect::responses`) on stdin/stdout, for
//! `responses_sdk_check.py`, which feeds what it encodes to the official openai and
//! openai-agents Python SDKs.
//!
//! Reads one JSON object: `{"request": <CreateResponse body>}` plus either
//! `"answer": <chat.completion>` or `"chunks": [<chat.completion.chunk>, …]` (and
//! optionally `"error": "rate_limited" | "upstream"` to end the stream with a failure
//! instead of a finish). Writes `{"request": <canonical chat request>, "stateful": […],
//! "body": <Responses JSON object or SSE text>}`, or `{"error": <message>, "param": …}`
//! when the request does not decode.
use std::io::{Read, Write};

use modelway_core::chat::{ChatChunk, ChatResponse};
use modelway_core::dialect::responses::{decode_request, encode_response, StreamEncoder};
use modelway_core::GatewayError;
use serde_json::{json, Value};

fn main() {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .expect("stdin is readable");
    let v: Value = serde_json::from_str(&input).expect("stdin holds one JSON object");
    let body = v["request"].to_string();
    let decoded = match decode_request(body.as_bytes()) {
        Ok(d) => d,
        Err(e) => {
            let out = json!({"error": e.message, "param": e.param, "status": e.status});
            println!("{out}");
            return;
        }
    };
    let body = if let Some(answer) = v.get("answer") {
        let resp: ChatResponse =
            serde_json::from_value(answer.clone()).expect("`answer` is a chat.completion");
        let bytes = encode_response(&resp, &decoded.echo);
        String::from_utf8(bytes.to_vec()).expect("the encoder writes UTF-8")
    } else {
        let chunks: Vec<ChatChunk> =
            serde_json::from_value(v["chunks"].clone()).expect("`chunks` are chunk objects");
        let mut enc = StreamEncoder::new(decoded.echo.clone());
        let mut out = Vec::new();
        for c in &chunks {
            enc.chunk(c, &mut out);
        }
        match v.get("error").and_then(Value::as_str) {
            Some("rate_limited") => enc.error(&GatewayError::rate_limited("slow down"), &mut out),
            Some(_) => enc.error(&GatewayError::upstream("the upstream broke"), &mut out),
            None => enc.finish(&mut out),
        }
        String::from_utf8(out).expect("the encoder writes UTF-8")
    };
    let out = json!({
        "request": decoded.request,
        "stateful": decoded.stateful,
        "body": body,
    });
    std::io::stdout()
        .write_all(out.to_string().as_bytes())
        .expect("stdout is writable");
}
