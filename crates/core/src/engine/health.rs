//! Health: outlier ejection per target (provider + model), outside the snapshot.
//!
//! After `failures` consecutive failures that are the target's fault — or at once on a
//! 429 with `Retry-After`, for that long — a target is *ejected* for `cooldown`. When the
//! cooldown has passed it is *half-open*: exactly one call gets to probe it while the
//! others keep skipping it. A good probe readmits it; a failed one ejects it again
//! for twice as long, up to `max_cooldown`. Every field is an atomic: the request path
//! reads and updates health without a lock.
//!
//! The registry keeps one [`TargetHealth`] per provider and model and lives in the
//! [`crate::Gateway`], not in a snapshot: a reload keeps the state of every provider
//! whose settings did not change. A changed provider starts fresh — it may now be a
//! different upstream: entries are keyed by the provider's *generation* too, which a
//! rebuilt provider gets anew and a carried-over one keeps, so building a snapshot (even
//! one only checked, never swapped in) never disturbs the health the active one uses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::failure::FailureClass;
use super::observer::{AttemptEnd, AttemptInfo, AttemptResult, Observer, StreamEnd};

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

/// Milliseconds since the registry's epoch, never 0 (0 means "unset" in the atomics).
fn ms_since(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// What one target's health says about trying it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Not ejected.
    Healthy,
    /// The cooldown passed and this call won the single probe.
    Probe,
    /// Ejected (or half-open with a probe in flight): skip it.
    Ejected,
}

/// The health of one target. Shared by every snapshot that routes to it.
#[derive(Debug)]
pub struct TargetHealth {
    provider: String,
    model: String,
    epoch: Instant,
    consecutive_failures: AtomicU32,
    /// When the ejection ends (ms since epoch); 0 when not ejected.
    ejected_until: AtomicU64,
    /// When the current ejection began; 0 when never ejected.
    ejected_at: AtomicU64,
    /// The length of the current (or last) ejection, in ms.
    cooldown_ms: AtomicU64,
    probing: AtomicBool,
    /// EWMA of the time to first token, in µs; 0 = no sample yet.
    ewma_us: AtomicU64,
    last_sample: AtomicU64,
    ejections: AtomicU64,
}

impl TargetHealth {
    fn new(provider: &str, model: &str, epoch: Instant) -> Self {
        Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
            epoch,
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejected_at: AtomicU64::new(0),
            cooldown_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            ewma_us: AtomicU64::new(0),
            last_sample: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
        }
    }

    /// A health record that no registry tracks (a target of a one-off plan).
    pub fn detached(provider: &str, model: &str) -> Arc<Self> {
        Arc::new(Self::new(provider, model, Instant::now()))
    }

    fn now(&self) -> u64 {
        ms_since(self.epoch, Instant::now())
    }

    /// Whether a call may try this target now. A [`Admission::Probe`] must be
    /// resolved by [`Self::record_success`] or [`Self::record_failure`], or released
    /// by [`Self::release_probe`].
    pub fn admit(&self) -> Admission {
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return Admission::Healthy;
        }
        if self.now() < until {
            return Admission::Ejected;
        }
        match self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Admission::Probe,
            Err(_) => Admission::Ejected,
        }
    }

    /// Gives back a probe whose attempt never ended (the call was cancelled).
    pub fn release_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    /// When the current ejection began (ms since the registry's epoch), for picking
    /// the least recently ejected target when every target is ejected.
    pub fn ejected_at(&self) -> u64 {
        self.ejected_at.load(Ordering::Acquire)
    }

    /// A good answer: the target is healthy.
    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
        if self.ejected_until.load(Ordering::Acquire) != 0 {
            self.ejected_until.store(0, Ordering::Release);
            self.cooldown_ms.store(0, Ordering::Release);
        }
        self.probing.store(false, Ordering::Release);
    }

    /// A failure of class `class`; `retry_after` is the upstream's hint.
    pub fn record_failure(
        &self,
        class: FailureClass,
        retry_after: Option<Duration>,
        settings: &HealthSettings,
    ) {
        if !class.counts_against_health() {
            if self.probing.load(Ordering::Acquire) {
                // The probe reached an upstream that judged the request, not the target.
                self.record_success();
            }
            return;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let was_probe = self.probing.swap(false, Ordering::AcqRel);
        let cooldown = match (class, retry_after) {
            (FailureClass::RateLimited, Some(ra)) if !ra.is_zero() => Some(ra),
            _ if was_probe => {
                let last = Duration::from_millis(self.cooldown_ms.load(Ordering::Acquire));
                Some(
                    last.max(settings.cooldown)
                        .saturating_mul(2)
                        .min(settings.max_cooldown),
                )
            }
            _ if failures >= settings.failures => Some(settings.cooldown),
            _ => None,
        };
        if let Some(c) = cooldown {
            let now = self.now();
            let ms = u64::try_from(c.as_millis()).unwrap_or(u64::MAX);
            self.cooldown_ms.store(ms, Ordering::Release);
            self.ejected_at.store(now, Ordering::Release);
            self.ejected_until
                .store(now.saturating_add(ms).max(1), Ordering::Release);
            self.ejections.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Folds a time-to-first-token sample into the EWMA (weight 0.3 for the new one).
    pub fn record_latency(&self, ttft: Duration) {
        let sample = u64::try_from(ttft.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.ewma_us.load(Ordering::Acquire);
        let new = if old == 0 {
            sample
        } else {
            ((old as f64) * 0.7 + (sample as f64) * 0.3) as u64
        };
        self.ewma_us.store(new.max(1), Ordering::Release);
        self.last_sample.store(self.now(), Ordering::Release);
    }

    /// The EWMA of the time to first token, when a sample is younger than `stale`.
    pub fn latency(&self, stale: Duration) -> Option<Duration> {
        let ewma = self.ewma_us.load(Ordering::Acquire);
        let at = self.last_sample.load(Ordering::Acquire);
        let fresh = at != 0
            && self.now().saturating_sub(at)
                <= u64::try_from(stale.as_millis()).unwrap_or(u64::MAX);
        (ewma != 0 && fresh).then(|| Duration::from_micros(ewma))
    }

    /// The state for `GET /admin/health`.
    pub fn report(&self) -> HealthReport {
        let now = self.now();
        let until = self.ejected_until.load(Ordering::Acquire);
        let state = if until == 0 {
            "healthy"
        } else if now < until {
            "ejected"
        } else {
            "half_open"
        };
        let ewma = self.ewma_us.load(Ordering::Acquire);
        HealthReport {
            provider: self.provider.clone(),
            model: self.model.clone(),
            state,
            consecutive_failures: self.consecutive_failures.load(Ordering::Acquire),
            ejected_for_ms: (until > now).then(|| until - now),
            ejections: self.ejections.load(Ordering::Relaxed),
            ewma_ttft_ms: (ewma != 0).then(|| ewma as f64 / 1000.0),
        }
    }
}

/// One target's health, as `GET /admin/health` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HealthReport {
    pub provider: String,
    pub model: String,
    /// `healthy`, `ejected` or `half_open`.
    pub state: &'static str,
    pub consecutive_failures: u32,
    /// How much longer the ejection lasts.
    pub ejected_for_ms: Option<u64>,
    /// Ejections since the gateway started (or the provider last changed).
    pub ejections: u64,
    /// Recent time to first token (EWMA).
    pub ewma_ttft_ms: Option<f64>,
}

/// Every target's health, keyed by provider and model.
#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    /// Keyed by provider name, provider generation and model.
    entries: RwLock<HashMap<(String, u64, String), Arc<TargetHealth>>>,
    settings: ArcSwap<HealthSettings>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new(HealthSettings::default())
    }
}

impl Health {
    /// At most this many targets are tracked: models a client names directly could
    /// otherwise grow the map without bound. Beyond it, targets get detached records.
    pub const MAX_TARGETS: usize = 4096;

    /// An empty registry.
    pub fn new(settings: HealthSettings) -> Self {
        Self {
            epoch: Instant::now(),
            entries: RwLock::new(HashMap::new()),
            settings: ArcSwap::from_pointee(settings),
        }
    }

    /// The settings of the active config.
    pub fn settings(&self) -> Arc<HealthSettings> {
        self.settings.load_full()
    }

    /// Applies a new config's settings.
    pub fn set_settings(&self, s: HealthSettings) {
        self.settings.store(Arc::new(s));
    }

    /// The health of `provider` (of this `generation`) and `model`, created on first
    /// use.
    pub fn handle(&self, provider: &str, generation: u64, model: &str) -> Arc<TargetHealth> {
        let key = (provider.to_owned(), generation, model.to_owned());
        if let Ok(map) = self.entries.read() {
            if let Some(h) = map.get(&key) {
                return h.clone();
            }
        }
        let Ok(mut map) = self.entries.write() else {
            return TargetHealth::detached(provider, model);
        };
        if map.len() >= Self::MAX_TARGETS && !map.contains_key(&key) {
            return TargetHealth::detached(provider, model);
        }
        map.entry(key)
            .or_insert_with(|| Arc::new(TargetHealth::new(provider, model, self.epoch)))
            .clone()
    }

    /// Forgets every target whose provider (name, generation) `keep` rejects: after
    /// a reload, those of providers that changed or are gone.
    pub fn retain_providers(&self, keep: impl Fn(&str, u64) -> bool) {
        if let Ok(mut map) = self.entries.write() {
            map.retain(|(p, g, _), _| keep(p, *g));
        }
    }

    /// Every tracked target's state, sorted by provider and model.
    pub fn report(&self) -> Vec<HealthReport> {
        let mut out: Vec<HealthReport> = self
            .entries
            .read()
            .map(|m| m.values().map(|h| h.report()).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
        out
    }
}

/// Health is the first observer: it learns from every attempt's end and every
/// stream's end.
impl Observer for Health {
    fn attempt_ended(&self, attempt: &AttemptInfo<'_>, end: &AttemptEnd<'_>) {
        let h = &attempt.target.health;
        match end.result {
            AttemptResult::Answered => {
                h.record_success();
                h.record_latency(end.first_token.unwrap_or(end.elapsed));
            }
            AttemptResult::Failed(e) => {
                h.record_failure(e.class(), e.retry_after(), &self.settings.load());
            }
        }
    }

    fn stream_ended(&self, attempt: &AttemptInfo<'_>, end: &StreamEnd<'_>) {
        if let Some(e) = end.error {
            attempt
                .target
                .health
                .record_failure(e.class(), e.retry_after(), &self.settings.load());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cooldown_ms: u64) -> HealthSettings {
        HealthSettings {
            failures: 2,
            cooldown: Duration::from_millis(cooldown_ms),
            max_cooldown: Duration::from_millis(cooldown_ms * 3),
        }
    }

    #[test]
    fn ejects_after_consecutive_failures_then_probes_once_and_recovers() {
        let s = settings(40);
        let h = Health::new(s).handle("p", 1, "m");
        h.record_failure(FailureClass::ServerError, None, &s);
        assert_eq!(h.admit(), Admission::Healthy, "one failure is not enough");
        h.record_failure(FailureClass::ServerError, None, &s);
        assert_eq!(h.admit(), Admission::Ejected);
        assert_eq!(h.report().state, "ejected");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            h.admit(),
            Admission::Probe,
            "the cooldown passed: one probe"
        );
        assert_eq!(h.admit(), Admission::Ejected, "only one probe at a time");
        // The probe fails: ejected again, twice as long.
        h.record_failure(FailureClass::Connect, None, &s);
        assert_eq!(h.report().state, "ejected");
        assert!(h.report().ejected_for_ms.unwrap() > 40, "{:?}", h.report());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(h.admit(), Admission::Probe);
        h.record_success();
        assert_eq!(h.admit(), Admission::Healthy);
        assert_eq!(h.report().consecutive_failures, 0);
    }

    #[test]
    fn a_rate_limit_with_retry_after_ejects_for_that_long_and_bad_requests_do_not_count() {
        let s = settings(10_000);
        let h = TargetHealth::detached("p", "m");
        for _ in 0..5 {
            h.record_failure(FailureClass::BadRequest, None, &s);
        }
        assert_eq!(h.admit(), Admission::Healthy);
        h.record_failure(
            FailureClass::RateLimited,
            Some(Duration::from_millis(30)),
            &s,
        );
        assert_eq!(h.admit(), Admission::Ejected);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(h.admit(), Admission::Probe);
    }

    #[test]
    fn the_registry_shares_handles_and_forgets_changed_providers() {
        let reg = Health::default();
        let a = reg.handle("p", 1, "m");
        assert!(Arc::ptr_eq(&a, &reg.handle("p", 1, "m")));
        assert!(
            !Arc::ptr_eq(&a, &reg.handle("p", 2, "m")),
            "a rebuilt provider"
        );
        reg.retain_providers(|_, g| g == 2);
        assert!(!Arc::ptr_eq(&a, &reg.handle("p", 1, "m")));
    }
}
