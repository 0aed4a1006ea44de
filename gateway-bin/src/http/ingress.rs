//! The one front-door handler. A [`Dialect`] says how its clients' bodies become a
//! canonical request and how answers, streams and errors go back in their format;
//! everything between — admission, the gateway key, body limits, key limits and
//! budgets, the request record, the call through the engine, keep-alives before a
//! stream's commit — is here, once, for every dialect.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use modelway_core::chat::{ChatChunk, ChatRequest, Completion};
use modelway_core::{Call, CallMeta, ChunkStream, ClientDialect, GatewayError, Served};

use super::{authenticate, Body};
use crate::app::App;
use crate::limits::{check_key, drain, Metered, OverBudget, RateHeaders, Ticket};
use crate::telemetry::RequestRecord;

/// A client wire format the gateway serves: how a body becomes a [`ChatRequest`], and
/// how an answer, a stream and an error are written back.
pub(crate) trait Dialect: Send + Sync + 'static {
    /// Which upstreams may take the client's bytes unchanged.
    const CLIENT: ClientDialect;
    /// The operation, for telemetry (`gen_ai.operation.name`).
    const OPERATION: &'static str;
    /// The route, for telemetry (`http.route`).
    const PATH: &'static str;
    /// What the encoders need to know of the request beyond the canonical model.
    type Ctx: Send + 'static;
    /// Writes a stream in this dialect.
    type Encoder: StreamEncode;

    /// Client headers a provider may forward upstream (never credentials).
    fn forwarded() -> &'static [HeaderName];

    /// The canonical request and its context, or the 400 to answer.
    fn decode(body: &Bytes) -> Result<(ChatRequest, Self::Ctx), GatewayError>;

    /// A feature of the decoded request that only an upstream speaking this dialect
    /// itself can serve (see [`Call::needing_native`]); the default: none.
    fn needs_native(ctx: &Self::Ctx) -> Option<&str> {
        let _ = ctx;
        None
    }

    /// An error's body in this dialect (the headers are set by the caller).
    fn error_body(err: &GatewayError) -> Bytes;

    /// An error's status in this dialect.
    fn error_status(err: &GatewayError) -> u16 {
        err.status
    }

    /// A whole answer's body in this dialect.
    fn answer(c: Completion, ctx: &Self::Ctx) -> Result<Bytes, GatewayError>;

    /// The writer of one stream.
    fn encoder(ctx: Self::Ctx, model: &str) -> Self::Encoder;

    /// This dialect's own response headers (besides `x-request-id`, set for every
    /// answer), and a limited key's rate-limit headers in this dialect's names.
    fn headers(h: &mut HeaderMap, request_id: &str, rate: &RateHeaders) {
        let _ = request_id;
        rate.apply(h);
    }
}

/// Writes one stream: canonical chunks in, SSE bytes out.
pub(crate) trait StreamEncode: Send + Unpin + 'static {
    /// `chunk` (already read by the request record), as zero or more events; `cost` is
    /// the call's cost in USD once its usage is known.
    fn chunk(&mut self, chunk: ChatChunk, cost: Option<f64>, out: &mut Vec<u8>);
    /// The end of a stream that completed.
    fn finish(&mut self, out: &mut Vec<u8>);
    /// A failure once the client has its 200 head: the error as an event.
    fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>);
    /// What is sent while a stream waits for its commit (ignored by the client's SDK).
    fn keepalive(&self) -> Bytes {
        Bytes::from_static(b": keep-alive\n\n")
    }
}

/// `err` as `D`'s error response, with its status and retry headers.
pub(crate) fn error_response_in<D: Dialect>(err: &GatewayError) -> Response<Body> {
    let mut resp = error_with_body(err, D::error_body(err));
    if let Ok(s) = StatusCode::from_u16(D::error_status(err)) {
        *resp.status_mut() = s;
    }
    resp
}

/// `err` with `body`: its status, `Retry-After` / `retry-after-ms` and the attempts.
pub(crate) fn error_with_body(err: &GatewayError, body: Bytes) -> Response<Body> {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = super::json_response(status, body);
    if let Some(d) = err.retry_after {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        // OpenAI's SDKs read this one first: the wait to the millisecond.
        // Rounded up, like `Retry-After`: waiting it out is never a millisecond early.
        let ms = d.as_micros().div_ceil(1000).max(1);
        resp.headers_mut().insert(
            RETRY_AFTER_MS,
            HeaderValue::from(u64::try_from(ms).unwrap_or(u64::MAX)),
        );
    }
    if err.attempts > 0 {
        resp.headers_mut()
            .insert(X_MODELWAY_ATTEMPTS, HeaderValue::from(err.attempts));
    }
    resp
}

/// Serves one request in dialect `D`. Never fails: every error is a `D` error body.
pub(crate) async fn handle<D: Dialect>(
    app: Arc<App>,
    req: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, GatewayError> {
    let mut rec = Some(
        app.telemetry
            .request(request_id, req.headers(), D::OPERATION, D::PATH),
    );
    let mut rate = RateHeaders::default();
    let result = serve::<D>(app, req, request_id, &mut rec, &mut rate).await;
    // A stream took the record with it; anything else ends here.
    if let Some(mut rec) = rec {
        match &result {
            Ok(resp) => rec.status(resp.status().as_u16()),
            Err(e) => rec.failed(e),
        }
        rec.finish();
    }
    // A limited key's headers go on every answer, refusals included.
    let mut resp = result.unwrap_or_else(|e| error_response_in::<D>(&e));
    D::headers(resp.headers_mut(), request_id, &rate);
    Ok(resp)
}

// Header names as constants: a string literal passed as a name is parsed and
// validated on every call.
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const X_MODELWAY_ATTEMPTS: HeaderName = HeaderName::from_static("x-modelway-attempts");
const X_MODELWAY_PROVIDER: HeaderName = HeaderName::from_static("x-modelway-provider");
const X_MODELWAY_MODEL: HeaderName = HeaderName::from_static("x-modelway-model");
const X_MODELWAY_HEDGED: HeaderName = HeaderName::from_static("x-modelway-hedged");
const X_MODELWAY_DROPPED_PARAMS: HeaderName = HeaderName::from_static("x-modelway-dropped-params");
const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// What a JSON answer cost, USD (absent when its model has no price).
pub(crate) const X_MODELWAY_COST: HeaderName = HeaderName::from_static("x-modelway-cost");

/// A cost as a plain decimal, to the nano-dollar: `0.000123`, not `1.23e-4`.
pub(crate) fn format_cost(c: f64) -> String {
    let s = format!("{c:.9}");
    let s = s.trim_end_matches('0');
    s.strip_suffix('.')
        .map_or_else(|| s.to_owned(), |t| format!("{t}.0"))
}

/// The header a client sends its own provider key in (where allowed).
const PROVIDER_KEY: HeaderName = HeaderName::from_static("x-modelway-provider-key");

/// Reads the body within the size limit and the bytes-in-flight budget. The body's
/// bytes count against the budget until the returned hold is dropped: the caller keeps
/// it for the whole call (the body and what was parsed from it live that long).
async fn read_body(
    app: &App,
    body: Incoming,
    declared: Option<u64>,
    limit: usize,
    max_in_flight_bytes: u64,
) -> Result<(Bytes, crate::limits::BodyBytes), GatewayError> {
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::payload_too_large(limit));
    }
    let mut held = match app
        .admission
        .hold_body(declared.unwrap_or(0), max_in_flight_bytes)
    {
        Ok(h) => h,
        Err(e) => {
            drain(body, limit as u64);
            return Err(e);
        }
    };
    let bytes =
        modelway_core::http_client::body_bytes(Limited::new(Metered::new(body, &mut held), limit))
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    GatewayError::payload_too_large(limit)
                } else if e.is::<OverBudget>() {
                    let mut err = GatewayError::unavailable(
                        "The gateway is at its limit of request bytes in flight; retry shortly.",
                    )
                    .with_code("overloaded");
                    err.retry_after = Some(std::time::Duration::from_secs(1));
                    err
                } else {
                    GatewayError::bad_request(format!("Could not read the request body: {e}"))
                }
            })?;
    Ok((bytes, held))
}

/// A request past what every front door checks first: its place in flight, the
/// gateway key, and the body read under its limits (its bytes counted in flight for as
/// long as this lives: keep it to the end of the call).
pub(crate) struct Admitted<'s> {
    pub key: Option<&'s modelway_core::config::ClientKey>,
    pub headers: HeaderMap,
    pub body: Bytes,
    in_flight: Option<crate::limits::InFlight>,
    _held: crate::limits::BodyBytes,
}

/// Admission first — a request refused for load costs nothing more, and its body is
/// drained unread so the client reads the 503 rather than a reset — then the key, then
/// the body.
pub(crate) async fn admit<'s>(
    app: &App,
    snap: &'s modelway_core::Snapshot,
    req: Request<Incoming>,
) -> Result<Admitted<'s>, GatewayError> {
    let server = snap.config.server();
    let limit = server.max_body_bytes;
    let in_flight = match app.admission.enter(server.max_in_flight) {
        Ok(g) => g,
        Err(e) => {
            drain(req.into_body(), limit as u64);
            return Err(e);
        }
    };
    let key = authenticate(snap, &req)?;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (parts, body) = req.into_parts();
    let (body, held) = read_body(app, body, declared, limit, server.max_in_flight_bytes).await?;
    Ok(Admitted {
        key,
        headers: parts.headers,
        body,
        in_flight: Some(in_flight),
        _held: held,
    })
}

impl Admitted<'_> {
    /// The key's `models` globs over every model the call may reach: `model` and
    /// OpenRouter's `models` list.
    pub(crate) fn check_models(
        &self,
        model: &str,
        extra: &modelway_core::chat::Extra,
    ) -> Result<(), GatewayError> {
        let Some(key) = self.key else { return Ok(()) };
        let listed = extra.get("models").and_then(|m| m.as_array());
        let names = std::iter::once(model)
            .filter(|m| !m.is_empty())
            .chain(listed.into_iter().flatten().filter_map(|m| m.as_str()));
        for model in names {
            if !key.allows(model) {
                return Err(GatewayError::forbidden(format!(
                    "The key `{}` may not use the model `{model}`.",
                    key.name
                )));
            }
        }
        Ok(())
    }

    /// The key's budget, then its `rpm` / `tpm` / `max_concurrent` for a call of
    /// `estimate` tokens: the ticket the call holds, and the headers to send (on a
    /// refusal too).
    pub(crate) async fn ticket(
        &mut self,
        app: &App,
        request_id: &str,
        estimate: u64,
        rate: &mut RateHeaders,
    ) -> Result<Ticket, GatewayError> {
        let in_flight = self
            .in_flight
            .take()
            .ok_or_else(|| GatewayError::internal("a request's ticket was taken twice"))?;
        let mut ticket = Ticket::new(in_flight, estimate);
        let Some(key) = self.key else {
            return Ok(ticket);
        };
        // A spent budget refuses before any rate is spent.
        if key.budget.is_some() {
            app.budgets.check(key, crate::ledger::now_ms())?;
        }
        match check_key(
            app.gateway.limiter(),
            key,
            request_id,
            estimate,
            &mut ticket,
        )
        .await
        {
            Ok(h) => *rate = h,
            Err((e, h)) => {
                *rate = h;
                return Err(e);
            }
        }
        Ok(ticket)
    }

    /// The call's metadata: the request id, the key's name, the `forwarded` client
    /// headers, the trace, and the client's own provider key (`x-modelway-provider-key`).
    pub(crate) fn meta(
        &self,
        request_id: &str,
        forwarded: &[HeaderName],
        trace: Option<modelway_core::trace::SpanContext>,
        keep_usage: bool,
    ) -> Result<CallMeta, GatewayError> {
        let provider_key = match self.headers.get(&PROVIDER_KEY) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(modelway_core::ApiKey::new)
                    .ok_or_else(|| {
                        GatewayError::bad_request("`x-modelway-provider-key` is empty or not text.")
                    })?,
            ),
        };
        Ok(CallMeta {
            request_id: request_id.to_owned(),
            caller: self.key.map(|k| k.name.clone()),
            headers: forwarded_headers(&self.headers, forwarded),
            deadline: None,
            trace,
            keep_usage,
            provider_key,
        })
    }
}

/// The first value of each of `names` the request carries, in `names`' order. One
/// pass over the request's few headers, comparing names, costs less than hashing each
/// name for a lookup (the forwarded names are custom ones, hashed byte by byte).
fn forwarded_headers(headers: &HeaderMap, names: &[HeaderName]) -> Vec<(HeaderName, HeaderValue)> {
    let mut found: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for (name, value) in headers {
        if names.contains(name) && !found.iter().any(|(n, _)| n == name) {
            found.push((name.clone(), value.clone()));
        }
    }
    found.sort_by_key(|(n, _)| names.iter().position(|m| m == n));
    found
}

async fn serve<D: Dialect>(
    app: Arc<App>,
    req: Request<Incoming>,
    request_id: &str,
    record: &mut Option<RequestRecord>,
    rate: &mut RateHeaders,
) -> Result<Response<Body>, GatewayError> {
    // One snapshot for the whole request, however long it streams.
    let snap = app.gateway.snapshot();
    let mut admitted = admit(&app, &snap, req).await?;
    let (chat, ctx) = D::decode(&admitted.body)?;
    admitted.check_models(&chat.model, &chat.extra)?;
    // The record knows the call before its limits are checked, so a refusal's log
    // line names the key and the model.
    if let Some(rec) = record.as_mut() {
        let route = snap
            .config
            .routes()
            .get_key_value(chat.model.as_str())
            .map(|(k, _)| k.as_str());
        rec.call(&chat, admitted.key.map(|k| k.name.as_str()), route);
    }
    let estimate = modelway_core::limits::estimate_tokens(
        admitted.body.len(),
        chat.max_completion_tokens.or(chat.max_tokens),
    );
    let ticket = admitted.ticket(&app, request_id, estimate, rate).await?;
    let trace = record.as_ref().and_then(RequestRecord::trace);
    let meta = admitted.meta(request_id, D::forwarded(), trace, true)?;
    if let Some(rec) = record.as_mut() {
        rec.hold(ticket);
    }
    let body = admitted.body.clone();
    let stream = chat.is_stream();
    let keepalive = stream
        .then(|| snap.router.stream_keepalive(&chat.model))
        .flatten();
    let mut call = Call::from_client_in(D::CLIENT, chat, body, meta);
    if let Some(feature) = D::needs_native(&ctx) {
        call = call.needing_native(feature);
    }

    if let Some(every) = keepalive {
        // The head waits for the commit only `stream_keepalive` long; then it goes out
        // with keep-alives (which SDKs ignore) until the commit, and failover before
        // the commit stays invisible.
        let app = app.clone();
        let snap2 = snap.clone();
        let model = call.request().model.clone();
        let mut pending: PendingStream =
            Box::pin(async move { app.gateway.execute_stream_on(&snap2, call).await });
        return match tokio::time::timeout(every, &mut pending).await {
            Ok(served) => {
                let served = served?;
                rate.upstream(served.upstream_limits);
                let rec = record_served(record, &served, &snap);
                let enc = D::encoder(ctx, &model);
                Ok(stream_response(served, rec, enc))
            }
            Err(_) => {
                let enc = D::encoder(ctx, &model);
                Ok(keepalive_response(pending, every, record.take(), enc, snap))
            }
        };
    }
    if stream {
        let model = call.request().model.clone();
        let served = app.gateway.execute_stream_on(&snap, call).await?;
        rate.upstream(served.upstream_limits);
        let rec = record_served(record, &served, &snap);
        Ok(stream_response(served, rec, D::encoder(ctx, &model)))
    } else {
        let served = app.gateway.execute_on(&snap, call).await?;
        rate.upstream(served.upstream_limits);
        let (value, head) = served.split();
        if let Some(rec) = record.as_mut() {
            rec.completion(&value);
        }
        let resp = D::answer(value, &ctx).map(|body| {
            let mut resp = super::json_response(StatusCode::OK, body);
            served_headers(&mut resp, &head);
            resp
        });
        // Even for an answer that could not be encoded, the log line names who served.
        let cost = record.as_mut().and_then(|rec| {
            rec.served_head(head, &snap);
            rec.cost()
        });
        let mut resp = resp?;
        if let Some(v) = cost.and_then(|c| HeaderValue::from_str(&format_cost(c)).ok()) {
            resp.headers_mut().insert(X_MODELWAY_COST, v);
        }
        Ok(resp)
    }
}

/// Notes who served a stream, and hands the record to the stream's body.
fn record_served<T>(
    record: &mut Option<RequestRecord>,
    served: &Served<T>,
    snap: &modelway_core::Snapshot,
) -> Option<RequestRecord> {
    let mut rec = record.take()?;
    rec.served(served, snap);
    Some(rec)
}

/// A small count as a header value: the common ones are static (a number's
/// `HeaderValue` is otherwise formatted into a fresh allocation).
fn count_header(n: u32) -> HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match SMALL.get(n as usize) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(n),
    }
}

/// Says who served the answer, and which request parameters it had to drop.
pub(crate) fn served_headers<T>(resp: &mut Response<Body>, served: &Served<T>) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&served.provider) {
        h.insert(X_MODELWAY_PROVIDER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&served.model) {
        h.insert(X_MODELWAY_MODEL, v);
    }
    h.insert(X_MODELWAY_ATTEMPTS, count_header(served.attempts));
    if served.hedged {
        h.insert(X_MODELWAY_HEDGED, HeaderValue::from_static("true"));
    }
    if !served.dropped_params.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&served.dropped_params.join(", ")) {
            h.insert(X_MODELWAY_DROPPED_PARAMS, v);
        }
    }
}

/// The SSE response: each chunk is written as its own frame the moment it is ready;
/// a failure after the head was sent becomes the dialect's error event.
fn stream_response<E: StreamEncode>(
    served: Served<ChunkStream>,
    rec: Option<RequestRecord>,
    enc: E,
) -> Response<Body> {
    let (chunks, head) = served.split();
    let s = Streaming {
        chunks,
        provider: head.provider.clone(),
        rec,
        enc,
    };
    let mut resp = Response::new(BodyExt::boxed_unsync(SseBody(Some(s))));
    sse_headers(&mut resp);
    served_headers(&mut resp, &head);
    resp
}

fn sse_headers(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
}

/// A streamed call still before its commit point.
type PendingStream = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Served<ChunkStream>, GatewayError>> + Send>,
>;

/// The response of a stream whose head could not wait for its commit: a keep-alive
/// every `every` until the engine commits, then the stream. If every target fails,
/// the client gets the error as an event: the status was already sent.
fn keepalive_response<E: StreamEncode>(
    pending: PendingStream,
    every: std::time::Duration,
    rec: Option<RequestRecord>,
    enc: E,
    snap: Arc<modelway_core::Snapshot>,
) -> Response<Body> {
    enum State<E> {
        Waiting {
            pending: PendingStream,
            tick: tokio::time::Interval,
            rec: Option<RequestRecord>,
            enc: E,
            snap: Arc<modelway_core::Snapshot>,
        },
        Streaming(Streaming<E>),
        Done,
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = State::Waiting {
        pending,
        tick,
        rec,
        enc,
        snap,
    };
    let frames = futures_util::stream::unfold((start, true), move |(state, first)| async move {
        match state {
            State::Waiting {
                mut pending,
                mut tick,
                mut rec,
                mut enc,
                snap,
            } => {
                if first {
                    // The head goes out with one keep-alive at once.
                    tick.reset();
                    let frame = Frame::data(enc.keepalive());
                    let state = State::Waiting {
                        pending,
                        tick,
                        rec,
                        enc,
                        snap,
                    };
                    return Some((Ok::<_, Infallible>(frame), (state, false)));
                }
                tokio::select! {
                    served = &mut pending => match served {
                        Ok(served) => {
                            if let Some(r) = rec.as_mut() {
                                r.served(&served, &snap);
                            }
                            let mut s = Streaming {
                                chunks: served.value,
                                provider: served.provider,
                                rec,
                                enc,
                            };
                            match s.next_frame().await {
                                (frame, true) => Some((Ok(frame), (State::Streaming(s), false))),
                                (frame, false) => Some((Ok(frame), (State::Done, false))),
                            }
                        }
                        Err(e) => {
                            if let Some(mut r) = rec {
                                r.failed(&e);
                                // The client already has its 200 head: the error
                                // arrives as an event.
                                r.status(200);
                                r.finish();
                            }
                            let mut out = Vec::new();
                            enc.error(&e, &mut out);
                            Some((Ok(Frame::data(Bytes::from(out))), (State::Done, false)))
                        }
                    },
                    _ = tick.tick() => {
                        let frame = Frame::data(enc.keepalive());
                        let state = State::Waiting { pending, tick, rec, enc, snap };
                        Some((Ok(frame), (state, false)))
                    }
                }
            }
            State::Streaming(mut s) => match s.next_frame().await {
                (frame, true) => Some((Ok(frame), (State::Streaming(s), false))),
                (frame, false) => Some((Ok(frame), (State::Done, false))),
            },
            State::Done => None,
        }
    });
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
    sse_headers(&mut resp);
    resp
}

/// A committed stream on its way to the client, and the record it ends.
struct Streaming<E> {
    chunks: ChunkStream,
    provider: String,
    rec: Option<RequestRecord>,
    enc: E,
}

impl<E: StreamEncode> Streaming<E> {
    /// The next SSE frame, and whether more may follow. The last one ends the record.
    async fn next_frame(&mut self) -> (Frame<Bytes>, bool) {
        std::future::poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// [`Self::next_frame`], polled: what the response body calls for every frame,
    /// with no future built per chunk.
    fn poll_frame(&mut self, cx: &mut std::task::Context<'_>) -> Poll<(Frame<Bytes>, bool)> {
        let mut out = Vec::new();
        let more = loop {
            match self.chunks.poll_next_unpin(cx) {
                // Nothing is written yet: a chunk that makes output ends the loop.
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    let mut cost = None;
                    if let Some(r) = self.rec.as_mut() {
                        r.chunk(&chunk);
                        cost = r.cost();
                    }
                    self.enc.chunk(chunk, cost, &mut out);
                    // A chunk the client is not sent (a usage chunk it did not ask
                    // for) makes no frame: read on.
                    if !out.is_empty() {
                        break true;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(provider = %self.provider, error = %e.redacted(None), "stream failed after the response started");
                    let err = GatewayError::from_provider(&self.provider, &e);
                    if let Some(r) = self.rec.as_mut() {
                        r.failed(&err);
                    }
                    self.enc.error(&err, &mut out);
                    break false;
                }
                Poll::Ready(None) => {
                    self.enc.finish(&mut out);
                    break false;
                }
            }
        };
        if !more {
            if let Some(r) = self.rec.take() {
                r.finish();
            }
        }
        Poll::Ready((Frame::data(Bytes::from(out)), more))
    }
}

/// A committed stream as a response body: each chunk is polled straight into its
/// frame (no `unfold` moving the stream's state through a new future per chunk).
struct SseBody<E>(Option<Streaming<E>>);

impl<E: StreamEncode> hyper::body::Body for SseBody<E> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let Some(s) = this.0.as_mut() else {
            return Poll::Ready(None);
        };
        let (frame, more) = std::task::ready!(s.poll_frame(cx));
        if !more {
            // Dropped now, not when hyper drops the body: the upstream connection
            // goes back to the pool and the record is already finished.
            this.0 = None;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn count_headers_read_as_their_number() {
        for n in [0, 1, 7, 9, 10, 11, 123, u32::MAX] {
            assert_eq!(count_header(n).to_str().unwrap(), n.to_string());
        }
    }

    #[test]
    fn forwarded_headers_are_the_first_value_of_each_name_in_the_names_order() {
        let names = [
            HeaderName::from_static("http-referer"),
            HeaderName::from_static("x-title"),
            HeaderName::from_static("traceparent"),
        ];
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.append("traceparent", HeaderValue::from_static("tp"));
        h.append("x-title", HeaderValue::from_static("first"));
        h.append("x-title", HeaderValue::from_static("second"));
        h.append("x-other", HeaderValue::from_static("no"));
        let got: Vec<(String, String)> = forwarded_headers(&h, &names)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let want = [("x-title", "first"), ("traceparent", "tp")];
        assert_eq!(
            got,
            want.map(|(n, v)| (n.to_owned(), v.to_owned())).to_vec()
        );
        assert!(forwarded_headers(&HeaderMap::new(), &names).is_empty());
    }
}
