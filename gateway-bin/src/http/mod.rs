//! HTTP handlers. [`handle`] dispatches on method and path; every failure becomes the
//! OpenAI error shape through [`error_response`].

mod admin;
mod chat;
mod embeddings;
mod ingress;
mod messages;
mod models;
mod responses;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::CONTENT_TYPE;
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
    ingress::error_with_body(err, Bytes::from(err.to_json()))
}

/// The endpoints there are, for a 404's message.
const ENDPOINTS: &str = "POST /v1/chat/completions, POST /v1/responses, POST /v1/messages, \
POST /v1/messages/count_tokens, POST /v1/embeddings, GET /v1/models, GET /healthz, \
GET /readyz, GET /metrics and GET /admin/{config,health,usage}";

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
            ingress::handle::<chat::Chat>(app, req, request_id).await
        }
        (_, "/v1/chat/completions" | "/chat/completions") => Err(GatewayError::method_not_allowed(
            "Use POST for /v1/chat/completions.",
        )),
        (&Method::POST, "/v1/messages") => {
            ingress::handle::<messages::Messages>(app, req, request_id).await
        }
        (&Method::POST, "/v1/messages/count_tokens") => Ok(as_anthropic(
            messages::count_tokens(&app, req, request_id).await,
            request_id,
        )),
        (&Method::POST, "/v1/responses" | "/responses") => {
            ingress::handle::<responses::Responses>(app, req, request_id).await
        }
        (_, "/v1/responses" | "/responses") => Err(GatewayError::method_not_allowed(
            "Use POST for /v1/responses (this gateway keeps no responses to GET).",
        )),
        (_, "/v1/messages" | "/v1/messages/count_tokens") => Err(GatewayError::method_not_allowed(
            "Use POST for /v1/messages.",
        )),
        (&Method::POST, "/v1/embeddings" | "/embeddings") => {
            embeddings::create(app, req, request_id).await
        }
        (_, "/v1/embeddings" | "/embeddings") => Err(GatewayError::method_not_allowed(
            "Use POST for /v1/embeddings.",
        )),
        (&Method::GET, "/v1/models" | "/models") => {
            let answer = models::list(&app, &req).await;
            in_clients_dialect(&req, answer, request_id)
        }
        (&Method::GET, p) if p.starts_with("/v1/models/") || p.starts_with("/models/") => {
            let id = p.split_once("/models/").map_or("", |(_, id)| id).to_owned();
            let answer = models::retrieve(&app, &req, &id).await;
            in_clients_dialect(&req, answer, request_id)
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
            "Unknown path {} {p}. This gateway serves {ENDPOINTS}.",
            req.method()
        ))),
    }
}

/// An answer to a path both OpenAI's and Anthropic's clients call (`/v1/models`): an
/// Anthropic client gets its errors in Anthropic's shape and the `request-id` header
/// its SDK reads; any other client gets the answer as it is (errors in OpenAI's shape).
fn in_clients_dialect<B>(
    req: &Request<B>,
    answer: Result<Response<Body>, GatewayError>,
    request_id: &str,
) -> Result<Response<Body>, GatewayError> {
    if !models::anthropic_client(req) {
        return answer;
    }
    Ok(as_anthropic(answer, request_id))
}

/// An answer for an Anthropic client: an error in Anthropic's shape, and the
/// `request-id` header its SDK reads.
fn as_anthropic(answer: Result<Response<Body>, GatewayError>, request_id: &str) -> Response<Body> {
    let mut resp = answer.unwrap_or_else(|e| ingress::error_response_in::<messages::Messages>(&e));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

/// A query string's `key=value` pairs, values percent-decoded (`+` as a space); a
/// pair without `=` has an empty value.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (&str, String)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(&v.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        (k, v)
    })
}

/// Checks the gateway key when `[auth]` has keys; returns the key used. The key may
/// come as `Authorization: Bearer` (OpenAI's SDKs), `x-api-key` (Anthropic's) or
/// `x-goog-api-key` (Google's).
pub(crate) fn authenticate<'s, B>(
    snap: &'s modelway_core::Snapshot,
    req: &Request<B>,
) -> Result<Option<&'s modelway_core::config::ClientKey>, GatewayError> {
    let auth = snap.config.auth();
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
