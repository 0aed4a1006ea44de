//! Model resolution: which targets serve a client's `model`.
//!
//! In order: a configured route alias; a `provider/upstream-model` slug naming a
//! configured provider (the upstream model may contain `/`); an OpenRouter-style
//! vendor slug (`anthropic/…`) mapped to a configured provider of that kind, prefix
//! stripped; a bare name by its well-known family (`gpt-…` → kind `openai`); else the
//! `default_provider` with the whole string, so OpenRouter slugs work unchanged.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use crate::snapshot::ProviderEntry;

/// How a route orders its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Targets in order; the next is tried when one fails retryably.
    Fallback,
}

impl Strategy {
    /// The strategies a config may name.
    pub const SUPPORTED: &'static str = "fallback";

    /// Parses a strategy name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fallback" => Some(Self::Fallback),
            _ => None,
        }
    }
}

/// OpenRouter vendor prefixes and the provider kind that serves them.
const VENDOR_PREFIXES: &[(&str, &str)] = &[
    ("openai", "openai"),
    ("anthropic", "anthropic"),
    ("google", "gemini"),
    ("mistralai", "mistral"),
    ("x-ai", "xai"),
    ("deepseek", "deepseek"),
];

/// Bare model-name families and the provider kind that serves them. A family matches
/// the name itself or the name followed by `-`/`.` (so `o1` matches `o1-mini` but not
/// `o100`).
const FAMILIES: &[(&str, &str)] = &[
    ("gpt", "openai"),
    ("chatgpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("claude", "anthropic"),
    ("gemini", "gemini"),
    ("mistral", "mistral"),
    ("codestral", "mistral"),
    ("ministral", "mistral"),
    ("grok", "xai"),
    ("deepseek", "deepseek"),
];

fn family_kind(name: &str) -> Option<&'static str> {
    FAMILIES.iter().find_map(|(family, kind)| {
        let rest = name.strip_prefix(family)?;
        (rest.is_empty() || rest.starts_with('-') || rest.starts_with('.')).then_some(*kind)
    })
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

/// One place a request can go: a provider and the model name it is sent.
#[derive(Clone)]
pub struct Target {
    pub provider: Arc<ProviderEntry>,
    pub model: String,
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
    pub strategy: Strategy,
    pub targets: Vec<Target>,
    pub timeout: Duration,
    pub retries: u32,
}

/// What a request will try, in order.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub via: Via,
    pub targets: Cow<'a, [Target]>,
    /// Bound on each attempt's wait for the upstream's response head.
    pub timeout: Duration,
    /// Extra attempts per target on a retryable failure.
    pub retries: u32,
}

/// Resolves model names against one snapshot's routes and providers.
#[derive(Debug, Clone)]
pub struct Router {
    routes: IndexMap<String, Route>,
    providers: IndexMap<String, Arc<ProviderEntry>>,
    default_provider: Option<Arc<ProviderEntry>>,
    timeout: Duration,
    retries: u32,
}

impl Router {
    pub(crate) fn new(
        routes: IndexMap<String, Route>,
        providers: IndexMap<String, Arc<ProviderEntry>>,
        default_provider: Option<Arc<ProviderEntry>>,
        timeout: Duration,
        retries: u32,
    ) -> Self {
        Self {
            routes,
            providers,
            default_provider,
            timeout,
            retries,
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

    fn provider_of_kind(&self, kind: &str) -> Option<&Arc<ProviderEntry>> {
        self.providers.values().find(|p| p.config.kind == kind)
    }

    fn direct(&self, via: Via, provider: &Arc<ProviderEntry>, model: &str) -> Plan<'_> {
        Plan {
            via,
            targets: Cow::Owned(vec![Target {
                provider: provider.clone(),
                model: model.to_owned(),
            }]),
            timeout: provider.config.timeout.unwrap_or(self.timeout),
            retries: self.retries,
        }
    }

    /// Resolves `model`, or `None` when nothing serves it (a 404 to the client).
    pub fn resolve(&self, model: &str) -> Option<Plan<'_>> {
        if let Some(route) = self.routes.get(model) {
            return Some(Plan {
                via: Via::Route(route.name.clone()),
                targets: Cow::Borrowed(&route.targets),
                timeout: route.timeout,
                retries: route.retries,
            });
        }
        if let Some((prefix, rest)) = model.split_once('/') {
            if !rest.is_empty() {
                if let Some(p) = self.providers.get(prefix) {
                    return Some(self.direct(Via::ProviderSlug, p, rest));
                }
                let vendor_kind = VENDOR_PREFIXES
                    .iter()
                    .find(|(v, _)| *v == prefix)
                    .map(|(_, k)| *k);
                if let Some(p) = vendor_kind.and_then(|k| self.provider_of_kind(k)) {
                    return Some(self.direct(Via::VendorSlug, p, rest));
                }
            }
        } else if let Some(p) = family_kind(model).and_then(|k| self.provider_of_kind(k)) {
            return Some(self.direct(Via::Family, p, model));
        }
        let p = self.default_provider.as_ref()?;
        Some(self.direct(Via::Default, p, model))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::snapshot::tests::snapshot_of;

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
