//! Key budgets (`budget_usd` per `budget_period`): what each key has spent in its
//! current period, checked before a call and charged from the usage ledger's records.
//!
//! The check reads one atomic through a copy-on-write map (no lock on the request
//! path); the ledger's writer charges each priced record as it takes it, so a spend is
//! counted within milliseconds of its answer and never on the request path. At start
//! the current period's spend is read back from the ledger, so a restart does not reset
//! a budget. Replicas sharing a Postgres ledger enforce one budget: each reads the
//! ledger's spend back every two seconds (`raise_to`), so a key's spend on any replica
//! counts on all within that interval plus the writer's flush. Replicas with separate
//! ledgers each hold their own figure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use modelway_core::config::{Budget, ClientKey};
use modelway_core::GatewayError;

/// One key's spend in one period, in micro-dollars.
#[derive(Debug, Default)]
struct Spend {
    period_start_ms: AtomicI64,
    micro_usd: AtomicU64,
}

/// Spend per key name.
#[derive(Default)]
pub struct Budgets {
    keys: ArcSwap<HashMap<String, Arc<Spend>>>,
    grow: Mutex<()>,
}

fn micro(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e6).round() as u64
    } else {
        0
    }
}

impl Budgets {
    fn spend(&self, key: &str) -> Arc<Spend> {
        if let Some(s) = self.keys.load().get(key) {
            return s.clone();
        }
        let _g = self
            .grow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cur = self.keys.load();
        if let Some(s) = cur.get(key) {
            return s.clone();
        }
        let s = Arc::new(Spend::default());
        let mut next = HashMap::clone(&cur);
        next.insert(key.to_owned(), s.clone());
        self.keys.store(Arc::new(next));
        s
    }

    /// What `key` has spent in the period holding `now_ms`, USD.
    pub fn spent(&self, key: &str, budget: &Budget, now_ms: i64) -> f64 {
        let s = self.spend(key);
        let (start, _) = budget.period.bounds(now_ms);
        if s.period_start_ms.load(Ordering::Acquire) != start {
            return 0.0;
        }
        s.micro_usd.load(Ordering::Acquire) as f64 / 1e6
    }

    /// Adds `usd` spent by `key` at `ts_ms` under `budget` (a new period starts from 0).
    pub fn charge(&self, key: &str, budget: &Budget, ts_ms: i64, usd: f64) {
        if let Some(s) = self.in_period(key, budget, ts_ms) {
            s.micro_usd.fetch_add(micro(usd), Ordering::AcqRel);
        }
    }

    /// Raises what `key` has spent in the period starting `period_start_ms` to `usd`
    /// (the ledger's figure: records of earlier runs or of other replicas); a spend
    /// already counted above it stays.
    pub fn raise_to(&self, key: &str, budget: &Budget, period_start_ms: i64, usd: f64) {
        if let Some(s) = self.in_period(key, budget, period_start_ms) {
            s.micro_usd.fetch_max(micro(usd), Ordering::AcqRel);
        }
    }

    /// `key`'s spend, moved on to the period holding `ts_ms` (a new period starts from
    /// 0); `None` when `ts_ms` is of a period already over.
    fn in_period(&self, key: &str, budget: &Budget, ts_ms: i64) -> Option<Arc<Spend>> {
        let s = self.spend(key);
        let (start, _) = budget.period.bounds(ts_ms);
        let cur = s.period_start_ms.load(Ordering::Acquire);
        if cur > start {
            return None;
        }
        if cur < start
            && s.period_start_ms
                .compare_exchange(cur, start, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            s.micro_usd.store(0, Ordering::Release);
        }
        Some(s)
    }

    /// Refuses a call of `key` once its budget for the current period is spent: 429
    /// naming the budget and when it resets.
    pub fn check(&self, key: &ClientKey, now_ms: i64) -> Result<(), GatewayError> {
        let Some(b) = &key.budget else {
            return Ok(());
        };
        let spent = self.spent(&key.name, b, now_ms);
        if spent < b.usd {
            return Ok(());
        }
        let (_, end) = b.period.bounds(now_ms);
        let wait = std::time::Duration::from_millis(u64::try_from(end - now_ms).unwrap_or(0));
        let reset = crate::ledger::day_of(end);
        let mut e = GatewayError::rate_limited(format!(
            "Key `{}` has spent ${spent:.2} of its ${:.2} budget for this {}; it resets at {reset}T00:00:00Z.",
            key.name,
            b.usd,
            b.period.as_str()
        ))
        .with_code("budget_exceeded");
        e.retry_after = Some(wait);
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use modelway_core::config::BudgetPeriod;

    #[test]
    fn spend_is_checked_and_resets_with_the_period() {
        let b = Budgets::default();
        let mut key = ClientKey::new("team", "sk");
        let budget = Budget {
            usd: 1.0,
            period: BudgetPeriod::Day,
        };
        key.budget = Some(budget);
        let day = 1_796_083_200_000; // 2026-12-01T00:00Z
        assert!(b.check(&key, day + 10).is_ok());
        b.charge("team", &budget, day + 20, 0.6);
        assert!(b.check(&key, day + 30).is_ok());
        b.charge("team", &budget, day + 40, 0.5);
        let e = b.check(&key, day + 50).unwrap_err();
        assert_eq!(e.status, 429);
        assert_eq!(e.code.as_deref(), Some("budget_exceeded"));
        assert!(e.message.contains("$1.10 of its $1.00"), "{}", e.message);
        assert!(e.message.contains("2026-12-02T00:00:00Z"), "{}", e.message);
        // The next day starts from nothing.
        let next = day + 86_400_000;
        assert!(b.check(&key, next).is_ok());
        b.charge("team", &budget, next + 1, 0.1);
        assert!((b.spent("team", &budget, next + 2) - 0.1).abs() < 1e-9);
        // A late record of the day before does not count against today.
        b.charge("team", &budget, day + 60, 5.0);
        assert!(b.check(&key, next + 3).is_ok());
    }
}
