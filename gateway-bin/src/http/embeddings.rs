//! `POST /v1/embeddings`: OpenAI's embeddings, served by the same engine as chat —
//! the model resolves to a route or a slug, targets are tried with their policies
//! (retries, fallback, health, hedging, provider quotas, the deadline), the gateway
//! key's `models`, `rpm` / `tpm` / `max_concurrent` and budget are checked as for
//! chat, and the request's log line, metrics (`operation="embeddings"`), server span
//! and usage record are written when it ends.
//!
//! An OpenAI-compatible upstream receives the client's bytes with the model spliced in
//! and its answer goes back as it came; Gemini is translated; a provider that cannot
//! embed (Anthropic) is skipped, and a model whose every target cannot is a 400.
//!
//! The request preamble (admission, the key, the body under its limits, the key's
//! limits, the call's metadata) is the front doors' own (`ingress::admit`); the call
//! and its answer are embeddings'.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use modelway_core::embed::EmbedRequest;
use modelway_core::{Call, GatewayError};

use super::ingress::{admit, format_cost, served_headers, X_MODELWAY_COST};
use super::{error_response, json_response, Body};
use crate::app::App;
use crate::limits::RateHeaders;
use crate::telemetry::RequestRecord;

/// Client headers providers may forward upstream (attribution and trace context).
static FORWARDED: [HeaderName; 4] = [
    HeaderName::from_static("http-referer"),
    HeaderName::from_static("x-title"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

pub(super) async fn create(
    app: Arc<App>,
    req: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, GatewayError> {
    let mut rec = app
        .telemetry
        .request(request_id, req.headers(), "embeddings", "/v1/embeddings");
    let mut rate = RateHeaders::default();
    let result = serve(app, req, request_id, &mut rec, &mut rate).await;
    match &result {
        Ok(resp) => rec.status(resp.status().as_u16()),
        Err(e) => rec.failed(e),
    }
    rec.finish();
    let mut resp = result.unwrap_or_else(|e| error_response(&e));
    rate.apply(resp.headers_mut());
    Ok(resp)
}

async fn serve(
    app: Arc<App>,
    req: Request<Incoming>,
    request_id: &str,
    record: &mut RequestRecord,
    rate: &mut RateHeaders,
) -> Result<Response<Body>, GatewayError> {
    let snap = app.gateway.snapshot();
    let mut admitted = admit(&app, &snap, req).await?;
    let embed = parse(&admitted.body)?;
    admitted.check_models(&embed.model, &embed.extra)?;
    let route = snap
        .config
        .routes()
        .get_key_value(embed.model.as_str())
        .map(|(k, _)| k.as_str());
    record.embedding_call(&embed, admitted.key.map(|k| k.name.as_str()), route);
    // Embeddings produce no output tokens: the estimate is the body's.
    let estimate = modelway_core::limits::estimate_tokens(admitted.body.len(), None);
    let ticket = admitted.ticket(&app, request_id, estimate, rate).await?;
    let meta = admitted.meta(request_id, &FORWARDED, record.trace(), false)?;
    let body = admitted.body.clone();
    record.hold(ticket);
    let call = Call::from_client(embed, body, meta);
    let served = app.gateway.embed_on(&snap, call).await?;
    rate.upstream(served.upstream_limits);
    record.served(&served, &snap);
    record.embeddings(&served.value);
    let cost = record.cost();
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

/// Parses the body once into the canonical request, with OpenAI-style 400s.
fn parse(body: &Bytes) -> Result<EmbedRequest, GatewayError> {
    if body.is_empty() {
        return Err(GatewayError::bad_request(
            "The request body is empty; expected a JSON embeddings request.",
        ));
    }
    let req: EmbedRequest = serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let mut err = GatewayError::bad_request(if e.is_syntax() || e.is_eof() {
            format!("We could not parse the JSON body of your request: {msg}")
        } else {
            format!("Invalid request body: {msg}")
        });
        if let Some(p) = (!e.is_syntax() && !e.is_eof())
            .then(|| offending_field(body))
            .flatten()
        {
            err = err.with_param(p);
        }
        err
    })?;
    req.validate()?;
    Ok(req)
}

/// Which known field made a well-formed body fail to parse (read again, on the error
/// path only: the parser's message does not say).
fn offending_field(body: &[u8]) -> Option<&'static str> {
    use modelway_core::embed::{EmbedInput, EncodingFormat};
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let o = v.as_object()?;
    let bad =
        |f: &str, ok: &dyn Fn(serde_json::Value) -> bool| o.get(f).is_some_and(|v| !ok(v.clone()));
    let checks: [(&'static str, &dyn Fn(serde_json::Value) -> bool); 5] = [
        ("model", &|v| serde_json::from_value::<String>(v).is_ok()),
        ("input", &|v| {
            serde_json::from_value::<EmbedInput>(v).is_ok()
        }),
        ("dimensions", &|v| {
            serde_json::from_value::<Option<u64>>(v).is_ok()
        }),
        ("encoding_format", &|v| {
            serde_json::from_value::<Option<EncodingFormat>>(v).is_ok()
        }),
        ("user", &|v| {
            serde_json::from_value::<Option<String>>(v).is_ok()
        }),
    ];
    ["model", "input"]
        .into_iter()
        .find(|f| !o.contains_key(*f))
        .or_else(|| checks.iter().find(|(f, ok)| bad(f, ok)).map(|(f, _)| *f))
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
            (r#"{"input":"x"}"#, Some("model")),
            (r#"{"model":"m"}"#, Some("input")),
            (r#"{"model":"","input":"x"}"#, Some("model")),
            (r#"{"model":"m","input":[]}"#, Some("input")),
            (r#"{"model":"m","input":""}"#, Some("input")),
            (r#"{"model":"m","input":["a",2]}"#, Some("input")),
            (r#"{"model":"m","input":{"a":1}}"#, Some("input")),
            (
                r#"{"model":"m","input":"x","dimensions":0}"#,
                Some("dimensions"),
            ),
            (
                r#"{"model":"m","input":"x","dimensions":-1}"#,
                Some("dimensions"),
            ),
            (
                r#"{"model":"m","input":"x","encoding_format":"int8"}"#,
                Some("encoding_format"),
            ),
            ("[1,2]", None),
        ];
        for (body, param) in rows {
            let err = parse(&Bytes::from(*body)).unwrap_err();
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.kind, "invalid_request_error", "{body}");
            assert_eq!(err.param.as_deref(), *param, "{body}: {}", err.message);
        }
        let ok = parse(&Bytes::from_static(
            br#"{"model":"m","input":[[1,2]],"encoding_format":"base64","dimensions":4}"#,
        ))
        .unwrap();
        assert_eq!(ok.input.len(), 1);
    }
}
