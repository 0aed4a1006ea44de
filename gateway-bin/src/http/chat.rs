//! `POST /v1/chat/completions`: JSON or SSE.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use modelway_core::chat::ChatRequest;
use modelway_core::sse::{encode_data, encode_json_data, DONE};
use modelway_core::{Call, CallMeta, ChunkStream, GatewayError, Served};

use super::{authenticate, error_response, json_response, Body};
use crate::app::App;
use crate::limits::{check_key, drain, Metered, OverBudget, RateHeaders, Ticket};
use crate::telemetry::RequestRecord;

/// Client headers providers may forward upstream (attribution and trace context).
const FORWARDED: [HeaderName; 4] = [
    HeaderName::from_static("http-referer"),
    HeaderName::from_static("x-title"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

pub(super) async fn completions(
    app: Arc<App>,
    req: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, GatewayError> {
    let mut rec =
        Some(
            app.telemetry
                .request(request_id, req.headers(), "chat", "/v1/chat/completions"),
        );
    let mut rate = RateHeaders::default();
    let result = serve(app, req, request_id, &mut rec, &mut rate).await;
    // A stream took the record with it; anything else ends here.
    if let Some(mut rec) = rec {
        match &result {
            Ok(resp) => rec.status(resp.status().as_u16()),
            Err(e) => rec.failed(e),
        }
        rec.finish();
    }
    // A limited key's headers go on every answer, refusals included.
    let mut resp = result.unwrap_or_else(|e| error_response(&e));
    rate.apply(resp.headers_mut());
    Ok(resp)
}

/// What a JSON answer cost, USD (absent when its model has no price).
const X_MODELWAY_COST: HeaderName = HeaderName::from_static("x-modelway-cost");

/// A cost as a plain decimal, to the nano-dollar: `0.000123`, not `1.23e-4`.
fn format_cost(c: f64) -> String {
    let s = format!("{c:.9}");
    let s = s.trim_end_matches('0');
    s.strip_suffix('.')
        .map_or_else(|| s.to_owned(), |t| format!("{t}.0"))
}

/// The header a client sends its own provider key in (where allowed).
const PROVIDER_KEY: HeaderName = HeaderName::from_static("x-modelway-provider-key");

async fn serve(
    app: Arc<App>,
    req: Request<Incoming>,
    request_id: &str,
    record: &mut Option<RequestRecord>,
    rate: &mut RateHeaders,
) -> Result<Response<Body>, GatewayError> {
    // One snapshot for the whole request, however long it streams.
    let snap = app.gateway.snapshot();
    let server = &snap.config.server;
    let limit = server.max_body_bytes;
    // Admission first: a request refused for load costs nothing more. Its body is
    // drained unread so the client reads the 503 rather than a reset.
    let in_flight = match app.admission.enter(server.max_in_flight) {
        Ok(g) => g,
        Err(e) => {
            drain(req.into_body(), limit as u64);
            return Err(e);
        }
    };
    let key = authenticate(&snap, &req)?;

    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::payload_too_large(limit));
    }
    let mut held = match app
        .admission
        .hold_body(declared.unwrap_or(0), server.max_in_flight_bytes)
    {
        Ok(h) => h,
        Err(e) => {
            drain(req.into_body(), limit as u64);
            return Err(e);
        }
    };
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let body = Limited::new(Metered::new(body, &mut held), limit)
        .collect()
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
        })?
        .to_bytes();

    let chat: ChatRequest = parse(&body)?;
    if let Some(key) = key {
        // Every model the call may reach: `model` and OpenRouter's `models` list.
        let extra = chat.extra.get("models").and_then(|m| m.as_array());
        let names = std::iter::once(chat.model.as_str())
            .filter(|m| !m.is_empty())
            .chain(extra.into_iter().flatten().filter_map(|m| m.as_str()));
        for model in names {
            if !key.allows(model) {
                return Err(GatewayError::forbidden(format!(
                    "The key `{}` may not use the model `{model}`.",
                    key.name
                )));
            }
        }
    }
    // The record knows the call before its limits are checked, so a refusal's log
    // line names the key and the model.
    let caller = key.map(|k| k.name.clone());
    if let Some(rec) = record.as_mut() {
        let route = snap
            .config
            .routes
            .get_key_value(chat.model.as_str())
            .map(|(k, _)| k.as_str());
        rec.call(&chat, caller.as_deref(), route);
    }
    let estimate = modelway_core::limits::estimate_tokens(
        body.len(),
        chat.max_completion_tokens.or(chat.max_tokens),
    );
    let mut ticket = Ticket::new(in_flight, estimate);
    if let Some(key) = key {
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
    }
    let provider_key = match headers.get(&PROVIDER_KEY) {
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
    let meta = CallMeta {
        request_id: request_id.to_owned(),
        caller,
        headers: FORWARDED
            .iter()
            .filter_map(|name| Some((name.clone(), headers.get(name)?.clone())))
            .collect(),
        deadline: None,
        trace: record.as_ref().and_then(RequestRecord::trace),
        keep_usage: true,
        provider_key,
    };
    if let Some(rec) = record.as_mut() {
        rec.hold(ticket);
    }
    let stream = chat.is_stream();
    let send_usage = chat.wants_stream_usage();
    let keepalive = stream
        .then(|| snap.router.stream_keepalive(&chat.model))
        .flatten();
    let call = Call::from_client(chat, body, meta);

    if let Some(every) = keepalive {
        // The head waits for the commit only `stream_keepalive` long; then it goes out
        // with SSE comments (which SDKs ignore) until the commit, and failover before
        // the commit stays invisible.
        let app = app.clone();
        let snap2 = snap.clone();
        let mut pending: PendingStream =
            Box::pin(async move { app.gateway.execute_stream_on(&snap2, call).await });
        return match tokio::time::timeout(every, &mut pending).await {
            Ok(served) => {
                let served = served?;
                rate.upstream(served.upstream_limits);
                let rec = record_served(record, &served, &snap);
                Ok(stream_response(served, rec, send_usage))
            }
            Err(_) => Ok(keepalive_response(
                pending,
                every,
                record.take(),
                send_usage,
                snap,
            )),
        };
    }
    if stream {
        let served = app.gateway.execute_stream_on(&snap, call).await?;
        rate.upstream(served.upstream_limits);
        let rec = record_served(record, &served, &snap);
        Ok(stream_response(served, rec, send_usage))
    } else {
        let served = app.gateway.execute_on(&snap, call).await?;
        rate.upstream(served.upstream_limits);
        let mut cost = None;
        if let Some(rec) = record.as_mut() {
            rec.served(&served, &snap);
            rec.completion(&served.value);
            cost = rec.cost();
        }
        let body = served
            .value
            .to_json()
            .map_err(|e| GatewayError::internal(format!("could not encode the answer: {e}")))?;
        let mut resp = json_response(StatusCode::OK, body);
        served_headers(&mut resp, &served);
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

/// Parses the body once into the canonical request, with OpenAI-style 400s.
fn parse(body: &Bytes) -> Result<ChatRequest, GatewayError> {
    if body.is_empty() {
        return Err(GatewayError::bad_request(
            "The request body is empty; expected a JSON chat completion request.",
        ));
    }
    let req: ChatRequest = serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let param = ["model", "messages"]
            .into_iter()
            .find(|f| msg.contains(&format!("`{f}`")));
        let mut err = GatewayError::bad_request(if e.is_syntax() || e.is_eof() {
            format!("We could not parse the JSON body of your request: {msg}")
        } else {
            format!("Invalid request body: {msg}")
        });
        if let Some(p) = param {
            err = err.with_param(p);
        }
        err
    })?;
    // OpenRouter's dialect lets `models` stand in for `model`.
    let has_models = req
        .extra
        .get("models")
        .and_then(|m| m.as_array())
        .is_some_and(|m| !m.is_empty());
    if req.model.trim().is_empty() && !has_models {
        return Err(GatewayError::bad_request("`model` must not be empty.").with_param("model"));
    }
    if req.messages.is_empty() {
        return Err(
            GatewayError::bad_request("`messages` must contain at least one message.")
                .with_param("messages"),
        );
    }
    if req.n == Some(0) {
        return Err(GatewayError::bad_request("`n` must be at least 1.").with_param("n"));
    }
    Ok(req)
}

/// Says who served the answer, and which request parameters it had to drop.
fn served_headers<T>(resp: &mut Response<Body>, served: &Served<T>) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&served.provider) {
        h.insert("x-modelway-provider", v);
    }
    if let Ok(v) = HeaderValue::from_str(&served.model) {
        h.insert("x-modelway-model", v);
    }
    h.insert("x-modelway-attempts", HeaderValue::from(served.attempts));
    if served.hedged {
        h.insert("x-modelway-hedged", HeaderValue::from_static("true"));
    }
    if !served.dropped_params.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&served.dropped_params.join(", ")) {
            h.insert("x-modelway-dropped-params", v);
        }
    }
}

/// The SSE response: each chunk is written as its own frame the moment it is ready;
/// a failure after the head was sent becomes a `data: {"error":…}` event, as OpenAI
/// does, and the stream ends without `[DONE]`.
fn stream_response(
    served: Served<ChunkStream>,
    rec: Option<RequestRecord>,
    send_usage: bool,
) -> Response<Body> {
    let head = Served {
        value: (),
        provider: served.provider,
        model: served.model,
        attempts: served.attempts,
        dropped_params: served.dropped_params,
        hedged: served.hedged,
        upstream_limits: served.upstream_limits,
    };
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(sse_frames(
        served.value,
        head.provider.clone(),
        rec,
        send_usage,
    ))));
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
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// A streamed call still before its commit point.
type PendingStream = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Served<ChunkStream>, GatewayError>> + Send>,
>;

/// The SSE comment sent while a stream waits for its first token.
const KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// The response of a stream whose head could not wait for its commit: a comment every
/// `every` until the engine commits, then the stream. If every target fails, the
/// client gets the error as an event: the status was already sent.
fn keepalive_response(
    pending: PendingStream,
    every: std::time::Duration,
    rec: Option<RequestRecord>,
    send_usage: bool,
    snap: Arc<modelway_core::Snapshot>,
) -> Response<Body> {
    enum State {
        Waiting(
            PendingStream,
            tokio::time::Interval,
            Option<RequestRecord>,
            Arc<modelway_core::Snapshot>,
        ),
        Streaming(Streaming),
        Done,
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let frames = futures_util::stream::unfold(
        (State::Waiting(pending, tick, rec, snap), true),
        move |(state, first)| async move {
            match state {
                State::Waiting(mut pending, mut tick, mut rec, snap) => {
                    if first {
                        // The head goes out with one comment at once.
                        tick.reset();
                        let frame = Frame::data(Bytes::from_static(KEEPALIVE));
                        return Some((
                            Ok(frame),
                            (State::Waiting(pending, tick, rec, snap), false),
                        ));
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
                                    send_usage,
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
                                let frame = Frame::data(encode_data(&e.to_json()));
                                Some((Ok(frame), (State::Done, false)))
                            }
                        },
                        _ = tick.tick() => {
                            let frame = Frame::data(Bytes::from_static(KEEPALIVE));
                            Some((Ok(frame), (State::Waiting(pending, tick, rec, snap), false)))
                        }
                    }
                }
                State::Streaming(mut s) => match s.next_frame().await {
                    (frame, true) => Some((Ok(frame), (State::Streaming(s), false))),
                    (frame, false) => Some((Ok(frame), (State::Done, false))),
                },
                State::Done => None,
            }
        },
    );
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
    sse_headers(&mut resp);
    resp
}

/// A committed stream on its way to the client, and the record it ends.
struct Streaming {
    chunks: ChunkStream,
    provider: String,
    rec: Option<RequestRecord>,
    /// The client asked for the final usage chunk (`stream_options.include_usage`);
    /// the engine sends it regardless, for the record.
    send_usage: bool,
}

impl Streaming {
    /// The next SSE frame, and whether more may follow. The last one ends the record.
    async fn next_frame(&mut self) -> (Frame<Bytes>, bool) {
        let mut next = self.chunks.next().await;
        while let Some(Ok(chunk)) = &next {
            if self.send_usage || !chunk.choices.is_empty() || chunk.usage.is_none() {
                break;
            }
            // The usage chunk the client did not ask for: read, not sent.
            if let Some(r) = self.rec.as_mut() {
                r.chunk(chunk);
            }
            next = self.chunks.next().await;
        }
        let out = match next {
            Some(Ok(mut chunk)) => {
                if let Some(r) = self.rec.as_mut() {
                    r.chunk(&chunk);
                    // The usage chunk the client asked for carries the call's cost, as
                    // OpenRouter's does (an upstream's own figure is kept).
                    if let (Some(u), Some(c)) = (chunk.usage.as_mut(), r.cost()) {
                        u.extra.entry("cost").or_insert_with(|| c.into());
                    }
                }
                match encode_json_data(&chunk) {
                    Ok(event) => (Frame::data(event), true),
                    Err(e) => {
                        let err = GatewayError::internal(format!("could not encode a chunk: {e}"));
                        if let Some(r) = self.rec.as_mut() {
                            r.failed(&err);
                        }
                        (Frame::data(encode_data(&err.to_json())), false)
                    }
                }
            }
            Some(Err(e)) => {
                tracing::warn!(provider = %self.provider, error = %e.redacted(None), "stream failed after the response started");
                let err = GatewayError::from_provider(&self.provider, &e);
                if let Some(r) = self.rec.as_mut() {
                    r.failed(&err);
                }
                (Frame::data(encode_data(&err.to_json())), false)
            }
            None => (Frame::data(Bytes::from_static(DONE)), false),
        };
        if !out.1 {
            if let Some(r) = self.rec.take() {
                r.finish();
            }
        }
        out
    }
}

fn sse_frames(
    chunks: ChunkStream,
    provider: String,
    rec: Option<RequestRecord>,
    send_usage: bool,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    let s = Streaming {
        chunks,
        provider,
        rec,
        send_usage,
    };
    futures_util::stream::unfold(Some(s), |state| async move {
        let mut s = state?;
        match s.next_frame().await {
            (frame, true) => Some((Ok(frame), Some(s))),
            (frame, false) => Some((Ok(frame), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bad_bodies_are_400s_naming_the_field() {
        let rows: &[(&str, Option<&str>)] = &[
            ("", None),
            ("{not json", None),
            (
                r#"{"messages":[{"role":"user","content":"hi"}]}"#,
                Some("model"),
            ),
            (r#"{"model":"m"}"#, Some("messages")),
            (r#"{"model":"m","messages":[]}"#, Some("messages")),
            (
                r#"{"model":"","messages":[{"role":"user","content":"hi"}]}"#,
                Some("model"),
            ),
            (r#"{"model":"m","messages":"hi"}"#, None),
            (
                r#"{"model":42,"messages":[{"role":"user","content":"hi"}]}"#,
                None,
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":0}"#,
                Some("n"),
            ),
            ("[1,2]", None),
        ];
        for (body, param) in rows {
            let err = parse(&Bytes::from(*body)).unwrap_err();
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.kind, "invalid_request_error", "{body}");
            assert_eq!(err.param.as_deref(), *param, "{body}: {}", err.message);
        }
    }
}
