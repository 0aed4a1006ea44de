//! The [`Gateway`] facade: the routing engine without an HTTP server, for the binary
//! and for services that embed modelway. [`Gateway::execute`] is the one entry point.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::call::Call;
use crate::chat::Completion;
use crate::config::{Config, ConfigError};
use crate::embed::{EmbedRequest, Embeddings};
use crate::engine::{Engine, Health, Observer, RandomSource};
use crate::error::GatewayError;
use crate::http_client::HttpClient;
use crate::limits::Limiter;
use crate::provider::{ChunkStream, ProviderRegistry};
use crate::snapshot::{Served, Snapshot};

/// The routing engine: the current [`Snapshot`] behind an `ArcSwap`, the provider
/// registry, the shared HTTP client and the engine's lasting state (health,
/// observers).
///
/// ```no_run
/// # async fn demo(registry: modelway_core::ProviderRegistry) -> Result<(), Box<dyn std::error::Error>> {
/// use modelway_core::{chat::{ChatRequest, Message, Role}, Call, Config, Gateway};
/// let gateway = Gateway::new(Config::quickstart(), registry)?;
/// let req = ChatRequest::new("fast", vec![Message::text(Role::User, "hi")]);
/// let served = gateway.execute(Call::new(req)).await?;
/// let answer = served.value.into_response()?;
/// println!("{:?} from {}", answer.choices[0].message.content, served.provider);
/// # Ok(()) }
/// ```
pub struct Gateway {
    current: ArcSwap<Snapshot>,
    registry: ProviderRegistry,
    http: HttpClient,
    engine: Engine,
    versions: AtomicU64,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("version", &self.current.load().version)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds a gateway from a validated config and the provider kinds it may use.
    /// A config read from a file carries the line of each key, so its errors name
    /// one.
    pub fn new(config: Config, registry: ProviderRegistry) -> Result<Self, ConfigError> {
        let http = HttpClient::new();
        let health = Arc::new(Health::new(config.routing.health));
        // Limit counters outlive snapshots: `[limits]` is read once, here.
        let limiter = Limiter::from_config(&config.limits)
            .map_err(|e| ConfigError::new(format!("`limits.store`: {e}"), None))?;
        let mut snap = Snapshot::build(config, &registry, &http, &health, None)?;
        snap.version = 1;
        Ok(Self {
            current: ArcSwap::from_pointee(snap),
            registry,
            http,
            engine: Engine::with_limiter(health, Arc::new(limiter)),
            versions: AtomicU64::new(1),
        })
    }

    #[doc(hidden)]
    /// Adds an observer of every attempt (telemetry, metrics, a ledger).
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.engine.add_observer(observer);
        self
    }

    #[doc(hidden)]
    /// Replaces the random source the `weighted` strategy and backoff jitter draw
    /// from (a [`crate::engine::SeededRandom`] makes them reproducible).
    pub fn with_random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.engine.set_random(random);
        self
    }

    #[doc(hidden)]
    /// The current snapshot. Load it once per request and keep it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    #[doc(hidden)]
    /// The limit counters: provider quotas, and the binary's per-key limits.
    pub fn limiter(&self) -> &Arc<Limiter> {
        self.engine.limiter()
    }

    #[doc(hidden)]
    /// The health of every target that has been tried.
    pub fn health(&self) -> &Health {
        self.engine.health()
    }

    #[doc(hidden)]
    /// Validates `config` exactly as a reload would, without swapping it in.
    pub fn check(&self, config: Config) -> Result<Snapshot, ConfigError> {
        let current = self.current.load();
        Snapshot::build(
            config,
            &self.registry,
            &self.http,
            self.engine.health(),
            Some(&current),
        )
    }

    #[doc(hidden)]
    /// Builds a snapshot from `config` and swaps it in if it is whole and valid; on
    /// error nothing changes. Requests in flight keep the snapshot they loaded. The
    /// health of providers whose settings changed (or that are gone) starts fresh;
    /// the rest is kept.
    pub fn reload(&self, config: Config) -> Result<Arc<Snapshot>, ConfigError> {
        let mut snap = self.check(config)?;
        snap.version = self.versions.fetch_add(1, Ordering::SeqCst) + 1;
        let health = self.engine.health();
        health.set_settings(snap.config.routing.health);
        health.retain_providers(|name, generation| {
            snap.router
                .providers()
                .any(|p| p.name == name && p.generation == generation)
        });
        let snap = Arc::new(snap);
        self.current.store(snap.clone());
        Ok(snap)
    }

    /// Swaps in a new config while the gateway serves: the providers are built and the
    /// routes resolved off the request path, and the new config takes over whole only
    /// if all of it is valid — on error nothing changes and the old config keeps
    /// serving. Calls in flight finish on the config they started with. Providers whose
    /// settings did not change are carried over, with their health. Returns the new
    /// config's version (1 for the config the gateway was built with, then one more per
    /// successful swap).
    pub fn set_config(&self, config: Config) -> Result<u64, ConfigError> {
        self.reload(config).map(|snap| snap.version)
    }

    /// The version of the config serving now (see [`Self::set_config`]).
    pub fn config_version(&self) -> u64 {
        self.current.load().version
    }

    /// The health of every target (provider and model) tried so far: its state
    /// (`healthy`, `ejected`, `probing`), consecutive failures, ejections and latency.
    pub fn health_report(&self) -> Vec<crate::engine::HealthReport> {
        self.engine.health().report()
    }

    /// The registry this gateway builds providers with.
    pub fn registry(&self) -> &ProviderRegistry {
        &self.registry
    }

    /// Serves a call on the current snapshot: a JSON answer, with retries, fallback,
    /// timeouts and health as the route's policy says.
    pub async fn execute(&self, call: Call) -> Result<Served<Completion>, GatewayError> {
        let snap = self.snapshot();
        self.engine.execute(&snap, call).await
    }

    /// Serves a call as a stream on the current snapshot. It returns at the stream's
    /// commit point (its first content), so every failure before it has fallen back.
    pub async fn execute_stream(&self, call: Call) -> Result<Served<ChunkStream>, GatewayError> {
        let snap = self.snapshot();
        self.engine.execute_stream(&snap, call).await
    }

    #[doc(hidden)]
    /// As [`Self::execute`], on a snapshot the caller already loaded (the binary
    /// checks the gateway key against the same snapshot it serves on).
    pub async fn execute_on(
        &self,
        snap: &Snapshot,
        call: Call,
    ) -> Result<Served<Completion>, GatewayError> {
        self.engine.execute(snap, call).await
    }

    /// Serves an embeddings call on the current snapshot, through the same engine as
    /// [`Self::execute`]: the model resolves to a plan, targets are tried in the
    /// strategy's order with their policies, and a target whose provider cannot embed
    /// is skipped (a call none can serve is a 400 naming the model).
    ///
    /// ```no_run
    /// # async fn demo(gateway: modelway_core::Gateway) -> Result<(), Box<dyn std::error::Error>> {
    /// use modelway_core::embed::{EmbedInput, EmbedRequest};
    /// use modelway_core::Call;
    /// let req = EmbedRequest::new("text-embedding-3-small", EmbedInput::Text("hi".into()));
    /// let served = gateway.embed(Call::new(req)).await?;
    /// let answer = served.value.into_response()?;
    /// println!("{} vectors from {}", answer.data.len(), served.provider);
    /// # Ok(()) }
    /// ```
    pub async fn embed(
        &self,
        call: Call<EmbedRequest>,
    ) -> Result<Served<Embeddings>, GatewayError> {
        let snap = self.snapshot();
        self.engine.embed(&snap, call).await
    }

    #[doc(hidden)]
    /// As [`Self::embed`], on a snapshot the caller already loaded.
    pub async fn embed_on(
        &self,
        snap: &Snapshot,
        call: Call<EmbedRequest>,
    ) -> Result<Served<Embeddings>, GatewayError> {
        self.engine.embed(snap, call).await
    }

    #[doc(hidden)]
    /// As [`Self::execute_stream`], on a snapshot the caller already loaded.
    pub async fn execute_stream_on(
        &self,
        snap: &Snapshot,
        call: Call,
    ) -> Result<Served<ChunkStream>, GatewayError> {
        self.engine.execute_stream(snap, call).await
    }
}
