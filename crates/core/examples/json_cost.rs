//! Instruction-count probe for the allocation-free JSON check on the passthrough path:
//! `valgrind --tool=callgrind target/release/examples/json_cost [N]`, then divide the
//! total by N (the bench upstream's ~600-byte completion, validated N times).
const COMPLETION: &str = r#"{"id":"chatcmpl-bench00000000000000000001","object":"chat.completion","created":1735689600,"model":"bench-model","system_fingerprint":"fp_bench","choices":[{"index":0,"message":{"role":"assistant","content":"Yes, the paperback edition is in stock. Standard delivery to Lyon usually takes three to five working days; express delivery takes one to two.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":62,"completion_tokens":31,"total_tokens":93,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut members = 0usize;
    for _ in 0..n {
        let doc = std::hint::black_box(COMPLETION.as_bytes());
        assert!(modelway_core::json::object_members(doc, |_, _| members += 1));
    }
    println!("{} bytes, {members} members", COMPLETION.len());
}
