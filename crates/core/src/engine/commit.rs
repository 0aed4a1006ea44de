//! The stream commit point, and the observed stream.
//!
//! A streamed answer is *committed* when its first content arrives (a text, refusal,
//! reasoning or tool-call delta, or a finish reason). Until then nothing of it leaves
//! the engine: role-only and empty chunks are held and sent, in order, with the first
//! content. So every failure before that point — an error event inside a `200`
//! stream, a cut, a stream that ends with nothing, a first token that comes too late —
//! is an attempt failure like any other, and the engine falls back invisibly.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use futures_util::{Stream, StreamExt};

use crate::chat::{ChatChunk, FinishReason, Usage};
use crate::error::ProviderError;
use crate::provider::ChunkStream;
use crate::router::Target;

use super::observer::{AttemptInfo, Observer, StreamEnd};

/// Most chunks held before a commit: a stream sending only empty chunks is committed
/// then rather than buffered without bound.
const MAX_HELD: usize = 64;

/// Delta fields besides `content`, `refusal` and `tool_calls` that carry content.
const CONTENT_EXTRAS: &[&str] = &[
    "reasoning_content",
    "reasoning",
    "reasoning_details",
    "thinking_blocks",
    "function_call",
    "audio",
];

/// Whether a chunk carries something the client must see as the answer.
pub fn has_content(chunk: &ChatChunk) -> bool {
    chunk.choices.iter().any(|c| {
        let d = &c.delta;
        c.finish_reason.is_some()
            || d.content.as_deref().is_some_and(|s| !s.is_empty())
            || d.refusal.as_deref().is_some_and(|s| !s.is_empty())
            || d.tool_calls.as_ref().is_some_and(|t| !t.is_empty())
            || CONTENT_EXTRAS.iter().any(|k| {
                d.extra.get(*k).is_some_and(|v| match v {
                    serde_json::Value::Null => false,
                    serde_json::Value::String(s) => !s.is_empty(),
                    serde_json::Value::Array(a) => !a.is_empty(),
                    _ => true,
                })
            })
    })
}

/// Waits for the first content of `stream`, by `until` when set. Returns the stream
/// with the held chunks in front.
pub(crate) async fn first_content(
    mut stream: ChunkStream,
    until: Option<(tokio::time::Instant, Duration)>,
) -> Result<ChunkStream, ProviderError> {
    let mut held = Vec::new();
    loop {
        let next = match until {
            Some((at, limit)) => tokio::time::timeout_at(at, stream.next())
                .await
                .map_err(|_| ProviderError::FirstTokenTimeout(limit))?,
            None => stream.next().await,
        };
        match next {
            None => {
                return Err(ProviderError::StreamCut(
                    "the stream ended before any content".to_owned(),
                ))
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(chunk)) => {
                let commit = has_content(&chunk) || held.len() >= MAX_HELD;
                held.push(chunk);
                if commit {
                    return Ok(Box::pin(
                        futures_util::stream::iter(held.into_iter().map(Ok)).chain(stream),
                    ));
                }
            }
        }
    }
}

/// The owned facts of the attempt a served stream came from.
pub(crate) struct StreamOrigin {
    pub request_id: String,
    pub caller: Option<String>,
    pub route: Option<String>,
    pub target: Target,
    pub number: u32,
    pub probe: bool,
    pub hedge: bool,
    pub trace: Option<crate::trace::SpanContext>,
    pub params: super::observer::RequestParams,
    pub started: Instant,
    pub first_token: Option<Duration>,
}

/// Tells observers how a served stream ended: its usage, finish reasons, error, or
/// that the client went away.
pub(crate) struct Observed {
    inner: ChunkStream,
    observers: Arc<[Arc<dyn Observer>]>,
    origin: StreamOrigin,
    usage: Option<Usage>,
    finish: Vec<FinishReason>,
    /// The first chunk's `id` and `model`.
    named: Option<(ByteString, ByteString)>,
    done: bool,
}

impl Observed {
    pub(crate) fn wrap(
        inner: ChunkStream,
        observers: Arc<[Arc<dyn Observer>]>,
        origin: StreamOrigin,
    ) -> ChunkStream {
        Box::pin(Observed {
            inner,
            observers,
            origin,
            usage: None,
            finish: Vec::new(),
            named: None,
            done: false,
        })
    }

    fn end(&mut self, error: Option<&ProviderError>, cancelled: bool) {
        if self.done {
            return;
        }
        self.done = true;
        let o = &self.origin;
        let info = AttemptInfo {
            request_id: &o.request_id,
            caller: o.caller.as_deref(),
            route: o.route.as_deref(),
            target: &o.target,
            // Only chat completions stream.
            operation: crate::call::Operation::Chat,
            number: o.number,
            stream: true,
            probe: o.probe,
            hedge: o.hedge,
            trace: o.trace,
            params: o.params,
        };
        let end = StreamEnd {
            first_token: o.first_token,
            elapsed: o.started.elapsed(),
            usage: self.usage.as_ref(),
            finish_reasons: &self.finish,
            error,
            cancelled,
            response_id: self.named.as_ref().map(|n| &*n.0),
            response_model: self.named.as_ref().map(|n| &*n.1),
        };
        for obs in self.observers.iter() {
            obs.stream_ended(&info, &end);
        }
    }
}

impl Stream for Observed {
    type Item = Result<ChatChunk, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.end(None, false);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.end(Some(&e), false);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(chunk))) => {
                if this.named.is_none() && !chunk.id.is_empty() {
                    this.named = Some((chunk.id.clone(), chunk.model.clone()));
                }
                if let Some(u) = &chunk.usage {
                    this.usage = Some(Usage::clone(u));
                }
                for c in &chunk.choices {
                    if let Some(f) = &c.finish_reason {
                        this.finish.push(f.clone());
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.end(None, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ChunkChoice, Delta, Role};

    fn chunk(delta: Delta, finish: Option<&str>) -> ChatChunk {
        let mut c = ChatChunk::new("id", 1, "m");
        let mut choice = ChunkChoice::new(0, delta);
        choice.finish_reason = finish.map(FinishReason::from);
        c.choices.push(choice);
        c
    }

    #[test]
    fn what_counts_as_content() {
        let role = Delta {
            role: Some(Role::Assistant),
            content: Some(ByteString::new()),
            ..Delta::default()
        };
        assert!(!has_content(&chunk(role.clone(), None)));
        assert!(!has_content(&ChatChunk::new("id", 1, "m")), "usage-only");
        let text = Delta {
            content: Some("hi".into()),
            ..Delta::default()
        };
        assert!(has_content(&chunk(text, None)));
        assert!(has_content(&chunk(role, Some("stop"))));
        let mut reasoning = Delta::default();
        reasoning
            .extra
            .insert("reasoning_content".into(), serde_json::json!("hmm"));
        assert!(has_content(&chunk(reasoning, None)));
    }

    #[tokio::test]
    async fn held_chunks_come_first_and_failures_before_content_are_errors() {
        let role = chunk(
            Delta {
                role: Some(Role::Assistant),
                ..Delta::default()
            },
            None,
        );
        let text = chunk(
            Delta {
                content: Some("hi".into()),
                ..Delta::default()
            },
            None,
        );
        let s: ChunkStream = Box::pin(futures_util::stream::iter(vec![
            Ok(role.clone()),
            Ok(text.clone()),
        ]));
        let out: Vec<_> = first_content(s, None).await.unwrap().collect().await;
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_ref().unwrap(), &role);

        let s: ChunkStream = Box::pin(futures_util::stream::iter(vec![
            Ok(role.clone()),
            Err(ProviderError::StreamCut("x".into())),
        ]));
        assert!(matches!(
            first_content(s, None).await,
            Err(ProviderError::StreamCut(_))
        ));
        let s: ChunkStream = Box::pin(futures_util::stream::iter(vec![Ok(role)]));
        assert!(
            first_content(s, None).await.is_err(),
            "ended without content"
        );
    }
}
