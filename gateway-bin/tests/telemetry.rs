//! End-to-end: OpenTelemetry traces and the request log, through the real binary.
//!
//! In-test OTLP receivers — gRPC (tonic, the opentelemetry-proto service) and
//! http/protobuf (hyper, decoded with the opentelemetry-proto types) — collect what the
//! gateway exports; each test asserts the span tree (one server span per request, one
//! client span per attempt as its children), the GenAI attributes, trace-context
//! continuation from the client and to the upstream, and that a failing collector
//! costs requests nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use modelway_testkit::{MockUpstream, Reply, SseStep, StreamEnd};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

// ---------------------------------------------------------------------------------------
// Receivers
// ---------------------------------------------------------------------------------------

/// One exported span with its resource's attributes.
#[derive(Debug, Clone)]
struct Got {
    span: Span,
    resource: HashMap<String, Any>,
}

impl Got {
    fn attr(&self, k: &str) -> Option<&Any> {
        self.span
            .attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }
    fn str(&self, k: &str) -> Option<&str> {
        match self.attr(k)? {
            Any::StringValue(s) => Some(s),
            _ => None,
        }
    }
    fn int(&self, k: &str) -> Option<i64> {
        match self.attr(k)? {
            Any::IntValue(i) => Some(*i),
            _ => None,
        }
    }
    fn bool(&self, k: &str) -> Option<bool> {
        match self.attr(k)? {
            Any::BoolValue(b) => Some(*b),
            _ => None,
        }
    }
    fn double(&self, k: &str) -> Option<f64> {
        match self.attr(k)? {
            Any::DoubleValue(d) => Some(*d),
            _ => None,
        }
    }
    fn strings(&self, k: &str) -> Vec<String> {
        match self.attr(k) {
            Some(Any::ArrayValue(a)) => a
                .values
                .iter()
                .filter_map(|v| match v.value.as_ref()? {
                    Any::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
    fn trace_hex(&self) -> String {
        hex(&self.span.trace_id)
    }
    fn id_hex(&self) -> String {
        hex(&self.span.span_id)
    }
    fn parent_hex(&self) -> String {
        hex(&self.span.parent_span_id)
    }
    fn is_server(&self) -> bool {
        self.span.kind == 2
    }
    fn is_client(&self) -> bool {
        self.span.kind == 3
    }
    fn is_error(&self) -> bool {
        self.span.status.as_ref().is_some_and(|s| s.code == 2)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Clone, Default)]
struct Store(Arc<Mutex<Vec<Got>>>, Arc<Mutex<Vec<String>>>);

impl Store {
    fn add(&self, req: ExportTraceServiceRequest) {
        let mut v = self.0.lock().unwrap();
        for rs in req.resource_spans {
            let resource: HashMap<String, Any> = rs
                .resource
                .map(|r| {
                    r.attributes
                        .into_iter()
                        .filter_map(|a| Some((a.key, a.value?.value?)))
                        .collect()
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    v.push(Got {
                        span,
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    fn all(&self) -> Vec<Got> {
        self.0.lock().unwrap().clone()
    }
    /// The spans of one trace, once `n` of them arrived (bounded wait).
    async fn trace(&self, trace_hex: &str, n: usize) -> Vec<Got> {
        let ok = eventually(Duration::from_secs(10), || async {
            self.all()
                .iter()
                .filter(|g| g.trace_hex() == trace_hex)
                .count()
                >= n
        })
        .await;
        let got: Vec<Got> = self
            .all()
            .into_iter()
            .filter(|g| g.trace_hex() == trace_hex)
            .collect();
        assert!(ok, "expected {n} spans of trace {trace_hex}, got {got:#?}");
        got
    }
}

struct Grpc(Store);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A gRPC OTLP receiver on 127.0.0.1:0; returns its `http://` base URL.
async fn grpc_receiver(store: Store) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Grpc(store)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("http://{addr}")
}

/// An http/protobuf OTLP receiver on 127.0.0.1:0 (`POST /v1/traces`); returns its base URL.
async fn http_receiver(store: Store) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((io, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            if let Some(a) = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                            {
                                store.1.lock().unwrap().push(a.to_owned());
                            }
                            let ok = req.uri().path() == "/v1/traces"
                                && req
                                    .headers()
                                    .get("content-type")
                                    .and_then(|v| v.to_str().ok())
                                    == Some("application/x-protobuf");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let status = match ExportTraceServiceRequest::decode(body) {
                                Ok(r) if ok => {
                                    store.add(r);
                                    200
                                }
                                _ => 400,
                            };
                            let out = ExportTraceServiceResponse {
                                partial_success: None,
                            }
                            .encode_to_vec();
                            let mut resp = http::Response::new(Full::new(Bytes::from(out)));
                            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            resp.headers_mut().insert(
                                "content-type",
                                http::HeaderValue::from_static("application/x-protobuf"),
                            );
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
                .await;
            });
        }
    });
    format!("http://{addr}")
}

/// A collector that accepts connections and never answers (nor reads).
async fn hanging_collector() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    format!("http://{addr}")
}

fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

// ---------------------------------------------------------------------------------------
// The gateway under test
// ---------------------------------------------------------------------------------------

const FAST_EXPORT: &[(&str, &str)] = &[("OTEL_BSP_SCHEDULE_DELAY", "50")];

fn config(endpoint: &str, protocol: &str, a: &MockUpstream, b: &MockUpstream) -> String {
    format!(
        r#"[telemetry]
otlp_endpoint = "{endpoint}"
otlp_protocol = "{protocol}"
service_name = "gw-under-test"

[routing]
timeout = "10s"

[providers.a]
kind = "openai-compatible"
base_url = "{a}"
api_key = "sk-a-secret"

[providers.b]
kind = "openai-compatible"
base_url = "{b}"
api_key = "sk-b-secret"

[[routes]]
name = "pair"
targets = ["a/m1", "b/m2"]

[[routes]]
name = "hedged"
targets = ["a/m1", "b/m2"]
hedge_after = "200ms"
hedge_budget = 1.0
"#,
        a = a.base_url(),
        b = b.base_url()
    )
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str) -> String {
    format!("00-{trace}-{CLIENT_SPAN}-01")
}

/// A fresh trace id per call, so each call's spans are found by it.
fn trace_id(n: u8) -> String {
    format!("{}{n:02x}", &CLIENT_TRACE[..30])
}

async fn traced(gw: &Gw, body: String, trace: &str) -> Resp {
    let tp = traceparent(trace);
    let r = post_with(
        &gw.url("/v1/chat/completions"),
        body,
        &[("traceparent", tp.as_str()), ("tracestate", "vendor=x")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

fn only<'a>(spans: &'a [Got], f: impl Fn(&Got) -> bool, what: &str) -> &'a Got {
    let v: Vec<&Got> = spans.iter().filter(|g| f(g)).collect();
    assert_eq!(v.len(), 1, "exactly one {what} in {spans:#?}");
    v[0]
}

/// The span tree and attributes of a plain, a streamed, a fallen-back and a hedged call.
async fn span_trees(protocol: &str, store: Store, endpoint: String) {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gw::start_env(&config(&endpoint, protocol, &a, &b), FAST_EXPORT, None);

    // 1. A plain call continuing the client's trace.
    let t = trace_id(1);
    let body = json!({"model": "pair", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 50, "temperature": 0.5, "top_p": 0.9})
    .to_string();
    traced(&gw, body, &t).await;
    let spans = store.trace(&t, 2).await;
    let server = only(&spans, Got::is_server, "server span");
    let client = only(&spans, Got::is_client, "client span");
    assert_eq!(
        server.parent_hex(),
        CLIENT_SPAN,
        "continues the client's trace"
    );
    assert_eq!(
        client.parent_hex(),
        server.id_hex(),
        "the attempt is a child"
    );
    assert_eq!(server.span.name, "chat pair");
    assert_eq!(client.span.name, "chat m1");
    assert_eq!(server.str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(server.str("gen_ai.request.model"), Some("pair"));
    assert_eq!(server.str("modelway.route"), Some("pair"));
    assert_eq!(server.str("modelway.served_model"), Some("m1"));
    assert_eq!(server.str("modelway.provider"), Some("a"));
    assert_eq!(server.int("http.response.status_code"), Some(200));
    assert_eq!(server.str("http.request.method"), Some("POST"));
    assert_eq!(server.int("gen_ai.request.max_tokens"), Some(50));
    assert_eq!(server.double("gen_ai.request.temperature"), Some(0.5));
    assert_eq!(server.double("gen_ai.request.top_p"), Some(0.9));
    assert!(server.int("gen_ai.usage.input_tokens").unwrap() > 0);
    assert!(server.int("gen_ai.usage.output_tokens").unwrap() > 0);
    assert_eq!(server.strings("gen_ai.response.finish_reasons"), ["stop"]);
    assert!(server.str("gen_ai.response.id").is_some());
    assert_eq!(server.int("modelway.attempts"), Some(1));
    for (k, v) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", "m1"),
        ("gen_ai.response.model", "m1"),
        ("modelway.outcome", "answered"),
        ("modelway.provider", "a"),
        ("modelway.route", "pair"),
        ("server.address", "127.0.0.1"),
    ] {
        assert_eq!(client.str(k), Some(v), "client span {k}: {client:#?}");
    }
    assert_eq!(client.int("modelway.attempt"), Some(1));
    assert_eq!(client.int("gen_ai.request.max_tokens"), Some(50));
    assert!(client.int("gen_ai.usage.output_tokens").unwrap() > 0);
    assert_eq!(client.strings("gen_ai.response.finish_reasons"), ["stop"]);
    assert!(
        client.span.start_time_unix_nano >= server.span.start_time_unix_nano
            && client.span.end_time_unix_nano <= server.span.end_time_unix_nano + 1_000_000,
        "the attempt lies within the request"
    );
    assert!(
        matches!(server.resource.get("service.name"), Some(Any::StringValue(s)) if s == "gw-under-test")
    );
    // The upstream received the attempt span's context, and the client's tracestate.
    let up = a.requests().pop().unwrap();
    assert_eq!(
        up.header("traceparent"),
        Some(format!("00-{t}-{}-01", client.id_hex()).as_str()),
        "the upstream's parent is the attempt span"
    );
    assert_eq!(up.header("tracestate"), Some("vendor=x"));

    // 2. A streamed call: the client span ends with the stream and has the same
    // attributes a JSON one has, plus the time to first token.
    let t = trace_id(2);
    let r = traced(&gw, chat_stream("pair", "stream please"), &t).await;
    assert!(!stream_text(r.body.as_ref()).is_empty());
    let spans = store.trace(&t, 2).await;
    let server = only(&spans, Got::is_server, "server span");
    let client = only(&spans, Got::is_client, "client span");
    assert_eq!(client.parent_hex(), server.id_hex());
    assert_eq!(server.bool("modelway.stream"), Some(true));
    assert!(server.double("gen_ai.server.time_to_first_token").unwrap() > 0.0);
    assert!(client.double("gen_ai.server.time_to_first_token").unwrap() > 0.0);
    assert_eq!(client.str("modelway.outcome"), Some("answered"));
    assert_eq!(client.str("gen_ai.response.model"), Some("m1"));
    assert!(client.str("gen_ai.response.id").is_some());
    assert_eq!(client.strings("gen_ai.response.finish_reasons"), ["stop"]);
    assert!(client.int("gen_ai.usage.output_tokens").unwrap() > 0);
    assert!(server.int("gen_ai.usage.output_tokens").unwrap() > 0);

    // 3. A call that fell back once: two sibling attempts, the first failed.
    a.push(Reply::error(500, "boom"));
    let t = trace_id(3);
    let r = traced(&gw, chat("pair", "fall back"), &t).await;
    assert_eq!(r.header("x-modelway-provider"), Some("b"));
    let spans = store.trace(&t, 3).await;
    let server = only(&spans, Got::is_server, "server span");
    let mut attempts: Vec<&Got> = spans.iter().filter(|g| g.is_client()).collect();
    attempts.sort_by_key(|g| g.int("modelway.attempt"));
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    assert!(attempts.iter().all(|g| g.parent_hex() == server.id_hex()));
    let (first, second) = (attempts[0], attempts[1]);
    assert_eq!(first.str("modelway.provider"), Some("a"));
    assert_eq!(first.str("modelway.outcome"), Some("failed"));
    assert_eq!(first.str("error.type"), Some("server_error"));
    assert_eq!(first.int("http.response.status_code"), Some(500));
    assert!(first.is_error());
    assert_eq!(second.str("modelway.provider"), Some("b"));
    assert_eq!(second.int("modelway.attempt"), Some(2));
    assert_eq!(second.str("modelway.outcome"), Some("answered"));
    assert!(!second.is_error());
    assert_eq!(server.int("modelway.attempts"), Some(2));
    assert_eq!(server.str("modelway.served_model"), Some("m2"));
    assert!(!server.is_error(), "the client was answered");

    // 4. A hedged call: a hangs, b is started beside it and wins; a is the hedge loser.
    a.push(Reply::Hang);
    let t = trace_id(4);
    let r = traced(&gw, chat("hedged", "hedge"), &t).await;
    assert_eq!(r.header("x-modelway-hedged"), Some("true"));
    let spans = store.trace(&t, 3).await;
    let server = only(&spans, Got::is_server, "server span");
    assert_eq!(server.bool("modelway.hedge"), Some(true));
    let loser = only(
        &spans,
        |g| g.is_client() && g.str("modelway.provider") == Some("a"),
        "attempt at a",
    );
    let winner = only(
        &spans,
        |g| g.is_client() && g.str("modelway.provider") == Some("b"),
        "attempt at b",
    );
    assert_eq!(loser.parent_hex(), server.id_hex());
    assert_eq!(winner.parent_hex(), server.id_hex());
    assert_eq!(loser.str("modelway.outcome"), Some("hedge_lost"));
    assert_eq!(loser.bool("modelway.hedge"), Some(false));
    assert_eq!(winner.bool("modelway.hedge"), Some(true));
    assert_eq!(winner.str("modelway.outcome"), Some("answered"));

    // 5. No client traceparent: a new trace, rooted at the server span, still
    // propagated upstream.
    let r = post(&gw.url("/v1/chat/completions"), chat("pair", "fresh")).await;
    assert_eq!(r.status, 200);
    let up = a.requests().pop().unwrap();
    let tp = up
        .header("traceparent")
        .expect("a traceparent upstream")
        .to_owned();
    let fresh = tp.split('-').nth(1).unwrap().to_owned();
    assert_ne!(fresh, CLIENT_TRACE);
    let spans = store.trace(&fresh, 2).await;
    let server = only(&spans, Got::is_server, "server span");
    assert_eq!(server.span.parent_span_id, Vec::<u8>::new(), "a root span");
}

#[tokio::test]
async fn http_protobuf_span_trees_of_plain_streamed_fallen_back_and_hedged_calls() {
    let store = Store::default();
    let endpoint = http_receiver(store.clone()).await;
    span_trees("http/protobuf", store, endpoint).await;
}

#[tokio::test]
async fn grpc_span_trees_of_plain_streamed_fallen_back_and_hedged_calls() {
    let store = Store::default();
    let endpoint = grpc_receiver(store.clone()).await;
    span_trees("grpc", store, endpoint).await;
}

#[tokio::test]
async fn the_standard_variables_configure_the_exporter_and_an_unsampled_client_is_followed() {
    let store = Store::default();
    let endpoint = http_receiver(store.clone()).await;
    let a = MockUpstream::start().await;
    let cfg = format!(
        "[providers.a]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\n",
        a.base_url()
    );
    let gw = Gw::start_env(
        &cfg,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
        None,
    );
    // Not sampled by the client: nothing recorded, the flag passed on.
    let unsampled = format!("00-{}-{CLIENT_SPAN}-00", trace_id(9));
    let r = post_with(
        &gw.url("/v1/chat/completions"),
        chat("a/m", "quiet"),
        &[("traceparent", unsampled.as_str())],
    )
    .await;
    assert_eq!(r.status, 200);
    let up = a.requests().pop().unwrap();
    let tp = up.header("traceparent").unwrap();
    assert!(
        tp.starts_with(&format!("00-{}-", trace_id(9))) && tp.ends_with("-00"),
        "{tp}"
    );
    // Sampled.
    let t = trace_id(10);
    traced(&gw, chat("a/m", "loud"), &t).await;
    let spans = store.trace(&t, 2).await;
    let server = only(&spans, Got::is_server, "server span");
    assert!(
        matches!(server.resource.get("service.name"), Some(Any::StringValue(s)) if s == "from-env")
    );
    assert!(
        matches!(server.resource.get("deployment.environment"), Some(Any::StringValue(s)) if s == "test")
    );
    assert!(
        store.all().iter().all(|g| g.trace_hex() != trace_id(9)),
        "the unsampled trace was not exported"
    );
}

/// Median and worst latency of `n` sequential calls.
async fn latencies(gw: &Gw, n: usize) -> (Duration, Duration) {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        let r = try_send(
            &client(),
            post_request(
                &gw.url("/v1/chat/completions"),
                chat("a/m", &format!("n{i}")),
            ),
            Duration::from_secs(5),
        )
        .await
        .expect("answered within 5 s");
        assert_eq!(r.status, 200);
        v.push(t0.elapsed());
    }
    v.sort();
    (v[n / 2], v[n - 1])
}

async fn dropped(gw: &Gw) -> u64 {
    let m = get(&gw.url("/metrics"), &[]).await.text();
    m.lines()
        .filter(|l| l.starts_with("modelway_telemetry_spans_dropped_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn a_refusing_or_hanging_collector_costs_requests_nothing_and_drops_are_counted() {
    let a = MockUpstream::start().await;
    let baseline_cfg = format!(
        "[providers.a]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\n",
        a.base_url()
    );
    let baseline = Gw::start(&baseline_cfg);
    latencies(&baseline, 10).await; // warm
    let (base_median, _) = latencies(&baseline, 60).await;

    let hanging = hanging_collector().await;
    for (what, endpoint, protocol) in [
        ("refusing (http)", closed_port(), "http/protobuf"),
        ("refusing (grpc)", closed_port(), "grpc"),
        ("hanging (http)", hanging.clone(), "http/protobuf"),
        ("hanging (grpc)", hanging.clone(), "grpc"),
    ] {
        let cfg = format!(
            "[telemetry]\notlp_endpoint = \"{endpoint}\"\notlp_protocol = \"{protocol}\"\n\n{baseline_cfg}"
        );
        let gw = Gw::start_env(
            &cfg,
            &[
                ("OTEL_BSP_SCHEDULE_DELAY", "20"),
                ("OTEL_BSP_EXPORT_TIMEOUT", "300"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4"),
            ],
            None,
        );
        latencies(&gw, 10).await;
        let (median, worst) = latencies(&gw, 60).await;
        // Unchanged: within noise of the same gateway without telemetry (a stalled
        // export would add its 300 ms timeout to some call).
        assert!(
            median < base_median * 3 + Duration::from_millis(5),
            "{what}: median {median:?} vs {base_median:?} without telemetry"
        );
        assert!(
            worst < Duration::from_millis(250),
            "{what}: worst {worst:?}"
        );
        assert!(
            eventually(Duration::from_secs(5), || async { dropped(&gw).await > 0 }).await,
            "{what}: drops are counted on /metrics"
        );
    }
}

#[tokio::test]
async fn no_secret_reaches_logs_spans_or_metrics() {
    let store = Store::default();
    let endpoint = http_receiver(store.clone()).await;
    let a = MockUpstream::start().await;
    let cfg = format!(
        r#"[auth]
admin_key = "adm-SECRET-7f3a9c"

[[auth.keys]]
name = "team-a"
key = "mw-SECRET-1b2c3d"

[[auth.keys]]
name = "team-h"
key_sha256 = "e9dac65b4a7b31d1b8252219e560ef3e087fdc0dd756ee25eeeaa050c681d925"
rpm = 100
tpm = 100000
max_concurrent = 5

[telemetry]
otlp_endpoint = "{endpoint}"
otlp_protocol = "http/protobuf"
capture_content = true
log_format = "json"

[providers.a]
kind = "openai-compatible"
base_url = "{}"
api_key = "sk-SECRET-9e8d7c"
allow_client_key = true
"#,
        a.base_url()
    );
    let log = temp_dir("secrets").join("stderr.log");
    let gw = Gw::start_env(
        &cfg,
        &[
            ("RUST_LOG", "debug"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer otlp-SECRET-5a5a5a",
            ),
        ],
        Some(&log),
    );
    let auth = [("authorization", "Bearer mw-SECRET-1b2c3d")];
    let t = trace_id(20);
    let tp = traceparent(&t);
    let url = gw.url("/v1/chat/completions");
    let r = post_with(
        &url,
        chat("a/m", "hello there"),
        &[auth[0], ("traceparent", &tp)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_with(&url, chat_stream("a/m", "stream it"), &auth).await;
    assert_eq!(r.status, 200);
    a.push(Reply::error(401, "bad key sk-SECRET-9e8d7c"));
    let r = post_with(&url, chat("a/m", "fail"), &auth).await;
    assert_ne!(r.status, 200);
    let r = post_with(
        &url,
        chat("a/m", "wrong key"),
        &[("authorization", "Bearer mw-SECRET-wrong")],
    )
    .await;
    assert_eq!(r.status, 401);
    // The hashed key, limited, with its own provider key; then that key refused
    // upstream with the key quoted in the upstream's message.
    let hashed = [
        ("x-api-key", "mw-SECRET-hashed4"),
        ("x-modelway-provider-key", "cpk-SECRET-c1c1c1"),
    ];
    let r = post_with(&url, chat("a/m", "bring my own"), &hashed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        a.requests().last().unwrap().header("authorization"),
        Some("Bearer cpk-SECRET-c1c1c1")
    );
    a.push(Reply::error(
        401,
        "Incorrect API key provided: cpk-SECRET-c1c1c1",
    ));
    let r = post_with(&url, chat_stream("a/m", "refused"), &hashed).await;
    assert_ne!(r.status, 200);
    assert!(!r.text().contains("SECRET"), "{}", r.text());
    let mut admin = String::new();
    for path in ["/admin/config", "/admin/health"] {
        let r = get(
            &gw.url(path),
            &[("authorization", "Bearer adm-SECRET-7f3a9c")],
        )
        .await;
        assert_eq!(r.status, 200);
        admin.push_str(&r.text());
    }
    assert!(admin.contains("team-h"), "{admin}");
    let spans = store.trace(&t, 2).await;
    // Content was captured (capture_content = true), keys were not.
    let server = only(&spans, Got::is_server, "server span");
    assert!(server
        .str("gen_ai.input.messages")
        .unwrap()
        .contains("hello there"));
    assert!(server.str("gen_ai.output.messages").is_some());
    assert_eq!(
        server.str("modelway.key"),
        Some("team-a"),
        "the key's name, not the key"
    );
    assert!(
        store
            .1
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer otlp-SECRET-5a5a5a"),
        "OTEL_EXPORTER_OTLP_HEADERS reach the collector"
    );
    assert!(!store.1.lock().unwrap().is_empty());
    let metrics = get(&gw.url("/metrics"), &[]).await.text();
    // Give the export of the last spans a moment, then read everything.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spans = format!("{:?}", store.all());
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("\"request_id\""),
        "JSON request lines: {logs}"
    );
    for secret in [
        "SECRET-7f3a9c",
        "SECRET-1b2c3d",
        "SECRET-9e8d7c",
        "SECRET-5a5a5a",
        "SECRET-wrong",
        "SECRET-hashed4",
        "SECRET-c1c1c1",
        &"e9dac65b4a7b31d1b8252219e560ef3e087fdc0dd756ee25eeeaa050c681d925"[..16],
    ] {
        for (what, text) in [
            ("logs", &logs),
            ("spans", &spans),
            ("metrics", &metrics),
            ("admin", &admin),
        ] {
            assert!(!text.contains(secret), "{secret} appears in {what}");
        }
    }
}

#[tokio::test]
async fn one_log_line_per_request_in_json_and_text() {
    let a = MockUpstream::start().await;
    for format in ["json", "text"] {
        let cfg = format!(
            "[telemetry]\nlog_format = \"{format}\"\n\n[providers.a]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\n",
            a.base_url()
        );
        let log = temp_dir("log").join("stderr.log");
        let gw = Gw::start_env(&cfg, &[("RUST_LOG", "info")], Some(&log));
        let r = post_with(
            &gw.url("/v1/chat/completions"),
            chat("a/m", "log me"),
            &[("x-request-id", "req-log-1")],
        )
        .await;
        assert_eq!(r.status, 200);
        let r = post(
            &gw.url("/v1/chat/completions"),
            chat_stream("a/m", "log me too"),
        )
        .await;
        assert_eq!(r.status, 200);
        let r = post(&gw.url("/v1/chat/completions"), chat("nope/m", "bad")).await;
        assert_eq!(r.status, 404, "{}", r.text());
        drop(gw);
        let ok = eventually(Duration::from_secs(5), || async {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("modelway::request"))
                .count()
                >= 3
        })
        .await;
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(ok, "{format}: three request lines in {text}");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("modelway::request"))
            .collect();
        assert_eq!(lines.len(), 3, "{format}: one line per request: {text}");
        assert!(
            !text.contains("listening"),
            "the listening line goes to stdout once, not to the log: {text}"
        );
        if format == "json" {
            let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
            assert_eq!(first["request_id"], "req-log-1");
            assert_eq!(first["provider"], "a");
            assert_eq!(first["served_model"], "m");
            assert_eq!(first["status"], 200);
            assert_eq!(first["attempts"], 1);
            assert!(first["duration_ms"].as_f64().unwrap() > 0.0);
            assert!(first["input_tokens"].as_u64().unwrap() > 0);
            assert!(first["output_tokens"].as_u64().unwrap() > 0);
            let stream: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
            assert_eq!(stream["stream"], true);
            assert!(stream["ttft_ms"].as_f64().unwrap() > 0.0);
            assert!(stream["output_tokens"].as_u64().unwrap() > 0);
            let bad: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
            assert_eq!(bad["status"], 404);
        } else {
            assert!(lines[0].contains("request_id=req-log-1"), "{}", lines[0]);
            assert!(lines[0].contains("status=200"), "{}", lines[0]);
            assert!(lines[1].contains("ttft_ms="), "{}", lines[1]);
        }
    }
}

#[tokio::test]
async fn a_stream_cut_after_its_commit_ends_both_spans_with_the_error() {
    let store = Store::default();
    let endpoint = http_receiver(store.clone()).await;
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gw::start_env(
        &config(&endpoint, "http/protobuf", &a, &b),
        FAST_EXPORT,
        None,
    );
    a.push(Reply::Sse {
        events: vec![SseStep::data(
            &json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m1",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "half"}, "finish_reason": null}]}),
        )],
        end: StreamEnd::Drop,
    });
    let t = trace_id(30);
    let r = traced(&gw, chat_stream("pair", "cut me"), &t).await;
    assert!(r.text().contains("error"), "{}", r.text());
    let spans = store.trace(&t, 2).await;
    let server = only(&spans, Got::is_server, "server span");
    let client = only(&spans, Got::is_client, "client span");
    assert_eq!(client.str("modelway.outcome"), Some("failed"));
    assert_eq!(client.str("error.type"), Some("stream_cut"));
    assert!(client.is_error());
    assert!(server.is_error(), "the client saw an error event");
    assert!(server.str("error.type").is_some());
}

#[tokio::test]
async fn translated_streams_and_answers_carry_the_same_attributes_as_passthrough_ones() {
    let store = Store::default();
    let endpoint = http_receiver(store.clone()).await;
    let up = MockUpstream::start().await;
    let cfg = format!(
        "[telemetry]\notlp_endpoint = \"{endpoint}\"\notlp_protocol = \"http/protobuf\"\n\n\
         [providers.claude]\nkind = \"anthropic\"\nbase_url = \"http://{}\"\napi_key = \"sk-ant-x\"\n\n\
         [providers.gem]\nkind = \"gemini\"\nbase_url = \"http://{}\"\napi_key = \"g-x\"\nlist_models = false\n",
        up.addr(),
        up.addr()
    );
    let gw = Gw::start_env(&cfg, FAST_EXPORT, None);
    for (n, model, provider_name) in [
        (40u8, "claude/claude-x", "anthropic"),
        (41, "gem/gemini-x", "gcp.gemini"),
    ] {
        for (m, stream) in [(0u8, false), (1, true)] {
            let t = trace_id(n + m * 10);
            let body = if stream {
                chat_stream(model, "translate me")
            } else {
                chat(model, "translate me")
            };
            traced(&gw, body, &t).await;
            let spans = store.trace(&t, 2).await;
            let server = only(&spans, Got::is_server, "server span");
            let client = only(&spans, Got::is_client, "client span");
            let what = format!("{model} stream={stream}");
            assert_eq!(client.parent_hex(), server.id_hex(), "{what}");
            assert_eq!(
                client.str("gen_ai.provider.name"),
                Some(provider_name),
                "{what}"
            );
            assert_eq!(
                server.str("gen_ai.provider.name"),
                Some(provider_name),
                "{what}"
            );
            for g in [server, client] {
                assert!(g.str("gen_ai.response.model").is_some(), "{what}: {g:#?}");
                assert!(g.str("gen_ai.response.id").is_some(), "{what}: {g:#?}");
                assert!(
                    g.int("gen_ai.usage.input_tokens").unwrap_or(0) > 0,
                    "{what}: {g:#?}"
                );
                assert!(
                    g.int("gen_ai.usage.output_tokens").unwrap_or(0) > 0,
                    "{what}: {g:#?}"
                );
                assert_eq!(
                    g.strings("gen_ai.response.finish_reasons"),
                    ["stop"],
                    "{what}"
                );
                assert_eq!(
                    g.double("gen_ai.server.time_to_first_token").is_some(),
                    stream,
                    "{what}"
                );
            }
        }
    }
}

#[tokio::test]
async fn an_embeddings_call_is_a_server_span_over_one_client_span_per_attempt_and_a_log_line() {
    let store = Store::default();
    let endpoint = http_receiver(store.clone()).await;
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let log = temp_dir("embed-log").join("stderr.log");
    let cfg = config(&endpoint, "http/protobuf", &a, &b)
        .replacen(
            "service_name = \"gw-under-test\"\n",
            "service_name = \"gw-under-test\"\nlog_format = \"json\"\n",
            1,
        )
        .replacen("[routing]\n", "[routing]\nretries = 0\n", 1);
    let mut envs = FAST_EXPORT.to_vec();
    envs.push(("RUST_LOG", "warn,modelway::request=info"));
    let gw = Gw::start_env(&cfg, &envs, Some(&log));
    a.push(Reply::error(500, "boom"));
    let t = trace_id(40);
    let tp = traceparent(&t);
    let r = post_with(
        &gw.url("/v1/embeddings"),
        r#"{"model":"pair","input":["one two","three"]}"#,
        &[("traceparent", tp.as_str())],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let spans = store.trace(&t, 3).await;
    let server = only(&spans, Got::is_server, "server span");
    assert_eq!(server.span.name, "embeddings pair");
    assert_eq!(server.str("gen_ai.operation.name"), Some("embeddings"));
    assert_eq!(server.str("http.route"), Some("/v1/embeddings"));
    assert_eq!(server.str("modelway.provider"), Some("b"));
    assert_eq!(server.str("gen_ai.response.model"), Some("m2"));
    assert_eq!(server.int("gen_ai.usage.input_tokens"), Some(3));
    assert_eq!(server.int("modelway.attempts"), Some(2));
    let clients: Vec<&Got> = spans.iter().filter(|g| g.is_client()).collect();
    assert_eq!(clients.len(), 2, "{spans:#?}");
    for c in &clients {
        assert_eq!(c.parent_hex(), server.id_hex());
        assert_eq!(c.str("gen_ai.operation.name"), Some("embeddings"));
    }
    let failed = clients
        .iter()
        .find(|c| c.str("modelway.provider") == Some("a"))
        .unwrap();
    assert_eq!(failed.span.name, "embeddings m1");
    assert_eq!(failed.str("modelway.outcome"), Some("failed"));
    assert_eq!(failed.str("error.type"), Some("server_error"));
    let answered = clients
        .iter()
        .find(|c| c.str("modelway.provider") == Some("b"))
        .unwrap();
    assert_eq!(answered.str("modelway.outcome"), Some("answered"));
    assert_eq!(answered.int("gen_ai.usage.input_tokens"), Some(3));
    // The upstream received the attempt span's context.
    let up = b.requests().pop().unwrap();
    assert_eq!(up.path, "/v1/embeddings");
    assert_eq!(
        up.header("traceparent"),
        Some(format!("00-{t}-{}-01", answered.id_hex()).as_str())
    );
    // One JSON log line naming the operation.
    let mut line = None;
    let found = eventually(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        line = text
            .lines()
            .find(|l| l.contains("\"embeddings\"") && l.contains("\"request_id\""))
            .map(str::to_owned);
        std::future::ready(line.is_some())
    })
    .await;
    assert!(
        found,
        "no embeddings request line in {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
    assert_eq!(v["operation"], "embeddings");
    assert_eq!(v["model"], "pair");
    assert_eq!(v["provider"], "b");
    assert_eq!(v["status"], 200);
    assert_eq!(v["attempts"], 2);
    assert_eq!(v["input_tokens"], 3);
}
