//! The Gemini SSE stream (`streamGenerateContent?alt=sse`) → canonical chunks, one
//! event at a time (WIRE.md §3.4, §4.5). Each event is a whole
//! `GenerateContentResponse` holding only the new parts; it is parsed once, into
//! borrowed structs, and translated the moment it arrives.
//!
//! | upstream event content | emitted |
//! |---|---|
//! | a candidate's first parts | its first delta carries `role: assistant`, and `content: null` when it has no text (a turn that opens with a function call or a thought), as OpenAI sends it |
//! | text parts | `content` |
//! | `thought: true` text parts | `reasoning_content` |
//! | signed text part | `extra_content.google.thought_signature` on the delta |
//! | `functionCall` part | one whole fragment `{index, id, type, function: {name, arguments}}` (+ `extra_content` with its signature); `index` counts the candidate's calls across the whole stream |
//! | `finishReason` | a finish chunk `delta: {}` after the content; `tool_calls` if the candidate made any call earlier in the stream |
//! | `usageMetadata` | kept; the latest rides on the finish chunk or later chunks (the gateway sends it in the final usage chunk) |
//! | no candidates, `promptFeedback.blockReason` | finish `content_filter` |
//! | `{"error": …}` (an event, or bare JSON after the events) | a [`ProviderError::InBand`] named by its `status` string |
//! | end of body before any `finishReason`, or silence longer than the timeout | [`ProviderError::StreamCut`] |

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use modelway_core::chat::{
    ChatChunk, ChunkChoice, Delta, Extra, FinishReason, FunctionCallDelta, Role, ToolCallDelta,
};
use modelway_core::kit::UpstreamBody;
use modelway_core::sse::SseDecoder;
use modelway_core::stream::idle_timeout;
use modelway_core::ByteString;
use modelway_core::{unix_now, ChunkStream, ProviderError};
use serde_json::Value;

use crate::error;
use crate::response::{
    call_id, compact_json, finish_reason, new_call_id, signature_extra, snippet,
    GenerateContentResponse, UsageMetadata,
};

/// The most bytes kept while looking for a bare JSON error after the last event
/// (an error object is far smaller).
const TAIL_CAP: usize = 64 * 1024;

/// Translates a 2xx event stream; `idle` bounds each wait for the next frame.
pub(crate) fn chunks(body: UpstreamBody, requested_model: &str, idle: Duration) -> ChunkStream {
    Box::pin(run(body.frames(), requested_model.to_owned(), idle))
}

type Frames = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>;

struct State {
    frames: Frames,
    decoder: SseDecoder,
    /// Body bytes after the last blank line (where a bare JSON error would be).
    tail: BytesMut,
    t: Translator,
    out: VecDeque<ChatChunk>,
    eof: bool,
    done: bool,
}

/// Drives [`Translator`] over body frames, bounding each wait by `idle`.
pub(crate) fn run(
    frames: impl Stream<Item = Result<Bytes, ProviderError>> + Send + 'static,
    requested_model: String,
    idle: Duration,
) -> impl Stream<Item = Result<ChatChunk, ProviderError>> + Send + 'static {
    let state = State {
        // One timer bounds every wait for the next frame (not one per frame).
        frames: Box::pin(idle_timeout(frames, idle).map(|item| {
            item.unwrap_or_else(|idle| {
                Err(ProviderError::StreamCut(format!(
                    "no data from upstream for {idle:?}"
                )))
            })
        })),
        decoder: SseDecoder::new(),
        tail: BytesMut::new(),
        t: Translator::new(requested_model),
        out: VecDeque::new(),
        eof: false,
        done: false,
    };
    state
}

/// Polled by hand: an `unfold` would move this state through a new future for every
/// frame and chunk.
impl Stream for State {
    type Item = Result<ChatChunk, ProviderError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let st = self.get_mut();
        loop {
            if let Some(c) = st.out.pop_front() {
                return Poll::Ready(Some(Ok(c)));
            }
            if st.done {
                return Poll::Ready(None);
            }
            let event = if st.eof {
                st.decoder.finish()
            } else {
                st.decoder.next_event()
            };
            if let Some(ev) = event {
                if let Err(e) = st.t.on_event(&ev.data, &mut st.out) {
                    st.done = true;
                    st.out.clear();
                    return Poll::Ready(Some(Err(e)));
                }
                continue;
            }
            if st.eof {
                st.done = true;
                match st.t.end(&st.tail) {
                    Ok(()) => continue,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                }
            }
            match st.frames.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => st.eof = true,
                Poll::Ready(Some(Err(e))) => {
                    st.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    st.decoder.push(&frame);
                    keep_tail(&mut st.tail, &frame);
                }
            }
        }
    }
}

/// Keeps in `tail` what follows the last blank line seen in the body.
fn keep_tail(tail: &mut BytesMut, frame: &[u8]) {
    let last_blank = [&b"\n\n"[..], b"\r\n\r\n", b"\r\r"]
        .iter()
        .filter_map(|sep| memchr::memmem::rfind(frame, sep).map(|p| p + sep.len()))
        .max();
    match last_blank {
        Some(end) => {
            tail.clear();
            tail.extend_from_slice(&frame[end..]);
        }
        None => {
            if tail.len() + frame.len() > TAIL_CAP {
                tail.clear();
            } else {
                tail.extend_from_slice(frame);
            }
        }
    }
}

/// One candidate's progress.
#[derive(Debug)]
struct ChoiceState {
    index: u32,
    calls: u32,
    finished: bool,
}

/// The stream's state between events.
#[derive(Debug)]
pub(crate) struct Translator {
    requested_model: String,
    id: ByteString,
    model: ByteString,
    created: u64,
    started: bool,
    choices: Vec<ChoiceState>,
    /// Candidate indexes whose `role` was sent.
    roled: Vec<u32>,
    usage: Option<UsageMetadata>,
}

impl Translator {
    pub(crate) fn new(requested_model: String) -> Self {
        Self {
            requested_model,
            id: ByteString::new(),
            model: ByteString::new(),
            created: 0,
            started: false,
            choices: Vec::new(),
            roled: Vec::new(),
            usage: None,
        }
    }

    fn chunk(&self, choices: Vec<ChunkChoice>) -> ChatChunk {
        let mut c = ChatChunk::new(self.id.clone(), self.created, self.model.clone());
        c.choices = choices;
        c
    }

    fn state(&mut self, index: u32) -> &mut ChoiceState {
        let pos = match self.choices.iter().position(|s| s.index == index) {
            Some(p) => p,
            None => {
                self.choices.push(ChoiceState {
                    index,
                    calls: 0,
                    finished: false,
                });
                self.choices.len() - 1
            }
        };
        &mut self.choices[pos]
    }

    fn any_finished(&self) -> bool {
        self.choices.iter().any(|c| c.finished)
    }

    /// Translates one event's `data` into `out`.
    pub(crate) fn on_event(
        &mut self,
        data: &str,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<(), ProviderError> {
        if data.trim().is_empty() {
            return Ok(());
        }
        let r: GenerateContentResponse<'_> = serde_json::from_str(data).map_err(|e| {
            if e.is_eof() {
                ProviderError::StreamCut(format!(
                    "stream ended inside an event: {}",
                    snippet(data.as_bytes())
                ))
            } else {
                ProviderError::Malformed(format!(
                    "bad stream event ({e}): {}",
                    snippet(data.as_bytes())
                ))
            }
        })?;
        if let Some(e) = &r.error {
            return Err(error::in_band_object(e));
        }
        if !self.started {
            self.started = true;
            self.id = r
                .response_id
                .as_deref()
                .filter(|s| !s.is_empty())
                .map_or_else(
                    || format!("chatcmpl-{}", new_call_id()).into(),
                    ByteString::from,
                );
            self.model = r
                .model_version
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or(&self.requested_model)
                .into();
            self.created = unix_now();
        }
        if let Some(u) = r.usage_metadata {
            self.usage = Some(u);
        }
        let mut content = Vec::new();
        let mut finishes = Vec::new();
        if r.candidates.is_empty() {
            if let Some(reason) = r
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_deref())
            {
                let st = self.state(0);
                if !st.finished {
                    st.finished = true;
                    let mut choice = ChunkChoice::new(0, Delta::default());
                    choice.finish_reason = Some(FinishReason::ContentFilter);
                    choice
                        .extra
                        .insert("native_finish_reason".into(), reason.into());
                    finishes.push(choice);
                }
            }
        }
        for (pos, c) in r.candidates.iter().enumerate() {
            let index = c.index.unwrap_or(pos as u32);
            let mut delta = Delta::default();
            let parts = c
                .content
                .as_ref()
                .and_then(|c| c.parts.as_deref())
                .unwrap_or_default();
            for p in parts {
                if let Some(fc) = &p.function_call {
                    let st = self.state(index);
                    let ordinal = st.calls;
                    st.calls += 1;
                    let mut extra = Extra::new();
                    if let Some(sig) = p.thought_signature.as_deref().filter(|s| !s.is_empty()) {
                        extra.insert("extra_content".into(), signature_extra(sig));
                    }
                    delta
                        .tool_calls
                        .get_or_insert_with(Vec::new)
                        .push(ToolCallDelta {
                            index: ordinal,
                            id: Some(call_id(fc)),
                            kind: Some("function".to_owned()),
                            function: Some(FunctionCallDelta {
                                name: Some(fc.name.as_ref().to_owned()),
                                arguments: Some(
                                    fc.args.map_or_else(|| "{}".to_owned(), compact_json),
                                ),
                            }),
                            extra,
                        });
                    continue;
                }
                let Some(t) = p.text.as_deref() else { continue };
                if p.thought == Some(true) {
                    append_extra(&mut delta.extra, "reasoning_content", t);
                } else {
                    // Parts of one candidate add up to one delta's content.
                    delta.content = Some(match delta.content.take() {
                        Some(before) if !before.is_empty() => format!("{before}{t}").into(),
                        _ => t.into(),
                    });
                    if let Some(sig) = p.thought_signature.as_deref().filter(|s| !s.is_empty()) {
                        delta
                            .extra
                            .insert("extra_content".into(), signature_extra(sig));
                    }
                }
            }
            let st = self.state(index);
            let has_delta = delta.content.as_deref().is_some_and(|s| !s.is_empty())
                || delta.tool_calls.is_some()
                || !delta.extra.is_empty();
            if has_delta {
                content.push(ChunkChoice::new(index, delta));
            }
            if let Some(native) = c.finish_reason.as_deref() {
                if !st.finished {
                    st.finished = true;
                    let (finish, lossy) = finish_reason(native, st.calls > 0);
                    let mut choice = ChunkChoice::new(index, Delta::default());
                    choice.finish_reason = Some(finish);
                    if lossy {
                        choice
                            .extra
                            .insert("native_finish_reason".into(), native.into());
                    }
                    finishes.push(choice);
                }
            }
        }
        if !content.is_empty() {
            // Each candidate's first delta says who speaks.
            self.mark_roles(&mut content);
            out.push_back(self.chunk(content));
        }
        if !finishes.is_empty() {
            self.mark_roles(&mut finishes);
            out.push_back(self.chunk(finishes));
        }
        // The running usage rides on the last chunk once the answer is finishing;
        // a usage-only chunk (no choices) is absorbed by the gateway's normalizer.
        if self.any_finished() {
            let usage = self.usage.as_ref().map(|u| Box::new(u.to_openai()));
            match out.back_mut() {
                Some(last) => last.usage = usage,
                None => {
                    let mut c = self.chunk(Vec::new());
                    c.usage = usage;
                    if c.usage.is_some() {
                        out.push_back(c);
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets `role` on each choice's first delta, with `content: null` when it opens
    /// without text (OpenAI's role chunk before tool calls; a `""` would show clients
    /// an empty text part).
    fn mark_roles(&mut self, choices: &mut [ChunkChoice]) {
        for c in choices {
            if !self.roled.contains(&c.index) {
                self.roled.push(c.index);
                c.delta.role = Some(Role::Assistant);
                let d = &c.delta;
                // A finish alone (a blocked prompt) stays `{role}`.
                c.delta.null_content =
                    d.content.is_none() && (d.tool_calls.is_some() || !d.extra.is_empty());
            }
        }
    }

    /// The body ended: fine if every candidate finished, an error if the body ends
    /// with a bare error object or before any `finishReason`.
    pub(crate) fn end(&self, tail: &[u8]) -> Result<(), ProviderError> {
        let trimmed = std::str::from_utf8(tail).map(str::trim).unwrap_or_default();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            let bytes = trimmed.as_bytes();
            let bytes = if bytes.first() == Some(&b'[') {
                // The non-SSE array form: `[{"error": …}]`.
                bytes
                    .strip_prefix(b"[")
                    .and_then(|b| b.strip_suffix(b"]"))
                    .unwrap_or(bytes)
            } else {
                bytes
            };
            if let Some(e) = error::in_band(bytes) {
                return Err(e);
            }
        }
        if self.choices.is_empty() || !self.choices.iter().all(|c| c.finished) {
            return Err(ProviderError::StreamCut(
                "the Gemini stream ended before a finishReason".into(),
            ));
        }
        Ok(())
    }
}

/// Appends `piece` to the string extension `key` of a delta.
fn append_extra(extra: &mut Extra, key: &str, piece: &str) {
    match extra.get_mut(key) {
        Some(Value::String(s)) => s.push_str(piece),
        _ => {
            extra.insert(key.to_owned(), Value::String(piece.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/gemini/firebase-test-data/"
        );
        std::fs::read(format!("{dir}{name}")).unwrap()
    }

    async fn replay(body: &[u8], size: usize) -> Vec<Result<ChatChunk, ProviderError>> {
        let frames: Vec<Result<Bytes, ProviderError>> = body
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        run(
            futures_util::stream::iter(frames),
            "gemini-x".into(),
            Duration::from_secs(5),
        )
        .collect()
        .await
    }

    fn text(items: &[Result<ChatChunk, ProviderError>]) -> String {
        items
            .iter()
            .filter_map(|i| i.as_ref().ok())
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.content.as_deref())
            .collect()
    }

    #[tokio::test]
    async fn events_split_anywhere_give_the_same_chunks() {
        for name in [
            "googleai/streaming-success-basic-reply-long.txt",
            "googleai/streaming-success-thinking-function-call-thought-summary-signature.txt",
            "vertexai/streaming-success-utf8.txt",
        ] {
            let body = fixture(name);
            let whole = replay(&body, body.len()).await;
            assert!(whole.iter().all(Result::is_ok), "{name}: {whole:?}");
            for size in [1, 7, 64] {
                let split = replay(&body, size).await;
                assert_eq!(split.len(), whole.len(), "{name} split {size}");
                assert_eq!(text(&split), text(&whole), "{name} split {size}");
            }
        }
    }

    #[tokio::test]
    async fn a_bare_error_after_the_events_is_an_error_even_when_split() {
        let body = fixture("vertexai/streaming-failure-error-mid-stream.txt");
        for size in [body.len(), 5] {
            let items = replay(&body, size).await;
            assert_eq!(text(&items), "First Second ", "split {size}");
            assert!(
                matches!(
                    items.last(),
                    Some(Err(ProviderError::InBand { kind, .. })) if kind == "CANCELLED"
                ),
                "split {size}: {:?}",
                items.last()
            );
        }
    }

    #[test]
    fn the_role_chunk_says_content_null_when_the_turn_opens_without_text() {
        let event = |parts: serde_json::Value| {
            serde_json::json!({"candidates": [{"content": {"role": "model", "parts": parts},
                "finishReason": "STOP", "index": 0}], "responseId": "r", "modelVersion": "g"})
            .to_string()
        };
        // (parts of the only event, the first chunk's delta without tool-call ids)
        let rows = [
            (
                serde_json::json!([{"functionCall": {"name": "f", "args": {"a": 1}}}]),
                serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
                    {"index": 0, "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}),
            ),
            (
                serde_json::json!([{"text": "Hi"}]),
                serde_json::json!({"role": "assistant", "content": "Hi"}),
            ),
            (
                serde_json::json!([{"text": "hm", "thought": true}]),
                serde_json::json!({"role": "assistant", "content": null, "reasoning_content": "hm"}),
            ),
        ];
        for (parts, want) in rows {
            let mut t = Translator::new("g".into());
            let mut out = VecDeque::new();
            t.on_event(&event(parts.clone()), &mut out).unwrap();
            let mut first = serde_json::to_value(&out[0]).unwrap()["choices"][0]["delta"].clone();
            if let Some(calls) = first.get_mut("tool_calls").and_then(Value::as_array_mut) {
                for c in calls {
                    c.as_object_mut().unwrap().remove("id");
                }
            }
            assert_eq!(first, want, "{parts}");
            let roles = out
                .iter()
                .flat_map(|c| &c.choices)
                .filter(|c| c.delta.role.is_some())
                .count();
            assert_eq!(roles, 1, "{parts}");
        }
    }

    #[test]
    fn tail_keeps_only_what_follows_the_last_blank_line() {
        let mut tail = BytesMut::new();
        keep_tail(&mut tail, b"data: {}\r\n\r\n{\n  \"err");
        keep_tail(&mut tail, b"or\": 1\n}");
        assert_eq!(&tail[..], b"{\n  \"error\": 1\n}");
        keep_tail(&mut tail, b"\n\n");
        assert!(tail.is_empty());
    }
}
