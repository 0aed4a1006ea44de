//! The config file's exact shape, as serde reads it. Validated once into
//! [`super::Config`]; nothing downstream reads these types.

use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub providers: IndexMap<String, RawProvider>,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub usage: RawUsage,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUsage {
    pub ledger: Option<String>,
    /// A price file's path, or inline `[[usage.prices]]` tables.
    pub prices: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub shutdown_timeout: Option<String>,
    pub max_in_flight: Option<u64>,
    /// Bytes: an integer or a size such as `"512MiB"`.
    pub max_in_flight_bytes: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub admin_key: Option<String>,
    pub admin_key_sha256: Option<String>,
    pub allow_unauthenticated: Option<bool>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    pub name: String,
    pub key: Option<String>,
    pub key_sha256: Option<String>,
    pub models: Option<Vec<String>>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u64>,
    pub budget_usd: Option<f64>,
    pub budget_period: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub store: Option<String>,
    pub on_store_error: Option<String>,
    pub timeout: Option<String>,
}

/// A provider table. Kind-specific keys land in `options` and are checked against the
/// factory's `option_keys` when the provider is built.
#[derive(Debug, Deserialize)]
pub(crate) struct RawProvider {
    pub kind: String,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub first_token_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub drop_unsupported: Option<bool>,
    pub models: Option<Vec<String>>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub allow_client_key: Option<bool>,
    #[serde(flatten)]
    pub options: toml::Table,
}

/// Declares a config table that also takes every policy key (`retries`, `backoff`,
/// `max_retry_after` and the timeouts), so `[routing]`, a route and a target table
/// accept the same keys without `#[serde(flatten)]` (which would lose
/// `deny_unknown_fields`).
macro_rules! with_policy_keys {
    ($(#[$m:meta])* pub(crate) struct $name:ident { $($(#[$fm:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$m])*
        pub(crate) struct $name {
            $($(#[$fm])* pub $field: $ty,)*
            pub retries: Option<u32>,
            pub backoff: Option<RawBackoff>,
            pub max_retry_after: Option<String>,
            pub connect_timeout: Option<String>,
            pub timeout: Option<String>,
            pub first_token_timeout: Option<String>,
            pub idle_timeout: Option<String>,
            pub deadline: Option<String>,
            pub stream_keepalive: Option<String>,
        }

        impl $name {
            pub(crate) fn policy(&self) -> RawPolicy<'_> {
                RawPolicy {
                    retries: self.retries,
                    backoff: self.backoff.as_ref(),
                    durations: [
                        ("max_retry_after", self.max_retry_after.as_deref()),
                        ("connect_timeout", self.connect_timeout.as_deref()),
                        ("timeout", self.timeout.as_deref()),
                        ("first_token_timeout", self.first_token_timeout.as_deref()),
                        ("idle_timeout", self.idle_timeout.as_deref()),
                        ("deadline", self.deadline.as_deref()),
                        ("stream_keepalive", self.stream_keepalive.as_deref()),
                    ],
                }
            }
        }
    };
}

/// The policy keys of one table, borrowed, for the validator.
pub(crate) struct RawPolicy<'a> {
    pub retries: Option<u32>,
    pub backoff: Option<&'a RawBackoff>,
    /// (key, value) of every duration key, in a fixed order.
    pub durations: [(&'static str, Option<&'a str>); 7],
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackoff {
    pub base: Option<String>,
    pub max: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub failures: Option<u32>,
    pub cooldown: Option<String>,
    pub max_cooldown: Option<String>,
}

with_policy_keys! {
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawRouting {
        pub default_provider: Option<String>,
        pub health: Option<RawHealth>,
    }
}

with_policy_keys! {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawRoute {
        pub name: String,
        pub strategy: Option<String>,
        pub targets: Vec<RawTarget>,
        pub hedge_after: Option<String>,
        pub hedge_max: Option<u32>,
        pub hedge_budget: Option<f64>,
    }
}

/// A route target: `"provider/model"`, or a table with a weight, policy keys and
/// request parameter overrides.
#[derive(Debug)]
pub(crate) enum RawTarget {
    Slug(String),
    Table(Box<RawTargetTable>),
}

// By hand rather than `#[serde(untagged)]`, so a bad key in a target table is reported
// by name instead of as "did not match any variant".
impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawTarget;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"provider/model\" or a table { target = \"provider/model\", … }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawTarget, E> {
                Ok(RawTarget::Slug(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawTarget, A::Error> {
                RawTargetTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|t| RawTarget::Table(Box::new(t)))
            }
        }
        d.deserialize_any(V)
    }
}

with_policy_keys! {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawTargetTable {
        pub target: String,
        pub weight: Option<u32>,
        pub params: Option<toml::Table>,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: Option<String>,
    pub service_name: Option<String>,
    pub sample_ratio: Option<f64>,
    pub capture_content: Option<bool>,
    pub log_format: Option<String>,
}

/// The keys every `[providers.NAME]` table takes whatever its kind: the fields of
/// [`RawProvider`] (whose `#[serde(flatten)]` hides their names from serde). Listed
/// rather than derived from a flattened struct of their own: a flattened struct's
/// values lose their spans, and a mistyped `rpm` would then be reported on the
/// table's header line instead of its own (tried; the test below keeps the list true).
pub(crate) const PROVIDER_COMMON_KEYS: &[&str] = &[
    "kind",
    "base_url",
    "api_key",
    "headers",
    "timeout",
    "connect_timeout",
    "first_token_timeout",
    "idle_timeout",
    "drop_unsupported",
    "models",
    "rpm",
    "tpm",
    "allow_client_key",
];

/// Every table of the config file and the keys it takes, read from the types that
/// parse it (`providers` lists the keys common to every kind; a kind's own keys are
/// its factory's): what the config reference is checked against.
pub(crate) fn sections() -> Vec<(&'static str, &'static [&'static str])> {
    use super::field_names as f;
    vec![
        ("server", f::<RawServer>()),
        ("auth", f::<RawAuth>()),
        ("auth.keys", f::<RawKey>()),
        ("limits", f::<RawLimits>()),
        ("usage", f::<RawUsage>()),
        ("telemetry", f::<RawTelemetry>()),
        ("providers", PROVIDER_COMMON_KEYS),
        ("routing", f::<RawRouting>()),
        ("routing.backoff", f::<RawBackoff>()),
        ("routing.health", f::<RawHealth>()),
        ("routes", f::<RawRoute>()),
        ("routes.targets", f::<RawTargetTable>()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_common_keys_are_the_raw_providers_fields() {
        for key in PROVIDER_COMMON_KEYS.iter().filter(|k| **k != "kind") {
            // A field of its own refuses a value of the wrong type or takes it; a key
            // that fell through to the kind's options would be kept there.
            let table: toml::Table = format!("kind = \"x\"\n{key} = true").parse().unwrap();
            match RawProvider::deserialize(toml::Value::Table(table)) {
                Err(_) => {}
                Ok(p) => assert!(!p.options.contains_key(*key), "`{key}` is not a field"),
            }
        }
        let table: toml::Table = "kind = \"x\"\nnot_common = true".parse().unwrap();
        let p = RawProvider::deserialize(toml::Value::Table(table)).unwrap();
        assert!(p.options.contains_key("not_common"));
    }

    #[test]
    fn every_section_has_its_fields() {
        for (name, keys) in sections() {
            assert!(!keys.is_empty(), "{name}");
        }
        let routing = sections()
            .into_iter()
            .find(|(n, _)| *n == "routing")
            .unwrap()
            .1;
        assert!(routing.contains(&"default_provider") && routing.contains(&"stream_keepalive"));
    }
}
