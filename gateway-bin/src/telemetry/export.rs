//! The span pipeline: a bounded queue the request path pushes finished spans into
//! without waiting, and one task that batches them into an OTLP
//! `ExportTraceServiceRequest` (the `opentelemetry-proto` types, encoded by prost) and
//! sends it over gRPC (tonic, the generated `TraceService` client) or http/protobuf
//! (the gateway's own pooled hyper client).
//!
//! A collector that refuses, fails or hangs costs the request path nothing: a full
//! queue drops the span (counted as `queue_full`), a failed or timed-out export drops
//! its batch (counted as `export_failed`), and both are logged at most every 30 s.
//! The batching follows the `OTEL_BSP_*` variables.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use super::metrics::Metrics;

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
    Span(Box<Span>),
    Flush(oneshot::Sender<()>),
}

/// Where batches go.
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
        client: TraceServiceClient<tonic::transport::Channel>,
        headers: tonic::metadata::MetadataMap,
        timeout: Duration,
    },
}

impl Transport {
    async fn export(&self, req: ExportTraceServiceRequest) -> Result<(), String> {
        match self {
            Transport::Http {
                client,
                uri,
                headers,
                timeout,
            } => {
                let mut r =
                    http::Request::new(http_body_util::Full::new(Bytes::from(req.encode_to_vec())));
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
                client,
                headers,
                timeout,
            } => {
                let mut r = tonic::Request::new(req);
                *r.metadata_mut() = headers.clone();
                r.set_timeout(*timeout);
                match tokio::time::timeout(*timeout, client.clone().export(r)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(status)) => Err(format!(
                        "the collector answered {:?}: {}",
                        status.code(),
                        status.message()
                    )),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                }
            }
        }
    }
}

/// What every batch says of its origin.
pub struct Origin {
    pub resource: Resource,
    pub scope: InstrumentationScope,
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
    pub fn send(&self, span: Span) {
        if self.tx.try_send(Msg::Span(Box::new(span))).is_err() {
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
    let mut batch: Vec<Span> = Vec::with_capacity(settings.max_batch);
    let mut last_warning: Option<Instant> = None;
    loop {
        let mut flush = None;
        // The first span of a batch waits as long as it takes; the rest at most
        // `delay` after it.
        match rx.recv().await {
            None => return,
            Some(Msg::Span(s)) => batch.push(*s),
            Some(Msg::Flush(ack)) => flush = Some(ack),
        }
        let until = tokio::time::Instant::now() + settings.delay;
        while flush.is_none() && batch.len() < settings.max_batch {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(Msg::Span(s))) => batch.push(*s),
                Ok(Some(Msg::Flush(ack))) => flush = Some(ack),
                Ok(None) | Err(_) => break,
            }
        }
        if flush.is_some() {
            // Everything queued before the flush goes too.
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    Msg::Span(s) => batch.push(*s),
                    Msg::Flush(ack) => {
                        let _ = ack.send(());
                    }
                }
            }
        }
        while !batch.is_empty() {
            let take = batch.len().min(settings.max_batch);
            let spans: Vec<Span> = batch.drain(..take).collect();
            let n = spans.len() as u64;
            let req = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(origin.resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(origin.scope.clone()),
                        spans,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                }],
            };
            match tokio::time::timeout(settings.export_timeout, transport.export(req)).await {
                Ok(Ok(())) => metrics.spans_exported(n),
                failed => {
                    metrics.spans_dropped("export_failed", n);
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                        last_warning = Some(Instant::now());
                        let why = match failed {
                            Ok(Err(e)) => e,
                            _ => format!("no answer within {:?}", settings.export_timeout),
                        };
                        tracing::warn!(spans = n, error = %why, "could not export spans to the OTLP collector; they were dropped");
                    }
                }
            }
        }
        if let Some(ack) = flush {
            let _ = ack.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
