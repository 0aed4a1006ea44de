//! For provider authors: the [`Provider`] trait (one object-safe trait per upstream
//! dialect), the [`ProviderFactory`] that builds one from its `[providers.NAME]` table
//! ([`ProviderConfig`]), and the [`ProviderRegistry`] mapping `kind` strings to
//! factories — with the types a provider receives ([`Attempt`], [`Timeouts`]) and
//! returns ([`Answer`], [`ChunkStream`], [`ProviderError`], [`ModelInfo`]).
//!
//! A provider is registered with one line and is then usable by that `kind`:
//!
//! ```
//! use std::sync::Arc;
//! use modelway_core::provider::{
//!     Answer, Attempt, BuildError, ChunkStream, HttpClient, NoOptions, Provider,
//!     ProviderConfig, ProviderFactory, ProviderRegistry,
//! };
//! use modelway_core::chat::Completion;
//! use modelway_core::ProviderError;
//!
//! struct Refuser;
//!
//! #[async_trait::async_trait]
//! impl Provider for Refuser {
//!     async fn chat(&self, _: &Attempt<'_>) -> Result<Answer<Completion>, ProviderError> {
//!         Err(ProviderError::Malformed("this upstream says no".into()))
//!     }
//!     async fn chat_stream(&self, _: &Attempt<'_>) -> Result<Answer<ChunkStream>, ProviderError> {
//!         Err(ProviderError::Malformed("this upstream says no".into()))
//!     }
//! }
//!
//! struct RefuserFactory;
//!
//! impl ProviderFactory for RefuserFactory {
//!     type Options = NoOptions; // a `#[serde(deny_unknown_fields)]` struct of its keys
//!     fn kind(&self) -> &str {
//!         "refuser"
//!     }
//!     fn build(&self, _: &ProviderConfig, _: NoOptions, _: &HttpClient)
//!         -> Result<Arc<dyn Provider>, BuildError> {
//!         Ok(Arc::new(Refuser))
//!     }
//! }
//!
//! let mut registry = ProviderRegistry::new();
//! registry.register(RefuserFactory);
//! assert_eq!(registry.kinds().collect::<Vec<_>>(), ["refuser"]);
//! ```

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::Stream;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub use crate::call::new_request_id;
pub use crate::call::{Answer, Attempt, ClientDialect, Operation, Timeouts};
use crate::chat::{ChatChunk, Completion};
pub use crate::config::{BuildError, ProviderConfig, ProviderOptions};
use crate::embed::{EmbedRequest, Embeddings};
pub use crate::error::{FailureClass, ProviderError};
pub use crate::http_client::HttpClient;
pub use crate::limits::UpstreamLimits;

/// A stream of canonical chunks. An `Err` item ends the stream.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, ProviderError>> + Send>>;

/// A model a provider lists for `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The model's id, as a client would name it.
    pub id: String,
    /// Who publishes it (the provider's name or the upstream's owner field).
    pub owned_by: String,
    /// Unix time in seconds the upstream says it was created (0 when unknown).
    pub created: u64,
}

/// One upstream, speaking one dialect.
///
/// The engine hands a provider one [`Attempt`] at a time — the call, the upstream
/// model to name and this attempt's timeouts — and the provider returns its answer by
/// value. Retries, fallback, timeouts around the whole attempt and health are the
/// engine's business, not the provider's: a provider makes one try and says what
/// happened ([`ProviderError`] carries the failure's class).
///
/// Implement `chat` and `chat_stream`; `embed` and `models` are optional.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// A non-streaming completion. An upstream that already answers in OpenAI's
    /// format may return its body as [`Completion::Raw`] to spare a parse and an
    /// encode; a translating provider returns [`Completion::Parsed`].
    async fn chat(&self, attempt: &Attempt<'_>) -> Result<Answer<Completion>, ProviderError>;

    /// A streamed completion. Returns once the upstream has accepted the request (its
    /// response head arrived); the engine holds what the stream yields until its first
    /// content, so failures up to that point still fall back.
    async fn chat_stream(
        &self,
        attempt: &Attempt<'_>,
    ) -> Result<Answer<ChunkStream>, ProviderError>;

    /// Embeddings (`POST /v1/embeddings`). An upstream that speaks OpenAI's format may
    /// return its body as [`Embeddings::Raw`]; a translating provider returns
    /// [`Embeddings::Parsed`], written in the encoding the request asks for
    /// ([`EmbedRequest::encoding`]).
    ///
    /// The default cannot embed: [`ProviderError::Unsupported`], which the engine
    /// treats as "skip this target" — no retry, no health penalty, the next target is
    /// tried, and a call no target can serve is a 400 naming its model.
    async fn embed(
        &self,
        attempt: &Attempt<'_, EmbedRequest>,
    ) -> Result<Answer<Embeddings>, ProviderError> {
        let _ = attempt;
        Err(ProviderError::Unsupported(Operation::Embeddings))
    }

    /// The models this upstream lists, where it can. The default lists none.
    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        Ok(Vec::new())
    }

    /// Counts the input tokens of `attempt`'s call upstream, where the upstream can
    /// (Anthropic's `count_tokens`, for a Messages client's body). `Ok(None)`: this
    /// upstream cannot count; the caller estimates. The default: `None`.
    async fn count_tokens(&self, attempt: &Attempt<'_>) -> Result<Option<u64>, ProviderError> {
        let _ = attempt;
        Ok(None)
    }

    /// Whether this upstream speaks OpenRouter's request dialect itself (`models`,
    /// `provider.*`): then those fields are forwarded to it and are about *its*
    /// providers, so the engine does not filter this target by them. The default: no.
    fn speaks_openrouter_fields(&self) -> bool {
        false
    }

    /// Whether this upstream takes a client's body in `dialect` as it came: every
    /// attempt whose [`Attempt::native_body`] in `dialect` is there sends those bytes
    /// (the model replaced; at most what the gateway itself put there for another
    /// upstream taken out), never a translation. Then what the canonical model cannot carry reaches the upstream,
    /// and a call that [needs it](crate::Call::needing_native) is sent only to such
    /// targets. Say yes only when it holds for every attempt. The default: no dialect.
    fn forwards_natively(&self, dialect: ClientDialect) -> bool {
        let _ = dialect;
        false
    }
}

/// A provider's upstream model list, kept for a few minutes so `GET /v1/models` does
/// not call every upstream every time. A poisoned lock only means no caching.
#[derive(Debug, Default)]
pub struct ModelsCache {
    entry: std::sync::Mutex<Option<(std::time::Instant, Vec<ModelInfo>)>>,
}

impl ModelsCache {
    /// How long a fetched list is served from the cache.
    pub const TTL: Duration = Duration::from_secs(300);

    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached list, if it is younger than [`Self::TTL`].
    pub fn get(&self) -> Option<Vec<ModelInfo>> {
        let entry = self.entry.lock().ok()?;
        let (at, models) = entry.as_ref()?;
        (at.elapsed() < Self::TTL).then(|| models.clone())
    }

    /// Stores a freshly fetched list.
    pub fn put(&self, models: &[ModelInfo]) {
        if let Ok(mut entry) = self.entry.lock() {
            *entry = Some((std::time::Instant::now(), models.to_vec()));
        }
    }

    /// The cached list, or the upstream's: `request` is built and sent only on a miss
    /// (bounded by 5 s), a non-success answer goes through `translate` (see
    /// [`crate::http_client::status_error_with`]), and `parse` reads the body; what it
    /// returns is cached.
    pub async fn get_or_fetch(
        &self,
        http: &HttpClient,
        request: impl FnOnce()
            -> Result<http::Request<http_body_util::Full<bytes::Bytes>>, ProviderError>,
        translate: impl FnOnce(u16, bytes::Bytes, Option<Duration>) -> ProviderError,
        parse: impl FnOnce(&[u8]) -> Result<Vec<ModelInfo>, ProviderError>,
    ) -> Result<Vec<ModelInfo>, ProviderError> {
        if let Some(models) = self.get() {
            return Ok(models);
        }
        let timeout = Duration::from_secs(5);
        let resp = http.send(request()?, timeout).await?;
        if !resp.status().is_success() {
            return Err(crate::http_client::status_error_with(resp, timeout, translate).await);
        }
        let body = crate::http_client::read_body(resp.into_body(), timeout).await?;
        let models = parse(&body)?;
        self.put(&models);
        Ok(models)
    }
}

/// Builds providers of one `kind` from their config tables.
///
/// A factory declares what its table takes as a type, [`Self::Options`], and what
/// model names its providers serve unprompted ([`Self::vendor_prefixes`],
/// [`Self::model_families`]); the gateway checks the table against the type before
/// [`Self::build`] is called, so `build` receives options already read.
pub trait ProviderFactory: Send + Sync + 'static {
    /// The keys this kind takes in its table beyond the common ones (`kind`,
    /// `base_url`, `api_key`, `headers`, the timeouts, `drop_unsupported`, `models`,
    /// `rpm`, `tpm`, `allow_client_key`): a struct deriving `Deserialize` with
    /// `#[serde(deny_unknown_fields)]` and every field optional (`Option` or
    /// `#[serde(default)]`), or [`NoOptions`]. Its field names are the keys accepted
    /// ([`ProviderRegistry::option_keys`]): any other key, or a value of the wrong
    /// type, is a config error naming the key and its line. (A `#[serde(flatten)]`
    /// field hides the names, so it accepts no key.)
    type Options: DeserializeOwned;

    /// The `kind` string this factory answers to (`openai`, `openrouter`, `mock`, …).
    fn kind(&self) -> &str;

    /// OpenRouter-style vendor prefixes this kind serves (`anthropic` for
    /// `anthropic/claude-sonnet-4`): a client's `vendor/model` with no route or
    /// provider of that name goes to the first configured provider whose kind claims
    /// the prefix, the prefix stripped. The default: none.
    fn vendor_prefixes(&self) -> &[&str] {
        &[]
    }

    /// Bare model-name families this kind serves (`claude` for `claude-sonnet-4`): a
    /// family matches the name itself or the name followed by `-` or `.` (so `o1`
    /// matches `o1-mini`, not `o100`), and such a name goes to the first configured
    /// provider whose kind claims it. The default: none.
    fn model_families(&self) -> &[&str] {
        &[]
    }

    /// Builds the provider from its table and the options read from it. `http` is
    /// the process-wide pooled client.
    fn build(
        &self,
        cfg: &ProviderConfig,
        options: Self::Options,
        http: &HttpClient,
    ) -> Result<Arc<dyn Provider>, BuildError>;
}

/// The options of a kind that takes no key of its own.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// Why a provider table did not build.
#[derive(Debug)]
pub(crate) enum FactoryError {
    /// No factory is registered for the table's `kind`; the registered kinds.
    UnknownKind(String),
    /// A key the kind's options do not have.
    UnknownKey(String),
    /// A key whose value the kind's options do not take.
    BadOption(crate::config::OptionError),
    /// The factory's own refusal.
    Build(BuildError),
}

impl FactoryError {
    /// The key of the table at fault, whose line an error shows.
    pub(crate) fn key(&self) -> Option<&str> {
        match self {
            FactoryError::UnknownKind(_) => Some("kind"),
            FactoryError::UnknownKey(key) => Some(key),
            FactoryError::BadOption(e) => Some(&e.key),
            FactoryError::Build(_) => None,
        }
    }

    /// The message naming `cfg`'s provider; `accepted`: its kind's keys.
    fn describe(&self, cfg: &ProviderConfig, accepted: &[&str]) -> String {
        let (name, kind) = (&cfg.name, &cfg.kind);
        match self {
            FactoryError::UnknownKind(known) => {
                format!("provider `{name}` has unknown kind `{kind}` (known kinds: {known})")
            }
            FactoryError::UnknownKey(key) => format!(
                "provider `{name}` (kind `{kind}`): unknown key `{key}`{}",
                if accepted.is_empty() {
                    " (this kind takes no key of its own)".to_owned()
                } else {
                    format!(" (kind-specific keys: {})", accepted.join(", "))
                }
            ),
            FactoryError::BadOption(e) => format!("provider `{name}` (kind `{kind}`): {e}"),
            FactoryError::Build(e) => e.0.clone(),
        }
    }
}

/// Builds `cfg` with `factory` as the gateway does: the table's kind-specific keys
/// checked against [`ProviderFactory::Options`] and read into it, then
/// [`ProviderFactory::build`]. For tests and tools that hold one factory; a gateway
/// builds through its [`ProviderRegistry`].
///
/// # Errors
/// An unknown or mistyped option (naming the provider and the key) or the factory's
/// refusal.
pub fn build_provider<F: ProviderFactory>(
    factory: &F,
    cfg: &ProviderConfig,
    http: &HttpClient,
) -> Result<Arc<dyn Provider>, BuildError> {
    AnyFactory::build(factory, cfg, http)
        .map_err(|e| BuildError(e.describe(cfg, AnyFactory::option_keys(factory))))
}

/// A [`ProviderFactory`] with its options type erased, as the registry holds it.
trait AnyFactory: Send + Sync {
    fn option_keys(&self) -> &'static [&'static str];
    fn vendor_prefixes(&self) -> &[&str];
    fn model_families(&self) -> &[&str];
    fn build(
        &self,
        cfg: &ProviderConfig,
        http: &HttpClient,
    ) -> Result<Arc<dyn Provider>, FactoryError>;
}

impl<F: ProviderFactory> AnyFactory for F {
    fn option_keys(&self) -> &'static [&'static str] {
        crate::config::field_names::<F::Options>()
    }

    fn vendor_prefixes(&self) -> &[&str] {
        ProviderFactory::vendor_prefixes(self)
    }

    fn model_families(&self) -> &[&str] {
        ProviderFactory::model_families(self)
    }

    fn build(
        &self,
        cfg: &ProviderConfig,
        http: &HttpClient,
    ) -> Result<Arc<dyn Provider>, FactoryError> {
        let accepted = AnyFactory::option_keys(self);
        if let Some(key) = cfg.options.keys().find(|k| !accepted.contains(k)) {
            return Err(FactoryError::UnknownKey(key.to_owned()));
        }
        let options = cfg
            .options
            .read::<F::Options>()
            .map_err(FactoryError::BadOption)?;
        ProviderFactory::build(self, cfg, options, http).map_err(FactoryError::Build)
    }
}

/// Maps `kind` strings to factories. The binary registers the built-in providers; an
/// embedding service registers what it wants.
#[derive(Default, Clone)]
pub struct ProviderRegistry {
    factories: BTreeMap<String, Arc<dyn AnyFactory>>,
}

impl std::fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl ProviderRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a factory under its kind (replacing one of the same kind).
    pub fn register(&mut self, factory: impl ProviderFactory) -> &mut Self {
        self.factories.insert(
            ProviderFactory::kind(&factory).to_owned(),
            Arc::new(factory),
        );
        self
    }

    /// Whether `kind` is registered.
    pub fn contains(&self, kind: &str) -> bool {
        self.factories.contains_key(kind)
    }

    /// The kind-specific keys `kind` accepts (its options type's fields), in the order
    /// the type declares them; `None` for a kind not registered.
    pub fn option_keys(&self, kind: &str) -> Option<&'static [&'static str]> {
        self.factories.get(kind).map(|f| f.option_keys())
    }

    /// The vendor prefixes `kind` claims ([`ProviderFactory::vendor_prefixes`]).
    pub fn vendor_prefixes(&self, kind: &str) -> &[&str] {
        self.factories
            .get(kind)
            .map_or(&[], |f| f.vendor_prefixes())
    }

    /// The model families `kind` claims ([`ProviderFactory::model_families`]).
    pub fn model_families(&self, kind: &str) -> &[&str] {
        self.factories.get(kind).map_or(&[], |f| f.model_families())
    }

    /// Builds `cfg` with the factory of its kind, its options checked and read first.
    ///
    /// # Errors
    /// An unregistered kind, an unknown or mistyped option, or the factory's refusal,
    /// each naming the provider.
    pub fn build(
        &self,
        cfg: &ProviderConfig,
        http: &HttpClient,
    ) -> Result<Arc<dyn Provider>, BuildError> {
        self.build_checked(cfg, http)
            .map_err(|e| BuildError(self.describe(cfg, &e)))
    }

    pub(crate) fn build_checked(
        &self,
        cfg: &ProviderConfig,
        http: &HttpClient,
    ) -> Result<Arc<dyn Provider>, FactoryError> {
        match self.factories.get(&cfg.kind) {
            Some(f) => f.build(cfg, http),
            None => Err(FactoryError::UnknownKind(
                self.kinds().collect::<Vec<_>>().join(", "),
            )),
        }
    }

    /// The message of a build error of `cfg`.
    pub(crate) fn describe(&self, cfg: &ProviderConfig, e: &FactoryError) -> String {
        e.describe(cfg, self.option_keys(&cfg.kind).unwrap_or_default())
    }

    /// Every registered kind, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }
}
