//! Canonical answer → Responses `response` object, and the output items, usage and
//! response object the stream encoder shares.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Echo, CARRY_PREFIX};
use crate::chat::{ChatResponse, FinishReason, Usage};
use crate::error::GatewayError;

/// Ids of one response: `resp_<32 hex>`, and its items' `msg_`/`fc_`/`rs_` ids made of the
/// same hex and a counter, so they are unique without another random draw per item.
#[derive(Debug, Clone)]
pub(super) struct Ids {
    hex: String,
    next: u32,
}

impl Ids {
    pub(super) fn new() -> Self {
        Self::from_hex(uuid::Uuid::new_v4().simple().to_string())
    }

    pub(super) fn from_hex(hex: String) -> Self {
        Self { hex, next: 0 }
    }

    pub(super) fn response(&self) -> String {
        format!("resp_{}", self.hex)
    }

    pub(super) fn item(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}_{}{:02x}", self.hex, self.next)
    }
}

/// The lifecycle `status` of a response or an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

impl Status {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Incomplete => "incomplete",
            Status::Failed => "failed",
        }
    }

    /// A response's end status for a finish reason, and `incomplete_details.reason`.
    pub(super) fn of_finish(reason: Option<&FinishReason>) -> (Status, Option<&'static str>) {
        match reason {
            Some(FinishReason::Length) => (Status::Incomplete, Some("max_output_tokens")),
            Some(FinishReason::ContentFilter) => (Status::Incomplete, Some("content_filter")),
            _ => (Status::Completed, None),
        }
    }
}

/// One content part of an output message.
#[derive(Debug, Clone, Default)]
pub(super) struct Part {
    pub(super) refusal: bool,
    pub(super) text: String,
    pub(super) annotations: Vec<Value>,
    pub(super) logprobs: Vec<Value>,
}

impl Part {
    pub(super) fn to_json(&self) -> Value {
        if self.refusal {
            serde_json::json!({"type": "refusal", "refusal": self.text})
        } else {
            serde_json::json!({
                "type": "output_text",
                "text": self.text,
                "annotations": self.annotations,
                "logprobs": self.logprobs,
            })
        }
    }

    /// The part as `content_part.added` announces it: empty.
    pub(super) fn empty_json(&self) -> Value {
        Part {
            refusal: self.refusal,
            ..Part::default()
        }
        .to_json()
    }
}

/// An output item, as both encoders build it.
#[derive(Debug, Clone)]
pub(super) enum Item {
    Reasoning {
        id: String,
        text: String,
        /// Anthropic's signed `thinking_blocks`, carried in `encrypted_content`.
        thinking: Vec<Value>,
    },
    Message {
        id: String,
        parts: Vec<Part>,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

impl Item {
    pub(super) fn id(&self) -> &str {
        match self {
            Item::Reasoning { id, .. } | Item::Message { id, .. } | Item::Call { id, .. } => id,
        }
    }

    /// The item in full, with this status.
    pub(super) fn to_json(&self, status: Status) -> Value {
        let status = status.as_str();
        match self {
            Item::Reasoning { id, text, thinking } => {
                let summary = if text.is_empty() {
                    Vec::new()
                } else {
                    vec![serde_json::json!({"type": "summary_text", "text": text})]
                };
                let mut o = serde_json::json!({
                    "id": id, "type": "reasoning", "status": status, "summary": summary,
                });
                if let Some(carried) = carry(thinking) {
                    o["encrypted_content"] = Value::String(carried);
                }
                o
            }
            Item::Message { id, parts } => serde_json::json!({
                "id": id, "type": "message", "status": status, "role": "assistant",
                "content": parts.iter().map(Part::to_json).collect::<Vec<_>>(),
            }),
            Item::Call {
                id,
                call_id,
                name,
                arguments,
            } => serde_json::json!({
                "id": id, "type": "function_call", "status": status,
                "call_id": call_id, "name": name, "arguments": arguments,
            }),
        }
    }

    /// The item as `output_item.added` announces it: in progress, nothing streamed yet
    /// (a call already has its `call_id` and `name`: clients key the call on them).
    pub(super) fn added_json(&self) -> Value {
        let empty = match self {
            Item::Reasoning { id, .. } => Item::Reasoning {
                id: id.clone(),
                text: String::new(),
                thinking: Vec::new(),
            },
            Item::Message { id, .. } => Item::Message {
                id: id.clone(),
                parts: Vec::new(),
            },
            Item::Call {
                id, call_id, name, ..
            } => Item::Call {
                id: id.clone(),
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: String::new(),
            },
        };
        empty.to_json(Status::InProgress)
    }
}

/// `encrypted_content` carrying signed thinking (see the module docs).
fn carry(thinking: &[Value]) -> Option<String> {
    if thinking.is_empty() {
        return None;
    }
    let body = serde_json::json!({"thinking_blocks": thinking});
    Some(format!("{CARRY_PREFIX}{body}"))
}

/// The reasoning text of a message or delta: `reasoning_content`, or the `reasoning`
/// string some upstreams use instead.
pub(super) fn reasoning_text(extra: &Map<String, Value>) -> Option<&str> {
    ["reasoning_content", "reasoning"].iter().find_map(|k| {
        extra
            .get(*k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    })
}

/// Chat `annotations` → Responses annotations (`url_citation` flattened; others, which
/// have no Responses form, dropped).
pub(super) fn annotations(chat: Option<&Value>) -> Vec<Value> {
    let Some(Value::Array(list)) = chat else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|a| {
            let c = a.get("url_citation")?;
            (a.get("type")?.as_str()? == "url_citation").then(|| {
                serde_json::json!({
                    "type": "url_citation",
                    "start_index": c.get("start_index").cloned().unwrap_or(Value::from(0)),
                    "end_index": c.get("end_index").cloned().unwrap_or(Value::from(0)),
                    "url": c.get("url").cloned().unwrap_or_else(|| Value::from("")),
                    "title": c.get("title").cloned().unwrap_or_else(|| Value::from("")),
                })
            })
        })
        .collect()
}

/// A choice's `logprobs.content` entries in the Responses shape (the same fields; the
/// lists Responses requires filled in).
pub(super) fn logprobs(chat: Option<&Value>) -> Vec<Value> {
    let Some(Value::Array(list)) = chat.and_then(|l| l.get("content")) else {
        return Vec::new();
    };
    list.iter()
        .filter(|e| e.is_object())
        .map(|e| {
            let mut e = e.clone();
            if let Value::Object(o) = &mut e {
                o.entry("bytes").or_insert_with(|| Value::Array(Vec::new()));
                let top = o
                    .entry("top_logprobs")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(top) = top {
                    for t in top.iter_mut().filter_map(Value::as_object_mut) {
                        t.entry("bytes").or_insert_with(|| Value::Array(Vec::new()));
                    }
                }
            }
            e
        })
        .collect()
}

/// `usage` in the Responses shape: every key and both detail objects present.
#[derive(Serialize)]
struct ResponseUsage {
    input_tokens: u64,
    input_tokens_details: InputTokensDetails,
    output_tokens: u64,
    output_tokens_details: OutputTokensDetails,
    total_tokens: u64,
}

#[derive(Serialize)]
struct InputTokensDetails {
    cached_tokens: u64,
    cache_write_tokens: u64,
}

#[derive(Serialize)]
struct OutputTokensDetails {
    reasoning_tokens: u64,
}

impl From<&Usage> for ResponseUsage {
    fn from(u: &Usage) -> Self {
        let prompt = u.prompt_tokens_details.as_ref();
        Self {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputTokensDetails {
                cached_tokens: prompt.and_then(|d| d.cached_tokens).unwrap_or(0),
                cache_write_tokens: prompt
                    .and_then(|d| d.extra.get("cache_write_tokens"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            },
            output_tokens: u.completion_tokens,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: u
                    .completion_tokens_details
                    .as_ref()
                    .and_then(|d| d.reasoning_tokens)
                    .unwrap_or(0),
            },
            total_tokens: if u.total_tokens > 0 {
                u.total_tokens
            } else {
                u.prompt_tokens + u.completion_tokens
            },
        }
    }
}

/// `error` of a failed response. `code` is one of the spec's `ResponseErrorCode`s.
#[derive(Serialize)]
struct ResponseError<'a> {
    code: &'static str,
    message: &'a str,
    param: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'a str,
}

impl<'a> From<&'a GatewayError> for ResponseError<'a> {
    fn from(e: &'a GatewayError) -> Self {
        Self {
            code: match e.status {
                429 => "rate_limit_exceeded",
                400 => "invalid_prompt",
                _ => "server_error",
            },
            message: &e.message,
            param: e.param.as_deref(),
            kind: e.kind,
        }
    }
}

#[derive(Serialize)]
struct IncompleteDetails {
    reason: &'static str,
}

/// The `response` object: what the answer knows, then the echoed request fields.
#[derive(Serialize)]
pub(super) struct ResponseObject<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    completed_at: Option<u64>,
    error: Option<ResponseError<'a>>,
    incomplete_details: Option<IncompleteDetails>,
    model: &'a str,
    output: Vec<Value>,
    usage: Option<ResponseUsage>,
    previous_response_id: Option<&'a str>,
    /// Nothing is kept: a client that asked for storage was told so by `stateful`.
    store: bool,
    background: bool,
    #[serde(flatten)]
    echo: &'a Echo,
}

/// What a `response` object is built from.
pub(super) struct Snapshot<'a> {
    pub(super) id: &'a str,
    pub(super) created_at: u64,
    pub(super) model: &'a str,
    pub(super) status: Status,
    pub(super) incomplete: Option<&'static str>,
    pub(super) error: Option<&'a GatewayError>,
    pub(super) output: Vec<Value>,
    pub(super) usage: Option<&'a Usage>,
    pub(super) echo: &'a Echo,
}

impl<'a> Snapshot<'a> {
    pub(super) fn object(self) -> ResponseObject<'a> {
        ResponseObject {
            id: self.id,
            object: "response",
            created_at: self.created_at,
            status: self.status.as_str(),
            completed_at: (self.status == Status::Completed).then(crate::unix_now),
            error: self.error.map(ResponseError::from),
            incomplete_details: self.incomplete.map(|reason| IncompleteDetails { reason }),
            model: self.model,
            output: self.output,
            usage: self.usage.map(ResponseUsage::from),
            previous_response_id: None,
            store: false,
            background: false,
            echo: self.echo,
        }
    }
}

/// Serialises a value built from JSON-safe parts (string keys, finite or null numbers):
/// writing it to a `Vec` cannot fail, and the fallback is never taken.
fn to_json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

/// A whole canonical answer as a Responses `response` object (JSON bytes): `completed`,
/// or `incomplete` with `incomplete_details.reason` `max_output_tokens` (finish reason
/// `length`) or `content_filter`. Only choice 0 is encoded.
///
/// ```
/// use modelway_core::chat::ChatResponse;
/// use modelway_core::dialect::responses::{decode_request, encode_response};
///
/// let echo = decode_request(br#"{"model":"m","input":"hi"}"#).unwrap().echo;
/// let resp: ChatResponse = serde_json::from_str(
///     r#"{"id":"c","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}]}"#,
/// ).unwrap();
/// let v: serde_json::Value = serde_json::from_slice(&encode_response(&resp, &echo)).unwrap();
/// assert_eq!(v["status"], "completed");
/// assert_eq!(v["output"][0]["content"][0]["text"], "hello");
/// ```
pub fn encode_response(resp: &ChatResponse, echo: &Echo) -> Bytes {
    encode_response_with(resp, echo, Ids::new())
}

fn encode_response_with(resp: &ChatResponse, echo: &Echo, mut ids: Ids) -> Bytes {
    let choice = resp
        .choices
        .iter()
        .find(|c| c.index == 0)
        .or(resp.choices.first());
    let mut items = Vec::new();
    let mut finish = None;
    if let Some(c) = choice {
        finish = c.finish_reason.as_ref();
        let m = &c.message;
        let thinking = match m.extra.get("thinking_blocks") {
            Some(Value::Array(b)) => b.iter().filter(|b| b.is_object()).cloned().collect(),
            _ => Vec::new(),
        };
        let reasoning = reasoning_text(&m.extra).unwrap_or_default();
        if !reasoning.is_empty() || !thinking.is_empty() {
            items.push(Item::Reasoning {
                id: ids.item("rs"),
                text: reasoning.to_owned(),
                thinking,
            });
        }
        let mut parts = Vec::new();
        if let Some(text) = m.content.as_deref().filter(|t| !t.is_empty()) {
            parts.push(Part {
                refusal: false,
                text: text.to_owned(),
                annotations: annotations(m.extra.get("annotations")),
                logprobs: logprobs(c.logprobs.as_ref()),
            });
        }
        if let Some(refusal) = m.refusal.as_deref().filter(|t| !t.is_empty()) {
            parts.push(Part {
                refusal: true,
                text: refusal.to_owned(),
                ..Part::default()
            });
        }
        if !parts.is_empty() {
            items.push(Item::Message {
                id: ids.item("msg"),
                parts,
            });
        }
        for call in m.tool_calls.iter().flatten() {
            items.push(Item::Call {
                id: ids.item("fc"),
                call_id: call.id.clone(),
                name: call.function.name.clone(),
                arguments: call.function.arguments.clone(),
            });
        }
    }
    if items.is_empty() {
        // An empty answer is still a message: clients read `output[0]`.
        items.push(Item::Message {
            id: ids.item("msg"),
            parts: vec![Part::default()],
        });
    }
    let (status, incomplete) = Status::of_finish(finish);
    let last = items.len() - 1;
    let output = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let s = match status {
                // What was cut is the last item.
                Status::Incomplete if i == last => Status::Incomplete,
                _ => Status::Completed,
            };
            item.to_json(s)
        })
        .collect();
    let id = ids.response();
    let model = if resp.model.is_empty() {
        echo.model()
    } else {
        &resp.model
    };
    let object = Snapshot {
        id: &id,
        created_at: if resp.created > 0 {
            resp.created
        } else {
            crate::unix_now()
        },
        model,
        status,
        incomplete,
        error: None,
        output,
        usage: resp.usage.as_ref(),
        echo,
    }
    .object();
    Bytes::from(to_json_bytes(&object))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::dialect::responses::{decode_request, Decoded};

    fn decode(body: &Value) -> Decoded {
        decode_request(body.to_string().as_bytes()).unwrap()
    }

    fn with_input(input: Value) -> Value {
        json!({"model": "m", "input": input})
    }

    fn completion(message: Value, finish: &str, usage: Value) -> ChatResponse {
        serde_json::from_value(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "up-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage
        }))
        .unwrap()
    }

    fn encoded(resp: &ChatResponse, echo: &Echo) -> Value {
        let bytes = encode_response_with(resp, echo, Ids::from_hex("h".into()));
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn whole_answers_become_response_objects() {
        let usage = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2},
            "completion_tokens_details": {"reasoning_tokens": 3}});
        let rows = [
            (
                "text",
                json!({"role": "assistant", "content": "Hello", "annotations": [
                    {"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 5, "url": "https://x", "title": "X"}}]}),
                "stop",
                ("completed", Value::Null),
                json!([{"id": "msg_h01", "type": "message", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hello", "logprobs": [],
                                     "annotations": [{"type": "url_citation", "start_index": 0, "end_index": 5, "url": "https://x", "title": "X"}]}]}]),
            ),
            (
                "tool calls after text, call_id the canonical id",
                json!({"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}]}),
                "tool_calls",
                ("completed", Value::Null),
                json!([
                    {"id": "msg_h01", "type": "message", "status": "completed", "role": "assistant",
                     "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]},
                    {"id": "fc_h02", "type": "function_call", "status": "completed", "call_id": "call_a",
                     "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                    {"id": "fc_h03", "type": "function_call", "status": "completed", "call_id": "call_b",
                     "name": "weather", "arguments": "{\"city\":\"Rome\"}"}
                ]),
            ),
            (
                "length: incomplete, the cut item too",
                json!({"role": "assistant", "content": "Once upon"}),
                "length",
                ("incomplete", json!({"reason": "max_output_tokens"})),
                json!([{"id": "msg_h01", "type": "message", "status": "incomplete", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Once upon", "annotations": [], "logprobs": []}]}]),
            ),
            (
                "content_filter: incomplete",
                json!({"role": "assistant", "content": null}),
                "content_filter",
                ("incomplete", json!({"reason": "content_filter"})),
                json!([{"id": "msg_h01", "type": "message", "status": "incomplete", "role": "assistant",
                        "content": [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}]}]),
            ),
            (
                "refusal part",
                json!({"role": "assistant", "content": null, "refusal": "I can't."}),
                "stop",
                ("completed", Value::Null),
                json!([{"id": "msg_h01", "type": "message", "status": "completed", "role": "assistant",
                        "content": [{"type": "refusal", "refusal": "I can't."}]}]),
            ),
            (
                "reasoning first, signed thinking carried",
                json!({"role": "assistant", "content": "4", "reasoning_content": "2+2",
                       "thinking_blocks": [{"type": "thinking", "thinking": "2+2", "signature": "sig"}]}),
                "stop",
                ("completed", Value::Null),
                json!([
                    {"id": "rs_h01", "type": "reasoning", "status": "completed",
                     "summary": [{"type": "summary_text", "text": "2+2"}],
                     "encrypted_content": "modelway.v1:{\"thinking_blocks\":[{\"signature\":\"sig\",\"thinking\":\"2+2\",\"type\":\"thinking\"}]}"},
                    {"id": "msg_h02", "type": "message", "status": "completed", "role": "assistant",
                     "content": [{"type": "output_text", "text": "4", "annotations": [], "logprobs": []}]}
                ]),
            ),
        ];
        let echo = decode(&with_input(json!("hi"))).echo;
        for (rule, message, finish, (status, incomplete), output) in rows {
            let v = encoded(&completion(message, finish, usage.clone()), &echo);
            assert_eq!(v["output"], output, "{rule}");
            assert_eq!(v["status"], status, "{rule}");
            assert_eq!(v["incomplete_details"], incomplete, "{rule}");
            assert_eq!(v["completed_at"].is_null(), status != "completed", "{rule}");
            assert_eq!(
                v["usage"],
                json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2},
                       "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 15}),
                "{rule}"
            );
            for key in [
                "id",
                "object",
                "created_at",
                "error",
                "model",
                "tools",
                "tool_choice",
                "parallel_tool_calls",
                "metadata",
                "temperature",
                "top_p",
                "instructions",
                "text",
            ] {
                assert!(v.get(key).is_some(), "{rule}: no `{key}` in {v}");
            }
            assert_eq!(
                (&v["id"], &v["object"], &v["model"], &v["created_at"]),
                (
                    &json!("resp_h"),
                    &json!("response"),
                    &json!("up-model"),
                    &json!(1700000000)
                )
            );
            assert!(
                v.get("output_text").is_none(),
                "{rule}: output_text is SDK-only"
            );
        }
        // Missing usage details are zeros; missing usage is null.
        let v = encoded(
            &completion(
                json!({"content": "x"}),
                "stop",
                json!({"prompt_tokens": 1, "completion_tokens": 2}),
            ),
            &echo,
        );
        assert_eq!(
            v["usage"],
            json!({"input_tokens": 1, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 3})
        );
        let mut resp = completion(json!({"content": "x"}), "stop", json!(null));
        resp.usage = None;
        assert_eq!(encoded(&resp, &echo)["usage"], Value::Null);
    }

    #[test]
    fn logprobs_become_output_text_logprobs() {
        let mut resp = completion(json!({"content": "Hi"}), "stop", json!({}));
        resp.choices[0].logprobs = Some(json!({"content": [
            {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.1}]}
        ]}));
        let v = encoded(&resp, &Echo::default());
        assert_eq!(
            v["output"][0]["content"][0]["logprobs"],
            json!([{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": []}]}])
        );
    }

    #[test]
    fn signed_thinking_survives_a_round_trip_through_the_client() {
        let blocks = json!([{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                            {"type": "redacted_thinking", "data": "opaque"}]);
        let resp = completion(
            json!({"content": null, "reasoning_content": "hmm", "thinking_blocks": blocks,
                   "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
            "tool_calls",
            json!({}),
        );
        let output = encoded(&resp, &Echo::default())["output"].clone();
        // The client replays the output items, then the tool's result.
        let mut input = vec![json!({"role": "user", "content": "go"})];
        input.extend(output.as_array().unwrap().iter().cloned());
        input.push(json!({"type": "function_call_output", "call_id": "toolu_1", "output": "done"}));
        let d = decode(&with_input(Value::Array(input)));
        let assistant = serde_json::to_value(&d.request.messages[1]).unwrap();
        assert_eq!(assistant["thinking_blocks"], blocks);
        assert_eq!(assistant["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(d.request.messages.len(), 3);
    }
}
