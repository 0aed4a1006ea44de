//! Rate and concurrency limits: the [`LimitStore`] trait, its in-process
//! [`MemoryStore`] and shared [`RedisStore`], and the [`Limiter`] that the binary (per
//! gateway key) and the engine (per provider quota) check against.
//!
//! Rates are GCRA buckets that refill continuously over a minute: `rpm = 600` lets a
//! full minute's 600 requests through at once and then one every 100 ms. A check takes
//! from every bucket it names or from none (a request denied by its tpm does not spend
//! an rpm unit). Tokens are a pre-check at the start of a call (would the request's
//! estimate fit?) and a [`Limiter::charge`] of the real usage when the answer is in,
//! which may leave a bucket in debt that later requests wait out.
//!
//! A store that cannot answer within `[limits] timeout` is an error; the [`Limiter`]
//! turns it into `on_store_error`, logs the state change once and reports it for
//! `/admin/health`.

mod memory;
mod redis;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

pub use memory::MemoryStore;
pub use redis::RedisStore;

use crate::config::{LimitsConfig, OnStoreError, StoreConfig};

/// The window every rate is expressed over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// One bucket a check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take<'a> {
    /// The bucket's name, unique across the store (`key:web:rpm`).
    pub bucket: &'a str,
    pub kind: TakeKind<'a>,
}

/// What a check does with its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeKind<'a> {
    /// Take `cost` units of a per-minute rate, if they fit.
    Rate { per_minute: u64, cost: u64 },
    /// Whether `cost` units of a per-minute rate would fit; takes nothing (tokens,
    /// charged from the answer's usage afterwards).
    Peek { per_minute: u64, cost: u64 },
    /// One of `max` concurrent slots, held as `id` until [`LimitStore::release`].
    Slot { max: u64, id: &'a str },
}

impl TakeKind<'_> {
    /// The bucket's limit, for the `x-ratelimit-limit-*` headers.
    pub fn limit(&self) -> u64 {
        match *self {
            Self::Rate { per_minute, .. } | Self::Peek { per_minute, .. } => per_minute,
            Self::Slot { max, .. } => max,
        }
    }
}

/// A bucket after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    pub limit: u64,
    /// Units left now (after this check's take, when it was allowed).
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// A check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `None`: allowed, every bucket taken from. `Some(i)`: the `i`th take did not
    /// fit and nothing was taken.
    pub denied_by: Option<usize>,
    /// When the denying bucket would fit the request (denied checks only).
    pub retry_after: Option<Duration>,
    /// One per take, in order.
    pub states: Vec<BucketState>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.denied_by.is_none()
    }
}

/// A store that could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Where limit counters live. Every method is one atomic step in the store.
#[async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// Checks every take and, if all fit, applies them all; else applies none.
    async fn check(&self, takes: &[Take<'_>]) -> Result<Decision, StoreError>;

    /// Takes `cost` units from a rate bucket whether or not they fit (the usage of an
    /// answer already given), leaving it in debt if need be.
    async fn charge(&self, bucket: &str, per_minute: u64, cost: u64) -> Result<(), StoreError>;

    /// Gives back the slot `id` of a concurrency bucket.
    async fn release(&self, bucket: &str, id: &str) -> Result<(), StoreError>;

    /// `memory`, `redis`.
    fn kind(&self) -> &'static str;

    /// Whether calls complete without I/O (then charges and releases run inline
    /// instead of on a spawned task).
    fn is_local(&self) -> bool {
        false
    }
}

/// GCRA arithmetic shared by the stores, in nanoseconds. A bucket's state is its
/// theoretical arrival time (TAT): `now + debt`, where a full bucket has none.
pub(crate) mod gcra {
    use super::WINDOW;

    /// Nanoseconds one unit adds (the emission interval).
    pub(crate) fn interval(per_minute: u64) -> u64 {
        (WINDOW.as_nanos() as u64 / per_minute.max(1)).max(1)
    }

    /// The outcome of taking `cost` at `now` from a bucket at `tat`: `Ok(new_tat)`, or
    /// `Err(nanoseconds until it would fit)`. A cost above the whole bucket is treated
    /// as the whole bucket, so it is admitted when the bucket is full.
    pub(crate) fn take(tat: u64, now: u64, per_minute: u64, cost: u64) -> Result<u64, u64> {
        let t = interval(per_minute);
        let window = WINDOW.as_nanos() as u64;
        let cost = cost.min(per_minute);
        let new_tat = tat.max(now).saturating_add(cost.saturating_mul(t));
        let ahead = new_tat - now;
        if ahead <= window {
            Ok(new_tat)
        } else {
            Err(ahead - window)
        }
    }

    /// An unconditional charge; debt is capped at an hour.
    pub(crate) fn charge(tat: u64, now: u64, per_minute: u64, cost: u64) -> u64 {
        let t = interval(per_minute);
        let cap = now.saturating_add(3_600_000_000_000);
        tat.max(now).saturating_add(cost.saturating_mul(t)).min(cap)
    }

    /// (remaining units, nanoseconds until full) of a bucket at `tat`.
    pub(crate) fn state(tat: u64, now: u64, per_minute: u64) -> (u64, u64) {
        let t = interval(per_minute);
        let window = WINDOW.as_nanos() as u64;
        let ahead = tat.saturating_sub(now);
        let remaining = window.saturating_sub(ahead) / t;
        (remaining.min(per_minute), ahead)
    }
}

/// What [`Limiter::check`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Within every limit (the states are for the headers).
    Allowed(Decision),
    /// Over a limit.
    Denied(Decision),
    /// The store did not answer and `on_store_error = "allow"`.
    Unchecked,
    /// The store did not answer and `on_store_error = "deny"`.
    Unavailable,
}

/// The store's state, for `/admin/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    pub kind: &'static str,
    /// The store as configured, password redacted.
    pub store: String,
    pub healthy: bool,
    pub on_store_error: &'static str,
    /// The last failure, while unhealthy.
    pub error: Option<String>,
    pub since: Option<SystemTime>,
}

/// A store with the `[limits]` policy around it: a timeout on every call,
/// `on_store_error`, and a health state logged once per change.
pub struct Limiter {
    store: Arc<dyn LimitStore>,
    config: LimitsConfig,
    down: AtomicBool,
    last_error: Mutex<Option<(String, SystemTime)>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("store", &self.config.store)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// The limiter `[limits]` describes. A Redis store connects lazily: an unreachable
    /// Redis at start is the same `on_store_error` as one that goes away later.
    pub fn from_config(config: &LimitsConfig) -> Result<Self, StoreError> {
        let store: Arc<dyn LimitStore> = match &config.store {
            StoreConfig::Memory => Arc::new(MemoryStore::new()),
            StoreConfig::Redis(url) => Arc::new(RedisStore::open(url, config.timeout)?),
        };
        Ok(Self::new(store, config.clone()))
    }

    /// A limiter over `store`.
    pub fn new(store: Arc<dyn LimitStore>, config: LimitsConfig) -> Self {
        Self {
            store,
            config,
            down: AtomicBool::new(false),
            last_error: Mutex::new(None),
        }
    }

    /// An in-process limiter with the default policy.
    pub fn memory() -> Self {
        Self::new(Arc::new(MemoryStore::new()), LimitsConfig::default())
    }

    /// The `[limits]` this limiter was built from.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Checks `takes` (all or nothing), bounded by `[limits] timeout`.
    pub async fn check(&self, takes: &[Take<'_>]) -> Verdict {
        if takes.is_empty() {
            return Verdict::Allowed(Decision {
                denied_by: None,
                retry_after: None,
                states: Vec::new(),
            });
        }
        let result = if self.store.is_local() {
            self.store.check(takes).await
        } else {
            match tokio::time::timeout(self.config.timeout, self.store.check(takes)).await {
                Ok(r) => r,
                Err(_) => Err(StoreError(format!(
                    "no answer within {:?}",
                    self.config.timeout
                ))),
            }
        };
        match result {
            Ok(d) => {
                self.healthy();
                if d.allowed() {
                    Verdict::Allowed(d)
                } else {
                    Verdict::Denied(d)
                }
            }
            Err(e) => {
                self.failed(&e);
                match self.config.on_store_error {
                    OnStoreError::Allow => Verdict::Unchecked,
                    OnStoreError::Deny => Verdict::Unavailable,
                }
            }
        }
    }

    /// Charges `cost` units to a rate bucket, off the request path when the store is
    /// remote.
    pub fn charge(self: &Arc<Self>, bucket: String, per_minute: u64, cost: u64) {
        if cost == 0 {
            return;
        }
        self.background(move |store| {
            Box::pin(async move { store.charge(&bucket, per_minute, cost).await })
        });
    }

    /// Releases a concurrency slot, off the request path when the store is remote.
    pub fn release(self: &Arc<Self>, bucket: String, id: String) {
        self.background(move |store| Box::pin(async move { store.release(&bucket, &id).await }));
    }

    fn background(
        self: &Arc<Self>,
        op: impl FnOnce(
                Arc<dyn LimitStore>,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>,
            > + Send
            + 'static,
    ) {
        let fut = op(self.store.clone());
        if self.store.is_local() {
            // Memory: completes on its first poll.
            let _ = futures_util::FutureExt::now_or_never(fut);
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        rt.spawn(async move {
            // Longer than a check's bound: nobody waits on it, and a release lost to a
            // blip would hold a slot until its lease runs out.
            match tokio::time::timeout(this.config.timeout * 20, fut).await {
                Ok(Ok(())) => this.healthy(),
                Ok(Err(e)) => this.failed(&e),
                Err(_) => this.failed(&StoreError("no answer to a charge or release".into())),
            }
        });
    }

    /// A store call succeeded. Lock-free while healthy (every check comes here); a
    /// recovery is recorded under the error's lock, like a failure, so `health()` never
    /// shows a state and an error from different moments.
    fn healthy(&self) {
        if !self.down.load(Ordering::Acquire) {
            return;
        }
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.down.swap(false, Ordering::AcqRel) {
            *last = None;
            drop(last);
            tracing::warn!(store = %self.config.store.redacted(), "limit store reachable again: limits are enforced");
        }
    }

    fn failed(&self, e: &StoreError) {
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let since = last.as_ref().map_or_else(SystemTime::now, |(_, t)| *t);
        *last = Some((e.0.clone(), since));
        let was_down = self.down.swap(true, Ordering::AcqRel);
        drop(last);
        if !was_down {
            tracing::error!(
                store = %self.config.store.redacted(),
                on_store_error = self.config.on_store_error.as_str(),
                error = %e,
                "limit store unreachable: requests are {} until it answers",
                match self.config.on_store_error {
                    OnStoreError::Allow => "served without limits",
                    OnStoreError::Deny => "refused with 503",
                }
            );
        }
    }

    /// The store's state for `/admin/health`.
    pub fn health(&self) -> StoreHealth {
        let (last, down) = {
            let l = self
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (l.clone(), self.down.load(Ordering::Acquire))
        };
        StoreHealth {
            kind: self.store.kind(),
            store: self.config.store.redacted(),
            healthy: !down,
            on_store_error: self.config.on_store_error.as_str(),
            error: last.as_ref().map(|(e, _)| e.clone()),
            since: last.map(|(_, t)| t),
        }
    }
}

/// A rough token count for a request body, for the tpm pre-check before the real
/// usage is known: about four bytes of JSON per token.
pub fn estimate_tokens(body_len: usize, max_tokens: Option<u64>) -> u64 {
    (body_len as u64).div_ceil(4) + max_tokens.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn gcra_lets_a_minute_through_then_paces() {
        let mut tat = 0;
        let now = 1_000_000_000_000;
        for _ in 0..60 {
            tat = gcra::take(tat, now, 60, 1).unwrap();
        }
        let wait = gcra::take(tat, now, 60, 1).unwrap_err();
        assert_eq!(wait, 1_000_000_000, "one more fits a second later");
        assert_eq!(gcra::state(tat, now, 60).0, 0);
        let later = now + 1_000_000_000;
        assert!(gcra::take(tat, later, 60, 1).is_ok());
        assert_eq!(gcra::state(tat, now + 60_000_000_000, 60), (60, 0));
    }

    #[test]
    fn a_charge_leaves_debt_that_denies_later_peeks() {
        let now = 5_000_000_000;
        let tat = gcra::charge(0, now, 100, 250);
        let wait = gcra::take(tat, now, 100, 1).unwrap_err();
        // 250 tokens at 100/min: 2.5 minutes ahead; one more fits after 1.5 min.
        assert!(wait > 90_000_000_000 && wait < 91_000_000_000, "{wait}");
    }

    #[test]
    fn an_estimate_above_the_whole_bucket_fits_a_full_bucket() {
        assert!(gcra::take(0, 10, 100, 10_000).is_ok());
    }
}

/// The rate limits an upstream reported on its answer, in one shape whatever its
/// dialect: OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` or
/// Anthropic's `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`. The
/// binary passes them on to its client under the client's dialect's names, where the
/// gateway sets no tighter limit of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamLimits {
    pub requests: Option<BucketState>,
    pub tokens: Option<BucketState>,
}

impl UpstreamLimits {
    /// The limits in an upstream response's headers, if it sent any. An answer without
    /// any `x-ratelimit-*` or `anthropic-ratelimit-*` header costs one look at each
    /// header name (no lookup, which would hash each name asked for).
    pub fn from_headers(h: &http::HeaderMap) -> Option<Self> {
        // (limit, remaining, reset) of requests, then of tokens.
        use http::HeaderName as N;
        static OPENAI: [[N; 3]; 2] = [
            [
                N::from_static("x-ratelimit-limit-requests"),
                N::from_static("x-ratelimit-remaining-requests"),
                N::from_static("x-ratelimit-reset-requests"),
            ],
            [
                N::from_static("x-ratelimit-limit-tokens"),
                N::from_static("x-ratelimit-remaining-tokens"),
                N::from_static("x-ratelimit-reset-tokens"),
            ],
        ];
        static ANTHROPIC: [[N; 3]; 2] = [
            [
                N::from_static("anthropic-ratelimit-requests-limit"),
                N::from_static("anthropic-ratelimit-requests-remaining"),
                N::from_static("anthropic-ratelimit-requests-reset"),
            ],
            [
                N::from_static("anthropic-ratelimit-tokens-limit"),
                N::from_static("anthropic-ratelimit-tokens-remaining"),
                N::from_static("anthropic-ratelimit-tokens-reset"),
            ],
        ];
        let has_any = h.keys().any(|k| {
            let k = k.as_str();
            k.starts_with("x-ratelimit-") || k.starts_with("anthropic-ratelimit-")
        });
        if !has_any {
            return None;
        }
        let get = |name: &N| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let num = |name: &N| get(name).and_then(|v| v.parse::<u64>().ok());
        let read = |[limit, remaining, reset]: &[N; 3], parse: fn(&str) -> Option<Duration>| {
            Some(BucketState {
                limit: num(limit)?,
                remaining: num(remaining)?,
                reset: get(reset).and_then(parse).unwrap_or_default(),
            })
        };
        let of = |i: usize| {
            read(&OPENAI[i], parse_go_duration).or_else(|| read(&ANTHROPIC[i], until_rfc3339))
        };
        let out = Self {
            requests: of(0),
            tokens: of(1),
        };
        (out.requests.is_some() || out.tokens.is_some()).then_some(out)
    }
}

/// Go's duration format as OpenAI sends resets: `20ms`, `1.5s`, `6m0s`, `1h2m3s`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[u..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The time from now until an RFC 3339 UTC timestamp (`2026-12-01T15:00:30Z`), as
/// Anthropic sends resets; zero when it is past.
fn until_rfc3339(s: &str) -> Option<Duration> {
    // YYYY-MM-DDTHH:MM:SS[.frac](Z|+00:00)
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, sec) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let tail = &s[19..];
    let (frac, zone) = match tail.strip_prefix('.') {
        Some(t) => {
            let k = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            (format!("0.{}", &t[..k]).parse::<f64>().ok()?, &t[k..])
        }
        None => (0.0, tail),
    };
    if !matches!(zone, "Z" | "z" | "+00:00") {
        return None;
    }
    let days = crate::civil::days_from_civil(y, mo, d);
    let at = (days * 86_400 + h * 3600 + mi * 60 + sec) as f64 + frac;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(Duration::try_from_secs_f64((at - now).max(0.0)).unwrap_or_default())
}

#[cfg(test)]
mod upstream_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn openai_and_anthropic_headers_read_alike() {
        let mut h = http::HeaderMap::new();
        h.insert("x-ratelimit-limit-requests", "500".parse().unwrap());
        h.insert("x-ratelimit-remaining-requests", "499".parse().unwrap());
        h.insert("x-ratelimit-reset-requests", "120ms".parse().unwrap());
        h.insert("x-ratelimit-limit-tokens", "30000".parse().unwrap());
        h.insert("x-ratelimit-remaining-tokens", "29000".parse().unwrap());
        h.insert("x-ratelimit-reset-tokens", "6m0s".parse().unwrap());
        let l = UpstreamLimits::from_headers(&h).unwrap();
        assert_eq!(l.requests.unwrap().remaining, 499);
        assert_eq!(l.requests.unwrap().reset, Duration::from_millis(120));
        assert_eq!(l.tokens.unwrap().reset, Duration::from_secs(360));

        let mut a = http::HeaderMap::new();
        a.insert("anthropic-ratelimit-requests-limit", "50".parse().unwrap());
        a.insert(
            "anthropic-ratelimit-requests-remaining",
            "49".parse().unwrap(),
        );
        a.insert(
            "anthropic-ratelimit-requests-reset",
            "2999-01-01T00:00:00Z".parse().unwrap(),
        );
        let l = UpstreamLimits::from_headers(&a).unwrap();
        let r = l.requests.unwrap();
        assert_eq!((r.limit, r.remaining), (50, 49));
        assert!(r.reset > Duration::from_secs(86_400 * 365));
        assert!(l.tokens.is_none());
        assert!(UpstreamLimits::from_headers(&http::HeaderMap::new()).is_none());
        let mut other = http::HeaderMap::new();
        other.insert("content-type", "application/json".parse().unwrap());
        other.insert("x-ratelimit", "5".parse().unwrap());
        assert!(UpstreamLimits::from_headers(&other).is_none());
    }

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_go_duration("17ms"), Some(Duration::from_millis(17)));
        assert_eq!(parse_go_duration("soon"), None);
    }

    #[test]
    fn rfc3339_in_the_past_is_zero() {
        assert_eq!(
            until_rfc3339("2001-01-01T00:00:00.5Z"),
            Some(Duration::ZERO)
        );
        assert_eq!(until_rfc3339("yesterday"), None);
    }
}
