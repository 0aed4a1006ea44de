//! Telemetry: OTLP traces, Prometheus metrics and one log line per request.
//!
//! - [`RequestRecord`] follows one request from arrival to its last byte; when it
//!   ends it writes the log line, moves the request metrics and, when the trace is
//!   sampled, emits the server span.
//! - The engine's observer seam carries the rest: [`trace::AttemptSpans`] emits one
//!   client span per attempt (children of the server span, so retries, fallbacks and
//!   hedges are siblings) and [`metrics::Metrics`] counts attempts and hedges.
//! - [`export`] batches spans to the collector off the request path.
//!
//! `[telemetry]` is read at start; the standard `OTEL_*` variables fill what it
//! leaves unset.

pub mod export;
mod logfmt;
pub mod metrics;
pub mod trace;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;
use modelway_core::chat::{ChatChunk, ChatRequest, Completion, FinishReason, TokenCounts};
use modelway_core::config::{LogFormat, OtlpProtocol, TelemetryConfig};
use modelway_core::embed::{EmbedRequest, Embeddings};
use modelway_core::engine::{has_content, Observer, RequestParams};
use modelway_core::trace::{new_span_id, new_trace_id, RemoteParent, SpanContext};
use modelway_core::{GatewayError, ProviderConfig, Served};
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value as Any, AnyValue, KeyValue as ProtoKeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use self::export::{BatchSettings, SpanSink};
use self::metrics::Metrics;
use self::trace::{Sampler, SpanWriter};

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// The process's telemetry: metrics always, spans when an OTLP endpoint is set.
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    spans: Option<SpanSink>,
    sampler: Sampler,
    capture_content: bool,
    /// Where each served request's usage record goes (set at start, swapped when a
    /// reload changes `[usage] ledger`).
    ledger: arc_swap::ArcSwapOption<crate::ledger::Ledger>,
}

impl Telemetry {
    /// Sends every served request's usage record to `ledger` from now on; the ledger
    /// it replaces, if any.
    pub fn set_ledger(
        &self,
        ledger: Arc<crate::ledger::Ledger>,
    ) -> Option<Arc<crate::ledger::Ledger>> {
        self.ledger.swap(Some(ledger))
    }

    /// The usage ledger, once set.
    pub fn ledger(&self) -> Option<Arc<crate::ledger::Ledger>> {
        self.ledger.load_full()
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("tracing", &self.spans.is_some())
            .finish_non_exhaustive()
    }
}

/// Where and how spans are exported, resolved from `[telemetry]` and `OTEL_*`. Its
/// `Debug` shows header names only: their values are often collector credentials.
#[derive(Clone, PartialEq)]
pub struct ExportTarget {
    /// The URL exported to: a gRPC endpoint, or the full `…/v1/traces` URL.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// `OTEL_EXPORTER_OTLP_HEADERS`, then `…_TRACES_HEADERS` (which win per key).
    pub headers: Vec<(String, String)>,
    /// `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT`, in ms; 10 s by default.
    pub timeout: Duration,
    /// For the startup line: scheme, host and port only.
    pub shown: String,
}

impl std::fmt::Debug for ExportTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportTarget")
            .field("endpoint", &self.shown)
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ExportTarget {
    /// `None` when tracing is off: no endpoint in the config or the environment, or
    /// `OTEL_SDK_DISABLED=true` / `OTEL_TRACES_EXPORTER=none`.
    pub fn resolve(cfg: &TelemetryConfig, env: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none")
        {
            return None;
        }
        // A per-signal URL is used as it is; a base URL gets `/v1/traces` for http.
        let (base, full) = match (
            &cfg.otlp_endpoint,
            set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            set("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(c), _, _) => (c.clone(), false),
            (None, Some(t), _) => (t, true),
            (None, None, Some(g)) => (g, false),
            (None, None, None) => return None,
        };
        let base = base.trim().to_owned();
        let uri = base.parse::<http::Uri>().ok();
        let port = uri.as_ref().and_then(http::Uri::port_u16);
        let protocol = cfg
            .otlp_protocol
            .or_else(|| {
                set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
                    .and_then(|p| OtlpProtocol::parse(&p))
            })
            // The spec's default is http/protobuf; 4317 is gRPC's own port.
            .unwrap_or(if port == Some(4317) {
                OtlpProtocol::Grpc
            } else {
                OtlpProtocol::HttpProtobuf
            });
        let endpoint = match protocol {
            OtlpProtocol::HttpProtobuf if !full => {
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
            _ => base.clone(),
        };
        let shown = uri.as_ref().map_or_else(
            || "(unparsable endpoint)".to_owned(),
            |u| {
                format!(
                    "{}://{}{}",
                    u.scheme_str().unwrap_or("http"),
                    u.host().unwrap_or(""),
                    u.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
                )
            },
        );
        let mut headers: Vec<(String, String)> = Vec::new();
        for var in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            for (k, v) in parse_headers(&set(var).unwrap_or_default()) {
                headers.retain(|(h, _)| !h.eq_ignore_ascii_case(&k));
                headers.push((k, v));
            }
        }
        let ms = |k: &str| set(k).and_then(|v| v.trim().parse::<u64>().ok());
        let timeout = ms("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| ms("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .filter(|&n| n > 0)
            .map_or(Duration::from_secs(10), Duration::from_millis);
        Some(Self {
            endpoint,
            protocol,
            headers,
            timeout,
            shown,
        })
    }

    /// The transport to this target.
    fn transport(&self) -> anyhow::Result<export::Transport> {
        Ok(match self.protocol {
            OtlpProtocol::HttpProtobuf => export::Transport::Http {
                client: modelway_core::HttpClient::new(),
                uri: self.endpoint.parse().map_err(|e| {
                    anyhow::anyhow!(
                        "telemetry: the OTLP endpoint {} is not a URL: {e}",
                        self.shown
                    )
                })?,
                headers: self
                    .headers
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((
                            http::HeaderName::try_from(k.as_str()).ok()?,
                            http::HeaderValue::try_from(v.as_str()).ok()?,
                        ))
                    })
                    .collect(),
                timeout: self.timeout,
            },
            OtlpProtocol::Grpc => {
                let mut ep = tonic::transport::Endpoint::from_shared(self.endpoint.clone())
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "telemetry: the OTLP endpoint {} is not a URL: {e}",
                            self.shown
                        )
                    })?
                    .connect_timeout(self.timeout.min(Duration::from_secs(5)))
                    .tcp_nodelay(true);
                if self.endpoint.starts_with("https://") {
                    ep = ep
                        .tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots())
                        .map_err(|e| {
                            anyhow::anyhow!("telemetry: TLS for the OTLP endpoint: {e}")
                        })?;
                }
                let mut headers = tonic::metadata::MetadataMap::new();
                for (k, v) in &self.headers {
                    if let (Ok(k), Ok(v)) = (
                        tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()),
                        tonic::metadata::MetadataValue::try_from(v.as_str()),
                    ) {
                        headers.insert(k, v);
                    }
                }
                export::Transport::Grpc {
                    channel: ep.connect_lazy(),
                    headers,
                    timeout: self.timeout,
                }
            }
        })
    }
}

/// `key=value,key2=value2`, values percent-decoded, as the spec writes
/// `OTEL_EXPORTER_OTLP_HEADERS`.
fn parse_headers(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            let v = percent_encoding::percent_decode_str(v.trim())
                .decode_utf8()
                .ok()?
                .into_owned();
            (!k.is_empty()).then(|| (k.to_owned(), v))
        })
        .collect()
}

/// The OTLP resource: `service.name` from `[telemetry] service_name`, else the
/// `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` the SDK's resource builder reads,
/// else `modelway`; plus the SDK's own attributes and `service.version`.
fn resource(cfg: &TelemetryConfig, env: &dyn Fn(&str) -> Option<String>) -> Resource {
    use opentelemetry::Value;
    let mut b = opentelemetry_sdk::Resource::builder();
    let named_by_env = env("OTEL_SERVICE_NAME").is_some_and(|v| !v.is_empty())
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|v| v.contains("service.name="));
    if let Some(name) = &cfg.service_name {
        b = b.with_service_name(name.clone());
    } else if !named_by_env {
        b = b.with_service_name("modelway");
    }
    let r = b
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let attributes = r
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::Bool(b) => Any::BoolValue(*b),
                Value::I64(i) => Any::IntValue(*i),
                Value::F64(f) => Any::DoubleValue(*f),
                other => Any::StringValue(other.as_str().into_owned()),
            };
            ProtoKeyValue {
                key: k.as_str().to_owned(),
                value: Some(AnyValue { value: Some(value) }),
                ..Default::default()
            }
        })
        .collect();
    Resource {
        attributes,
        ..Default::default()
    }
}

/// The log subscriber: `text` or `json` lines on stderr, filtered by `RUST_LOG`
/// (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_timer(logfmt::PlainTime);
    let _ = match format {
        LogFormat::Json => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(logfmt::PlainJson::new())
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(logfmt::PlainFields::new())
            .try_init(),
    };
}

impl Telemetry {
    /// Metrics only: no spans.
    pub fn disabled() -> Arc<Self> {
        Arc::new(Self {
            metrics: Arc::new(Metrics::new()),
            spans: None,
            sampler: Sampler::AlwaysOff,
            capture_content: false,
            ledger: arc_swap::ArcSwapOption::empty(),
        })
    }

    /// Starts the span exporter when an endpoint is configured. Must run inside the
    /// Tokio runtime (the export task is spawned on it).
    pub fn start(cfg: &TelemetryConfig) -> anyhow::Result<Arc<Self>> {
        let env = |k: &str| std::env::var(k).ok();
        let metrics = Arc::new(Metrics::new());
        let Some(target) = ExportTarget::resolve(cfg, &env) else {
            return Ok(Arc::new(Self {
                metrics,
                spans: None,
                sampler: Sampler::AlwaysOff,
                capture_content: false,
                ledger: arc_swap::ArcSwapOption::empty(),
            }));
        };
        if env("OTEL_EXPORTER_OTLP_COMPRESSION")
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"))
            .is_some_and(|c| !c.trim().is_empty() && c.trim() != "none")
        {
            tracing::warn!(
                "OTEL_EXPORTER_OTLP_COMPRESSION is not supported: spans are sent uncompressed"
            );
        }
        let transport = target.transport()?;
        let origin = export::Origin {
            resource: resource(cfg, &env),
            scope: trace::scope(),
        };
        let settings = BatchSettings::from_env(&env);
        let sampler = Sampler::from(cfg.sample_ratio, &env);
        tracing::info!(
            endpoint = %target.shown,
            protocol = target.protocol.as_str(),
            ?sampler,
            "exporting traces over OTLP"
        );
        let spans = export::spawn(transport, origin, settings, metrics.clone());
        Ok(Arc::new(Self {
            metrics,
            spans: Some(spans),
            sampler,
            capture_content: cfg.capture_content,
            ledger: arc_swap::ArcSwapOption::empty(),
        }))
    }

    /// The observers the engine reports attempts to: attempt spans (when tracing)
    /// and the attempt metrics.
    pub fn observers(&self) -> Vec<Arc<dyn Observer>> {
        let mut v: Vec<Arc<dyn Observer>> = vec![self.metrics.clone()];
        if let Some(sink) = &self.spans {
            v.push(Arc::new(trace::AttemptSpans::new(sink.clone())));
        }
        v
    }

    /// Whether spans are exported.
    pub fn tracing(&self) -> bool {
        self.spans.is_some()
    }

    /// Exports what is queued (at shutdown), waiting at most `within`.
    pub async fn flush(&self, within: Duration) {
        if let Some(s) = &self.spans {
            s.flush(within).await;
        }
    }

    /// Starts the record of one request. With tracing on, the request gets a server
    /// span: a child of the client's `traceparent` when it sent a valid one.
    pub fn request(
        self: &Arc<Self>,
        request_id: &str,
        headers: &HeaderMap,
        operation: &'static str,
        http_route: &'static str,
    ) -> RequestRecord {
        self.metrics.request_started();
        let trace = self.spans.as_ref().map(|_| {
            let parent = headers
                .get(TRACEPARENT)
                .and_then(|v| RemoteParent::parse(v.as_bytes()));
            let trace_id = parent.map_or_else(new_trace_id, |p| p.trace_id);
            SpanContext {
                trace_id,
                span_id: new_span_id(),
                parent_id: parent.map_or(0, |p| p.span_id),
                parent_remote: parent.is_some(),
                sampled: self.sampler.sample(trace_id, parent.as_ref()),
            }
        });
        let sampled = trace.is_some_and(|t| t.sampled);
        RequestRecord {
            tel: self.clone(),
            started: Instant::now(),
            start_wall: SystemTime::now(),
            request_id: request_id.to_owned(),
            operation,
            http_route,
            trace,
            host: sampled
                .then(|| {
                    headers
                        .get(http::header::HOST)?
                        .to_str()
                        .ok()
                        .map(str::to_owned)
                })
                .flatten(),
            caller: None,
            route: None,
            requested_model: String::new(),
            params: RequestParams::default(),
            stream: false,
            provider: None,
            provider_kind: None,
            model: None,
            attempts: 0,
            hedged: false,
            status: 200,
            error: None,
            tokens: None,
            finish: Vec::new(),
            response_id: None,
            response_model: None,
            first_token: None,
            input: None,
            output: None,
            ticket: None,
            price: None,
            done: false,
        }
    }
}

/// The provider's host and port, for `server.address` / `server.port`.
pub fn upstream_address(p: &ProviderConfig) -> Option<(&str, u16)> {
    if let Some(base) = &p.base_url {
        // Read from the URL as written (config validation made it `http://` or
        // `https://`), without parsing it into a `Uri` per attempt: the authority,
        // past any user info; a bracketed IPv6 host keeps its brackets.
        let (scheme, rest) = base.split_once("://")?;
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => match &authority[i + 1..] {
                "" => (&authority[..i], None),
                port => (&authority[..i], Some(port.parse::<u16>().ok()?)),
            },
            _ => (authority, None),
        };
        if host.is_empty() {
            return None;
        }
        let default = if scheme.eq_ignore_ascii_case("http") {
            80
        } else {
            443
        };
        return Some((host, port.unwrap_or(default)));
    }
    let host = match p.kind.as_str() {
        "openai" => "api.openai.com",
        "anthropic" => "api.anthropic.com",
        "gemini" => "generativelanguage.googleapis.com",
        "openrouter" => "openrouter.ai",
        "groq" => "api.groq.com",
        "together" => "api.together.xyz",
        "mistral" => "api.mistral.ai",
        "deepseek" => "api.deepseek.com",
        "fireworks" => "api.fireworks.ai",
        "xai" => "api.x.ai",
        _ => return None,
    };
    Some((host, 443))
}

/// What a finished request reports to metrics.
pub(crate) struct Finished<'a> {
    /// `chat` or `embeddings`.
    pub operation: &'static str,
    pub route: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub status: u16,
    pub duration: Duration,
    pub first_token: Option<Duration>,
    pub tokens: Option<TokenCounts>,
}

/// One request, from arrival to its last byte. Ends once: by [`Self::finish`], or
/// when dropped (the client went away: status 499, as nginx logs it).
pub struct RequestRecord {
    tel: Arc<Telemetry>,
    started: Instant,
    start_wall: SystemTime,
    request_id: String,
    operation: &'static str,
    http_route: &'static str,
    trace: Option<SpanContext>,
    host: Option<String>,
    caller: Option<String>,
    route: Option<String>,
    requested_model: String,
    params: RequestParams,
    stream: bool,
    /// The configured provider's name.
    provider: Option<String>,
    /// Its kind, looked up only for a sampled span (`gen_ai.provider.name`).
    provider_kind: Option<String>,
    model: Option<String>,
    attempts: u32,
    hedged: bool,
    status: u16,
    /// The error's type (the client-facing `type`) and message.
    error: Option<(String, String)>,
    tokens: Option<TokenCounts>,
    finish: Vec<FinishReason>,
    response_id: Option<String>,
    response_model: Option<String>,
    first_token: Option<Duration>,
    input: Option<String>,
    output: Option<String>,
    /// What the call holds until its end (limits), settled with its tokens.
    ticket: Option<crate::limits::Ticket>,
    /// The serving model's price, looked up when it was served.
    price: Option<modelway_core::usage::Price>,
    done: bool,
}

impl RequestRecord {
    /// Keeps `ticket` until the request ends, then settles it with the call's usage.
    pub fn hold(&mut self, ticket: crate::limits::Ticket) {
        self.ticket = Some(ticket);
    }

    /// The server span, for the call's metadata (its attempts are its children).
    pub fn trace(&self) -> Option<SpanContext> {
        self.trace
    }

    fn sampled(&self) -> bool {
        self.trace.is_some_and(|t| t.sampled)
    }

    fn capturing(&self) -> bool {
        self.tel.capture_content && self.sampled()
    }

    /// The decoded request: who asked for which model with which parameters.
    pub fn call(&mut self, req: &ChatRequest, caller: Option<&str>, route: Option<&str>) {
        self.requested_model.clone_from(&req.model);
        self.params = RequestParams::of(req);
        self.stream = req.is_stream();
        self.caller = caller.map(str::to_owned);
        self.route = route.map(str::to_owned);
        if self.capturing() {
            self.input = serde_json::to_string(&req.messages).ok();
        }
    }

    /// The decoded embeddings request: who asked for which model. Its inputs are not
    /// captured, even with `capture_content` (the GenAI conventions define no
    /// attribute for them).
    pub fn embedding_call(
        &mut self,
        req: &EmbedRequest,
        caller: Option<&str>,
        route: Option<&str>,
    ) {
        self.requested_model.clone_from(&req.model);
        self.caller = caller.map(str::to_owned);
        self.route = route.map(str::to_owned);
    }

    /// An embeddings answer: its usage (input tokens) and model.
    pub fn embeddings(&mut self, e: &Embeddings) {
        self.tokens = e.tokens();
        if self.sampled() {
            self.response_model = e.model().map(str::to_owned);
        }
    }

    /// Who served the answer (`snap`: the snapshot that served it).
    pub fn served<T>(&mut self, s: &Served<T>, snap: &modelway_core::Snapshot) {
        self.served_by(s, snap);
        self.provider = Some(s.provider.clone());
        self.model = Some(s.model.clone());
    }

    /// [`Self::served`] for a caller done with the head: its names are moved into the
    /// record, not copied (two allocations fewer per JSON answer).
    pub fn served_head(&mut self, s: Served<()>, snap: &modelway_core::Snapshot) {
        self.served_by(&s, snap);
        self.provider = Some(s.provider);
        self.model = Some(s.model);
    }

    fn served_by<T>(&mut self, s: &Served<T>, snap: &modelway_core::Snapshot) {
        let prices = &snap.config.usage().prices;
        if self.sampled() || !prices.is_empty() {
            let kind = snap
                .router
                .providers()
                .find(|p| p.name == s.provider)
                .map(|p| p.config.kind.as_str());
            if let Some(kind) = kind {
                self.price = prices.lookup(&s.provider, kind, &s.model).copied();
                if self.sampled() {
                    self.provider_kind = Some(kind.to_owned());
                }
            }
        }
        self.attempts = s.attempts;
        self.hedged = s.hedged;
    }

    /// A JSON answer.
    pub fn completion(&mut self, c: &Completion) {
        let facts = c.facts();
        self.tokens = facts.tokens;
        if self.sampled() {
            self.response_id = facts.id.map(str::to_owned);
            self.response_model = facts.model.map(str::to_owned);
            self.finish = c.finish_reasons();
        }
        if self.capturing() {
            if let Ok(r) = c.clone().into_response() {
                let out: Vec<serde_json::Value> = r
                    .choices
                    .iter()
                    .map(|ch| serde_json::json!({"role": "assistant", "content": ch.message.content, "tool_calls": ch.message.tool_calls, "finish_reason": ch.finish_reason}))
                    .collect();
                self.output = serde_json::to_string(&out).ok();
            }
        }
    }

    /// A chunk of the served stream, as it goes to the client.
    pub fn chunk(&mut self, c: &ChatChunk) {
        if self.first_token.is_none() && has_content(c) {
            self.first_token = Some(self.started.elapsed());
        }
        if let Some(u) = &c.usage {
            self.tokens = Some(TokenCounts::from(&**u));
        }
        if !self.sampled() {
            return;
        }
        if self.response_id.is_none() && !c.id.is_empty() {
            self.response_id = Some(c.id.to_string());
            self.response_model = Some(c.model.to_string());
        }
        for ch in &c.choices {
            if let Some(f) = &ch.finish_reason {
                self.finish.push(f.clone());
            }
        }
        if self.capturing() {
            if let Some(t) = c.choices.first().and_then(|ch| ch.delta.content.as_deref()) {
                self.output.get_or_insert_with(String::new).push_str(t);
            }
        }
    }

    /// The request failed with `e` (before or, for a stream, after its head).
    pub fn failed(&mut self, e: &GatewayError) {
        if !self.stream || self.first_token.is_none() && self.provider.is_none() {
            self.status = e.status;
        }
        if self.attempts == 0 {
            self.attempts = e.attempts;
        }
        self.error = Some((e.kind.to_string(), e.message.clone()));
    }

    /// Sets the response status (an error response's, when not from [`Self::failed`]).
    pub fn status(&mut self, status: u16) {
        self.status = status;
    }

    /// What the call cost so far, USD: the upstream's own figure when it reported one
    /// (OpenRouter's `usage.cost`), else the price table's; `None` without usage or a
    /// price.
    pub fn cost(&self) -> Option<f64> {
        let t = self.tokens?;
        t.reported_cost
            .or_else(|| Some(self.price?.cost(&t.tokens())))
    }

    /// Ends the request: log line, metrics, server span.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if let Some(t) = self.ticket.take() {
            t.settle(self.tokens, self.provider.is_some());
        }
        let duration = self.started.elapsed();
        let provider = self.provider.as_deref().unwrap_or("");
        let model = self
            .model
            .as_deref()
            .unwrap_or(self.requested_model.as_str());
        let route = self.route.as_deref().unwrap_or("");
        self.tel.metrics.request_ended(&Finished {
            operation: self.operation,
            route,
            provider,
            model,
            status: self.status,
            duration,
            first_token: self.first_token,
            tokens: self.tokens,
        });
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        tracing::info!(
            target: "modelway::request",
            request_id = %self.request_id,
            operation = self.operation,
            trace_id = self.trace.map(|t| tracing::field::display(format!("{:032x}", t.trace_id))),
            key = self.caller.as_deref(),
            route = self.route.as_deref(),
            model = %self.requested_model,
            provider = self.provider.as_deref(),
            served_model = self.model.as_deref(),
            status = self.status,
            attempts = self.attempts,
            hedged = self.hedged,
            stream = self.stream,
            duration_ms = ms(duration),
            ttft_ms = self.first_token.map(ms),
            input_tokens = self.tokens.map(|t| t.input),
            output_tokens = self.tokens.map(|t| t.output),
            error = self.error.as_ref().map(|e| e.0.as_str()),
            "request"
        );
        if self.sampled() {
            self.server_span(duration);
        }
        // Last: the record takes this one's strings.
        self.write_usage(duration);
    }

    /// The usage record of a request a provider served (even one whose client left).
    /// The record's last use: its strings move into the usage record.
    fn write_usage(&mut self, duration: Duration) {
        let ledger = self.tel.ledger.load();
        let Some(ledger) = ledger.as_ref() else {
            return;
        };
        if self.provider.is_none() {
            return;
        }
        let cost_usd = self.cost();
        let t = self.tokens.unwrap_or_default();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        ledger.record(crate::ledger::UsageRecord {
            request_id: std::mem::take(&mut self.request_id),
            ts_ms: self
                .start_wall
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            key: self.caller.take(),
            route: self.route.take(),
            provider: self.provider.take().unwrap_or_default(),
            requested_model: std::mem::take(&mut self.requested_model),
            served_model: self.model.take().unwrap_or_default(),
            input_tokens: t.input,
            output_tokens: t.output,
            cached_input_tokens: t.cached_input.unwrap_or(0),
            cache_write_tokens: t.cache_write.unwrap_or(0),
            reasoning_tokens: t.reasoning.unwrap_or(0),
            cost_usd,
            duration_ms: ms(duration),
            ttft_ms: self.first_token.map(ms),
            attempts: self.attempts,
            status: self.status,
            stream: self.stream,
        });
    }

    fn server_span(&mut self, duration: Duration) {
        let (Some(ctx), Some(sink)) = (self.trace, self.tel.spans.as_ref()) else {
            return;
        };
        let end = self.start_wall + duration;
        let mut w = SpanWriter::new(
            &ctx,
            [self.operation, &self.requested_model],
            SpanKind::Server,
            self.start_wall,
            end,
        );
        w.str("http.request.method", "POST");
        w.str("http.route", self.http_route);
        w.str("url.path", self.http_route);
        w.str("url.scheme", "http");
        w.int("http.response.status_code", i64::from(self.status));
        if let Some(host) = &self.host {
            match host.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() => {
                    w.str("server.address", h);
                    w.int("server.port", p.parse::<i64>().unwrap_or_default());
                }
                _ => w.str("server.address", host),
            }
        }
        w.str("gen_ai.operation.name", self.operation);
        w.str("gen_ai.request.model", &self.requested_model);
        if let Some(kind) = &self.provider_kind {
            w.str("gen_ai.provider.name", trace::provider_name(kind));
        }
        if let Some(name) = &self.provider {
            w.str("modelway.provider", name);
        }
        if let Some(n) = self.params.max_tokens {
            w.int("gen_ai.request.max_tokens", n as i64);
        }
        if let Some(t) = self.params.temperature {
            w.double("gen_ai.request.temperature", t);
        }
        if let Some(p) = self.params.top_p {
            w.double("gen_ai.request.top_p", p);
        }
        if let Some(id) = &self.response_id {
            w.str("gen_ai.response.id", id);
        }
        if let Some(m) = &self.response_model {
            w.str("gen_ai.response.model", m);
        }
        trace::usage_attributes(&mut w, self.tokens);
        trace::finish_attribute(&mut w, &self.finish);
        if let Some(t) = self.first_token {
            w.double("gen_ai.server.time_to_first_token", t.as_secs_f64());
        }
        if let Some(m) = &self.model {
            w.str("modelway.served_model", m);
        }
        if let Some(r) = &self.route {
            w.str("modelway.route", r);
        }
        w.int("modelway.attempts", i64::from(self.attempts));
        w.bool("modelway.hedge", self.hedged);
        w.bool("modelway.stream", self.stream);
        w.str("modelway.request_id", &self.request_id);
        if let Some(k) = &self.caller {
            w.str("modelway.key", k);
        }
        if let Some(i) = &self.input {
            w.str("gen_ai.input.messages", i);
        }
        if let Some(o) = &self.output {
            w.str("gen_ai.output.messages", o);
        }
        let mut error = None;
        if let Some((kind, msg)) = &self.error {
            w.str("error.type", kind);
            // A server span is in error for 5xx and for a stream that failed after
            // its head; a 4xx is the client's.
            if self.status >= 500 || self.status == 200 {
                error = Some(msg.as_str());
            }
        } else if self.status == 499 {
            w.str("error.type", "cancelled");
        }
        sink.send(w.finish(&ctx, error));
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if !self.done {
            // Not finished: the client went away mid-request (or mid-stream).
            if self.error.is_none() && (self.status < 400) {
                self.status = 499;
            }
            self.end();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_upstream_address_is_the_base_urls_host_as_spelt_and_its_port() {
        let at = |kind: &str, base: Option<&str>| {
            let mut p = ProviderConfig::new("p", kind);
            p.base_url = base.map(str::to_owned);
            upstream_address(&p).map(|(h, port)| (h.to_owned(), port))
        };
        let cases = [
            ("http://127.0.0.1:8080/v1", Some(("127.0.0.1", 8080))),
            (
                "https://Api.Example.com/v1/",
                Some(("Api.Example.com", 443)),
            ),
            ("http://example.com", Some(("example.com", 80))),
            (
                "http://user:pw@proxy.local:3128/x",
                Some(("proxy.local", 3128)),
            ),
            ("http://[::1]:9000/v1", Some(("[::1]", 9000))),
            ("https://[fe80::1]/", Some(("[fe80::1]", 443))),
            ("HTTP://Host:/v1", Some(("Host", 80))),
            ("http://[::1]/v1", Some(("[::1]", 80))),
            ("https://h.example?x=1", Some(("h.example", 443))),
            ("http://h:notaport/", None),
            ("not a url", None),
        ];
        for (base, want) in cases {
            let want = want.map(|(h, p)| (h.to_owned(), p));
            assert_eq!(at("openai-compatible", Some(base)), want, "{base}");
        }
        assert_eq!(
            at("anthropic", None),
            Some(("api.anthropic.com".to_owned(), 443))
        );
        assert_eq!(at("vllm", None), None, "no default host");
    }

    #[test]
    fn the_export_target_follows_config_then_the_standard_variables() {
        let none = TelemetryConfig::default();
        assert_eq!(
            ExportTarget::resolve(&none, &env(&[])),
            None,
            "off by default"
        );
        let t = ExportTarget::resolve(
            &none,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Bearer%20x,x-a=1",
                ),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "X-A=2"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ]),
        )
        .unwrap();
        assert_eq!(t.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(t.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(
            t.headers,
            [
                ("authorization".to_owned(), "Bearer x".to_owned()),
                ("X-A".to_owned(), "2".to_owned())
            ]
        );
        assert_eq!(t.timeout, Duration::from_millis(2500));
        // A per-signal URL is used as it is; port 4317 means gRPC.
        let t = ExportTarget::resolve(
            &none,
            &env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317")]),
        )
        .unwrap();
        assert_eq!(
            (t.protocol, t.endpoint.as_str()),
            (OtlpProtocol::Grpc, "http://c:4317")
        );
        // The config wins over the variables.
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://mine:9999".into()),
            otlp_protocol: Some(OtlpProtocol::HttpProtobuf),
            ..TelemetryConfig::default()
        };
        let t = ExportTarget::resolve(
            &cfg,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]),
        )
        .unwrap();
        assert_eq!(t.endpoint, "http://mine:9999/v1/traces");
        assert_eq!(t.shown, "http://mine:9999");
        assert_eq!(
            ExportTarget::resolve(&cfg, &env(&[("OTEL_SDK_DISABLED", "true")])),
            None
        );
    }
}
