//! Spans after the OpenTelemetry GenAI semantic conventions: one server span per
//! request (built by [`super::RequestRecord`]) and one client span per upstream
//! attempt, its children, built here from what the engine's observer hooks report.
//!
//! Spans are built finished — ids, times and attributes known — straight into their
//! OTLP protobuf encoding (`SpanWriter`) and queued for export: no tracer context,
//! no lock, no span kept open across awaits, no copy of the span in the SDK's own
//! model and no tree of owned strings to encode later (see BENCHMARKS.md for what
//! each cost).

use std::time::{Duration, SystemTime};

use modelway_core::chat::{FinishReason, TokenCounts};
use modelway_core::engine::{AttemptEnd, AttemptInfo, AttemptResult, Observer, StreamEnd};
use modelway_core::error::ProviderError;
use modelway_core::trace::{RemoteParent, SpanContext};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use prost::encoding::{encode_varint, encoded_len_varint, WireType};

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

/// A finished span, encoded: the bytes of one OTLP `Span` message.
pub struct EncodedSpan(pub(crate) Vec<u8>);

/// Writes one OTLP `Span` protobuf message field by field, in field order (as prost
/// would), straight from the request's own strings: no `opentelemetry-proto` tree of
/// owned strings is built, cloned, encoded and freed per span (see BENCHMARKS.md,
/// "Spans encoded where they are built"). The encoding primitives are prost's.
pub(crate) struct SpanWriter {
    buf: Vec<u8>,
}

/// prost's varint, with the one-byte case (every key here, most lengths) inline.
#[inline]
fn varint(v: u64, buf: &mut Vec<u8>) {
    if v < 0x80 {
        buf.push(v as u8);
    } else {
        encode_varint(v, buf);
    }
}

/// A field's key (its number and wire type), as prost's `encode_key` writes it.
#[inline]
fn field_key(tag: u32, wire: WireType, buf: &mut Vec<u8>) {
    varint(u64::from(tag << 3 | wire as u32), buf);
}

/// The length of a length-delimited field holding `len` bytes (key, length, bytes),
/// for fields numbered under 16.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

#[inline]
fn bytes_field(tag: u32, v: &[u8], buf: &mut Vec<u8>) {
    field_key(tag, WireType::LengthDelimited, buf);
    varint(v.len() as u64, buf);
    buf.extend_from_slice(v);
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl SpanWriter {
    /// A span's identity, name (`"{operation} {model}"`, or the operation alone
    /// without a model), kind and times (`Span` fields 1–8).
    pub fn new(
        ctx: &SpanContext,
        name: [&str; 2],
        kind: SpanKind,
        start: SystemTime,
        end: SystemTime,
    ) -> Self {
        let mut buf = Vec::with_capacity(1024);
        bytes_field(1, &ctx.trace_id.to_be_bytes(), &mut buf);
        bytes_field(2, &ctx.span_id.to_be_bytes(), &mut buf);
        if ctx.parent_id != 0 {
            bytes_field(4, &ctx.parent_id.to_be_bytes(), &mut buf);
        }
        // The name: the operation, then the model when there is one.
        let [op, model] = name;
        let len = op.len() + if model.is_empty() { 0 } else { 1 + model.len() };
        if len > 0 {
            field_key(5, WireType::LengthDelimited, &mut buf);
            varint(len as u64, &mut buf);
            buf.extend_from_slice(op.as_bytes());
            if !model.is_empty() {
                buf.push(b' ');
                buf.extend_from_slice(model.as_bytes());
            }
        }
        field_key(6, WireType::Varint, &mut buf);
        varint(kind as i32 as u64, &mut buf);
        for (tag, t) in [(7, nanos(start)), (8, nanos(end))] {
            if t != 0 {
                field_key(tag, WireType::SixtyFourBit, &mut buf);
                buf.extend_from_slice(&t.to_le_bytes());
            }
        }
        Self { buf }
    }

    /// One `attributes` entry (field 9): a `KeyValue` whose `AnyValue` is
    /// `value_len` bytes, written by `value`.
    #[inline]
    fn attr(&mut self, name: &str, value_len: usize, value: impl FnOnce(&mut Vec<u8>)) {
        let b = &mut self.buf;
        field_key(9, WireType::LengthDelimited, b);
        varint((field_len(name.len()) + field_len(value_len)) as u64, b);
        bytes_field(1, name.as_bytes(), b);
        field_key(2, WireType::LengthDelimited, b);
        varint(value_len as u64, b);
        let before = b.len();
        value(b);
        debug_assert_eq!(b.len() - before, value_len);
    }

    /// A string attribute.
    #[inline]
    pub fn str(&mut self, name: &str, v: &str) {
        self.attr(name, field_len(v.len()), |b| {
            bytes_field(1, v.as_bytes(), b)
        });
    }

    /// An integer attribute.
    #[inline]
    pub fn int(&mut self, name: &str, v: i64) {
        let len = 1 + encoded_len_varint(v as u64);
        self.attr(name, len, |b| {
            field_key(3, WireType::Varint, b);
            varint(v as u64, b);
        });
    }

    /// A floating-point attribute.
    pub fn double(&mut self, name: &str, v: f64) {
        self.attr(name, 9, |b| {
            field_key(4, WireType::SixtyFourBit, b);
            b.extend_from_slice(&v.to_le_bytes());
        });
    }

    /// A boolean attribute.
    pub fn bool(&mut self, name: &str, v: bool) {
        self.attr(name, 2, |b| {
            field_key(2, WireType::Varint, b);
            varint(u64::from(v), b);
        });
    }

    /// An attribute whose value is an array of strings.
    pub fn strs<'a>(&mut self, name: &str, values: impl Iterator<Item = &'a str> + Clone) {
        // ArrayValue.values (1): AnyValues, each a string_value (1).
        let array: usize = values.clone().map(|s| field_len(field_len(s.len()))).sum();
        self.attr(name, field_len(array), |b| {
            field_key(5, WireType::LengthDelimited, b);
            varint(array as u64, b);
            for s in values {
                field_key(1, WireType::LengthDelimited, b);
                varint(field_len(s.len()) as u64, b);
                bytes_field(1, s.as_bytes(), b);
            }
        });
    }

    /// The status (an error's, when there is one) and the flags: the sampled bit,
    /// and "has is_remote" with "is_remote" when the parent came in.
    pub fn finish(mut self, ctx: &SpanContext, error: Option<&str>) -> EncodedSpan {
        let b = &mut self.buf;
        if let Some(message) = error {
            // Status { message = 2, code = 3 }.
            let message_len = if message.is_empty() {
                0
            } else {
                field_len(message.len())
            };
            field_key(15, WireType::LengthDelimited, b);
            varint((message_len + 2) as u64, b);
            if !message.is_empty() {
                bytes_field(2, message.as_bytes(), b);
            }
            field_key(3, WireType::Varint, b);
            varint(StatusCode::Error as i32 as u64, b);
        }
        let flags: u32 = 0x1 | 0x100 | if ctx.parent_remote { 0x200 } else { 0 };
        field_key(16, WireType::ThirtyTwoBit, b);
        b.extend_from_slice(&flags.to_le_bytes());
        EncodedSpan(self.buf)
    }
}

/// The usage attributes shared by server and client spans.
pub(crate) fn usage_attributes(w: &mut SpanWriter, tokens: Option<TokenCounts>) {
    let Some(t) = tokens else { return };
    w.int("gen_ai.usage.input_tokens", t.input as i64);
    w.int("gen_ai.usage.output_tokens", t.output as i64);
    if let Some(c) = t.cached_input {
        w.int("gen_ai.usage.cache_read.input_tokens", c as i64);
    }
    if let Some(r) = t.reasoning {
        w.int("gen_ai.usage.reasoning.output_tokens", r as i64);
    }
}

pub(crate) fn finish_attribute(w: &mut SpanWriter, reasons: &[FinishReason]) {
    if !reasons.is_empty() {
        w.strs(
            "gen_ai.response.finish_reasons",
            reasons.iter().map(FinishReason::as_str),
        );
    }
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
        fill: impl FnOnce(&mut SpanWriter) -> Option<String>,
    ) {
        let end = SystemTime::now();
        let start = end.checked_sub(elapsed).unwrap_or(end);
        let provider = &a.target.provider;
        let mut w = SpanWriter::new(
            &ctx,
            [a.operation.as_str(), a.model()],
            SpanKind::Client,
            start,
            end,
        );
        w.str("gen_ai.operation.name", a.operation.as_str());
        w.str("gen_ai.provider.name", provider_name(&provider.config.kind));
        w.str("gen_ai.request.model", a.model());
        if let Some(n) = a.params.max_tokens {
            w.int("gen_ai.request.max_tokens", n as i64);
        }
        if let Some(t) = a.params.temperature {
            w.double("gen_ai.request.temperature", t);
        }
        if let Some(p) = a.params.top_p {
            w.double("gen_ai.request.top_p", p);
        }
        if let Some((host, port)) = super::upstream_address(&provider.config) {
            w.str("server.address", host);
            w.int("server.port", i64::from(port));
        }
        w.str("modelway.provider", &provider.name);
        w.int("modelway.attempt", i64::from(a.number));
        if let Some(r) = a.route {
            w.str("modelway.route", r);
        }
        w.bool("modelway.hedge", a.hedge);
        if a.probe {
            w.bool("modelway.probe", true);
        }
        let error = fill(&mut w);
        self.sink.send(w.finish(&ctx, error.as_deref()));
    }
}

fn failed(w: &mut SpanWriter, e: &ProviderError, key: Option<&str>) -> Option<String> {
    w.str("modelway.outcome", "failed");
    w.str("error.type", e.class().as_str());
    if let Some(s) = e.status() {
        w.int("http.response.status_code", i64::from(s));
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
        self.emit(a, ctx, end.elapsed, |w| match end.result {
            AttemptResult::Answered => {
                w.str("modelway.outcome", "answered");
                if let Some(c) = end.answer {
                    let facts = c.facts();
                    if let Some(id) = facts.id {
                        w.str("gen_ai.response.id", id);
                    }
                    if let Some(m) = facts.model {
                        w.str("gen_ai.response.model", m);
                    }
                    usage_attributes(w, facts.tokens);
                    finish_attribute(w, &c.finish_reasons());
                }
                if let Some(e) = end.embeddings {
                    if let Some(m) = e.model() {
                        w.str("gen_ai.response.model", m);
                    }
                    usage_attributes(w, e.tokens());
                }
                None
            }
            AttemptResult::Failed(e) => failed(w, e, key(a)),
            AttemptResult::Cancelled { hedge_loser } => {
                w.str(
                    "modelway.outcome",
                    if hedge_loser {
                        "hedge_lost"
                    } else {
                        "cancelled"
                    },
                );
                None
            }
        });
    }

    fn stream_ended(&self, a: &AttemptInfo<'_>, end: &StreamEnd<'_>) {
        let Some(ctx) = a.trace.filter(|t| t.sampled) else {
            return;
        };
        self.emit(a, ctx, end.elapsed, |w| {
            if let Some(t) = end.first_token {
                w.double("gen_ai.server.time_to_first_token", t.as_secs_f64());
            }
            if let Some(id) = end.response_id {
                w.str("gen_ai.response.id", id);
            }
            if let Some(m) = end.response_model {
                w.str("gen_ai.response.model", m);
            }
            usage_attributes(w, end.usage.map(TokenCounts::from));
            finish_attribute(w, end.finish_reasons);
            match (end.error, end.cancelled) {
                (Some(e), _) => failed(w, e, key(a)),
                (None, true) => {
                    w.str("modelway.outcome", "cancelled");
                    None
                }
                (None, false) => {
                    w.str("modelway.outcome", "answered");
                    None
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{
        any_value::Value, AnyValue, ArrayValue, KeyValue,
    };
    use opentelemetry_proto::tonic::trace::v1::{Span, Status};
    use prost::Message as _;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    /// The writer's bytes are prost's for the same span, field for field: every
    /// attribute type (at the edges of their encodings), with and without a parent, a
    /// remote parent, an error with and without a message, a name without a model.
    #[test]
    fn spans_encode_as_prost_encodes_them() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_733_000_000_123_456_789);
        let end = start + Duration::from_micros(1500);
        let long = "x".repeat(300);
        let cases = [
            (0u64, false, None, ["chat", "gpt-4o"]),
            (77, true, Some("upstream said no"), ["chat", ""]),
            (u64::MAX, false, Some(""), ["", ""]),
        ];
        for (parent_id, parent_remote, error, name) in cases {
            let ctx = SpanContext {
                trace_id: 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
                span_id: 0x1122_3344_5566_7788,
                parent_id,
                parent_remote,
                sampled: true,
            };
            let mut w = SpanWriter::new(&ctx, name, SpanKind::Client, start, end);
            w.str("gen_ai.operation.name", "chat");
            w.str("empty", "");
            w.str("long", &long);
            w.str("unicode", "héllo ✓");
            w.int("zero", 0);
            w.int("small", 127);
            w.int("wide", 128);
            w.int("negative", -1);
            w.int("max", i64::MAX);
            w.int("min", i64::MIN);
            w.double("half", 0.5);
            w.double("nan-free negative", -1e300);
            w.bool("yes", true);
            w.bool("no", false);
            w.strs("finish", ["stop", "", "length"].into_iter());
            w.strs("none", std::iter::empty());
            let got = w.finish(&ctx, error).0;

            let full_name = match name {
                [op, ""] => op.to_owned(),
                [op, model] => format!("{op} {model}"),
            };
            let want = Span {
                trace_id: ctx.trace_id.to_be_bytes().to_vec(),
                span_id: ctx.span_id.to_be_bytes().to_vec(),
                parent_span_id: if parent_id == 0 {
                    Vec::new()
                } else {
                    parent_id.to_be_bytes().to_vec()
                },
                flags: 0x101 | if parent_remote { 0x200 } else { 0 },
                name: full_name,
                kind: SpanKind::Client as i32,
                start_time_unix_nano: 1_733_000_000_123_456_789,
                end_time_unix_nano: 1_733_000_000_124_956_789,
                attributes: vec![
                    kv("gen_ai.operation.name", Value::StringValue("chat".into())),
                    kv("empty", Value::StringValue(String::new())),
                    kv("long", Value::StringValue(long.clone())),
                    kv("unicode", Value::StringValue("héllo ✓".into())),
                    kv("zero", Value::IntValue(0)),
                    kv("small", Value::IntValue(127)),
                    kv("wide", Value::IntValue(128)),
                    kv("negative", Value::IntValue(-1)),
                    kv("max", Value::IntValue(i64::MAX)),
                    kv("min", Value::IntValue(i64::MIN)),
                    kv("half", Value::DoubleValue(0.5)),
                    kv("nan-free negative", Value::DoubleValue(-1e300)),
                    kv("yes", Value::BoolValue(true)),
                    kv("no", Value::BoolValue(false)),
                    kv(
                        "finish",
                        Value::ArrayValue(ArrayValue {
                            values: ["stop", "", "length"]
                                .iter()
                                .map(|s| AnyValue {
                                    value: Some(Value::StringValue((*s).to_owned())),
                                })
                                .collect(),
                        }),
                    ),
                    kv("none", Value::ArrayValue(ArrayValue { values: vec![] })),
                ],
                status: error.map(|m| Status {
                    message: m.to_owned(),
                    code: StatusCode::Error as i32,
                }),
                ..Default::default()
            };
            assert_eq!(got, want.encode_to_vec(), "{name:?} {error:?}");
            assert_eq!(Span::decode(got.as_slice()).unwrap(), want);
        }
    }

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
