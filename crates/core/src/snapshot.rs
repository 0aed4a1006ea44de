//! A snapshot: one validated config with its providers built and routes resolved.
//! Immutable; a request loads one at its start and keeps it to its end.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use indexmap::IndexMap;

use crate::config::{Config, ConfigError, ProviderConfig};
use crate::error::GatewayError;
use crate::health::Health;
use crate::http_client::HttpClient;
use crate::policy::Policy;
use crate::provider::{ModelInfo, ProviderRegistry};
pub use crate::router::ProviderEntry;
use crate::router::{next_generation, Claims, Plan, Route, Router, Target};

/// An answer and who served it: the provider and upstream model, how many attempts
/// it took and what the serving provider dropped.
#[derive(Debug)]
pub struct Served<T> {
    /// The answer: a completion, a stream or embeddings.
    pub value: T,
    /// The configured provider's name.
    pub provider: String,
    /// The model name sent upstream.
    pub model: String,
    /// Attempts made, including the successful one.
    pub attempts: u32,
    /// Request parameters the serving provider dropped (`drop_unsupported = true`).
    pub dropped_params: Vec<String>,
    /// Whether the answer came from a hedged call (`x-modelway-hedged`).
    pub hedged: bool,
    /// The rate limits the serving upstream reported.
    pub upstream_limits: Option<crate::limits::UpstreamLimits>,
}

/// Config + built providers + resolved routes.
#[derive(Debug)]
#[doc(hidden)]
pub struct Snapshot {
    pub config: Config,
    pub router: Router,
    /// Increases by one with every successful (re)load of a gateway.
    pub version: u64,
    pub loaded_at: SystemTime,
}

impl Snapshot {
    /// Builds every provider through `registry` and resolves routes. `previous`
    /// lends providers whose settings did not change, so their state and connections
    /// survive; `health` is the gateway's registry, which the targets' health comes
    /// from. Errors carry the line the config recorded for the key at fault.
    pub fn build(
        config: Config,
        registry: &ProviderRegistry,
        http: &HttpClient,
        health: &Arc<Health>,
        previous: Option<&Snapshot>,
    ) -> Result<Self, ConfigError> {
        let mut providers: IndexMap<String, Arc<ProviderEntry>> =
            IndexMap::with_capacity(config.providers.len());
        let mut claims = Claims::default();
        for (name, pc) in &config.providers {
            let reused = previous
                .and_then(|p| p.router.providers().find(|e| &e.name == name))
                .filter(|e| same_settings(&e.config, pc))
                .map(|e| (e.provider.clone(), e.generation));
            let (provider, generation) = match reused {
                Some(p) => p,
                None => {
                    let built = registry.build_checked(pc, http).map_err(|e| {
                        let line = e.key().and_then(|k| pc.options.line(k));
                        ConfigError::new(registry.describe(pc, &e), line.or(pc.line))
                    })?;
                    (built, next_generation())
                }
            };
            let entry = Arc::new(ProviderEntry {
                name: name.clone(),
                config: pc.clone(),
                provider,
                policy: Policy::resolve(&[&config.routing.policy, &pc.policy]),
                generation,
            });
            claims.add(
                &entry,
                registry.vendor_prefixes(&pc.kind),
                registry.model_families(&pc.kind),
            );
            providers.insert(name.clone(), entry);
        }
        let mut routes = IndexMap::with_capacity(config.routes.len());
        for (name, rc) in &config.routes {
            let targets = rc
                .targets
                .iter()
                .map(|t| {
                    let provider = providers[&t.provider].clone();
                    let policy = Policy::resolve(&[
                        &config.routing.policy,
                        &rc.policy,
                        &t.policy,
                        &provider.config.policy,
                    ]);
                    Target {
                        health: health.handle(&provider.name, provider.generation, &t.model),
                        provider,
                        model: t.model.clone(),
                        weight: t.weight,
                        policy,
                        params: t.params.clone().map(Arc::new),
                        fallback_on_404: true,
                    }
                })
                .collect();
            routes.insert(
                name.clone(),
                Route {
                    name: name.clone(),
                    strategy: rc.strategy,
                    targets,
                    policy: Policy::resolve(&[&config.routing.policy, &rc.policy]),
                    hedge: rc.hedge,
                    hedge_budget: Arc::default(),
                },
            );
        }
        let default_provider = config
            .routing
            .default_provider
            .as_ref()
            .map(|d| providers[d].clone());
        let router = Router::new(
            routes,
            providers,
            claims,
            default_provider,
            health.clone(),
            config.routing.policy.stream_keepalive,
        );
        Ok(Self {
            config,
            router,
            version: 0,
            loaded_at: SystemTime::now(),
        })
    }

    /// Resolves a model name to the targets that will be tried.
    pub fn resolve(&self, model: &str) -> Result<Plan<'_>, GatewayError> {
        self.router
            .resolve(model)
            .ok_or_else(|| GatewayError::model_not_found(model))
    }

    /// Models a client may name: every route, every provider's listed models as
    /// `provider/model`, and what providers report upstream.
    pub async fn models(&self) -> Vec<ModelInfo> {
        let created = self
            .loaded_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut out: Vec<ModelInfo> = self
            .router
            .routes()
            .map(|r| ModelInfo {
                id: r.name.clone(),
                owned_by: "modelway".to_owned(),
                created,
            })
            .collect();
        let listed = futures_util::future::join_all(self.router.providers().map(|p| async move {
            let mut ids: Vec<ModelInfo> = p
                .config
                .models
                .iter()
                .map(|m| ModelInfo {
                    id: m.clone(),
                    owned_by: p.name.clone(),
                    created,
                })
                .collect();
            match tokio::time::timeout(Duration::from_secs(5), p.provider.models()).await {
                Ok(Ok(more)) => ids.extend(more),
                Ok(Err(e)) => {
                    tracing::warn!(provider = %p.name, error = %e, "listing upstream models failed")
                }
                Err(_) => tracing::warn!(provider = %p.name, "listing upstream models timed out"),
            }
            (p.name.clone(), ids)
        }))
        .await;
        for (provider, ids) in listed {
            for mut m in ids {
                m.id = format!("{provider}/{}", m.id);
                if !out.iter().any(|o| o.id == m.id) {
                    out.push(m);
                }
            }
        }
        out
    }
}

/// Whether two provider configs would build the same provider (the header line may
/// move when the file is edited above it).
fn same_settings(a: &ProviderConfig, b: &ProviderConfig) -> bool {
    a.kind == b.kind
        && a.base_url == b.base_url
        && a.api_key == b.api_key
        && a.headers == b.headers
        && a.policy == b.policy
        && a.drop_unsupported == b.drop_unsupported
        && a.models == b.models
        && a.options == b.options
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::call::{Answer, Attempt};
    use crate::chat::{ChatRequest, Completion};
    use crate::provider::{BuildError, ChunkStream, Provider, ProviderFactory};
    use crate::ProviderError;
    use async_trait::async_trait;

    struct Unused;

    #[async_trait]
    impl Provider for Unused {
        async fn chat(&self, _: &Attempt<'_>) -> Result<Answer<Completion>, ProviderError> {
            Err(ProviderError::Connect("test provider".into()))
        }
        async fn chat_stream(&self, _: &Attempt<'_>) -> Result<Answer<ChunkStream>, ProviderError> {
            Err(ProviderError::Connect("test provider".into()))
        }
    }

    /// A factory of `kind` claiming the prefixes and families the shipped factory of
    /// that kind claims.
    struct AnyKind(&'static str);

    /// The options of [`AnyKind`].
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct AnyOptions {
        delay: Option<crate::config::DurationOption>,
        tries: Option<u32>,
    }

    impl ProviderFactory for AnyKind {
        type Options = AnyOptions;
        fn kind(&self) -> &str {
            self.0
        }
        fn vendor_prefixes(&self) -> &[&str] {
            match self.0 {
                "openai" => &["openai"],
                "anthropic" => &["anthropic"],
                "gemini" => &["google"],
                _ => &[],
            }
        }
        fn model_families(&self) -> &[&str] {
            match self.0 {
                "openai" => &["gpt", "chatgpt", "o1", "o3", "o4"],
                "anthropic" => &["claude"],
                "gemini" => &["gemini"],
                _ => &[],
            }
        }
        fn build(
            &self,
            _: &ProviderConfig,
            _: AnyOptions,
            _: &HttpClient,
        ) -> Result<Arc<dyn Provider>, BuildError> {
            Ok(Arc::new(Unused))
        }
    }

    /// A snapshot whose providers all fail to connect, for resolution tests.
    pub(crate) fn snapshot_of(cfg: Config) -> Snapshot {
        let mut reg = ProviderRegistry::new();
        for k in [
            "openai",
            "openrouter",
            "groq",
            "anthropic",
            "gemini",
            "mock",
        ] {
            reg.register(AnyKind(k));
        }
        Snapshot::build(cfg, &reg, &HttpClient::new(), &Arc::default(), None).expect("builds")
    }

    #[test]
    fn unknown_kind_and_option_are_rejected_with_lines() {
        let src = "[providers.a]\nkind = \"mock\"\n\n[providers.b]\nkind = \"warp\"\n";
        let cfg = Config::from_toml_str_with_env(src, &|_| None).unwrap();
        let mut reg = ProviderRegistry::new();
        reg.register(AnyKind("mock"));
        let err =
            Snapshot::build(cfg, &reg, &HttpClient::new(), &Arc::default(), None).unwrap_err();
        assert!(err.message.contains("unknown kind `warp`"), "{err}");
        assert_eq!(err.line, Some(5));

        let src = "[providers.a]\nkind = \"mock\"\nspeed = 3\n";
        let cfg = Config::from_toml_str_with_env(src, &|_| None).unwrap();
        let err =
            Snapshot::build(cfg, &reg, &HttpClient::new(), &Arc::default(), None).unwrap_err();
        assert!(err.message.contains("unknown key `speed`"), "{err}");
        assert!(
            err.message.contains("kind-specific keys: delay, tries"),
            "{err}"
        );
        assert_eq!(err.line, Some(3));

        // A mistyped option names its key and line, wherever the file puts it.
        for (src, key, line) in [
            (
                "[providers.a]\nkind = \"mock\"\n\ntries = \"two\"\n",
                "tries",
                4,
            ),
            (
                "[providers.a]\nkind = \"mock\"\ndelay = \"soon\"\n",
                "delay",
                3,
            ),
            (
                "[providers]\na = { kind = \"mock\", tries = -1 }\n",
                "tries",
                2,
            ),
            (
                "providers.a.kind = \"mock\"\n\nproviders.a.delay = 5\n",
                "delay",
                3,
            ),
        ] {
            let cfg = Config::from_toml_str_with_env(src, &|_| None).unwrap();
            let err =
                Snapshot::build(cfg, &reg, &HttpClient::new(), &Arc::default(), None).unwrap_err();
            assert!(
                err.message
                    .contains(&format!("provider `a` (kind `mock`): `{key}`: ")),
                "{src}: {err}"
            );
            assert_eq!(err.line, Some(line), "{src}: {err}");
        }
        let cfg = Config::from_toml_str_with_env(
            "[providers.a]\nkind = \"mock\"\ndelay = \"5ms\"\ntries = 2\n",
            &|_| None,
        )
        .unwrap();
        assert!(Snapshot::build(cfg, &reg, &HttpClient::new(), &Arc::default(), None).is_ok());
    }

    #[test]
    fn unchanged_providers_survive_a_reload_and_changed_ones_are_rebuilt() {
        let mut reg = ProviderRegistry::new();
        reg.register(AnyKind("mock"));
        let v1 = "[providers.keep]\nkind = \"mock\"\n[providers.change]\nkind = \"mock\"\nbase_url = \"http://a\"\n";
        let v2 = "# edited above the tables: lines move\n[providers.keep]\nkind = \"mock\"\n[providers.change]\nkind = \"mock\"\nbase_url = \"http://b\"\n";
        let gw = crate::Gateway::new(Config::from_toml_str_with_env(v1, &|_| None).unwrap(), reg)
            .unwrap();
        let before = gw.snapshot();
        let after = gw
            .reload(Config::from_toml_str_with_env(v2, &|_| None).unwrap())
            .unwrap();
        let provider = |s: &Snapshot, name: &str| {
            s.router
                .providers()
                .find(|p| p.name == name)
                .unwrap()
                .provider
                .clone()
        };
        assert!(Arc::ptr_eq(
            &provider(&before, "keep"),
            &provider(&after, "keep")
        ));
        assert!(!Arc::ptr_eq(
            &provider(&before, "change"),
            &provider(&after, "change")
        ));
        assert_eq!((before.version, after.version), (1, 2));
        // A rejected config changes nothing.
        assert!(gw
            .reload(
                Config::from_toml_str_with_env("[providers.x]\nkind = \"warp\"\n", &|_| None)
                    .unwrap(),
            )
            .is_err());
        assert_eq!(gw.snapshot().version, 2);
    }

    /// A factory of its own claiming `acme/…` and `acme-…`, as a provider crate outside
    /// this workspace would.
    struct Acme;

    impl ProviderFactory for Acme {
        type Options = crate::provider::NoOptions;
        fn kind(&self) -> &str {
            "acme"
        }
        fn vendor_prefixes(&self) -> &[&str] {
            &["acme-labs"]
        }
        fn model_families(&self) -> &[&str] {
            &["acme"]
        }
        fn build(
            &self,
            _: &ProviderConfig,
            _: crate::provider::NoOptions,
            _: &HttpClient,
        ) -> Result<Arc<dyn Provider>, BuildError> {
            Ok(Arc::new(Unused))
        }
    }

    #[test]
    fn prefixes_and_families_are_the_factories_and_the_first_provider_of_a_kind_gets_them() {
        let mut reg = ProviderRegistry::new();
        reg.register(Acme);
        reg.register(AnyKind("mock"));
        let src = "[providers.m]\nkind = \"mock\"\n\n[providers.first]\nkind = \"acme\"\n\n[providers.second]\nkind = \"acme\"\n\n[routing]\ndefault_provider = \"m\"\n";
        let cfg = Config::from_toml_str_with_env(src, &|_| None).unwrap();
        let snap = Snapshot::build(cfg, &reg, &HttpClient::new(), &Arc::default(), None).unwrap();
        let resolve = |model: &str| {
            let plan = snap.router.resolve(model).unwrap();
            (plan.targets[0].to_string(), plan.via.to_string())
        };
        assert_eq!(
            resolve("acme-labs/rocket-1"),
            ("first/rocket-1".into(), "vendor prefix".into())
        );
        assert_eq!(
            resolve("acme-2"),
            ("first/acme-2".into(), "model family".into())
        );
        assert_eq!(
            resolve("acme.3"),
            ("first/acme.3".into(), "model family".into())
        );
        // Not the family (`acmex`), and no factory here claims `gpt`: the default.
        assert_eq!(
            resolve("acmex"),
            ("m/acmex".into(), "default provider".into())
        );
        assert_eq!(
            resolve("gpt-4o"),
            ("m/gpt-4o".into(), "default provider".into())
        );
        // A provider slug still wins over a vendor prefix of the same name.
        assert_eq!(
            resolve("second/acme-2"),
            ("second/acme-2".into(), "provider slug".into())
        );
    }

    #[test]
    fn request_futures_are_send() {
        // A server spawns these on a multi-threaded runtime.
        fn send<T: Send>(_: &T) {}
        let mut reg = ProviderRegistry::new();
        reg.register(AnyKind("mock"));
        let cfg =
            Config::from_toml_str_with_env("[providers.a]\nkind = \"mock\"\n", &|_| None).unwrap();
        let gw = crate::Gateway::new(cfg, reg).unwrap();
        send(&gw.execute(crate::Call::new(ChatRequest::new("a/x", vec![]))));
        send(&gw.execute_stream(crate::Call::new(ChatRequest::new("a/x", vec![]))));
    }
}
