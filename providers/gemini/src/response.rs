//! Gemini answers → canonical (OpenAI) answers (WIRE.md §3.3, §4.4): the whole
//! response, and the pieces the stream shares with it (typed borrowed structs, usage,
//! finish reasons, tool calls with their ids and thought signatures).
//!
//! | Gemini | OpenAI |
//! |---|---|
//! | `candidates[i]` | `choices[i]` (`index` kept) |
//! | text parts (not `thought`) | `message.content`, joined |
//! | `thought: true` text parts | `message.reasoning_content`, joined |
//! | `functionCall {name, args, id?}` | `tool_calls[{id: Gemini's or a fresh call_…, function: {name, arguments: JSON(args or {})}}]` |
//! | `thoughtSignature` on a `functionCall` part | `tool_calls[].extra_content.google.thought_signature` |
//! | `thoughtSignature` on a text part | `message.extra_content.google.thought_signature` |
//! | `finishReason` | see [`finish_reason`]; a lossy mapping keeps the native reason as `native_finish_reason` |
//! | no candidates, `promptFeedback.blockReason` | one choice, `content: null`, `finish_reason: content_filter` |
//! | `usageMetadata` | see [`UsageMetadata::to_openai`] |
//! | `responseId`, `modelVersion` | `id`, `model` |

use std::borrow::Cow;

use modelway_core::chat::{
    ChatResponse, Choice, CompletionTokensDetails, Extra, FinishReason, FunctionCall,
    PromptTokensDetails, ResponseMessage, Role, ToolCall, Usage,
};
use modelway_core::{unix_now, ModelInfo, ProviderError};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{self, GoogleErrorObject};

/// One `GenerateContentResponse` (a whole answer, or one stream event).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateContentResponse<'a> {
    #[serde(default, borrow)]
    pub(crate) candidates: Vec<Candidate<'a>>,
    #[serde(default, borrow)]
    pub(crate) prompt_feedback: Option<PromptFeedback<'a>>,
    #[serde(default)]
    pub(crate) usage_metadata: Option<UsageMetadata>,
    #[serde(default, borrow)]
    pub(crate) model_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) response_id: Option<Cow<'a, str>>,
    /// An error object in place of an answer (seen inside streams).
    #[serde(default, borrow)]
    pub(crate) error: Option<GoogleErrorObject<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Candidate<'a> {
    #[serde(default, borrow)]
    pub(crate) content: Option<Content<'a>>,
    #[serde(default, borrow)]
    pub(crate) finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) index: Option<u32>,
}

#[derive(Deserialize)]
pub(crate) struct Content<'a> {
    #[serde(default, borrow)]
    pub(crate) parts: Option<Vec<Part<'a>>>,
}

/// A part, flat: whichever data field it has is set.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Part<'a> {
    #[serde(default, borrow)]
    pub(crate) text: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) thought: Option<bool>,
    #[serde(default, borrow)]
    pub(crate) thought_signature: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) function_call: Option<FunctionCallPart<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct FunctionCallPart<'a> {
    #[serde(default, borrow)]
    pub(crate) name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) args: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(crate) id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PromptFeedback<'a> {
    #[serde(default, borrow)]
    pub(crate) block_reason: Option<Cow<'a, str>>,
}

/// `usageMetadata` (running counts in a stream; the last one is final).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageMetadata {
    #[serde(default)]
    pub(crate) prompt_token_count: Option<u64>,
    #[serde(default)]
    pub(crate) candidates_token_count: Option<u64>,
    #[serde(default)]
    pub(crate) total_token_count: Option<u64>,
    #[serde(default)]
    pub(crate) thoughts_token_count: Option<u64>,
    #[serde(default)]
    pub(crate) cached_content_token_count: Option<u64>,
    #[serde(default)]
    pub(crate) tool_use_prompt_token_count: Option<u64>,
}

impl UsageMetadata {
    /// The OpenAI usage: thoughts are billed as output, so they count as completion
    /// tokens (and as `reasoning_tokens`); tool-use prompt tokens count as prompt;
    /// `total_tokens` is Gemini's total (which then equals the sum).
    pub(crate) fn to_openai(&self) -> Usage {
        let prompt =
            self.prompt_token_count.unwrap_or(0) + self.tool_use_prompt_token_count.unwrap_or(0);
        let thoughts = self.thoughts_token_count;
        let completion = self.candidates_token_count.unwrap_or(0) + thoughts.unwrap_or(0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: self.total_token_count.unwrap_or(prompt + completion),
            prompt_tokens_details: self
                .cached_content_token_count
                .map(|c| PromptTokensDetails {
                    cached_tokens: Some(c),
                    ..PromptTokensDetails::default()
                }),
            completion_tokens_details: thoughts.map(|t| CompletionTokensDetails {
                reasoning_tokens: Some(t),
                ..CompletionTokensDetails::default()
            }),
            extra: Extra::new(),
        }
    }
}

/// `finishReason` → `finish_reason`, and whether the mapping loses information (then
/// the native reason is kept next to it as `native_finish_reason`). `saw_call`: the
/// candidate made at least one function call (Gemini ends those with `STOP`).
pub(crate) fn finish_reason(native: &str, saw_call: bool) -> (FinishReason, bool) {
    match native {
        "STOP" if saw_call => (FinishReason::ToolCalls, false),
        "STOP" => (FinishReason::Stop, false),
        "MAX_TOKENS" => (FinishReason::Length, false),
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => (FinishReason::ContentFilter, true),
        // MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, TOO_MANY_TOOL_CALLS, LANGUAGE,
        // OTHER, FINISH_REASON_UNSPECIFIED and values newer than this code.
        _ if saw_call => (FinishReason::ToolCalls, true),
        _ => (FinishReason::Stop, true),
    }
}

/// A fresh tool-call id: `call_` and 32 hex digits, unique within the process and
/// across restarts (Gemini sends none, and same-name parallel calls must differ).
pub(crate) fn new_call_id() -> String {
    let req = modelway_core::provider::new_request_id();
    let hex = req.strip_prefix("req_").unwrap_or(&req);
    let mut id = String::with_capacity(5 + hex.len());
    id.push_str("call_");
    id.push_str(hex);
    id
}

/// `{"google": {"thought_signature": sig}}`, the shape of `extra_content`.
pub(crate) fn signature_extra(sig: &str) -> Value {
    let mut google = serde_json::Map::with_capacity(1);
    google.insert("thought_signature".into(), Value::String(sig.to_owned()));
    let mut outer = serde_json::Map::with_capacity(1);
    outer.insert("google".into(), Value::Object(google));
    Value::Object(outer)
}

/// A function call as an OpenAI tool call (`args` as compact JSON text, `{}` when
/// missing or null).
pub(crate) fn tool_call(fc: &FunctionCallPart<'_>, signature: Option<&str>) -> ToolCall {
    let mut extra = Extra::new();
    if let Some(sig) = signature.filter(|s| !s.is_empty()) {
        extra.insert("extra_content".into(), signature_extra(sig));
    }
    ToolCall {
        id: call_id(fc),
        kind: "function".to_owned(),
        function: FunctionCall {
            name: fc.name.as_ref().to_owned(),
            arguments: fc.args.map_or_else(|| "{}".to_owned(), compact_json),
        },
        extra,
    }
}

/// Gemini's own call id when it sent one, else a fresh one.
pub(crate) fn call_id(fc: &FunctionCallPart<'_>) -> String {
    match fc.id.as_deref() {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => new_call_id(),
    }
}

/// JSON text without the whitespace between tokens (Gemini pretty-prints whole
/// responses); key order and number spelling are kept as sent.
pub(crate) fn compact_json(raw: &RawValue) -> String {
    match raw.get() {
        "null" => "{}".to_owned(),
        text => modelway_core::json::compact(text),
    }
}

pub(crate) use modelway_core::translate::snippet;

/// Parses a whole `generateContent` response.
pub(crate) fn parse(body: &[u8], requested_model: &str) -> Result<ChatResponse, ProviderError> {
    let r: GenerateContentResponse<'_> = serde_json::from_slice(body).map_err(|e| {
        ProviderError::Malformed(format!("not a Gemini response: {e}: {}", snippet(body)))
    })?;
    if let Some(e) = &r.error {
        return Err(error::from_object(e));
    }
    let block = r
        .prompt_feedback
        .as_ref()
        .and_then(|f| f.block_reason.as_deref());
    let mut choices = Vec::with_capacity(r.candidates.len().max(1));
    if r.candidates.is_empty() {
        let Some(reason) = block else {
            return Err(ProviderError::Malformed(format!(
                "a Gemini response without candidates: {}",
                snippet(body)
            )));
        };
        // The prompt itself was blocked: nothing was generated.
        let mut choice = Choice {
            index: 0,
            message: ResponseMessage {
                role: Role::Assistant,
                content: None,
                refusal: None,
                tool_calls: None,
                extra: Extra::new(),
            },
            logprobs: None,
            finish_reason: Some(FinishReason::ContentFilter),
            extra: Extra::new(),
        };
        choice
            .extra
            .insert("native_finish_reason".into(), reason.into());
        choices.push(choice);
    }
    for (pos, c) in r.candidates.iter().enumerate() {
        choices.push(choice(c, pos, body)?);
    }
    choices.sort_by_key(|c| c.index);
    Ok(ChatResponse {
        id: r
            .response_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .map_or_else(|| format!("chatcmpl-{}", new_call_id()), str::to_owned),
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: r
            .model_version
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(requested_model)
            .to_owned(),
        choices,
        usage: r.usage_metadata.as_ref().map(UsageMetadata::to_openai),
        extra: Extra::new(),
    })
}

fn choice(c: &Candidate<'_>, pos: usize, body: &[u8]) -> Result<Choice, ProviderError> {
    let parts = c
        .content
        .as_ref()
        .and_then(|c| c.parts.as_deref())
        .unwrap_or_default();
    let Some(native) = c.finish_reason.as_deref() else {
        return Err(ProviderError::Malformed(format!(
            "a Gemini candidate without finishReason: {}",
            snippet(body)
        )));
    };
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut text_signature: Option<&str> = None;
    let mut tool_calls = Vec::new();
    for p in parts {
        if let Some(fc) = &p.function_call {
            tool_calls.push(tool_call(fc, p.thought_signature.as_deref()));
            continue;
        }
        let Some(t) = p.text.as_deref() else { continue };
        if p.thought == Some(true) {
            reasoning.get_or_insert_with(String::new).push_str(t);
        } else {
            text.get_or_insert_with(String::new).push_str(t);
            if text_signature.is_none() {
                text_signature = p.thought_signature.as_deref();
            }
        }
    }
    let (finish, lossy) = finish_reason(native, !tool_calls.is_empty());
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
    if let Some(sig) = text_signature.filter(|s| !s.is_empty()) {
        message
            .extra
            .insert("extra_content".into(), signature_extra(sig));
    }
    let mut choice = Choice {
        index: c.index.unwrap_or(pos as u32),
        message,
        logprobs: None,
        finish_reason: Some(finish),
        extra: Extra::new(),
    };
    if lossy {
        choice
            .extra
            .insert("native_finish_reason".into(), native.into());
    }
    Ok(choice)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelList<'a> {
    #[serde(default, borrow)]
    models: Vec<ModelEntry<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelEntry<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    supported_generation_methods: Option<Vec<Cow<'a, str>>>,
}

/// Parses `GET /{version}/models`: the models that can `generateContent`, without
/// their `models/` prefix.
pub(crate) fn parse_models(body: &[u8]) -> Result<Vec<ModelInfo>, ProviderError> {
    let list: ModelList<'_> = serde_json::from_slice(body).map_err(|e| {
        ProviderError::Malformed(format!("not a Gemini model list: {e}: {}", snippet(body)))
    })?;
    Ok(list
        .models
        .iter()
        .filter(|m| {
            m.supported_generation_methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|x| x == "generateContent"))
        })
        .map(|m| ModelInfo {
            id: m.name.strip_prefix("models/").unwrap_or(&m.name).to_owned(),
            owned_by: "google".to_owned(),
            created: 0,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn parse_json(v: Value) -> Result<Value, ProviderError> {
        parse(v.to_string().as_bytes(), "gemini-x").map(|r| serde_json::to_value(r).unwrap())
    }

    fn candidate(parts: Value, finish: &str) -> Value {
        json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
               "modelVersion": "gemini-2.5-flash", "responseId": "resp1"})
    }

    #[test]
    fn finish_reason_table() {
        let rows = [
            ("STOP", false, "stop", false),
            ("STOP", true, "tool_calls", false),
            ("MAX_TOKENS", false, "length", false),
            ("MAX_TOKENS", true, "length", false),
            ("SAFETY", false, "content_filter", true),
            ("RECITATION", false, "content_filter", true),
            ("BLOCKLIST", false, "content_filter", true),
            ("PROHIBITED_CONTENT", false, "content_filter", true),
            ("SPII", false, "content_filter", true),
            ("IMAGE_SAFETY", false, "content_filter", true),
            ("MALFORMED_FUNCTION_CALL", false, "stop", true),
            ("OTHER", false, "stop", true),
            ("LANGUAGE", false, "stop", true),
            ("SOMETHING_NEW", false, "stop", true),
            ("UNEXPECTED_TOOL_CALL", true, "tool_calls", true),
        ];
        for (native, call, want, lossy) in rows {
            let (f, l) = finish_reason(native, call);
            assert_eq!((f.as_str(), l), (want, lossy), "{native} call={call}");
        }
    }

    #[test]
    fn usage_counts_thoughts_as_completion() {
        let u: UsageMetadata = serde_json::from_value(json!({"promptTokenCount": 299,
            "candidatesTokenCount": 32, "totalTokenCount": 826, "thoughtsTokenCount": 495,
            "cachedContentTokenCount": 100}))
        .unwrap();
        let o = serde_json::to_value(u.to_openai()).unwrap();
        assert_eq!(
            o,
            json!({"prompt_tokens": 299, "completion_tokens": 527, "total_tokens": 826,
                "prompt_tokens_details": {"cached_tokens": 100},
                "completion_tokens_details": {"reasoning_tokens": 495}})
        );
        let u: UsageMetadata = serde_json::from_value(json!({"promptTokenCount": 5,
            "toolUsePromptTokenCount": 3, "candidatesTokenCount": 2}))
        .unwrap();
        let o = u.to_openai();
        assert_eq!(
            (o.prompt_tokens, o.completion_tokens, o.total_tokens),
            (8, 2, 10)
        );
    }

    #[test]
    fn text_thoughts_and_signatures() {
        let v = parse_json(candidate(
            json!([{"text": "hmm", "thought": true}, {"text": "Hello", "thoughtSignature": "sigT"}, {"text": " world"}]),
            "STOP",
        ))
        .unwrap();
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], "Hello world");
        assert_eq!(m["reasoning_content"], "hmm");
        assert_eq!(m["extra_content"]["google"]["thought_signature"], "sigT");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            (v["id"].as_str(), v["model"].as_str()),
            (Some("resp1"), Some("gemini-2.5-flash"))
        );
    }

    #[test]
    fn function_calls_get_unique_ids_and_keep_signatures() {
        let body = r#"{"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {
            "b": 3, "a": [1, "x y"] }}, "thoughtSignature": "sig1"}]}, "finishReason": "STOP"}]}"#;
        let r = serde_json::to_value(parse(body.as_bytes(), "m").unwrap()).unwrap();
        let args = &r["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"];
        assert_eq!(args, r#"{"b":3,"a":[1,"x y"]}"#, "compact, key order kept");
        let v = parse_json(candidate(
            json!([
                {"functionCall": {"name": "f", "args": {"a": [1, "x y"], "b": 3}}, "thoughtSignature": "sig1"},
                {"functionCall": {"name": "f"}},
                {"functionCall": {"name": "g", "args": null, "id": "given"}}
            ]),
            "STOP",
        ))
        .unwrap();
        let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 3);
        assert_eq!(
            calls[0]["function"]["arguments"],
            r#"{"a":[1,"x y"],"b":3}"#
        );
        assert_eq!(calls[1]["function"]["arguments"], "{}");
        assert_eq!(calls[2]["function"]["arguments"], "{}");
        assert_eq!(
            calls[0]["extra_content"]["google"]["thought_signature"],
            "sig1"
        );
        assert!(calls[1].get("extra_content").is_none());
        let ids: Vec<&str> = calls.iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert!(
            ids[0].starts_with("call_") && ids[1].starts_with("call_"),
            "{ids:?}"
        );
        assert_ne!(ids[0], ids[1], "same-name calls must not share an id");
        assert_eq!(ids[2], "given");
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn blocked_prompts_and_broken_answers() {
        let v = parse_json(json!({"promptFeedback": {"blockReason": "SAFETY"}})).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(v["choices"][0]["native_finish_reason"], "SAFETY");
        for bad in [
            json!({"this": "is not a response"}),
            json!({"candidates": [{"content": {}, "index": 0}]}),
        ] {
            assert!(
                matches!(parse_json(bad.clone()), Err(ProviderError::Malformed(_))),
                "{bad}"
            );
        }
        let e =
            parse_json(json!({"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}))
                .unwrap_err();
        assert!(
            matches!(e, ProviderError::Status { status: 503, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn candidates_become_choices_in_index_order() {
        let v = parse_json(json!({"candidates": [
            {"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP", "index": 1},
            {"content": {"parts": [{"text": "a"}]}, "finishReason": "MAX_TOKENS", "index": 0}]}))
        .unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "a");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["choices"][1]["index"], 1);
        assert_eq!(
            v["model"], "gemini-x",
            "the requested model when modelVersion is missing"
        );
    }

    #[test]
    fn model_list_strips_the_prefix() {
        let body = json!({"models": [
            {"name": "models/gemini-2.5-flash", "supportedGenerationMethods": ["generateContent", "countTokens"]},
            {"name": "models/text-embedding-004", "supportedGenerationMethods": ["embedContent"]},
            {"name": "models/gemini-x"}]});
        let ids: Vec<String> = parse_models(body.to_string().as_bytes())
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, ["gemini-2.5-flash", "gemini-x"]);
    }
}
