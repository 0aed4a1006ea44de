//! `[telemetry]`: where traces go, how they are sampled, how request lines are written.

use super::raw;
use super::{ConfigError, Validator};

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

impl Validator<'_> {
    pub(super) fn telemetry(&self, t: raw::RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
        let line = |k| self.lines.key(&["telemetry", k]);
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
}
