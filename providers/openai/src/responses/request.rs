//! The client's Responses body → the upstream's.

use bytes::Bytes;
use modelway_core::dialect::responses::CARRY_PREFIX;
use modelway_core::ProviderError;
use serde_json::{Map, Value};

/// The body to send for upstream `model`: the client's bytes with the model spliced in
/// when they hold none of the gateway's carried reasoning (the common case: one copy,
/// no parse); otherwise the body parsed, those items removed, the model set and
/// serialised again. A body the splice is unsure of (an escaped key, no `model`: a
/// stored `prompt` may stand in for it) takes the second way too, so the client's
/// request always reaches the upstream whole.
pub(super) fn body(raw: &Bytes, model: &str) -> Result<Bytes, ProviderError> {
    let carries = memchr::memmem::find(raw, CARRY_PREFIX.as_bytes()).is_some();
    if !carries {
        if let Some(out) = crate::splice::with_model(raw, model, b"") {
            return Ok(Bytes::from(out));
        }
    }
    let invalid = |message: String| ProviderError::InvalidRequest {
        message,
        param: None,
    };
    let mut obj: Map<String, Value> = serde_json::from_slice(raw)
        .map_err(|e| invalid(format!("the Responses body is not a JSON object: {e}")))?;
    if let Some(Value::Array(items)) = obj.get_mut("input") {
        items.retain(|item| !carried(item));
    }
    obj.insert("model".into(), Value::String(model.to_owned()));
    serde_json::to_vec(&obj)
        .map(Bytes::from)
        .map_err(|e| invalid(format!("the Responses body cannot be serialised: {e}")))
}

/// A reasoning item the gateway wrote itself: its `encrypted_content` is ours, not
/// OpenAI's, and OpenAI would refuse to decrypt it.
fn carried(item: &Value) -> bool {
    item.get("type").and_then(Value::as_str) == Some("reasoning")
        && item
            .get("encrypted_content")
            .and_then(Value::as_str)
            .is_some_and(|c| c.starts_with(CARRY_PREFIX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn out(raw: &str) -> String {
        let b = body(&Bytes::copy_from_slice(raw.as_bytes()), "gpt-up").unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn the_clients_bytes_go_as_they_came_with_the_model_spliced() {
        let raw = r#"{ "model" : "alias", "input":[{"role":"user","content":"hi"}], "previous_response_id":"resp_1","store":true ,"x_new":{"k":[1,2]}}"#;
        assert_eq!(out(raw), raw.replace(r#""alias""#, r#""gpt-up""#));
    }

    #[test]
    fn our_carried_reasoning_is_removed_and_openais_kept() {
        let raw = serde_json::json!({"model": "alias", "store": false, "input": [
            {"role": "user", "content": "hi"},
            {"type": "reasoning", "id": "rs_1", "summary": [],
             "encrypted_content": format!("{CARRY_PREFIX}{{\"thinking_blocks\":[]}}")},
            {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "gAAAA-openai"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        ]});
        let v: Value = serde_json::from_str(&out(&raw.to_string())).unwrap();
        let items = v["input"].as_array().unwrap();
        let kinds: Vec<&str> = items
            .iter()
            .map(|i| i["type"].as_str().unwrap_or("message"))
            .collect();
        assert_eq!(kinds, ["message", "reasoning", "function_call"], "{v}");
        assert_eq!(items[1]["id"], "rs_2");
        assert_eq!(
            (&v["model"], &v["store"]),
            (&"gpt-up".into(), &false.into())
        );
    }

    #[test]
    fn a_body_the_splice_is_unsure_of_still_goes_whole() {
        let rows = [
            // No model: a stored prompt stands in for it.
            (r#"{"prompt":{"id":"pmpt_1"},"input":"hi"}"#, "prompt"),
            // An escaped key.
            (
                r#"{"mod\u0065l":"alias","input":"hi","previous_response_id":"r"}"#,
                "previous_response_id",
            ),
        ];
        for (raw, kept) in rows {
            let v: Value = serde_json::from_str(&out(raw)).unwrap();
            assert_eq!(v["model"], "gpt-up", "{raw}");
            assert!(v.get(kept).is_some(), "{raw}: {v}");
        }
        assert!(matches!(
            body(&Bytes::from_static(b"[1]"), "m"),
            Err(ProviderError::InvalidRequest { .. })
        ));
    }
}
