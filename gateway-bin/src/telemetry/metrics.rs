//! `GET /metrics`: Prometheus (OpenMetrics) text from the `prometheus-client` crate.
//!
//! Counters and histograms are atomics behind a label-set map; the request path does
//! one map lookup per family it touches. Health state is read from the engine at
//! scrape time, not kept twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use modelway_core::engine::{AttemptEnd, AttemptInfo, AttemptResult, Observer};
use modelway_core::Gateway;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The labels of a served (or refused) request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `chat` or `embeddings` (`gen_ai.operation.name`).
    pub operation: &'static str,
    /// The route name; empty when the model named a provider directly.
    pub route: String,
    /// The configured provider that answered; empty when none did.
    pub provider: String,
    /// The upstream model that answered, else the model the client asked for.
    pub model: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimingLabels {
    operation: &'static str,
    route: String,
    provider: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    operation: &'static str,
    route: String,
    provider: String,
    model: String,
    /// `input`, `output`, `cached_input`, `reasoning`.
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    operation: &'static str,
    provider: String,
    model: String,
    /// `answered`, a failure class (`timeout`, `rate_limited`, `server_error`, …),
    /// `cancelled` or `hedge_lost`.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabels {
    provider: String,
    model: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    /// `queue_full` or `export_failed`.
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UsageLabels {
    /// The gateway key's name (never the key); empty without keys.
    key: String,
    provider: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UsageTokenLabels {
    key: String,
    provider: String,
    model: String,
    /// `input`, `output`, `cached_input`, `cache_write`, `reasoning`.
    kind: &'static str,
}

type CostCounter = Counter<f64, std::sync::atomic::AtomicU64>;

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Most (operation, route, provider, model) handle sets kept.
const MAX_CACHED_HANDLES: usize = 4096;

/// A handle cache's key: (operation, route, provider, model), owned.
#[derive(Hash, PartialEq, Eq)]
struct HandleKey {
    operation: &'static str,
    route: String,
    provider: String,
    model: String,
}

/// The same key, borrowed: what a request looks up with (its hash is the owned key's,
/// field for field), so a hit builds no key.
#[derive(Hash)]
struct HandleRef<'a> {
    operation: &'static str,
    route: &'a str,
    provider: &'a str,
    model: &'a str,
}

impl hashbrown::Equivalent<HandleKey> for HandleRef<'_> {
    fn equivalent(&self, k: &HandleKey) -> bool {
        self.operation == k.operation
            && self.route == k.route
            && self.provider == k.provider
            && self.model == k.model
    }
}

impl HandleRef<'_> {
    fn owned(&self) -> HandleKey {
        HandleKey {
            operation: self.operation,
            route: self.route.to_owned(),
            provider: self.provider.to_owned(),
            model: self.model.to_owned(),
        }
    }
}

type HandleMap<T> = std::sync::RwLock<hashbrown::HashMap<HandleKey, Arc<T>>>;

/// The attempt counters of one (operation, provider, model), by outcome.
struct AttemptHandles {
    by_outcome: std::sync::RwLock<Vec<(&'static str, Counter)>>,
}

/// The handles of one (operation, route, provider, model). Counters and histograms share their
/// values with the registered families.
struct Handles {
    labels: TimingLabels,
    by_status: std::sync::RwLock<Vec<(u16, Counter)>>,
    duration: Histogram,
    first_token: Histogram,
    /// input, output, cached_input, reasoning.
    tokens: [Counter; 4],
}

impl Handles {
    fn requests(&self, status: u16, m: &Metrics) -> Counter {
        if let Some(c) = self
            .by_status
            .read()
            .ok()
            .and_then(|v| v.iter().find(|(s, _)| *s == status).map(|(_, c)| c.clone()))
        {
            return c;
        }
        let c = m
            .requests
            .get_or_create(&RequestLabels {
                operation: self.labels.operation,
                route: self.labels.route.clone(),
                provider: self.labels.provider.clone(),
                model: self.labels.model.clone(),
                status,
            })
            .clone();
        if let Ok(mut v) = self.by_status.write() {
            if v.len() < 64 {
                v.push((status, c.clone()));
            }
        }
        c
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ])
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<TimingLabels>,
    first_token: HistogramFamily<TimingLabels>,
    tokens: Family<TokenLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    hedges: Family<ProviderLabels, Counter>,
    health: Family<HealthLabels, Gauge>,
    in_flight: Gauge,
    reloads: Family<ReloadLabels, Counter>,
    config_version: Gauge,
    spans_dropped: Family<DropLabels, Counter>,
    spans_exported: Counter,
    usage_cost: Family<UsageLabels, CostCounter>,
    usage_tokens: Family<UsageTokenLabels, Counter>,
    usage_unpriced: Family<UsageLabels, Counter>,
    usage_dropped: Counter,
    /// Kept beside the counter so the exporter can read its own drops.
    dropped_total: AtomicU64,
    handles: HandleMap<Handles>,
    attempt_handles: HandleMap<AttemptHandles>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("modelway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "LLM requests by operation (chat, embeddings), route, provider, model and HTTP status",
            requests.clone(),
        );
        let duration: HistogramFamily<TimingLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to the end of its answer (a stream's last byte)",
            duration.clone(),
        );
        let first_token: HistogramFamily<TimingLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "time_to_first_token_seconds",
            "Streams: time from a request's arrival to its first content",
            first_token.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens by kind (input, output, cached_input, reasoning), as upstreams reported them",
            tokens.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "upstream_attempts",
            "Upstream attempts by operation, provider, model and outcome class",
            attempts.clone(),
        );
        let hedges = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "hedges",
            "Hedged attempts started beside a slow one, by the hedge's provider and model",
            hedges.clone(),
        );
        let health = Family::<HealthLabels, Gauge>::default();
        registry.register(
            "target_health",
            "1 for each tracked target's current health state (healthy, ejected, half_open)",
            health.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "LLM requests being served",
            in_flight.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads by result (ok, rejected)",
            reloads.clone(),
        );
        let config_version = Gauge::default();
        registry.register(
            "config_version",
            "The active config snapshot's version (1 at start, one more per reload)",
            config_version.clone(),
        );
        let spans_dropped = Family::<DropLabels, Counter>::default();
        registry.register(
            "telemetry_spans_dropped",
            "Spans not exported: the export queue was full, or the collector failed or timed out",
            spans_dropped.clone(),
        );
        // Known label sets start at 0, so a rate over them works from the first scrape.
        for result in ["ok", "rejected"] {
            let _ = reloads.get_or_create(&ReloadLabels { result });
        }
        for reason in ["queue_full", "export_failed"] {
            let _ = spans_dropped.get_or_create(&DropLabels { reason });
        }
        let spans_exported = Counter::default();
        registry.register(
            "telemetry_spans_exported",
            "Spans the collector accepted",
            spans_exported.clone(),
        );
        let usage_cost = Family::<UsageLabels, CostCounter>::default();
        registry.register(
            "usage_cost_usd",
            "Cost of served requests in USD, by gateway key name, provider and model (priced models only)",
            usage_cost.clone(),
        );
        let usage_tokens = Family::<UsageTokenLabels, Counter>::default();
        registry.register(
            "usage_tokens",
            "Tokens of served requests by gateway key name, provider, model and kind",
            usage_tokens.clone(),
        );
        let usage_unpriced = Family::<UsageLabels, Counter>::default();
        registry.register(
            "usage_unpriced_requests",
            "Served requests whose model has no price: their cost is unknown, not 0",
            usage_unpriced.clone(),
        );
        let usage_dropped = Counter::default();
        registry.register(
            "usage_records_dropped",
            "Usage records dropped because the ledger's queue was full",
            usage_dropped.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            first_token,
            tokens,
            attempts,
            hedges,
            health,
            in_flight,
            reloads,
            config_version,
            spans_dropped,
            spans_exported,
            usage_cost,
            usage_tokens,
            usage_unpriced,
            usage_dropped,
            dropped_total: AtomicU64::new(0),
            handles: std::sync::RwLock::new(hashbrown::HashMap::new()),
            attempt_handles: std::sync::RwLock::new(hashbrown::HashMap::new()),
        }
    }

    /// The text exposition, with health read from `gateway` now.
    pub fn render(&self, gateway: &Gateway) -> String {
        self.health.clear();
        for h in gateway.health().report() {
            self.health
                .get_or_create(&HealthLabels {
                    provider: h.provider,
                    model: h.model,
                    state: h.state,
                })
                .set(1);
        }
        self.config_version
            .set(i64::try_from(gateway.snapshot().version).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(4096);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts a usage record (called by the ledger's writer, off the request path).
    pub fn record_usage(&self, s: &crate::ledger::Sum<'_>) {
        let labels = UsageLabels {
            key: s.key.unwrap_or_default().to_owned(),
            provider: s.provider.to_owned(),
            model: s.model.to_owned(),
        };
        if s.priced > 0 {
            self.usage_cost.get_or_create(&labels).inc_by(s.cost_usd);
        }
        if s.unpriced > 0 {
            self.usage_unpriced
                .get_or_create(&labels)
                .inc_by(s.unpriced);
        }
        for (kind, n) in [
            ("input", s.input_tokens),
            ("output", s.output_tokens),
            ("cached_input", s.cached_input_tokens),
            ("cache_write", s.cache_write_tokens),
            ("reasoning", s.reasoning_tokens),
        ] {
            if n > 0 {
                self.usage_tokens
                    .get_or_create(&UsageTokenLabels {
                        key: labels.key.clone(),
                        provider: labels.provider.clone(),
                        model: labels.model.clone(),
                        kind,
                    })
                    .inc_by(n);
            }
        }
    }

    /// A usage record the ledger's full queue dropped.
    pub fn usage_dropped(&self) {
        self.usage_dropped.inc();
    }

    pub(crate) fn request_started(&self) {
        self.in_flight.inc();
    }

    /// A request ended: its counter, timings and tokens.
    pub(crate) fn request_ended(&self, r: &super::Finished<'_>) {
        self.in_flight.dec();
        let h = self.handles(r.operation, r.route, r.provider, r.model);
        h.requests(r.status, self).inc();
        h.duration.observe(r.duration.as_secs_f64());
        if let Some(t) = r.first_token {
            h.first_token.observe(t.as_secs_f64());
        }
        if let Some(t) = r.tokens {
            for (i, n) in [Some(t.input), Some(t.output), t.cached_input, t.reasoning]
                .into_iter()
                .enumerate()
            {
                if let Some(n) = n.filter(|&n| n > 0) {
                    h.tokens[i].inc_by(n);
                }
            }
        }
    }

    /// The metric handles of one (operation, route, provider, model): one map lookup
    /// per request instead of one per family (the families' own lookups hash every
    /// label string).
    fn handles(
        &self,
        operation: &'static str,
        route: &str,
        provider: &str,
        model: &str,
    ) -> Arc<Handles> {
        let key = HandleRef {
            operation,
            route,
            provider,
            model,
        };
        if let Some(h) = self.handles.read().ok().and_then(|m| m.get(&key).cloned()) {
            return h;
        }
        let timing = TimingLabels {
            operation,
            route: route.to_owned(),
            provider: provider.to_owned(),
            model: model.to_owned(),
        };
        let token = |kind| {
            self.tokens
                .get_or_create(&TokenLabels {
                    operation,
                    route: route.to_owned(),
                    provider: provider.to_owned(),
                    model: model.to_owned(),
                    kind,
                })
                .clone()
        };
        let h = Arc::new(Handles {
            labels: timing.clone(),
            by_status: std::sync::RwLock::new(Vec::new()),
            duration: self.duration.get_or_create(&timing).clone(),
            first_token: self.first_token.get_or_create(&timing).clone(),
            tokens: [
                token("input"),
                token("output"),
                token("cached_input"),
                token("reasoning"),
            ],
        });
        if let Ok(mut m) = self.handles.write() {
            // Bounded: past the cap (a flood of distinct model names), handles are
            // made per request and not kept.
            if m.len() < MAX_CACHED_HANDLES {
                m.insert(key.owned(), h.clone());
            }
        }
        h
    }

    /// The attempts counter of (operation, provider, model, outcome), found by
    /// borrowed labels like [`Metrics::handles`].
    fn attempt_counter(
        &self,
        operation: &'static str,
        provider: &str,
        model: &str,
        outcome: &'static str,
    ) -> Counter {
        let key = HandleRef {
            operation,
            route: "",
            provider,
            model,
        };
        let cached = self
            .attempt_handles
            .read()
            .ok()
            .and_then(|m| m.get(&key).cloned());
        let h = match cached {
            Some(h) => h,
            None => {
                let h = Arc::new(AttemptHandles {
                    by_outcome: std::sync::RwLock::new(Vec::new()),
                });
                match self.attempt_handles.write() {
                    Ok(mut m) if m.len() < MAX_CACHED_HANDLES => {
                        m.entry(key.owned()).or_insert_with(|| h.clone()).clone()
                    }
                    _ => h,
                }
            }
        };
        if let Some(c) = h.by_outcome.read().ok().and_then(|v| {
            v.iter()
                .find(|(o, _)| *o == outcome)
                .map(|(_, c)| c.clone())
        }) {
            return c;
        }
        let c = self
            .attempts
            .get_or_create(&AttemptLabels {
                operation,
                provider: provider.to_owned(),
                model: model.to_owned(),
                outcome,
            })
            .clone();
        if let Ok(mut v) = h.by_outcome.write() {
            if v.len() < 64 && !v.iter().any(|(o, _)| *o == outcome) {
                v.push((outcome, c.clone()));
            }
        }
        c
    }

    pub fn reloaded(&self, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                result: if ok { "ok" } else { "rejected" },
            })
            .inc();
    }

    pub(crate) fn spans_dropped(&self, reason: &'static str, n: u64) {
        self.dropped_total.fetch_add(n, Ordering::Relaxed);
        self.spans_dropped
            .get_or_create(&DropLabels { reason })
            .inc_by(n);
    }

    pub(crate) fn spans_exported(&self, n: u64) {
        self.spans_exported.inc_by(n);
    }

    /// Spans dropped since start, for tests and the shutdown line.
    pub fn dropped_spans(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }
}

/// Attempts and hedges, counted as the engine reports them.
impl Observer for Metrics {
    fn attempt_started(&self, a: &AttemptInfo<'_>) {
        if a.hedge {
            self.hedges
                .get_or_create(&ProviderLabels {
                    provider: a.provider().to_owned(),
                    model: a.model().to_owned(),
                })
                .inc();
        }
    }

    fn attempt_ended(&self, a: &AttemptInfo<'_>, end: &AttemptEnd<'_>) {
        let outcome = match end.result {
            AttemptResult::Answered => "answered",
            AttemptResult::Failed(e) => e.class().as_str(),
            AttemptResult::Cancelled { hedge_loser: true } => "hedge_lost",
            AttemptResult::Cancelled { hedge_loser: false } => "cancelled",
        };
        self.attempt_counter(a.operation.as_str(), a.provider(), a.model(), outcome)
            .inc();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn encoded(m: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        out
    }

    #[test]
    fn cached_handles_count_each_label_set_apart() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.attempt_counter("chat", "up", "m1", "answered").inc();
        }
        m.attempt_counter("chat", "up", "m1", "timeout").inc();
        m.attempt_counter("chat", "up", "m2", "answered").inc();
        // The separator-free key cannot merge ("u","pm1") with ("up","m1").
        m.attempt_counter("chat", "u", "pm1", "answered").inc();
        m.attempt_counter("embeddings", "up", "m1", "answered")
            .inc();
        let text = encoded(&m);
        let line = |labels: &str| {
            text.lines()
                .find(|l| l.starts_with("modelway_upstream_attempts_total{") && l.contains(labels))
                .unwrap_or_else(|| panic!("no series {labels} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            line(r#"operation="chat",provider="up",model="m1",outcome="answered""#),
            "3"
        );
        assert_eq!(
            line(r#"operation="chat",provider="up",model="m1",outcome="timeout""#),
            "1"
        );
        assert_eq!(line(r#"provider="up",model="m2""#), "1");
        assert_eq!(line(r#"provider="u",model="pm1""#), "1");
        assert_eq!(line(r#"operation="embeddings""#), "1");

        for _ in 0..2 {
            let h = m.handles("chat", "r", "up", "m1");
            h.requests(200, &m).inc();
        }
        m.handles("chat", "", "up", "m1").requests(200, &m).inc();
        let text = encoded(&m);
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("modelway_requests_total{"))
            .collect();
        assert_eq!(series.len(), 2, "{series:?}");
        assert!(series
            .iter()
            .any(|l| l.contains(r#"route="r""#) && l.ends_with(" 2")));
    }
}
