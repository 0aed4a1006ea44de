//! The config schema: TOML in, validated runtime types out.
//!
//! [`Config::from_toml_str`] parses the file (every unknown key is an error naming it
//! and its line), expands `${VAR}` / `${VAR:-default}`, parses durations and checks
//! that every route target names a configured provider. Provider kinds and their
//! kind-specific keys are checked when the snapshot is built against a registry
//! ([`crate::Snapshot::build`]); `modelway check` and hot reload both go through both.

mod auth;
mod expand;
mod raw;
mod usage;

use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;

pub use auth::{
    glob_match, is_loopback, parse_size, sha256, AuthConfig, Budget, BudgetPeriod, ClientKey,
    KeyBucket, KeyHash, KeyLimits, LimitsConfig, OnStoreError, StoreConfig, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_IN_FLIGHT_BYTES,
};
pub use expand::{expand_env, parse_duration};
use raw::{RawConfig, RawPolicy, RawProvider, RawTarget};
pub use usage::{LedgerConfig, UsageConfig};

use crate::policy::{HealthSettings, PolicyLayer, StrategyKind};

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

/// One `[providers.NAME]` table, validated.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The table's name (`[providers.NAME]`), what targets and slugs name.
    pub name: String,
    /// `kind`: which factory builds it.
    pub kind: String,
    /// `base_url`: the upstream's address, when not the kind's default.
    pub base_url: Option<String>,
    /// `api_key`: the operator's key for the upstream.
    pub api_key: Option<ApiKey>,
    /// `headers`: extra headers sent upstream, in file order.
    pub headers: Vec<(String, String)>,
    /// The provider's own bounds (`timeout`, `connect_timeout`, `first_token_timeout`,
    /// `idle_timeout`): they hold on every route that uses the provider.
    pub policy: PolicyLayer,
    /// `drop_unsupported`: drop request parameters the upstream cannot take, instead of a 400.
    pub drop_unsupported: bool,
    /// Models to list for this provider on `GET /v1/models`.
    pub models: Vec<String>,
    /// The operator's quota with this provider: requests and tokens per minute. A
    /// target over it is skipped.
    pub rpm: Option<u64>,
    /// `tpm`: tokens per minute with this provider.
    pub tpm: Option<u64>,
    /// A client may send its own key for this provider (`x-modelway-provider-key`).
    pub allow_client_key: bool,
    /// Kind-specific keys, `${VAR}` already expanded in strings.
    pub options: ProviderOptions,
    /// The line of the table's header, for error messages.
    pub line: Option<usize>,
}

impl ProviderConfig {
    /// A provider config with only a name and kind, for embedding and tests.
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            base_url: None,
            api_key: None,
            headers: Vec::new(),
            policy: PolicyLayer::default(),
            drop_unsupported: false,
            models: Vec::new(),
            rpm: None,
            tpm: None,
            allow_client_key: false,
            options: ProviderOptions::default(),
            line: None,
        }
    }

    /// The configured `headers`, checked as HTTP header names and values once, when
    /// the provider is built.
    pub fn header_pairs(&self) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, BuildError> {
        self.headers
            .iter()
            .map(|(k, v)| {
                let bad = |e: &dyn std::fmt::Display| {
                    BuildError(format!("provider `{}`: header `{k}`: {e}", self.name))
                };
                let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(&e))?;
                let value = http::HeaderValue::from_str(v).map_err(|e| bad(&e))?;
                Ok((name, value))
            })
            .collect()
    }

    /// `api_key` as a header value marked sensitive (so it never shows in `Debug` output
    /// or HTTP/2 header tables), after `prefix` (`"Bearer "`, or `""`).
    pub fn api_key_header(&self, prefix: &str) -> Result<Option<http::HeaderValue>, BuildError> {
        let Some(key) = &self.api_key else {
            return Ok(None);
        };
        let mut v =
            http::HeaderValue::from_str(&format!("{prefix}{}", key.expose())).map_err(|_| {
                BuildError(format!(
                    "provider `{}`: api_key contains characters not allowed in a header",
                    self.name
                ))
            })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }

    fn option_err(&self, key: &str, want: &str) -> BuildError {
        BuildError(format!("provider `{}`: `{key}` must be {want}", self.name))
    }

    /// A string option.
    pub fn option_str(&self, key: &str) -> Result<Option<&str>, BuildError> {
        match self.options.0.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.option_err(key, "a string")),
        }
    }

    /// A boolean option.
    pub fn option_bool(&self, key: &str) -> Result<Option<bool>, BuildError> {
        match self.options.0.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(_) => Err(self.option_err(key, "true or false")),
        }
    }

    /// A non-negative integer option.
    pub fn option_u64(&self, key: &str) -> Result<Option<u64>, BuildError> {
        match self.options.0.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(_) => Err(self.option_err(key, "a non-negative integer")),
        }
    }

    /// A string option that may also be given as a list of strings
    /// (`beta = "a"` or `beta = ["a", "b"]`).
    pub fn option_strings(&self, key: &str) -> Result<Option<Vec<&str>>, BuildError> {
        match self.options.0.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(vec![s.as_str()])),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s.as_str()),
                    _ => Err(self.option_err(key, "a string or strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.option_err(key, "a string or strings")),
        }
    }

    /// A duration option (`"250ms"`, `"2s"`).
    pub fn option_duration(&self, key: &str) -> Result<Option<Duration>, BuildError> {
        match self.option_str(key)? {
            None => Ok(None),
            Some(s) => parse_duration(s)
                .map(Some)
                .map_err(|e| BuildError(format!("provider `{}`: `{key}`: {e}", self.name))),
        }
    }
}

/// The kind-specific keys of a `[providers.NAME]` table (everything beyond the common
/// keys), `${VAR}` already expanded in strings. A factory reads them with the
/// `option_*` getters of [`ProviderConfig`] or, all at once, into a typed struct with
/// [`ProviderOptions::deserialize`]; the keys it accepts are those it lists in
/// [`crate::provider::ProviderFactory::option_keys`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderOptions(toml::Table);

impl ProviderOptions {
    /// Parses options written as the body of a TOML table (`key = value` lines), as
    /// they would stand in a `[providers.NAME]` table; for tests and for embedders
    /// building a [`ProviderConfig`] in code.
    ///
    /// ```
    /// use modelway_core::config::ProviderOptions;
    /// let options = ProviderOptions::from_toml_str("beta = [\"a\", \"b\"]").unwrap();
    /// assert_eq!(options.keys().collect::<Vec<_>>(), ["beta"]);
    /// ```
    pub fn from_toml_str(src: &str) -> Result<Self, ConfigError> {
        src.parse::<toml::Table>()
            .map(Self)
            .map_err(|e| toml_error(src, &e))
    }

    /// The keys set, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Whether no kind-specific key is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads every option into `T` (typically a `#[serde(deny_unknown_fields)]`
    /// struct of the factory's own keys).
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, BuildError> {
        T::deserialize(toml::Value::Table(self.0.clone())).map_err(|e| BuildError(e.to_string()))
    }
}

/// `[routing]`.
#[derive(Debug, Clone, Default)]
pub struct RoutingConfig {
    /// `default_provider`: serves a model no route or slug resolves.
    pub default_provider: Option<String>,
    /// The policy keys set on `[routing]` (the defaults of every route).
    pub policy: PolicyLayer,
    /// `health`: when targets are ejected and re-admitted.
    pub health: HealthSettings,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// `name`: what clients send as `model`.
    pub name: String,
    /// `strategy`: how targets are ordered (`fallback`, `weighted`, `latency`).
    pub strategy: StrategyKind,
    /// `targets`: where the route's calls go.
    pub targets: Vec<TargetSpec>,
    /// The policy keys set on the route.
    pub policy: PolicyLayer,
    /// `hedge_after` / `hedge_max` / `hedge_budget`, when the route hedges.
    pub hedge: Option<crate::policy::Hedge>,
}

/// A route target: a configured provider and the model name to send it, with what
/// its table sets.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    /// The configured provider's name.
    pub provider: String,
    /// The model name sent upstream.
    pub model: String,
    /// Relative share under the `weighted` strategy (default 1).
    pub weight: u32,
    /// The policy keys set on the target table.
    pub policy: PolicyLayer,
    /// Request parameters this target overrides (`params = { max_tokens = 1024 }`).
    pub params: Option<crate::chat::Extra>,
}

impl TargetSpec {
    /// A plain `provider/model` target.
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            model: model.into(),
            weight: 1,
            policy: PolicyLayer::default(),
            params: None,
        }
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

/// `[telemetry]`. Unset keys fall back to the standard `OTEL_*` variables, read by
/// the binary's exporter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryConfig {
    /// A base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` (http/protobuf posts to
    /// `…/v1/traces`).
    pub otlp_endpoint: Option<String>,
    /// `otlp_protocol`: gRPC or http/protobuf.
    pub otlp_protocol: Option<OtlpProtocol>,
    /// `service_name`: the `service.name` of exported spans.
    pub service_name: Option<String>,
    /// The share of new traces recorded; a client's sampled flag is followed.
    pub sample_ratio: Option<f64>,
    /// Prompt and completion text on spans.
    pub capture_content: bool,
    /// `log_format`: text or JSON request lines.
    pub log_format: LogFormat,
}

/// `telemetry.otlp_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC.
    Grpc,
    /// OTLP over HTTP with protobuf bodies.
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The spec's names: `grpc`, `http/protobuf`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "grpc" => Some(Self::Grpc),
            "http/protobuf" | "http" => Some(Self::HttpProtobuf),
            _ => None,
        }
    }

    /// The spec's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

/// `telemetry.log_format`: how the one line per request is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The longest any policy duration may be: longer ones are mistakes, and would
/// overflow a deadline computed from now.
pub const MAX_POLICY_DURATION: Duration = Duration::from_secs(86_400);
/// The most retries per target.
pub const MAX_RETRIES: u32 = 100;

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
        let raw: RawConfig = toml::from_str(src).map_err(|e| toml_error(src, &e))?;
        Validator {
            src,
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
            src: "",
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

fn toml_error(src: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map(|s| line_of(src, s.start));
    let msg = e.message().trim().to_owned();
    ConfigError::new(
        match line {
            // Quote the line: serde's type errors do not name the key.
            Some(l) => match src.lines().nth(l - 1).map(str::trim) {
                Some(text) if !text.is_empty() => format!("line {l}: {msg} (in `{text}`)"),
                _ => format!("line {l}: {msg}"),
            },
            None => msg,
        },
        line,
    )
}

/// 1-based line of a byte offset.
fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Finds the line of `key = …` inside the table whose header satisfies `is_header`
/// (the `nth` such table), for errors serde cannot place.
fn locate_key(
    src: &str,
    is_header: &dyn Fn(&str) -> bool,
    nth: usize,
    key: Option<&str>,
) -> Option<usize> {
    let mut seen = 0;
    let mut inside = false;
    for (i, line) in src.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            if inside {
                return None;
            }
            if is_header(t) {
                if seen == nth {
                    inside = true;
                    if key.is_none() {
                        return Some(i + 1);
                    }
                }
                seen += 1;
            }
            continue;
        }
        if inside {
            if let Some(k) = key {
                let k_quoted = format!("\"{k}\"");
                let rest = t
                    .strip_prefix(k)
                    .or_else(|| t.strip_prefix(k_quoted.as_str()));
                if rest.is_some_and(|r| r.trim_start().starts_with('=')) {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

fn provider_header(name: &str) -> impl Fn(&str) -> bool + '_ {
    move |t: &str| {
        let inner = t
            .trim_start_matches('[')
            .trim_end_matches(']')
            .replace(' ', "");
        inner == format!("providers.{name}") || inner == format!("providers.\"{name}\"")
    }
}

/// Finds the first non-comment line mentioning `needle`.
pub(crate) fn locate_text(src: &str, needle: &str) -> Option<usize> {
    src.lines()
        .enumerate()
        .find(|(_, l)| !l.trim_start().starts_with('#') && l.contains(needle))
        .map(|(i, _)| i + 1)
}

struct Validator<'a> {
    src: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The config file's directory, for relative paths.
    base: Option<&'a std::path::Path>,
}

impl Validator<'_> {
    fn expand(&self, what: &str, value: &str) -> Result<String, ConfigError> {
        expand_env(value, self.env).map_err(|var| {
            let line = locate_text(self.src, &format!("${{{var}"));
            ConfigError::new(
                format!("environment variable `{var}` used by `{what}` is not set (use ${{{var}:-default}} for a default)"),
                line,
            )
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
        let server_line = |k| locate_key(self.src, &|t| t == "[server]", 0, Some(k));
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

        let routing_line = |k| locate_key(self.src, &|t| t == "[routing]", 0, Some(k));
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
            let line_of_key = |k| {
                locate_key(
                    self.src,
                    &|t| t.replace(' ', "") == "[[routes]]",
                    i,
                    Some(k),
                )
            };
            let header_line =
                locate_key(self.src, &|t| t.replace(' ', "") == "[[routes]]", i, None);
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

    /// The policy keys of one table; `line` finds a key's line.
    fn policy(
        &self,
        table: &str,
        raw: RawPolicy<'_>,
        line: &dyn Fn(&'static str) -> Option<usize>,
    ) -> Result<PolicyLayer, ConfigError> {
        let mut d = [None; 7];
        for (slot, (key, value)) in d.iter_mut().zip(raw.durations) {
            if let Some(v) = value {
                let parsed = self.duration(&format!("{table}.{key}"), v, line(key))?;
                if parsed > MAX_POLICY_DURATION {
                    return Err(ConfigError::new(
                        format!("`{table}.{key}` must be at most a day ({v} is longer)"),
                        line(key),
                    ));
                }
                if parsed.is_zero() && key != "max_retry_after" {
                    return Err(ConfigError::new(
                        format!("`{table}.{key}` must be longer than 0"),
                        line(key),
                    ));
                }
                *slot = Some(parsed);
            }
        }
        let backoff = match raw.backoff {
            None => None,
            Some(b) => {
                let defaults = crate::policy::Backoff::default();
                let part = |k: &str, v: &Option<String>, dflt| match v {
                    Some(v) => self.duration(&format!("{table}.backoff.{k}"), v, line("backoff")),
                    None => Ok(dflt),
                };
                let base = part("base", &b.base, defaults.base)?;
                let max = part("max", &b.max, defaults.max.max(base))?;
                if base > max {
                    return Err(ConfigError::new(
                        format!("`{table}.backoff.base` ({base:?}) is longer than `max` ({max:?})"),
                        line("backoff"),
                    ));
                }
                Some(crate::policy::Backoff { base, max })
            }
        };
        let [max_retry_after, connect_timeout, timeout, first_token_timeout, idle_timeout, deadline, stream_keepalive] =
            d;
        if let Some(r) = raw.retries.filter(|&r| r > MAX_RETRIES) {
            return Err(ConfigError::new(
                format!("`{table}.retries` must be at most {MAX_RETRIES}, got {r}"),
                line("retries"),
            ));
        }
        Ok(PolicyLayer {
            retries: raw.retries,
            backoff,
            max_retry_after,
            connect_timeout,
            timeout,
            first_token_timeout,
            idle_timeout,
            deadline,
            stream_keepalive,
        })
    }

    /// A route's hedging keys: `hedge_after` turns hedging on; the others need it.
    fn hedge(
        &self,
        r: &raw::RawRoute,
        line: &dyn Fn(&'static str) -> Option<usize>,
    ) -> Result<Option<crate::policy::Hedge>, ConfigError> {
        use crate::policy::{Hedge, HedgeAfter};
        let what = format!("routes[{}]", r.name);
        let Some(after) = &r.hedge_after else {
            for (key, set) in [
                ("hedge_max", r.hedge_max.is_some()),
                ("hedge_budget", r.hedge_budget.is_some()),
            ] {
                if set {
                    return Err(ConfigError::new(
                        format!("`{what}.{key}` needs `hedge_after`"),
                        line(key),
                    ));
                }
            }
            return Ok(None);
        };
        let after = self.expand(&format!("{what}.hedge_after"), after)?;
        let after = match after.as_str() {
            p if p.starts_with('p')
                && p[1..].parse::<u8>().is_ok_and(|n| (50..=99).contains(&n)) =>
            {
                HedgeAfter::Percentile(f64::from(p[1..].parse::<u8>().unwrap_or(95)) / 100.0)
            }
            d => {
                let d = parse_duration(d).map_err(|e| {
                    ConfigError::new(
                        format!("`{what}.hedge_after`: {e} (or a percentile such as \"p95\")"),
                        line("hedge_after"),
                    )
                })?;
                if d.is_zero() || d > MAX_POLICY_DURATION {
                    return Err(ConfigError::new(
                        format!("`{what}.hedge_after` must be longer than 0 and at most a day"),
                        line("hedge_after"),
                    ));
                }
                HedgeAfter::Fixed(d)
            }
        };
        let max = r.hedge_max.unwrap_or(1);
        if !(1..=4).contains(&max) {
            return Err(ConfigError::new(
                format!("`{what}.hedge_max` must be between 1 and 4, got {max}"),
                line("hedge_max"),
            ));
        }
        let budget = r.hedge_budget.unwrap_or(Hedge::DEFAULT_BUDGET);
        if !(budget > 0.0 && budget <= 1.0) {
            return Err(ConfigError::new(
                format!("`{what}.hedge_budget` must be a share in (0, 1], got {budget}"),
                line("hedge_budget"),
            ));
        }
        Ok(Some(Hedge { after, max, budget }))
    }

    fn telemetry(&self, t: raw::RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
        let line = |k| locate_key(self.src, &|t| t == "[telemetry]", 0, Some(k));
        let otlp_endpoint = match t.otlp_endpoint {
            Some(e) => Some(self.expand("telemetry.otlp_endpoint", &e)?).filter(|e| !e.is_empty()),
            None => None,
        };
        if let Some(e) = &otlp_endpoint {
            let ok = e.parse::<http::Uri>().ok().is_some_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
            });
            if !ok {
                return Err(ConfigError::new(
                    format!(
                        "`telemetry.otlp_endpoint` must be an http:// or https:// URL, got `{e}`"
                    ),
                    line("otlp_endpoint"),
                ));
            }
        }
        let otlp_protocol = match &t.otlp_protocol {
            Some(p) => Some(OtlpProtocol::parse(p).ok_or_else(|| {
                ConfigError::new(
                    format!("`telemetry.otlp_protocol` must be \"grpc\" or \"http/protobuf\", got \"{p}\""),
                    line("otlp_protocol"),
                )
            })?),
            None => None,
        };
        if let Some(r) = t.sample_ratio {
            if !(0.0..=1.0).contains(&r) {
                return Err(ConfigError::new(
                    format!("`telemetry.sample_ratio` must be between 0 and 1, got {r}"),
                    line("sample_ratio"),
                ));
            }
        }
        let log_format = match t.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(f) => {
                return Err(ConfigError::new(
                    format!("`telemetry.log_format` must be \"text\" or \"json\", got \"{f}\""),
                    line("log_format"),
                ))
            }
        };
        Ok(TelemetryConfig {
            otlp_endpoint,
            otlp_protocol,
            service_name: t.service_name.filter(|s| !s.is_empty()),
            sample_ratio: t.sample_ratio,
            capture_content: t.capture_content.unwrap_or(false),
            log_format,
        })
    }

    fn health(
        &self,
        h: &raw::RawHealth,
        line: Option<usize>,
    ) -> Result<HealthSettings, ConfigError> {
        let mut out = HealthSettings::default();
        if let Some(f) = h.failures {
            if f == 0 {
                return Err(ConfigError::new(
                    "`routing.health.failures` must be at least 1",
                    line,
                ));
            }
            out.failures = f;
        }
        if let Some(c) = &h.cooldown {
            out.cooldown = self.duration("routing.health.cooldown", c, line)?;
        }
        out.max_cooldown = match &h.max_cooldown {
            Some(c) => self.duration("routing.health.max_cooldown", c, line)?,
            None => out.max_cooldown.max(out.cooldown),
        };
        if out.max_cooldown > MAX_POLICY_DURATION {
            return Err(ConfigError::new(
                "`routing.health` cooldowns must be at most a day",
                line,
            ));
        }
        if out.max_cooldown < out.cooldown {
            return Err(ConfigError::new(
                "`routing.health.max_cooldown` is shorter than `cooldown`",
                line,
            ));
        }
        Ok(out)
    }

    /// A target's request overrides, checked once: they must leave a valid request.
    fn params(
        &self,
        what: &str,
        params: &toml::Table,
        line: Option<usize>,
    ) -> Result<crate::chat::Extra, ConfigError> {
        let bad = |m: String| ConfigError::new(format!("`{what}.params`: {m}"), line);
        for key in ["model", "messages", "stream"] {
            if params.contains_key(key) {
                return Err(bad(format!("`{key}` cannot be overridden")));
            }
        }
        let serde_json::Value::Object(map) =
            serde_json::to_value(params).map_err(|e| bad(e.to_string()))?
        else {
            return Err(bad("must be a table".to_owned()));
        };
        let probe = crate::chat::ChatRequest::new("probe", Vec::new());
        crate::policy::apply_params(&probe, &map).map_err(|e| bad(e.to_string()))?;
        Ok(map)
    }

    fn provider(&self, name: &str, p: RawProvider) -> Result<ProviderConfig, ConfigError> {
        let header = provider_header(name);
        let line = locate_key(self.src, &header, 0, None);
        let key_line = |k: &str| locate_key(self.src, &header, 0, Some(k)).or(line);
        if name.is_empty() || name.contains('/') {
            return Err(ConfigError::new(
                format!("provider name `{name}` must be non-empty and contain no `/`"),
                line,
            ));
        }
        let what = |k: &str| format!("providers.{name}.{k}");
        let base_url = match p.base_url {
            Some(u) => {
                let u = self.expand(&what("base_url"), &u)?;
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(ConfigError::new(
                        format!("`{}` must start with http:// or https://", what("base_url")),
                        key_line("base_url"),
                    ));
                }
                Some(u.trim_end_matches('/').to_owned())
            }
            None => None,
        };
        let api_key = match p.api_key {
            Some(k) => Some(self.expand(&what("api_key"), &k)?)
                .filter(|k| !k.is_empty())
                .map(ApiKey::new),
            None => None,
        };
        let mut headers = Vec::with_capacity(p.headers.len());
        for (k, v) in p.headers {
            let v = self.expand(&what(&format!("headers.{k}")), &v)?;
            if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || http::HeaderValue::from_str(&v).is_err()
            {
                return Err(ConfigError::new(
                    format!(
                        "`{}` is not a valid HTTP header",
                        what(&format!("headers.{k}"))
                    ),
                    key_line("headers"),
                ));
            }
            headers.push((k, v));
        }
        let provider_policy = RawPolicy {
            retries: None,
            backoff: None,
            durations: [
                ("max_retry_after", None),
                ("connect_timeout", p.connect_timeout.as_deref()),
                ("timeout", p.timeout.as_deref()),
                ("first_token_timeout", p.first_token_timeout.as_deref()),
                ("idle_timeout", p.idle_timeout.as_deref()),
                ("deadline", None),
                ("stream_keepalive", None),
            ],
        };
        let policy = self.policy(&format!("providers.{name}"), provider_policy, &key_line)?;
        let quota = |k: &str, v: Option<u64>| match v {
            Some(0) => Err(ConfigError::new(
                format!(
                    "`{}` must be at least 1 (leave it out for no quota)",
                    what(k)
                ),
                key_line(k),
            )),
            v => Ok(v),
        };
        let mut options = p.options;
        for (k, v) in options.iter_mut() {
            if let toml::Value::String(s) = v {
                *s = self.expand(&what(k), s)?;
            }
        }
        Ok(ProviderConfig {
            name: name.to_owned(),
            kind: p.kind,
            base_url,
            api_key,
            headers,
            policy,
            drop_unsupported: p.drop_unsupported.unwrap_or(false),
            models: p.models.unwrap_or_default(),
            rpm: quota("rpm", p.rpm)?,
            tpm: quota("tpm", p.tpm)?,
            allow_client_key: p.allow_client_key.unwrap_or(false),
            options: ProviderOptions(options),
            line,
        })
    }
}

fn names(providers: &IndexMap<String, ProviderConfig>) -> String {
    if providers.is_empty() {
        return "none".to_owned();
    }
    providers
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Line of an unknown kind-specific key, for [`crate::Snapshot::build`].
pub(crate) fn option_line(src: Option<&str>, provider: &str, key: &str) -> Option<usize> {
    locate_key(src?, &provider_header(provider), 0, Some(key))
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
            ("route to missing provider", "[providers.m]\nkind = \"mock\"\n\n[[routes]]\nname = \"a\"\ntargets = [\"ghost/x\"]\n", "ghost", Some(6)),
            ("target without model", "[providers.m]\nkind = \"mock\"\n[[routes]]\nname = \"a\"\ntargets = [\"m\"]\n", "provider/upstream-model", Some(5)),
            ("bad duration", "[routing]\ntimeout = \"soon\"\n", "timeout", Some(2)),
            ("missing default provider", "[routing]\ndefault_provider = \"x\"\n", "default_provider", Some(2)),
            ("unknown strategy", "[providers.m]\nkind = \"mock\"\n[[routes]]\nname = \"a\"\nstrategy = \"magic\"\ntargets = [\"m/x\"]\n", "magic", Some(5)),
            ("duplicate route", "[providers.m]\nkind = \"mock\"\n[[routes]]\nname = \"a\"\ntargets = [\"m/x\"]\n[[routes]]\nname = \"a\"\ntargets = [\"m/x\"]\n", "twice", Some(7)),
            ("bad base_url", "[providers.m]\nkind = \"openai-compatible\"\nbase_url = \"localhost:1\"\n", "base_url", Some(3)),
            ("wrong type", "[routing]\nretries = \"two\"\n", "retries", Some(2)),
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
        let c = load("[providers.m]\nkind = \"mock\"\ndelay = \"${D:-5ms}\"\n").unwrap();
        let m = &c.providers["m"];
        assert_eq!(
            m.option_duration("delay").unwrap(),
            Some(Duration::from_millis(5))
        );
        assert_eq!(
            option_line(
                Some("[providers.m]\nkind = \"mock\"\ndelay = 1\n"),
                "m",
                "delay"
            ),
            Some(3)
        );
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
