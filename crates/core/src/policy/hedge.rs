//! Hedged requests: when a route's first target is slow to commit (its first token,
//! or a JSON answer), start the next target beside it; the first to commit wins and
//! the others are cancelled at once (their futures dropped, their upstream connections
//! closed, so the providers stop generating).
//!
//! `hedge_after` is a fixed delay or a percentile (`"p95"`) of the first target's
//! recent time to first token — no hedging until it has [`MIN_SAMPLES`] of them.
//! `hedge_max` bounds the extra attempts of one call, `hedge_budget` the share of the
//! route's calls that may hedge over a sliding minute, so a slow provider cannot double
//! the spend.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When to start a hedge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeAfter {
    Fixed(Duration),
    /// This quantile (0.95 for `"p95"`) of the first target's time to first token.
    Percentile(f64),
}

/// A route's hedging settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hedge {
    pub after: HedgeAfter,
    /// Extra attempts a call may start.
    pub max: u32,
    /// The share of the route's calls that may hedge, over a sliding minute.
    pub budget: f64,
}

impl Hedge {
    /// `hedge_budget` when unset.
    pub const DEFAULT_BUDGET: f64 = 0.1;

    /// A short description for `modelway check`.
    pub fn describe(&self) -> String {
        let after = match self.after {
            HedgeAfter::Fixed(d) => format!("{d:?}"),
            HedgeAfter::Percentile(p) => format!("p{:.0}", p * 100.0),
        };
        format!(
            "hedge_after={after} hedge_max={} hedge_budget={}",
            self.max, self.budget
        )
    }
}

/// Samples a percentile needs before it is trusted.
pub const MIN_SAMPLES: usize = 20;

/// Buckets of the sliding minute.
const BUCKETS: usize = 6;
const BUCKET_SECS: u64 = 10;

/// Counts a route's calls and hedges over the last minute, in ten-second buckets of
/// atomics: no lock on the request path.
#[derive(Debug)]
pub struct HedgeBudget {
    epoch: Instant,
    /// Per bucket: the bucket's number (seconds since epoch / 10), calls, hedges.
    buckets: [(AtomicU64, AtomicU64, AtomicU64); BUCKETS],
}

impl Default for HedgeBudget {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            buckets: std::array::from_fn(|_| {
                (
                    AtomicU64::new(u64::MAX),
                    AtomicU64::new(0),
                    AtomicU64::new(0),
                )
            }),
        }
    }
}

impl HedgeBudget {
    fn current(&self) -> (u64, &(AtomicU64, AtomicU64, AtomicU64)) {
        let n = self.epoch.elapsed().as_secs() / BUCKET_SECS;
        let b = &self.buckets[(n % BUCKETS as u64) as usize];
        let seen = b.0.load(Ordering::Acquire);
        if seen != n
            && b.0
                .compare_exchange(seen, n, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // A new ten seconds: this bucket starts over.
            b.1.store(0, Ordering::Release);
            b.2.store(0, Ordering::Release);
        }
        (n, b)
    }

    /// Counts one call of the route.
    pub fn count_call(&self) {
        self.current().1 .1.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether one more hedge keeps the route within `share` of its calls over the
    /// last minute; counts it when it does.
    pub fn try_hedge(&self, share: f64) -> bool {
        let (n, b) = self.current();
        let (mut calls, mut hedges) = (0u64, 0u64);
        for bucket in &self.buckets {
            let at = bucket.0.load(Ordering::Acquire);
            if at != u64::MAX && n.saturating_sub(at) < BUCKETS as u64 {
                calls += bucket.1.load(Ordering::Acquire);
                hedges += bucket.2.load(Ordering::Acquire);
            }
        }
        if (hedges + 1) as f64 > share * calls as f64 {
            return false;
        }
        b.2.fetch_add(1, Ordering::AcqRel);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_caps_the_hedged_share() {
        let b = HedgeBudget::default();
        let mut hedged = 0;
        for _ in 0..50 {
            b.count_call();
            if b.try_hedge(0.2) {
                hedged += 1;
            }
        }
        assert_eq!(hedged, 10, "20 % of 50");
    }
}
