//! Anthropic answers → canonical (OpenAI) answers (WIRE.md §4.4): the whole-message
//! response, and the pieces the stream shares with it (usage, stop reasons, thinking
//! blocks, typed borrowed blocks).

use std::borrow::Cow;

use modelway_core::chat::{
    ChatResponse, Choice, CompletionTokensDetails, Extra, FinishReason, FunctionCall,
    PromptTokensDetails, ResponseMessage, Role, ToolCall, Usage,
};
use modelway_core::{unix_now, ModelInfo, ProviderError};

use crate::request::JSON_TOOL;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// A content block, as a flat struct: whichever fields its `type` has are set.
/// (Flat rather than an internally tagged enum so that fields borrow from the body and
/// `input` stays raw JSON text.)
#[derive(Debug, Deserialize)]
pub(crate) struct Block<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) input: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(crate) thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) signature: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) data: Option<Cow<'a, str>>,
}

/// Anthropic `usage` (message, message_start and message_delta alike).
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct AnthropicUsage {
    #[serde(default)]
    pub(crate) input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) output_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) output_tokens_details: Option<OutputDetails>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct OutputDetails {
    #[serde(default)]
    pub(crate) thinking_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Takes every counter `later` reports (message_delta repeats some, cumulatively).
    pub(crate) fn update(&mut self, later: AnthropicUsage) {
        let keep = |a: &mut Option<u64>, b: Option<u64>| {
            if b.is_some() {
                *a = b;
            }
        };
        keep(&mut self.input_tokens, later.input_tokens);
        keep(&mut self.output_tokens, later.output_tokens);
        keep(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        keep(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        if later.output_tokens_details.is_some() {
            self.output_tokens_details = later.output_tokens_details;
        }
    }

    /// The OpenAI usage: the prompt counts cached and cache-written tokens too
    /// (Anthropic's `input_tokens` is only the uncached part).
    pub(crate) fn to_openai(&self) -> Usage {
        let input = self.input_tokens.unwrap_or(0);
        let cache_write = self.cache_creation_input_tokens;
        let cache_read = self.cache_read_input_tokens;
        let prompt = input + cache_write.unwrap_or(0) + cache_read.unwrap_or(0);
        let completion = self.output_tokens.unwrap_or(0);
        let prompt_tokens_details = (cache_read.is_some() || cache_write.is_some()).then(|| {
            let mut extra = Extra::new();
            if let Some(w) = cache_write {
                extra.insert("cache_write_tokens".into(), w.into());
            }
            PromptTokensDetails {
                cached_tokens: Some(cache_read.unwrap_or(0)),
                audio_tokens: None,
                extra,
            }
        });
        let completion_tokens_details = self
            .output_tokens_details
            .as_ref()
            .and_then(|d| d.thinking_tokens)
            .map(|t| CompletionTokensDetails {
                reasoning_tokens: Some(t),
                ..CompletionTokensDetails::default()
            });
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details,
            completion_tokens_details,
            extra: Extra::new(),
        }
    }
}

/// `stop_reason` → `finish_reason`, and whether the mapping loses information (then
/// the native reason is kept next to it as `native_finish_reason`).
pub(crate) fn finish_reason(stop_reason: Option<&str>) -> (FinishReason, bool) {
    match stop_reason {
        Some("end_turn" | "stop_sequence") | None => (FinishReason::Stop, false),
        Some("tool_use") => (FinishReason::ToolCalls, false),
        Some("max_tokens") => (FinishReason::Length, false),
        Some("model_context_window_exceeded") => (FinishReason::Length, true),
        Some("refusal") => (FinishReason::ContentFilter, true),
        // `pause_turn` and anything new: the client may resend to continue.
        Some(_) => (FinishReason::Stop, true),
    }
}

/// One signed thinking block as the client keeps it (`thinking_blocks[]`); the
/// request translator replays it verbatim (minus `index`).
pub(crate) fn thinking_block(
    index: Option<usize>,
    kind: &str,
    thinking: &str,
    signature: &str,
    data: &str,
) -> Value {
    let mut o = serde_json::Map::new();
    if let Some(i) = index {
        o.insert("index".into(), i.into());
    }
    o.insert("type".into(), kind.into());
    if kind == "redacted_thinking" {
        o.insert("data".into(), data.into());
    } else {
        o.insert("thinking".into(), thinking.into());
        o.insert("signature".into(), signature.into());
    }
    Value::Object(o)
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(default, borrow)]
    content: Vec<Block<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: AnthropicUsage,
}

/// Parses a whole Messages API response. With `json_mode` (the request went through
/// [`JSON_TOOL`]), that tool's input is the message content and its call no tool call.
pub(crate) fn parse(body: &[u8], json_mode: bool) -> Result<ChatResponse, ProviderError> {
    let msg: Message<'_> = serde_json::from_slice(body).map_err(|e| {
        ProviderError::Malformed(format!("not an Anthropic message: {e}: {}", snippet(body)))
    })?;
    if msg.kind.as_deref().is_some_and(|k| k != "message") {
        return Err(ProviderError::Malformed(format!(
            "expected a message, got `{}`",
            msg.kind.as_deref().unwrap_or_default()
        )));
    }
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    let mut json_answer: Option<String> = None;
    for b in &msg.content {
        match b.kind.as_ref() {
            "text" => {
                if let Some(t) = &b.text {
                    text.get_or_insert_with(String::new).push_str(t);
                }
            }
            "tool_use" if json_mode && b.name.as_deref() == Some(JSON_TOOL) => {
                json_answer = Some(b.input.map_or_else(|| "{}".to_owned(), compact_json));
            }
            "tool_use" => tool_calls.push(ToolCall {
                id: b.id.as_deref().unwrap_or_default().to_owned(),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: b.name.as_deref().unwrap_or_default().to_owned(),
                    arguments: b.input.map_or_else(|| "{}".to_owned(), compact_json),
                },
                extra: Extra::new(),
            }),
            kind @ ("thinking" | "redacted_thinking") => {
                let thinking = b.thinking.as_deref().unwrap_or_default();
                if !thinking.is_empty() {
                    reasoning.get_or_insert_with(String::new).push_str(thinking);
                }
                thinking_blocks.push(thinking_block(
                    None,
                    kind,
                    thinking,
                    b.signature.as_deref().unwrap_or_default(),
                    b.data.as_deref().unwrap_or_default(),
                ));
            }
            // Server-tool blocks and future types have no OpenAI equivalent.
            _ => {}
        }
    }
    let answered_json = json_answer.is_some();
    if let Some(j) = json_answer {
        // The content must parse as JSON: text around the call (none is expected
        // with a forced tool) cannot be part of it.
        text = Some(j);
    }
    let mut message = ResponseMessage {
        role: Role::Assistant,
        content: text,
        refusal: None,
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        extra: Extra::new(),
    };
    if let Some(r) = reasoning {
        message.extra.insert("reasoning_content".into(), r.into());
    }
    if !thinking_blocks.is_empty() {
        message
            .extra
            .insert("thinking_blocks".into(), Value::Array(thinking_blocks));
    }
    let (finish, lossy) = match msg.stop_reason.as_deref() {
        // The JSON tool's call is the answer, not a call for the client to make.
        Some("tool_use") if answered_json && message.tool_calls.is_none() => {
            (FinishReason::Stop, false)
        }
        other => finish_reason(other),
    };
    let mut choice = Choice {
        index: 0,
        message,
        logprobs: None,
        finish_reason: Some(finish),
        extra: Extra::new(),
    };
    if lossy {
        if let Some(native) = msg.stop_reason.as_deref() {
            choice
                .extra
                .insert("native_finish_reason".into(), native.into());
        }
    }
    Ok(ChatResponse {
        id: msg.id.into_owned(),
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: msg.model.into_owned(),
        choices: vec![choice],
        usage: Some(msg.usage.to_openai()),
        extra: Extra::new(),
    })
}

/// `input` as compact JSON text (Anthropic pads some JSON with spaces).
pub(crate) fn compact_json(raw: &RawValue) -> String {
    let text = raw.get();
    // Already compact in practice; re-encode only when whitespace is present.
    if !text.bytes().any(|b| b.is_ascii_whitespace()) {
        return text.to_owned();
    }
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

pub(crate) use modelway_core::translate::snippet;

#[derive(Deserialize)]
struct ModelList<'a> {
    #[serde(borrow)]
    data: Vec<ModelEntry<'a>>,
}

#[derive(Deserialize)]
struct ModelEntry<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    /// Anthropic: RFC 3339.
    #[serde(default, borrow)]
    created_at: Option<Cow<'a, str>>,
    /// OpenAI-shaped lists (proxies): unix seconds.
    #[serde(default)]
    created: Option<u64>,
}

/// Parses `GET /v1/models`.
pub(crate) fn parse_models(body: &[u8]) -> Result<Vec<ModelInfo>, ProviderError> {
    let list: ModelList<'_> = serde_json::from_slice(body).map_err(|e| {
        ProviderError::Malformed(format!("not a model list: {e}: {}", snippet(body)))
    })?;
    Ok(list
        .data
        .into_iter()
        .map(|m| ModelInfo {
            created: m
                .created
                .or_else(|| m.created_at.as_deref().and_then(rfc3339_to_unix))
                .unwrap_or(0),
            id: m.id.into_owned(),
            owned_by: "anthropic".to_owned(),
        })
        .collect())
}

/// `2025-02-19T00:00:00Z` → unix seconds (the date and time parts; offsets other than
/// `Z` are ignored, which is close enough for a listing's `created`).
fn rfc3339_to_unix(s: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (
        num(11..13).unwrap_or(0),
        num(14..16).unwrap_or(0),
        num(17..19).unwrap_or(0),
    );
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn stop_reason_table() {
        let rows = [
            (Some("end_turn"), "stop", false),
            (Some("stop_sequence"), "stop", false),
            (Some("tool_use"), "tool_calls", false),
            (Some("max_tokens"), "length", false),
            (Some("model_context_window_exceeded"), "length", true),
            (Some("refusal"), "content_filter", true),
            (Some("pause_turn"), "stop", true),
            (Some("brand_new"), "stop", true),
            (None, "stop", false),
        ];
        for (stop, want, lossy) in rows {
            let (f, l) = finish_reason(stop);
            assert_eq!((f.as_str(), l), (want, lossy), "{stop:?}");
        }
    }

    #[test]
    fn usage_counts_cached_prompt_tokens() {
        let u: AnthropicUsage = serde_json::from_value(json!({
            "input_tokens": 10, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000,
            "output_tokens": 7, "output_tokens_details": {"thinking_tokens": 3}
        }))
        .unwrap();
        let o = serde_json::to_value(u.to_openai()).unwrap();
        assert_eq!(
            o,
            json!({"prompt_tokens": 1110, "completion_tokens": 7, "total_tokens": 1117,
                   "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 100},
                   "completion_tokens_details": {"reasoning_tokens": 3}})
        );
        let plain: AnthropicUsage =
            serde_json::from_value(json!({"input_tokens": 2, "output_tokens": 3})).unwrap();
        assert_eq!(
            serde_json::to_value(plain.to_openai()).unwrap(),
            json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5})
        );
    }

    #[test]
    fn a_message_with_every_block_kind() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Hel"},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                {"type": "text", "text": "lo"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1, "b": [1, 2]}, "caller": {"type": "direct"}},
                {"type": "tool_use", "id": "toolu_2", "name": "g", "input": {}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 3, "output_tokens": 4}
        });
        let r = parse(body.to_string().as_bytes(), false).unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["id"], "msg_1");
        assert_eq!(v["model"], "claude-x");
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], "Hello");
        assert_eq!(m["reasoning_content"], "hmm");
        assert_eq!(
            m["thinking_blocks"],
            json!([{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                   {"type": "redacted_thinking", "data": "opaque"}])
        );
        assert_eq!(
            m["tool_calls"],
            json!([
                {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1,\"b\":[1,2]}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "g", "arguments": "{}"}}
            ])
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert!(v["choices"][0].get("native_finish_reason").is_none());
        assert_eq!(v["usage"]["total_tokens"], 7);
    }

    #[test]
    fn tool_only_answers_have_null_content_and_refusals_keep_the_native_reason() {
        let body = json!({"id": "m", "type": "message", "model": "c", "content": [],
                          "stop_reason": "refusal", "usage": {"input_tokens": 1, "output_tokens": 0}});
        let v = serde_json::to_value(parse(body.to_string().as_bytes(), false).unwrap()).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(v["choices"][0]["native_finish_reason"], "refusal");
    }

    #[test]
    fn the_json_tools_input_is_the_content_and_the_turn_stops() {
        let body = |content: Value, stop: &str| {
            json!({"id": "m", "type": "message", "model": "c", "content": content,
                   "stop_reason": stop, "usage": {"input_tokens": 1, "output_tokens": 2}})
            .to_string()
        };
        let json_call = json!({"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL,
                               "input": {"setup": "a", "n": [1, 2]}});
        let other = json!({"type": "tool_use", "id": "toolu_2", "name": "f", "input": {}});
        // (content blocks, stop_reason, json_mode, content, finish, tool calls)
        let rows = [
            (
                json!([json_call]),
                "tool_use",
                true,
                json!(r#"{"n":[1,2],"setup":"a"}"#),
                "stop",
                0,
            ),
            (
                json!([{"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {}}]),
                "tool_use",
                true,
                json!("{}"),
                "stop",
                0,
            ),
            (
                json!([json_call, other]),
                "tool_use",
                true,
                json!(r#"{"n":[1,2],"setup":"a"}"#),
                "tool_calls",
                1,
            ),
            (
                json!([other]),
                "tool_use",
                true,
                Value::Null,
                "tool_calls",
                1,
            ),
            (
                json!([json_call]),
                "max_tokens",
                true,
                json!(r#"{"n":[1,2],"setup":"a"}"#),
                "length",
                0,
            ),
            // Not in JSON mode (a Messages client's own tool of that name): a call.
            (
                json!([json_call]),
                "tool_use",
                false,
                Value::Null,
                "tool_calls",
                1,
            ),
        ];
        for (content, stop, json_mode, want, finish, calls) in rows {
            let r = parse(body(content.clone(), stop).as_bytes(), json_mode).unwrap();
            let v = serde_json::to_value(&r).unwrap();
            let c = &v["choices"][0];
            assert_eq!(c["message"]["content"], want, "{content}");
            assert_eq!(c["finish_reason"], finish, "{content} {stop}");
            assert_eq!(
                c["message"]["tool_calls"].as_array().map_or(0, Vec::len),
                calls,
                "{content}"
            );
            assert!(c.get("native_finish_reason").is_none(), "{c}");
        }
    }

    #[test]
    fn malformed_bodies_are_malformed_errors() {
        for body in [&b"{"[..], b"[]", br#"{"type":"error","error":{}}"#, b""] {
            match parse(body, false) {
                Err(ProviderError::Malformed(_)) => {}
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn models_in_both_shapes() {
        let body = json!({"data": [
            {"type": "model", "id": "claude-sonnet-4-20250514", "display_name": "Claude Sonnet 4", "created_at": "2025-05-22T00:00:00Z"},
            {"id": "gpt-shaped", "object": "model", "created": 5, "owned_by": "x"}
        ], "has_more": false});
        let m = parse_models(body.to_string().as_bytes()).unwrap();
        assert_eq!(m[0].id, "claude-sonnet-4-20250514");
        assert_eq!(m[0].created, 1_747_872_000);
        assert_eq!(m[1].created, 5);
        assert_eq!(rfc3339_to_unix("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_to_unix("2000-03-01T00:00:01Z"), Some(951_868_801));
        assert_eq!(rfc3339_to_unix("nope"), None);
    }
}
