//! `[auth]` (gateway keys and their limits), `[limits]` (where the counters live) and
//! the admission keys of `[server]`, validated.
//!
//! Keys are kept as SHA-256 digests only, whether the file holds `key` or
//! `key_sha256`: a presented key is hashed once and looked up in a map, and the match is
//! confirmed with a constant-time comparison, so no request scans the key list and no
//! secret stays in memory after the config is loaded.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::raw::{RawAuth, RawKey, RawLimits};
use super::{ConfigError, Validator};

/// A SHA-256 digest of a key.
pub type KeyHash = [u8; 32];

/// The SHA-256 digest of `secret`.
pub fn sha256(secret: &[u8]) -> KeyHash {
    Sha256::digest(secret).into()
}

/// Default `[server] max_in_flight`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;
/// Default `[server] max_in_flight_bytes` (512 MiB).
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 512 * 1024 * 1024;
/// Default `[limits] timeout`: how long a check may wait for a shared store.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(100);

/// `[auth]`. No keys: the gateway takes any (or no) bearer token, which
/// [`AuthConfig::open_relay`] allows only on a loopback address.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// The admin key's digest; `None` disables `/admin/*`.
    pub admin_key: Option<KeyHash>,
    /// Serve without keys on a non-loopback address.
    pub allow_unauthenticated: bool,
    /// `keys`: the gateway keys clients send.
    pub keys: Vec<ClientKey>,
    /// Digest → index into `keys`.
    index: HashMap<KeyHash, usize>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("admin_key", &self.admin_key.map(|_| "***"))
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .field("keys", &self.keys)
            .finish()
    }
}

impl AuthConfig {
    /// An `[auth]` with these keys (for embedding and tests). Two keys with the same
    /// secret: the first wins.
    pub fn with_keys(keys: Vec<ClientKey>) -> Self {
        let mut index = HashMap::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            index.entry(k.hash).or_insert(i);
        }
        Self {
            admin_key: None,
            allow_unauthenticated: false,
            keys,
            index,
        }
    }

    /// Whether any gateway key is configured.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The key whose secret is `presented`: one hash, one map lookup, and a
    /// constant-time comparison of the digests.
    pub fn lookup(&self, presented: &str) -> Option<&ClientKey> {
        let digest = sha256(presented.as_bytes());
        let key = &self.keys[*self.index.get(&digest)?];
        bool::from(key.hash.ct_eq(&digest)).then_some(key)
    }

    /// Whether `presented` is the admin key (constant time).
    pub fn is_admin(&self, presented: &str) -> bool {
        self.admin_key
            .is_some_and(|h| bool::from(h.ct_eq(&sha256(presented.as_bytes()))))
    }

    /// The error when serving on `listen` with this `[auth]` would make the gateway an
    /// open relay: no keys, a non-loopback address, and no `allow_unauthenticated`.
    pub fn open_relay(&self, listen: &str) -> Option<ConfigError> {
        if self.has_keys() || self.allow_unauthenticated || is_loopback(listen) {
            return None;
        }
        Some(ConfigError::new(
            format!(
                "refusing to serve on {listen} without gateway keys: anyone who can reach it could spend the provider keys. \
                 Add keys under [auth] (`keys = [{{ name = \"app\", key = \"${{APP_KEY}}\" }}]`), listen on 127.0.0.1, \
                 or set `allow_unauthenticated = true` under [auth] if something in front of the gateway authenticates"
            ),
            None,
        ))
    }
}

/// Whether `listen` (`host:port`) binds only the loopback interface.
pub fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A gateway key handed to a client application.
#[derive(Clone)]
pub struct ClientKey {
    /// The key's name, shown in logs, metrics and the usage ledger.
    pub name: String,
    /// The SHA-256 digest of the secret.
    pub hash: KeyHash,
    /// Model patterns this key may use (`*` matches any run of characters); empty =
    /// all.
    pub models: Vec<String>,
    /// Its rate and concurrency limits.
    pub limits: KeyLimits,
    /// What the key may spend per period (`budget_usd`, `budget_period`).
    pub budget: Option<Budget>,
    /// The names of its limit buckets, made once: `key:NAME:rpm`, `…:tpm`,
    /// `…:concurrent`.
    buckets: std::sync::Arc<[String; 3]>,
}

/// One of a key's limit buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyBucket {
    /// Requests per minute.
    Rpm = 0,
    /// Tokens per minute.
    Tpm = 1,
    /// Requests at once.
    Concurrent = 2,
}

fn key_buckets(name: &str) -> std::sync::Arc<[String; 3]> {
    std::sync::Arc::new([
        format!("key:{name}:rpm"),
        format!("key:{name}:tpm"),
        format!("key:{name}:concurrent"),
    ])
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("name", &self.name)
            .field("models", &self.models)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// A key with this name and secret, no model list and no limits.
    pub fn new(name: impl Into<String>, secret: &str) -> Self {
        let name = name.into();
        Self {
            buckets: key_buckets(&name),
            name,
            hash: sha256(secret.as_bytes()),
            models: Vec::new(),
            limits: KeyLimits::default(),
            budget: None,
        }
    }

    /// The store's name for one of this key's buckets.
    pub fn bucket(&self, which: KeyBucket) -> &str {
        &self.buckets[which as usize]
    }

    /// Every bucket name, shared (to hold past the request's snapshot).
    pub fn buckets(&self) -> std::sync::Arc<[String; 3]> {
        self.buckets.clone()
    }

    /// Whether this key may call `model`.
    pub fn allows(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| glob_match(p, model))
    }
}

/// A key's spend budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// USD per period.
    pub usd: f64,
    /// The period the budget resets after.
    pub period: BudgetPeriod,
}

/// `budget_period`: calendar periods in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetPeriod {
    /// From 00:00 UTC.
    Day,
    /// From Monday 00:00 UTC.
    Week,
    /// From the 1st, 00:00 UTC.
    Month,
}

impl BudgetPeriod {
    /// The config's name (`day`, `week`, `month`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The period holding `ts_ms` (unix milliseconds): its start and end.
    pub fn bounds(self, ts_ms: i64) -> (i64, i64) {
        use crate::civil::{civil_from_days, days_from_civil, DAY_MS as DAY};
        let days = ts_ms.div_euclid(DAY);
        match self {
            Self::Day => (days * DAY, (days + 1) * DAY),
            Self::Week => {
                // 1970-01-01 was a Thursday: Monday is 3 days before day 0 + 7k.
                let monday = days - (days + 3).rem_euclid(7);
                (monday * DAY, (monday + 7) * DAY)
            }
            Self::Month => {
                let (y, m, _) = civil_from_days(days);
                let start = days_from_civil(y, m, 1);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (start * DAY, days_from_civil(ny, nm, 1) * DAY)
            }
        }
    }
}

/// A key's limits. `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyLimits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (input + output, from each answer's usage) per minute.
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    pub max_concurrent: Option<u64>,
}

impl KeyLimits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.max_concurrent.is_some()
    }
}

/// `*` matches any run of characters (`/` included); everything else literally.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// `[limits]`: where the limit counters live.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// `store`: where the counters live.
    pub store: StoreConfig,
    /// `on_store_error`: what a check does when a shared store is down.
    pub on_store_error: OnStoreError,
    /// How long a check waits for a shared store before `on_store_error` applies.
    pub timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            store: StoreConfig::Memory,
            on_store_error: OnStoreError::Allow,
            timeout: DEFAULT_STORE_TIMEOUT,
        }
    }
}

/// `limits.store`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Counters in this process.
    Memory,
    /// Counters in Redis, shared by every replica pointing at it. The URL may hold a
    /// password: it prints redacted.
    Redis(String),
}

impl StoreConfig {
    /// The store as it may be shown: a Redis URL without its password.
    pub fn redacted(&self) -> String {
        match self {
            Self::Memory => "memory".to_owned(),
            Self::Redis(url) => redact_url(url),
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `scheme://user:password@host…` → `scheme://***@host…`, and a `password=` query
/// parameter (libpq's form) → `password=***`.
pub(crate) fn redact_url(url: &str) -> String {
    let url = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    let Some((head, query)) = url.split_once('?') else {
        return url;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_owned(),
        })
        .collect();
    format!("{head}?{}", query.join("&"))
}

/// `limits.on_store_error`: what a check does when the shared store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Serve the request unlimited (availability first).
    Allow,
    /// Refuse it with 503 (the limit first).
    Deny,
}

impl OnStoreError {
    /// The config's name (`allow`, `deny`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// A size: an integer (bytes) or `"512MiB"`, `"64MB"`, `"1GiB"`, `"900KiB"`, `"10kB"`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. \"512MiB\" or 1048576)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "kib" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" => 1 << 30,
        u => {
            return Err(format!(
                "unknown size unit `{u}` in `{s}` (use B, kB, KiB, MB, MiB, GB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Decodes 64 hex digits.
fn decode_sha256(s: &str) -> Option<KeyHash> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Validator<'_> {
    /// The `[server]` admission keys.
    pub(super) fn admission(
        &self,
        max_in_flight: Option<u64>,
        max_in_flight_bytes: Option<&toml::Value>,
    ) -> Result<(usize, u64), ConfigError> {
        let line = |k| self.lines.key(&["server", k]);
        let n = match max_in_flight {
            Some(0) => {
                return Err(ConfigError::new(
                    "`server.max_in_flight` must be at least 1",
                    line("max_in_flight"),
                ))
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => DEFAULT_MAX_IN_FLIGHT,
        };
        let bytes = match max_in_flight_bytes {
            None => DEFAULT_MAX_IN_FLIGHT_BYTES,
            Some(toml::Value::Integer(i)) if *i > 0 => *i as u64,
            Some(toml::Value::String(s)) => {
                let s = self.expand("server.max_in_flight_bytes", s)?;
                parse_size(&s).map_err(|e| {
                    ConfigError::new(
                        format!("`server.max_in_flight_bytes`: {e}"),
                        line("max_in_flight_bytes"),
                    )
                })?
            }
            Some(_) => 0,
        };
        if bytes == 0 {
            return Err(ConfigError::new(
                "`server.max_in_flight_bytes` must be a size above 0 (e.g. \"512MiB\")",
                line("max_in_flight_bytes"),
            ));
        }
        Ok((n, bytes))
    }

    pub(super) fn auth(&self, raw: Option<RawAuth>) -> Result<AuthConfig, ConfigError> {
        let Some(a) = raw else {
            return Ok(AuthConfig::default());
        };
        let auth_line = |k| self.lines.key(&["auth", k]);
        let admin_key = match (a.admin_key, a.admin_key_sha256) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "set `auth.admin_key` or `auth.admin_key_sha256`, not both",
                    auth_line("admin_key_sha256"),
                ))
            }
            (Some(k), None) => {
                let k = self.expand("auth.admin_key", &k)?;
                (!k.is_empty()).then(|| sha256(k.as_bytes()))
            }
            (None, Some(h)) => {
                let h = self.expand("auth.admin_key_sha256", &h)?;
                Some(decode_sha256(&h).ok_or_else(|| {
                    ConfigError::new(
                        "`auth.admin_key_sha256` must be 64 hex digits (`printf %s \"$KEY\" | sha256sum`)",
                        auth_line("admin_key_sha256"),
                    )
                })?)
            }
            (None, None) => None,
        };
        let mut keys: Vec<ClientKey> = Vec::with_capacity(a.keys.len());
        for (i, k) in a.keys.into_iter().enumerate() {
            let line = self.lines.key(&["auth", "keys", &i.to_string()]);
            let key = self.client_key(k, line)?;
            if let Some(other) = keys.iter().find(|o| o.name == key.name) {
                return Err(ConfigError::new(
                    format!("two keys are named `{}` in [auth]", other.name),
                    line,
                ));
            }
            if let Some(other) = keys.iter().find(|o| o.hash == key.hash) {
                return Err(ConfigError::new(
                    format!(
                        "keys `{}` and `{}` have the same secret",
                        other.name, key.name
                    ),
                    line,
                ));
            }
            keys.push(key);
        }
        let mut auth = AuthConfig::with_keys(keys);
        auth.admin_key = admin_key;
        auth.allow_unauthenticated = a.allow_unauthenticated.unwrap_or(false);
        Ok(auth)
    }

    fn client_key(&self, k: RawKey, line: Option<usize>) -> Result<ClientKey, ConfigError> {
        let what = |f: &str| format!("auth.keys[{}].{f}", k.name);
        if k.name.is_empty() {
            return Err(ConfigError::new(
                "a key in [auth] has an empty `name`",
                line,
            ));
        }
        let budget = match (k.budget_usd, k.budget_period.as_deref()) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    format!("`{}` needs `{}`", what("budget_period"), what("budget_usd")),
                    line,
                ))
            }
            (Some(usd), period) => {
                if !(usd.is_finite() && usd > 0.0) {
                    return Err(ConfigError::new(
                        format!(
                            "`{}` must be a positive amount of USD, got {usd}",
                            what("budget_usd")
                        ),
                        line,
                    ));
                }
                let period = match period.unwrap_or("month") {
                    "day" => BudgetPeriod::Day,
                    "week" => BudgetPeriod::Week,
                    "month" => BudgetPeriod::Month,
                    p => {
                        return Err(ConfigError::new(
                            format!(
                                "`{}` must be \"day\", \"week\" or \"month\", got \"{p}\"",
                                what("budget_period")
                            ),
                            line,
                        ))
                    }
                };
                Some(Budget { usd, period })
            }
        };
        let hash = match (&k.key, &k.key_sha256) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    format!(
                        "set `{}` or `{}`, not both",
                        what("key"),
                        what("key_sha256")
                    ),
                    line,
                ))
            }
            (None, None) => {
                return Err(ConfigError::new(
                    format!("`{}` or `{}` is required", what("key"), what("key_sha256")),
                    line,
                ))
            }
            (Some(secret), None) => {
                let secret = self.expand(&what("key"), secret)?;
                if secret.is_empty() {
                    return Err(ConfigError::new(
                        format!("`{}` is empty", what("key")),
                        line,
                    ));
                }
                sha256(secret.as_bytes())
            }
            (None, Some(h)) => {
                let h = self.expand(&what("key_sha256"), h)?;
                decode_sha256(&h).ok_or_else(|| {
                    ConfigError::new(
                        format!(
                            "`{}` must be 64 hex digits (`printf %s \"$KEY\" | sha256sum`)",
                            what("key_sha256")
                        ),
                        line,
                    )
                })?
            }
        };
        for (field, v) in [
            ("rpm", k.rpm),
            ("tpm", k.tpm),
            ("max_concurrent", k.max_concurrent),
        ] {
            if v == Some(0) {
                return Err(ConfigError::new(
                    format!(
                        "`{}` must be at least 1 (leave it out for no limit)",
                        what(field)
                    ),
                    line,
                ));
            }
        }
        Ok(ClientKey {
            budget,
            buckets: key_buckets(&k.name),
            name: k.name,
            hash,
            models: k.models.unwrap_or_default(),
            limits: KeyLimits {
                rpm: k.rpm,
                tpm: k.tpm,
                max_concurrent: k.max_concurrent,
            },
        })
    }

    pub(super) fn limits(&self, raw: RawLimits) -> Result<LimitsConfig, ConfigError> {
        let line = |k| self.lines.key(&["limits", k]);
        let mut out = LimitsConfig::default();
        if let Some(s) = raw.store {
            let s = self.expand("limits.store", &s)?;
            out.store = if s == "memory" {
                StoreConfig::Memory
            } else if s.starts_with("redis://")
                || s.starts_with("rediss://")
                || s.starts_with("redis+unix://")
            {
                StoreConfig::Redis(s)
            } else {
                return Err(ConfigError::new(
                    format!(
                        "`limits.store` must be \"memory\" or a redis:// URL, got `{}`",
                        redact_url(&s)
                    ),
                    line("store"),
                ));
            };
        }
        if let Some(o) = raw.on_store_error {
            out.on_store_error = match o.as_str() {
                "allow" => OnStoreError::Allow,
                "deny" => OnStoreError::Deny,
                _ => {
                    return Err(ConfigError::new(
                        format!(
                            "`limits.on_store_error` must be \"allow\" or \"deny\", got \"{o}\""
                        ),
                        line("on_store_error"),
                    ))
                }
            };
        }
        if let Some(t) = raw.timeout {
            let d = self.duration("limits.timeout", &t, line("timeout"))?;
            if d.is_zero() || d > Duration::from_secs(10) {
                return Err(ConfigError::new(
                    "`limits.timeout` must be longer than 0 and at most 10s",
                    line("timeout"),
                ));
            }
            out.timeout = d;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn globs() {
        for (p, s, want) in [
            ("fast", "fast", true),
            ("fast", "faster", false),
            ("anthropic/*", "anthropic/claude-3", true),
            ("anthropic/*", "openai/gpt-4o", false),
            ("*", "anything/at/all", true),
            ("*-mini", "gpt-4o-mini", true),
            ("gpt-*-mini", "gpt-4o-mini", true),
            ("gpt-*-mini", "gpt-4o", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
        ] {
            assert_eq!(glob_match(p, s), want, "{p} ~ {s}");
        }
    }

    #[test]
    fn budget_periods() {
        let t = 1_796_140_800_000; // 2026-12-01T16:00Z, a Tuesday
        let midnight = 1_796_083_200_000;
        assert_eq!(
            BudgetPeriod::Day.bounds(t),
            (midnight, midnight + 86_400_000)
        );
        assert_eq!(BudgetPeriod::Week.bounds(t).0, midnight - 86_400_000);
        assert_eq!(
            BudgetPeriod::Week.bounds(t).1 - BudgetPeriod::Week.bounds(t).0,
            7 * 86_400_000
        );
        // December 2026 has 31 days.
        assert_eq!(
            BudgetPeriod::Month.bounds(t),
            (midnight, midnight + 31 * 86_400_000)
        );
        assert_eq!(
            BudgetPeriod::Month.bounds(midnight - 1).0,
            midnight - 30 * 86_400_000
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("64MB").unwrap(), 64_000_000);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn loopback() {
        for (l, want) in [
            ("127.0.0.1:4000", true),
            ("[::1]:4000", true),
            ("localhost:4000", true),
            ("0.0.0.0:4000", false),
            ("[::]:4000", false),
            ("10.0.0.5:4000", false),
            ("example.com:4000", false),
        ] {
            assert_eq!(is_loopback(l), want, "{l}");
        }
    }

    #[test]
    fn lookup_is_by_digest() {
        let auth = AuthConfig::with_keys(vec![
            ClientKey::new("a", "sk-a"),
            ClientKey::new("b", "sk-b"),
        ]);
        assert_eq!(auth.lookup("sk-b").unwrap().name, "b");
        assert!(auth.lookup("sk-c").is_none());
        assert!(auth.lookup("").is_none());
        let dbg = format!("{auth:?}");
        assert!(!dbg.contains("sk-"), "{dbg}");
    }

    #[test]
    fn redis_urls_print_without_their_password() {
        let s = StoreConfig::Redis("redis://user:hunter2@10.0.0.1:6379/0".into());
        assert_eq!(s.redacted(), "redis://***@10.0.0.1:6379/0");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
