//! Canonical chunks → the Responses event stream.

use serde::Serialize;
use serde_json::Value;

use super::response::{
    annotations, logprobs, reasoning_text, Ids, Item, Part, ResponseObject, Snapshot, Status,
};
use super::Echo;
use crate::chat::{ChatChunk, FinishReason, ToolCallDelta, Usage};
use crate::error::GatewayError;

/// The members an event may carry besides `type` and `sequence_number`, in the order
/// OpenAI sends them; unset ones are left out.
#[derive(Serialize, Default)]
struct EventBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<ResponseObject<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<&'a [Value]>,
}

#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    #[serde(flatten)]
    body: EventBody<'a>,
}

/// Writes SSE events and numbers them.
#[derive(Debug, Default)]
struct Sink {
    seq: u64,
}

impl Sink {
    fn emit(&mut self, kind: &str, body: EventBody<'_>, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        let event = Event {
            kind,
            sequence_number: self.seq,
            body,
        };
        // Serialising into a `Vec` cannot fail for these values (string keys, no
        // non-finite numbers); if it ever did, no half event is left behind.
        if serde_json::to_writer(&mut *out, &event).is_err() {
            out.truncate(start);
            return;
        }
        out.extend_from_slice(b"\n\n");
        self.seq += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Streaming,
    Ended,
}

/// Encodes canonical chunks, as the engine yields them (see [`crate::stream`]: `role`
/// once, one `finish_reason` per choice, usage in a final `choices: []` chunk), into the
/// Responses event stream: `response.created`, `response.in_progress`, the output items
/// one after another (`output_index` 0, 1, …), then one terminal event
/// (`response.completed`, `response.incomplete` or `response.failed`).
///
/// One item is open at a time, as OpenAI streams them: reasoning text opens a
/// `reasoning` item (summary events), content or a refusal a `message` item (part and
/// text events), each new tool-call index a `function_call` item (argument events); an
/// item closes when one of another kind (or another call) starts or the choice
/// finishes. A fragment arriving for a call already closed (no upstream sends one) is
/// not streamed but kept: the terminal `response` has the whole arguments. Only choice 0
/// is encoded. The items' text is kept until the end, because the terminal event
/// repeats the whole response.
///
/// ```
/// use modelway_core::chat::{ChatChunk, ChunkChoice, Delta};
/// use modelway_core::dialect::responses::{decode_request, StreamEncoder};
///
/// let echo = decode_request(br#"{"model":"m","input":"hi","stream":true}"#).unwrap().echo;
/// let mut enc = StreamEncoder::new(echo);
/// let mut out = Vec::new();
/// let mut chunk = ChatChunk::new("c", 1, "m");
/// let delta = Delta { content: Some("Hello".into()), ..Delta::default() };
/// chunk.choices.push(ChunkChoice::new(0, delta));
/// enc.chunk(&chunk, &mut out);
/// enc.finish(&mut out);
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.starts_with("event: response.created\n"));
/// assert!(text.contains("event: response.output_text.delta\n"));
/// assert!(text.ends_with("\n\n") && text.contains("event: response.completed\n"));
/// ```
#[derive(Debug)]
pub struct StreamEncoder {
    echo: Echo,
    ids: Ids,
    id: String,
    created_at: u64,
    model: String,
    sink: Sink,
    phase: Phase,
    /// Every item so far, with its status (`InProgress` while open).
    items: Vec<(Item, Status)>,
    /// The open item, an index into `items`.
    open: Option<usize>,
    /// Tool-call index → its item.
    calls: Vec<(u32, usize)>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl StreamEncoder {
    /// An encoder for one response, echoing `echo`.
    pub fn new(echo: Echo) -> Self {
        Self::with_ids(echo, Ids::new())
    }

    fn with_ids(echo: Echo, ids: Ids) -> Self {
        Self {
            model: echo.model().to_owned(),
            echo,
            id: ids.response(),
            ids,
            created_at: 0,
            sink: Sink::default(),
            phase: Phase::NotStarted,
            items: Vec::new(),
            open: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    /// The response's id (`resp_…`), the same in every event.
    pub fn response_id(&self) -> &str {
        &self.id
    }

    /// Appends complete SSE events (`event: TYPE\ndata: JSON\n\n`, `sequence_number`
    /// 0, 1, …) for this chunk; the first call also emits `response.created` and
    /// `response.in_progress`. Nothing after [`finish`](Self::finish) or
    /// [`error`](Self::error).
    pub fn chunk(&mut self, chunk: &ChatChunk, out: &mut Vec<u8>) {
        match self.phase {
            Phase::Ended => return,
            Phase::NotStarted => {
                if !chunk.model.is_empty() {
                    self.model = chunk.model.to_string();
                }
                self.created_at = chunk.created;
                self.start(out);
            }
            Phase::Streaming => {}
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(Usage::clone(u));
        }
        for c in chunk.choices.iter().filter(|c| c.index == 0) {
            let d = &c.delta;
            if let Some(text) = reasoning_text(&d.extra) {
                self.reasoning(text, out);
            }
            if let Some(Value::Array(blocks)) = d.extra.get("thinking_blocks") {
                self.thinking(blocks, out);
            }
            if let Some(text) = d.content.as_deref().filter(|t| !t.is_empty()) {
                let lp = logprobs(c.logprobs.as_ref());
                self.text(false, text, lp, out);
            }
            if let Some(text) = d.refusal.as_deref().filter(|t| !t.is_empty()) {
                self.text(true, text, Vec::new(), out);
            }
            let found = annotations(d.extra.get("annotations"));
            if !found.is_empty() {
                self.annotate(found);
            }
            for call in d.tool_calls.iter().flatten() {
                self.tool_fragment(call, out);
            }
            if c.finish_reason.is_some() && self.finish.is_none() {
                self.finish.clone_from(&c.finish_reason);
                let (status, _) = Status::of_finish(self.finish.as_ref());
                self.close(status, out);
            }
        }
    }

    /// Ends a successful stream: closes the open item and sends `response.completed` (or
    /// `response.incomplete` for finish reason `length` / `content_filter`) with the
    /// whole response and its usage.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.phase {
            Phase::Ended => return,
            Phase::NotStarted => self.start(out),
            Phase::Streaming => {}
        }
        let (status, incomplete) = Status::of_finish(self.finish.as_ref());
        self.close(status, out);
        if self.items.is_empty() {
            // An empty answer is still a message: clients read `output[0]`.
            self.text(false, "", Vec::new(), out);
            self.close(status, out);
        }
        let kind = match status {
            Status::Incomplete => "response.incomplete",
            _ => "response.completed",
        };
        self.emit_response(kind, status, incomplete, None, out);
        self.phase = Phase::Ended;
    }

    /// A failure after the stream began: `response.failed`, whose `response` has
    /// `status: "failed"`, `error {code, message, param, type}` (`code`
    /// `rate_limit_exceeded` for a 429, `invalid_prompt` for a 400, else
    /// `server_error`) and the items so far (the open one `incomplete`). It is the
    /// terminal event: the openai SDK's accumulator and the Agents SDK stop there and
    /// raise. If nothing was sent yet, `response.created` and `response.in_progress`
    /// come first, as every client requires.
    pub fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        match self.phase {
            Phase::Ended => return,
            Phase::NotStarted => self.start(out),
            Phase::Streaming => {}
        }
        if let Some(open) = self.open.take() {
            self.items[open].1 = Status::Incomplete;
        }
        self.emit_response("response.failed", Status::Failed, None, Some(err), out);
        self.phase = Phase::Ended;
    }

    /// Emits a lifecycle event (`kind`) carrying the response in this status.
    fn emit_response(
        &mut self,
        kind: &str,
        status: Status,
        incomplete: Option<&'static str>,
        error: Option<&GatewayError>,
        out: &mut Vec<u8>,
    ) {
        let Self {
            sink,
            items,
            usage,
            id,
            created_at,
            model,
            echo,
            ..
        } = self;
        let in_progress = status == Status::InProgress;
        let output = if in_progress {
            Vec::new()
        } else {
            items.iter().map(|(i, s)| i.to_json(*s)).collect()
        };
        let response = Snapshot {
            id,
            created_at: *created_at,
            model,
            status,
            incomplete,
            error,
            output,
            usage: usage.as_ref().filter(|_| !in_progress),
            echo,
        }
        .object();
        sink.emit(
            kind,
            EventBody {
                response: Some(response),
                ..EventBody::default()
            },
            out,
        );
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.created_at == 0 {
            self.created_at = crate::unix_now();
        }
        self.phase = Phase::Streaming;
        for kind in ["response.created", "response.in_progress"] {
            self.emit_response(kind, Status::InProgress, None, None, out);
        }
    }

    /// Adds `item`, opens it and announces it.
    fn open_item(&mut self, item: Item, out: &mut Vec<u8>) -> usize {
        let index = self.items.len();
        self.sink.emit(
            "response.output_item.added",
            EventBody {
                output_index: Some(index),
                item: Some(item.added_json()),
                ..EventBody::default()
            },
            out,
        );
        self.items.push((item, Status::InProgress));
        self.open = Some(index);
        index
    }

    /// The open item if `matches` accepts it; otherwise closes it and opens `make()`.
    fn item_for(
        &mut self,
        matches: fn(&Item) -> bool,
        make: impl FnOnce(&mut Ids) -> Item,
        out: &mut Vec<u8>,
    ) -> usize {
        if let Some(open) = self.open.filter(|i| matches(&self.items[*i].0)) {
            return open;
        }
        self.close(Status::Completed, out);
        let item = make(&mut self.ids);
        self.open_item(item, out)
    }

    fn reasoning(&mut self, delta: &str, out: &mut Vec<u8>) {
        let index = self.item_for(
            |i| matches!(i, Item::Reasoning { .. }),
            |ids| Item::Reasoning {
                id: ids.item("rs"),
                text: String::new(),
                thinking: Vec::new(),
            },
            out,
        );
        let (Item::Reasoning { id, text, .. }, _) = &mut self.items[index] else {
            return;
        };
        if text.is_empty() {
            self.sink.emit(
                "response.reasoning_summary_part.added",
                EventBody {
                    item_id: Some(id),
                    output_index: Some(index),
                    summary_index: Some(0),
                    part: Some(serde_json::json!({"type": "summary_text", "text": ""})),
                    ..EventBody::default()
                },
                out,
            );
        }
        text.push_str(delta);
        self.sink.emit(
            "response.reasoning_summary_text.delta",
            EventBody {
                item_id: Some(id),
                output_index: Some(index),
                summary_index: Some(0),
                delta: Some(delta),
                ..EventBody::default()
            },
            out,
        );
    }

    fn thinking(&mut self, blocks: &[Value], out: &mut Vec<u8>) {
        let blocks: Vec<Value> = blocks.iter().filter(|b| b.is_object()).cloned().collect();
        if blocks.is_empty() {
            return;
        }
        let index = self.item_for(
            |i| matches!(i, Item::Reasoning { .. }),
            |ids| Item::Reasoning {
                id: ids.item("rs"),
                text: String::new(),
                thinking: Vec::new(),
            },
            out,
        );
        if let (Item::Reasoning { thinking, .. }, _) = &mut self.items[index] {
            thinking.extend(blocks);
        }
    }

    /// A piece of output text (or of a refusal, `refusal`) for the open message.
    fn text(&mut self, refusal: bool, delta: &str, lp: Vec<Value>, out: &mut Vec<u8>) {
        let index = self.item_for(
            |i| matches!(i, Item::Message { .. }),
            |ids| Item::Message {
                id: ids.item("msg"),
                parts: Vec::new(),
            },
            out,
        );
        let (Item::Message { id, parts }, _) = &mut self.items[index] else {
            return;
        };
        if parts.last().is_none_or(|p| p.refusal != refusal) {
            if let Some(last) = parts.last() {
                close_part(&mut self.sink, id, index, parts.len() - 1, last, out);
            }
            let part = Part {
                refusal,
                ..Part::default()
            };
            self.sink.emit(
                "response.content_part.added",
                EventBody {
                    item_id: Some(id),
                    output_index: Some(index),
                    content_index: Some(parts.len()),
                    part: Some(part.empty_json()),
                    ..EventBody::default()
                },
                out,
            );
            parts.push(part);
        }
        let content_index = parts.len() - 1;
        let Some(part) = parts.last_mut() else {
            return;
        };
        part.text.push_str(delta);
        if delta.is_empty() {
            return;
        }
        if refusal {
            self.sink.emit(
                "response.refusal.delta",
                EventBody {
                    item_id: Some(id),
                    output_index: Some(index),
                    content_index: Some(content_index),
                    delta: Some(delta),
                    ..EventBody::default()
                },
                out,
            );
        } else {
            self.sink.emit(
                "response.output_text.delta",
                EventBody {
                    item_id: Some(id),
                    output_index: Some(index),
                    content_index: Some(content_index),
                    delta: Some(delta),
                    logprobs: Some(&lp),
                    ..EventBody::default()
                },
                out,
            );
            part.logprobs.extend(lp);
        }
    }

    /// Annotations for the latest output text (they have no events of their own here:
    /// they arrive with the part's `done` and the terminal response).
    fn annotate(&mut self, found: Vec<Value>) {
        let latest = self
            .items
            .iter_mut()
            .rev()
            .find_map(|(item, _)| match item {
                Item::Message { parts, .. } => parts.iter_mut().rev().find(|p| !p.refusal),
                _ => None,
            });
        if let Some(part) = latest {
            part.annotations.extend(found);
        }
    }

    fn tool_fragment(&mut self, call: &ToolCallDelta, out: &mut Vec<u8>) {
        let name = call.function.as_ref().and_then(|f| f.name.as_deref());
        let args = call
            .function
            .as_ref()
            .and_then(|f| f.arguments.as_deref())
            .unwrap_or_default();
        let index = match self.calls.iter().find(|(i, _)| *i == call.index) {
            Some(&(_, index)) => index,
            None => {
                self.close(Status::Completed, out);
                let call_id = match call.id.as_deref().filter(|s| !s.is_empty()) {
                    Some(id) => id.to_owned(),
                    // Clients key a call on its `call_id`: never leave it empty.
                    None => self.ids.item("call"),
                };
                let item = Item::Call {
                    id: self.ids.item("fc"),
                    call_id,
                    name: name.unwrap_or_default().to_owned(),
                    arguments: String::new(),
                };
                let index = self.open_item(item, out);
                self.calls.push((call.index, index));
                index
            }
        };
        let is_open = self.open == Some(index);
        let (
            Item::Call {
                id,
                name: have,
                arguments,
                ..
            },
            _,
        ) = &mut self.items[index]
        else {
            return;
        };
        if let Some(n) = name.filter(|n| !n.is_empty() && have.is_empty()) {
            n.clone_into(have);
        }
        arguments.push_str(args);
        if is_open && !args.is_empty() {
            self.sink.emit(
                "response.function_call_arguments.delta",
                EventBody {
                    item_id: Some(id),
                    output_index: Some(index),
                    delta: Some(args),
                    ..EventBody::default()
                },
                out,
            );
        }
    }

    /// Closes the open item, if any, with this status: its `…done` events, then
    /// `response.output_item.done`.
    fn close(&mut self, status: Status, out: &mut Vec<u8>) {
        let Some(index) = self.open.take() else {
            return;
        };
        let (item, slot) = &mut self.items[index];
        *slot = status;
        let id = item.id();
        match &*item {
            Item::Reasoning { text, .. } if !text.is_empty() => {
                self.sink.emit(
                    "response.reasoning_summary_text.done",
                    EventBody {
                        item_id: Some(id),
                        output_index: Some(index),
                        summary_index: Some(0),
                        text: Some(text),
                        ..EventBody::default()
                    },
                    out,
                );
                self.sink.emit(
                    "response.reasoning_summary_part.done",
                    EventBody {
                        item_id: Some(id),
                        output_index: Some(index),
                        summary_index: Some(0),
                        part: Some(serde_json::json!({"type": "summary_text", "text": text})),
                        ..EventBody::default()
                    },
                    out,
                );
            }
            Item::Reasoning { .. } => {}
            Item::Message { parts, .. } => {
                if let Some(last) = parts.last() {
                    close_part(&mut self.sink, id, index, parts.len() - 1, last, out);
                }
            }
            Item::Call {
                name, arguments, ..
            } => self.sink.emit(
                "response.function_call_arguments.done",
                EventBody {
                    item_id: Some(id),
                    output_index: Some(index),
                    name: Some(name),
                    arguments: Some(arguments),
                    ..EventBody::default()
                },
                out,
            ),
        }
        self.sink.emit(
            "response.output_item.done",
            EventBody {
                output_index: Some(index),
                item: Some(item.to_json(status)),
                ..EventBody::default()
            },
            out,
        );
    }
}

/// A message part's `…done` events: `output_text.done` (or `refusal.done`), then
/// `content_part.done`.
fn close_part(
    sink: &mut Sink,
    item_id: &str,
    output_index: usize,
    content_index: usize,
    part: &Part,
    out: &mut Vec<u8>,
) {
    let at = EventBody {
        item_id: Some(item_id),
        output_index: Some(output_index),
        content_index: Some(content_index),
        ..EventBody::default()
    };
    if part.refusal {
        sink.emit(
            "response.refusal.done",
            EventBody {
                refusal: Some(&part.text),
                ..at
            },
            out,
        );
    } else {
        sink.emit(
            "response.output_text.done",
            EventBody {
                text: Some(&part.text),
                logprobs: Some(&part.logprobs),
                ..at
            },
            out,
        );
    }
    sink.emit(
        "response.content_part.done",
        EventBody {
            item_id: Some(item_id),
            output_index: Some(output_index),
            content_index: Some(content_index),
            part: Some(part.to_json()),
            ..EventBody::default()
        },
        out,
    );
}
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::request::carried_thinking;
    use super::*;
    use crate::dialect::responses::decode_request;
    use crate::sse::SseDecoder;

    fn chunk(delta: Value, finish: Option<&str>) -> ChatChunk {
        serde_json::from_value(json!({
            "id": "c", "created": 1700000000, "model": "up-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        }))
        .unwrap()
    }

    fn usage_chunk() -> ChatChunk {
        serde_json::from_value(json!({
            "id": "c", "created": 1700000000, "model": "up-model", "choices": [],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        }))
        .unwrap()
    }

    fn run(chunks: &[ChatChunk], end: impl FnOnce(&mut StreamEncoder, &mut Vec<u8>)) -> Vec<Value> {
        let body = json!({"model": "m", "input": "hi", "stream": true}).to_string();
        let echo = decode_request(body.as_bytes()).unwrap().echo;
        let mut enc = StreamEncoder::with_ids(echo, Ids::from_hex("h".into()));
        let mut events = Vec::new();
        let mut seen_types = Vec::new();
        for c in chunks {
            let mut out = Vec::new();
            enc.chunk(c, &mut out);
            collect(&out, &mut events, &mut seen_types);
        }
        let mut out = Vec::new();
        end(&mut enc, &mut out);
        collect(&out, &mut events, &mut seen_types);
        // Nothing more after the end.
        let mut after = Vec::new();
        enc.chunk(&chunk(json!({"content": "late"}), None), &mut after);
        enc.finish(&mut after);
        assert!(after.is_empty(), "events after the end");
        check_consistency(&events);
        events
    }

    /// Decodes the SSE bytes of one call: each is complete, and its `event:` is its type.
    fn collect(out: &[u8], events: &mut Vec<Value>, types: &mut Vec<String>) {
        let text = std::str::from_utf8(out).unwrap();
        assert!(
            text.is_empty() || text.ends_with("\n\n"),
            "incomplete event in {text:?}"
        );
        for ev in SseDecoder::decode_all(out) {
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            assert_eq!(ev.event.as_deref(), v["type"].as_str(), "{v}");
            types.push(ev.event.unwrap_or_default());
            events.push(v);
        }
    }

    /// The rules a client's accumulator relies on (openai-python's `ResponseStreamState`
    /// raises on most of them): numbering, the item an event names, the order of
    /// lifecycle events, and a terminal response agreeing with the streamed items.
    fn check_consistency(events: &[Value]) {
        let mut items: Vec<Value> = Vec::new();
        let mut done: Vec<bool> = Vec::new();
        for (n, e) in events.iter().enumerate() {
            assert_eq!(e["sequence_number"], json!(n), "numbering at {e}");
            let kind = e["type"].as_str().unwrap();
            match n {
                0 => assert_eq!(kind, "response.created"),
                1 => assert_eq!(kind, "response.in_progress"),
                _ => {}
            }
            if let Some(r) = e.get("response") {
                assert_eq!(r["id"], "resp_h", "{e}");
                if n < 2 {
                    assert_eq!(
                        (&r["status"], &r["output"], &r["usage"]),
                        (&json!("in_progress"), &json!([]), &Value::Null)
                    );
                }
            }
            let index = e["output_index"].as_u64().map(|i| i as usize);
            match kind {
                "response.output_item.added" => {
                    assert_eq!(index, Some(items.len()), "output indexes in order: {e}");
                    assert!(done.iter().all(|d| *d), "an item was still open at {e}");
                    items.push(e["item"].clone());
                    done.push(false);
                    if e["item"]["type"] == "function_call" {
                        assert_eq!(e["item"]["arguments"], "", "{e}");
                        assert!(!e["item"]["call_id"].as_str().unwrap().is_empty(), "{e}");
                    }
                }
                "response.output_item.done" => {
                    let i = index.unwrap();
                    assert_eq!(e["item"]["id"], items[i]["id"], "{e}");
                    assert!(!done[i], "done twice: {e}");
                    done[i] = true;
                    items[i] = e["item"].clone();
                }
                "response.completed" | "response.incomplete" | "response.failed" => {
                    assert_eq!(n, events.len() - 1, "terminal event not last");
                    let output = e["response"]["output"].as_array().unwrap();
                    assert_eq!(output.len(), items.len(), "{e}");
                    for (i, item) in output.iter().enumerate() {
                        assert_eq!(item["id"], items[i]["id"]);
                        if done[i] {
                            // A fragment for a call already closed reaches only the
                            // terminal response: its arguments may be longer.
                            let mut item = item.clone();
                            if let (Some(full), Some(sent)) =
                                (item["arguments"].as_str(), items[i]["arguments"].as_str())
                            {
                                assert!(full.starts_with(sent), "{full} vs {sent}");
                                item["arguments"] = Value::String(sent.to_owned());
                            }
                            assert_eq!(&item, &items[i], "terminal item differs from its done");
                        } else {
                            assert_eq!(kind, "response.failed", "unfinished item at the end");
                        }
                    }
                }
                "response.created" | "response.in_progress" => assert!(n < 2, "{e}"),
                _ => {
                    let i = index.unwrap_or_else(|| panic!("no output_index in {e}"));
                    assert!(!done[i], "event for a closed item: {e}");
                    assert_eq!(
                        e["item_id"], items[i]["id"],
                        "item_id is the item's id: {e}"
                    );
                    if kind.starts_with("response.function_call_arguments") {
                        assert!(e.get("content_index").is_none(), "{e}");
                    }
                }
            }
        }
    }

    /// A one-line summary of each event after the two lifecycle ones.
    fn trace(events: &[Value]) -> Vec<String> {
        events[2..]
            .iter()
            .map(|e| {
                let kind = e["type"].as_str().unwrap().trim_start_matches("response.");
                let at = match (e["output_index"].as_u64(), e["content_index"].as_u64()) {
                    (Some(o), Some(c)) => format!(" {o}.{c}"),
                    (Some(o), None) => format!(" {o}"),
                    _ => String::new(),
                };
                let what = match kind {
                    "output_item.added" | "output_item.done" => {
                        let item = &e["item"];
                        let extra = match item["type"].as_str() {
                            Some("function_call") => format!(
                                " {} {}",
                                item["call_id"].as_str().unwrap(),
                                item["arguments"]
                            ),
                            _ => String::new(),
                        };
                        format!(
                            " {} {}{extra}",
                            item["type"].as_str().unwrap(),
                            item["status"].as_str().unwrap()
                        )
                    }
                    "content_part.added" | "content_part.done" => format!(" {}", e["part"]),
                    "completed" | "incomplete" | "failed" => {
                        let r = &e["response"];
                        format!(
                            " {} usage={}",
                            r["status"].as_str().unwrap(),
                            r["usage"]["total_tokens"]
                        )
                    }
                    _ => ["delta", "text", "arguments", "refusal"]
                        .iter()
                        .find_map(|k| e.get(*k))
                        .map(|v| format!(" {v}"))
                        .unwrap_or_default(),
                };
                format!("{kind}{at}{what}")
            })
            .collect()
    }

    fn finish_stream(enc: &mut StreamEncoder, out: &mut Vec<u8>) {
        enc.finish(out);
    }

    #[test]
    fn streamed_text_is_one_message_item() {
        let events = run(
            &[
                chunk(json!({"role": "assistant", "content": ""}), None),
                chunk(json!({"content": "Hel"}), None),
                chunk(json!({"content": "lo"}), None),
                chunk(json!({}), Some("stop")),
                usage_chunk(),
            ],
            finish_stream,
        );
        let part = r#"{"annotations":[],"logprobs":[],"text":"","type":"output_text"}"#;
        let full = r#"{"annotations":[],"logprobs":[],"text":"Hello","type":"output_text"}"#;
        assert_eq!(
            trace(&events),
            [
                "output_item.added 0 message in_progress".to_owned(),
                format!("content_part.added 0.0 {part}"),
                "output_text.delta 0.0 \"Hel\"".to_owned(),
                "output_text.delta 0.0 \"lo\"".to_owned(),
                "output_text.done 0.0 \"Hello\"".to_owned(),
                format!("content_part.done 0.0 {full}"),
                "output_item.done 0 message completed".to_owned(),
                "completed completed usage=10".to_owned(),
            ]
        );
        let last = &events[events.len() - 1]["response"];
        assert_eq!(last["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(last["model"], "up-model");
        assert_eq!(last["usage"]["input_tokens"], 7);
        assert!(last["completed_at"].is_u64());
    }

    #[test]
    fn parallel_tool_calls_in_fragments_are_items_one_after_another() {
        let events = run(
            &[
                chunk(
                    json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}]}),
                    None,
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                    None,
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
                    None,
                ),
                chunk(
                    json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "weather", "arguments": "{\"city\""}}]}),
                    None,
                ),
                chunk(
                    json!({"tool_calls": [{"index": 1, "function": {"arguments": ":\"Rome\"}"}}]}),
                    None,
                ),
                chunk(json!({}), Some("tool_calls")),
                usage_chunk(),
            ],
            finish_stream,
        );
        assert_eq!(
            trace(&events),
            [
                r#"output_item.added 0 function_call in_progress call_a """#,
                r#"function_call_arguments.delta 0 "{\"city\":""#,
                r#"function_call_arguments.delta 0 "\"Paris\"}""#,
                r#"function_call_arguments.done 0 "{\"city\":\"Paris\"}""#,
                r#"output_item.done 0 function_call completed call_a "{\"city\":\"Paris\"}""#,
                r#"output_item.added 1 function_call in_progress call_b """#,
                r#"function_call_arguments.delta 1 "{\"city\"""#,
                r#"function_call_arguments.delta 1 ":\"Rome\"}""#,
                r#"function_call_arguments.done 1 "{\"city\":\"Rome\"}""#,
                r#"output_item.done 1 function_call completed call_b "{\"city\":\"Rome\"}""#,
                "completed completed usage=10",
            ]
        );
        let done = &events[5];
        assert_eq!(
            (&done["name"], &done["item_id"]),
            (&json!("weather"), &json!("fc_h01"))
        );
    }

    #[test]
    fn text_then_a_tool_call_closes_the_message_first() {
        let events = run(
            &[
                chunk(
                    json!({"role": "assistant", "content": "Let me check."}),
                    None,
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
                    None,
                ),
                chunk(json!({}), Some("tool_calls")),
            ],
            finish_stream,
        );
        let t = trace(&events);
        let kinds: Vec<&str> = t.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "output_item.added",
                "content_part.added",
                "output_text.delta",
                "output_text.done",
                "content_part.done",
                "output_item.done",
                "output_item.added",
                "function_call_arguments.delta",
                "function_call_arguments.done",
                "output_item.done",
                "completed",
            ]
        );
        // No usage chunk: the client did not get one from upstream either.
        assert_eq!(t[t.len() - 1], "completed completed usage=null");
        assert_eq!(events[events.len() - 1]["response"]["usage"], Value::Null);
    }

    #[test]
    fn usage_after_the_finish_reaches_the_terminal_event() {
        // Items close at the finish reason; the usage chunk after it lands in the
        // terminal response (and a usage on a content chunk is kept too).
        let mut with_usage = chunk(json!({"content": "x"}), None);
        with_usage.usage = usage_chunk().usage;
        let events = run(&[with_usage, chunk(json!({}), Some("stop"))], finish_stream);
        assert_eq!(
            events[events.len() - 1]["response"]["usage"]["total_tokens"],
            10
        );
        let events = run(
            &[chunk(json!({"content": "x"}), Some("stop")), usage_chunk()],
            finish_stream,
        );
        let t = trace(&events);
        assert_eq!(t[t.len() - 2], "output_item.done 0 message completed");
        assert_eq!(t[t.len() - 1], "completed completed usage=10");
    }

    #[test]
    fn length_ends_incomplete() {
        let events = run(
            &[
                chunk(json!({"content": "Once"}), Some("length")),
                usage_chunk(),
            ],
            finish_stream,
        );
        let t = trace(&events);
        assert_eq!(t[t.len() - 2], "output_item.done 0 message incomplete");
        assert_eq!(t[t.len() - 1], "incomplete incomplete usage=10");
        let r = &events[events.len() - 1]["response"];
        assert_eq!(
            r["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(r["completed_at"], Value::Null);
    }

    #[test]
    fn reasoning_streams_as_a_summary_before_the_message() {
        let events = run(
            &[
                chunk(
                    json!({"role": "assistant", "reasoning_content": "Let me"}),
                    None,
                ),
                chunk(json!({"reasoning_content": " think"}), None),
                chunk(
                    json!({"thinking_blocks": [{"index": 0, "type": "thinking", "thinking": "Let me think", "signature": "sig"}]}),
                    None,
                ),
                chunk(json!({"content": "42"}), None),
                chunk(json!({}), Some("stop")),
            ],
            finish_stream,
        );
        let t = trace(&events);
        assert_eq!(
            t[..6],
            [
                "output_item.added 0 reasoning in_progress",
                "reasoning_summary_part.added 0",
                "reasoning_summary_text.delta 0 \"Let me\"",
                "reasoning_summary_text.delta 0 \" think\"",
                "reasoning_summary_text.done 0 \"Let me think\"",
                "reasoning_summary_part.done 0",
            ]
        );
        assert_eq!(t[6], "output_item.done 0 reasoning completed");
        assert_eq!(t[7], "output_item.added 1 message in_progress");
        let item = &events[8]["item"];
        assert_eq!(
            item["summary"],
            json!([{"type": "summary_text", "text": "Let me think"}])
        );
        let carried = item["encrypted_content"].as_str().unwrap();
        assert_eq!(
            carried_thinking(carried),
            [
                json!({"index": 0, "type": "thinking", "thinking": "Let me think", "signature": "sig"})
            ]
        );
        assert_eq!(events[3]["summary_index"], 0);
    }

    #[test]
    fn a_refusal_streams_as_a_refusal_part() {
        let events = run(
            &[
                chunk(json!({"refusal": "I can't"}), None),
                chunk(json!({"refusal": " help."}), Some("stop")),
            ],
            finish_stream,
        );
        let t = trace(&events);
        assert_eq!(
            t[..6],
            [
                "output_item.added 0 message in_progress",
                r#"content_part.added 0.0 {"refusal":"","type":"refusal"}"#,
                r#"refusal.delta 0.0 "I can't""#,
                r#"refusal.delta 0.0 " help.""#,
                r#"refusal.done 0.0 "I can't help.""#,
                r#"content_part.done 0.0 {"refusal":"I can't help.","type":"refusal"}"#,
            ]
        );
    }

    #[test]
    fn an_empty_stream_still_answers_one_empty_message() {
        let events = run(&[], finish_stream);
        let t = trace(&events);
        assert_eq!(t[0], "output_item.added 0 message in_progress");
        assert_eq!(t[t.len() - 1], "completed completed usage=null");
        assert_eq!(
            events[events.len() - 1]["response"]["output"][0]["content"][0]["text"],
            ""
        );
    }

    #[test]
    fn a_failure_mid_stream_is_response_failed_with_the_items_so_far() {
        let err = GatewayError::rate_limited("slow down");
        let events = run(&[chunk(json!({"content": "Hel"}), None)], |enc, out| {
            enc.error(&err, out)
        });
        let t = trace(&events);
        assert_eq!(t[t.len() - 1], "failed failed usage=null");
        let r = &events[events.len() - 1]["response"];
        assert_eq!(
            r["error"],
            json!({"code": "rate_limit_exceeded", "message": "slow down", "param": null, "type": "rate_limit_error"})
        );
        assert_eq!(r["output"][0]["status"], "incomplete");
        assert_eq!(r["output"][0]["content"][0]["text"], "Hel");
        // Before any chunk: created and in_progress first, as clients require.
        let events = run(&[], |enc, out| {
            enc.error(&GatewayError::upstream("down"), out)
        });
        assert_eq!(events.len(), 3);
        assert_eq!(events[2]["response"]["error"]["code"], "server_error");
    }

    #[test]
    fn odd_upstream_chunks_keep_the_stream_consistent() {
        // A call without id (given one), a name arriving late, a fragment for a call
        // already closed (kept for the terminal response), other choices ignored, text
        // after the calls, annotations.
        let mut other_choice = chunk(json!({"content": "choice 1"}), None);
        other_choice.choices[0].index = 1;
        let events = run(
            &[
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\""}}]}),
                    None,
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": ":1"}}]}),
                    None,
                ),
                chunk(
                    json!({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}}]}),
                    None,
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
                    None,
                ),
                other_choice,
                chunk(
                    json!({"content": "done", "annotations": [{"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 4, "url": "u", "title": "t"}}]}),
                    None,
                ),
                chunk(json!({}), Some("stop")),
            ],
            finish_stream,
        );
        let r = &events[events.len() - 1]["response"];
        let output = r["output"].as_array().unwrap();
        assert_eq!(output.len(), 3);
        assert!(output[0]["call_id"].as_str().unwrap().starts_with("call_h"));
        assert_eq!(
            (&output[0]["name"], &output[0]["arguments"]),
            (&json!("f"), &json!("{\"a\":1}"))
        );
        assert_eq!(output[1]["call_id"], "call_b");
        assert_eq!(output[2]["content"][0]["text"], "done");
        assert_eq!(output[2]["content"][0]["annotations"][0]["url"], "u");
        assert!(!events.iter().any(|e| e["delta"] == "choice 1"));
    }

    #[test]
    fn recorded_openai_streams_encode_to_what_a_chat_client_accumulates() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/openai/sdk-recordings"
        );
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("sse") {
                continue;
            }
            let name = path.display().to_string();
            let body = std::fs::read(&path).expect("read");
            let chunks: Vec<ChatChunk> = SseDecoder::decode_all(&body)
                .into_iter()
                .filter(|e| e.data != "[DONE]")
                .map(|e| serde_json::from_str(&e.data).expect("a chunk"))
                .collect();
            // What a chat client accumulates from choice 0.
            let (mut text, mut refusal, mut logprobs) = (String::new(), String::new(), 0);
            let mut calls: Vec<(String, String)> = Vec::new();
            let mut finish = None;
            for c in chunks
                .iter()
                .flat_map(|c| &c.choices)
                .filter(|c| c.index == 0)
            {
                text += c.delta.content.as_deref().unwrap_or_default();
                refusal += c.delta.refusal.as_deref().unwrap_or_default();
                logprobs += c
                    .logprobs
                    .as_ref()
                    .and_then(|l| l["content"].as_array())
                    .map_or(0, Vec::len);
                for t in c.delta.tool_calls.iter().flatten() {
                    let f = t.function.clone().unwrap_or_default();
                    if let Some(id) = &t.id {
                        calls.push((id.clone(), String::new()));
                    }
                    calls[t.index as usize].1 += f.arguments.as_deref().unwrap_or_default();
                }
                finish = finish.or(c.finish_reason.clone());
            }
            let events = run(&chunks, finish_stream);
            let r = &events[events.len() - 1]["response"];
            let output = r["output"].as_array().unwrap();
            let message = output.iter().find(|o| o["type"] == "message");
            let part = |kind: &str| {
                message
                    .and_then(|m| m["content"].as_array())
                    .and_then(|p| p.iter().find(|p| p["type"] == kind))
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            if !text.is_empty() || calls.is_empty() && refusal.is_empty() {
                assert_eq!(part("output_text")["text"], json!(text), "{name}");
                let lp = part("output_text")["logprobs"]
                    .as_array()
                    .map_or(0, Vec::len);
                assert_eq!(lp, logprobs, "{name}");
            }
            if !refusal.is_empty() {
                assert_eq!(part("refusal")["refusal"], json!(refusal), "{name}");
            }
            let got: Vec<(String, String)> = output
                .iter()
                .filter(|o| o["type"] == "function_call")
                .map(|o| {
                    let s = |k: &str| o[k].as_str().unwrap().to_owned();
                    (s("call_id"), s("arguments"))
                })
                .collect();
            assert_eq!(got, calls, "{name}");
            let want = if finish == Some(FinishReason::Length) {
                "incomplete"
            } else {
                "completed"
            };
            assert_eq!(r["status"], want, "{name}");
            seen += 1;
        }
        assert!(seen >= 12, "only {seen} recordings");
    }
}
