//! The [`Gateway`] facade: the routing engine without an HTTP server, for the binary
//! and for services that embed modelway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::chat::{ChatRequest, ChatResponse};
use crate::config::{Config, ConfigError};
use crate::error::GatewayError;
use crate::http_client::HttpClient;
use crate::provider::{ChunkStream, ProviderRegistry, RequestContext};
use crate::snapshot::{Served, Snapshot};

/// The routing engine: the current [`Snapshot`] behind an `ArcSwap`, the provider
/// registry and the shared HTTP client.
///
/// ```no_run
/// # async fn demo(registry: modelway_core::ProviderRegistry) -> Result<(), Box<dyn std::error::Error>> {
/// use modelway_core::{chat::{ChatRequest, Message, Role}, Config, Gateway};
/// let gateway = Gateway::new(Config::quickstart(), registry)?;
/// let req = ChatRequest::new("fast", vec![Message::text(Role::User, "hi")]);
/// let answer = gateway.chat(req).await?;
/// println!("{:?} from {}", answer.value.choices[0].message.content, answer.provider);
/// # Ok(()) }
/// ```
pub struct Gateway {
    current: ArcSwap<Snapshot>,
    registry: ProviderRegistry,
    http: HttpClient,
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
    pub fn new(config: Config, registry: ProviderRegistry) -> Result<Self, ConfigError> {
        Self::with_source(config, registry, None)
    }

    /// As [`Gateway::new`]; `src` (the config text) puts line numbers on errors.
    pub fn with_source(
        config: Config,
        registry: ProviderRegistry,
        src: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let http = HttpClient::new();
        let mut snap = Snapshot::build(config, &registry, &http, src, None)?;
        snap.version = 1;
        Ok(Self {
            current: ArcSwap::from_pointee(snap),
            registry,
            http,
            versions: AtomicU64::new(1),
        })
    }

    /// The current snapshot. Load it once per request and keep it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Validates `config` exactly as a reload would, without swapping it in.
    pub fn check(&self, config: Config, src: Option<&str>) -> Result<Snapshot, ConfigError> {
        let current = self.current.load();
        Snapshot::build(config, &self.registry, &self.http, src, Some(&current))
    }

    /// Builds a snapshot from `config` and swaps it in if it is whole and valid; on
    /// error nothing changes. Requests in flight keep the snapshot they loaded.
    pub fn reload(&self, config: Config, src: Option<&str>) -> Result<Arc<Snapshot>, ConfigError> {
        let mut snap = self.check(config, src)?;
        snap.version = self.versions.fetch_add(1, Ordering::SeqCst) + 1;
        let snap = Arc::new(snap);
        self.current.store(snap.clone());
        Ok(snap)
    }

    /// The registry this gateway builds providers with.
    pub fn registry(&self) -> &ProviderRegistry {
        &self.registry
    }

    /// A non-streaming completion on the current snapshot.
    pub async fn chat(&self, req: ChatRequest) -> Result<Served<ChatResponse>, GatewayError> {
        let snap = self.snapshot();
        let ctx = RequestContext::new(snap.config.routing.timeout);
        let served = snap.chat(req, ctx).await?;
        let value = served.value.into_response().map_err(|e| {
            let err = crate::ProviderError::Malformed(format!("not a chat completion: {e}"));
            GatewayError::from_provider(&served.provider, &err)
        })?;
        Ok(Served {
            value,
            provider: served.provider,
            model: served.model,
            attempts: served.attempts,
            dropped_params: served.dropped_params,
        })
    }

    /// A streamed completion on the current snapshot.
    pub async fn chat_stream(&self, req: ChatRequest) -> Result<Served<ChunkStream>, GatewayError> {
        let snap = self.snapshot();
        let ctx = RequestContext::new(snap.config.routing.timeout);
        snap.chat_stream(req, ctx).await
    }
}
