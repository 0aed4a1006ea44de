//! Observers: told when each attempt starts and ends and when a stream ends. Health is
//! the first ([`super::Health`]); telemetry, metrics and the usage ledger plug in
//! here too. Each hook has an empty default, so an observer implements only what it
//! needs; hooks run on the request path and must be cheap — export work belongs on
//! another task.

use std::time::Duration;

use crate::call::Operation;
use crate::chat::{ChatRequest, Completion, FinishReason, Usage};
use crate::embed::Embeddings;
use crate::error::ProviderError;
use crate::health::Health;
use crate::router::Target;
use crate::trace::SpanContext;

/// The request parameters telemetry reports with each attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RequestParams {
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
}

impl RequestParams {
    pub fn of(req: &ChatRequest) -> Self {
        Self {
            max_tokens: req.max_completion_tokens.or(req.max_tokens),
            temperature: req.temperature,
            top_p: req.top_p,
        }
    }
}

/// The attempt an event is about.
#[derive(Debug, Clone, Copy)]
pub struct AttemptInfo<'a> {
    pub request_id: &'a str,
    /// The caller's key name, when keys are configured.
    pub caller: Option<&'a str>,
    /// The route, when the model named one.
    pub route: Option<&'a str>,
    /// The target (its provider, model, policy and health).
    pub target: &'a Target,
    /// What the call asks for: a chat completion or embeddings.
    pub operation: Operation,
    /// 1-based, counting retries and fallbacks.
    pub number: u32,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether this attempt is the single probe of a half-open target.
    pub probe: bool,
    /// Whether this attempt was started as a hedge beside a slow one.
    pub hedge: bool,
    /// This attempt's span, when the call is traced (its parent is the call's span).
    pub trace: Option<SpanContext>,
    /// The request parameters the attempt was sent with (after the target's `params`).
    pub params: RequestParams,
}

impl AttemptInfo<'_> {
    /// The configured provider's name.
    pub fn provider(&self) -> &str {
        &self.target.provider.name
    }

    /// The model sent upstream.
    pub fn model(&self) -> &str {
        &self.target.model
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy)]
pub enum AttemptResult<'a> {
    /// A JSON answer arrived, or a stream reached its first content (its commit point).
    Answered,
    Failed(&'a ProviderError),
    /// The attempt's future was dropped before it ended: it lost a hedge (another
    /// attempt committed first), or the client went away.
    Cancelled {
        hedge_loser: bool,
    },
}

/// The end of an attempt.
#[derive(Debug, Clone, Copy)]
pub struct AttemptEnd<'a> {
    pub result: AttemptResult<'a>,
    /// From the attempt's start.
    pub elapsed: Duration,
    /// Streams: the time to the first content.
    pub first_token: Option<Duration>,
    /// The attempt timed out only because the call's deadline cut its timeout short:
    /// not the target's fault.
    pub by_deadline: bool,
    /// A JSON chat attempt's answer.
    pub answer: Option<&'a Completion>,
    /// An embeddings attempt's answer.
    pub embeddings: Option<&'a Embeddings>,
}

/// The end of a served stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamEnd<'a> {
    /// From the attempt's start to the first content.
    pub first_token: Option<Duration>,
    /// From the attempt's start to the end.
    pub elapsed: Duration,
    /// The upstream's usage, when it reported one (the engine always asks).
    pub usage: Option<&'a Usage>,
    pub finish_reasons: &'a [FinishReason],
    /// The failure that ended the stream after its commit point.
    pub error: Option<&'a ProviderError>,
    /// The client went away before the end.
    pub cancelled: bool,
    /// The stream's `id` and `model`, as its chunks named them.
    pub response_id: Option<&'a str>,
    pub response_model: Option<&'a str>,
}

/// Told about every attempt of every call.
pub trait Observer: Send + Sync + 'static {
    /// An attempt is about to be sent.
    fn attempt_started(&self, _attempt: &AttemptInfo<'_>) {}

    /// An attempt answered or failed.
    fn attempt_ended(&self, _attempt: &AttemptInfo<'_>, _end: &AttemptEnd<'_>) {}

    /// A served stream ended (completed, failed after its commit, or was cancelled).
    fn stream_ended(&self, _attempt: &AttemptInfo<'_>, _end: &StreamEnd<'_>) {}
}

/// Health is the first observer: it learns from every attempt's end and every
/// stream's end.
impl Observer for Health {
    fn attempt_ended(&self, attempt: &AttemptInfo<'_>, end: &AttemptEnd<'_>) {
        let t = attempt.target;
        let h = &t.health;
        match end.result {
            AttemptResult::Answered => {
                if attempt.stream {
                    h.record_commit();
                } else {
                    h.record_success();
                }
                h.record_latency(end.first_token.unwrap_or(end.elapsed));
            }
            AttemptResult::Failed(e) if !end.by_deadline => h.record_failure(
                e.class(),
                e.retry_after(),
                &self.settings.load(),
                attempt.probe,
                t.fallback_on_404,
            ),
            // Cut short by the call's deadline, or never finished: not the target's
            // fault, so only a probe's slot is given back.
            AttemptResult::Failed(_) | AttemptResult::Cancelled { .. } => {
                if attempt.probe {
                    h.release_probe();
                }
            }
        }
    }

    fn stream_ended(&self, attempt: &AttemptInfo<'_>, end: &StreamEnd<'_>) {
        let t = attempt.target;
        match end.error {
            Some(e) => t.health.record_failure(
                e.class(),
                e.retry_after(),
                &self.settings.load(),
                false,
                t.fallback_on_404,
            ),
            None if !end.cancelled => t.health.record_success(),
            None => {}
        }
    }
}
