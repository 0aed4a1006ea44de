//! The span pipeline: a bounded queue the request path pushes finished spans into
//! without waiting, and one task that batches them into an OTLP
//! `ExportTraceServiceRequest` and sends it over gRPC (tonic) or http/protobuf (the
//! gateway's own pooled hyper client).
//!
//! Each span arrives protobuf-encoded (by `SpanWriter` in `trace`, where it was
//! built) and is appended to the batch's buffer the moment the task receives it: an
//! export then only wraps the buffer in the request's envelope. Building and encoding
//! a whole batch at once would hold a runtime worker for milliseconds (measured: +2 ms
//! on the p99 of requests at 2000 req/s); span by span, the task yields to requests
//! between spans.
//!
//! A collector that refuses, fails or hangs costs the request path nothing: a full
//! queue drops the span (counted as `queue_full`), a failed or timed-out export drops
//! its batch (counted as `export_failed`), and both are logged at most every 30 s.
//! The batching follows the `OTEL_BSP_*` variables.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytes::{Buf as _, BufMut as _};
use http::{HeaderName, HeaderValue};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use super::metrics::Metrics;
use super::trace::EncodedSpan;

/// `OTEL_BSP_*`, with the spec's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    pub max_queue: usize,
    pub delay: Duration,
    pub max_batch: usize,
    pub export_timeout: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_queue: 2048,
            delay: Duration::from_millis(5000),
            max_batch: 512,
            export_timeout: Duration::from_millis(30000),
        }
    }
}

impl BatchSettings {
    /// The defaults, overridden by `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_SCHEDULE_DELAY`,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` and `OTEL_BSP_EXPORT_TIMEOUT` (milliseconds).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let d = Self::default();
        let num = |k: &str| env(k).and_then(|v| v.trim().parse::<u64>().ok());
        let max_queue = num("OTEL_BSP_MAX_QUEUE_SIZE")
            .filter(|&n| n > 0)
            .map_or(d.max_queue, |n| n.min(1 << 20) as usize);
        let max_batch = num("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
            .filter(|&n| n > 0)
            .map_or(d.max_batch, |n| n as usize)
            .min(max_queue);
        Self {
            max_queue,
            delay: num("OTEL_BSP_SCHEDULE_DELAY").map_or(d.delay, Duration::from_millis),
            max_batch,
            export_timeout: num("OTEL_BSP_EXPORT_TIMEOUT")
                .filter(|&n| n > 0)
                .map_or(d.export_timeout, Duration::from_millis),
        }
    }
}

enum Msg {
    Span(EncodedSpan),
    Flush(oneshot::Sender<()>),
}

/// Where batches go (one per process, so the variants' sizes do not matter).
#[allow(clippy::large_enum_variant)]
pub enum Transport {
    /// `POST` `application/x-protobuf` to the full `…/v1/traces` URL.
    Http {
        client: modelway_core::HttpClient,
        uri: http::Uri,
        headers: Vec<(HeaderName, HeaderValue)>,
        timeout: Duration,
    },
    /// `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
    Grpc {
        channel: tonic::transport::Channel,
        headers: tonic::metadata::MetadataMap,
        timeout: Duration,
    },
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A gRPC codec for a request already encoded (an `ExportTraceServiceRequest`'s bytes)
/// and an answer that is not read (an `ExportTraceServiceResponse` says only whether
/// some spans were rejected, which the status already does).
#[derive(Debug, Clone, Copy, Default)]
struct Encoded;

impl tonic::codec::Codec for Encoded {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = Encoded;
    type Decoder = Encoded;
    fn encoder(&mut self) -> Self::Encoder {
        Encoded
    }
    fn decoder(&mut self) -> Self::Decoder {
        Encoded
    }
}

impl tonic::codec::Encoder for Encoded {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Encoded {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, Self::Error> {
        let n = src.remaining();
        src.advance(n);
        Ok(Some(()))
    }
}

impl Transport {
    async fn export(&self, body: Bytes) -> Result<(), String> {
        match self {
            Transport::Http {
                client,
                uri,
                headers,
                timeout,
            } => {
                let mut r = http::Request::new(http_body_util::Full::new(body));
                *r.method_mut() = http::Method::POST;
                *r.uri_mut() = uri.clone();
                let h = r.headers_mut();
                h.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
                for (k, v) in headers {
                    h.insert(k.clone(), v.clone());
                }
                let resp = client.send(r, *timeout).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                // Drained, so the connection goes back to the pool.
                let _ = modelway_core::http_client::read_body(resp.into_body(), *timeout).await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("the collector answered HTTP {}", status.as_u16()))
                }
            }
            Transport::Grpc {
                channel,
                headers,
                timeout,
            } => {
                let call = async {
                    let mut grpc = tonic::client::Grpc::new(channel.clone());
                    grpc.ready()
                        .await
                        .map_err(|e| format!("the collector is unreachable: {e}"))?;
                    let mut r = tonic::Request::new(body);
                    *r.metadata_mut() = headers.clone();
                    r.set_timeout(*timeout);
                    grpc.unary::<Bytes, (), Encoded>(
                        r,
                        http::uri::PathAndQuery::from_static(EXPORT_PATH),
                        Encoded,
                    )
                    .await
                    .map(drop)
                    .map_err(|status| {
                        format!(
                            "the collector answered {:?}: {}",
                            status.code(),
                            status.message()
                        )
                    })
                };
                match tokio::time::timeout(*timeout, call).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                }
            }
        }
    }
}

/// What every batch says of its origin, encoded once.
pub struct Origin {
    pub resource: Resource,
    pub scope: InstrumentationScope,
}

/// A batch being built: its spans, each already encoded as a `ScopeSpans.spans` field.
struct Batch {
    spans: Vec<u8>,
    count: usize,
}

impl Batch {
    fn push(&mut self, span: &EncodedSpan) {
        // ScopeSpans.spans = 2.
        encode_key(2, WireType::LengthDelimited, &mut self.spans);
        encode_varint(span.0.len() as u64, &mut self.spans);
        self.spans.extend_from_slice(&span.0);
        self.count += 1;
    }

    /// `ExportTraceServiceRequest { resource_spans: [ResourceSpans { resource,
    /// scope_spans: [ScopeSpans { scope, spans }] }] }`, around the encoded spans.
    fn request(&mut self, resource: &[u8], scope: &[u8]) -> Bytes {
        fn field_len(len: usize) -> usize {
            1 + encoded_len_varint(len as u64) + len
        }
        let scope_spans = field_len(scope.len()) + self.spans.len();
        let resource_spans = field_len(resource.len()) + field_len(scope_spans);
        let mut out = Vec::with_capacity(field_len(resource_spans));
        // ExportTraceServiceRequest.resource_spans = 1
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(resource_spans as u64, &mut out);
        // ResourceSpans.resource = 1
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(resource.len() as u64, &mut out);
        out.extend_from_slice(resource);
        // ResourceSpans.scope_spans = 2
        encode_key(2, WireType::LengthDelimited, &mut out);
        encode_varint(scope_spans as u64, &mut out);
        // ScopeSpans.scope = 1, then the spans.
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(scope.len() as u64, &mut out);
        out.extend_from_slice(scope);
        out.extend_from_slice(&self.spans);
        self.spans.clear();
        self.count = 0;
        Bytes::from(out)
    }
}

/// Where finished spans go. Cloning is cheap; sending never waits.
#[derive(Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<Msg>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SpanSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanSink").finish_non_exhaustive()
    }
}

impl SpanSink {
    /// Queues a finished span, or counts it dropped when the queue is full.
    pub fn send(&self, span: EncodedSpan) {
        if self.tx.try_send(Msg::Span(span)).is_err() {
            self.metrics.spans_dropped("queue_full", 1);
        }
    }

    /// Exports what is queued, waiting at most `within`.
    pub async fn flush(&self, within: Duration) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = tokio::time::timeout(within, done).await;
        }
    }
}

/// Starts the export task on the current runtime.
pub fn spawn(
    transport: Transport,
    origin: Origin,
    settings: BatchSettings,
    metrics: Arc<Metrics>,
) -> SpanSink {
    let (tx, rx) = mpsc::channel(settings.max_queue);
    tokio::spawn(run(transport, origin, settings, rx, metrics.clone()));
    SpanSink { tx, metrics }
}

async fn run(
    transport: Transport,
    origin: Origin,
    settings: BatchSettings,
    mut rx: mpsc::Receiver<Msg>,
    metrics: Arc<Metrics>,
) {
    let mut out = Sender {
        transport,
        resource: origin.resource.encode_to_vec(),
        scope: origin.scope.encode_to_vec(),
        export_timeout: settings.export_timeout,
        metrics,
        last_warning: None,
    };
    let mut batch = Batch {
        spans: Vec::with_capacity(64 * 1024),
        count: 0,
    };
    loop {
        let mut flush = None;
        // The first span of a batch waits as long as it takes; the rest at most
        // `delay` after it. Each is encoded as it arrives.
        match rx.recv().await {
            None => return,
            Some(Msg::Span(s)) => batch.push(&s),
            Some(Msg::Flush(ack)) => flush = Some(ack),
        }
        let until = tokio::time::Instant::now() + settings.delay;
        while flush.is_none() && batch.count < settings.max_batch {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(Msg::Span(s))) => batch.push(&s),
                Ok(Some(Msg::Flush(ack))) => flush = Some(ack),
                Ok(None) | Err(_) => break,
            }
        }
        if flush.is_some() {
            // Everything queued before the flush goes too (in batches).
            let mut acks = Vec::new();
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    Msg::Span(s) => {
                        batch.push(&s);
                        if batch.count >= settings.max_batch {
                            out.send(&mut batch).await;
                        }
                    }
                    Msg::Flush(ack) => acks.push(ack),
                }
            }
            for ack in acks {
                let _ = ack.send(());
            }
        }
        if batch.count > 0 {
            out.send(&mut batch).await;
        }
        if let Some(ack) = flush {
            let _ = ack.send(());
        }
    }
}

/// Sends batches, counting what the collector took or what was dropped.
struct Sender {
    transport: Transport,
    /// The batch envelope's resource and scope, encoded once.
    resource: Vec<u8>,
    scope: Vec<u8>,
    export_timeout: Duration,
    metrics: Arc<Metrics>,
    last_warning: Option<Instant>,
}

impl Sender {
    async fn send(&mut self, batch: &mut Batch) {
        let n = batch.count as u64;
        let body = batch.request(&self.resource, &self.scope);
        match tokio::time::timeout(self.export_timeout, self.transport.export(body)).await {
            Ok(Ok(())) => self.metrics.spans_exported(n),
            failed => {
                self.metrics.spans_dropped("export_failed", n);
                if self
                    .last_warning
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(30))
                {
                    self.last_warning = Some(Instant::now());
                    let why = match failed {
                        Ok(Err(e)) => e,
                        _ => format!("no answer within {:?}", self.export_timeout),
                    };
                    tracing::warn!(spans = n, error = %why, "could not export spans to the OTLP collector; they were dropped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_batch_encodes_as_the_request_prost_would() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let kv = |key: &str, value: Value| KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        };
        let resource = Resource {
            attributes: vec![kv("service.name", Value::StringValue("x".to_owned()))],
            ..Default::default()
        };
        let scope = super::super::trace::scope();
        let spans: Vec<Span> = (0..3u8)
            .map(|i| Span {
                name: format!("span {i}"),
                span_id: vec![i; 8],
                attributes: vec![kv("k", Value::IntValue(i64::from(i)))],
                ..Default::default()
            })
            .collect();
        let mut batch = Batch {
            spans: Vec::new(),
            count: 0,
        };
        for s in &spans {
            batch.push(&EncodedSpan(s.encode_to_vec()));
        }
        let got = batch.request(&resource.encode_to_vec(), &scope.encode_to_vec());
        let want = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        assert_eq!(got, want.encode_to_vec());
        assert_eq!(ExportTraceServiceRequest::decode(got).unwrap(), want);
        assert_eq!(batch.count, 0, "the buffer is reused");
    }

    #[test]
    fn batch_settings_follow_the_variables() {
        let env = |k: &str| match k {
            "OTEL_BSP_MAX_QUEUE_SIZE" => Some("16".to_owned()),
            "OTEL_BSP_SCHEDULE_DELAY" => Some("100".to_owned()),
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" => Some("64".to_owned()),
            "OTEL_BSP_EXPORT_TIMEOUT" => Some("nonsense".to_owned()),
            _ => None,
        };
        let s = BatchSettings::from_env(&env);
        assert_eq!(s.max_queue, 16);
        assert_eq!(s.delay, Duration::from_millis(100));
        assert_eq!(s.max_batch, 16, "a batch is never larger than the queue");
        assert_eq!(s.export_timeout, BatchSettings::default().export_timeout);
        assert_eq!(BatchSettings::from_env(&|_| None), BatchSettings::default());
    }
}
