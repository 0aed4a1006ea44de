//! The mock's default Anthropic Messages answers (`POST /v1/messages`), used when no
//! scripted reply is queued: an echo model whose JSON and SSE answers have the shapes
//! of the real recordings in `shared/fixtures/anthropic` (`vcr-fantasy` cassettes,
//! `sdk-fixtures/*.sse`), and which rejects, with Anthropic's 400s, the requests the
//! real API rejects that translators commonly get wrong (WIRE.md §2.2).
//!
//! - Headers: `anthropic-version` is required; `x-api-key` (or `authorization`) must
//!   be present (its value is not checked).
//! - Body: `model`, `max_tokens`, `messages` required; text blocks non-blank; every
//!   `tool_use` answered by `tool_result` blocks in the next user turn; `tool_use.input`
//!   an object; tool ids `[a-zA-Z0-9_-]+`; with `thinking` enabled, an assistant turn
//!   holding `tool_use` must start with a signed thinking block.
//! - Answer: with tools offered (and `tool_choice` not `none`) and a last user turn
//!   without tool results, a text block then a `tool_use` of the forced tool (else the
//!   first one). A forced tool (`tool_choice: tool`) gets the input the real API gives:
//!   its schema filled, or for an any-object schema (no `properties`) the schema the
//!   prompt names filled, else `{}` (see `schema.rs`) — so JSON mode through a forced
//!   tool can be tested end to end. Other calls fill only `city`/`location` with
//!   `"Paris"`. After tool results, `Tool result: <their text>`; with
//!   `output_config.format` a JSON object matching the schema's required properties;
//!   else `Echo: <last user text>`. `thinking` enabled adds a signed thinking block
//!   first. Answers longer than `max_tokens` words stop with `max_tokens`.

use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;
use serde_json::{json, Map, Value};

use crate::schema;
use crate::script::{Reply, SseStep, StreamEnd};

/// The signature the mock puts on its thinking blocks and expects back.
pub(crate) const MOCK_SIGNATURE: &str = "bW9jay1zaWduYXR1cmU=";

fn next_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{:012}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// An Anthropic error reply.
pub(crate) fn error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::Json {
        status,
        body: json!({"type": "error", "error": {"type": kind, "message": message},
                     "request_id": format!("req_mock{}", next_suffix())}),
        headers: Vec::new(),
    }
}

fn bad_request(message: &str) -> Reply {
    error(400, "invalid_request_error", message)
}

/// The default answer to `POST /v1/messages`.
pub(crate) fn messages(headers: &HeaderMap, body: &[u8]) -> Reply {
    if !headers.contains_key("anthropic-version") {
        return bad_request("anthropic-version: header is required");
    }
    if !headers.contains_key("x-api-key") && !headers.contains_key("authorization") {
        return error(401, "authentication_error", "x-api-key header is required");
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return bad_request("There was an issue with your request body: not valid JSON");
    };
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return bad_request("model: Field required");
    };
    let Some(max_tokens) = req.get("max_tokens").and_then(Value::as_u64) else {
        return bad_request("max_tokens: Field required");
    };
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return bad_request("messages: Field required");
    };
    if messages.is_empty() {
        return bad_request("messages: at least one message is required");
    }
    let thinking = req.pointer("/thinking/type").and_then(Value::as_str) == Some("enabled");
    if let Err(m) = validate(messages, req.get("system"), thinking) {
        return bad_request(&m);
    }

    let answer = answer(&req, messages, thinking);
    let input_tokens = messages.iter().map(|m| words(&text_of(m))).sum::<u64>() + 3;
    let head = Head {
        id: format!("msg_mock{}", next_suffix()),
        model: model.to_owned(),
        input_tokens,
    };
    let answer = answer.truncated(max_tokens);
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        stream(&head, &answer)
    } else {
        message(&head, &answer)
    }
}

/// The checks the real API makes that translators get wrong.
fn validate(messages: &[Value], system: Option<&Value>, thinking: bool) -> Result<(), String> {
    if let Some(Value::Array(blocks)) = system {
        for (j, b) in blocks.iter().enumerate() {
            check_block(b, &format!("system.{j}"))?;
        }
    }
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
        let blocks: Vec<Value> = match m.get("content") {
            Some(Value::String(s)) => {
                if s.trim().is_empty() && !(role == "assistant" && i + 1 == messages.len()) {
                    return Err(format!(
                        "messages.{i}: {role} messages must have non-empty content"
                    ));
                }
                vec![json!({"type": "text", "text": s})]
            }
            Some(Value::Array(b)) => b.clone(),
            _ => return Err(format!("messages.{i}.content: Field required")),
        };
        if blocks.is_empty() && !(role == "assistant" && i + 1 == messages.len()) {
            return Err(format!(
                "messages.{i}: {role} messages must have non-empty content"
            ));
        }
        if !pending.is_empty() {
            let answered: Vec<&str> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_result")
                .filter_map(|b| b["tool_use_id"].as_str())
                .collect();
            let missing: Vec<&str> = pending
                .iter()
                .map(String::as_str)
                .filter(|id| !answered.contains(id))
                .collect();
            if role != "user" || !missing.is_empty() {
                return Err(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks \
                     immediately after: {}. Each `tool_use` block must have a corresponding \
                     `tool_result` block in the next message.",
                    missing.join(", ")
                ));
            }
            pending.clear();
        }
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            check_block(b, &at)?;
            if b["type"] == "tool_use" {
                if role != "assistant" {
                    return Err(format!("{at}: tool_use blocks belong to assistant turns"));
                }
                if !b["input"].is_object() {
                    return Err(format!("{at}.tool_use.input: Input should be an object"));
                }
                let id = b["id"].as_str().unwrap_or_default();
                pending.push(id.to_owned());
            }
        }
        if thinking && role == "assistant" && blocks.iter().any(|b| b["type"] == "tool_use") {
            let first = blocks.first().map(|b| &b["type"]);
            if first != Some(&json!("thinking")) && first != Some(&json!("redacted_thinking")) {
                let found = first.and_then(Value::as_str).unwrap_or("nothing");
                return Err(format!(
                    "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, \
                     but found `{found}`. When `thinking` is enabled, a final `assistant` \
                     message must start with a thinking block."
                ));
            }
        }
    }
    Ok(())
}

fn check_block(b: &Value, at: &str) -> Result<(), String> {
    let valid_id = |id: &str| {
        !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    match b["type"].as_str() {
        Some("text") => match b["text"].as_str() {
            Some("") => Err(format!("{at}: text content blocks must be non-empty")),
            Some(t) if t.trim().is_empty() => Err(format!(
                "{at}: text content blocks must contain non-whitespace text"
            )),
            Some(_) => Ok(()),
            None => Err(format!("{at}.text: Field required")),
        },
        Some("tool_use") if !valid_id(b["id"].as_str().unwrap_or_default()) => Err(format!(
            "{at}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
        )),
        Some("tool_result") if !valid_id(b["tool_use_id"].as_str().unwrap_or_default()) => Err(
            format!("{at}.tool_result.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'"),
        ),
        Some("thinking") if !b["signature"].is_string() => {
            Err(format!("{at}.thinking.signature: Field required"))
        }
        Some("thinking") if b["signature"] != MOCK_SIGNATURE => {
            Err(format!("{at}: Invalid `signature` in `thinking` block"))
        }
        Some(_) => Ok(()),
        None => Err(format!("{at}.type: Field required")),
    }
}

/// What the echo model answers.
struct Answer {
    thinking: Option<String>,
    text: Option<String>,
    tool: Option<(String, String, Value)>,
    stop_reason: &'static str,
}

impl Answer {
    fn output_words(&self) -> u64 {
        let t = |s: &Option<String>| s.as_deref().map_or(0, words);
        t(&self.thinking) + t(&self.text) + self.tool.as_ref().map_or(0, |_| 5)
    }

    /// Cuts the text to `max_tokens` words (and drops a tool call that does not fit).
    fn truncated(mut self, max_tokens: u64) -> Answer {
        if self.output_words() <= max_tokens {
            return self;
        }
        self.tool = None;
        self.thinking = None;
        if let Some(t) = &self.text {
            let kept: Vec<&str> = t.split_whitespace().take(max_tokens as usize).collect();
            self.text = Some(kept.join(" ")).filter(|s| !s.is_empty());
        }
        self.stop_reason = "max_tokens";
        self
    }
}

struct Head {
    id: String,
    model: String,
    input_tokens: u64,
}

fn answer(req: &Value, messages: &[Value], thinking: bool) -> Answer {
    let thought = thinking.then(|| "The user wants an answer; I will give one.".to_owned());
    let last = messages.last();
    let last_is_user = last.and_then(|m| m.get("role")) == Some(&json!("user"));
    let results: Vec<String> = last
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "tool_result")
                .map(|b| match &b["content"] {
                    Value::String(s) => s.clone(),
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => String::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    let tools = req
        .get("tools")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let choice = req.pointer("/tool_choice/type").and_then(Value::as_str);
    if last_is_user && results.is_empty() && !tools.is_empty() && choice != Some("none") {
        let forced = (choice == Some("tool"))
            .then(|| req.pointer("/tool_choice/name").and_then(Value::as_str))
            .flatten();
        let forced_tool = forced.and_then(|f| tools.iter().find(|t| t["name"] == f));
        let tool = forced_tool.unwrap_or(&tools[0]);
        let name = tool["name"].as_str().unwrap_or("tool").to_owned();
        let input = match forced_tool {
            Some(t) => schema::any_object(Some(&t["input_schema"]), &prompt_text(req, messages)),
            None => {
                let props = &tool["input_schema"]["properties"];
                let mut input = Map::new();
                for key in ["city", "location"] {
                    if props.get(key).is_some() {
                        input.insert(key.into(), json!("Paris"));
                    }
                }
                Value::Object(input)
            }
        };
        return Answer {
            thinking: thought,
            text: (choice != Some("tool") && choice != Some("any"))
                .then(|| format!("I'll call {name}.")),
            tool: Some((format!("toolu_mock{}", next_suffix()), name, input)),
            stop_reason: "tool_use",
        };
    }
    let text = if !results.is_empty() {
        format!("Tool result: {}", results.join(" "))
    } else if let Some(schema) = req.pointer("/output_config/format/schema") {
        schema::sample(schema).to_string()
    } else {
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.get("role") == Some(&json!("user")))
            .map(text_of)
            .unwrap_or_default();
        format!("Echo: {last_user}")
    };
    Answer {
        thinking: thought,
        text: Some(text),
        tool: None,
        stop_reason: "end_turn",
    }
}

/// The system prompt and every user turn's text, where a JSON-mode client writes the
/// schema it wants.
fn prompt_text(req: &Value, messages: &[Value]) -> String {
    let mut out = match req.get("system") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    for m in messages.iter().filter(|m| m["role"] == "user") {
        out.push('\n');
        out.push_str(&text_of(m));
    }
    out
}

/// A message's text: string content, or its text blocks joined with a space.
fn text_of(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn usage(head: &Head, output_tokens: u64) -> Value {
    json!({
        "input_tokens": head.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
        "inference_geo": "not_available",
    })
}

fn content_blocks(answer: &Answer) -> Vec<Value> {
    let mut blocks = Vec::new();
    if let Some(t) = &answer.thinking {
        blocks.push(json!({"type": "thinking", "thinking": t, "signature": MOCK_SIGNATURE}));
    }
    if let Some(t) = &answer.text {
        blocks.push(json!({"type": "text", "text": t}));
    }
    if let Some((id, name, input)) = &answer.tool {
        blocks.push(
            json!({"type": "tool_use", "id": id, "name": name, "input": input,
                           "caller": {"type": "direct"}}),
        );
    }
    blocks
}

fn message(head: &Head, answer: &Answer) -> Reply {
    Reply::Json {
        status: 200,
        body: json!({
            "model": head.model,
            "id": head.id,
            "type": "message",
            "role": "assistant",
            "content": content_blocks(answer),
            "stop_reason": answer.stop_reason,
            "stop_sequence": null,
            "usage": usage(head, answer.output_words()),
        }),
        headers: Vec::new(),
    }
}

fn event(name: &str, data: &Value) -> SseStep {
    SseStep::raw(&format!("event: {name}\ndata: {data}\n\n"))
}

/// Splits text the way Anthropic streams it: a few words per delta, spaces kept.
fn text_pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut spaces = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' {
            spaces += 1;
            if spaces % 2 == 0 {
                out.push(&text[start..i]);
                start = i;
            }
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Splits JSON text into fragments (`{"ci`, `ty": "Pa`, …).
fn json_pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in text.char_indices() {
        if i - start >= 5 {
            out.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn stream(head: &Head, answer: &Answer) -> Reply {
    let mut events = Vec::new();
    let start = json!({"type": "message_start", "message": {
        "model": head.model, "id": head.id, "type": "message", "role": "assistant",
        "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage(head, 1)}});
    events.push(event("message_start", &start));
    let mut index = 0;
    let block_event = |kind: &str, index: usize, extra: Value| {
        let mut v = json!({"type": kind, "index": index});
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        event(kind, &v)
    };
    if let Some(t) = &answer.thinking {
        events.push(block_event(
            "content_block_start",
            index,
            json!({"content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ));
        for piece in text_pieces(t) {
            events.push(block_event(
                "content_block_delta",
                index,
                json!({"delta": {"type": "thinking_delta", "thinking": piece}}),
            ));
        }
        events.push(block_event(
            "content_block_delta",
            index,
            json!({"delta": {"type": "signature_delta", "signature": MOCK_SIGNATURE}}),
        ));
        events.push(block_event("content_block_stop", index, json!({})));
        index += 1;
    }
    if let Some(t) = &answer.text {
        events.push(block_event(
            "content_block_start",
            index,
            json!({"content_block": {"type": "text", "text": ""}}),
        ));
        if index == 0 {
            events.push(event("ping", &json!({"type": "ping"})));
        }
        for piece in text_pieces(t) {
            events.push(block_event(
                "content_block_delta",
                index,
                json!({"delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push(block_event("content_block_stop", index, json!({})));
        index += 1;
    }
    if let Some((id, name, input)) = &answer.tool {
        events.push(block_event(
            "content_block_start",
            index,
            json!({"content_block": {"type": "tool_use", "id": id, "name": name, "input": {},
                                     "caller": {"type": "direct"}}}),
        ));
        // The real API opens every tool input with an empty fragment; a tool without
        // arguments streams nothing else.
        events.push(block_event(
            "content_block_delta",
            index,
            json!({"delta": {"type": "input_json_delta", "partial_json": ""}}),
        ));
        let args = if input.as_object().is_some_and(|o| o.is_empty()) {
            String::new()
        } else {
            input.to_string()
        };
        for piece in json_pieces(&args) {
            events.push(block_event(
                "content_block_delta",
                index,
                json!({"delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        events.push(block_event("content_block_stop", index, json!({})));
    }
    let mut u = usage(head, answer.output_words());
    if let Some(o) = u.as_object_mut() {
        o.remove("cache_creation");
        o.remove("service_tier");
        o.remove("inference_geo");
    }
    events.push(event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": answer.stop_reason, "stop_sequence": null},
                "usage": u}),
    ));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    Reply::Sse {
        events,
        end: StreamEnd::Close,
    }
}

/// The models the mock lists on `GET /v1/models` (asked with `anthropic-version`), in
/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}`, N the words of the system
/// prompt and every message's text plus 3 per message (its own rule, distinct from the
/// gateway's estimate, so a test can tell which answered). `max_tokens` is refused, as
/// Anthropic's schema has no such field.
pub(crate) fn count_tokens(headers: &HeaderMap, body: &[u8]) -> Reply {
    if !headers.contains_key("anthropic-version") {
        return bad_request("anthropic-version: header is required");
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return bad_request("There was an issue with your request body: not valid JSON");
    };
    if req.get("max_tokens").is_some() {
        return bad_request("max_tokens: Extra inputs are not permitted");
    }
    let messages = req["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let system = match req.get("system") {
        Some(Value::String(s)) => words(s),
        Some(v @ Value::Array(_)) => words(&text_of(&json!({"content": v}))),
        _ => 0,
    };
    let n = system + messages.iter().map(|m| words(&text_of(m)) + 3).sum::<u64>();
    Reply::Json {
        status: 200,
        body: json!({"input_tokens": n}),
        headers: Vec::new(),
    }
}

/// Anthropic's shape: `{data: [{type, id, display_name, created_at}], has_more, first_id,
/// last_id}`.
pub(crate) fn models() -> Value {
    let data: Vec<Value> = [
        ("claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-22T00:00:00Z"),
        ("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z"),
    ]
    .iter()
    .map(|(id, name, at)| {
        serde_json::json!({"type": "model", "id": id, "display_name": name, "created_at": at})
    })
    .collect();
    serde_json::json!({
        "data": data,
        "has_more": false,
        "first_id": "claude-sonnet-4-20250514",
        "last_id": "claude-3-5-haiku-20241022",
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("anthropic-version", "2023-06-01".parse().unwrap());
        h.insert("x-api-key", "k".parse().unwrap());
        h
    }

    fn call(req: &Value) -> Reply {
        messages(&headers(), req.to_string().as_bytes())
    }

    fn json_of(r: Reply) -> (u16, Value) {
        match r {
            Reply::Json { status, body, .. } => (status, body),
            other => panic!("not json: {other:?}"),
        }
    }

    /// The keys of a JSON object, sorted.
    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    fn fixture(rel: &str) -> String {
        std::fs::read_to_string(crate::fixtures_dir().join(rel)).unwrap()
    }

    /// The response body of the first interaction of a cassette (a block or quoted
    /// scalar under `response:`), as JSON for whole messages.
    fn cassette_message(rel: &str) -> Value {
        let text = fixture(rel);
        let line = text
            .lines()
            .skip_while(|l| !l.contains("response:"))
            .find(|l| l.trim_start().starts_with("body: '"))
            .unwrap();
        let raw = line.trim_start().trim_start_matches("body: '");
        let raw = raw.strip_suffix('\'').unwrap().replace("''", "'");
        serde_json::from_str(&raw).unwrap()
    }

    #[test]
    fn json_answers_have_the_recorded_shape() {
        let rec = cassette_message(
            "anthropic/vcr-fantasy/TestAnthropicCommon/claude-sonnet-4/simple.yaml",
        );
        let (status, ours) = json_of(call(&json!({"model": "claude-x", "max_tokens": 100,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]})));
        assert_eq!(status, 200);
        assert_eq!(keys(&ours), keys(&rec));
        assert_eq!(keys(&ours["usage"]), keys(&rec["usage"]));
        assert_eq!(keys(&ours["content"][0]), keys(&rec["content"][0]));
        assert_eq!(ours["content"][0]["text"], "Echo: hello there");
        assert_eq!(ours["stop_reason"], "end_turn");

        let rec = cassette_message("anthropic/vcr-fantasy/TestAnthropicObjectGeneration/claude-sonnet-4/simple_object.yaml");
        let (_, ours) = json_of(call(&json!({"model": "claude-x", "max_tokens": 100,
            "messages": [{"role": "user", "content": "make a person"}],
            "tools": [{"name": "Person", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "tool", "name": "Person"}})));
        assert_eq!(keys(&ours["content"][0]), keys(&rec["content"][0]));
        assert_eq!(ours["content"][0]["input"], json!({"city": "Paris"}));
        assert_eq!(ours["stop_reason"], "tool_use");
    }

    #[test]
    fn streams_have_the_recorded_event_sequence() {
        let events_of = |text: &str| -> Vec<(String, Value)> {
            modelway_core::sse::SseDecoder::decode_all(text.as_bytes())
                .into_iter()
                .map(|e| {
                    (
                        e.event.unwrap_or_default(),
                        serde_json::from_str(&e.data).unwrap(),
                    )
                })
                .collect()
        };
        let Reply::Sse { events, end } = call(&json!({"model": "claude-x", "max_tokens": 100,
            "stream": true, "messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}]}))
        else {
            panic!("not sse")
        };
        assert_eq!(end, StreamEnd::Close);
        let text: String = events
            .iter()
            .map(|s| String::from_utf8_lossy(&s.data).into_owned())
            .collect();
        let ours = events_of(&text);
        let rec = events_of(&fixture("anthropic/sdk-fixtures/tool_use_response.sse"));
        let names = |v: &[(String, Value)]| {
            let mut n: Vec<String> = v.iter().map(|(e, _)| e.clone()).collect();
            n.dedup();
            n
        };
        assert_eq!(names(&ours), names(&rec));
        for (e, data) in &ours {
            assert_eq!(&data["type"], e, "event name and type agree");
            let twin = rec.iter().find(|(n, d)| {
                n == e
                    && d.pointer("/delta/type") == data.pointer("/delta/type")
                    && d.pointer("/content_block/type") == data.pointer("/content_block/type")
            });
            let (_, twin) = twin.unwrap_or_else(|| panic!("no recorded {e} like {data}"));
            assert_eq!(keys(data), keys(twin), "{e}");
        }
        let args: String = ours
            .iter()
            .filter_map(|(_, d)| d.pointer("/delta/partial_json").and_then(Value::as_str))
            .collect();
        assert_eq!(args, r#"{"location":"Paris"}"#);
    }

    #[test]
    fn rejections_mirror_the_real_api() {
        let ok_msgs = json!([{"role": "user", "content": "hi"}]);
        let rows: Vec<(Value, &str)> = vec![
            (
                json!({"max_tokens": 5, "messages": ok_msgs}),
                "model: Field required",
            ),
            (
                json!({"model": "m", "messages": ok_msgs}),
                "max_tokens: Field required",
            ),
            (
                json!({"model": "m", "max_tokens": 5}),
                "messages: Field required",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": []}),
                "at least one message",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}),
                "must be non-empty",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                    {"role": "user", "content": "no result"}]}),
                "without `tool_result` blocks",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": "{}"}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r"}]}]}),
                "Input should be an object",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "a.b:0", "name": "f", "input": {}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a.b:0", "content": "r"}]}]}),
                "should match pattern",
            ),
            (
                json!({"model": "m", "max_tokens": 5000, "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r"}]}]}),
                "Expected `thinking` or `redacted_thinking`",
            ),
        ];
        for (req, want) in rows {
            let (status, body) = json_of(call(&req));
            assert_eq!(status, 400, "{req}");
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], "invalid_request_error");
            let msg = body["error"]["message"].as_str().unwrap();
            assert!(msg.contains(want), "{req}: {msg}");
        }
        let (status, body) = json_of(messages(&HeaderMap::new(), b"{}"));
        assert_eq!(
            (status, body["error"]["message"].clone()),
            (400, json!("anthropic-version: header is required"))
        );
    }

    #[test]
    fn tool_results_thinking_json_and_max_tokens() {
        let (_, r) = json_of(call(&json!({"model": "m", "max_tokens": 5000,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "t", "signature": MOCK_SIGNATURE},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "sunny"}]}]}]})));
        assert_eq!(r["content"][0]["type"], "thinking");
        assert_eq!(r["content"][1]["text"], "Tool result: sunny");
        let (_, r) = json_of(call(&json!({"model": "m", "max_tokens": 50,
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}}},
            "messages": [{"role": "user", "content": "q"}]})));
        let parsed: Value =
            serde_json::from_str(r["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(parsed, json!({"name": "mock", "age": 30}));
        let (_, r) = json_of(call(&json!({"model": "m", "max_tokens": 2,
            "messages": [{"role": "user", "content": "one two three four"}]})));
        assert_eq!(r["stop_reason"], "max_tokens");
        assert_eq!(r["content"][0]["text"], "Echo: one");
    }
}
