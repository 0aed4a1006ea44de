//! The mock's default OpenAI Responses answers (`POST /v1/responses`), used when no
//! scripted reply is queued: the chat route's echo model in the Responses shapes of the
//! spec (`Response`, `ResponseStreamEvent` members, WIRE.md §9.2).
//!
//! - Body: a JSON object with `model`, and `input` unless `previous_response_id` or a
//!   stored `prompt` stands in for it; else OpenAI's 400s.
//! - Answer: with function tools offered (`tool_choice` not `none`) and a last input item
//!   that is a user message (a string `input` is one), a `function_call` of the forced
//!   tool (else the first) whose arguments fill `city` with `"Paris"` (`{}` otherwise);
//!   else a message `Echo: <last user text>` (after a `function_call_output` too). An
//!   answer longer than `max_output_tokens` words is cut there, `status: "incomplete"`.
//! - The `response` repeats the request (`previous_response_id`, `store` — default
//!   true —, `instructions`, `tools`, `tool_choice`, `text`, `metadata`, …) and counts
//!   words as tokens. Nothing is stored: a `previous_response_id` is echoed, not read.
//! - `stream: true`: `response.created`, `response.in_progress`, the item's events
//!   (message: item added, part added, one text delta per word, text done, part done,
//!   item done; call: item added, argument deltas, arguments done, item done), then
//!   `response.completed` or `response.incomplete`; `event:` lines, `sequence_number`
//!   0, 1, …, and no `[DONE]`.

use serde_json::{json, Map, Value};

use crate::openai::{arguments_pieces, bad_request, content_pieces, next_suffix, words};
use crate::script::{Reply, SseStep, StreamEnd};

/// What the echo model answers.
enum Answer {
    Text { text: String, cut: bool },
    Call { name: String, arguments: String },
}

/// The default answer to `POST /v1/responses`.
pub(crate) fn create(body: &[u8]) -> Reply {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
            None,
        );
    };
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return bad_request("Missing required parameter: 'model'.", Some("model"));
    };
    let stands_in = req.contains_key("previous_response_id") || req.contains_key("prompt");
    let items = match req.get("input") {
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(Value::Array(items)) => items.clone(),
        None if stands_in => Vec::new(),
        Some(_) => {
            return bad_request(
                "Invalid type for 'input': expected a string or an array of input items.",
                Some("input"),
            )
        }
        None => return bad_request("Missing required parameter: 'input'.", Some("input")),
    };

    let answer = answer(&req, &items);
    let instructions = req.get("instructions").and_then(Value::as_str);
    let input_tokens =
        items.iter().map(|i| words(&text_of(i))).sum::<u64>() + instructions.map_or(0, words);
    let output_tokens = match &answer {
        Answer::Text { text, .. } => words(text),
        Answer::Call { name, arguments } => {
            1 + words(name) + arguments_pieces(arguments).len() as u64
        }
    };
    let usage = json!({
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    });
    let r = Resp {
        id: format!("resp_mock{}", next_suffix()),
        item_id: match &answer {
            Answer::Text { .. } => format!("msg_mock{}", next_suffix()),
            Answer::Call { .. } => format!("fc_mock{}", next_suffix()),
        },
        call_id: format!("call_mock{}", next_suffix()),
        created_at: modelway_core::unix_now(),
        model: model.to_owned(),
        req: &req,
    };
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        stream(&r, &answer, usage)
    } else {
        Reply::Json {
            status: 200,
            body: r.object(status(&answer), vec![r.item(&answer, true)], Some(usage)),
            headers: Vec::new(),
        }
    }
}

fn status(answer: &Answer) -> &'static str {
    match answer {
        Answer::Text { cut: true, .. } => "incomplete",
        _ => "completed",
    }
}

fn answer(req: &Map<String, Value>, items: &[Value]) -> Answer {
    let tools: Vec<&Value> = req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
        .collect();
    let choice = req.get("tool_choice");
    let last_is_user = items.last().is_some_and(is_user_message);
    if let (Some(first), true, true) = (tools.first(), choice != Some(&json!("none")), last_is_user)
    {
        let forced = choice
            .filter(|c| c.get("type").and_then(Value::as_str) == Some("function"))
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str);
        let tool = forced
            .and_then(|f| {
                tools
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(f))
            })
            .unwrap_or(first);
        let name = tool.get("name").and_then(Value::as_str).unwrap_or("tool");
        let has_city = tool.pointer("/parameters/properties/city").is_some();
        return Answer::Call {
            name: name.to_owned(),
            arguments: if has_city {
                r#"{"city":"Paris"}"#
            } else {
                "{}"
            }
            .to_owned(),
        };
    }
    let last_user = items
        .iter()
        .rev()
        .find(|i| is_user_message(i))
        .map(text_of)
        .unwrap_or_default();
    let text = format!("Echo: {last_user}");
    let limit = req.get("max_output_tokens").and_then(Value::as_u64);
    match limit {
        Some(n) if words(&text) > n => {
            let cut: Vec<&str> = text.split_whitespace().take(n as usize).collect();
            Answer::Text {
                text: cut.join(" "),
                cut: true,
            }
        }
        _ => Answer::Text { text, cut: false },
    }
}

/// A message item of role `user` (`type` absent or `message`).
fn is_user_message(item: &Value) -> bool {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    kind == "message" && item.get("role").and_then(Value::as_str) == Some("user")
}

/// An input item's text: string content, or its `input_text` parts joined with a space;
/// a function call's output.
fn text_of(item: &Value) -> String {
    let content = item.get("content").or_else(|| item.get("output"));
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| {
                matches!(
                    p.get("type").and_then(Value::as_str),
                    Some("input_text" | "output_text")
                )
            })
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// One response's identifiers and the request it repeats.
struct Resp<'a> {
    id: String,
    item_id: String,
    call_id: String,
    created_at: u64,
    model: String,
    req: &'a Map<String, Value>,
}

impl Resp<'_> {
    /// The `response` object in `status`, with these items and usage.
    fn object(&self, status: &str, output: Vec<Value>, usage: Option<Value>) -> Value {
        let req = |k: &str| self.req.get(k).cloned().unwrap_or(Value::Null);
        let or = |k: &str, d: Value| self.req.get(k).cloned().unwrap_or(d);
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": or("background", json!(false)),
            "completed_at": if status == "completed" { json!(self.created_at) } else { Value::Null },
            "error": null,
            "incomplete_details": if status == "incomplete" {
                json!({"reason": "max_output_tokens"})
            } else {
                Value::Null
            },
            "instructions": req("instructions"),
            "max_output_tokens": req("max_output_tokens"),
            "max_tool_calls": req("max_tool_calls"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": or("parallel_tool_calls", json!(true)),
            "previous_response_id": req("previous_response_id"),
            "prompt_cache_key": req("prompt_cache_key"),
            "reasoning": or("reasoning", json!({"effort": null, "summary": null})),
            "safety_identifier": req("safety_identifier"),
            "service_tier": "default",
            "store": or("store", json!(true)),
            "temperature": or("temperature", json!(1.0)),
            "text": or("text", json!({"format": {"type": "text"}, "verbosity": "medium"})),
            "tool_choice": or("tool_choice", json!("auto")),
            "tools": or("tools", json!([])),
            "top_logprobs": or("top_logprobs", json!(0)),
            "top_p": or("top_p", json!(1.0)),
            "truncation": or("truncation", json!("disabled")),
            "usage": usage,
            "user": req("user"),
            "metadata": or("metadata", json!({})),
        })
    }

    /// The answer's output item, finished (`done`) or as first added.
    fn item(&self, answer: &Answer, done: bool) -> Value {
        match answer {
            Answer::Text { text, cut } => {
                let status = match (done, cut) {
                    (false, _) => "in_progress",
                    (true, true) => "incomplete",
                    (true, false) => "completed",
                };
                let content = if done {
                    vec![text_part(text)]
                } else {
                    Vec::new()
                };
                json!({"id": self.item_id, "type": "message", "status": status,
                       "content": content, "role": "assistant"})
            }
            Answer::Call { name, arguments } => json!({
                "id": self.item_id, "type": "function_call",
                "status": if done { "completed" } else { "in_progress" },
                "arguments": if done { arguments.as_str() } else { "" },
                "call_id": self.call_id, "name": name,
            }),
        }
    }
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text})
}

/// Numbers and frames events: `event: <type>\ndata: <json>\n\n`.
#[derive(Default)]
struct Events {
    steps: Vec<SseStep>,
    seq: u64,
}

impl Events {
    fn push(&mut self, kind: &str, mut body: Value) {
        if let Value::Object(o) = &mut body {
            let mut ev = Map::new();
            ev.insert("type".into(), json!(kind));
            ev.insert("sequence_number".into(), json!(self.seq));
            ev.append(o);
            body = Value::Object(ev);
        }
        self.seq += 1;
        self.steps
            .push(SseStep::raw(&format!("event: {kind}\ndata: {body}\n\n")));
    }
}

fn stream(r: &Resp<'_>, answer: &Answer, usage: Value) -> Reply {
    let mut ev = Events::default();
    let started = r.object("in_progress", Vec::new(), None);
    ev.push("response.created", json!({"response": started}));
    ev.push("response.in_progress", json!({"response": started}));
    ev.push(
        "response.output_item.added",
        json!({"output_index": 0, "item": r.item(answer, false)}),
    );
    let at = json!({"item_id": r.item_id, "output_index": 0});
    let with = |extra: Value| {
        let mut v = at.clone();
        if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
            o.extend(e);
        }
        v
    };
    match answer {
        Answer::Text { text, .. } => {
            let part = text_part("");
            ev.push(
                "response.content_part.added",
                with(json!({"content_index": 0, "part": part})),
            );
            for piece in content_pieces(text) {
                ev.push(
                    "response.output_text.delta",
                    with(json!({"content_index": 0, "delta": piece, "logprobs": []})),
                );
            }
            ev.push(
                "response.output_text.done",
                with(json!({"content_index": 0, "text": text, "logprobs": []})),
            );
            ev.push(
                "response.content_part.done",
                with(json!({"content_index": 0, "part": text_part(text)})),
            );
        }
        Answer::Call { name, arguments } => {
            for piece in arguments_pieces(arguments) {
                ev.push(
                    "response.function_call_arguments.delta",
                    with(json!({"delta": piece})),
                );
            }
            ev.push(
                "response.function_call_arguments.done",
                with(json!({"name": name, "arguments": arguments})),
            );
        }
    }
    let done = r.item(answer, true);
    ev.push(
        "response.output_item.done",
        json!({"output_index": 0, "item": done}),
    );
    let status = status(answer);
    let kind = if status == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    ev.push(
        kind,
        json!({"response": r.object(status, vec![done], Some(usage))}),
    );
    Reply::Sse {
        events: ev.steps,
        end: StreamEnd::Close,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn json_of(req: Value) -> Value {
        match create(req.to_string().as_bytes()) {
            Reply::Json {
                status: 200, body, ..
            } => body,
            other => panic!("not a 200 JSON answer: {other:?}"),
        }
    }

    /// The `data` of each event, checking the `event:` line names its `type`.
    fn events_of(req: Value) -> Vec<Value> {
        let Reply::Sse { events, end } = create(req.to_string().as_bytes()) else {
            panic!("not a stream")
        };
        assert_eq!(end, StreamEnd::Close, "no [DONE] after a Responses stream");
        events
            .iter()
            .map(|s| {
                let text = std::str::from_utf8(&s.data).unwrap();
                let (head, data) = text.split_once('\n').unwrap();
                let data = data.strip_prefix("data: ").unwrap().trim_end();
                let v: Value = serde_json::from_str(data).unwrap();
                assert_eq!(head, format!("event: {}", v["type"].as_str().unwrap()));
                v
            })
            .collect()
    }

    fn weather() -> Value {
        json!([{"type": "function", "name": "get_weather", "strict": true,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    }

    #[test]
    fn answers_echo_call_and_repeat_the_request() {
        let r = json_of(
            json!({"model": "m", "input": "hello there", "previous_response_id": "resp_0", "store": false}),
        );
        assert_eq!(r["output"][0]["content"][0]["text"], "Echo: hello there");
        assert_eq!(
            (
                &r["status"],
                &r["previous_response_id"],
                &r["store"],
                &r["usage"]["output_tokens"]
            ),
            (
                &json!("completed"),
                &json!("resp_0"),
                &json!(false),
                &json!(3)
            )
        );
        let r = json_of(json!({"model": "m", "input": "weather?", "tools": weather()}));
        let call = &r["output"][0];
        assert_eq!(
            (&call["type"], &call["name"], &call["arguments"]),
            (
                &json!("function_call"),
                &json!("get_weather"),
                &json!(r#"{"city":"Paris"}"#)
            )
        );
        assert!(call["call_id"].as_str().unwrap().starts_with("call_mock"));
        // After the call's output: a message, not another call.
        let r = json_of(json!({"model": "m", "tools": weather(), "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "function_call", "call_id": "c", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "sunny"}]}));
        assert_eq!(r["output"][0]["content"][0]["text"], "Echo: weather?");
        let r = json_of(json!({"model": "m", "input": "a b c d", "max_output_tokens": 2}));
        assert_eq!(
            (
                &r["status"],
                &r["incomplete_details"]["reason"],
                &r["output"][0]["content"][0]["text"]
            ),
            (
                &json!("incomplete"),
                &json!("max_output_tokens"),
                &json!("Echo: a")
            )
        );
    }

    #[test]
    fn streams_have_the_full_event_sequence() {
        let evs = events_of(json!({"model": "m", "input": "hi you", "stream": true}));
        let kinds: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(e["sequence_number"], i as u64, "{e}");
        }
        let text: String = evs
            .iter()
            .filter_map(|e| e.get("delta").and_then(Value::as_str))
            .collect();
        assert_eq!(text, "Echo: hi you");
        let evs =
            events_of(json!({"model": "m", "input": "w", "stream": true, "tools": weather()}));
        let added = &evs[2]["item"];
        assert_eq!(added["arguments"], "");
        assert!(added["call_id"].as_str().unwrap().starts_with("call_mock"));
        let args: String = evs
            .iter()
            .filter(|e| e["type"] == "response.function_call_arguments.delta")
            .filter_map(|e| e["delta"].as_str())
            .collect();
        assert_eq!(args, r#"{"city":"Paris"}"#);
        assert_eq!(
            evs.last().unwrap()["response"]["output"][0]["arguments"],
            args
        );
    }

    #[test]
    fn bad_requests_are_400() {
        for body in [
            &b"{nope"[..],
            br#"{"input":"hi"}"#,
            br#"{"model":"m"}"#,
            br#"{"model":"m","input":5}"#,
        ] {
            let Reply::Json {
                status, body: b, ..
            } = create(body)
            else {
                panic!("not json")
            };
            assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
            assert_eq!(b["error"]["type"], "invalid_request_error");
        }
        // A previous response stands in for the input.
        let r = json_of(json!({"model": "m", "previous_response_id": "resp_0"}));
        assert_eq!(r["output"][0]["content"][0]["text"], "Echo: ");
    }
}
