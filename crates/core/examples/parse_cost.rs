//! Instruction-count probe for the request/chunk codec: run under
//! `valgrind --tool=callgrind` and compare totals between changes.
use modelway_core::chat::{ChatChunk, ChatRequest};

const REQ: &str = r#"{"model":"bench","messages":[{"role":"system","content":"You are a helpful assistant that answers briefly and precisely."},{"role":"user","content":"What is the capital of France? Please answer in one short sentence, and explain nothing else at all."}],"temperature":0.2,"max_tokens":64,"stream":false,"user":"bench-user","metadata":{"a":"b"}}"#;
const CHUNK: &str = r#"{"id":"chatcmpl-ABfw8AOXnoa2kzy11vVTSjuQhHCQr","object":"chat.completion.chunk","created":1727346176,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_7568d46099","choices":[{"index":0,"delta":{"content":" Paris"},"logprobs":null,"finish_reason":null}]}"#;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut total = 0usize;
    for _ in 0..n {
        let r: ChatRequest = serde_json::from_str(REQ).expect("valid");
        total += serde_json::to_vec(&r).expect("serialises").len();
        let c: ChatChunk = serde_json::from_str(CHUNK).expect("valid");
        total += serde_json::to_vec(&c).expect("serialises").len();
    }
    println!("{total}");
}
