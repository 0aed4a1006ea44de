//! The config schema: TOML in, validated runtime types out.
//!
//! [`Config::from_toml_str`] parses the file (every unknown key is an error naming it
//! and its line), expands `${VAR}` / `${VAR:-default}`, parses durations and checks
//! that every route target names a configured provider. Provider kinds and their
//! kind-specific keys are checked when the snapshot is built against a registry
//! ([`crate::Snapshot::build`]); `modelway check` and hot reload both go through both.
//!
//! One file per concern: this one holds [`Config`], its errors and the validator's
//! entry point; `provider.rs` the `[providers.*]` tables, `routing.rs` `[routing]`
//! and `[[routes]]` with their policy keys, `telemetry.rs`, `auth.rs` (keys and
//! limits), `usage.rs`; `raw.rs` is the file's exact shape, `expand.rs` the `${VAR}`
//! and duration syntax, `locate.rs` the line numbers of errors.

mod auth;
mod expand;
mod locate;
mod options;
mod provider;
mod raw;
mod routing;
mod telemetry;
mod usage;

use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;

pub use auth::{
    glob_match, is_loopback, parse_size, sha256, AuthConfig, Budget, BudgetPeriod, ClientKey,
    KeyBucket, KeyHash, KeyLimits, LimitsConfig, OnStoreError, StoreConfig, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_IN_FLIGHT_BYTES,
};
pub use expand::{expand_env, parse_duration, ExpandError};
use locate::toml_error;
pub(crate) use locate::Lines;
pub(crate) use options::field_names;
pub use options::{DurationOption, OptionError, StringsOption};
use provider::names;
pub use provider::{ProviderConfig, ProviderOptions};
use raw::{RawConfig, RawTarget};

/// Every table of the config file and the keys it takes, read from the types that
/// parse it (`providers`: the keys common to every kind); for the config reference's
/// drift check.
#[doc(hidden)]
pub fn reference_sections() -> Vec<(&'static str, &'static [&'static str])> {
    raw::sections()
}
pub use routing::{RouteConfig, RoutingConfig, TargetSpec, MAX_POLICY_DURATION, MAX_RETRIES};
use serde::Deserialize;
pub use telemetry::{LogFormat, OtlpProtocol, TelemetryConfig};
pub use usage::{LedgerConfig, UsageConfig};

use crate::policy::{HealthSettings, StrategyKind};

/// A secret: prints as `***` in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Error building a provider from its config.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// A config that failed to load: what is wrong and, where known, on which line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// What is wrong, naming the key.
    pub message: String,
    /// The 1-based line it is on, when the config came from text.
    pub line: Option<usize>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) if !self.message.contains("line ") => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>, line: Option<usize>) -> Self {
        Self {
            message: message.into(),
            line,
        }
    }
}

/// The validated configuration.
///
/// It is built only by the validator ([`Config::from_toml_str`] and its siblings,
/// [`Config::from_value`], [`Config::quickstart`]) and read through its getters: its
/// fields are private, so no code outside this crate can build or edit one into an
/// invalid state (a route naming a provider that is not there, a zero timeout).
/// Provider kinds and their kind-specific keys are checked later, when a
/// [`crate::Gateway`] builds the providers against its registry.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) server: ServerConfig,
    pub(crate) auth: AuthConfig,
    pub(crate) providers: IndexMap<String, ProviderConfig>,
    pub(crate) routing: RoutingConfig,
    pub(crate) routes: IndexMap<String, RouteConfig>,
    pub(crate) telemetry: TelemetryConfig,
    pub(crate) limits: LimitsConfig,
    pub(crate) usage: UsageConfig,
}

impl Config {
    /// `[server]`.
    pub fn server(&self) -> &ServerConfig {
        &self.server
    }

    /// `[auth]`: gateway keys and the admin key.
    pub fn auth(&self) -> &AuthConfig {
        &self.auth
    }

    /// `[providers.*]`, in file order, keyed by name.
    pub fn providers(&self) -> &IndexMap<String, ProviderConfig> {
        &self.providers
    }

    /// `[routing]`: the default provider, the default policy and health settings.
    pub fn routing(&self) -> &RoutingConfig {
        &self.routing
    }

    /// `[[routes]]`, in file order, keyed by the name clients send as `model`.
    pub fn routes(&self) -> &IndexMap<String, RouteConfig> {
        &self.routes
    }

    /// `[telemetry]`.
    pub fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }

    /// `[limits]`: where the per-key limit counters live.
    pub fn limits(&self) -> &LimitsConfig {
        &self.limits
    }

    /// `[usage]`: the usage ledger and price table.
    pub fn usage(&self) -> &UsageConfig {
        &self.usage
    }
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `listen`: the address to bind (`127.0.0.1:4000`).
    pub listen: String,
    /// `max_body_bytes`: the largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// `shutdown_timeout`: how long requests in flight may finish after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// Requests held at once; past it, new ones get 503 with `Retry-After`.
    pub max_in_flight: usize,
    /// Request body bytes held at once; past it, new ones get 503.
    pub max_in_flight_bytes: u64,
}

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
/// Default request body limit (32 MiB: images as data URIs are large).
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

impl Config {
    /// Parses and validates a TOML config, expanding variables from the process
    /// environment.
    pub fn from_toml_str(src: &str) -> Result<Self, ConfigError> {
        Self::from_toml_str_with_env(src, &|k| std::env::var(k).ok())
    }

    /// As [`Config::from_toml_str`], with variables looked up by `env`.
    pub fn from_toml_str_with_env(
        src: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::from_toml_str_in(src, env, None)
    }

    /// As [`Config::from_toml_str_with_env`], for a file in `dir`: relative paths in it
    /// (`usage.ledger`, `usage.prices`) are resolved against `dir`.
    pub fn from_toml_str_in(
        src: &str,
        env: &dyn Fn(&str) -> Option<String>,
        dir: Option<&std::path::Path>,
    ) -> Result<Self, ConfigError> {
        let (lines, root) = Lines::parse(src)?;
        let raw = RawConfig::deserialize(toml::de::Deserializer::from(root))
            .map_err(|e| toml_error(src, &e))?;
        Validator {
            lines: &lines,
            env,
            base: dir,
        }
        .config(raw)
    }

    /// Validates a config built in code rather than read from a file: `value` is
    /// anything serde can serialize into the file's shape (a `serde_json::json!`
    /// value, a map, your own structs), checked exactly as a TOML file is. Its errors
    /// name the key; they carry no line. Strings are expanded from the process
    /// environment as in a file.
    ///
    /// ```
    /// use modelway_core::Config;
    /// let config = Config::from_value(serde_json::json!({
    ///     "providers": { "local": { "kind": "mock" } },
    ///     "routing": { "default_provider": "local", "retries": 0 },
    ///     "routes": [{ "name": "fast", "targets": ["local/mock-fast"] }],
    /// }))?;
    /// assert_eq!(config.routes()["fast"].targets[0].to_string(), "local/mock-fast");
    ///
    /// let err = Config::from_value(serde_json::json!({ "routing": { "retries": "two" } }))
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("retries"), "{err}");
    /// # Ok::<(), modelway_core::ConfigError>(())
    /// ```
    pub fn from_value(value: impl serde::Serialize) -> Result<Self, ConfigError> {
        let table = toml::Table::try_from(value)
            .map_err(|e| ConfigError::new(e.to_string().trim().to_owned(), None))?;
        // The path to the key is what stands in for a line number here.
        let raw: RawConfig =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let message = e.inner().message().trim().to_owned();
                ConfigError::new(format!("`{}`: {message}", e.path()), None)
            })?;
        Validator {
            lines: &Lines::default(),
            env: &|k| std::env::var(k).ok(),
            base: None,
        }
        .config(raw)
    }

    /// A config serving only the in-process mock provider: what `modelway` runs with
    /// no config file.
    pub fn quickstart() -> Self {
        Self::from_toml_str_with_env(QUICKSTART, &|_| None)
            .expect("the built-in quickstart config is valid")
    }
}

/// The built-in config (`config-examples/quickstart.toml` has the same content).
pub const QUICKSTART: &str = r#"[server]
listen = "127.0.0.1:4000"

[providers.mock]
kind = "mock"

[routing]
default_provider = "mock"

[[routes]]
name = "fast"
targets = ["mock/mock-fast"]
"#;

struct Validator<'a> {
    /// Where each key stands in the file (empty for a config built in code).
    lines: &'a Lines,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The config file's directory, for relative paths.
    base: Option<&'a std::path::Path>,
}

impl Validator<'_> {
    fn expand(&self, what: &str, value: &str) -> Result<String, ConfigError> {
        expand_env(value, self.env).map_err(|e| match e {
            ExpandError::Unset(var) => ConfigError::new(
                format!("environment variable `{var}` used by `{what}` is not set (use ${{{var}:-default}} for a default)"),
                self.lines.string_containing(&format!("${{{var}")),
            ),
            ExpandError::Unterminated => ConfigError::new(
                format!("`{what}`: {e}"),
                self.lines.string(value).or_else(|| self.lines.string_containing("${")),
            ),
        })
    }

    fn duration(
        &self,
        what: &str,
        value: &str,
        line: Option<usize>,
    ) -> Result<Duration, ConfigError> {
        let v = self.expand(what, value)?;
        parse_duration(&v).map_err(|e| ConfigError::new(format!("`{what}`: {e}"), line))
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let server_line = |k| self.lines.key(&["server", k]);
        let (max_in_flight, max_in_flight_bytes) = self.admission(
            raw.server.max_in_flight,
            raw.server.max_in_flight_bytes.as_ref(),
        )?;
        let server = ServerConfig {
            max_in_flight,
            max_in_flight_bytes,
            listen: match &raw.server.listen {
                Some(l) => self.expand("server.listen", l)?,
                None => DEFAULT_LISTEN.to_owned(),
            },
            max_body_bytes: match raw.server.max_body_bytes {
                Some(0) => {
                    return Err(ConfigError::new(
                        "`server.max_body_bytes` must be greater than 0",
                        server_line("max_body_bytes"),
                    ))
                }
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                None => DEFAULT_MAX_BODY_BYTES,
            },
            shutdown_timeout: match &raw.server.shutdown_timeout {
                Some(d) => self.duration(
                    "server.shutdown_timeout",
                    d,
                    server_line("shutdown_timeout"),
                )?,
                None => Duration::from_secs(30),
            },
        };

        let auth = self.auth(raw.auth)?;
        let limits = self.limits(raw.limits)?;

        let mut providers = IndexMap::with_capacity(raw.providers.len());
        for (name, p) in raw.providers {
            let cfg = self.provider(&name, p)?;
            providers.insert(name, cfg);
        }

        let routing_line = |k| self.lines.key(&["routing", k]);
        let default_provider = match raw.routing.default_provider.clone() {
            Some(d) if !providers.contains_key(&d) => {
                return Err(ConfigError::new(
                    format!("`routing.default_provider` names provider `{d}`, which is not configured (configured: {})", names(&providers)),
                    routing_line("default_provider"),
                ))
            }
            d => d,
        };
        let routing = RoutingConfig {
            default_provider,
            policy: self.policy("routing", raw.routing.policy(), &routing_line)?,
            health: match &raw.routing.health {
                None => HealthSettings::default(),
                Some(h) => self.health(h, routing_line("health"))?,
            },
        };

        let mut routes = IndexMap::with_capacity(raw.routes.len());
        for (i, r) in raw.routes.into_iter().enumerate() {
            let index = i.to_string();
            let line_of_key = |k| self.lines.key(&["routes", &index, k]);
            let header_line = self.lines.key(&["routes", &index]);
            if r.name.is_empty() {
                return Err(ConfigError::new("a route has an empty `name`", header_line));
            }
            if routes.contains_key(&r.name) {
                return Err(ConfigError::new(
                    format!("route `{}` is defined twice", r.name),
                    line_of_key("name").or(header_line),
                ));
            }
            if r.targets.is_empty() {
                return Err(ConfigError::new(
                    format!("route `{}` has no targets", r.name),
                    line_of_key("targets").or(header_line),
                ));
            }
            let strategy = match r.strategy.as_deref() {
                None => StrategyKind::Fallback,
                Some(s) => StrategyKind::parse(s).ok_or_else(|| {
                    ConfigError::new(
                        format!(
                            "route `{}`: unknown strategy `{s}` (supported: {})",
                            r.name,
                            StrategyKind::SUPPORTED
                        ),
                        line_of_key("strategy"),
                    )
                })?,
            };
            let route_policy =
                self.policy(&format!("routes[{}]", r.name), r.policy(), &line_of_key)?;
            let mut targets = Vec::with_capacity(r.targets.len());
            for raw_target in &r.targets {
                let (slug, table) = match raw_target {
                    RawTarget::Slug(s) => (s.as_str(), None),
                    RawTarget::Table(t) => (t.target.as_str(), Some(&**t)),
                };
                let t = self.expand(&format!("routes[{}].targets", r.name), slug)?;
                let Some((provider, model)) = t
                    .split_once('/')
                    .filter(|(p, m)| !p.is_empty() && !m.is_empty())
                else {
                    return Err(ConfigError::new(
                        format!(
                            "route `{}`: target `{t}` must be `provider/upstream-model`",
                            r.name
                        ),
                        line_of_key("targets"),
                    ));
                };
                if !providers.contains_key(provider) {
                    return Err(ConfigError::new(
                        format!(
                            "route `{}`: target `{t}` names provider `{provider}`, which is not configured (configured: {})",
                            r.name,
                            names(&providers)
                        ),
                        line_of_key("targets"),
                    ));
                }
                let mut spec = TargetSpec::new(provider, model);
                if let Some(table) = table {
                    let what = format!("routes[{}].targets[{t}]", r.name);
                    let targets_line = |_: &str| line_of_key("targets");
                    spec.policy = self.policy(&what, table.policy(), &targets_line)?;
                    // Both bound the whole call, not one target's attempts.
                    for (key, set) in [
                        ("deadline", spec.policy.deadline.is_some()),
                        ("stream_keepalive", spec.policy.stream_keepalive.is_some()),
                    ] {
                        if set {
                            return Err(ConfigError::new(
                                format!("`{what}.{key}` bounds the whole call; set it on the route or [routing]"),
                                line_of_key("targets"),
                            ));
                        }
                    }
                    if let Some(w) = table.weight {
                        if w == 0 {
                            return Err(ConfigError::new(
                                format!("`{what}.weight` must be at least 1"),
                                line_of_key("targets"),
                            ));
                        }
                        spec.weight = w;
                    }
                    if let Some(params) = &table.params {
                        spec.params = Some(self.params(&what, params, line_of_key("targets"))?);
                    }
                }
                targets.push(spec);
            }
            let hedge = self.hedge(&r, &line_of_key)?;
            routes.insert(
                r.name.clone(),
                RouteConfig {
                    name: r.name,
                    strategy,
                    targets,
                    policy: route_policy,
                    hedge,
                },
            );
        }

        let telemetry = self.telemetry(raw.telemetry)?;
        let usage = self.usage(raw.usage)?;

        Ok(Config {
            server,
            auth,
            providers,
            routing,
            routes,
            telemetry,
            limits,
            usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "OPENAI_API_KEY" => Some("sk-test".into()),
            _ => None,
        }
    }

    fn load(src: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str_with_env(src, &env)
    }

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"

[providers.openai]
kind = "openai"
api_key = "${OPENAI_API_KEY}"
timeout = "30s"

[providers.local]
kind = "openai-compatible"
base_url = "${LOCAL_URL:-http://127.0.0.1:11434/v1/}"
headers = { "X-Title" = "demo" }

[routing]
default_provider = "openai"
timeout = "250ms"

[[routes]]
name = "fast"
targets = ["local/llama3", "openai/gpt-4o-mini"]
"#;

    #[test]
    fn good_config_loads() {
        let c = load(GOOD).expect("valid");
        assert_eq!(c.server.listen, "127.0.0.1:0");
        let openai = &c.providers["openai"];
        assert_eq!(openai.api_key.as_ref().map(ApiKey::expose), Some("sk-test"));
        assert_eq!(openai.policy.timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            c.providers["local"].base_url.as_deref(),
            Some("http://127.0.0.1:11434/v1")
        );
        assert_eq!(c.routing.policy.timeout, Some(Duration::from_millis(250)));
        let fast = &c.routes["fast"];
        assert_eq!(fast.targets[1].to_string(), "openai/gpt-4o-mini");
        assert_eq!(format!("{:?}", openai.api_key), "Some(***)");
    }

    #[test]
    fn rejections_name_the_problem_and_line() {
        let rows: &[(&str, &str, &str, Option<usize>)] = &[
            ("unknown top-level key", "[server]\nlisten = \"x\"\nbogus = 1\n", "bogus", Some(3)),
            ("unknown routing key", "[routing]\nretry = 2\n", "retry", Some(2)),
            ("unknown route key", "[providers.m]\nkind = \"mock\"\n[[routes]]\nname = \"a\"\ntargets = [\"m/x\"]\nweight = 3\n", "weight", Some(6)),
            ("bad toml", "[server\nlisten = 1", "", Some(1)),
            ("unset var", "[providers.o]\nkind = \"openai\"\napi_key = \"${NOPE_KEY}\"\n", "NOPE_KEY", Some(3)),
            ("unterminated ${", "[providers.o]\nkind = \"openai\"\n\napi_key = \"${NOPE_KEY\"\n", "`providers.o.api_key`: unterminated `${`", Some(4)),
            ("route to missing provider", "[providers.m]\nkind = \"mock\"\n\n[[routes]]\nname = \"a\"\ntargets = [\"ghost/x\"]\n", "ghost", Some(6)),
            ("target without model", "[providers.m]\nkind = \"mock\"\n[[routes]]\nname = \"a\"\ntargets = [\"m\"]\n", "provider/upstream-model", Some(5)),
            ("bad duration", "[routing]\ntimeout = \"soon\"\n", "timeout", Some(2)),
            ("missing default provider", "[routing]\ndefault_provider = \"x\"\n", "default_provider", Some(2)),
            ("unknown strategy", "[providers.m]\nkind = \"mock\"\n[[routes]]\nname = \"a\"\nstrategy = \"magic\"\ntargets = [\"m/x\"]\n", "magic", Some(5)),
            ("duplicate route", "[providers.m]\nkind = \"mock\"\n[[routes]]\nname = \"a\"\ntargets = [\"m/x\"]\n[[routes]]\nname = \"a\"\ntargets = [\"m/x\"]\n", "twice", Some(7)),
            ("bad base_url", "[providers.m]\nkind = \"openai-compatible\"\nbase_url = \"localhost:1\"\n", "base_url", Some(3)),
            ("wrong type", "[routing]\nretries = \"two\"\n", "retries", Some(2)),
            // On its own line, not the table's header (see `raw::PROVIDER_COMMON_KEYS`).
            ("mistyped common provider key", "[providers.a]\nkind = \"mock\"\n\nrpm = \"x\"\n", "expected u64", Some(4)),
            // Keys found from the parser's spans wherever the file puts them, not only
            // under a `[table]` header (which text scanning needed).
            ("dotted key", "# a comment naming max_body_bytes = 0\nserver.max_body_bytes = 0\n", "max_body_bytes", Some(2)),
            ("inline provider table", "[providers]\nm = { kind = \"openai-compatible\",\n  base_url = \"localhost:1\" }\n", "base_url", Some(3)),
            ("inline route", "routes = [\n  { name = \"a\", targets = [\"m/x\"] },\n  { name = \"b\", strategy = \"magic\", targets = [\"m/x\"] },\n]\n\n[providers.m]\nkind = \"mock\"\n", "magic", Some(3)),
            ("dotted routing key", "routing.default_provider = \"x\"\n", "default_provider", Some(1)),
            ("key with a duplicate name", "[auth]\nkeys = [\n  { name = \"a\", key = \"k1\" },\n  { name = \"a\", key = \"k2\" },\n]\n", "named `a`", Some(4)),
        ];
        for (name, src, needle, line) in rows {
            let err = load(src).expect_err(name);
            assert!(
                err.to_string().contains(needle),
                "{name}: expected {needle:?} in {err}"
            );
            assert_eq!(err.line, *line, "{name}: {err}");
        }
    }

    #[test]
    fn policy_keys_target_tables_and_health_load() {
        let c = load(
            r#"
[providers.a]
kind = "mock"
timeout = "2s"
connect_timeout = "500ms"
[providers.b]
kind = "mock"
[routing]
retries = 1
backoff = { base = "50ms", max = "1s" }
max_retry_after = "10s"
first_token_timeout = "30s"
deadline = "300s"
health = { failures = 3, cooldown = "5s", max_cooldown = "1m" }
[[routes]]
name = "w"
strategy = "weighted"
idle_timeout = "20s"
targets = ["a/x", { target = "b/y", weight = 3, timeout = "20s", retries = 0, params = { max_tokens = 1024 } }]
"#,
        )
        .expect("valid");
        assert_eq!(c.routing.policy.retries, Some(1));
        assert_eq!(c.routing.health.failures, 3);
        assert_eq!(c.routing.health.max_cooldown, Duration::from_secs(60));
        let w = &c.routes["w"];
        assert_eq!(w.strategy, StrategyKind::Weighted);
        assert_eq!(w.policy.idle_timeout, Some(Duration::from_secs(20)));
        assert_eq!(w.targets[0], TargetSpec::new("a", "x"));
        let b = &w.targets[1];
        assert_eq!((b.weight, b.policy.retries), (3, Some(0)));
        assert_eq!(b.policy.timeout, Some(Duration::from_secs(20)));
        assert_eq!(b.params.as_ref().unwrap()["max_tokens"], 1024);
        assert_eq!(
            c.providers["a"].policy.connect_timeout,
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn bad_policy_keys_name_the_problem() {
        let route = |t: &str| {
            format!("[providers.m]\nkind = \"mock\"\n[[routes]]\nname = \"a\"\ntargets = [{t}]\n")
        };
        let rows: Vec<(String, &str)> = vec![
            (route("{ target = \"m/x\", weight = 0 }"), "weight"),
            (route("{ target = \"m/x\", wieght = 2 }"), "wieght"),
            (route("{ target = \"m/x\", timeout = \"0s\" }"), "longer than 0"),
            (route("{ target = \"m/x\", params = { model = \"y\" } }"), "`model` cannot be overridden"),
            (route("{ target = \"m/x\", params = { max_tokens = \"many\" } }"), "params"),
            (route("{ model = \"m/x\" }"), "target"),
            ("[routing]\nbackoff = { base = \"2s\", max = \"1s\" }\n".to_owned(), "backoff.base"),
            ("[routing]\nhealth = { failures = 0 }\n".to_owned(), "failures"),
            ("[routing]\nhealth = { cooldown = \"1m\", max_cooldown = \"1s\" }\n".to_owned(), "max_cooldown"),
            ("[routing]\nfirst_token_timeout = \"soon\"\n".to_owned(), "first_token_timeout"),
            ("[routing]\nhedge_after = \"1s\"\n".to_owned(), "hedge_after"),
            ("[routing]\ndeadline = \"1000000000h\"\n".to_owned(), "at most a day"),
            ("[routing]\nretries = 4000000000\n".to_owned(), "at most 100"),
            (route("{ target = \"m/x\", deadline = \"1s\" }"), "whole call"),
            (route("{ target = \"m/x\", stream_keepalive = \"1s\" }"), "whole call"),
            ("[providers.m]\nkind = \"mock\"\n[[routes]]\nname = \"a\"\nstrategy = \"random\"\ntargets = [\"m/x\"]\n".to_owned(), "fallback, weighted, latency"),
        ];
        for (src, needle) in rows {
            let err = load(&src).expect_err(&src);
            assert!(
                err.to_string().contains(needle),
                "{src}: expected {needle:?} in {err}"
            );
        }
    }

    #[test]
    fn kind_specific_keys_are_kept_for_the_factory() {
        let c = load("[providers.m]\nkind = \"mock\"\n\ndelay = \"${D:-5ms}\"\n").unwrap();
        let m = &c.providers["m"];
        #[derive(serde::Deserialize)]
        struct O {
            delay: DurationOption,
        }
        let o: O = m.options.read().unwrap();
        assert_eq!(o.delay.get(), Duration::from_millis(5));
        assert_eq!(m.options.line("delay"), Some(4));
        assert_eq!(m.options.line("kind"), Some(2));
    }

    #[test]
    fn quickstart_is_valid() {
        let c = Config::quickstart();
        assert_eq!(c.routing.default_provider.as_deref(), Some("mock"));
    }

    #[test]
    fn key_patterns() {
        let mut k = ClientKey::new("web", "k");
        k.models = vec!["fast".into(), "anthropic/*".into()];
        assert!(k.allows("fast"));
        assert!(k.allows("anthropic/claude-3"));
        assert!(!k.allows("openai/gpt-4o"));
        assert!(!k.allows("faster"));
    }

    #[test]
    fn telemetry_keys_are_validated_with_their_line() {
        let ok = load("[telemetry]\notlp_endpoint = \"http://c:4318\"\notlp_protocol = \"http/protobuf\"\nsample_ratio = 0.25\nlog_format = \"json\"\ncapture_content = true\n").unwrap();
        assert_eq!(ok.telemetry.otlp_protocol, Some(OtlpProtocol::HttpProtobuf));
        assert_eq!(ok.telemetry.sample_ratio, Some(0.25));
        assert_eq!(ok.telemetry.log_format, LogFormat::Json);
        assert!(ok.telemetry.capture_content);
        for (src, says) in [
            ("otlp_protocol = \"http/json\"", "otlp_protocol"),
            ("sample_ratio = 1.5", "sample_ratio"),
            ("log_format = \"xml\"", "log_format"),
            ("otlp_endpoint = \"collector:4317\"", "otlp_endpoint"),
            ("otlp_headers = \"x\"", "otlp_headers"),
        ] {
            let e = load(&format!("[telemetry]\n{src}\n")).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(says), "{src}: {msg}");
            assert!(msg.contains("line 2"), "{src}: {msg}");
        }
    }
}
