//! The HTTP side: the accept loop (HTTP/1.1 and h2c on one port), the service that
//! records each request and picks its reply, the control API under `/__mock/`, and the
//! response bodies that notice a client going away.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::script::{error_body, Reply, SseStep, StreamEnd};
use crate::{anthropic, embed, gemini, openai, responses, RecordedRequest};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

/// State shared by the [`MockUpstream`](crate::MockUpstream) handle and every connection.
#[derive(Default)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    cancelled: AtomicUsize,
    /// Bumped by `reset`, so a reply abandoned after a reset is not counted against the
    /// next test phase.
    generation: AtomicU64,
    /// Woken on every recorded request.
    pub(crate) recorded: Notify,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Reply>,
    requests: Vec<RecordedRequest>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, reply: Reply) {
        self.lock().queue.push_back(reply);
    }

    fn pop(&self) -> Option<Reply> {
        self.lock().queue.pop_front()
    }

    fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    fn record(&self, req: RecordedRequest) {
        self.lock().requests.push(req);
        self.recorded.notify_waiters();
    }

    pub(crate) fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }

    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        inner.queue.clear();
        inner.requests.clear();
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cancelled.store(0, Ordering::SeqCst);
    }
}

/// Counts a reply as cancelled if it is dropped before [`CancelGuard::finish`]: hyper
/// drops the service future or the response body when the client goes away.
struct CancelGuard {
    shared: Arc<Shared>,
    generation: u64,
    armed: bool,
}

impl CancelGuard {
    fn new(shared: &Arc<Shared>) -> Self {
        Self {
            shared: Arc::clone(shared),
            generation: shared.generation.load(Ordering::SeqCst),
            armed: true,
        }
    }

    fn finish(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed && self.shared.generation.load(Ordering::SeqCst) == self.generation {
            self.shared.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Accepts connections until the task is aborted; aborting drops the `JoinSet`, which
/// aborts every connection with it.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&shared);
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(Arc::clone(&shared), req));
                    // Errors here are the point of several replies (Drop, DropConnection,
                    // a client that went away); nothing to report.
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, BoxError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let route = parts.uri.path().to_owned();
    if let Some(control) = route.strip_prefix("/__mock/") {
        return Ok(self::control(&shared, &parts.method, control, &body));
    }
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_owned(), v)
        })
        .collect();
    shared.record(RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| route.clone(), |p| p.as_str().to_owned()),
        headers,
        body: body.clone(),
    });

    // Gemini: `/v1beta/models/{model}:generateContent`,
    // `:streamGenerateContent?alt=sse` and `:batchEmbedContents` (also under `/v1/`).
    if let Some((model, method)) = route
        .strip_prefix("/v1beta/models/")
        .or_else(|| route.strip_prefix("/v1/models/"))
        .and_then(|r| r.split_once(':'))
    {
        if parts.method == Method::POST {
            let reply = shared.pop().unwrap_or_else(|| match method {
                "batchEmbedContents" => embed::gemini_batch(model, &parts.headers, &body),
                _ => gemini::generate(model, method, parts.uri.query(), &parts.headers, &body),
            });
            return render(&shared, reply).await;
        }
    }
    // The providers' model listings, each in its own shape.
    if parts.method == Method::GET {
        let gemini_list = matches!(route.as_str(), "/v1beta/models" | "/v1/models")
            && parts.headers.contains_key("x-goog-api-key");
        let anthropic_list =
            route == "/v1/models" && parts.headers.contains_key("anthropic-version");
        if gemini_list {
            return render(&shared, json_reply(200, gemini::models())).await;
        }
        if anthropic_list {
            return render(&shared, json_reply(200, anthropic::models())).await;
        }
    }
    let route = route.strip_prefix("/v1").unwrap_or(&route);
    let reply = match (&parts.method, route) {
        (&Method::POST, "/chat/completions") => shared.pop().unwrap_or_else(|| openai::chat(&body)),
        (&Method::POST, "/embeddings") => shared.pop().unwrap_or_else(|| embed::openai(&body)),
        (&Method::POST, "/responses") => shared.pop().unwrap_or_else(|| responses::create(&body)),
        (&Method::POST, "/messages/count_tokens") => shared
            .pop()
            .unwrap_or_else(|| anthropic::count_tokens(&parts.headers, &body)),
        (&Method::POST, "/messages") => shared
            .pop()
            .unwrap_or_else(|| anthropic::messages(&parts.headers, &body)),
        (&Method::GET, "/models") => json_reply(200, openai::models()),
        (&Method::GET, r) if r.starts_with("/models/") => {
            let id = &r["/models/".len()..];
            openai::model(id).map_or_else(
                || {
                    let msg = format!("The model '{id}' does not exist");
                    let mut body = error_body(404, &msg, Some("model"));
                    body["error"]["code"] = json!("model_not_found");
                    json_reply(404, body)
                },
                |m| json_reply(200, m),
            )
        }
        // Another dialect's route (a provider being written): the scripted reply.
        (&Method::POST, _) if shared.queued() > 0 => shared
            .pop()
            .unwrap_or_else(|| Reply::error(404, "mock upstream: the queue emptied")),
        (m, _) => Reply::error(404, &format!("Invalid URL ({m} {})", parts.uri.path())),
    };
    render(&shared, reply).await
}

fn json_reply(status: u16, body: Value) -> Reply {
    Reply::Json {
        status,
        body,
        headers: Vec::new(),
    }
}

/// Turns a reply into a response; `Err` makes hyper close the connection (HTTP/2:
/// reset the stream) without answering.
async fn render(shared: &Arc<Shared>, reply: Reply) -> Result<Response<Body>, BoxError> {
    let sse = |events, end, shared| {
        let body = sse_body(events, end, CancelGuard::new(shared));
        response(200, "text/event-stream; charset=utf-8", &[], body)
    };
    Ok(match reply {
        Reply::Json {
            status,
            body,
            headers,
        } => response(status, "application/json", &headers, full(body.to_string())),
        Reply::Raw {
            status,
            content_type,
            body,
        } => response(status, &content_type, &[], full(body)),
        Reply::Sse { events, end } => sse(events, end, shared),
        Reply::Fixture(name) => {
            let path = crate::fixtures_dir().join(&name);
            match tokio::fs::read(&path).await {
                Ok(bytes) => sse(split_events(Bytes::from(bytes)), StreamEnd::Close, shared),
                Err(e) => {
                    let msg = format!("mock upstream: cannot read fixture {}: {e}", path.display());
                    response_json(500, error_body(500, &msg, None))
                }
            }
        }
        Reply::Hang => {
            let _guard = CancelGuard::new(shared);
            return std::future::pending().await;
        }
        Reply::DropConnection => {
            return Err("mock upstream: dropping the connection (Reply::DropConnection)".into())
        }
    })
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn response_json(status: u16, body: Value) -> Response<Body> {
    response(status, "application/json", &[], full(body.to_string()))
}

/// Builds a response; a status or header a test scripted that HTTP cannot carry becomes
/// a 500 naming the problem, so the test fails visibly.
fn response(
    status: u16,
    content_type: &str,
    headers: &[(String, String)],
    body: Body,
) -> Response<Body> {
    let built = (|| -> Result<Response<Body>, BoxError> {
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::from_u16(status)?;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type)?);
        h.insert(
            HeaderName::from_static("x-request-id"),
            HeaderValue::from_static("req_mock"),
        );
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())?;
            if name == header::CONTENT_TYPE {
                h.remove(&name);
            }
            h.append(name, HeaderValue::from_str(value)?);
        }
        Ok(resp)
    })();
    built.unwrap_or_else(|e| {
        let msg = format!("mock upstream: invalid scripted reply: {e}");
        let mut resp = Response::new(full(error_body(500, &msg, None).to_string()));
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    })
}

/// A streamed body: one frame per step, then the end. The guard counts the reply as
/// cancelled if hyper drops the body before the end.
fn sse_body(steps: Vec<SseStep>, end: StreamEnd, guard: CancelGuard) -> Body {
    let mut steps = steps;
    if end == StreamEnd::Done {
        steps.push(SseStep {
            delay: std::time::Duration::ZERO,
            data: Bytes::from_static(modelway_core::sse::DONE),
        });
    }
    let state = (steps.into_iter(), Some(guard));
    let stream = futures_util::stream::unfold(state, move |(mut steps, mut guard)| async move {
        if let Some(step) = steps.next() {
            if !step.delay.is_zero() {
                tokio::time::sleep(step.delay).await;
            }
            return Some((Ok(Frame::data(step.data)), (steps, guard)));
        }
        guard.take()?.finish();
        match end {
            StreamEnd::Drop => {
                // hyper writes the frames it has and flushes only when the body is
                // pending; an error polled right after them would abort the connection
                // with the head and the data still buffered, and the client would see no
                // response at all instead of a cut body.
                tokio::task::yield_now().await;
                let e: BoxError =
                    "mock upstream: connection dropped mid-body (StreamEnd::Drop)".into();
                Some((Err(e), (steps, None)))
            }
            StreamEnd::Done | StreamEnd::Close => None,
        }
    });
    StreamBody::new(stream).boxed_unsync()
}

/// Splits a recorded stream into one step per event (after each blank line), keeping
/// every byte.
pub(crate) fn split_events(bytes: Bytes) -> Vec<SseStep> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..bytes.len() {
        let lf_lf = bytes[i - 1] == b'\n' && bytes[i] == b'\n';
        let crlf_crlf = i >= 3 && &bytes[i - 3..=i] == b"\r\n\r\n";
        if lf_lf || crlf_crlf {
            out.push(bytes.slice(start..=i));
            start = i + 1;
        }
    }
    if start < bytes.len() {
        out.push(bytes.slice(start..));
    }
    out.into_iter()
        .map(|data| SseStep {
            delay: std::time::Duration::ZERO,
            data,
        })
        .collect()
}

/// `/__mock/*`: script replies, read what was recorded, reset. Not recorded itself.
fn control(shared: &Shared, method: &Method, route: &str, body: &[u8]) -> Response<Body> {
    match (method, route) {
        (&Method::POST, "script") => {
            let parsed: Result<Vec<Reply>, String> = serde_json::from_slice::<Value>(body)
                .map_err(|e| format!("body is not JSON: {e}"))
                .and_then(|v| match v {
                    Value::Object(mut o) => match o.remove("replies") {
                        Some(Value::Array(r)) => Ok(r),
                        _ => Err("expected {\"replies\": [...]}".to_owned()),
                    },
                    Value::Array(r) => Ok(r),
                    _ => Err("expected {\"replies\": [...]}".to_owned()),
                })
                .and_then(|replies| replies.iter().map(Reply::from_control_json).collect());
            match parsed {
                Ok(replies) => {
                    let n = replies.len();
                    for r in replies {
                        shared.push(r);
                    }
                    response_json(200, json!({"queued": n, "pending": shared.queued()}))
                }
                Err(e) => response_json(400, error_body(400, &format!("mock script: {e}"), None)),
            }
        }
        (&Method::GET, "requests") => {
            let all: Vec<Value> = shared.requests().iter().map(recorded_json).collect();
            response_json(200, Value::Array(all))
        }
        (&Method::GET, "stats") => response_json(
            200,
            json!({
                "cancelled": shared.cancelled(),
                "requests": shared.lock().requests.len(),
                "pending": shared.queued(),
            }),
        ),
        (&Method::POST, "reset") => {
            shared.reset();
            response_json(200, json!({}))
        }
        (m, r) => response_json(
            404,
            error_body(
                404,
                &format!("mock control: no route {m} /__mock/{r}"),
                None,
            ),
        ),
    }
}

fn recorded_json(r: &RecordedRequest) -> Value {
    let mut headers = serde_json::Map::new();
    for (k, v) in &r.headers {
        match headers.get_mut(k) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(v);
            }
            _ => {
                headers.insert(k.clone(), json!(v));
            }
        }
    }
    let body = serde_json::from_slice::<Value>(&r.body)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(&r.body)));
    // `raw_body`: the bytes as received, for tests of what passes through unchanged.
    json!({"method": r.method, "path": r.path, "headers": headers, "body": body,
           "raw_body": String::from_utf8_lossy(&r.body)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_events_keeps_every_byte() {
        let input = Bytes::from_static(b"data: a\n\ndata: b\r\n\r\n: c\n\ndata: [DONE]");
        let steps = split_events(input.clone());
        let frames: Vec<&[u8]> = steps.iter().map(|s| &s.data[..]).collect();
        assert_eq!(
            frames,
            [
                &b"data: a\n\n"[..],
                b"data: b\r\n\r\n",
                b": c\n\n",
                b"data: [DONE]"
            ]
        );
    }
}
