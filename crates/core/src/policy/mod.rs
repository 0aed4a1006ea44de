//! The per-target policy: how many times to retry, how long to wait between tries and
//! how long each phase of an attempt may take.
//!
//! A policy key may be set on `[routing]`, a route, a target table and (for the
//! timeouts) a provider. Bounds — every timeout, `max_retry_after` and `deadline` — take
//! the **tightest** value set anywhere, so a provider's own `timeout` holds on every
//! route that uses it and a route cannot loosen what `[routing]` bounds. Counts and
//! shapes — `retries`, `backoff` — take the **most specific** value set (target, then
//! route, then `[routing]`), so a route can ask for more retries than the default.
//!
//! This module also holds the other settings a config resolves to and the engine
//! reads — a route's strategy, its hedging, the health thresholds, a target's
//! `params` — so that the config sits below the engine, not beside it in a cycle.

pub mod hedge;

pub use hedge::{Hedge, HedgeAfter, HedgeBudget};

use std::time::Duration;

use crate::chat::Extra;

/// `backoff = { base, max }`: exponential with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (1-based): uniform in
    /// `[0, min(max, base·2^(retry-1))]` ("full jitter"), `unit` being a draw in `[0, 1)`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        exp.min(self.max).mul_f64(unit)
    }
}

/// The policy keys as one config table sets them (each optional).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyLayer {
    pub retries: Option<u32>,
    pub backoff: Option<Backoff>,
    pub max_retry_after: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub timeout: Option<Duration>,
    pub first_token_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub deadline: Option<Duration>,
    pub stream_keepalive: Option<Duration>,
}

/// The effective policy of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Extra tries of this target on a failure that may heal.
    pub retries: u32,
    pub backoff: Backoff,
    /// A longer `Retry-After` moves on to the next target instead of waiting.
    pub max_retry_after: Duration,
    pub connect_timeout: Duration,
    /// To the response head; for JSON, to the whole answer.
    pub timeout: Duration,
    /// Streams: from the attempt's start to its first content.
    pub first_token_timeout: Option<Duration>,
    /// Streams: the longest silence between chunks.
    pub idle_timeout: Duration,
    /// The whole call, every attempt and wait included.
    pub deadline: Option<Duration>,
    /// Streams waiting for a first token: send the head and an SSE comment this often.
    pub stream_keepalive: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::resolve(&[])
    }
}

impl Policy {
    pub const DEFAULT_RETRIES: u32 = 0;
    pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

    /// Combines layers, most general first (`[routing]`, route, target, provider).
    pub fn resolve(layers: &[&PolicyLayer]) -> Self {
        fn tightest(
            layers: &[&PolicyLayer],
            f: impl Fn(&PolicyLayer) -> Option<Duration>,
        ) -> Option<Duration> {
            layers.iter().filter_map(|l| f(l)).min()
        }
        let timeout = tightest(layers, |l| l.timeout).unwrap_or(Self::DEFAULT_TIMEOUT);
        Self {
            retries: layers
                .iter()
                .rev()
                .find_map(|l| l.retries)
                .unwrap_or(Self::DEFAULT_RETRIES),
            backoff: layers
                .iter()
                .rev()
                .find_map(|l| l.backoff)
                .unwrap_or_default(),
            max_retry_after: tightest(layers, |l| l.max_retry_after)
                .unwrap_or(Self::DEFAULT_MAX_RETRY_AFTER),
            connect_timeout: tightest(layers, |l| l.connect_timeout)
                .unwrap_or(Self::DEFAULT_CONNECT_TIMEOUT),
            timeout,
            first_token_timeout: tightest(layers, |l| l.first_token_timeout),
            // Unset, silence is bounded like the wait for the head.
            idle_timeout: tightest(layers, |l| l.idle_timeout).unwrap_or(timeout),
            deadline: tightest(layers, |l| l.deadline),
            stream_keepalive: tightest(layers, |l| l.stream_keepalive),
        }
    }

    /// One line for `modelway check`.
    pub fn describe(&self) -> String {
        let opt = |d: Option<Duration>| d.map_or_else(|| "none".to_owned(), |d| format!("{d:?}"));
        format!(
            "retries={} backoff={:?}..{:?} max_retry_after={:?} connect_timeout={:?} timeout={:?} first_token_timeout={} idle_timeout={:?} deadline={}",
            self.retries,
            self.backoff.base,
            self.backoff.max,
            self.max_retry_after,
            self.connect_timeout,
            self.timeout,
            opt(self.first_token_timeout),
            self.idle_timeout,
            opt(self.deadline),
        )
    }
}

/// `[routing] health = { failures, cooldown, max_cooldown }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// Consecutive failures that eject a target.
    pub failures: u32,
    /// The first ejection's length.
    pub cooldown: Duration,
    /// The longest ejection, however often the probe fails.
    pub max_cooldown: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            failures: 5,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(300),
        }
    }
}

/// The strategies a route may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrategyKind {
    /// In configured order.
    #[default]
    Fallback,
    /// The first target drawn by `weight`, the rest in configured order.
    Weighted,
    /// Lowest recent time to first token first; cold targets get tried.
    Latency,
}

impl StrategyKind {
    /// The names a config may use.
    pub const SUPPORTED: &'static str = "fallback, weighted, latency";

    /// Parses a strategy name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fallback" => Some(Self::Fallback),
            "weighted" => Some(Self::Weighted),
            "latency" => Some(Self::Latency),
            _ => None,
        }
    }

    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fallback => "fallback",
            Self::Weighted => "weighted",
            Self::Latency => "latency",
        }
    }
}

/// Applies a target's `params` to a request (a [`crate::chat::ChatRequest`] or an
/// [`crate::embed::EmbedRequest`]): each key replaces the request's value.
pub fn apply_params<R>(req: &R, params: &Extra) -> Result<R, serde_json::Error>
where
    R: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut v = serde_json::to_value(req)?;
    if let serde_json::Value::Object(o) = &mut v {
        for (k, p) in params {
            o.insert(k.clone(), p.clone());
        }
    }
    serde_json::from_value(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn bounds_take_the_tightest_and_counts_the_most_specific() {
        let routing = PolicyLayer {
            retries: Some(1),
            timeout: ms(60_000),
            deadline: ms(300_000),
            ..PolicyLayer::default()
        };
        let route = PolicyLayer {
            retries: Some(3),
            timeout: ms(90_000),
            first_token_timeout: ms(5_000),
            ..PolicyLayer::default()
        };
        let target = PolicyLayer {
            retries: Some(0),
            timeout: ms(20_000),
            ..PolicyLayer::default()
        };
        let provider = PolicyLayer {
            timeout: ms(500),
            connect_timeout: ms(200),
            ..PolicyLayer::default()
        };
        let p = Policy::resolve(&[&routing, &route, &PolicyLayer::default(), &provider]);
        assert_eq!(p.retries, 3, "the route's retries win over [routing]'s");
        assert_eq!(
            p.timeout,
            Duration::from_millis(500),
            "the provider's timeout holds"
        );
        assert_eq!(p.connect_timeout, Duration::from_millis(200));
        assert_eq!(p.first_token_timeout, ms(5_000));
        assert_eq!(p.deadline, ms(300_000));
        assert_eq!(p.idle_timeout, Duration::from_millis(500));
        let p = Policy::resolve(&[&routing, &route, &target]);
        assert_eq!(p.retries, 0);
        assert_eq!(p.timeout, Duration::from_secs(20));
        let d = Policy::default();
        assert_eq!((d.retries, d.timeout), (0, Duration::from_secs(120)));
    }

    #[test]
    fn backoff_is_exponential_capped_and_jittered() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        assert_eq!(b.delay(1, 0.999_999).as_millis(), 99);
        assert_eq!(b.delay(2, 0.5), Duration::from_millis(100));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(b.delay(10, 1.0), Duration::from_millis(1000));
        assert_eq!(b.delay(40, 0.0), Duration::ZERO);
        assert_eq!(
            b.delay(2, f64::NAN),
            Duration::ZERO,
            "a broken random source"
        );
    }
}
