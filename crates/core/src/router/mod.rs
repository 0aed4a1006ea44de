//! Model resolution: which targets serve a client's `model`.
//!
//! In order: a configured route alias; a `provider/upstream-model` slug naming a
//! configured provider (the upstream model may contain `/`); an OpenRouter-style
//! vendor slug (`anthropic/…`) mapped to the first configured provider whose kind's
//! factory claims the prefix, prefix stripped; a bare name by a family a factory claims
//! (`gpt-…` → the first `openai` provider); else the `default_provider` with the whole
//! string, so OpenRouter slugs work unchanged. Core holds no table of vendors or
//! families: the factories declare them.

pub mod openrouter;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use crate::config::ProviderConfig;
use crate::error::GatewayError;
use crate::health::{Health, TargetHealth};
use crate::policy::{Policy, StrategyKind};
use crate::provider::Provider;
use openrouter::{split_suffix, Hints};

/// A configured provider: its name, kind, settings and built instance.
#[doc(hidden)]
pub struct ProviderEntry {
    pub name: String,
    /// Its settings; `config.kind` is its kind.
    pub config: ProviderConfig,
    pub provider: Arc<dyn Provider>,
    /// The policy of a call that names this provider directly (`[routing]` combined
    /// with the provider's own bounds).
    pub policy: Policy,
    /// Which build of the provider this is: new when it is (re)built, kept when a
    /// reload carries it over. Health is keyed by it.
    pub generation: u64,
}

/// The next provider generation.
pub(crate) fn next_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl std::fmt::Debug for ProviderEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderEntry")
            .field("name", &self.name)
            .field("kind", &self.config.kind)
            .finish_non_exhaustive()
    }
}

/// Which configured provider serves a vendor prefix or a model family, as the
/// providers' factories claim them ([`crate::provider::ProviderFactory::vendor_prefixes`],
/// [`crate::provider::ProviderFactory::model_families`]): the first configured
/// provider whose kind claims one gets it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Claims {
    vendors: Vec<(String, Arc<ProviderEntry>)>,
    families: Vec<(String, Arc<ProviderEntry>)>,
}

impl Claims {
    /// Adds what `provider`'s kind claims, where no earlier provider has it.
    pub(crate) fn add(
        &mut self,
        provider: &Arc<ProviderEntry>,
        vendors: &[&str],
        families: &[&str],
    ) {
        for (list, names) in [(&mut self.vendors, vendors), (&mut self.families, families)] {
            for name in names {
                if !list.iter().any(|(n, _)| n == name) {
                    list.push(((*name).to_owned(), provider.clone()));
                }
            }
        }
    }

    fn vendor(&self, prefix: &str) -> Option<&Arc<ProviderEntry>> {
        self.vendors
            .iter()
            .find(|(v, _)| v == prefix)
            .map(|(_, p)| p)
    }

    /// The provider of `name`'s family: the name itself, or followed by `-` or `.`
    /// (so `o1` matches `o1-mini` but not `o100`).
    fn family(&self, name: &str) -> Option<&Arc<ProviderEntry>> {
        self.families.iter().find_map(|(family, p)| {
            let rest = name.strip_prefix(family.as_str())?;
            (rest.is_empty() || rest.starts_with('-') || rest.starts_with('.')).then_some(p)
        })
    }
}

/// Why a model resolved the way it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A configured `[[routes]]` alias.
    Route(String),
    /// `provider/model` naming a configured provider.
    ProviderSlug,
    /// An OpenRouter vendor prefix mapped to a provider of that kind.
    VendorSlug,
    /// A bare name's family mapped to a provider of that kind.
    Family,
    /// Nothing matched: the default provider gets the whole name.
    Default,
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::Route(r) => write!(f, "route `{r}`"),
            Via::ProviderSlug => f.write_str("provider slug"),
            Via::VendorSlug => f.write_str("vendor prefix"),
            Via::Family => f.write_str("model family"),
            Via::Default => f.write_str("default provider"),
        }
    }
}

/// One place a request can go: a provider and the model name it is sent, with the
/// target's policy, weight, request overrides and health.
#[derive(Clone)]
pub struct Target {
    pub provider: Arc<ProviderEntry>,
    pub model: String,
    /// Share under the `weighted` strategy.
    pub weight: u32,
    /// The effective policy (provider, route, target and `[routing]` combined).
    pub policy: Policy,
    /// Request parameters this target overrides.
    pub params: Option<Arc<crate::chat::Extra>>,
    pub health: Arc<TargetHealth>,
    /// Whether a 404 from this target falls back: the operator chose its model in a
    /// route, or the client listed it among `models` fallbacks. A 404 of a model the
    /// client named alone is answered as it is.
    pub fallback_on_404: bool,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider.name, self.model)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider.name, self.model)
    }
}

/// A configured route with its providers resolved.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub strategy: StrategyKind,
    pub targets: Vec<Target>,
    /// The route-level policy (`[routing]` and the route's keys): its `deadline`
    /// bounds the whole call.
    pub policy: Policy,
    /// Hedging, when the route sets `hedge_after`.
    pub hedge: Option<crate::policy::Hedge>,
    /// The route's share of hedged calls over the last minute.
    pub hedge_budget: Arc<crate::policy::HedgeBudget>,
}

/// What a call will try, before its strategy orders it.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub via: Via,
    /// The route, when the model named one.
    pub route: Option<&'a Route>,
    pub targets: Cow<'a, [Target]>,
    pub strategy: StrategyKind,
    /// The whole call's bound, all attempts included.
    pub deadline: Option<Duration>,
    /// `provider.allow_fallbacks = false`: only the first target is tried.
    pub single: bool,
}

/// Resolves model names against one snapshot's routes and providers.
#[derive(Debug, Clone)]
pub struct Router {
    routes: IndexMap<String, Route>,
    providers: IndexMap<String, Arc<ProviderEntry>>,
    claims: Claims,
    default_provider: Option<Arc<ProviderEntry>>,
    health: Arc<Health>,
    /// `[routing] stream_keepalive`, for models no route names.
    stream_keepalive: Option<Duration>,
}

impl Router {
    pub(crate) fn new(
        routes: IndexMap<String, Route>,
        providers: IndexMap<String, Arc<ProviderEntry>>,
        claims: Claims,
        default_provider: Option<Arc<ProviderEntry>>,
        health: Arc<Health>,
        stream_keepalive: Option<Duration>,
    ) -> Self {
        Self {
            routes,
            providers,
            claims,
            default_provider,
            health,
            stream_keepalive,
        }
    }

    /// How long a stream for `model` may wait for its first token before the head and
    /// SSE keep-alive comments are sent (`stream_keepalive`), if at all. A hash lookup:
    /// the ingress asks before it hands the call to the engine.
    pub fn stream_keepalive(&self, model: &str) -> Option<Duration> {
        let route = self.routes.get(model).or_else(|| {
            let (base, _) = split_suffix(model)?;
            self.routes.get(base)
        });
        match route {
            Some(r) => r.policy.stream_keepalive,
            None => self.stream_keepalive,
        }
    }

    /// The configured routes, in file order.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.values()
    }

    /// The configured providers, in file order.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<ProviderEntry>> {
        self.providers.values()
    }

    fn direct(&self, provider: &Arc<ProviderEntry>, model: &str) -> Target {
        Target {
            provider: provider.clone(),
            model: model.to_owned(),
            weight: 1,
            policy: provider.policy,
            params: None,
            health: self
                .health
                .handle(&provider.name, provider.generation, model),
            fallback_on_404: false,
        }
    }

    fn direct_plan(&self, via: Via, provider: &Arc<ProviderEntry>, model: &str) -> Plan<'_> {
        Plan {
            via,
            route: None,
            targets: Cow::Owned(vec![self.direct(provider, model)]),
            strategy: StrategyKind::Fallback,
            deadline: provider.policy.deadline,
            single: false,
        }
    }

    /// Resolves `model`, or `None` when nothing serves it (a 404 to the client).
    pub fn resolve(&self, model: &str) -> Option<Plan<'_>> {
        if let Some(route) = self.routes.get(model) {
            return Some(self.route_plan(route));
        }
        // `fast:nitro` is the route `fast`, sorted by latency.
        if let Some((base, sort)) = split_suffix(model) {
            if let Some(route) = self.routes.get(base) {
                let mut plan = self.route_plan(route);
                if let Some(s) = sort.strategy() {
                    plan.strategy = s;
                }
                return Some(plan);
            }
        }
        if let Some((prefix, rest)) = model.split_once('/') {
            if !rest.is_empty() {
                if let Some(p) = self.providers.get(prefix) {
                    return Some(self.direct_plan(Via::ProviderSlug, p, rest));
                }
                if let Some(p) = self.claims.vendor(prefix) {
                    return Some(self.direct_plan(Via::VendorSlug, p, rest));
                }
            }
        } else if let Some(p) = self.claims.family(model) {
            return Some(self.direct_plan(Via::Family, p, model));
        }
        let p = self.default_provider.as_ref()?;
        Some(self.direct_plan(Via::Default, p, model))
    }

    fn route_plan<'r>(&'r self, route: &'r Route) -> Plan<'r> {
        Plan {
            via: Via::Route(route.name.clone()),
            route: Some(route),
            targets: Cow::Borrowed(&route.targets),
            strategy: route.strategy,
            deadline: route.policy.deadline,
            single: false,
        }
    }

    /// The plan of a call: `model` resolved, then what the OpenRouter fields ask for
    /// (`models` appended as fallbacks; `provider.only`/`ignore` filter, `order`
    /// reorders, `sort` picks the strategy, `allow_fallbacks = false` keeps one).
    pub fn plan(&self, model: &str, hints: Option<&Hints>) -> Result<Plan<'_>, GatewayError> {
        let Some(h) = hints else {
            return self
                .resolve(model)
                .ok_or_else(|| GatewayError::model_not_found(model));
        };
        let mut names = h.models.iter().map(String::as_str);
        let first = if model.is_empty() {
            names.next().unwrap_or_default()
        } else {
            model
        };
        let mut plan = self
            .resolve(first)
            .ok_or_else(|| GatewayError::model_not_found(first))?;
        for name in names {
            // A name modelway cannot resolve may still be one an OpenRouter target
            // serves: it is forwarded there in `models`, so it is not an error here.
            let Some(more) = self.resolve(name) else {
                tracing::debug!(model = name, "`models` entry resolves to no target here");
                continue;
            };
            let targets = plan.targets.to_mut();
            for t in more.targets.iter() {
                if !targets
                    .iter()
                    .any(|have| Arc::ptr_eq(&have.provider, &t.provider) && have.model == t.model)
                {
                    targets.push(t.clone());
                }
            }
        }
        let keep = |t: &Target| {
            let (name, kind) = (t.provider.name.as_str(), t.provider.config.kind.as_str());
            // An OpenRouter upstream applies `provider.*` to its own providers.
            t.provider.provider.speaks_openrouter_fields()
                || (h
                    .only
                    .as_ref()
                    .is_none_or(|only| Hints::matches(only, name, kind))
                    && !Hints::matches(&h.ignore, name, kind))
        };
        if plan.targets.iter().any(|t| !keep(t)) {
            plan.targets.to_mut().retain(keep);
        }
        if plan.targets.is_empty() {
            return Err(GatewayError::bad_request(format!(
                "`provider.only` / `provider.ignore` leave no provider to serve `{first}`."
            ))
            .with_param("provider"));
        }
        if !h.order.is_empty() {
            let rank = |t: &Target| {
                h.order
                    .iter()
                    .position(|e| {
                        e.eq_ignore_ascii_case(&t.provider.name)
                            || e.eq_ignore_ascii_case(&t.provider.config.kind)
                    })
                    .unwrap_or(usize::MAX)
            };
            // Stable: providers the order does not name keep their place after it.
            plan.targets.to_mut().sort_by_key(rank);
            // An explicit order is the order to try: no strategy reshuffles it.
            plan.strategy = StrategyKind::Fallback;
        }
        if let Some(s) = h.sort.and_then(|s| s.strategy()) {
            plan.strategy = s;
        }
        plan.single = !h.allow_fallbacks;
        if plan.targets.len() > 1 && !h.models.is_empty() {
            // The client listed fallbacks: a model one upstream lacks is a reason to try
            // the next, as on OpenRouter.
            for t in plan.targets.to_mut() {
                t.fallback_on_404 = true;
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;
    use crate::snapshot::tests::snapshot_of;

    /// A target of a provider that fails to connect, for strategy tests.
    pub(crate) fn target(provider: &str, model: &str, weight: u32) -> Target {
        let snap = snapshot_of(
            Config::from_toml_str_with_env(
                &format!("[providers.{provider}]\nkind = \"mock\"\n"),
                &|_| None,
            )
            .unwrap(),
        );
        let entry = snap.router.providers().next().unwrap().clone();
        Target {
            provider: entry,
            model: model.to_owned(),
            weight,
            policy: Policy::default(),
            params: None,
            health: TargetHealth::detached(provider, model),
            fallback_on_404: true,
        }
    }

    #[test]
    fn resolution_table() {
        let cfg = Config::from_toml_str_with_env(
            r#"
[providers.oai]
kind = "openai"
[providers.openrouter]
kind = "openrouter"
[providers.groq]
kind = "groq"
[providers.claude]
kind = "anthropic"
[routing]
default_provider = "openrouter"
[[routes]]
name = "fast"
targets = ["groq/llama-3.3-70b-versatile", "openrouter/meta-llama/llama-3.3-70b-instruct"]
"#,
            &|_| None,
        )
        .unwrap();
        let snap = snapshot_of(cfg);
        let rows: &[(&str, &str, &str)] = &[
            (
                "fast",
                "groq/llama-3.3-70b-versatile,openrouter/meta-llama/llama-3.3-70b-instruct",
                "route `fast`",
            ),
            (
                "groq/llama-3.1-8b-instant",
                "groq/llama-3.1-8b-instant",
                "provider slug",
            ),
            (
                "openrouter/meta-llama/llama-3-70b-instruct",
                "openrouter/meta-llama/llama-3-70b-instruct",
                "provider slug",
            ),
            ("openai/gpt-4o", "oai/gpt-4o", "vendor prefix"),
            (
                "anthropic/claude-3.5-sonnet",
                "claude/claude-3.5-sonnet",
                "vendor prefix",
            ),
            // No gemini-kind provider configured: the whole slug goes to the default.
            (
                "google/gemini-2.5-flash",
                "openrouter/google/gemini-2.5-flash",
                "default provider",
            ),
            (
                "meta-llama/llama-3-70b-instruct",
                "openrouter/meta-llama/llama-3-70b-instruct",
                "default provider",
            ),
            ("gpt-4o-mini", "oai/gpt-4o-mini", "model family"),
            ("o3-mini", "oai/o3-mini", "model family"),
            ("o3", "oai/o3", "model family"),
            ("o300", "openrouter/o300", "default provider"),
            (
                "claude-3-5-haiku-latest",
                "claude/claude-3-5-haiku-latest",
                "model family",
            ),
            (
                "gemini-2.5-pro",
                "openrouter/gemini-2.5-pro",
                "default provider",
            ),
            ("llama3", "openrouter/llama3", "default provider"),
        ];
        for (model, want, via) in rows {
            let plan = snap
                .router
                .resolve(model)
                .unwrap_or_else(|| panic!("{model} did not resolve"));
            let got: Vec<String> = plan.targets.iter().map(ToString::to_string).collect();
            assert_eq!(got.join(","), *want, "{model}");
            assert_eq!(plan.via.to_string(), *via, "{model}");
        }
    }

    #[test]
    fn no_default_means_unknown_models_do_not_resolve() {
        let cfg =
            Config::from_toml_str_with_env("[providers.m]\nkind = \"mock\"\n", &|_| None).unwrap();
        let snap = snapshot_of(cfg);
        assert!(snap.router.resolve("m/anything").is_some());
        assert!(snap.router.resolve("gpt-4o").is_none());
        assert!(snap.router.resolve("nope/x").is_none());
        assert!(snap.router.resolve("m/").is_none());
    }
}
