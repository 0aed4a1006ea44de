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
//! limits) is the one `chat.rs` runs; it moves with chat's onto the generic dialect
//! handler when that lands.

use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use modelway_core::embed::EmbedRequest;
use modelway_core::{Call, CallMeta, GatewayError, Served};

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

/// The header a client sends its own provider key in (where allowed).
const PROVIDER_KEY: HeaderName = HeaderName::from_static("x-modelway-provider-key");

/// What the answer cost, USD (absent when its model has no price).
const X_MODELWAY_COST: HeaderName = HeaderName::from_static("x-modelway-cost");

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
    let server = &snap.config.server;
    let limit = server.max_body_bytes;
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

    let embed = parse(&body)?;
    if let Some(key) = key {
        // Every model the call may reach: `model`, and an OpenRouter `models` list an
        // OpenRouter upstream would act on.
        let extra = embed.extra.get("models").and_then(|m| m.as_array());
        let names = std::iter::once(embed.model.as_str())
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
    let caller = key.map(|k| k.name.clone());
    let route = snap
        .config
        .routes
        .get_key_value(embed.model.as_str())
        .map(|(k, _)| k.as_str());
    record.embedding_call(&embed, caller.as_deref(), route);
    // Embeddings produce no output tokens: the estimate is the body's.
    let estimate = modelway_core::limits::estimate_tokens(body.len(), None);
    let mut ticket = Ticket::new(in_flight, estimate);
    if let Some(key) = key {
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
        trace: record.trace(),
        keep_usage: false,
        provider_key,
    };
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

/// Says who served the answer.
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

/// A cost as a plain decimal, to the nano-dollar: `0.000123`, not `1.23e-4`.
fn format_cost(c: f64) -> String {
    let s = format!("{c:.9}");
    let s = s.trim_end_matches('0');
    s.strip_suffix('.')
        .map_or_else(|| s.to_owned(), |t| format!("{t}.0"))
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
