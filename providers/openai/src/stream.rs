//! The upstream SSE stream → canonical chunks, as each event completes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use modelway_core::chat::{ChatChunk, ChunkNames};
use modelway_core::kit::UpstreamBody;
use modelway_core::sse::SseEvent;
use modelway_core::stream::{idle_timeout, IdleTimeout};
use modelway_core::{ByteString, ChunkStream, ProviderError};

use crate::error::embedded_error;

/// Translates a 2xx event stream; `idle` bounds each wait for the next event.
pub(crate) fn chunks(body: UpstreamBody, idle: Duration) -> ChunkStream {
    Box::pin(Chunks {
        // One timer bounds every wait for the next event (not one per event).
        events: Some(Box::pin(idle_timeout(body.sse_events(), idle))),
        finished_any: false,
        names: ChunkNames::default(),
    })
}

/// How long the rest of a finished stream's body may take to arrive.
const DRAIN: Duration = Duration::from_secs(5);

/// The events of a stream, each bounded by the idle timeout.
type Events<S> = Pin<Box<IdleTimeout<S>>>;

/// The chunk stream, polled by hand (an `unfold` would move its state through a new
/// future for every event). Tracks which choices finished, to tell a clean end
/// without `[DONE]` (some servers omit it) from a cut stream.
struct Chunks<S> {
    /// `None` once the stream has ended.
    events: Option<Events<S>>,
    finished_any: bool,
    /// The stream's id, model and fingerprint, shared by the chunks that repeat them.
    names: ChunkNames,
}

impl<S> Stream for Chunks<S>
where
    S: Stream<Item = Result<SseEvent, ProviderError>> + Send + 'static,
{
    type Item = Result<ChatChunk, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let st = self.get_mut();
        loop {
            let Some(events) = st.events.as_mut() else {
                return Poll::Ready(None);
            };
            let ev = match events.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(Ok(ev)))) => ev,
                Poll::Ready(Some(Err(idle))) => {
                    st.events = None;
                    let msg = format!("no data from upstream for {idle:?}");
                    return Poll::Ready(Some(Err(ProviderError::StreamCut(msg))));
                }
                Poll::Ready(Some(Ok(Err(e)))) => {
                    st.events = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    st.events = None;
                    if st.finished_any {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(ProviderError::StreamCut(
                        "stream ended before [DONE]".into(),
                    ))));
                }
            };
            let data = ev.data.trim();
            if data == "[DONE]" {
                // Read on to the end of the body (the chunked terminator follows) so
                // the connection goes back to the pool; dropping it here would close
                // it and cost the next request a new connection.
                if let Some(mut events) = st.events.take() {
                    tokio::spawn(async move {
                        let drain = async { while events.next().await.is_some() {} };
                        let _ = tokio::time::timeout(DRAIN, drain).await;
                    });
                }
                return Poll::Ready(None);
            }
            if data.is_empty() {
                continue;
            }
            match ChatChunk::from_event(&ev.data, &mut st.names) {
                Ok(mut chunk) if !carries_error(&chunk) => {
                    if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
                        st.finished_any = true;
                    }
                    chunk.raw = raw_json(&ev.data, data);
                    return Poll::Ready(Some(Ok(chunk)));
                }
                parsed => {
                    st.events = None;
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
                    return Poll::Ready(Some(Err(err)));
                }
            }
        }
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

/// The event's data as the chunk's [`raw`](ChatChunk::raw) bytes, trimmed: shared with
/// the bytes read from the upstream, not copied. `None` when it spans several `data:`
/// lines: then it is sent encoded again, on one.
fn raw_json(data: &ByteString, trimmed: &str) -> Option<bytes::Bytes> {
    if memchr::memchr(b'\n', trimmed.as_bytes()).is_some() {
        return None;
    }
    Some(data.as_bytes().slice_ref(trimmed.as_bytes()))
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
