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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub shutdown_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub admin_key: Option<String>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    pub name: String,
    pub key: String,
    pub models: Option<Vec<String>>,
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
    pub drop_unsupported: Option<bool>,
    pub models: Option<Vec<String>>,
    #[serde(flatten)]
    pub options: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouting {
    pub default_provider: Option<String>,
    pub retries: Option<u32>,
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: String,
    pub strategy: Option<String>,
    pub targets: Vec<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
    pub capture_content: Option<bool>,
}
