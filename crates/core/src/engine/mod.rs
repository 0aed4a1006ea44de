//! The engine: how one [`Call`] becomes one answer, whatever the providers do.
//!
//! 1. The router resolves the model into a [`Plan`] (and the OpenRouter fields, when
//!    the request has them, extend, filter and sort it: [`openrouter`]); a call that
//!    needs a passthrough upstream keeps only the targets that forward it as sent
//!    (`passthrough.rs`).
//! 2. The plan's [`Strategy`] orders its targets; [`health`] skips ejected ones.
//! 3. The attempt loop walks them with each target's [`Policy`]: retries with
//!    jittered backoff or the upstream's `Retry-After`, per-phase timeouts, the call's
//!    deadline. A failure's [`FailureClass`] decides between retrying, falling back
//!    and answering at once.
//! 4. A stream is returned only at its commit point, its first content (`commit.rs`),
//!    so everything before it fails over invisibly.
//! 5. [`Observer`]s hear every attempt's start and end and every stream's end.
//!
//! When every attempt fails the client gets one error that lists them all.
//!
//! Chat completions and embeddings go through the same loop; `kind.rs` holds the little
//! that differs (the routing key, the OpenRouter fields, which provider method an
//! attempt calls).

mod commit;
mod kind;
pub mod observer;

mod passthrough;
pub mod quota;
pub mod strategy;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::error::FailureClass;
pub use crate::health::{self, Admission, Health, HealthReport, TargetHealth};
pub use crate::policy::hedge::{self, Hedge, HedgeAfter, HedgeBudget};
pub use crate::policy::{apply_params, Backoff, HealthSettings, Policy, PolicyLayer, StrategyKind};
pub use crate::router::openrouter;
pub use commit::has_content;
pub use observer::{AttemptEnd, AttemptInfo, AttemptResult, Observer, RequestParams, StreamEnd};
pub use strategy::{RandomSource, SeededRandom, Strategy, ThreadRandom};

use crate::call::{Attempt, Call, Timeouts};
use crate::chat::Completion;
use crate::embed::{EmbedRequest, Embeddings};
use crate::error::{GatewayError, ProviderError};
use crate::limits::Limiter;
use crate::provider::ChunkStream;
use crate::router::{Plan, Target};
use crate::snapshot::{Served, Snapshot};
use crate::stream::normalize;
use crate::trace::SpanContext;
use futures_util::StreamExt as _;
use kind::{Output, RequestKind};

/// The engine's state that outlives snapshots: health, observers, the random source,
/// the limit counters of provider quotas.
pub struct Engine {
    health: Arc<Health>,
    /// Health and the quota charger first, then what the embedder added.
    observers: Arc<[Arc<dyn Observer>]>,
    random: Arc<dyn RandomSource>,
    limiter: Arc<Limiter>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("observers", &self.observers.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine whose observers are `health` and the provider quota charger, with
    /// an in-process limiter.
    pub fn new(health: Arc<Health>) -> Self {
        Self::with_limiter(health, Arc::new(Limiter::memory()))
    }

    /// As [`Engine::new`], with provider quotas counted in `limiter`.
    pub fn with_limiter(health: Arc<Health>, limiter: Arc<Limiter>) -> Self {
        let observers: Vec<Arc<dyn Observer>> = vec![
            health.clone(),
            Arc::new(quota::QuotaCharger::new(limiter.clone())),
        ];
        Self {
            health,
            observers: observers.into(),
            random: Arc::new(ThreadRandom),
            limiter,
        }
    }

    /// The limiter provider quotas (and the binary's key limits) are counted in.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// Adds an observer.
    pub fn add_observer(&mut self, o: Arc<dyn Observer>) {
        let mut v: Vec<Arc<dyn Observer>> = self.observers.iter().cloned().collect();
        v.push(o);
        self.observers = v.into();
    }

    /// Replaces the random source (seeded in tests).
    pub fn set_random(&mut self, r: Arc<dyn RandomSource>) {
        self.random = r;
    }

    /// The health registry.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// A JSON answer.
    pub(crate) async fn execute(
        &self,
        snap: &Snapshot,
        call: Call,
    ) -> Result<Served<Completion>, GatewayError> {
        let served = self.run(snap, call, false).await?;
        let (value, served) = served.split();
        match value {
            Output::Json(c) => Ok(served.with(c)),
            _ => Err(GatewayError::internal(
                "not a completion where one was asked",
            )),
        }
    }

    /// Embeddings, with the same routing, retries, fallback, health and observers as
    /// a chat call.
    pub(crate) async fn embed(
        &self,
        snap: &Snapshot,
        call: Call<EmbedRequest>,
    ) -> Result<Served<Embeddings>, GatewayError> {
        let served = self.run(snap, call, false).await?;
        let (value, served) = served.split();
        match value {
            Output::Embeddings(e) => Ok(served.with(e)),
            _ => Err(GatewayError::internal(
                "not embeddings where they were asked",
            )),
        }
    }

    /// A stream, returned at its commit point and normalized ([`crate::stream`]).
    pub(crate) async fn execute_stream(
        &self,
        snap: &Snapshot,
        call: Call,
    ) -> Result<Served<ChunkStream>, GatewayError> {
        let include_usage = call.request().wants_stream_usage() || call.meta.keep_usage;
        let served = self.run(snap, call, true).await?;
        let (value, served) = served.split();
        match value {
            Output::Stream(s) => {
                let s = normalize(s, include_usage);
                Ok(served.with(s))
            }
            _ => Err(GatewayError::internal("JSON where a stream was asked")),
        }
    }

    async fn run<R: RequestKind>(
        &self,
        snap: &Snapshot,
        call: Call<R>,
        stream: bool,
    ) -> Result<Served<Output>, GatewayError> {
        let started = Instant::now();
        let hints = call.request().hints()?;
        let plan = snap.router.plan(call.request().model(), hints.as_ref())?;
        // What only a passthrough upstream can serve goes only to one.
        let plan = match call.needs_native() {
            Some(feature) => passthrough::restrict(plan, &call, feature)?,
            None => plan,
        };
        if call.meta.provider_key.is_some() {
            quota::check_client_key(&plan)?;
        }
        let route_deadline = plan.deadline.and_then(|d| started.checked_add(d));
        let deadline = match (call.meta.deadline, route_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut order = Vec::with_capacity(plan.targets.len());
        plan.strategy
            .strategy()
            .order(&plan.targets, self.random.as_ref(), &mut order);
        if plan.single {
            order.truncate(1);
        }
        let run = Run {
            engine: self,
            plan: &plan,
            call: &call,
            stream,
            deadline,
            attempts: Mutex::new(Vec::new()),
            last: Mutex::new(None),
            deadline_passed: AtomicBool::new(false),
            started: AtomicU32::new(0),
            won: AtomicBool::new(false),
            over_quota: Mutex::new(Vec::new()),
            unsupported: Mutex::new(Vec::new()),
        };
        let mut lanes = Lanes {
            order: &order,
            next: 0,
            skipped: Vec::new(),
            fallback_tried: false,
        };
        let hedge = plan
            .route
            .and_then(|r| Some((r.hedge.as_ref()?, &r.hedge_budget)))
            .filter(|_| order.len() > 1);
        let served = match hedge {
            Some((hedge, budget)) => {
                budget.count_call();
                run.hedged(&mut lanes, hedge, budget).await?
            }
            None => run.sequential(&mut lanes).await?,
        };
        match served {
            Some(s) => Ok(s),
            None => Err(run.all_failed()),
        }
    }
}

/// One failed attempt, for the all-failed error.
struct AttemptLog {
    target: String,
    class: FailureClass,
    status: Option<u16>,
    elapsed: Duration,
    retry_after: Option<Duration>,
}

/// Which targets are left to try, in the strategy's order; ejected ones are skipped
/// as they come up, and kept to try when every target turned out to be ejected.
struct Lanes<'o> {
    order: &'o [usize],
    next: usize,
    skipped: Vec<usize>,
    fallback_tried: bool,
}

impl Lanes<'_> {
    /// The next target to try and how it is admitted.
    fn next(&mut self, plan: &Plan<'_>, attempted: bool) -> Option<(usize, Admission)> {
        while let Some(&i) = self.order.get(self.next) {
            self.next += 1;
            match plan.targets[i].health.admit() {
                Admission::Ejected => self.skipped.push(i),
                admission => return Some((i, admission)),
            }
        }
        // Every target is ejected: rather than failing blind, try the one whose ejection
        // is oldest.
        if attempted || self.fallback_tried {
            return None;
        }
        self.fallback_tried = true;
        let i = *self
            .skipped
            .iter()
            .min_by_key(|&&i| plan.targets[i].health.ejected_at())?;
        Some((i, Admission::Healthy))
    }
}

/// The attempt loop of one call. Its state is shared by the concurrent attempts of a
/// hedged call, hence the atomics and (uncontended, held for a push) mutexes.
struct Run<'e, 'p, R> {
    engine: &'e Engine,
    plan: &'p Plan<'p>,
    call: &'p Call<R>,
    stream: bool,
    deadline: Option<Instant>,
    attempts: Mutex<Vec<AttemptLog>>,
    last: Mutex<Option<(String, ProviderError)>>,
    deadline_passed: AtomicBool,
    /// Attempts started, hedges included: the next attempt's number is one more.
    started: AtomicU32,
    /// Set when an attempt won, so the others, dropped, report themselves as hedge losers.
    won: AtomicBool,
    /// Targets skipped for their provider's quota, and when it would fit.
    over_quota: Mutex<Vec<(String, Duration)>>,
    /// Targets skipped because their provider does not serve this kind of call.
    unsupported: Mutex<Vec<String>>,
}

/// Tells observers about an attempt that never ended because its future was dropped —
/// a hedge that lost, or a client that went away — and gives back a half-open
/// target's probe.
struct Unfinished<'a> {
    observers: &'a [Arc<dyn Observer>],
    info: Option<AttemptInfo<'a>>,
    started: Instant,
    won: &'a AtomicBool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        let Some(info) = self.info.take() else {
            return;
        };
        let end = AttemptEnd {
            result: AttemptResult::Cancelled {
                hedge_loser: self.won.load(Ordering::Acquire),
            },
            elapsed: self.started.elapsed(),
            first_token: None,
            by_deadline: false,
            answer: None,
            embeddings: None,
        };
        for o in self.observers {
            o.attempt_ended(&info, &end);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while pushing a log line cannot leave it half-written: recover the data.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<R: RequestKind> Run<'_, '_, R> {
    fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    fn attempted(&self) -> bool {
        self.started.load(Ordering::Acquire) > 0
    }

    /// Targets one after the other: the next when one fails.
    async fn sequential(
        &self,
        lanes: &mut Lanes<'_>,
    ) -> Result<Option<Served<Output>>, GatewayError> {
        while let Some((i, admission)) = lanes.next(self.plan, self.attempted()) {
            if let Some(done) = self.target(&self.plan.targets[i], admission, false).await? {
                return Ok(Some(done));
            }
            if self.deadline_passed.load(Ordering::Acquire) {
                break;
            }
        }
        Ok(None)
    }

    /// Targets side by side: the next is started when the running ones are slower
    /// than `hedge_after` (within `hedge_max` and the route's budget) or all failed;
    /// the first to commit wins and the others are dropped.
    async fn hedged(
        &self,
        lanes: &mut Lanes<'_>,
        hedge: &Hedge,
        budget: &HedgeBudget,
    ) -> Result<Option<Served<Output>>, GatewayError> {
        let mut running = futures_util::stream::FuturesUnordered::new();
        let delay = match hedge.after {
            HedgeAfter::Fixed(d) => Some(d),
            HedgeAfter::Percentile(q) => lanes.order.first().and_then(|&i| {
                self.plan.targets[i]
                    .health
                    .percentile(q, hedge::MIN_SAMPLES)
            }),
        };
        let mut hedges = 0u32;
        let mut timer = delay.map(|d| Box::pin(tokio::time::sleep(d)));
        loop {
            if running.is_empty() {
                let Some((i, admission)) = lanes.next(self.plan, self.attempted()) else {
                    return Ok(None);
                };
                running.push(self.target(&self.plan.targets[i], admission, false));
            }
            let hedge_due = async {
                match timer.as_mut() {
                    Some(t) if hedges < hedge.max => t.as_mut().await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                done = running.next() => match done {
                    Some(Ok(Some(served))) => {
                        self.won.store(true, Ordering::Release);
                        return Ok(Some(Served {
                            attempts: self.started.load(Ordering::Acquire),
                            hedged: hedges > 0,
                            ..served
                        }));
                    }
                    Some(Err(e)) => return Err(e),
                    Some(Ok(None)) | None => {
                        if self.deadline_passed.load(Ordering::Acquire) && running.is_empty() {
                            return Ok(None);
                        }
                    }
                },
                () = hedge_due => {
                    timer = delay.map(|d| Box::pin(tokio::time::sleep(d)));
                    if !budget.try_hedge(hedge.budget) {
                        timer = None;
                        continue;
                    }
                    match lanes.next(self.plan, true) {
                        Some((i, admission)) => {
                            hedges += 1;
                            tracing::debug!(
                                request_id = %self.call.meta.request_id,
                                target = %self.plan.targets[i],
                                "hedging: the running attempts are slow"
                            );
                            running.push(self.target(&self.plan.targets[i], admission, true));
                        }
                        None => timer = None,
                    }
                }
            }
        }
    }

    /// Tries one target with its retries. `Ok(Some)`: answered. `Ok(None)`: move on.
    /// `Err`: answer the client with this now.
    async fn target(
        &self,
        target: &Target,
        admission: Admission,
        hedge: bool,
    ) -> Result<Option<Served<Output>>, GatewayError> {
        let probe = admission == Admission::Probe;
        let edited;
        let call = match &target.params {
            None => self.call,
            Some(params) => {
                let req = apply_params(self.call.request(), params).map_err(|e| {
                    let mut err = GatewayError::bad_request(format!(
                        "the `params` of target {target} do not apply to this request: {e}"
                    ));
                    err.attempts = self.started.load(Ordering::Acquire);
                    err
                })?;
                let mut c = self.call.clone();
                *c.request_mut() = req;
                edited = c;
                &edited
            }
        };
        let policy = &target.policy;
        let params = call.request().params();
        // A probe gets one try: a failed probe ejects the target again.
        let retries = if probe { 0 } else { policy.retries };
        let mut tries = 0u32;
        loop {
            let remaining = self.remaining();
            if remaining.is_some_and(|r| r.is_zero()) {
                self.deadline_passed.store(true, Ordering::Release);
                if probe && tries == 0 {
                    target.health.release_probe();
                }
                return Ok(None);
            }
            // A provider over the operator's quota with it would refuse: move on.
            if let Some(wait) = quota::over_quota(&self.engine.limiter, target, call).await {
                tracing::debug!(
                    request_id = %call.meta.request_id,
                    target = %target,
                    "skipped: the provider is over its quota"
                );
                lock(&self.over_quota).push((target.to_string(), wait));
                if probe && tries == 0 {
                    target.health.release_probe();
                }
                return Ok(None);
            }
            let clip = |d: Duration| remaining.map_or(d, |r| d.min(r));
            let timeouts = Timeouts {
                connect: clip(policy.connect_timeout),
                head: clip(policy.timeout),
                idle: policy.idle_timeout,
            };
            let number = self.started.fetch_add(1, Ordering::AcqRel) + 1;
            let mut attempt = Attempt::new(call, &target.model, timeouts);
            attempt.number = number;
            attempt.trace = call.meta.trace.as_ref().map(SpanContext::child);
            let info = AttemptInfo {
                request_id: &call.meta.request_id,
                caller: call.meta.caller.as_deref(),
                route: self.plan.route.map(|r| r.name.as_str()),
                target,
                operation: R::OPERATION,
                number,
                stream: self.stream,
                probe: probe && tries == 0,
                hedge: hedge && tries == 0,
                trace: attempt.trace,
                params,
            };
            for o in self.engine.observers.iter() {
                o.attempt_started(&info);
            }
            let started = Instant::now();
            let mut unfinished = Unfinished {
                observers: &self.engine.observers,
                info: Some(info),
                started,
                won: &self.won,
            };
            // Before its commit a stream is bounded by the first-token timeout, else by
            // what is left of the deadline.
            let first_token = policy.first_token_timeout.map(clip).or(remaining);
            let result = self.send(target, &attempt, first_token).await;
            let elapsed = started.elapsed();
            // The attempt ended: it is reported below, not as unfinished.
            unfinished.info = None;
            match result {
                Ok((value, dropped, upstream_limits)) => {
                    let first_token = self.stream.then_some(elapsed);
                    let end = AttemptEnd {
                        result: AttemptResult::Answered,
                        elapsed,
                        first_token,
                        by_deadline: false,
                        answer: match &value {
                            Output::Json(c) => Some(c),
                            _ => None,
                        },
                        embeddings: match &value {
                            Output::Embeddings(e) => Some(e),
                            _ => None,
                        },
                    };
                    for o in self.engine.observers.iter() {
                        o.attempt_ended(&info, &end);
                    }
                    let value = match value {
                        Output::Stream(s) => Output::Stream(commit::Observed::wrap(
                            s,
                            self.engine.observers.clone(),
                            commit::StreamOrigin {
                                request_id: call.meta.request_id.clone(),
                                caller: call.meta.caller.clone(),
                                route: self.plan.route.map(|r| r.name.clone()),
                                target: target.clone(),
                                number,
                                probe,
                                hedge: info.hedge,
                                trace: info.trace,
                                params,
                                started,
                                first_token,
                            },
                        )),
                        json => json,
                    };
                    return Ok(Some(Served {
                        value,
                        provider: target.provider.name.clone(),
                        model: target.model.clone(),
                        attempts: number,
                        dropped_params: dropped,
                        hedged: false,
                        upstream_limits,
                    }));
                }
                Err(err) => {
                    // A timeout that only the deadline's clip caused is not the target's
                    // fault: health does not count it.
                    let by_deadline = err.class().is_timeout()
                        && self
                            .deadline
                            .is_some_and(|d| Instant::now() + Duration::from_millis(5) >= d);
                    let end = AttemptEnd {
                        result: AttemptResult::Failed(&err),
                        elapsed,
                        first_token: None,
                        by_deadline,
                        answer: None,
                        embeddings: None,
                    };
                    for o in self.engine.observers.iter() {
                        o.attempt_ended(&info, &end);
                    }
                    let class = err.class();
                    if class == FailureClass::Unsupported {
                        // Not a failure of the target: it does not serve this kind of
                        // call. Skipped like a target over its quota.
                        tracing::debug!(
                            request_id = %call.meta.request_id,
                            target = %target,
                            operation = R::OPERATION.as_str(),
                            "skipped: the provider does not serve this kind of call"
                        );
                        lock(&self.unsupported).push(target.provider.name.clone());
                        return Ok(None);
                    }
                    tracing::warn!(
                        request_id = %call.meta.request_id,
                        provider = %target.provider.name,
                        model = %target.model,
                        attempt = number,
                        error.type = class.as_str(),
                        error = %err.redacted(call.meta.provider_key.as_ref().or(target.provider.config.api_key.as_ref()).map(|k| k.expose())),
                        "upstream attempt failed"
                    );
                    lock(&self.attempts).push(AttemptLog {
                        target: target.to_string(),
                        class,
                        status: err.status(),
                        elapsed,
                        retry_after: err.retry_after(),
                    });
                    if !class.falls_back(target.fallback_on_404) && !class.retries_same_target() {
                        let mut e = GatewayError::from_provider(&target.provider.name, &err);
                        e.attempts = self.started.load(Ordering::Acquire);
                        return Err(e);
                    }
                    let retry_after = err.retry_after();
                    *lock(&self.last) = Some((target.provider.name.clone(), err));
                    if self.remaining().is_some_and(|r| r.is_zero()) {
                        self.deadline_passed.store(true, Ordering::Release);
                        return Ok(None);
                    }
                    if !class.retries_same_target() || tries >= retries {
                        return Ok(None);
                    }
                    tries += 1;
                    let wait = match retry_after {
                        // Longer than the policy lets us wait: the next target instead.
                        Some(ra) if ra > policy.max_retry_after => return Ok(None),
                        Some(ra) => ra,
                        None => policy.backoff.delay(tries, self.engine.random.unit()),
                    };
                    // A wait that would outlast the deadline: the next target instead.
                    if self.remaining().is_some_and(|r| wait >= r) {
                        return Ok(None);
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One attempt, bounded by its timeouts: dropping the provider's future on a
    /// timeout closes its connection, so nothing keeps running upstream.
    async fn send(
        &self,
        target: &Target,
        attempt: &Attempt<'_, R>,
        first_token: Option<Duration>,
    ) -> Result<(Output, Vec<String>, Option<crate::limits::UpstreamLimits>), ProviderError> {
        let provider = target.provider.provider.as_ref();
        let head = attempt.timeouts.head;
        if !self.stream {
            let answer = tokio::time::timeout(head, R::answer(provider, attempt))
                .await
                .map_err(|_| ProviderError::Timeout(head))??;
            return Ok((answer.value, answer.dropped, answer.limits));
        }
        let start = tokio::time::Instant::now();
        let opened = match first_token {
            // The first token bounds the head too: a head cannot come after it.
            Some(ft) if ft < head => tokio::time::timeout(ft, R::stream(provider, attempt))
                .await
                .map_err(|_| ProviderError::FirstTokenTimeout(ft))??,
            _ => tokio::time::timeout(head, R::stream(provider, attempt))
                .await
                .map_err(|_| ProviderError::Timeout(head))??,
        };
        let until = first_token.and_then(|ft| Some((start.checked_add(ft)?, ft)));
        let stream = commit::first_content(opened.value, until).await?;
        Ok((Output::Stream(stream), opened.dropped, opened.limits))
    }

    /// The client's error when no attempt answered: 429 with the soonest
    /// `Retry-After` when every attempt was rate limited, 504 when the last failure
    /// was a timeout or the deadline passed, else 502 — the message listing every
    /// attempt.
    fn all_failed(self) -> GatewayError {
        let attempts = self
            .attempts
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = self
            .last
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let deadline_passed = self.deadline_passed.load(Ordering::Acquire);
        let n = self.started.load(Ordering::Acquire);
        let over_quota = self
            .over_quota
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut unsupported = self
            .unsupported
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        unsupported.dedup();
        let Some((provider, last)) = &last else {
            if !unsupported.is_empty() && over_quota.is_empty() && !deadline_passed {
                let mut e = GatewayError::operation_not_supported(
                    self.call.request().model(),
                    R::OPERATION,
                    &unsupported,
                );
                e.attempts = n;
                return e;
            }
            if !over_quota.is_empty() {
                let names: Vec<&str> = over_quota.iter().map(|(t, _)| t.as_str()).collect();
                let mut e = GatewayError::rate_limited(format!(
                    "Every target is over its provider's quota ({}); try again later.",
                    names.join(", ")
                ))
                .with_code("provider_quota_exceeded");
                e.retry_after = over_quota.iter().map(|(_, w)| *w).min();
                return e;
            }
            return if deadline_passed {
                GatewayError::timeout("The request's deadline passed before any attempt.")
            } else {
                GatewayError::internal("the route has no target to try")
            };
        };
        let mut list = String::new();
        for (i, a) in attempts.iter().enumerate() {
            if i > 0 {
                list.push_str("; ");
            }
            let _ = write!(list, "{} ({}", a.target, a.class);
            if let Some(s) = a.status {
                let _ = write!(list, ", HTTP {s}");
            }
            let _ = write!(list, ", {} ms)", a.elapsed.as_millis());
        }
        let base = GatewayError::from_provider(provider, last);
        for (i, (t, _)) in over_quota.iter().enumerate() {
            list.push_str(if i == 0 {
                "; skipped over its quota: "
            } else {
                ", "
            });
            list.push_str(t);
        }
        if !unsupported.is_empty() {
            let _ = write!(
                list,
                "; cannot serve {}: {}",
                R::OPERATION,
                unsupported.join(", ")
            );
        }
        let summary = format!(
            "{} attempt{} failed: {list}. Last error: {}",
            n,
            if n == 1 { "" } else { "s" },
            base.message
        );
        let all_rate_limited = attempts.iter().all(|a| {
            matches!(
                a.class,
                FailureClass::RateLimited | FailureClass::QuotaExhausted
            )
        });
        let mut e = if all_rate_limited {
            let mut e = GatewayError::rate_limited(summary);
            e.retry_after = attempts.iter().filter_map(|a| a.retry_after).min();
            e.code = base.code.clone().or(e.code);
            e
        } else if deadline_passed || last.class().is_timeout() {
            GatewayError::timeout(summary)
        } else {
            let code = if base.status == 502 {
                base.code.clone()
            } else {
                Some("upstream_error".to_owned())
            };
            let mut e = GatewayError::upstream(summary);
            e.code = code;
            e
        };
        e.attempts = n;
        e
    }
}

impl<T> Served<T> {
    /// The value, and who served it.
    pub fn split(self) -> (T, Served<()>) {
        let Served {
            value,
            provider,
            model,
            attempts,
            dropped_params,
            hedged,
            upstream_limits,
        } = self;
        (
            value,
            Served {
                value: (),
                provider,
                model,
                attempts,
                dropped_params,
                hedged,
                upstream_limits,
            },
        )
    }
}

impl Served<()> {
    /// Who served, around a value.
    pub fn with<U>(self, value: U) -> Served<U> {
        Served {
            value,
            provider: self.provider,
            model: self.model,
            attempts: self.attempts,
            dropped_params: self.dropped_params,
            hedged: self.hedged,
            upstream_limits: self.upstream_limits,
        }
    }
}
