//! The Anthropic SSE stream → canonical chunks, one event at a time (WIRE.md §2.4,
//! §4.5).
//!
//! | upstream event | emitted |
//! |---|---|
//! | `message_start` | nothing yet; id, model and input usage kept |
//! | the first `content_block_start` (or `message_delta`, for an empty answer) | its chunk carries the role, with `content` as OpenAI sends it for a turn that opens this way: `""` before text (and JSON-mode content), `null` before tool calls or thinking |
//! | `content_block_start` `tool_use` | first fragment: `index` = ordinal of the call among tool calls (not the block index), `id`, `type`, `name`, `arguments: ""` |
//! | `text_delta` | `content` |
//! | `input_json_delta` | `{index, function: {arguments}}` (empty pieces skipped) |
//! | `content_block_stop` of a tool that streamed nothing | `arguments: "{}"` |
//! | JSON mode: the [`JSON_TOOL`] block | its `input_json_delta`s as `content` (`"{}"` if it streamed nothing), no tool call; `stop_reason: tool_use` then finishes `stop` |
//! | `thinking_delta` | `reasoning_content` |
//! | `content_block_stop` of a thinking block, `redacted_thinking` start | `thinking_blocks: [{index, type, thinking, signature}]` / `[{index, type, data}]` (to replay) |
//! | `message_delta` | the finish chunk, carrying the combined usage |
//! | `message_stop` | end |
//! | `error` | a [`ProviderError::InBand`] named by the error's type (the client gets an error event) |
//! | `ping`, unknown events, blocks and deltas | nothing |
//! | end of body before `message_stop`, or silence longer than the timeout | [`ProviderError::StreamCut`] |

use std::borrow::Cow;
use std::time::Duration;

use futures_util::StreamExt;
use modelway_core::chat::{
    ChatChunk, ChunkChoice, Delta, Extra, FinishReason, FunctionCallDelta, Role, ToolCallDelta,
};
use modelway_core::kit::UpstreamBody;
use modelway_core::sse::SseEvent;
use modelway_core::stream::idle_timeout;
use modelway_core::ByteString;
use modelway_core::{unix_now, ChunkStream, ProviderError};
use serde::Deserialize;
use serde_json::Value;

use crate::error;
use crate::request::JSON_TOOL;
use crate::response::{
    compact_json, finish_reason, snippet, thinking_block, AnthropicUsage, Block,
};

/// How a stream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Translated for an OpenAI client; `json_mode`: the request went through
    /// [`JSON_TOOL`], whose input is the answer's content.
    Translated { json_mode: bool },
    /// A Messages client's passthrough: each chunk also carries the upstream events it
    /// was read from (and the contentless ones before it), byte for byte.
    Native,
}

/// How long the rest of a finished stream's body may take to arrive.
const DRAIN: Duration = Duration::from_secs(5);

/// Translates a 2xx event stream; `idle` bounds each wait for the next event.
pub(crate) fn chunks(body: UpstreamBody, idle: Duration, reading: Reading) -> ChunkStream {
    Box::pin(run(body.sse_events(), idle, reading))
}

/// Gives `chunk` the events gathered so far.
fn with_native(mut chunk: ChatChunk, pending: &mut Vec<u8>) -> ChatChunk {
    if !pending.is_empty() {
        chunk.native = Some(bytes::Bytes::from(std::mem::take(pending)));
    }
    chunk
}

/// Drives [`Translator`] over decoded events, bounding each wait by `idle`.
pub(crate) fn run(
    events: impl futures_util::Stream<Item = Result<SseEvent, ProviderError>> + Send + 'static,
    idle: Duration,
    reading: Reading,
) -> impl futures_util::Stream<Item = Result<ChatChunk, ProviderError>> + Send + 'static {
    // One timer bounds every wait for the next event (not one per event).
    let events: Events = Box::pin(idle_timeout(events, idle).map(|item| {
        item.unwrap_or_else(|idle| {
            Err(ProviderError::StreamCut(format!(
                "no data from upstream for {idle:?}"
            )))
        })
    }));
    Run {
        t: Translator::new(reading == (Reading::Translated { json_mode: true })),
        events: Some(events),
        pending: Vec::new(),
        native: reading == Reading::Native,
    }
}

/// The translated stream, polled by hand: an `unfold` would move the translator and
/// its buffers through a new future for every event.
struct Run {
    t: Translator,
    /// `None` once the stream has ended.
    events: Option<Events>,
    /// The passthrough events not yet handed on with a chunk.
    pending: Vec<u8>,
    native: bool,
}

impl futures_util::Stream for Run {
    type Item = Result<ChatChunk, ProviderError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let st = self.get_mut();
        loop {
            let Some(events) = st.events.as_mut() else {
                return Poll::Ready(None);
            };
            let ev = match events.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    st.events = None;
                    let msg = "stream ended before message_stop".to_owned();
                    return Poll::Ready(Some(Err(ProviderError::StreamCut(msg))));
                }
                Poll::Ready(Some(Err(e))) => {
                    st.events = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(ev))) => ev,
            };
            let step = st.t.on_event(&ev.data);
            if st.native {
                ev.write_to(&mut st.pending);
            }
            match step {
                Err(e) => {
                    st.events = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(Step::Skip) => continue,
                Ok(Step::Emit(chunk)) => {
                    return Poll::Ready(Some(Ok(with_native(chunk, &mut st.pending))));
                }
                Ok(Step::End(last)) => {
                    // Read on to the end of the body so the connection goes back to
                    // the pool instead of being closed.
                    if let Some(mut events) = st.events.take() {
                        tokio::spawn(async move {
                            let drain = async { while events.next().await.is_some() {} };
                            let _ = tokio::time::timeout(DRAIN, drain).await;
                        });
                    }
                    // A passthrough stream's last events (`message_stop`) go on a
                    // chunk of their own when no chunk carries them.
                    let last = match last {
                        Some(c) => Some(with_native(c, &mut st.pending)),
                        None if !st.pending.is_empty() => Some(with_native(
                            ChatChunk::new(st.t.id.clone(), st.t.created, st.t.model.clone()),
                            &mut st.pending,
                        )),
                        None => None,
                    };
                    return Poll::Ready(last.map(Ok));
                }
            }
        }
    }
}

type Events =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<SseEvent, ProviderError>> + Send>>;

/// What one upstream event turns into.
#[derive(Debug)]
pub(crate) enum Step {
    Skip,
    Emit(ChatChunk),
    /// `message_stop`: the stream is complete, after this last chunk if any.
    End(Option<ChatChunk>),
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default, borrow)]
    message: Option<StartMessage<'a>>,
    #[serde(default, borrow)]
    content_block: Option<Block<'a>>,
    #[serde(default, borrow)]
    delta: Option<EventDelta<'a>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct StartMessage<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct EventDelta<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    signature: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

/// Only the `type`, to tell an unknown event from a broken known one.
#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Debug)]
enum BlockState {
    Text,
    Tool {
        ordinal: u32,
        streamed: bool,
    },
    /// The [`JSON_TOOL`] block of a JSON-mode answer: its input streams as content.
    Json {
        streamed: bool,
    },
    Thinking {
        ordinal: usize,
        text: String,
        signature: String,
    },
    Other,
}

/// The stream's state between events.
#[derive(Debug, Default)]
pub(crate) struct Translator {
    id: ByteString,
    model: ByteString,
    created: u64,
    usage: AnthropicUsage,
    /// (Anthropic block index, state), in arrival order; few per message.
    blocks: Vec<(usize, BlockState)>,
    tool_calls: u32,
    thinking_blocks: usize,
    finished: bool,
    /// The request went through [`JSON_TOOL`].
    json_mode: bool,
    /// The [`JSON_TOOL`] block was seen: the answer is its input.
    answered_json: bool,
    /// The role chunk was sent.
    opened: bool,
}

impl Translator {
    pub(crate) fn new(json_mode: bool) -> Self {
        Self {
            json_mode,
            ..Self::default()
        }
    }

    /// Puts the role on `step`'s chunk (making one if it has none) when it is the
    /// stream's first: with `content: ""` when the turn opens with text, `null`
    /// otherwise — what OpenAI sends (a `""` before tool calls would show clients an
    /// empty text part).
    fn open(&mut self, step: Step, text_first: bool) -> Step {
        if self.opened {
            return step;
        }
        self.opened = true;
        let role = |mut c: ChatChunk| {
            if let Some(d) = c.choices.first_mut().map(|ch| &mut ch.delta) {
                d.role = Some(Role::Assistant);
                if d.content.is_none() {
                    if text_first {
                        d.content = Some(ByteString::new());
                    } else {
                        d.null_content = true;
                    }
                }
            }
            c
        };
        match step {
            Step::Skip => Step::Emit(role(self.chunk(Delta::default(), None))),
            Step::Emit(c) => Step::Emit(role(c)),
            Step::End(c) => Step::End(Some(role(
                c.unwrap_or_else(|| self.chunk(Delta::default(), None)),
            ))),
        }
    }

    fn is_json_tool(&self, b: &Block<'_>) -> bool {
        self.json_mode && b.kind == "tool_use" && b.name.as_deref() == Some(JSON_TOOL)
    }

    fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        let mut c = ChatChunk::new(self.id.clone(), self.created, self.model.clone());
        let mut choice = ChunkChoice::new(0, delta);
        choice.finish_reason = finish;
        c.choices.push(choice);
        c
    }

    fn content(&self, text: &str) -> ChatChunk {
        self.chunk(
            Delta {
                content: Some(text.into()),
                ..Delta::default()
            },
            None,
        )
    }

    fn extension(&self, key: &str, value: Value) -> ChatChunk {
        let mut extra = Extra::new();
        extra.insert(key.to_owned(), value);
        self.chunk(
            Delta {
                extra,
                ..Delta::default()
            },
            None,
        )
    }

    fn tool_fragment(&self, call: ToolCallDelta) -> ChatChunk {
        self.chunk(
            Delta {
                tool_calls: Some(vec![call]),
                ..Delta::default()
            },
            None,
        )
    }

    fn arguments(&self, ordinal: u32, piece: &str) -> ChatChunk {
        self.tool_fragment(ToolCallDelta {
            index: ordinal,
            id: None,
            kind: None,
            function: Some(FunctionCallDelta {
                name: None,
                arguments: Some(piece.to_owned()),
            }),
            extra: Extra::new(),
        })
    }

    fn block(&mut self, index: Option<usize>) -> Option<&mut BlockState> {
        let index = index?;
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b)
    }

    fn finish_chunk(&mut self, stop_reason: Option<&str>) -> ChatChunk {
        self.finished = true;
        let (finish, lossy) = match stop_reason {
            // The JSON tool's call is the answer, not a call for the client to make.
            Some("tool_use") if self.answered_json && self.tool_calls == 0 => {
                (FinishReason::Stop, false)
            }
            other => finish_reason(other),
        };
        let mut c = self.chunk(Delta::default(), Some(finish));
        if let (true, Some(native), Some(choice)) = (lossy, stop_reason, c.choices.first_mut()) {
            choice
                .extra
                .insert("native_finish_reason".into(), native.into());
        }
        c.usage = Some(Box::new(self.usage.to_openai()));
        c
    }

    /// Translates one event's `data`.
    pub(crate) fn on_event(&mut self, data: &str) -> Result<Step, ProviderError> {
        let ev: Event<'_> = match serde_json::from_str(data) {
            Ok(ev) => ev,
            Err(e) => return self.unparsed(data, e),
        };
        Ok(match ev.kind.as_ref() {
            "message_start" => {
                let m = ev.message;
                if let Some(m) = &m {
                    self.id = m.id.as_deref().unwrap_or_default().into();
                    self.model = m.model.as_deref().unwrap_or_default().into();
                }
                if let Some(u) = m.and_then(|m| m.usage) {
                    self.usage.update(u);
                }
                self.created = unix_now();
                // The role chunk waits for the first block: its `content` depends on it.
                Step::Skip
            }
            "content_block_start" => {
                let text_first = ev
                    .content_block
                    .as_ref()
                    .is_some_and(|b| b.kind == "text" || self.is_json_tool(b));
                let step = self.block_start(ev.index, ev.content_block);
                self.open(step, text_first)
            }
            "content_block_delta" => match ev.delta {
                Some(d) => self.block_delta(ev.index, d),
                None => Step::Skip,
            },
            "content_block_stop" => self.block_stop(ev.index),
            "message_delta" => {
                if let Some(u) = ev.usage {
                    self.usage.update(u);
                }
                let stop = ev.delta.as_ref().and_then(|d| d.stop_reason.as_deref());
                let finish = Step::Emit(self.finish_chunk(stop));
                self.open(finish, true)
            }
            "message_stop" => {
                let last = (!self.finished).then(|| self.finish_chunk(None));
                self.open(Step::End(last), true)
            }
            "error" => {
                return Err(error::embedded(data.as_bytes()).unwrap_or_else(|| {
                    ProviderError::StreamCut(format!(
                        "upstream error: {}",
                        snippet(data.as_bytes())
                    ))
                }))
            }
            // `ping` and events this version does not know.
            _ => Step::Skip,
        })
    }

    /// An event that is not the JSON its type promises: a cut if it ends early,
    /// ignored if its type is unknown, else malformed.
    fn unparsed(&mut self, data: &str, e: serde_json::Error) -> Result<Step, ProviderError> {
        if data.trim().is_empty() {
            return Ok(Step::Skip);
        }
        if e.is_eof() {
            return Err(ProviderError::StreamCut(format!(
                "stream ended inside an event: {}",
                snippet(data.as_bytes())
            )));
        }
        const KNOWN: &[&str] = &[
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
            "error",
        ];
        match serde_json::from_str::<TypeOnly<'_>>(data) {
            Ok(t) if !KNOWN.contains(&t.kind.as_ref()) => Ok(Step::Skip),
            _ => Err(ProviderError::Malformed(format!(
                "bad stream event ({e}): {}",
                snippet(data.as_bytes())
            ))),
        }
    }

    fn block_start(&mut self, index: Option<usize>, block: Option<Block<'_>>) -> Step {
        let (Some(index), Some(b)) = (index, block) else {
            return Step::Skip;
        };
        match b.kind.as_ref() {
            "text" => {
                self.blocks.push((index, BlockState::Text));
                match b.text.as_deref().filter(|t| !t.is_empty()) {
                    Some(t) => Step::Emit(self.content(t)),
                    None => Step::Skip,
                }
            }
            "tool_use" if self.is_json_tool(&b) => {
                self.answered_json = true;
                // The start carries `input: {}`; anything more is the whole input.
                let initial = b
                    .input
                    .map(compact_json)
                    .filter(|i| i != "{}")
                    .unwrap_or_default();
                self.blocks.push((
                    index,
                    BlockState::Json {
                        streamed: !initial.is_empty(),
                    },
                ));
                if initial.is_empty() {
                    Step::Skip
                } else {
                    Step::Emit(self.content(&initial))
                }
            }
            "tool_use" => {
                let ordinal = self.tool_calls;
                self.tool_calls += 1;
                // The start carries `input: {}`; anything more is the whole input.
                let initial = b
                    .input
                    .map(compact_json)
                    .filter(|i| i != "{}")
                    .unwrap_or_default();
                self.blocks.push((
                    index,
                    BlockState::Tool {
                        ordinal,
                        streamed: !initial.is_empty(),
                    },
                ));
                Step::Emit(self.tool_fragment(ToolCallDelta {
                    index: ordinal,
                    id: Some(b.id.as_deref().unwrap_or_default().to_owned()),
                    kind: Some("function".to_owned()),
                    function: Some(FunctionCallDelta {
                        name: Some(b.name.as_deref().unwrap_or_default().to_owned()),
                        arguments: Some(initial),
                    }),
                    extra: Extra::new(),
                }))
            }
            "thinking" => {
                let ordinal = self.thinking_blocks;
                self.thinking_blocks += 1;
                let text = b.thinking.as_deref().unwrap_or_default().to_owned();
                let signature = b.signature.as_deref().unwrap_or_default().to_owned();
                let emit = (!text.is_empty())
                    .then(|| self.extension("reasoning_content", Value::String(text.clone())));
                self.blocks.push((
                    index,
                    BlockState::Thinking {
                        ordinal,
                        text,
                        signature,
                    },
                ));
                emit.map_or(Step::Skip, Step::Emit)
            }
            "redacted_thinking" => {
                let ordinal = self.thinking_blocks;
                self.thinking_blocks += 1;
                self.blocks.push((index, BlockState::Other));
                let data = b.data.as_deref().unwrap_or_default();
                let block = thinking_block(Some(ordinal), "redacted_thinking", "", "", data);
                Step::Emit(self.extension("thinking_blocks", Value::Array(vec![block])))
            }
            _ => {
                self.blocks.push((index, BlockState::Other));
                Step::Skip
            }
        }
    }

    fn block_delta(&mut self, index: Option<usize>, d: EventDelta<'_>) -> Step {
        match d.kind.as_deref() {
            Some("text_delta") => match d.text.as_deref().filter(|t| !t.is_empty()) {
                Some(t) => Step::Emit(self.content(t)),
                None => Step::Skip,
            },
            Some("input_json_delta") => {
                let piece = d.partial_json.as_deref().unwrap_or_default();
                if piece.is_empty() {
                    return Step::Skip;
                }
                match self.block(index) {
                    Some(BlockState::Tool { ordinal, streamed }) => {
                        *streamed = true;
                        let ordinal = *ordinal;
                        Step::Emit(self.arguments(ordinal, piece))
                    }
                    Some(BlockState::Json { streamed }) => {
                        *streamed = true;
                        Step::Emit(self.content(piece))
                    }
                    _ => Step::Skip,
                }
            }
            Some("thinking_delta") => {
                let piece = d.thinking.as_deref().unwrap_or_default();
                match self.block(index) {
                    Some(BlockState::Thinking { text, .. }) if !piece.is_empty() => {
                        text.push_str(piece);
                    }
                    _ => return Step::Skip,
                }
                Step::Emit(self.extension("reasoning_content", Value::String(piece.to_owned())))
            }
            Some("signature_delta") => {
                if let (Some(BlockState::Thinking { signature, .. }), Some(s)) =
                    (self.block(index), d.signature.as_deref())
                {
                    signature.push_str(s);
                }
                Step::Skip
            }
            // `citations_delta` and future deltas.
            _ => Step::Skip,
        }
    }

    fn block_stop(&mut self, index: Option<usize>) -> Step {
        let Some(pos) = index.and_then(|i| self.blocks.iter().position(|(b, _)| *b == i)) else {
            return Step::Skip;
        };
        match &mut self.blocks[pos].1 {
            BlockState::Tool {
                ordinal,
                streamed: false,
            } => {
                let ordinal = *ordinal;
                // A tool without arguments: make the joined value valid JSON.
                self.blocks[pos].1 = BlockState::Other;
                Step::Emit(self.arguments(ordinal, "{}"))
            }
            BlockState::Json { streamed: false } => {
                // Nothing streamed: the empty object, so the content parses.
                self.blocks[pos].1 = BlockState::Other;
                Step::Emit(self.content("{}"))
            }
            BlockState::Thinking {
                ordinal,
                text,
                signature,
            } => {
                let block = thinking_block(Some(*ordinal), "thinking", text, signature, "");
                self.blocks[pos].1 = BlockState::Other;
                Step::Emit(self.extension("thinking_blocks", Value::Array(vec![block])))
            }
            BlockState::Text
            | BlockState::Tool { .. }
            | BlockState::Json { .. }
            | BlockState::Other => Step::Skip,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn feed(events: &[Value]) -> (Vec<Value>, Option<ProviderError>, bool) {
        feed_with(Translator::default(), events)
    }

    fn feed_with(mut t: Translator, events: &[Value]) -> (Vec<Value>, Option<ProviderError>, bool) {
        let mut out = Vec::new();
        for e in events {
            match t.on_event(&e.to_string()) {
                Ok(Step::Skip) => {}
                Ok(Step::Emit(c)) => out.push(serde_json::to_value(c).unwrap()),
                Ok(Step::End(c)) => {
                    out.extend(c.map(|c| serde_json::to_value(c).unwrap()));
                    return (out, None, true);
                }
                Err(e) => return (out, Some(e), false),
            }
        }
        (out, None, false)
    }

    const TRANSLATED: Reading = Reading::Translated { json_mode: false };

    fn start() -> Value {
        json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x",
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 1}}})
    }

    fn tool_deltas(v: &[Value]) -> Vec<Value> {
        v.iter()
            .filter_map(|c| c["choices"][0]["delta"].get("tool_calls").cloned())
            .flat_map(|t| t.as_array().cloned().unwrap())
            .collect()
    }

    #[test]
    fn tool_index_is_the_ordinal_among_tool_calls_not_the_block_index() {
        // BerriAI/litellm#5231, Portkey-AI/gateway#1275: text block 0 + tool blocks 1, 2.
        let (out, err, ended) = feed(&[
            start(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "add", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\": 1}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "noargs", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 20}}),
            json!({"type": "message_stop"}),
        ]);
        assert!(err.is_none() && ended);
        assert_eq!(
            tool_deltas(&out),
            vec![
                json!({"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "add", "arguments": ""}}),
                json!({"index": 0, "function": {"arguments": "{\"a\": 1}"}}),
                json!({"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "noargs", "arguments": ""}}),
                // Zero-argument tool: "{}" not "" (BerriAI/litellm PR#5064, vercel/ai#10747).
                json!({"index": 1, "function": {"arguments": "{}"}}),
            ]
        );
        let first = &out[0]["choices"][0]["delta"];
        assert_eq!(first, &json!({"role": "assistant", "content": ""}));
        let last = out.last().unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 15, "completion_tokens": 20, "total_tokens": 35,
                   "prompt_tokens_details": {"cached_tokens": 5}})
        );
        assert!(out
            .iter()
            .all(|c| c["id"] == "msg_1" && c["model"] == "claude-x"));
    }

    #[test]
    fn the_role_chunk_is_what_openai_sends_for_the_turn() {
        let text = json!({"type": "text", "text": ""});
        let tool = json!({"type": "tool_use", "id": "toolu_a", "name": "f", "input": {}});
        let thinking = json!({"type": "thinking", "thinking": "", "signature": ""});
        // (first block, the first chunk's delta) — as in shared/fixtures/openai/
        // sdk-recordings: stream-text.sse, stream-tool-call.sse.
        let rows = [
            (Some(text), json!({"role": "assistant", "content": ""})),
            (
                Some(tool),
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
            ),
            (
                Some(thinking),
                json!({"role": "assistant", "content": null}),
            ),
            (None, json!({"role": "assistant", "content": ""})),
        ];
        for (block, want) in rows {
            let mut events = vec![start()];
            if let Some(b) = &block {
                events.push(json!({"type": "content_block_start", "index": 0, "content_block": b}));
                events.push(json!({"type": "content_block_stop", "index": 0}));
            }
            events.push(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}));
            events.push(json!({"type": "message_stop"}));
            let (out, err, ended) = feed(&events);
            assert!(err.is_none() && ended, "{block:?}");
            assert_eq!(out[0]["choices"][0]["delta"], want, "{block:?}");
            let roles = out
                .iter()
                .filter(|c| c["choices"][0]["delta"].get("role").is_some())
                .count();
            assert_eq!(roles, 1, "{block:?}: {out:?}");
        }
    }

    #[test]
    fn json_mode_streams_the_json_tools_input_as_content() {
        let json_start = json!({"type": "content_block_start", "index": 0, "content_block":
            {"type": "tool_use", "id": "toolu_j", "name": JSON_TOOL, "input": {}}});
        let piece = |p: &str| {
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": p}})
        };
        let end = [
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ];
        // (input pieces, the content clients see)
        let rows: [(&[&str], &str); 2] = [
            (
                &["", "{\"setup\": ", "\"a\", \"n\"", ": 1}"],
                "{\"setup\": \"a\", \"n\": 1}",
            ),
            (&[""], "{}"),
        ];
        for (pieces, want) in rows {
            let mut events = vec![start(), json_start.clone()];
            events.extend(pieces.iter().map(|p| piece(p)));
            events.extend(end.iter().cloned());
            let (out, err, ended) = feed_with(Translator::new(true), &events);
            assert!(err.is_none() && ended);
            assert_eq!(
                out[0]["choices"][0]["delta"],
                json!({"role": "assistant", "content": ""})
            );
            let content: String = out
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert_eq!(content, want);
            serde_json::from_str::<Value>(&content).unwrap();
            assert!(tool_deltas(&out).is_empty(), "{out:?}");
            let last = out.last().unwrap();
            assert_eq!(last["choices"][0]["finish_reason"], "stop");
            assert!(last["choices"][0].get("native_finish_reason").is_none());
        }
        // Outside JSON mode the same block is a tool call.
        let (out, _, _) = feed(&[start(), json_start, piece("{}")]);
        assert_eq!(tool_deltas(&out)[0]["function"]["name"], JSON_TOOL);
    }

    #[test]
    fn thinking_streams_as_reasoning_content_and_a_signed_block() {
        let (out, err, _) = feed(&[
            start(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": " think"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "opaque"}}),
            json!({"type": "content_block_stop", "index": 1}),
        ]);
        assert!(err.is_none());
        let deltas: Vec<&Value> = out.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(deltas[1], &json!({"reasoning_content": "Let me"}));
        assert_eq!(deltas[2], &json!({"reasoning_content": " think"}));
        assert_eq!(
            deltas[3],
            &json!({"thinking_blocks": [{"index": 0, "type": "thinking", "thinking": "Let me think", "signature": "EqQB"}]})
        );
        assert_eq!(
            deltas[4],
            &json!({"thinking_blocks": [{"index": 1, "type": "redacted_thinking", "data": "opaque"}]})
        );
    }

    #[test]
    fn errors_unknown_events_and_bad_json() {
        let (_, err, _) = feed(&[
            start(),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ]);
        match &err {
            Some(e @ ProviderError::InBand { kind, class, .. }) => {
                assert_eq!(kind, "overloaded_error");
                assert_eq!(*class, modelway_core::engine::FailureClass::Overloaded);
                assert!(e.is_retryable());
                assert_eq!(
                    e.to_string(),
                    "upstream stream error: overloaded_error: Overloaded"
                );
            }
            other => panic!("{other:?}"),
        }
        let mut t = Translator::default();
        for ignored in [
            r#"{"type":"ping"}"#,
            r#"{"type":"future_event","delta":"a string where an object is known"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}"#,
            r#"{"type":"content_block_stop","index":7}"#,
            "",
        ] {
            assert!(matches!(t.on_event(ignored), Ok(Step::Skip)), "{ignored}");
        }
        assert!(matches!(
            t.on_event(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"cut"#),
            Err(ProviderError::StreamCut(_))
        ));
        assert!(matches!(
            t.on_event(r#"{"type":"message_delta","delta":[1]}"#),
            Err(ProviderError::Malformed(_))
        ));
        assert!(matches!(
            t.on_event("not json"),
            Err(ProviderError::Malformed(_))
        ));
    }

    #[test]
    fn message_stop_without_message_delta_still_finishes() {
        let (out, err, ended) = feed(&[start(), json!({"type": "message_stop"})]);
        assert!(err.is_none() && ended);
        assert_eq!(out.last().unwrap()["choices"][0]["finish_reason"], "stop");
    }

    #[tokio::test]
    async fn a_stream_without_message_stop_is_cut_and_silence_times_out() {
        let events = vec![Ok(SseEvent {
            event: Some("message_start".into()),
            data: start().to_string().into(),
            id: None,
        })];
        let got: Vec<_> = run(
            futures_util::stream::iter(events),
            Duration::from_secs(1),
            TRANSLATED,
        )
        .collect()
        .await;
        assert!(
            matches!(&got[..], [Err(ProviderError::StreamCut(_))]),
            "{got:?}"
        );

        let silent = futures_util::stream::pending::<Result<SseEvent, ProviderError>>();
        let got: Vec<_> = tokio::time::timeout(
            Duration::from_secs(5),
            run(silent, Duration::from_millis(50), TRANSLATED).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        assert!(
            matches!(&got[..], [Err(ProviderError::StreamCut(m))] if m.contains("no data")),
            "{got:?}"
        );
    }
}
