//! The Responses event stream → canonical chunks, one event at a time (WIRE.md §9.2).
//! Every chunk also carries, byte for byte, the events it was read from and the
//! contentless ones before it (`ChatChunk::native`); the last ones ride on the final
//! chunk. So the client gets the upstream's stream as it was sent, while the engine's
//! commit point, telemetry and usage read the canonical chunks.
//!
//! | upstream event | emitted |
//! |---|---|
//! | the first of `response.created` / `in_progress` / `queued` | the role chunk (`role: assistant, content: ""`); the response's `id`, `model`, `created_at` name every chunk |
//! | `response.output_item.added` `function_call` | first fragment: `index` = ordinal of the call among function calls, `id` = `call_id`, `type`, `name`, `arguments` as sent (`""`) |
//! | `response.output_text.delta` / `response.refusal.delta` | `content` / `refusal` (empty pieces skipped) |
//! | `response.reasoning_summary_text.delta`, `response.reasoning_text.delta` | `reasoning_content`; a later summary part starts with a blank line |
//! | `response.function_call_arguments.delta` | `{index, function: {arguments}}` (empty pieces skipped) |
//! | `…arguments.done`, `output_item.done` of a call whose arguments never streamed | its whole `arguments`; a call never added is sent whole |
//! | `response.completed` / `response.incomplete` | the finish chunk (`tool_calls` / `stop`; `length` or `content_filter`) with the usage; if nothing streamed before, it carries the output read from the final response |
//! | `response.failed`, `error` | a [`ProviderError`] classed as its HTTP error would be (`response::failure`): before any content the engine falls back |
//! | other events (item and part boundaries, `*.done`, annotations, hosted tools) | nothing (their bytes ride on the next chunk) |
//! | end of body before a terminal event, silence longer than the idle timeout | [`ProviderError::StreamCut`] |

use std::borrow::Cow;
use std::time::Duration;

use futures_util::StreamExt;
use modelway_core::chat::{
    ChatChunk, ChunkChoice, Delta, Extra, FunctionCallDelta, Role, ToolCall, ToolCallDelta,
};
use modelway_core::kit::UpstreamBody;
use modelway_core::sse::SseEvent;
use modelway_core::stream::idle_timeout;
use modelway_core::ByteString;
use modelway_core::{ChunkStream, ProviderError};
use serde::Deserialize;
use serde_json::Value;

use super::response::{failed, failure, finish_reason, read_output, tool_call, ResponseBody};

/// How long the rest of a finished stream's body may take to arrive.
const DRAIN: Duration = Duration::from_secs(5);

/// Translates a 2xx event stream; `idle` bounds each wait for the next event.
pub(super) fn chunks(body: UpstreamBody, idle: Duration) -> ChunkStream {
    Box::pin(run(body.sse_events(), idle))
}

/// Gives `chunk` the events gathered so far.
fn with_native(mut chunk: ChatChunk, pending: &mut Vec<u8>) -> ChatChunk {
    if !pending.is_empty() {
        chunk.native = Some(bytes::Bytes::from(std::mem::take(pending)));
    }
    chunk
}

type Events =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<SseEvent, ProviderError>> + Send>>;

/// Drives [`Translator`] over decoded events, bounding each wait by `idle`.
pub(super) fn run(
    events: impl futures_util::Stream<Item = Result<SseEvent, ProviderError>> + Send + 'static,
    idle: Duration,
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
        t: Translator::default(),
        events: Some(events),
        pending: Vec::new(),
    }
}

/// The translated stream, polled by hand: an `unfold` would move the translator and
/// its buffers through a new future for every event.
struct Run {
    t: Translator,
    /// `None` once the stream has ended.
    events: Option<Events>,
    /// The events not yet handed on with a chunk.
    pending: Vec<u8>,
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
                    let msg = "stream ended before response.completed".to_owned();
                    return Poll::Ready(Some(Err(ProviderError::StreamCut(msg))));
                }
                Poll::Ready(Some(Err(e))) => {
                    st.events = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(ev))) => ev,
            };
            let step = st.t.on_event(&ev.data);
            ev.write_to(&mut st.pending);
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
                    return Poll::Ready(Some(Ok(with_native(last, &mut st.pending))));
                }
            }
        }
    }
}

/// What one upstream event turns into.
#[derive(Debug)]
pub(super) enum Step {
    Skip,
    Emit(ChatChunk),
    /// A terminal event: the stream is complete with this last chunk.
    End(ChatChunk),
}

/// The members of an event that are read; the rest is ignored.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    output_index: Option<usize>,
    #[serde(default)]
    summary_index: Option<usize>,
    #[serde(default, borrow)]
    delta: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
    #[serde(default)]
    item: Option<Value>,
    #[serde(default)]
    response: Option<ResponseBody>,
    /// A string in the spec; some servers send a number.
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
}

/// Only the `type`, to tell an unknown event from a broken known one.
#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

/// The events this translator reads; any other is passed on untouched.
const KNOWN: &[&str] = &[
    "response.created",
    "response.in_progress",
    "response.queued",
    "response.output_item.added",
    "response.output_item.done",
    "response.output_text.delta",
    "response.refusal.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_part.added",
    "response.reasoning_text.delta",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
];

/// One `function_call` item of the stream.
#[derive(Debug)]
struct Call {
    output_index: usize,
    /// Its tool-call index: the how-manieth function call it is.
    ordinal: u32,
    /// Whether any of its arguments were sent.
    arguments_sent: bool,
}

/// The stream's state between events.
#[derive(Debug, Default)]
pub(super) struct Translator {
    id: ByteString,
    model: ByteString,
    created: u64,
    started: bool,
    calls: Vec<Call>,
    /// Whether any content was emitted (text, refusal, reasoning, a call).
    emitted: bool,
}

impl Translator {
    fn chunk(&self, delta: Delta) -> ChatChunk {
        let mut c = ChatChunk::new(self.id.clone(), self.created, self.model.clone());
        c.choices.push(ChunkChoice::new(0, delta));
        c
    }

    fn content(&mut self, delta: Delta) -> Step {
        self.emitted = true;
        Step::Emit(self.chunk(delta))
    }

    fn reasoning(&mut self, text: &str) -> Step {
        let mut extra = Extra::new();
        extra.insert("reasoning_content".into(), text.into());
        self.content(Delta {
            extra,
            ..Delta::default()
        })
    }

    fn head(&mut self, r: &ResponseBody) {
        if self.id.is_empty() {
            if let Some(id) = &r.id {
                self.id = id.as_str().into();
            }
        }
        if self.model.is_empty() {
            if let Some(m) = &r.model {
                self.model = m.as_str().into();
            }
        }
        if self.created == 0 {
            self.created = r
                .created_at
                .map_or_else(modelway_core::unix_now, |t| t as u64);
        }
    }

    fn call(&mut self, output_index: Option<usize>) -> Option<&mut Call> {
        let i = output_index?;
        self.calls.iter_mut().find(|c| c.output_index == i)
    }

    /// A new call at `output_index` from its item, sent as its first fragment.
    fn add_call(&mut self, output_index: Option<usize>, item: &Value) -> Step {
        let Some(call) = tool_call(item) else {
            return Step::Skip;
        };
        let ordinal = u32::try_from(self.calls.len()).unwrap_or(u32::MAX);
        self.calls.push(Call {
            // A call without an index (no server omits it) is found by nothing later.
            output_index: output_index.unwrap_or(usize::MAX),
            ordinal,
            arguments_sent: !call.function.arguments.is_empty(),
        });
        let ToolCall { id, function, .. } = call;
        self.content(Delta {
            tool_calls: Some(vec![ToolCallDelta {
                index: ordinal,
                id: Some(id),
                kind: Some("function".into()),
                function: Some(FunctionCallDelta {
                    name: Some(function.name),
                    arguments: Some(function.arguments),
                }),
                extra: Extra::new(),
            }]),
            ..Delta::default()
        })
    }

    /// `piece` of the arguments of the call at `output_index`; `whole` when it is all
    /// of them, sent only if nothing of them was.
    fn arguments(&mut self, output_index: Option<usize>, piece: &str, whole: bool) -> Step {
        let Some(call) = self.call(output_index) else {
            return Step::Skip;
        };
        if piece.is_empty() || (whole && call.arguments_sent) {
            return Step::Skip;
        }
        call.arguments_sent = true;
        let index = call.ordinal;
        self.content(Delta {
            tool_calls: Some(vec![ToolCallDelta {
                index,
                id: None,
                kind: None,
                function: Some(FunctionCallDelta {
                    name: None,
                    arguments: Some(piece.to_owned()),
                }),
                extra: Extra::new(),
            }]),
            ..Delta::default()
        })
    }

    /// The finish chunk of a terminal `response`.
    fn finish(&mut self, r: Option<ResponseBody>) -> ChatChunk {
        let r = r.unwrap_or_default();
        self.head(&r);
        let mut delta = Delta::default();
        let mut calls = !self.calls.is_empty();
        if !self.emitted {
            // Nothing streamed: what the response holds is the answer.
            let out = read_output(r.output.as_deref().unwrap_or_default());
            delta.content = out.content.map(ByteString::from);
            delta.refusal = out.refusal;
            if let Some(text) = out.reasoning {
                delta.extra.insert("reasoning_content".into(), text.into());
            }
            calls = !out.tool_calls.is_empty();
            if calls {
                let fragments =
                    out.tool_calls
                        .into_iter()
                        .zip(0u32..)
                        .map(|(c, index)| ToolCallDelta {
                            index,
                            id: Some(c.id),
                            kind: Some("function".into()),
                            function: Some(FunctionCallDelta {
                                name: Some(c.function.name),
                                arguments: Some(c.function.arguments),
                            }),
                            extra: Extra::new(),
                        });
                delta.tool_calls = Some(fragments.collect());
            }
        }
        let mut c = self.chunk(delta);
        if let Some(choice) = c.choices.first_mut() {
            choice.finish_reason = finish_reason(&r, calls);
        }
        c.usage = r.usage.map(|u| Box::new(u.to_chat()));
        c
    }

    /// Translates one event's `data`.
    pub(super) fn on_event(&mut self, data: &str) -> Result<Step, ProviderError> {
        let ev: Event<'_> = match serde_json::from_str(data) {
            Ok(ev) => ev,
            Err(e) => return unparsed(data, &e),
        };
        let delta = ev.delta.as_deref().unwrap_or_default();
        Ok(match ev.kind.as_ref() {
            "response.created" | "response.in_progress" | "response.queued" => {
                if let Some(r) = &ev.response {
                    self.head(r);
                }
                if self.started {
                    Step::Skip
                } else {
                    self.started = true;
                    if self.created == 0 {
                        self.created = modelway_core::unix_now();
                    }
                    Step::Emit(self.chunk(Delta {
                        role: Some(Role::Assistant),
                        content: Some(ByteString::new()),
                        ..Delta::default()
                    }))
                }
            }
            "response.output_item.added" => match &ev.item {
                Some(item) if is_call(item) => self.add_call(ev.output_index, item),
                _ => Step::Skip,
            },
            "response.output_item.done" => match &ev.item {
                Some(item) if is_call(item) => {
                    if self.call(ev.output_index).is_some() {
                        let args = item.get("arguments").and_then(Value::as_str);
                        self.arguments(ev.output_index, args.unwrap_or_default(), true)
                    } else {
                        self.add_call(ev.output_index, item)
                    }
                }
                _ => Step::Skip,
            },
            "response.output_text.delta" if !delta.is_empty() => self.content(Delta {
                content: Some(delta.into()),
                ..Delta::default()
            }),
            "response.refusal.delta" if !delta.is_empty() => self.content(Delta {
                refusal: Some(delta.to_owned()),
                ..Delta::default()
            }),
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta"
                if !delta.is_empty() =>
            {
                self.reasoning(delta)
            }
            "response.reasoning_summary_part.added" if ev.summary_index.is_some_and(|i| i > 0) => {
                self.reasoning("\n\n")
            }
            "response.function_call_arguments.delta" => {
                self.arguments(ev.output_index, delta, false)
            }
            "response.function_call_arguments.done" => {
                let args = ev.arguments.as_deref().unwrap_or_default();
                self.arguments(ev.output_index, args, true)
            }
            "response.completed" | "response.incomplete" => Step::End(self.finish(ev.response)),
            "response.failed" => {
                return Err(match &ev.response {
                    Some(r) => failed(r),
                    None => failure(None, "the upstream response failed", true),
                })
            }
            "error" => {
                let message = ev.message.as_ref().and_then(Value::as_str);
                let code = ev.code.as_ref().and_then(Value::as_str);
                return Err(failure(code, message.unwrap_or("upstream error"), true));
            }
            _ => Step::Skip,
        })
    }
}

fn is_call(item: &Value) -> bool {
    item.get("type").and_then(Value::as_str) == Some("function_call")
}

/// An event that is not the JSON its type promises: a cut if it ends early, passed
/// on if its type is unknown (or it is not JSON at all, like a `[DONE]` some servers
/// add), else malformed.
fn unparsed(data: &str, e: &serde_json::Error) -> Result<Step, ProviderError> {
    if e.is_eof() && !data.trim().is_empty() {
        return Err(ProviderError::StreamCut(format!(
            "stream ended inside an event: {}",
            modelway_core::translate::snippet(data.as_bytes())
        )));
    }
    match serde_json::from_str::<TypeOnly<'_>>(data) {
        Ok(t) if KNOWN.contains(&t.kind.as_ref()) => Err(ProviderError::Malformed(format!(
            "bad `{}` event: {e}: {}",
            t.kind,
            modelway_core::translate::snippet(data.as_bytes())
        ))),
        _ => Ok(Step::Skip),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use modelway_core::chat::FinishReason;
    use modelway_core::sse::SseDecoder;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/responses/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Every chunk the stream of `body` yields, and the error that ended it, if any.
    async fn replay(body: &[u8]) -> (Vec<ChatChunk>, Option<ProviderError>) {
        let events = SseDecoder::decode_all(body).into_iter().map(Ok);
        let s = run(futures_util::stream::iter(events), Duration::from_secs(5));
        let mut s = std::pin::pin!(s);
        let mut chunks = Vec::new();
        let bound = Duration::from_secs(5);
        while let Some(item) = tokio::time::timeout(bound, s.next()).await.unwrap() {
            match item {
                Ok(c) => chunks.push(c),
                Err(e) => return (chunks, Some(e)),
            }
        }
        (chunks, None)
    }

    /// What a client accumulating the canonical chunks would hold.
    #[derive(Debug, Default, PartialEq)]
    struct Read {
        roles: usize,
        content: String,
        refusal: String,
        reasoning: String,
        /// (index, id, name, arguments)
        calls: Vec<(u32, String, String, String)>,
        finish: Option<String>,
        usage: Option<(u64, u64, Option<u64>)>,
    }

    fn read(chunks: &[ChatChunk]) -> Read {
        let mut r = Read::default();
        for c in chunks {
            if let Some(u) = &c.usage {
                let cached = u
                    .prompt_tokens_details
                    .as_ref()
                    .and_then(|d| d.cached_tokens);
                r.usage = Some((u.prompt_tokens, u.completion_tokens, cached));
            }
            for ch in &c.choices {
                let d = &ch.delta;
                r.roles += usize::from(d.role.is_some());
                r.content.push_str(d.content.as_deref().unwrap_or_default());
                r.refusal.push_str(d.refusal.as_deref().unwrap_or_default());
                if let Some(t) = d.extra.get("reasoning_content").and_then(Value::as_str) {
                    r.reasoning.push_str(t);
                }
                for t in d.tool_calls.iter().flatten() {
                    let f = t.function.clone().unwrap_or_default();
                    match r.calls.iter_mut().find(|c| c.0 == t.index) {
                        Some(c) => {
                            assert!(
                                t.id.is_none() && f.name.is_none(),
                                "id/name repeated: {t:?}"
                            );
                            c.3.push_str(f.arguments.as_deref().unwrap_or_default());
                        }
                        None => r.calls.push((
                            t.index,
                            t.id.clone().unwrap_or_default(),
                            f.name.clone().unwrap_or_default(),
                            f.arguments.clone().unwrap_or_default(),
                        )),
                    }
                }
                if let Some(f) = &ch.finish_reason {
                    assert!(r.finish.is_none(), "two finish reasons");
                    r.finish = Some(f.as_str().to_owned());
                }
            }
        }
        r
    }

    /// The native bytes of every chunk, in order.
    fn native(chunks: &[ChatChunk]) -> Vec<u8> {
        chunks
            .iter()
            .flat_map(|c| c.native.as_deref().unwrap_or_default().to_vec())
            .collect()
    }

    fn call(index: u32, id: &str, name: &str, args: &str) -> (u32, String, String, String) {
        (index, id.into(), name.into(), args.into())
    }

    #[tokio::test]
    async fn complete_streams_read_and_pass_on_byte_for_byte() {
        let usage = Some((120, 40, Some(64)));
        let rows: Vec<(&str, Read)> = vec![
            (
                "stream-text.sse",
                Read {
                    roles: 1,
                    content: "Hi".into(),
                    finish: Some("stop".into()),
                    usage: Some((37, 11, None)),
                    ..Read::default()
                },
            ),
            (
                "stream-function-calls.sse",
                Read {
                    roles: 1,
                    calls: vec![
                        call(0, "call_abc123", "get_weather", r#"{"city":"Paris"}"#),
                        call(1, "call_def456", "get_time", "{}"),
                    ],
                    finish: Some("tool_calls".into()),
                    usage,
                    ..Read::default()
                },
            ),
            (
                "stream-arguments-only-in-done.sse",
                Read {
                    roles: 1,
                    calls: vec![call(0, "call_abc123", "get_weather", r#"{"city":"Paris"}"#)],
                    finish: Some("tool_calls".into()),
                    usage,
                    ..Read::default()
                },
            ),
            (
                "stream-reasoning-then-text.sse",
                Read {
                    roles: 1,
                    content: "Paris.".into(),
                    reasoning: "First I read the question.\n\nThen I answered it.".into(),
                    finish: Some("stop".into()),
                    usage,
                    ..Read::default()
                },
            ),
            (
                "stream-incomplete.sse",
                Read {
                    roles: 1,
                    content: "The answer is".into(),
                    finish: Some("length".into()),
                    usage,
                    ..Read::default()
                },
            ),
        ];
        for (name, want) in rows {
            let body = fixture(name);
            let (chunks, err) = replay(&body).await;
            assert!(err.is_none(), "{name}: {err:?}");
            assert_eq!(read(&chunks), want, "{name}");
            assert_eq!(
                String::from_utf8_lossy(&native(&chunks)),
                String::from_utf8_lossy(&body),
                "{name}: the events must pass on as they came"
            );
            // The role chunk first, named by the response; every chunk has bytes.
            let first = &chunks[0];
            assert!(
                first.id.starts_with("resp_") && !first.model.is_empty(),
                "{name}"
            );
            assert!(chunks.iter().all(|c| c.native.is_some()), "{name}");
            assert!(chunks.iter().all(|c| c.id == first.id), "{name}");
        }
    }

    #[tokio::test]
    async fn failures_end_the_stream_with_their_class() {
        let (chunks, err) = replay(&fixture("stream-failed-before-content.sse")).await;
        assert!(
            !chunks.iter().any(modelway_core::engine::has_content),
            "{chunks:?}"
        );
        assert!(
            matches!(err, Some(ProviderError::Status { status: 429, .. })),
            "{err:?}"
        );
        let (chunks, err) = replay(&fixture("stream-error-after-content.sse")).await;
        assert_eq!(read(&chunks).content, "Hel");
        assert!(
            matches!(err, Some(ProviderError::Status { status: 500, .. })),
            "{err:?}"
        );
        let (chunks, err) = replay(&fixture("stream-cut.sse")).await;
        assert_eq!(read(&chunks).content, "Hel");
        assert!(matches!(err, Some(ProviderError::StreamCut(_))), "{err:?}");
    }

    #[tokio::test]
    async fn malformed_events_are_errors_or_passed_on_never_panics() {
        let created = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"m\",\"output\":[]}}\n\n";
        let completed = "data: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"output\":[]}}\n\n";
        // (events between created and completed, how it must end)
        let rows: &[(&str, &str)] = &[
            // Unknown events and shapes, not JSON, a stray [DONE]: passed on.
            ("data: {\"type\":\"response.new_thing\",\"delta\":{\"x\":1}}\n\ndata: <html>\n\ndata: [DONE]\n\n", "ok"),
            ("data: {\"type\":\"response.output_text.delta\",\"delta\":\"\"}\n\n", "ok"),
            // Argument pieces for a call never added: nothing to attach them to.
            ("data: {\"type\":\"response.function_call_arguments.delta\",\"output_index\":7,\"delta\":\"{}\"}\n\n", "ok"),
            ("data: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"function_call\"}}\n\n", "ok"),
            // A known event of the wrong shape.
            ("data: {\"type\":\"response.output_text.delta\",\"delta\":5}\n\n", "malformed"),
            ("data: {\"type\":\"error\",\"code\":429}\n\n", "status"),
        ];
        for (middle, want) in rows {
            let body = format!("{created}{middle}{completed}");
            let (chunks, err) = replay(body.as_bytes()).await;
            let got = match &err {
                None => "ok",
                Some(ProviderError::Malformed(_)) => "malformed",
                Some(ProviderError::Status { .. }) => "status",
                Some(_) => "other",
            };
            assert_eq!(got, *want, "{middle:?}: {err:?}");
            if err.is_none() {
                assert_eq!(
                    String::from_utf8_lossy(&native(&chunks)),
                    body,
                    "{middle:?}"
                );
            }
        }
        // A body that ends inside an event is a cut.
        let (_, err) =
            replay(format!("{created}data: {{\"type\":\"response.output_te").as_bytes()).await;
        assert!(matches!(err, Some(ProviderError::StreamCut(_))), "{err:?}");
    }

    #[tokio::test]
    async fn a_stream_that_only_completes_is_read_from_its_final_response() {
        // Some servers send no deltas: the final response holds the answer.
        let body = format!(
            "data: {}\n\n",
            serde_json::json!({"type": "response.completed", "response": {
                "id": "resp_9", "model": "m", "status": "completed",
                "output": [{"type": "message", "content": [{"type": "output_text", "text": "whole"}]},
                           {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}],
                "usage": {"input_tokens": 1, "output_tokens": 2}}})
        );
        let (chunks, err) = replay(body.as_bytes()).await;
        assert!(err.is_none(), "{err:?}");
        let r = read(&chunks);
        assert_eq!(
            (r.content.as_str(), r.calls, r.finish.as_deref()),
            (
                "whole",
                vec![call(0, "c1", "f", "{}")],
                Some(FinishReason::ToolCalls.as_str())
            )
        );
    }
}
