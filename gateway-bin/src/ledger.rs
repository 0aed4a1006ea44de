//! The usage ledger: one [`UsageRecord`] per served request, written off the request
//! path by one writer thread — to SQLite (`[usage] ledger = "sqlite:PATH"`), or kept as
//! in-memory totals when no ledger is configured — and read back as totals grouped by
//! key, provider, model and day (`GET /admin/usage`, `modelway usage`).
//!
//! A request only `try_send`s its record into a bounded queue: a slow disk never slows
//! a request, and a full queue is counted (`modelway_usage_records_dropped_total`), not
//! waited on. The writer takes what is queued, up to [`BATCH`] records, and inserts
//! them in one transaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Records queued for the writer at most; past it they are dropped and counted.
pub const QUEUE: usize = 65_536;
/// Records per transaction at most.
pub const BATCH: usize = 512;
/// How long the writer gathers records after the first before writing them.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// What one served request used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRecord {
    pub request_id: String,
    /// Unix milliseconds at the request's start.
    pub ts_ms: i64,
    /// The gateway key's name.
    pub key: Option<String>,
    pub route: Option<String>,
    pub provider: String,
    /// What the client asked for.
    pub requested_model: String,
    /// What the upstream was sent.
    pub served_model: String,
    /// OpenAI's inclusive convention: `input` counts cached and cache-written tokens,
    /// `output` counts reasoning tokens.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    /// USD; `None` when the model has no price (never a silent 0).
    pub cost_usd: Option<f64>,
    pub duration_ms: f64,
    pub ttft_ms: Option<f64>,
    pub attempts: u32,
    pub status: u16,
    pub stream: bool,
}

/// Totals of one (key, provider, model, day) group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub key: Option<String>,
    pub provider: String,
    pub model: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    /// The priced requests' cost, USD.
    pub cost_usd: f64,
    /// Requests whose model had no price: their cost is unknown, not 0.
    pub unpriced_requests: u64,
}

/// Where records go: `[usage] ledger`.
pub type LedgerTarget = modelway_core::config::LedgerConfig;

/// The ledger: a queue into the writer thread, and how to read totals back.
/// Told of each record as the writer takes it (the usage metrics), off the request path.
pub type RecordSink = Arc<dyn Fn(&UsageRecord) + Send + Sync>;

pub struct Ledger {
    /// The writer's queue; `None` once closed. An `ArcSwapOption`, so a request's
    /// `try_send` takes no lock.
    ///
    /// An unbounded channel bounded by `queued`: a bounded one (`sync_channel`)
    /// allocates and touches every slot up front — 65 536 records, 16 MiB of idle RSS —
    /// where this grows in small blocks only as records wait.
    tx: arc_swap::ArcSwapOption<Sender<UsageRecord>>,
    /// Records sent and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    on_drop: Option<Arc<dyn Fn() + Send + Sync>>,
    store: Arc<Store>,
    dropped: AtomicU64,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// (key, provider, model, day).
type Group = (Option<String>, String, String, String);

enum Store {
    Memory(Mutex<BTreeMap<Group, Totals>>),
    Sqlite(PathBuf),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage (
  request_id TEXT NOT NULL,
  ts_ms INTEGER NOT NULL,
  key TEXT,
  route TEXT,
  provider TEXT NOT NULL,
  requested_model TEXT NOT NULL,
  served_model TEXT NOT NULL,
  input_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  cached_input_tokens INTEGER NOT NULL,
  cache_write_tokens INTEGER NOT NULL,
  reasoning_tokens INTEGER NOT NULL,
  cost_usd REAL,
  duration_ms REAL NOT NULL,
  ttft_ms REAL,
  attempts INTEGER NOT NULL,
  status INTEGER NOT NULL,
  stream INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts_ms);
";

/// A `from` / `to` bound: unix seconds, or a UTC date `YYYY-MM-DD` (its midnight).
pub fn parse_bound(v: &str) -> Option<i64> {
    match v.parse::<i64>() {
        Ok(secs) => secs.checked_mul(1000),
        Err(_) => modelway_core::civil::parse_date(v),
    }
}

fn open_sqlite(path: &Path) -> Result<rusqlite::Connection, String> {
    let conn = rusqlite::Connection::open(path)
        .map_err(|e| format!("usage ledger {}: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))
        .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
        .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
        .and_then(|()| conn.execute_batch(SCHEMA))
        .map_err(|e| format!("usage ledger {}: {e}", path.display()))?;
    Ok(conn)
}

pub use modelway_core::civil::{date_of as day_of, now_ms};

impl Ledger {
    /// Opens the ledger (creating the SQLite file and its table) and starts its writer.
    pub fn open(target: &LedgerTarget) -> Result<Arc<Self>, String> {
        Self::open_with(target, None, None)
    }

    /// As [`Ledger::open`]; `sink` is told of every record the writer takes, `on_drop`
    /// of every record a full queue drops.
    pub fn open_with(
        target: &LedgerTarget,
        sink: Option<RecordSink>,
        on_drop: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> Result<Arc<Self>, String> {
        let store = Arc::new(match target {
            LedgerTarget::Memory => Store::Memory(Mutex::new(BTreeMap::new())),
            LedgerTarget::Sqlite(path) => {
                // Fails here, at start, rather than in the writer.
                drop(open_sqlite(path)?);
                Store::Sqlite(path.clone())
            }
        });
        let (tx, rx) = channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer_store = store.clone();
        let writer_queued = queued.clone();
        let writer = std::thread::Builder::new()
            .name("usage-ledger".into())
            .spawn(move || writer_loop(&writer_store, &rx, &writer_queued, sink.as_ref()))
            .map_err(|e| format!("starting the usage ledger: {e}"))?;
        Ok(Arc::new(Self {
            tx: arc_swap::ArcSwapOption::from_pointee(tx),
            queued,
            on_drop,
            store,
            dropped: AtomicU64::new(0),
            writer: Mutex::new(Some(writer)),
        }))
    }

    /// Queues a record; never blocks.
    pub fn record(&self, r: UsageRecord) {
        let guard = self.tx.load();
        let Some(tx) = guard.as_ref() else { return };
        let sent = self.queued.fetch_add(1, Ordering::AcqRel) < QUEUE && tx.send(r).is_ok();
        if !sent {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(f) = &self.on_drop {
                f();
            }
        }
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops taking records, writes what is queued and waits for the writer (bounded by
    /// `within`).
    pub fn close(&self, within: Duration) {
        self.tx.store(None);
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let deadline = std::time::Instant::now() + within;
            while !h.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }

    /// What `key` has spent since `from_ms`, USD (priced records only).
    pub fn spent_since(&self, key: &str, from_ms: i64) -> Result<f64, String> {
        match &*self.store {
            Store::Memory(_) => Ok(0.0),
            Store::Sqlite(path) => {
                let conn = open_sqlite(path)?;
                conn.query_row(
                    "SELECT TOTAL(cost_usd) FROM usage WHERE key = ?1 AND ts_ms >= ?2",
                    rusqlite::params![key, from_ms],
                    |r| r.get(0),
                )
                .map_err(|e| e.to_string())
            }
        }
    }

    /// Totals per (key, provider, model, day) for records with `from_ms <= ts < to_ms`.
    pub fn totals(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Totals>, String> {
        match &*self.store {
            Store::Memory(m) => {
                let m = m.lock().map_err(|_| "usage totals poisoned".to_owned())?;
                let from = day_of(from_ms);
                let to = day_of(to_ms.saturating_sub(1));
                Ok(m.values()
                    .filter(|t| t.day >= from && t.day <= to)
                    .cloned()
                    .collect())
            }
            Store::Sqlite(path) => query_totals(path, from_ms, to_ms),
        }
    }
}

fn query_totals(path: &Path, from_ms: i64, to_ms: i64) -> Result<Vec<Totals>, String> {
    let conn = open_sqlite(path)?;
    let mut stmt = conn
        .prepare(
            "SELECT key, provider, served_model, date(ts_ms / 1000, 'unixepoch') AS day,
                    COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens),
                    SUM(cache_write_tokens), SUM(reasoning_tokens), TOTAL(cost_usd),
                    SUM(cost_usd IS NULL)
             FROM usage WHERE ts_ms >= ?1 AND ts_ms < ?2
             GROUP BY key, provider, served_model, day
             ORDER BY day, key, provider, served_model",
        )
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([from_ms, to_ms], |r| {
            let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            Ok(Totals {
                key: r.get(0)?,
                provider: r.get(1)?,
                model: r.get(2)?,
                day: r.get(3)?,
                requests: n(4)?,
                input_tokens: n(5)?,
                output_tokens: n(6)?,
                cached_input_tokens: n(7)?,
                cache_write_tokens: n(8)?,
                reasoning_tokens: n(9)?,
                cost_usd: r.get(10)?,
                unpriced_requests: n(11)?,
            })
        })
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

fn writer_loop(
    store: &Store,
    rx: &Receiver<UsageRecord>,
    queued: &AtomicUsize,
    sink: Option<&RecordSink>,
) {
    let mut conn = match store {
        Store::Sqlite(path) => match open_sqlite(path) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "usage ledger unavailable: records are lost");
                None
            }
        },
        Store::Memory(_) => None,
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut closed = false;
    let mut behind = false;
    while !closed {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => batch.push(r),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // Let records gather for FLUSH_EVERY after the first (unless the last batch was
        // full: then the queue is behind), and take them in one go: one wakeup and one
        // transaction per interval under load, not one per request (measured: +112 µs
        // of CPU per request at 2000 req/s when every record was its own transaction).
        if !behind {
            std::thread::sleep(FLUSH_EVERY);
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        behind = batch.len() >= BATCH;
        queued.fetch_sub(batch.len(), Ordering::AcqRel);
        if let Some(sink) = sink {
            batch.iter().for_each(|r| sink(r));
        }
        write(store, conn.as_mut(), &mut batch);
    }
    // Closed: what is left was drained above; nothing more can arrive.
    write(store, conn.as_mut(), &mut batch);
}

fn write(store: &Store, conn: Option<&mut rusqlite::Connection>, batch: &mut Vec<UsageRecord>) {
    if batch.is_empty() {
        return;
    }
    match store {
        Store::Memory(m) => {
            if let Ok(mut m) = m.lock() {
                for r in batch.iter() {
                    let day = day_of(r.ts_ms);
                    let t = m
                        .entry((
                            r.key.clone(),
                            r.provider.clone(),
                            r.served_model.clone(),
                            day.clone(),
                        ))
                        .or_insert_with(|| Totals {
                            key: r.key.clone(),
                            provider: r.provider.clone(),
                            model: r.served_model.clone(),
                            day,
                            ..Totals::default()
                        });
                    t.requests += 1;
                    t.input_tokens += r.input_tokens;
                    t.output_tokens += r.output_tokens;
                    t.cached_input_tokens += r.cached_input_tokens;
                    t.cache_write_tokens += r.cache_write_tokens;
                    t.reasoning_tokens += r.reasoning_tokens;
                    match r.cost_usd {
                        Some(c) => t.cost_usd += c,
                        None => t.unpriced_requests += 1,
                    }
                }
            }
        }
        Store::Sqlite(_) => {
            let Some(conn) = conn else { return };
            if let Err(e) = insert(conn, batch) {
                tracing::error!(error = %e, records = batch.len(), "usage ledger write failed");
            }
        }
    }
    batch.clear();
}

fn insert(conn: &mut rusqlite::Connection, batch: &[UsageRecord]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO usage (request_id, ts_ms, key, route, provider, requested_model,
               served_model, input_tokens, output_tokens, cached_input_tokens,
               cache_write_tokens, reasoning_tokens, cost_usd, duration_ms, ttft_ms, attempts,
               status, stream)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?;
        for r in batch {
            stmt.execute(rusqlite::params![
                r.request_id,
                r.ts_ms,
                r.key,
                r.route,
                r.provider,
                r.requested_model,
                r.served_model,
                r.input_tokens as i64,
                r.output_tokens as i64,
                r.cached_input_tokens as i64,
                r.cache_write_tokens as i64,
                r.reasoning_tokens as i64,
                r.cost_usd,
                r.duration_ms,
                r.ttft_ms,
                r.attempts,
                r.status,
                r.stream,
            ])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(i: u64, key: &str, cost: Option<f64>) -> UsageRecord {
        UsageRecord {
            request_id: format!("req_{i}"),
            ts_ms: 1_796_083_200_000 + i as i64, // 2026-12-01
            key: Some(key.into()),
            route: Some("fast".into()),
            provider: "mock".into(),
            requested_model: "fast".into(),
            served_model: "mock-fast".into(),
            input_tokens: 10,
            output_tokens: 5,
            cached_input_tokens: 2,
            cache_write_tokens: 0,
            reasoning_tokens: 1,
            cost_usd: cost,
            duration_ms: 1.5,
            ttft_ms: None,
            attempts: 1,
            status: 200,
            stream: false,
        }
    }

    #[test]
    fn bounds() {
        assert_eq!(parse_bound("1796083200"), Some(1_796_083_200_000));
        assert_eq!(parse_bound("2026-12-01"), Some(1_796_083_200_000));
        assert_eq!(parse_bound("1970-01-01"), Some(0));
        assert_eq!(parse_bound("2026-13-01"), None);
        assert_eq!(parse_bound("soon"), None);
    }

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_796_083_200_000), "2026-12-01");
        assert_eq!(day_of(951_782_400_000), "2000-02-29");
    }

    fn check(target: LedgerTarget) {
        let l = Ledger::open(&target).unwrap();
        for i in 0..300 {
            l.record(rec(
                i,
                if i % 3 == 0 { "a" } else { "b" },
                (i % 10 != 0).then_some(0.5),
            ));
        }
        l.close(Duration::from_secs(10));
        let t = l.totals(0, i64::MAX).unwrap();
        assert_eq!(t.len(), 2, "{t:?}");
        let a = t.iter().find(|t| t.key.as_deref() == Some("a")).unwrap();
        assert_eq!(a.requests, 100);
        assert_eq!(a.input_tokens, 1000);
        assert_eq!(a.day, "2026-12-01");
        let total: u64 = t.iter().map(|t| t.requests).sum();
        assert_eq!(total, 300);
        let unpriced: u64 = t.iter().map(|t| t.unpriced_requests).sum();
        assert_eq!(unpriced, 30);
        let cost: f64 = t.iter().map(|t| t.cost_usd).sum();
        assert!((cost - 135.0).abs() < 1e-9, "{cost}");
        assert!(l.totals(0, 1_796_083_200_000).unwrap().is_empty());
    }

    #[test]
    fn memory_totals() {
        check(LedgerTarget::Memory);
    }

    #[test]
    fn sqlite_records_every_row_and_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("modelway-ledger-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("usage.db");
        check(LedgerTarget::Sqlite(path.clone()));
        // Reopened: the rows are still there, and new ones add to them.
        let l = Ledger::open(&LedgerTarget::Sqlite(path)).unwrap();
        l.record(rec(1000, "a", Some(1.0)));
        l.close(Duration::from_secs(10));
        let t = l.totals(0, i64::MAX).unwrap();
        assert_eq!(t.iter().map(|t| t.requests).sum::<u64>(), 301);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
