//! Spans after the OpenTelemetry GenAI semantic conventions: one server span per
//! request (built by [`super::RequestRecord`]) and one client span per upstream
//! attempt, its children, built here from what the engine's observer hooks report.
//!
//! Spans are built finished — ids, times and attributes known — straight into the
//! OTLP protobuf types (`opentelemetry-proto`) and queued for export: no tracer
//! context, no lock, no span kept open across awaits, and no second copy of the span
//! in the SDK's own model (see BENCHMARKS.md for what that copy cost).

use std::time::{Duration, SystemTime};

use modelway_core::chat::{FinishReason, TokenCounts};
use modelway_core::engine::{AttemptEnd, AttemptInfo, AttemptResult, Observer, StreamEnd};
use modelway_core::error::ProviderError;
use modelway_core::trace::{RemoteParent, SpanContext};
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value as Any, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span, Status};

use super::export::SpanSink;

/// Which new traces are recorded. A client's own sampled flag is followed by the
/// parent-based samplers (the default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
    ParentBased(Root),
}

/// The root sampler of a parent-based one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

impl Sampler {
    /// `sample_ratio` when configured (parent-based), else `OTEL_TRACES_SAMPLER` /
    /// `OTEL_TRACES_SAMPLER_ARG`, else parent-based always-on.
    pub fn from(ratio: Option<f64>, env: &dyn Fn(&str) -> Option<String>) -> Self {
        if let Some(r) = ratio {
            return Sampler::ParentBased(Root::Ratio(r));
        }
        let arg = env("OTEL_TRACES_SAMPLER_ARG")
            .and_then(|a| a.trim().parse::<f64>().ok())
            .filter(|a| (0.0..=1.0).contains(a))
            .unwrap_or(1.0);
        match env("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
            Some("always_on") => Sampler::AlwaysOn,
            Some("always_off") => Sampler::AlwaysOff,
            Some("traceidratio") => Sampler::Ratio(arg),
            Some("parentbased_always_off") => Sampler::ParentBased(Root::AlwaysOff),
            Some("parentbased_traceidratio") => Sampler::ParentBased(Root::Ratio(arg)),
            Some(other) if other != "parentbased_always_on" => {
                tracing::warn!(
                    sampler = other,
                    "OTEL_TRACES_SAMPLER is not one modelway knows; using parentbased_always_on"
                );
                Sampler::ParentBased(Root::AlwaysOn)
            }
            _ => Sampler::ParentBased(Root::AlwaysOn),
        }
    }

    /// Whether a trace with this id (and parent) is recorded.
    pub fn sample(&self, trace_id: u128, parent: Option<&RemoteParent>) -> bool {
        let ratio = |r: f64| {
            // The spec's TraceIdRatioBased: the low 63 bits of the id against the ratio.
            let low = (trace_id as u64) >> 1;
            r >= 1.0 || (low as f64) < r * (1u64 << 63) as f64
        };
        match (self, parent) {
            (Sampler::AlwaysOn, _) => true,
            (Sampler::AlwaysOff, _) => false,
            (Sampler::Ratio(r), _) => ratio(*r),
            (Sampler::ParentBased(_), Some(p)) => p.sampled,
            (Sampler::ParentBased(Root::AlwaysOn), None) => true,
            (Sampler::ParentBased(Root::AlwaysOff), None) => false,
            (Sampler::ParentBased(Root::Ratio(r)), None) => ratio(*r),
        }
    }
}

/// The semantic conventions' `gen_ai.provider.name` for a provider kind.
pub fn provider_name(kind: &str) -> &str {
    match kind {
        "gemini" => "gcp.gemini",
        "mistral" => "mistral_ai",
        "xai" => "x_ai",
        "openai-compatible" | "vllm" | "ollama" => "openai",
        k => k,
    }
}

pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "modelway".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

/// A value an attribute may have.
pub(crate) trait IntoAny {
    fn any(self) -> Any;
}

impl IntoAny for &'static str {
    fn any(self) -> Any {
        Any::StringValue(self.to_owned())
    }
}

impl IntoAny for String {
    fn any(self) -> Any {
        Any::StringValue(self)
    }
}

impl IntoAny for i64 {
    fn any(self) -> Any {
        Any::IntValue(self)
    }
}

impl IntoAny for f64 {
    fn any(self) -> Any {
        Any::DoubleValue(self)
    }
}

impl IntoAny for bool {
    fn any(self) -> Any {
        Any::BoolValue(self)
    }
}

impl IntoAny for Vec<String> {
    fn any(self) -> Any {
        Any::ArrayValue(ArrayValue {
            values: self
                .into_iter()
                .map(|s| AnyValue {
                    value: Some(Any::StringValue(s)),
                })
                .collect(),
        })
    }
}

/// One attribute.
pub(crate) fn kv(key: &'static str, value: impl IntoAny) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(value.any()),
        }),
        ..Default::default()
    }
}

/// A finished span, ready for the exporter.
pub(crate) struct Built {
    pub ctx: SpanContext,
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    pub error: Option<String>,
}

impl Built {
    /// The OTLP span. Its flags carry the sampled bit and whether the parent is remote.
    pub fn into_proto(self) -> Span {
        let nanos = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        };
        let parent = if self.ctx.parent_id == 0 {
            Vec::new()
        } else {
            self.ctx.parent_id.to_be_bytes().to_vec()
        };
        Span {
            trace_id: self.ctx.trace_id.to_be_bytes().to_vec(),
            span_id: self.ctx.span_id.to_be_bytes().to_vec(),
            parent_span_id: parent,
            // Sampled, and "has is_remote" with "is_remote" when the parent came in.
            flags: 0x1 | 0x100 | if self.ctx.parent_remote { 0x200 } else { 0 },
            name: self.name,
            kind: self.kind as i32,
            start_time_unix_nano: nanos(self.start),
            end_time_unix_nano: nanos(self.end),
            attributes: self.attributes,
            status: self.error.map(|message| Status {
                message,
                code: StatusCode::Error as i32,
            }),
            ..Default::default()
        }
    }
}

/// The usage attributes shared by server and client spans.
pub(crate) fn usage_attributes(out: &mut Vec<KeyValue>, tokens: Option<TokenCounts>) {
    let Some(t) = tokens else { return };
    out.push(kv("gen_ai.usage.input_tokens", t.input as i64));
    out.push(kv("gen_ai.usage.output_tokens", t.output as i64));
    if let Some(c) = t.cached_input {
        out.push(kv("gen_ai.usage.cache_read.input_tokens", c as i64));
    }
    if let Some(r) = t.reasoning {
        out.push(kv("gen_ai.usage.reasoning.output_tokens", r as i64));
    }
}

pub(crate) fn finish_attribute(out: &mut Vec<KeyValue>, reasons: &[FinishReason]) {
    if reasons.is_empty() {
        return;
    }
    let v: Vec<String> = reasons.iter().map(|r| r.as_str().to_owned()).collect();
    out.push(kv("gen_ai.response.finish_reasons", v));
}

/// The client span of every traced attempt.
pub struct AttemptSpans {
    sink: SpanSink,
}

impl AttemptSpans {
    pub fn new(sink: SpanSink) -> Self {
        Self { sink }
    }

    fn emit(
        &self,
        a: &AttemptInfo<'_>,
        ctx: SpanContext,
        elapsed: Duration,
        fill: impl FnOnce(&mut Vec<KeyValue>) -> Option<String>,
    ) {
        let end = SystemTime::now();
        let start = end.checked_sub(elapsed).unwrap_or(end);
        let provider = &a.target.provider;
        let mut attrs = Vec::with_capacity(24);
        attrs.push(kv("gen_ai.operation.name", a.operation.as_str()));
        attrs.push(kv(
            "gen_ai.provider.name",
            provider_name(&provider.config.kind).to_owned(),
        ));
        attrs.push(kv("gen_ai.request.model", a.model().to_owned()));
        if let Some(n) = a.params.max_tokens {
            attrs.push(kv("gen_ai.request.max_tokens", n as i64));
        }
        if let Some(t) = a.params.temperature {
            attrs.push(kv("gen_ai.request.temperature", t));
        }
        if let Some(p) = a.params.top_p {
            attrs.push(kv("gen_ai.request.top_p", p));
        }
        if let Some((host, port)) = super::upstream_address(&provider.config) {
            attrs.push(kv("server.address", host));
            attrs.push(kv("server.port", i64::from(port)));
        }
        attrs.push(kv("modelway.provider", provider.name.clone()));
        attrs.push(kv("modelway.attempt", i64::from(a.number)));
        if let Some(r) = a.route {
            attrs.push(kv("modelway.route", r.to_owned()));
        }
        attrs.push(kv("modelway.hedge", a.hedge));
        if a.probe {
            attrs.push(kv("modelway.probe", true));
        }
        let error = fill(&mut attrs);
        let built = Built {
            ctx,
            name: format!("{} {}", a.operation.as_str(), a.model()),
            kind: SpanKind::Client,
            start,
            end,
            attributes: attrs,
            error,
        };
        self.sink.send(built.into_proto());
    }
}

fn failed(attrs: &mut Vec<KeyValue>, e: &ProviderError, key: Option<&str>) -> Option<String> {
    attrs.push(kv("modelway.outcome", "failed"));
    attrs.push(kv("error.type", e.class().as_str()));
    if let Some(s) = e.status() {
        attrs.push(kv("http.response.status_code", i64::from(s)));
    }
    let mut d = e.redacted(key);
    if d.len() > 512 {
        let mut cut = 512;
        while !d.is_char_boundary(cut) {
            cut -= 1;
        }
        d.truncate(cut);
    }
    Some(d)
}

/// The attempt's provider key, to redact from upstream messages.
fn key<'a>(a: &AttemptInfo<'a>) -> Option<&'a str> {
    a.target
        .provider
        .config
        .api_key
        .as_ref()
        .map(|k| k.expose())
}

impl Observer for AttemptSpans {
    fn attempt_ended(&self, a: &AttemptInfo<'_>, end: &AttemptEnd<'_>) {
        let Some(ctx) = a.trace.filter(|t| t.sampled) else {
            return;
        };
        // A committed stream's span ends with the stream.
        if a.stream && matches!(end.result, AttemptResult::Answered) {
            return;
        }
        self.emit(a, ctx, end.elapsed, |attrs| match end.result {
            AttemptResult::Answered => {
                attrs.push(kv("modelway.outcome", "answered"));
                if let Some(c) = end.answer {
                    let facts = c.facts();
                    if let Some(id) = facts.id {
                        attrs.push(kv("gen_ai.response.id", id.to_owned()));
                    }
                    if let Some(m) = facts.model {
                        attrs.push(kv("gen_ai.response.model", m.to_owned()));
                    }
                    usage_attributes(attrs, facts.tokens);
                    finish_attribute(attrs, &c.finish_reasons());
                }
                if let Some(e) = end.embeddings {
                    if let Some(m) = e.model() {
                        attrs.push(kv("gen_ai.response.model", m.to_owned()));
                    }
                    usage_attributes(attrs, e.tokens());
                }
                None
            }
            AttemptResult::Failed(e) => failed(attrs, e, key(a)),
            AttemptResult::Cancelled { hedge_loser } => {
                attrs.push(kv(
                    "modelway.outcome",
                    if hedge_loser {
                        "hedge_lost"
                    } else {
                        "cancelled"
                    },
                ));
                None
            }
        });
    }

    fn stream_ended(&self, a: &AttemptInfo<'_>, end: &StreamEnd<'_>) {
        let Some(ctx) = a.trace.filter(|t| t.sampled) else {
            return;
        };
        self.emit(a, ctx, end.elapsed, |attrs| {
            if let Some(t) = end.first_token {
                attrs.push(kv("gen_ai.server.time_to_first_token", t.as_secs_f64()));
            }
            if let Some(id) = end.response_id {
                attrs.push(kv("gen_ai.response.id", id.to_owned()));
            }
            if let Some(m) = end.response_model {
                attrs.push(kv("gen_ai.response.model", m.to_owned()));
            }
            usage_attributes(attrs, end.usage.map(TokenCounts::from));
            finish_attribute(attrs, end.finish_reasons);
            match (end.error, end.cancelled) {
                (Some(e), _) => failed(attrs, e, key(a)),
                (None, true) => {
                    attrs.push(kv("modelway.outcome", "cancelled"));
                    None
                }
                (None, false) => {
                    attrs.push(kv("modelway.outcome", "answered"));
                    None
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_follow_config_then_the_variables() {
        let none = |_: &str| None;
        assert_eq!(
            Sampler::from(Some(0.25), &none),
            Sampler::ParentBased(Root::Ratio(0.25))
        );
        assert_eq!(
            Sampler::from(None, &none),
            Sampler::ParentBased(Root::AlwaysOn)
        );
        let env = |k: &str| match k {
            "OTEL_TRACES_SAMPLER" => Some("traceidratio".to_owned()),
            "OTEL_TRACES_SAMPLER_ARG" => Some("0.5".to_owned()),
            _ => None,
        };
        assert_eq!(Sampler::from(None, &env), Sampler::Ratio(0.5));
        let parent = RemoteParent {
            trace_id: 7,
            span_id: 9,
            sampled: false,
        };
        let pb = Sampler::ParentBased(Root::AlwaysOn);
        assert!(
            !pb.sample(7, Some(&parent)),
            "an unsampled parent is followed"
        );
        assert!(pb.sample(7, None));
        assert!(!Sampler::Ratio(0.0).sample(u128::MAX, None));
        assert!(Sampler::Ratio(1.0).sample(u128::MAX, None));
        // About half of many random ids at 0.5.
        let n = (0..10_000)
            .filter(|_| Sampler::Ratio(0.5).sample(modelway_core::trace::new_trace_id(), None))
            .count();
        assert!((4_000..6_000).contains(&n), "{n}");
    }
}
