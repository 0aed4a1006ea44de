//! The usage ledger wired into the gateway: its records counted in the usage metrics
//! and charged to the key budgets as the writer takes them, the budgets' spend this
//! period read back from it, and — when replicas share it (Postgres) — read back again
//! every [`BUDGET_SYNC`]. Opened at start and again when a reload changes
//! `[usage] ledger`.

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::ledger::{Ledger, LedgerTarget, Sum};

/// How often a shared (Postgres) ledger's spend is read back into the key budgets.
pub const BUDGET_SYNC: Duration = Duration::from_secs(2);

/// Opens the ledger at `target` with the usage metrics and the key budgets charged from
/// its records, and the budgets' current spend read back from it. Blocking (it connects
/// to the database): call it off the runtime's workers, or at start.
pub fn open_ledger(app: &Arc<App>, target: &LedgerTarget) -> Result<Arc<Ledger>, String> {
    let (metrics, on_drop) = (app.telemetry.metrics.clone(), app.telemetry.metrics.clone());
    let charger = app.clone();
    let sink = move |sums: &[Sum<'_>]| {
        let snap = charger.gateway.snapshot();
        for s in sums {
            metrics.record_usage(s);
            let Some(key) = s.key.filter(|_| s.priced > 0) else {
                continue;
            };
            let budget = snap
                .config
                .auth()
                .keys
                .iter()
                .find(|k| k.name == key)
                .and_then(|k| k.budget);
            if let Some(b) = budget {
                charger.budgets.charge(key, &b, s.ts_ms, s.cost_usd);
            }
        }
    };
    let ledger = Ledger::open_with(
        target,
        Some(Arc::new(sink)),
        Some(Arc::new(move || on_drop.usage_dropped())),
    )?;
    sync_budgets(app, &ledger);
    if ledger.is_shared() {
        // Replicas sharing one ledger enforce one budget: each reads every replica's
        // spend back every BUDGET_SYNC (its own is counted at once, as everywhere). The
        // thread ends with the ledger (a reload that replaces it, the process's end).
        let (app, weak) = (app.clone(), Arc::downgrade(&ledger));
        std::thread::Builder::new()
            .name("budget-sync".into())
            .spawn(move || loop {
                std::thread::sleep(BUDGET_SYNC);
                let Some(ledger) = weak.upgrade() else { return };
                sync_budgets(&app, &ledger);
            })
            .map_err(|e| format!("starting the budget sync: {e}"))?;
    }
    Ok(ledger)
}

/// Raises each budgeted key's spend this period to what the ledger holds (records of
/// earlier runs, and of other replicas when the ledger is shared): one query per
/// distinct period start.
pub fn sync_budgets(app: &App, ledger: &Ledger) {
    let snap = app.gateway.snapshot();
    let now_ms = crate::ledger::now_ms();
    let mut by_start: std::collections::BTreeMap<i64, Vec<_>> = Default::default();
    for k in &snap.config.auth().keys {
        if let Some(b) = k.budget {
            by_start
                .entry(b.period.bounds(now_ms).0)
                .or_default()
                .push((k.name.as_str(), b));
        }
    }
    for (start, keys) in by_start {
        match ledger.spent_by_key_since(start) {
            Ok(spent) => {
                for (name, b) in keys {
                    if let Some(&usd) = spent.get(name) {
                        app.budgets.raise_to(name, &b, start, usd);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read this period's spend from the ledger")
            }
        }
    }
}

/// A reload's new `[usage] ledger`, opened before the new config serves (so a ledger
/// that cannot be opened rejects the reload whole); `None` when it is unchanged.
pub fn reopen_if_changed(
    app: &Arc<App>,
    target: &LedgerTarget,
) -> Result<Option<Arc<Ledger>>, String> {
    match app.telemetry.ledger() {
        Some(current) if current.target() != target => open_ledger(app, target)
            .map(Some)
            .map_err(|e| format!("`usage.ledger`: {e}")),
        _ => Ok(None),
    }
}

/// Serves records to `new` from now on and closes the ledger it replaces (what it
/// still holds is written first, on a thread of its own, bounded).
pub fn switch_to(app: &App, new: Arc<Ledger>) {
    let shown = new.target().describe();
    let Some(old) = app.telemetry.set_ledger(new) else {
        return;
    };
    tracing::info!(from = %old.target().describe(), to = %shown, "usage ledger switched");
    let _ = std::thread::Builder::new()
        .name("usage-ledger-close".into())
        .spawn(move || old.close(Duration::from_secs(10)));
}
