//! HTTP handlers. [`handle`] dispatches on method and path; every failure becomes the
//! OpenAI error shape through [`error_response`].

mod admin;
mod chat;
mod embeddings;
mod models;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use modelway_core::provider::new_request_id;
use modelway_core::GatewayError;

use crate::app::App;

/// The response body type: a full buffer or an SSE stream.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A full body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The OpenAI-shaped error response for `err`.
pub fn error_response(err: &GatewayError) -> Response<Body> {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(status, err.to_json());
    if let Some(d) = err.retry_after {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        // OpenAI's SDKs read this one first: the wait to the millisecond.
        // Rounded up, like `Retry-After`: waiting it out is never a millisecond early.
        let ms = d.as_micros().div_ceil(1000).max(1);
        resp.headers_mut().insert(
            HeaderName::from_static("retry-after-ms"),
            HeaderValue::from(u64::try_from(ms).unwrap_or(u64::MAX)),
        );
    }
    if err.attempts > 0 {
        resp.headers_mut()
            .insert("x-modelway-attempts", HeaderValue::from(err.attempts));
    }
    resp
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Handles one request. Never fails: errors and panics become OpenAI-shaped responses.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(new_request_id, str::to_owned);
    let fut = std::panic::AssertUnwindSafe(route(app, req, &request_id)).catch_unwind();
    let mut resp = match fut.await {
        Ok(Ok(resp)) => resp,
        Ok(Err(err)) => error_response(&err),
        Err(_) => {
            tracing::error!(request_id, "handler panicked");
            error_response(&GatewayError::internal("internal error"))
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    Ok(resp)
}

async fn route(
    app: Arc<App>,
    req: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, GatewayError> {
    let path = req.uri().path();
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    match (req.method(), path) {
        (&Method::POST, "/v1/chat/completions" | "/chat/completions") => {
            chat::completions(app, req, request_id).await
        }
        (_, "/v1/chat/completions" | "/chat/completions") => Err(GatewayError::method_not_allowed(
            "Use POST for /v1/chat/completions.",
        )),
        (&Method::POST, "/v1/embeddings" | "/embeddings") => {
            embeddings::create(app, req, request_id).await
        }
        (_, "/v1/embeddings" | "/embeddings") => Err(GatewayError::method_not_allowed(
            "Use POST for /v1/embeddings.",
        )),
        (&Method::GET, "/v1/models" | "/models") => models::list(&app, &req).await,
        (&Method::GET, p) if p.starts_with("/v1/models/") || p.starts_with("/models/") => {
            let id = p.split_once("/models/").map_or("", |(_, id)| id).to_owned();
            models::retrieve(&app, &req, &id).await
        }
        (&Method::GET, "/healthz") => Ok(json_response(
            StatusCode::OK,
            br#"{"status":"ok"}"#.to_vec(),
        )),
        (&Method::GET, "/readyz") => {
            if app.is_ready() {
                Ok(json_response(
                    StatusCode::OK,
                    br#"{"status":"ready"}"#.to_vec(),
                ))
            } else {
                Err(GatewayError::unavailable("not ready"))
            }
        }
        (&Method::GET, "/metrics") => {
            let mut resp = Response::new(full(app.telemetry.metrics.render(&app.gateway)));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            Ok(resp)
        }
        (&Method::GET, "/admin/config") => admin::config(&app, &req),
        (&Method::GET, "/admin/health") => admin::health(&app, &req),
        (&Method::GET, "/admin/usage") => admin::usage(&app, &req).await,
        (_, p) => Err(GatewayError::not_found(format!(
            "Unknown path {} {p}.",
            req.method()
        ))),
    }
}

/// Checks the gateway key when `[auth]` has keys; returns the key used. The key may
/// come as `Authorization: Bearer` (OpenAI's SDKs), `x-api-key` (Anthropic's) or
/// `x-goog-api-key` (Google's).
pub(crate) fn authenticate<'s, B>(
    snap: &'s modelway_core::Snapshot,
    req: &Request<B>,
) -> Result<Option<&'s modelway_core::config::ClientKey>, GatewayError> {
    let auth = &snap.config.auth;
    if !auth.has_keys() {
        return Ok(None);
    }
    let Some(token) = presented_key(req) else {
        return Err(GatewayError::unauthorized(
            "Missing gateway key: send `Authorization: Bearer <key>` (or `x-api-key`).",
        ));
    };
    auth.lookup(token)
        .map(Some)
        .ok_or_else(|| GatewayError::unauthorized("Incorrect gateway key provided."))
}

/// The key a client presented, from whichever header its SDK uses.
pub(crate) fn presented_key<B>(req: &Request<B>) -> Option<&str> {
    bearer(req).or_else(|| {
        ["x-api-key", "x-goog-api-key"].iter().find_map(|h| {
            req.headers()
                .get(*h)?
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty())
        })
    })
}

/// The bearer token of a request, if any.
pub(crate) fn bearer<B>(req: &Request<B>) -> Option<&str> {
    let v = req
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
