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

use crate::error::FailureClass;
use crate::policy::HealthSettings;

/// Milliseconds since the registry's epoch, never 0 (0 means "unset" in the atomics).
fn ms_since(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// How many recent time-to-first-token samples a target keeps for percentiles.
const SAMPLES: usize = 64;

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
    /// When a call last claimed the measurement of this cold target.
    latency_claim: AtomicU64,
    /// The last [`SAMPLES`] times to first token (µs), for percentile hedging.
    samples: [AtomicU64; SAMPLES],
    sample_count: AtomicU64,
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
            latency_claim: AtomicU64::new(0),
            samples: std::array::from_fn(|_| AtomicU64::new(0)),
            sample_count: AtomicU64::new(0),
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

    /// A good answer (or a stream that ended cleanly): the target is healthy. Each
    /// atomic is written only when it changes, so a busy healthy target's cache line
    /// stays shared between cores.
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Acquire) != 0 {
            self.consecutive_failures.store(0, Ordering::Release);
        }
        self.readmit();
    }

    /// A stream reached its commit point: the target answers, so an ejection (a
    /// probe's) ends; consecutive failures are cleared only when the stream ends well,
    /// so a target whose streams always break after the first token is still ejected.
    pub fn record_commit(&self) {
        self.readmit();
    }

    fn readmit(&self) {
        if self.ejected_until.load(Ordering::Acquire) != 0 {
            self.ejected_until.store(0, Ordering::Release);
            self.cooldown_ms.store(0, Ordering::Release);
        }
        if self.probing.load(Ordering::Acquire) {
            self.probing.store(false, Ordering::Release);
        }
    }

    /// A failure of class `class`; `retry_after` is the upstream's hint, `probe`
    /// whether the attempt was this target's half-open probe.
    pub fn record_failure(
        &self,
        class: FailureClass,
        retry_after: Option<Duration>,
        settings: &HealthSettings,
        probe: bool,
        fallback_on_404: bool,
    ) {
        if !class.counts_against_health(fallback_on_404) {
            // The upstream judged the request, not itself: the probe proved nothing.
            if probe {
                self.release_probe();
            }
            return;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        // An upstream's Retry-After ejects for that long, but never past max_cooldown.
        let hinted = match (class, retry_after) {
            (FailureClass::RateLimited, Some(ra)) if !ra.is_zero() => {
                Some(ra.min(settings.max_cooldown))
            }
            _ => None,
        };
        let now = self.now();
        let until = self.ejected_until.load(Ordering::Acquire);
        if probe {
            // Only the probe doubles the cooldown.
            let last = Duration::from_millis(self.cooldown_ms.load(Ordering::Acquire));
            let doubled = last
                .max(settings.cooldown)
                .saturating_mul(2)
                .min(settings.max_cooldown);
            self.eject(now, hinted.unwrap_or(doubled).max(doubled));
            self.probing.store(false, Ordering::Release);
        } else if until != 0 {
            // Already ejected (a late failure of a call admitted before): only a hint
            // may extend the ejection; the doubling is the probe's alone.
            if let Some(h) = hinted {
                let ms = u64::try_from(h.as_millis()).unwrap_or(u64::MAX);
                if now.saturating_add(ms) > until {
                    self.ejected_until
                        .store(now.saturating_add(ms), Ordering::Release);
                }
            }
        } else if let Some(h) = hinted {
            self.eject(now, h);
        } else if failures >= settings.failures {
            self.eject(now, settings.cooldown);
        }
    }

    fn eject(&self, now: u64, cooldown: Duration) {
        let ms = u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX);
        self.cooldown_ms.store(ms, Ordering::Release);
        self.ejected_at.store(now, Ordering::Release);
        self.ejected_until
            .store(now.saturating_add(ms).max(1), Ordering::Release);
        self.ejections.fetch_add(1, Ordering::Relaxed);
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
        let i = self.sample_count.fetch_add(1, Ordering::AcqRel);
        self.samples[(i % SAMPLES as u64) as usize].store(sample, Ordering::Release);
    }

    /// The `q` quantile (0.95 for p95) of the recent times to first token, once at
    /// least `min` samples were taken.
    pub fn percentile(&self, q: f64, min: usize) -> Option<Duration> {
        let n = usize::try_from(self.sample_count.load(Ordering::Acquire))
            .unwrap_or(usize::MAX)
            .min(SAMPLES);
        if n < min.max(1) {
            return None;
        }
        let mut v: Vec<u64> = self.samples[..n]
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .filter(|&x| x != 0)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(Duration::from_micros(v[rank - 1]))
    }

    /// The latency strategy's sort key for this target: its EWMA in µs when a sample
    /// is younger than `stale`; 0 (first) when it is cold and this call wins the one
    /// measurement allowed per second; else its old EWMA, or last when it has none. So
    /// a cold target is measured again without every concurrent call piling onto it.
    pub fn latency_rank(&self, stale: Duration) -> u64 {
        if let Some(d) = self.latency(stale) {
            return u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        }
        let now = self.now();
        let claimed = self.latency_claim.load(Ordering::Acquire);
        if (claimed == 0 || now.saturating_sub(claimed) >= 1000)
            && self
                .latency_claim
                .compare_exchange(claimed, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return 0;
        }
        match self.ewma_us.load(Ordering::Acquire) {
            0 => u64::MAX,
            ewma => ewma,
        }
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

/// The tracked targets of one built provider.
#[derive(Debug)]
struct ProviderTargets {
    name: String,
    targets: HashMap<String, Arc<TargetHealth>>,
}

/// Every target's health, keyed by provider and model.
#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    /// Keyed by provider name, provider generation and model.
    /// By provider generation (unique per built provider), then model: a lookup
    /// borrows the model name and allocates nothing.
    entries: RwLock<HashMap<u64, ProviderTargets>>,
    /// Tracked targets, for the cap.
    count: std::sync::atomic::AtomicUsize,
    pub(crate) settings: ArcSwap<HealthSettings>,
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
            count: std::sync::atomic::AtomicUsize::new(0),
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

    /// The health of a route's target: `provider` (of this `generation`) and `model`,
    /// created on first use. Always tracked.
    pub fn handle(&self, provider: &str, generation: u64, model: &str) -> Arc<TargetHealth> {
        self.get_or_insert(provider, generation, model, usize::MAX)
    }

    /// The health of a target a client named directly: tracked while fewer than
    /// [`Self::MAX_TARGETS`] are, else a detached record, so clients naming many models
    /// cannot grow the map without bound.
    pub fn handle_bounded(
        &self,
        provider: &str,
        generation: u64,
        model: &str,
    ) -> Arc<TargetHealth> {
        self.get_or_insert(provider, generation, model, Self::MAX_TARGETS)
    }

    fn get_or_insert(
        &self,
        provider: &str,
        generation: u64,
        model: &str,
        cap: usize,
    ) -> Arc<TargetHealth> {
        if let Ok(map) = self.entries.read() {
            if let Some(h) = map.get(&generation).and_then(|p| p.targets.get(model)) {
                return h.clone();
            }
        }
        let Ok(mut map) = self.entries.write() else {
            return TargetHealth::detached(provider, model);
        };
        let entry = map.entry(generation).or_insert_with(|| ProviderTargets {
            name: provider.to_owned(),
            targets: HashMap::new(),
        });
        if let Some(h) = entry.targets.get(model) {
            return h.clone();
        }
        if self.count.load(Ordering::Acquire) >= cap {
            return TargetHealth::detached(provider, model);
        }
        self.count.fetch_add(1, Ordering::AcqRel);
        let h = Arc::new(TargetHealth::new(provider, model, self.epoch));
        entry.targets.insert(model.to_owned(), h.clone());
        h
    }

    /// Forgets every target whose provider (name, generation) `keep` rejects: after
    /// a reload, those of providers that changed or are gone.
    pub fn retain_providers(&self, keep: impl Fn(&str, u64) -> bool) {
        if let Ok(mut map) = self.entries.write() {
            map.retain(|g, p| keep(&p.name, *g));
            let n = map.values().map(|p| p.targets.len()).sum();
            self.count.store(n, Ordering::Release);
        }
    }

    /// Every tracked target's state, sorted by provider and model.
    pub fn report(&self) -> Vec<HealthReport> {
        let mut out: Vec<HealthReport> = self
            .entries
            .read()
            .map(|m| {
                m.values()
                    .flat_map(|p| p.targets.values())
                    .map(|h| h.report())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
        out
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
        h.record_failure(FailureClass::ServerError, None, &s, false, true);
        assert_eq!(h.admit(), Admission::Healthy, "one failure is not enough");
        h.record_failure(FailureClass::ServerError, None, &s, false, true);
        assert_eq!(h.admit(), Admission::Ejected);
        assert_eq!(h.report().state, "ejected");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            h.admit(),
            Admission::Probe,
            "the cooldown passed: one probe"
        );
        assert_eq!(h.admit(), Admission::Ejected, "only one probe at a time");
        // A late failure of a call admitted earlier neither doubles nor steals the probe.
        h.record_failure(FailureClass::Connect, None, &s, false, true);
        assert_eq!(h.admit(), Admission::Ejected, "the probe is still out");
        // The probe fails: ejected again, twice as long.
        h.record_failure(FailureClass::Connect, None, &s, true, true);
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
            h.record_failure(FailureClass::BadRequest, None, &s, false, true);
            h.record_failure(FailureClass::ModelNotFound, None, &s, false, false);
        }
        assert_eq!(h.admit(), Admission::Healthy);
        h.record_failure(
            FailureClass::RateLimited,
            Some(Duration::from_millis(30)),
            &s,
            false,
            true,
        );
        assert_eq!(h.admit(), Admission::Ejected);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(h.admit(), Admission::Probe);
        // A year-long Retry-After ejects for max_cooldown at most.
        let h = TargetHealth::detached("p", "m");
        h.record_failure(
            FailureClass::RateLimited,
            Some(Duration::from_secs(365 * 86_400)),
            &s,
            false,
            true,
        );
        assert!(
            h.report().ejected_for_ms.unwrap() <= 30_000,
            "{:?}",
            h.report()
        );
    }

    #[test]
    fn percentiles_need_enough_samples() {
        let h = TargetHealth::detached("p", "m");
        for ms in 1..=19 {
            h.record_latency(Duration::from_millis(ms));
        }
        assert_eq!(h.percentile(0.95, 20), None);
        h.record_latency(Duration::from_millis(20));
        assert_eq!(h.percentile(0.95, 20), Some(Duration::from_millis(19)));
        assert_eq!(h.percentile(0.5, 20), Some(Duration::from_millis(10)));
    }

    #[test]
    fn a_stream_that_breaks_after_its_commit_still_counts_toward_ejection() {
        let s = settings(10_000);
        let h = TargetHealth::detached("p", "m");
        for _ in 0..2 {
            h.record_commit();
            h.record_failure(FailureClass::StreamCut, None, &s, false, true);
        }
        assert_eq!(h.admit(), Admission::Ejected);
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
