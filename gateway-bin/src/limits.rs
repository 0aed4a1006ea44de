//! The front door's limits: admission control (`[server] max_in_flight`,
//! `max_in_flight_bytes`) and each gateway key's `rpm`, `tpm` and `max_concurrent`.
//!
//! Both run once per call, before the engine. What a call holds — its in-flight place,
//! its key's concurrency slot, the key's tpm to charge with the answer's usage — is a
//! [`Ticket`] that the request's record carries to its very end (the last byte of a
//! stream, or the client going away), so nothing is given back early or leaked.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body as HttpBody, Frame, SizeHint};
use modelway_core::chat::TokenCounts;
use modelway_core::config::{ClientKey, KeyBucket};
use modelway_core::limits::{BucketState, Limiter, Take, TakeKind, UpstreamLimits, Verdict};
use modelway_core::GatewayError;

/// Requests and request-body bytes held at once, process-wide.
#[derive(Debug, Default)]
pub struct Admission {
    in_flight: AtomicUsize,
    bytes: AtomicU64,
}

/// How long a client refused for load is told to wait.
const OVERLOADED_RETRY: Duration = Duration::from_secs(1);

fn overloaded(what: &str) -> GatewayError {
    let mut e = GatewayError::unavailable(format!(
        "The gateway is at its limit of {what}; retry shortly."
    ))
    .with_code("overloaded");
    e.retry_after = Some(OVERLOADED_RETRY);
    e
}

impl Admission {
    /// A place among `max` requests in flight, or 503.
    pub fn enter(self: &Arc<Self>, max: usize) -> Result<InFlight, GatewayError> {
        let mut cur = self.in_flight.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                return Err(overloaded(&format!("{max} requests in flight")));
            }
            match self.in_flight.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(InFlight(self.clone())),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Room for `n` more body bytes under `max`, or `false`.
    fn reserve(&self, n: u64, max: u64) -> bool {
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |cur| {
                cur.checked_add(n).filter(|&t| t <= max)
            })
            .is_ok()
    }

    fn unreserve(&self, n: u64) {
        let _ = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |cur| {
                Some(cur.saturating_sub(n))
            });
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Body bytes held now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The bytes a request body holds, starting with `declared` (its
    /// `Content-Length`), or 503 when they do not fit.
    pub fn hold_body(self: &Arc<Self>, declared: u64, max: u64) -> Result<BodyBytes, GatewayError> {
        if !self.reserve(declared, max) {
            return Err(overloaded("request bytes in flight"));
        }
        Ok(BodyBytes {
            admission: self.clone(),
            held: declared,
            max,
        })
    }
}

/// One request in flight; dropped when it ends.
#[derive(Debug)]
pub struct InFlight(Arc<Admission>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Body bytes a request holds; given back when dropped.
#[derive(Debug)]
pub struct BodyBytes {
    admission: Arc<Admission>,
    held: u64,
    max: u64,
}

impl BodyBytes {
    /// Grows the hold to `total` bytes (a body longer than it declared, or one without
    /// a `Content-Length`); `false` when that does not fit.
    fn grow_to(&mut self, total: u64) -> bool {
        if total <= self.held {
            return true;
        }
        let more = total - self.held;
        if !self.admission.reserve(more, self.max) {
            return false;
        }
        self.held = total;
        true
    }
}

impl Drop for BodyBytes {
    fn drop(&mut self) {
        self.admission.unreserve(self.held);
    }
}

/// The error a [`Metered`] body ends with when the bytes budget is spent.
#[derive(Debug)]
pub struct OverBudget;

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the gateway's request bytes budget is spent")
    }
}

impl std::error::Error for OverBudget {}

/// A request body whose bytes are counted against the admission budget as they
/// arrive.
pub struct Metered<'h, B> {
    inner: B,
    hold: &'h mut BodyBytes,
    seen: u64,
}

impl<'h, B> Metered<'h, B> {
    pub fn new(inner: B, hold: &'h mut BodyBytes) -> Self {
        Self {
            inner,
            hold,
            seen: 0,
        }
    }
}

impl<B> HttpBody for Metered<'_, B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.seen += d.len() as u64;
                    if !this.hold.grow_to(this.seen) {
                        return Poll::Ready(Some(Err(Box::new(OverBudget))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads and discards what is left of a refused request's body in the background,
/// bounded in bytes and time, so the client finishes its upload and reads the
/// refusal instead of a reset connection. Nothing is held.
pub fn drain(body: hyper::body::Incoming, max_bytes: u64) {
    tokio::spawn(async move {
        let mut body = body;
        let mut seen = 0u64;
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
                if let Some(d) = frame.data_ref() {
                    seen += d.len() as u64;
                    if seen > max_bytes {
                        break;
                    }
                }
            }
        })
        .await;
    });
}

/// What a call holds until its last byte: its place in flight, its key's slot, and
/// the key's tpm, charged with the answer's real usage.
pub struct Ticket {
    _in_flight: Option<InFlight>,
    key: Option<KeyHold>,
    /// The call's token estimate: charged instead of the usage when an answer began
    /// but its usage never came (a client that left mid-stream).
    estimate: u64,
}

struct KeyHold {
    limiter: Arc<Limiter>,
    /// The key's bucket names (see [`KeyBucket`]).
    buckets: Arc<[String; 3]>,
    tpm: Option<u64>,
    /// The concurrency slot's id (the request id).
    slot: Option<String>,
}

impl Ticket {
    /// A ticket holding only a place in flight, for a call estimated at `estimate`
    /// tokens.
    pub fn new(in_flight: InFlight, estimate: u64) -> Self {
        Self {
            _in_flight: Some(in_flight),
            key: None,
            estimate,
        }
    }

    /// Ends the call: charges the key's tpm with the tokens the answer used (input and
    /// output) — or, when an upstream answered but no usage arrived (the client left
    /// mid-stream), with the call's estimate, so leaving early is no way around tpm —
    /// and gives the slot back.
    pub fn settle(mut self, tokens: Option<TokenCounts>, answered: bool) {
        if let Some(k) = self.key.take() {
            let used = match tokens {
                Some(t) => Some(t.input + t.output),
                None => answered.then_some(self.estimate),
            };
            if let (Some(per_minute), Some(used)) = (k.tpm, used) {
                k.limiter
                    .charge(k.buckets[KeyBucket::Tpm as usize].clone(), per_minute, used);
            }
            if let Some(id) = k.slot {
                k.limiter
                    .release(k.buckets[KeyBucket::Concurrent as usize].clone(), id);
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            if let Some(id) = k.slot {
                k.limiter
                    .release(k.buckets[KeyBucket::Concurrent as usize].clone(), id);
            }
        }
    }
}

/// The `x-ratelimit-*` headers of a limited key's response (OpenAI's names).
#[derive(Debug, Clone, Default)]
pub struct RateHeaders {
    requests: Option<BucketState>,
    tokens: Option<BucketState>,
}

impl RateHeaders {
    /// Adds the headers to a response.
    pub fn apply(&self, h: &mut HeaderMap) {
        const NAMES: [[HeaderName; 3]; 2] = [
            [
                HeaderName::from_static("x-ratelimit-limit-requests"),
                HeaderName::from_static("x-ratelimit-remaining-requests"),
                HeaderName::from_static("x-ratelimit-reset-requests"),
            ],
            [
                HeaderName::from_static("x-ratelimit-limit-tokens"),
                HeaderName::from_static("x-ratelimit-remaining-tokens"),
                HeaderName::from_static("x-ratelimit-reset-tokens"),
            ],
        ];
        for (state, [limit, remaining, reset]) in
            [self.requests, self.tokens].into_iter().zip(NAMES)
        {
            let Some(s) = state else { continue };
            h.insert(limit, HeaderValue::from(s.limit));
            h.insert(remaining, HeaderValue::from(s.remaining));
            if let Ok(v) = HeaderValue::from_str(&go_duration(s.reset)) {
                h.insert(reset, v);
            }
        }
    }

    /// Adds the headers in Anthropic's names (`anthropic-ratelimit-*`, resets as RFC
    /// 3339 times), for Messages clients: Anthropic's SDKs and Claude Code read these.
    pub fn apply_anthropic(&self, h: &mut HeaderMap) {
        const NAMES: [[HeaderName; 3]; 2] = [
            [
                HeaderName::from_static("anthropic-ratelimit-requests-limit"),
                HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
                HeaderName::from_static("anthropic-ratelimit-requests-reset"),
            ],
            [
                HeaderName::from_static("anthropic-ratelimit-tokens-limit"),
                HeaderName::from_static("anthropic-ratelimit-tokens-remaining"),
                HeaderName::from_static("anthropic-ratelimit-tokens-reset"),
            ],
        ];
        let now = modelway_core::civil::now_ms();
        for (state, [limit, remaining, reset]) in
            [self.requests, self.tokens].into_iter().zip(NAMES)
        {
            let Some(s) = state else { continue };
            h.insert(limit, HeaderValue::from(s.limit));
            h.insert(remaining, HeaderValue::from(s.remaining));
            // Rounded up to the second: a reset is never announced early.
            let at = now + i64::try_from(s.reset.as_millis()).unwrap_or(0) + 999;
            if let Ok(v) = HeaderValue::from_str(&modelway_core::civil::rfc3339_of(at)) {
                h.insert(reset, v);
            }
        }
    }

    /// Folds in the limits the serving upstream reported: per dimension, whichever
    /// leaves the client less room (the gateway's own when it is tighter).
    pub fn upstream(&mut self, limits: Option<UpstreamLimits>) {
        let Some(u) = limits else { return };
        for (mine, theirs) in [
            (&mut self.requests, u.requests),
            (&mut self.tokens, u.tokens),
        ] {
            match (mine.as_ref(), theirs) {
                (_, None) => {}
                (None, Some(t)) => *mine = Some(t),
                (Some(m), Some(t)) if t.remaining < m.remaining => *mine = Some(t),
                _ => {}
            }
        }
    }
}

/// A duration as OpenAI writes its resets (Go's format): `20ms`, `1.5s`, `6m0s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        let s = format!("{:.3}", secs);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return format!("{s}s");
    }
    let whole = d.as_secs();
    let (h, m, s) = (whole / 3600, (whole % 3600) / 60, whole % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else {
        format!("{m}m{s}s")
    }
}

/// Checks `key`'s limits for one call (one request, its token `estimate`, one
/// concurrency slot) in a single store round trip. `Ok`: the hold to settle at the
/// end and the headers to send; `Err`: the 429 (or 503 when the store is down under
/// `on_store_error = "deny"`), with the headers.
pub async fn check_key(
    limiter: &Arc<Limiter>,
    key: &ClientKey,
    request_id: &str,
    estimate: u64,
    ticket: &mut Ticket,
) -> Result<RateHeaders, (GatewayError, RateHeaders)> {
    let l = key.limits;
    if !l.any() {
        return Ok(RateHeaders::default());
    }
    // At most three takes, on the stack: which bucket each one is says what its state
    // means for the headers and a refusal.
    let all = [
        l.rpm.map(|per_minute| {
            (
                KeyBucket::Rpm,
                TakeKind::Rate {
                    per_minute,
                    cost: 1,
                },
            )
        }),
        l.tpm.map(|per_minute| {
            let cost = estimate;
            (KeyBucket::Tpm, TakeKind::Peek { per_minute, cost })
        }),
        l.max_concurrent.map(|max| {
            (
                KeyBucket::Concurrent,
                TakeKind::Slot {
                    max,
                    id: request_id,
                },
            )
        }),
    ];
    let unused = Take {
        bucket: "",
        kind: TakeKind::Peek {
            per_minute: 1,
            cost: 0,
        },
    };
    let (mut takes, mut what, mut n) = ([unused; 3], [KeyBucket::Rpm; 3], 0);
    for (b, kind) in all.into_iter().flatten() {
        takes[n] = Take {
            bucket: key.bucket(b),
            kind,
        };
        what[n] = b;
        n += 1;
    }
    let (takes, what) = (&takes[..n], &what[..n]);
    let headers_of = |states: &[BucketState]| {
        let mut h = RateHeaders::default();
        for (s, w) in states.iter().zip(what) {
            match w {
                KeyBucket::Rpm => h.requests = Some(*s),
                KeyBucket::Tpm => h.tokens = Some(*s),
                KeyBucket::Concurrent => {}
            }
        }
        h
    };
    match limiter.check(takes).await {
        Verdict::Allowed(d) => {
            ticket.key = Some(KeyHold {
                limiter: limiter.clone(),
                buckets: key.buckets(),
                tpm: l.tpm,
                slot: l.max_concurrent.map(|_| request_id.to_owned()),
            });
            Ok(headers_of(&d.states))
        }
        Verdict::Unchecked => {
            // The store is down and the policy is to serve: tokens are still charged
            // when it comes back, but no slot was taken.
            ticket.key = Some(KeyHold {
                limiter: limiter.clone(),
                buckets: key.buckets(),
                tpm: l.tpm,
                slot: None,
            });
            Ok(RateHeaders::default())
        }
        Verdict::Unavailable => {
            let mut e = GatewayError::unavailable(
                "The gateway cannot check this key's limits right now (its limit store is unreachable); retry shortly.",
            )
            .with_code("limits_unavailable");
            e.retry_after = Some(OVERLOADED_RETRY);
            Err((e, RateHeaders::default()))
        }
        Verdict::Denied(d) => {
            let i = d.denied_by.unwrap_or(0);
            let (message, code) = match what.get(i) {
                Some(KeyBucket::Rpm) => (
                    format!(
                        "Rate limit reached for key `{}`: {} requests per minute.",
                        key.name,
                        l.rpm.unwrap_or(0)
                    ),
                    "rate_limit_exceeded",
                ),
                Some(KeyBucket::Tpm) => (
                    format!(
                        "Rate limit reached for key `{}`: {} tokens per minute (this request needs about {estimate}).",
                        key.name,
                        l.tpm.unwrap_or(0)
                    ),
                    "tokens_rate_limit_exceeded",
                ),
                _ => (
                    format!(
                        "Too many concurrent requests for key `{}`: at most {}.",
                        key.name,
                        l.max_concurrent.unwrap_or(0)
                    ),
                    "concurrency_limit_exceeded",
                ),
            };
            let mut e = GatewayError::rate_limited(message).with_code(code);
            e.retry_after = d.retry_after;
            Err((e, headers_of(&d.states)))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn resets_read_like_openais() {
        assert_eq!(go_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(go_duration(Duration::from_secs(3725)), "1h2m5s");
    }

    #[test]
    fn the_tighter_of_ours_and_the_upstreams_is_sent() {
        let st = |remaining| BucketState {
            limit: 100,
            remaining,
            reset: Duration::from_secs(1),
        };
        let mut h = RateHeaders {
            requests: Some(st(50)),
            tokens: None,
        };
        h.upstream(Some(UpstreamLimits {
            requests: Some(st(70)),
            tokens: Some(st(9)),
        }));
        assert_eq!(h.requests.unwrap().remaining, 50, "ours is tighter");
        assert_eq!(h.tokens.unwrap().remaining, 9, "we set none: theirs");
        h.upstream(Some(UpstreamLimits {
            requests: Some(st(3)),
            tokens: None,
        }));
        assert_eq!(h.requests.unwrap().remaining, 3);
        let mut map = HeaderMap::new();
        h.apply(&mut map);
        assert_eq!(map["x-ratelimit-remaining-requests"], "3");
        assert_eq!(map["x-ratelimit-reset-tokens"], "1s");
    }

    #[test]
    fn admission_counts_and_gives_back() {
        let a = Arc::new(Admission::default());
        let one = a.enter(2).unwrap();
        let _two = a.enter(2).unwrap();
        assert_eq!(a.enter(2).unwrap_err().status, 503);
        drop(one);
        let _three = a.enter(2).unwrap();
        let mut held = a.hold_body(60, 100).unwrap();
        assert!(a.hold_body(50, 100).is_err());
        assert!(held.grow_to(90));
        assert!(!held.grow_to(101));
        drop(held);
        assert_eq!(a.bytes(), 0);
    }
}
