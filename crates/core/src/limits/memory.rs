//! The in-process store: one atomic per bucket, found through a copy-on-write map, so
//! a check takes no lock (a bucket seen for the first time is added under a mutex,
//! once per bucket name for the life of the process).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;

use super::{gcra, BucketState, Decision, LimitStore, StoreError, Take, TakeKind};

/// Counters in this process: the default store.
pub struct MemoryStore {
    epoch: Instant,
    buckets: ArcSwap<HashMap<String, Arc<AtomicU64>>>,
    grow: Mutex<()>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            buckets: ArcSwap::from_pointee(HashMap::new()),
            grow: Mutex::new(()),
        }
    }

    /// Nanoseconds since the store was made. Starts a minute in, so a fresh bucket
    /// (state 0) reads as full.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + super::WINDOW.as_nanos() as u64
    }

    fn bucket(&self, name: &str) -> Arc<AtomicU64> {
        if let Some(b) = self.buckets.load().get(name) {
            return b.clone();
        }
        let _guard = self
            .grow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.buckets.load();
        if let Some(b) = current.get(name) {
            return b.clone();
        }
        let b = Arc::new(AtomicU64::new(0));
        let mut next = HashMap::clone(&current);
        next.insert(name.to_owned(), b.clone());
        self.buckets.store(Arc::new(next));
        b
    }

    /// Applies one take; `Err(wait)` when it does not fit.
    fn apply(&self, cell: &AtomicU64, kind: TakeKind<'_>, now: u64) -> Result<BucketState, u64> {
        match kind {
            TakeKind::Rate { per_minute, cost } => {
                let mut cur = cell.load(Ordering::Acquire);
                loop {
                    let new = gcra::take(cur, now, per_minute, cost)?;
                    match cell.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => return Ok(rate_state(new, now, per_minute)),
                        Err(seen) => cur = seen,
                    }
                }
            }
            TakeKind::Peek { per_minute, cost } => {
                let cur = cell.load(Ordering::Acquire);
                gcra::take(cur, now, per_minute, cost)?;
                Ok(rate_state(cur, now, per_minute))
            }
            TakeKind::Slot { max, .. } => {
                let mut cur = cell.load(Ordering::Acquire);
                loop {
                    if cur >= max {
                        return Err(0);
                    }
                    match cell.compare_exchange_weak(
                        cur,
                        cur + 1,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            return Ok(BucketState {
                                limit: max,
                                remaining: max - cur - 1,
                                reset: Duration::ZERO,
                            })
                        }
                        Err(seen) => cur = seen,
                    }
                }
            }
        }
    }

    /// Gives back what [`Self::apply`] took.
    fn undo(cell: &AtomicU64, kind: TakeKind<'_>) {
        match kind {
            TakeKind::Rate { per_minute, cost } => {
                let back = cost.min(per_minute) * gcra::interval(per_minute);
                let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    Some(v.saturating_sub(back))
                });
            }
            TakeKind::Peek { .. } => {}
            TakeKind::Slot { .. } => {
                let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    Some(v.saturating_sub(1))
                });
            }
        }
    }

    /// The current state of a bucket, for a denied check's headers.
    fn peek_state(&self, cell: &AtomicU64, kind: TakeKind<'_>, now: u64) -> BucketState {
        let v = cell.load(Ordering::Acquire);
        match kind {
            TakeKind::Rate { per_minute, .. } | TakeKind::Peek { per_minute, .. } => {
                rate_state(v, now, per_minute)
            }
            TakeKind::Slot { max, .. } => BucketState {
                limit: max,
                remaining: max.saturating_sub(v),
                reset: Duration::ZERO,
            },
        }
    }
}

fn rate_state(tat: u64, now: u64, per_minute: u64) -> BucketState {
    let (remaining, reset) = gcra::state(tat, now, per_minute);
    BucketState {
        limit: per_minute,
        remaining,
        reset: Duration::from_nanos(reset),
    }
}

#[async_trait]
impl LimitStore for MemoryStore {
    async fn check(&self, takes: &[Take<'_>]) -> Result<Decision, StoreError> {
        let now = self.now();
        let cells: Vec<Arc<AtomicU64>> = takes.iter().map(|t| self.bucket(t.bucket)).collect();
        let mut states = Vec::with_capacity(takes.len());
        for (i, (take, cell)) in takes.iter().zip(&cells).enumerate() {
            match self.apply(cell, take.kind, now) {
                Ok(s) => states.push(s),
                Err(wait) => {
                    for (t, c) in takes[..i].iter().zip(&cells) {
                        Self::undo(c, t.kind);
                    }
                    let states = takes
                        .iter()
                        .zip(&cells)
                        .map(|(t, c)| self.peek_state(c, t.kind, now))
                        .collect();
                    return Ok(Decision {
                        denied_by: Some(i),
                        retry_after: Some(match take.kind {
                            // A slot frees when a request ends: retry soon.
                            TakeKind::Slot { .. } => Duration::from_secs(1),
                            _ => Duration::from_nanos(wait),
                        }),
                        states,
                    });
                }
            }
        }
        Ok(Decision {
            denied_by: None,
            retry_after: None,
            states,
        })
    }

    async fn charge(&self, bucket: &str, per_minute: u64, cost: u64) -> Result<(), StoreError> {
        let now = self.now();
        let cell = self.bucket(bucket);
        let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
            Some(gcra::charge(tat, now, per_minute, cost))
        });
        Ok(())
    }

    async fn release(&self, bucket: &str, _id: &str) -> Result<(), StoreError> {
        let cell = self.bucket(bucket);
        let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(v.saturating_sub(1))
        });
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn is_local(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rate(bucket: &str, per_minute: u64, cost: u64) -> Take<'_> {
        Take {
            bucket,
            kind: TakeKind::Rate { per_minute, cost },
        }
    }

    #[tokio::test]
    async fn all_or_nothing() {
        let s = MemoryStore::new();
        let slot = Take {
            bucket: "c",
            kind: TakeKind::Slot { max: 1, id: "a" },
        };
        assert!(s.check(&[rate("r", 10, 1), slot]).await.unwrap().allowed());
        // The slot is held: the rate must not be spent by the denied check.
        let d = s.check(&[rate("r", 10, 1), slot]).await.unwrap();
        assert_eq!(d.denied_by, Some(1));
        assert_eq!(d.states[0].remaining, 9);
        s.release("c", "a").await.unwrap();
        let d = s.check(&[rate("r", 10, 1), slot]).await.unwrap();
        assert!(d.allowed());
        assert_eq!(d.states[0].remaining, 8);
        assert_eq!(d.states[1].remaining, 0);
    }

    #[tokio::test]
    async fn rpm_is_exact_under_contention() {
        let s = Arc::new(MemoryStore::new());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..100 {
                    if s.check(&[rate("k", 120, 1)]).await.unwrap().allowed() {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        // 120 per minute; the test runs in well under the 0.5 s one more would take.
        assert!((120..=121).contains(&total), "{total}");
    }

    #[tokio::test]
    async fn peeks_take_nothing_and_charges_deny() {
        let s = MemoryStore::new();
        let peek = Take {
            bucket: "t",
            kind: TakeKind::Peek {
                per_minute: 100,
                cost: 50,
            },
        };
        for _ in 0..5 {
            assert!(s.check(&[peek]).await.unwrap().allowed());
        }
        s.charge("t", 100, 80).await.unwrap();
        let d = s.check(&[peek]).await.unwrap();
        assert_eq!(d.denied_by, Some(0));
        let wait = d.retry_after.unwrap();
        // 80 used + 50 asked = 130 > 100: 30 tokens' worth, 18 s.
        assert!(
            wait > Duration::from_secs(17) && wait <= Duration::from_secs(18),
            "{wait:?}"
        );
        assert_eq!(d.states[0].remaining, 20);
    }
}
