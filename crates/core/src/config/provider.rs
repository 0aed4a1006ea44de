//! `[providers.NAME]`: a provider's validated table ([`ProviderConfig`]), its
//! kind-specific keys ([`ProviderOptions`]) and how the validator builds them.

use indexmap::IndexMap;

use super::locate::toml_error;
use super::raw::{RawPolicy, RawProvider};
use super::{ApiKey, BuildError, ConfigError, OptionError, Validator};
use crate::policy::PolicyLayer;

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
}

/// The kind-specific keys of a `[providers.NAME]` table (everything beyond the common
/// keys), `${VAR}` already expanded in strings. The gateway reads them into the
/// factory's [`ProviderFactory::Options`] type before it builds the provider, so a
/// factory never reads them by name.
///
/// [`ProviderFactory::Options`]: crate::provider::ProviderFactory::Options
#[derive(Debug, Clone, Default)]
pub struct ProviderOptions {
    table: toml::Table,
    /// The line of `kind` and of each kind-specific key in the file, for the errors
    /// the factory's check raises when the provider is built.
    lines: Vec<(String, usize)>,
}

/// Equal when the same options are set, wherever they stand in the file: a reload
/// that only moves lines keeps the provider.
impl PartialEq for ProviderOptions {
    fn eq(&self, other: &Self) -> bool {
        self.table == other.table
    }
}

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
            .map(|table| Self {
                table,
                lines: Vec::new(),
            })
            .map_err(|e| toml_error(src, &e))
    }

    /// The keys set, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.table.keys().map(String::as_str)
    }

    /// The line of `key` (`kind` or a kind-specific key) in the config file.
    pub(crate) fn line(&self, key: &str) -> Option<usize> {
        self.lines.iter().find(|(k, _)| k == key).map(|&(_, l)| l)
    }

    /// Whether no kind-specific key is set.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Reads every option into `T` (a factory's [`ProviderFactory::Options`]).
    ///
    /// # Errors
    /// What `T` refuses: the key at fault, the path to the value (`beta[1]`) and
    /// serde's message.
    ///
    /// [`ProviderFactory::Options`]: crate::provider::ProviderFactory::Options
    pub fn read<T: serde::de::DeserializeOwned>(&self) -> Result<T, OptionError> {
        serde_path_to_error::deserialize(toml::Value::Table(self.table.clone())).map_err(
            |e: serde_path_to_error::Error<toml::de::Error>| {
                let key = match e.path().iter().next() {
                    Some(serde_path_to_error::Segment::Map { key }) => key.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let path = Some(e.path().to_string())
                    .filter(|p| p != ".")
                    .unwrap_or_default();
                OptionError {
                    key,
                    path,
                    message: e.into_inner().message().trim().to_owned(),
                }
            },
        )
    }
}

impl Validator<'_> {
    pub(super) fn provider(
        &self,
        name: &str,
        p: RawProvider,
    ) -> Result<ProviderConfig, ConfigError> {
        let line = self.lines.key(&["providers", name]);
        let key_line = |k: &str| self.lines.key(&["providers", name, k]).or(line);
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
        let mut lines: Vec<(String, usize)> = ["kind"]
            .into_iter()
            .chain(options.keys().map(String::as_str))
            .filter_map(|k| Some((k.to_owned(), self.lines.key(&["providers", name, k])?)))
            .collect();
        lines.shrink_to_fit();
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
            options: ProviderOptions {
                table: options,
                lines,
            },
            line,
        })
    }
}

pub(super) fn names(providers: &IndexMap<String, ProviderConfig>) -> String {
    if providers.is_empty() {
        return "none".to_owned();
    }
    providers
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
