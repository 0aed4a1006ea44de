//! Normalizes any provider's chunk stream to the shape OpenAI clients accumulate
//! correctly: `role` once per choice, one `finish_reason` per choice, usage only in one
//! final `choices: []` chunk (and only when the client asked for it), and a stable
//! `id`/`created`/`model` on every chunk.

use bytestring::ByteString;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::time::Instant;

use crate::chat::{ChatChunk, Role, Usage};
use crate::error::ProviderError;
use crate::provider::ChunkStream;

/// Wraps `inner`; see the module docs.
pub fn normalize(inner: ChunkStream, include_usage: bool) -> ChunkStream {
    Box::pin(Normalize {
        inner,
        include_usage,
        id: ByteString::new(),
        created: 0,
        model: ByteString::new(),
        started: Vec::new(),
        finished: Vec::new(),
        usage: None,
        ended: false,
        seen_first: false,
        tools: ToolCallsSeen::default(),
    })
}

struct Normalize {
    inner: ChunkStream,
    include_usage: bool,
    id: ByteString,
    created: u64,
    model: ByteString,
    /// Choice indexes that have had their first delta.
    started: Vec<u32>,
    /// Choice indexes that have had their finish reason.
    finished: Vec<u32>,
    usage: Option<Box<Usage>>,
    ended: bool,
    seen_first: bool,
    tools: ToolCallsSeen,
}

/// Which tool calls have had their `id`, `type` and `name` sent. Clients concatenate
/// every string they receive, so a server that repeats them on each fragment would
/// make `get_weatherget_weather`; they are sent once per call.
#[derive(Default)]
struct ToolCallsSeen {
    /// (choice index, tool-call index, id sent, type sent, name sent)
    seen: Vec<(u32, u32, bool, bool, bool)>,
}

impl ToolCallsSeen {
    /// Drops the repeats from `call`; `true` if it changed.
    fn dedupe(&mut self, choice: u32, call: &mut crate::chat::ToolCallDelta) -> bool {
        let pos = match self
            .seen
            .iter()
            .position(|s| s.0 == choice && s.1 == call.index)
        {
            Some(p) => p,
            None => {
                self.seen.push((choice, call.index, false, false, false));
                self.seen.len() - 1
            }
        };
        let entry = &mut self.seen[pos];
        let non_empty = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        let mut changed = false;
        if non_empty(&call.id) {
            if entry.2 {
                call.id = None;
                changed = true;
            }
            entry.2 = true;
        } else if call.id.take().is_some() {
            changed = true;
        }
        if call.kind.is_some() {
            if entry.3 {
                call.kind = None;
                changed = true;
            }
            entry.3 = true;
        }
        if let Some(f) = call.function.as_mut() {
            if non_empty(&f.name) {
                if entry.4 {
                    f.name = None;
                    changed = true;
                }
                entry.4 = true;
            } else if f.name.take().is_some() {
                changed = true;
            }
        }
        changed
    }
}

impl Normalize {
    /// Fixes one chunk in place; `false` if nothing is left worth sending. A chunk it
    /// changes loses its [`raw`](ChatChunk::raw) bytes, which no longer say the same.
    fn fix(&mut self, chunk: &mut ChatChunk) -> bool {
        let mut changed = false;
        if !self.seen_first {
            self.seen_first = true;
            self.id = chunk.id.clone();
            self.created = chunk.created;
            self.model = chunk.model.clone();
        } else {
            // Some upstreams change the id mid-stream (Avian); clients key on it.
            if chunk.id != self.id {
                chunk.id = self.id.clone();
                changed = true;
            }
            if chunk.created != self.created {
                chunk.created = self.created;
                changed = true;
            }
            if chunk.model != self.model {
                chunk.model = self.model.clone();
                changed = true;
            }
        }
        if let Some(u) = chunk.usage.take() {
            self.usage = Some(u);
            changed = true;
        }
        let before = chunk.choices.len();
        chunk.choices.retain_mut(|c| {
            let index = c.index;
            if self.finished.contains(&index) {
                // A repeat after the finish (OpenRouter's usage chunk, Groq's x_groq
                // echo): keep it only if it carries real content.
                changed |= c.finish_reason.take().is_some() | c.delta.role.take().is_some();
                let d = &c.delta;
                return d.content.as_deref().is_some_and(|s| !s.is_empty())
                    || d.tool_calls.is_some()
                    || d.refusal.as_deref().is_some_and(|s| !s.is_empty());
            }
            if self.started.contains(&index) {
                changed |= c.delta.role.take().is_some();
            } else {
                self.started.push(index);
                if c.delta.role != Some(Role::Assistant) {
                    c.delta.role = Some(Role::Assistant);
                    changed = true;
                }
            }
            if let Some(calls) = c.delta.tool_calls.as_mut() {
                for call in calls.iter_mut() {
                    changed |= self.tools.dedupe(index, call);
                }
            }
            if c.finish_reason.is_some() {
                self.finished.push(index);
            }
            true
        });
        if changed || chunk.choices.len() != before {
            chunk.raw = None;
        }
        !chunk.choices.is_empty()
    }

    fn usage_chunk(&mut self) -> Option<ChatChunk> {
        if !self.include_usage {
            return None;
        }
        let usage = self.usage.take()?;
        let mut c = ChatChunk::new(self.id.clone(), self.created, self.model.clone());
        c.usage = Some(usage);
        Some(c)
    }
}

impl Stream for Normalize {
    type Item = Result<ChatChunk, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(mut chunk))) => {
                    // A passthrough stream's chunks are already in the client's
                    // dialect, byte for byte: nothing here applies to them.
                    if chunk.native.is_some() || this.fix(&mut chunk) {
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    return Poll::Ready(this.usage_chunk().map(Ok));
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A stream that ends with `Err(idle)` once its inner stream has kept the consumer
    /// waiting for `idle` (see [`idle_timeout`]).
    pub struct IdleTimeout<S> {
        #[pin]
        inner: S,
        #[pin]
        sleep: tokio::time::Sleep,
        idle: Duration,
        // When the consumer started waiting for the next item (`None` while it is not
        // waiting: the time a slow consumer takes is never counted).
        waiting_since: Option<Instant>,
        fired: bool,
    }
}

/// Bounds every wait for the next item of `inner` by `idle`: when the consumer has been
/// waiting that long, the stream yields `Err(idle)` and ends.
///
/// Unlike wrapping each `next()` in `tokio::time::timeout`, which registers and cancels
/// a timer for every item, one timer serves the whole stream: an item only records
/// nothing, a wait records its start, and the timer is re-armed only when it fires early
/// (at most once per `idle`). Streamed answers have hundreds of events; this keeps the
/// timer wheel out of the per-chunk path.
pub fn idle_timeout<S: Stream>(inner: S, idle: Duration) -> IdleTimeout<S> {
    let now = Instant::now();
    IdleTimeout {
        inner,
        sleep: tokio::time::sleep_until(now + idle),
        idle,
        waiting_since: None,
        fired: false,
    }
}

impl<S: Stream> Stream for IdleTimeout<S> {
    type Item = Result<S::Item, Duration>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.fired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = this.inner.poll_next(cx) {
            *this.waiting_since = None;
            return Poll::Ready(item.map(Ok));
        }
        let since = *this.waiting_since.get_or_insert_with(Instant::now);
        // The timer never fires later than the true deadline (`since + idle` only moves
        // forward), so a firing is checked and, if early, re-armed.
        while this.sleep.as_mut().poll(cx).is_ready() {
            let deadline = since + *this.idle;
            if Instant::now() >= deadline {
                *this.fired = true;
                return Poll::Ready(Some(Err(*this.idle)));
            }
            this.sleep.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::chat::{ChunkChoice, Delta, FinishReason};

    fn chunk(index: u32, role: bool, content: &str, finish: bool, usage: bool) -> ChatChunk {
        let mut c = ChatChunk::new("id1", 7, "m");
        let mut choice = ChunkChoice::new(
            index,
            Delta {
                role: role.then_some(Role::Assistant),
                content: Some(content.into()),
                ..Delta::default()
            },
        );
        choice.finish_reason = finish.then_some(FinishReason::Stop);
        c.choices.push(choice);
        if usage {
            c.usage = Some(Box::new(Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                total_tokens: 3,
                ..Usage::default()
            }));
        }
        c
    }

    async fn run(chunks: Vec<ChatChunk>, include_usage: bool) -> Vec<ChatChunk> {
        let inner: ChunkStream = Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok)));
        normalize(inner, include_usage)
            .map(|r| r.expect("no error"))
            .collect()
            .await
    }

    #[tokio::test]
    async fn openrouter_shape_is_normalized() {
        // Role on every delta; the usage chunk repeats the finish reason.
        let got = run(
            vec![
                chunk(0, true, "Hel", false, false),
                chunk(0, true, "lo", false, false),
                chunk(0, true, "", true, false),
                chunk(0, true, "", true, true),
            ],
            true,
        )
        .await;
        let roles: Vec<_> = got
            .iter()
            .flat_map(|c| &c.choices)
            .filter(|c| c.delta.role.is_some())
            .collect();
        assert_eq!(roles.len(), 1, "{got:?}");
        let finishes = got
            .iter()
            .flat_map(|c| &c.choices)
            .filter(|c| c.finish_reason.is_some())
            .count();
        assert_eq!(finishes, 1, "{got:?}");
        let last = got.last().unwrap();
        assert!(last.choices.is_empty());
        assert_eq!(last.usage.as_ref().unwrap().total_tokens, 3);
        assert!(got[..got.len() - 1].iter().all(|c| c.usage.is_none()));
    }

    #[tokio::test]
    async fn repeated_tool_call_identity_and_changing_ids_are_normalized() {
        use crate::chat::{FunctionCallDelta, ToolCallDelta};
        let frag = |id: &str, name: &str, args: &str| {
            let mut c = chunk(0, true, "", false, false);
            c.id = id.into();
            c.choices[0].delta.content = None;
            c.choices[0].delta.tool_calls = Some(vec![ToolCallDelta {
                index: 0,
                id: Some("call_1".into()),
                kind: Some("function".into()),
                function: Some(FunctionCallDelta {
                    name: Some(name.to_owned()),
                    arguments: Some(args.to_owned()),
                }),
                extra: Default::default(),
            }]);
            c
        };
        let got = run(
            vec![
                frag("a", "weather", ""),
                frag("b", "weather", "{\"city\":"),
                frag("b", "weather", "\"Paris\"}"),
            ],
            false,
        )
        .await;
        let (mut ids, mut names, mut args) = (String::new(), String::new(), String::new());
        for c in &got {
            assert_eq!(c.id, "a", "the first id is kept on every chunk");
            for call in c.choices[0].delta.tool_calls.iter().flatten() {
                ids += call.id.as_deref().unwrap_or("");
                let f = call.function.as_ref().unwrap();
                names += f.name.as_deref().unwrap_or("");
                args += f.arguments.as_deref().unwrap_or("");
            }
        }
        assert_eq!(
            (ids.as_str(), names.as_str(), args.as_str()),
            ("call_1", "weather", "{\"city\":\"Paris\"}")
        );
    }

    #[tokio::test]
    async fn usage_is_dropped_unless_asked_and_role_is_added() {
        let got = run(
            vec![
                chunk(0, false, "x", false, false),
                chunk(0, false, "", true, true),
            ],
            false,
        )
        .await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].choices[0].delta.role, Some(Role::Assistant));
        assert!(got.iter().all(|c| c.usage.is_none()));
    }

    #[tokio::test]
    async fn raw_bytes_survive_only_unchanged_chunks() {
        let with_raw = |mut c: ChatChunk| {
            c.raw = Some(bytes::Bytes::from_static(b"{\"as\":\"sent\"}"));
            c
        };
        // A well-behaved stream: role once, same id, usage last. Every chunk but the
        // usage one (whose usage moves to the end) keeps its bytes.
        let got = run(
            vec![
                with_raw(chunk(0, true, "", false, false)),
                with_raw(chunk(0, false, "Hel", false, false)),
                with_raw(chunk(0, false, "lo", true, false)),
                with_raw({
                    let mut c = ChatChunk::new("id1", 7, "m");
                    c.usage = Some(Box::default());
                    c
                }),
            ],
            true,
        )
        .await;
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[..3].iter().all(|c| c.raw.is_some()), "{got:?}");
        assert!(got[3].raw.is_none() && got[3].usage.is_some());

        // Each fix drops the bytes of the chunk it changed, and only that chunk's.
        let mut new_id = chunk(0, false, "b", false, false);
        new_id.id = "other".into();
        let mut new_model = chunk(0, false, "c", false, false);
        new_model.model = "other".into();
        let mut new_created = chunk(0, false, "d", false, false);
        new_created.created = 8;
        let got = run(
            vec![
                with_raw(chunk(0, false, "a", false, false)), // role added
                with_raw(chunk(0, true, "x", false, false)),  // role repeated
                with_raw(new_id),
                with_raw(new_model),
                with_raw(new_created),
                with_raw(chunk(0, false, "y", false, false)), // unchanged
                with_raw(chunk(0, false, "", true, true)),    // usage moved
                with_raw(chunk(0, true, "z", true, false)),   // repeat after the finish
            ],
            false,
        )
        .await;
        let kept: Vec<bool> = got.iter().map(|c| c.raw.is_some()).collect();
        assert_eq!(
            kept,
            [false, false, false, false, false, true, false, false],
            "{got:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_counts_only_the_consumer_s_waits() {
        use futures_util::StreamExt;
        let idle = Duration::from_secs(10);
        // Items 4 s apart never trip a 10 s bound, however many there are.
        let steady = futures_util::stream::unfold(0u32, |n| async move {
            (n < 6).then_some(())?;
            tokio::time::sleep(Duration::from_secs(4)).await;
            Some((n, n + 1))
        });
        let got: Vec<_> = idle_timeout(steady, idle).collect().await;
        assert_eq!(got, (0..6).map(Ok).collect::<Vec<_>>());

        // A slow consumer (30 s between polls) is not the upstream's silence.
        let ready = futures_util::stream::iter([1, 2, 3]);
        let mut s = Box::pin(idle_timeout(ready, idle));
        let mut got = Vec::new();
        while let Some(item) = s.next().await {
            got.push(item);
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        assert_eq!(got, [Ok(1), Ok(2), Ok(3)]);

        // Silence after an item ends the stream with the bound, once.
        let stalls = futures_util::stream::iter([7]).chain(futures_util::stream::pending());
        let mut s = Box::pin(idle_timeout(stalls, idle));
        assert_eq!(s.next().await, Some(Ok(7)));
        let start = Instant::now();
        assert_eq!(s.next().await, Some(Err(idle)));
        assert_eq!(start.elapsed(), idle);
        assert_eq!(s.next().await, None);
    }
}
