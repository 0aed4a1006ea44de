//! The default OpenAI behaviour, used when no scripted reply is queued: an echo model
//! whose responses have the shapes of the real recordings in
//! `shared/fixtures/openai` (`spec-examples/chat-default.json`, `sdk-recordings/*.sse`,
//! the 2026 `vcr-fantasy` streams).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use crate::script::{error_body, Reply, SseStep, StreamEnd};

/// Models listed by `GET /v1/models`.
const MODELS: &[(&str, &str)] = &[("gpt-4o-mini", "openai"), ("mock-model", "modelway")];
const MODEL_CREATED: u64 = 1_686_935_002;
const FINGERPRINT: &str = "fp_mock";

/// Makes ids unique within the process (`chatcmpl-mock…`, `call_mock…`).
pub(crate) fn next_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{:012}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `GET /v1/models`.
pub(crate) fn models() -> Value {
    json!({"object": "list", "data": MODELS.iter().map(|m| model_object(*m)).collect::<Vec<_>>()})
}

/// `GET /v1/models/{id}`.
pub(crate) fn model(id: &str) -> Option<Value> {
    MODELS
        .iter()
        .find(|(m, _)| *m == id)
        .map(|m| model_object(*m))
}

fn model_object((id, owner): (&str, &str)) -> Value {
    json!({"id": id, "object": "model", "created": MODEL_CREATED, "owned_by": owner})
}

pub(crate) fn bad_request(message: &str, param: Option<&str>) -> Reply {
    Reply::Json {
        status: 400,
        body: error_body(400, message, param),
        headers: Vec::new(),
    }
}

/// What the echo model answers.
enum Answer {
    Text(String),
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
}

/// The default answer to `POST /v1/chat/completions`.
pub(crate) fn chat(body: &[u8]) -> Reply {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
            None,
        );
    };
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return bad_request("you must provide a model parameter", Some("model"));
    };
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return bad_request("Missing required parameter: 'messages'.", Some("messages"));
    };
    if messages.is_empty() {
        return bad_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got \
             an empty array instead.",
            Some("messages"),
        );
    }

    let answer = answer(&req, messages);
    let prompt_tokens = messages.iter().map(|m| words(&text_of(m))).sum::<u64>();
    let completion_tokens = match &answer {
        Answer::Text(t) => words(t),
        Answer::ToolCall {
            name, arguments, ..
        } => 1 + words(name) + arguments_pieces(arguments).len() as u64,
    };
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
        },
    });
    let head = Head {
        id: format!("chatcmpl-mock{}", next_suffix()),
        created: modelway_core::unix_now(),
        model: model.to_owned(),
    };
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = req
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        stream(&head, &answer, include_usage.then_some(usage))
    } else {
        completion(&head, &answer, usage)
    }
}

/// The identifiers every chunk of one completion shares.
struct Head {
    id: String,
    created: u64,
    model: String,
}

fn answer(req: &Value, messages: &[Value]) -> Answer {
    let tools = req
        .get("tools")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let choice = req.get("tool_choice");
    let last_is_user = messages.last().and_then(|m| m.get("role")) == Some(&json!("user"));
    if !tools.is_empty() && choice != Some(&json!("none")) && last_is_user {
        let forced = choice
            .and_then(|c| c.pointer("/function/name"))
            .and_then(Value::as_str);
        let tool = forced
            .and_then(|f| tools.iter().find(|t| tool_name(t) == Some(f)))
            .unwrap_or(&tools[0]);
        let name = forced.or_else(|| tool_name(tool)).unwrap_or("tool");
        let has_city = tool
            .pointer("/function/parameters/properties/city")
            .is_some();
        return Answer::ToolCall {
            id: format!("call_mock{}", next_suffix()),
            name: name.to_owned(),
            arguments: if has_city {
                r#"{"city":"Paris"}"#
            } else {
                "{}"
            }
            .to_owned(),
        };
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role") == Some(&json!("user")))
        .map(text_of)
        .unwrap_or_default();
    Answer::Text(format!("Echo: {last_user}"))
}

fn tool_name(tool: &Value) -> Option<&str> {
    tool.pointer("/function/name")
        .or_else(|| tool.pointer("/custom/name"))
        .and_then(Value::as_str)
}

/// A message's text: string content, or its text parts joined with a space.
fn text_of(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type") == Some(&json!("text")))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The deterministic token count: whitespace-separated words.
pub(crate) fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Splits the answer the way OpenAI streams it: one word per chunk, each but the
/// first carrying its leading space (`"Echo:"`, `" hello"`, `" world"`).
pub(crate) fn content_pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' && i > start && !text[start..i].trim().is_empty() {
            out.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Splits tool arguments like OpenAI's tokenizer does for JSON: runs of word characters
/// and runs of punctuation alternate (`{"`, `city`, `":"`, `Paris`, `"}`).
pub(crate) fn arguments_pieces(args: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev: Option<bool> = None;
    for (i, c) in args.char_indices() {
        let word = c.is_alphanumeric() || c == '_';
        if prev.is_some_and(|p| p != word) {
            out.push(&args[start..i]);
            start = i;
        }
        prev = Some(word);
    }
    if start < args.len() {
        out.push(&args[start..]);
    }
    out
}

fn completion(head: &Head, answer: &Answer, usage: Value) -> Reply {
    let (message, finish) = match answer {
        Answer::Text(t) => (
            json!({"role": "assistant", "content": t, "refusal": null, "annotations": []}),
            "stop",
        ),
        Answer::ToolCall {
            id,
            name,
            arguments,
        } => (
            json!({
                "role": "assistant", "content": null, "refusal": null, "annotations": [],
                "tool_calls": [{"id": id, "type": "function",
                                "function": {"name": name, "arguments": arguments}}],
            }),
            "tool_calls",
        ),
    };
    Reply::Json {
        status: 200,
        body: json!({
            "id": head.id,
            "object": "chat.completion",
            "created": head.created,
            "model": head.model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }),
        headers: Vec::new(),
    }
}

fn stream(head: &Head, answer: &Answer, usage: Option<Value>) -> Reply {
    // With include_usage, every chunk carries `"usage": null` (the 2026 shape); without
    // it, no chunk has the key (the 2024 shape) — clients must accept both.
    let with_usage_key = usage.is_some();
    let chunk = |choices: Value, usage: Option<&Value>| {
        let mut c = Map::new();
        c.insert("id".into(), json!(head.id));
        c.insert("object".into(), json!("chat.completion.chunk"));
        c.insert("created".into(), json!(head.created));
        c.insert("model".into(), json!(head.model));
        c.insert("system_fingerprint".into(), json!(FINGERPRINT));
        c.insert("choices".into(), choices);
        if with_usage_key {
            c.insert("usage".into(), usage.cloned().unwrap_or(Value::Null));
        }
        SseStep::data(&Value::Object(c))
    };
    let choice = |delta: Value, finish: Option<&str>| {
        chunk(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
            None,
        )
    };

    let mut events = Vec::new();
    let finish = match answer {
        Answer::Text(t) => {
            events.push(choice(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ));
            for piece in content_pieces(t) {
                events.push(choice(json!({"content": piece}), None));
            }
            "stop"
        }
        Answer::ToolCall {
            id,
            name,
            arguments,
        } => {
            events.push(choice(
                json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                    {"index": 0, "id": id, "type": "function",
                     "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            for piece in arguments_pieces(arguments) {
                events.push(choice(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
            "tool_calls"
        }
    };
    events.push(choice(json!({}), Some(finish)));
    if let Some(usage) = &usage {
        events.push(chunk(json!([]), Some(usage)));
    }
    Reply::Sse {
        events,
        end: StreamEnd::Done,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn splitting_rows() {
        let rows: &[(&str, &[&str])] = &[
            ("Echo: hello world", &["Echo:", " hello", " world"]),
            ("Echo: ", &["Echo:", " "]),
            ("Echo:  two  spaces", &["Echo:", "  two", "  spaces"]),
        ];
        for (text, want) in rows {
            assert_eq!(content_pieces(text), *want, "{text:?}");
            assert_eq!(content_pieces(text).concat(), *text);
        }
        let rows: &[(&str, &[&str])] = &[
            (
                r#"{"city":"Paris"}"#,
                &["{\"", "city", "\":\"", "Paris", "\"}"],
            ),
            ("{}", &["{}"]),
        ];
        for (args, want) in rows {
            assert_eq!(arguments_pieces(args), *want, "{args:?}");
        }
    }

    #[test]
    fn text_parts_are_joined() {
        let m = json!({"role": "user", "content": [
            {"type": "text", "text": "a"},
            {"type": "image_url", "image_url": {"url": "http://x"}},
            {"type": "text", "text": "b"}]});
        assert_eq!(text_of(&m), "a b");
    }

    #[test]
    fn bad_requests_are_400() {
        for body in [&b"{nope"[..], br#"{"messages":[]}"#, br#"{"model":"m"}"#] {
            let Reply::Json {
                status, body: b, ..
            } = chat(body)
            else {
                panic!("not json")
            };
            assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
            assert_eq!(b["error"]["type"], "invalid_request_error");
        }
    }

    #[test]
    fn forced_tool_choice_wins() {
        let req = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [
                {"type": "function", "function": {"name": "a"}},
                {"type": "function", "function": {"name": "weather", "parameters":
                    {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}}});
        let Reply::Json { body, .. } = chat(req.to_string().as_bytes()) else {
            panic!("not json")
        };
        let call = &body["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "weather");
        assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn no_tool_call_after_tool_result_or_with_none() {
        let tools = json!([{"type": "function", "function": {"name": "a"}}]);
        for req in [
            json!({"model": "m", "tools": tools, "tool_choice": "none",
                   "messages": [{"role": "user", "content": "hi"}]}),
            json!({"model": "m", "tools": tools, "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "tool_calls": []},
                {"role": "tool", "tool_call_id": "c", "content": "sunny"}]}),
        ] {
            let Reply::Json { body, .. } = chat(req.to_string().as_bytes()) else {
                panic!("not json")
            };
            assert_eq!(
                body["choices"][0]["message"]["content"], "Echo: hi",
                "{req}"
            );
        }
    }
}
