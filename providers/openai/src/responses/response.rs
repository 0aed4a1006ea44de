//! A Responses `response` object → the canonical answer (what telemetry, usage and the
//! engine read; the client gets the upstream's bytes).
//!
//! | `response` | canonical |
//! |---|---|
//! | `id`, `model`, `created_at` | `id`, `model`, `created` |
//! | `message` items: `output_text` parts / `refusal` parts | `content` / `refusal`, each joined |
//! | `function_call` items `{call_id, name, arguments}` | `tool_calls[{id: call_id, function: {name, arguments}}]` |
//! | `reasoning` items: `summary` texts (else `content` reasoning texts) | `reasoning_content`, joined by a blank line |
//! | other items (hosted tools' calls, …) | nothing |
//! | `status: incomplete`, `incomplete_details.reason` `content_filter` / other | finish `content_filter` / `length` |
//! | `status: completed` with function calls / without | finish `tool_calls` / `stop` |
//! | `status: queued` / `in_progress` (`background: true`) | no finish reason |
//! | `status: failed`, `error {code, message}` | a [`ProviderError`] ([`failure`]) |
//! | `usage {input_tokens, output_tokens, total_tokens, input_tokens_details {cached_tokens, cache_write_tokens}, output_tokens_details {reasoning_tokens}}` | `usage {prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details {cached_tokens, cache_write_tokens}, completion_tokens_details {reasoning_tokens}}` |
//!
//! Reading is lenient: an item or part of a shape not listed is skipped, never an
//! error, so a new item type cannot break a passthrough answer.

use bytes::Bytes;
use modelway_core::chat::{
    ChatResponse, Choice, CompletionTokensDetails, Extra, FinishReason, FunctionCall,
    PromptTokensDetails, ResponseMessage, Role, ToolCall, Usage,
};
use modelway_core::ProviderError;
use serde::Deserialize;
use serde_json::Value;

use crate::error::embedded_error;

/// The members of a `response` object that the canonical answer is read from.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ResponseBody {
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) model: Option<String>,
    /// Unix seconds (the spec's `number`; OpenAI sends integers).
    #[serde(default)]
    pub(super) created_at: Option<f64>,
    #[serde(default)]
    pub(super) status: Option<String>,
    #[serde(default)]
    pub(super) error: Option<Value>,
    #[serde(default)]
    pub(super) incomplete_details: Option<Value>,
    /// Items stay JSON: their shapes vary by type, and only three are read.
    #[serde(default)]
    pub(super) output: Option<Vec<Value>>,
    #[serde(default)]
    pub(super) usage: Option<ResponsesUsage>,
}

/// `usage` of a `response` (`ResponseUsage`): every member optional here.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(super) struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl ResponsesUsage {
    /// The canonical usage.
    pub(super) fn to_chat(self) -> Usage {
        let input = self.input_tokens_details.unwrap_or_default();
        let mut prompt = PromptTokensDetails {
            cached_tokens: input.cached_tokens,
            ..PromptTokensDetails::default()
        };
        if let Some(w) = input.cache_write_tokens {
            prompt.extra.insert("cache_write_tokens".into(), w.into());
        }
        Usage {
            prompt_tokens: self.input_tokens,
            completion_tokens: self.output_tokens,
            total_tokens: self
                .total_tokens
                .unwrap_or(self.input_tokens + self.output_tokens),
            prompt_tokens_details: Some(prompt),
            completion_tokens_details: Some(CompletionTokensDetails {
                reasoning_tokens: self.output_tokens_details.and_then(|d| d.reasoning_tokens),
                ..CompletionTokensDetails::default()
            }),
            extra: Extra::new(),
        }
    }
}

/// A failure the upstream reported inside a 200 (`status: "failed"`, the stream's
/// `response.failed` and `error` events) as the error its HTTP answer would have been,
/// so the engine classes it the same way: `rate_limit_exceeded` a 429,
/// `server_error` a 500, `vector_store_timeout` a 504, anything else — the spec's codes
/// are about the input (`invalid_prompt`, image errors, policies) — a 400 unless
/// `server_side` says the code is unknown and may be transient (a 500 then).
pub(super) fn failure(code: Option<&str>, message: &str, server_side: bool) -> ProviderError {
    let status = match code {
        Some("rate_limit_exceeded") => 429,
        Some("server_error") | None => 500,
        Some("vector_store_timeout") => 504,
        Some(c) if c.starts_with("invalid_") || c.starts_with("image_") => 400,
        Some(
            "bio_policy"
            | "data_residency_mismatch"
            | "empty_image_file"
            | "failed_to_download_image"
            | "unsupported_image_media_type"
            | "context_length_exceeded",
        ) => 400,
        Some(_) if server_side => 500,
        Some(_) => 400,
    };
    let body = serde_json::json!({"error": {
        "message": message,
        "type": if status >= 500 { "server_error" } else if status == 429 { "rate_limit_error" } else { "invalid_request_error" },
        "param": null,
        "code": code,
    }});
    ProviderError::Status {
        status,
        body: Bytes::from(body.to_string()),
        retry_after: None,
    }
}

/// The failure of a `response` whose `status` is `failed`.
pub(super) fn failed(r: &ResponseBody) -> ProviderError {
    let error = r.error.as_ref();
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_str);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("the upstream response failed");
    failure(code, message, false)
}

/// The canonical finish of a response in `status`, having made tool calls or not.
pub(super) fn finish_reason(r: &ResponseBody, tool_calls: bool) -> Option<FinishReason> {
    match r.status.as_deref() {
        Some("incomplete") => {
            let reason = r
                .incomplete_details
                .as_ref()
                .and_then(|d| d.get("reason"))
                .and_then(Value::as_str);
            Some(if reason == Some("content_filter") {
                FinishReason::ContentFilter
            } else {
                FinishReason::Length
            })
        }
        Some("queued" | "in_progress") => None,
        _ if tool_calls => Some(FinishReason::ToolCalls),
        _ => Some(FinishReason::Stop),
    }
}

/// What the output items say, in the canonical model.
#[derive(Debug, Default)]
pub(super) struct Output {
    pub(super) content: Option<String>,
    pub(super) refusal: Option<String>,
    pub(super) reasoning: Option<String>,
    pub(super) tool_calls: Vec<ToolCall>,
}

fn push(slot: &mut Option<String>, text: &str, sep: &str) {
    match slot {
        Some(s) => {
            s.push_str(sep);
            s.push_str(text);
        }
        None => *slot = Some(text.to_owned()),
    }
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// The texts of the parts of `list` whose `type` is `kind`.
fn texts<'v>(list: Option<&'v Value>, kind: &'v str) -> impl Iterator<Item = &'v str> + 'v {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |p| str_of(p, "type") == Some(kind))
        .filter_map(|p| str_of(p, "text"))
}

/// A `function_call` item as a canonical tool call.
pub(super) fn tool_call(item: &Value) -> Option<ToolCall> {
    Some(ToolCall {
        id: str_of(item, "call_id")?.to_owned(),
        kind: "function".into(),
        function: FunctionCall {
            name: str_of(item, "name")?.to_owned(),
            arguments: str_of(item, "arguments").unwrap_or_default().to_owned(),
        },
        extra: Extra::new(),
    })
}

/// Reads output items (see the module docs).
pub(super) fn read_output(items: &[Value]) -> Output {
    let mut out = Output::default();
    let mut summaries: Option<String> = None;
    let mut reasoning_texts: Option<String> = None;
    for item in items {
        match str_of(item, "type") {
            Some("message") => {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match str_of(part, "type") {
                        Some("output_text") => push(
                            &mut out.content,
                            str_of(part, "text").unwrap_or_default(),
                            "",
                        ),
                        Some("refusal") => push(
                            &mut out.refusal,
                            str_of(part, "refusal").unwrap_or_default(),
                            "",
                        ),
                        _ => {}
                    }
                }
            }
            Some("function_call") => out.tool_calls.extend(tool_call(item)),
            Some("reasoning") => {
                for t in texts(item.get("summary"), "summary_text") {
                    push(&mut summaries, t, "\n\n");
                }
                for t in texts(item.get("content"), "reasoning_text") {
                    push(&mut reasoning_texts, t, "\n\n");
                }
            }
            _ => {}
        }
    }
    out.reasoning = summaries.or(reasoning_texts).filter(|s| !s.is_empty());
    out
}

/// Parses a whole answer (a `response` object) into the canonical one.
pub(super) fn parse(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let r: ResponseBody = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Err(not_a_response(body, &e.to_string())),
    };
    let Some(items) = r.output.as_deref() else {
        return Err(not_a_response(body, "no `output`"));
    };
    if r.status.as_deref() == Some("failed") {
        return Err(failed(&r));
    }
    let out = read_output(items);
    let finish = finish_reason(&r, !out.tool_calls.is_empty());
    let mut message = ResponseMessage {
        role: Role::Assistant,
        content: out.content,
        refusal: out.refusal,
        tool_calls: (!out.tool_calls.is_empty()).then_some(out.tool_calls),
        extra: Extra::new(),
    };
    if let Some(r) = out.reasoning {
        message.extra.insert("reasoning_content".into(), r.into());
    }
    Ok(ChatResponse {
        id: r.id.clone().unwrap_or_default(),
        object: "chat.completion".into(),
        created: r.created_at.map_or(0, |t| t as u64),
        model: r.model.clone().unwrap_or_default(),
        choices: vec![Choice {
            index: 0,
            message,
            logprobs: None,
            finish_reason: finish,
            extra: Extra::new(),
        }],
        usage: r.usage.map(ResponsesUsage::to_chat),
        extra: Extra::new(),
    })
}

/// A 200 body that is not a `response` object: an error the upstream embedded, or
/// malformed.
fn not_a_response(body: &[u8], why: &str) -> ProviderError {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| embedded_error(&v, body, false))
        .unwrap_or_else(|| {
            ProviderError::Malformed(format!(
                "not a Responses `response` object ({why}): {}",
                modelway_core::translate::snippet(body)
            ))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(crate) fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/responses/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// (fixture, content, refusal, reasoning, tool calls `name(arguments)#call_id`, finish)
    type Row = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        &'static [&'static str],
        Option<&'static str>,
    );

    #[test]
    fn answers_read_from_spec_shaped_responses() {
        let rows: &[Row] = &[
            ("text.json", Some("In a peaceful grove beneath a silver moon, a unicorn named Lumina discovered a hidden pool that reflected the stars. As she dipped her horn into the water, the pool began to shimmer, revealing a pathway to a magical realm of endless night skies. Filled with wonder, Lumina whispered a wish for all who dream to find their own hidden magic, and as she glanced back, her hoofprints sparkled like stardust."), None, None, &[], Some("stop")),
            ("function-call.json", None, None, None, &["get_current_weather({\"location\":\"Boston, MA\",\"unit\":\"celsius\"})#call_unLAR8MvFNptuiZK6K6HCy5k"], Some("tool_calls")),
            ("reasoning.json", Some("The classic tongue twister..."), None, None, &[], Some("stop")),
            ("reasoning-summary.json", Some("Paris."), None, Some("First I read the question.\n\nThen I answered it."), &[], Some("stop")),
            ("refusal.json", None, Some("I can't help with that."), None, &[], Some("stop")),
            ("incomplete.json", Some("The answer is cut"), None, None, &[], Some("length")),
            ("content-filter.json", None, None, None, &[], Some("content_filter")),
            ("background-queued.json", None, None, None, &[], None),
        ];
        for (name, content, refusal, reasoning, calls, finish) in rows {
            let r = parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let c = &r.choices[0];
            let m = &c.message;
            let got_calls: Vec<String> = m
                .tool_calls
                .iter()
                .flatten()
                .map(|t| format!("{}({})#{}", t.function.name, t.function.arguments, t.id))
                .collect();
            assert_eq!(
                (
                    m.content.as_deref(),
                    m.refusal.as_deref(),
                    m.extra.get("reasoning_content").and_then(Value::as_str),
                    got_calls,
                    c.finish_reason.as_ref().map(FinishReason::as_str),
                ),
                (
                    *content,
                    *refusal,
                    *reasoning,
                    calls.iter().map(|s| s.to_string()).collect(),
                    *finish
                ),
                "{name}"
            );
            assert!(r.id.starts_with("resp_"), "{name}: id {}", r.id);
            assert!(!r.model.is_empty() && r.created > 0, "{name}");
        }
    }

    #[test]
    fn web_search_items_are_skipped_and_the_message_kept() {
        let r = parse(&fixture("web-search.json")).unwrap();
        let text = r.choices[0].message.content.as_deref().unwrap();
        assert!(text.contains("positive news"), "{text}");
        assert!(r.choices[0].message.tool_calls.is_none());
    }

    #[test]
    fn usage_keeps_cached_cache_write_and_reasoning_tokens() {
        let r = parse(&fixture("reasoning-summary.json")).unwrap();
        let u = r.usage.unwrap();
        let got = serde_json::to_value(&u).unwrap();
        assert_eq!(
            got,
            serde_json::json!({"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160,
                "prompt_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 16}})
        );
        // The spec's streaming example has no `input_tokens_details`: zero, not absent.
        let r = parse(
            br#"{"id":"r","model":"m","output":[],"usage":{"input_tokens":3,"output_tokens":2}}"#,
        )
        .unwrap();
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (3, 2, 5)
        );
    }

    #[test]
    fn failures_are_classed_like_their_http_errors() {
        match parse(&fixture("failed.json")) {
            Err(ProviderError::Status {
                status: 429, body, ..
            }) => {
                let v: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["error"]["message"], "Rate limit reached for gpt-5.4");
                assert_eq!(v["error"]["code"], "rate_limit_exceeded");
            }
            other => panic!("expected a 429, got {other:?}"),
        }
        let rows: &[(Option<&str>, bool, u16)] = &[
            (Some("rate_limit_exceeded"), false, 429),
            (Some("server_error"), false, 500),
            (None, true, 500),
            (Some("vector_store_timeout"), false, 504),
            (Some("invalid_prompt"), true, 400),
            (Some("image_too_large"), true, 400),
            (Some("bio_policy"), false, 400),
            (Some("ERR_SOMETHING"), true, 500),
            (Some("ERR_SOMETHING"), false, 400),
        ];
        for (code, server_side, want) in rows {
            let got = failure(*code, "m", *server_side).status();
            assert_eq!(got, Some(*want), "{code:?} server_side={server_side}");
        }
    }

    #[test]
    fn errors_and_garbage_are_errors_not_panics() {
        let rows: &[&[u8]] = &[
            b"<html>",
            b"{}",
            br#"{"id":"r","output":"not a list"}"#,
            br#"{"id":"r","output":[1, "x", {"type":"message","content":"text"}, {"type":"function_call"}]"#,
            b"",
        ];
        for body in rows {
            match parse(body) {
                Err(ProviderError::Malformed(_)) => {}
                other => panic!(
                    "{}: expected Malformed, got {other:?}",
                    String::from_utf8_lossy(body)
                ),
            }
        }
        // Items of shapes not read are skipped, not errors.
        let r = parse(br#"{"id":"r","output":[1, "x", {"type":"message","content":"text"}, {"type":"function_call"}, {"type":"message","content":[{"type":"output_text"}]}]}"#).unwrap();
        assert_eq!(r.choices[0].message.content.as_deref(), Some(""));
        assert!(r.choices[0].message.tool_calls.is_none());
        // An error object in place of a response is the upstream's error.
        assert!(matches!(
            parse(br#"{"error":{"message":"no credits","code":402}}"#),
            Err(ProviderError::Status { status: 402, .. })
        ));
    }
}
