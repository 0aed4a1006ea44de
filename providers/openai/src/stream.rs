//! The upstream SSE stream → canonical chunks, as each event completes.

use std::time::Duration;

use futures_util::StreamExt;
use modelway_core::chat::ChatChunk;
use modelway_core::kit::UpstreamBody;
use modelway_core::stream::idle_timeout;
use modelway_core::{ChunkStream, ProviderError};

use crate::error::embedded_error;

/// Translates a 2xx event stream; `idle` bounds each wait for the next event.
pub(crate) fn chunks(body: UpstreamBody, idle: Duration) -> ChunkStream {
    Box::pin(Chunks::new(idle).run(body.sse_events()))
}

/// How long the rest of a finished stream's body may take to arrive.
const DRAIN: Duration = Duration::from_secs(5);

/// Tracks which choices finished, to tell a clean end without `[DONE]` (some servers
/// omit it) from a cut stream.
struct Chunks {
    finished_any: bool,
    done: bool,
    /// The longest silence tolerated between events before the stream counts as cut.
    idle: Duration,
}

impl Chunks {
    fn new(idle: Duration) -> Self {
        Self {
            finished_any: false,
            done: false,
            idle,
        }
    }

    fn run(
        self,
        events: impl futures_util::Stream<Item = Result<modelway_core::sse::SseEvent, ProviderError>>
            + Send
            + 'static,
    ) -> impl futures_util::Stream<Item = Result<ChatChunk, ProviderError>> + Send + 'static {
        // One timer bounds every wait for the next event (not one per event).
        let events = Box::pin(idle_timeout(events, self.idle));
        futures_util::stream::unfold((self, events), |(mut st, mut events)| async move {
            if st.done {
                return None;
            }
            loop {
                let next = match events.next().await {
                    Some(Ok(next)) => Some(next),
                    None => None,
                    Some(Err(idle)) => {
                        st.done = true;
                        let msg = format!("no data from upstream for {idle:?}");
                        return Some((Err(ProviderError::StreamCut(msg)), (st, events)));
                    }
                };
                match next {
                    None => {
                        st.done = true;
                        if st.finished_any {
                            return None;
                        }
                        return Some((
                            Err(ProviderError::StreamCut(
                                "stream ended before [DONE]".into(),
                            )),
                            (st, events),
                        ));
                    }
                    Some(Err(e)) => {
                        st.done = true;
                        return Some((Err(e), (st, events)));
                    }
                    Some(Ok(ev)) => {
                        let data = ev.data.trim();
                        if data == "[DONE]" {
                            // Read on to the end of the body (the chunked terminator
                            // follows) so the connection goes back to the pool;
                            // dropping it here would close it and cost the next
                            // request a new connection.
                            tokio::spawn(async move {
                                let drain = async { while events.next().await.is_some() {} };
                                let _ = tokio::time::timeout(DRAIN, drain).await;
                            });
                            return None;
                        }
                        if data.is_empty() {
                            continue;
                        }
                        match serde_json::from_str::<ChatChunk>(data) {
                            Ok(mut chunk) if !carries_error(&chunk) => {
                                if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
                                    st.finished_any = true;
                                }
                                chunk.raw = raw_json(ev.data);
                                return Some((Ok(chunk), (st, events)));
                            }
                            parsed => {
                                st.done = true;
                                let err = match parsed {
                                    // The body ended inside an event: a cut, not garbage.
                                    Err(e) if e.is_eof() => ProviderError::StreamCut(format!(
                                        "stream ended inside an event: {}",
                                        truncate(data)
                                    )),
                                    _ => serde_json::from_str::<serde_json::Value>(data)
                                        .ok()
                                        .and_then(|v| embedded_error(&v, data.as_bytes(), true))
                                        .unwrap_or_else(|| {
                                            ProviderError::Malformed(format!(
                                                "bad stream chunk: {}",
                                                truncate(data)
                                            ))
                                        }),
                                };
                                return Some((Err(err), (st, events)));
                            }
                        }
                    }
                }
            }
        })
    }
}

/// An error reported in a chunk: a top-level `error` (OpenRouter sends it with
/// `choices` and `finish_reason: "error"` after tokens were streamed).
fn carries_error(chunk: &ChatChunk) -> bool {
    chunk.extra.get("error").is_some_and(|e| !e.is_null())
        || chunk.choices.iter().any(|c| {
            c.finish_reason
                .as_ref()
                .is_some_and(|f| f.as_str() == "error")
        })
}

/// The event's data as the chunk's [`raw`](ChatChunk::raw) bytes (moved, not copied),
/// unless it spans several `data:` lines: then it is sent encoded again, on one.
fn raw_json(data: String) -> Option<bytes::Bytes> {
    let start = data.len() - data.trim_start().len();
    let end = data.trim_end().len();
    if memchr::memchr(b'\n', &data.as_bytes()[start..end]).is_some() {
        return None;
    }
    Some(bytes::Bytes::from(data).slice(start..end))
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
