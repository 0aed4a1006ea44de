//! Strategies: the order in which a call tries its targets.
//!
//! A [`Strategy`] only orders; the engine then skips ejected targets (see
//! [`super::health`]) and walks the rest with each target's policy.

use std::time::Duration;

use crate::policy::StrategyKind;
use crate::router::Target;

/// A source of uniform draws in `[0, 1)`: the thread's fast generator in production,
/// a seeded one in tests ([`SeededRandom`]), so weighted choices are reproducible.
pub trait RandomSource: Send + Sync + 'static {
    /// A uniform draw in `[0, 1)`.
    fn unit(&self) -> f64;
}

/// The default source: `fastrand`'s thread-local generator (no lock, no syscall).
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRandom;

impl RandomSource for ThreadRandom {
    fn unit(&self) -> f64 {
        fastrand::f64()
    }
}

/// A seeded, reproducible source, for tests and simulations.
#[derive(Debug)]
pub struct SeededRandom(std::sync::Mutex<fastrand::Rng>);

impl SeededRandom {
    /// A source that yields the same draws for the same seed.
    pub fn new(seed: u64) -> Self {
        Self(std::sync::Mutex::new(fastrand::Rng::with_seed(seed)))
    }
}

impl RandomSource for SeededRandom {
    fn unit(&self) -> f64 {
        self.0.lock().map(|mut r| r.f64()).unwrap_or(0.5)
    }
}

/// Orders a plan's targets for one call.
pub trait Strategy: Send + Sync {
    /// Writes the indexes of `targets` into `order`, first to try first. Every index
    /// appears once.
    fn order(&self, targets: &[Target], random: &dyn RandomSource, order: &mut Vec<usize>);
}

impl StrategyKind {
    /// The implementation.
    pub fn strategy(self) -> &'static dyn Strategy {
        match self {
            Self::Fallback => &Fallback,
            Self::Weighted => &Weighted,
            Self::Latency => &Latency,
        }
    }
}

/// Targets in configured order.
#[derive(Debug, Clone, Copy)]
pub struct Fallback;

impl Strategy for Fallback {
    fn order(&self, targets: &[Target], _: &dyn RandomSource, order: &mut Vec<usize>) {
        order.extend(0..targets.len());
    }
}

/// One target drawn with probability `weight / Σ weights`, then the others in
/// configured order as its fallbacks.
#[derive(Debug, Clone, Copy)]
pub struct Weighted;

impl Strategy for Weighted {
    fn order(&self, targets: &[Target], random: &dyn RandomSource, order: &mut Vec<usize>) {
        let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
        let first = if total == 0 {
            0
        } else {
            let mut point = random.unit() * total as f64;
            targets
                .iter()
                .position(|t| {
                    point -= f64::from(t.weight);
                    point < 0.0
                })
                .unwrap_or(targets.len().saturating_sub(1))
        };
        if targets.is_empty() {
            return;
        }
        order.push(first);
        order.extend((0..targets.len()).filter(|&i| i != first));
    }
}

/// Lowest EWMA of the time to first token first. A target without a recent sample
/// (never tried, or not for [`Latency::STALE`]) is *cold*: one call a second puts it
/// first, so a target that was slow once is measured again instead of being starved
/// forever, and concurrent calls do not all pile onto it.
#[derive(Debug, Clone, Copy)]
pub struct Latency;

impl Latency {
    /// How old a sample may be before its target counts as cold again.
    pub const STALE: Duration = Duration::from_secs(30);
}

impl Strategy for Latency {
    fn order(&self, targets: &[Target], _: &dyn RandomSource, order: &mut Vec<usize>) {
        order.extend(0..targets.len());
        // Stable: equal (or all-cold) targets keep their configured order.
        let ranks: Vec<u64> = targets
            .iter()
            .map(|t| t.health.latency_rank(Self::STALE))
            .collect();
        order.sort_by_key(|&i| ranks[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::tests::target;

    #[test]
    fn weighted_draws_follow_the_weights_with_a_seeded_source() {
        let targets = vec![
            target("a", "x", 1),
            target("b", "y", 3),
            target("c", "z", 6),
        ];
        let random = SeededRandom::new(7);
        let mut firsts = [0u32; 3];
        let n = 20_000;
        let mut order = Vec::new();
        for _ in 0..n {
            order.clear();
            Weighted.order(&targets, &random, &mut order);
            assert_eq!(order.len(), 3);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2], "every target once");
            // The rest keep configured order.
            let rest: Vec<usize> = order[1..].to_vec();
            assert!(rest.windows(2).all(|w| w[0] < w[1]), "{order:?}");
            firsts[order[0]] += 1;
        }
        let share = |i: usize| f64::from(firsts[i]) / f64::from(n);
        // Binomial sd at n = 20 000 is under 0.0035; 0.015 is more than four of them.
        for (i, want) in [0.1, 0.3, 0.6].into_iter().enumerate() {
            assert!(
                (share(i) - want).abs() < 0.015,
                "target {i}: {} vs {want}",
                share(i)
            );
        }
        // The same seed, the same draws.
        let (a, b) = (SeededRandom::new(42), SeededRandom::new(42));
        let draw = |r: &SeededRandom| {
            let mut o = Vec::new();
            (0..50)
                .map(|_| {
                    o.clear();
                    Weighted.order(&targets, r, &mut o);
                    o[0]
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(&a), draw(&b));
    }

    #[test]
    fn latency_puts_the_fastest_first_and_cold_targets_before_it() {
        let targets = vec![
            target("slow", "x", 1),
            target("fast", "y", 1),
            target("cold", "z", 1),
        ];
        targets[0].health.record_latency(Duration::from_millis(300));
        targets[1].health.record_latency(Duration::from_millis(20));
        let mut order = Vec::new();
        Latency.order(&targets, &ThreadRandom, &mut order);
        assert_eq!(order, vec![2, 1, 0], "the cold target is measured first");
        order.clear();
        Latency.order(&targets, &ThreadRandom, &mut order);
        assert_eq!(
            order,
            vec![1, 0, 2],
            "once a second: then the fastest first"
        );
        targets[2].health.record_latency(Duration::from_millis(100));
        order.clear();
        Latency.order(&targets, &ThreadRandom, &mut order);
        assert_eq!(order, vec![1, 2, 0]);
    }
}
