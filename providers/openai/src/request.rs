//! Canonical request → the upstream's HTTP request.
//!
//! The canonical request is serialised back as the client sent it (unknown fields
//! included), naming the attempt's upstream model. Only what a preset needs is
//! rewritten, and the request is copied only when something must change.

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderName, Method, Request};
use http_body_util::Full;
use modelway_core::chat::{ChatRequest, Role};
use modelway_core::embed::EmbedRequest;
use modelway_core::http_client::upstream_request;
use modelway_core::{Attempt, ClientDialect, ProviderError};

use crate::preset::{is_openai_reasoning_model, MaxTokensField};
use crate::OpenAiProvider;

/// Which of the upstream's APIs an attempt went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST {base_url}/chat/completions`.
    ChatCompletions,
    /// `POST {base_url}/responses`: a Responses client's body, as it came.
    Responses,
}

/// Fields of OpenRouter's request dialect; only OpenRouter itself receives them.
const OPENROUTER_FIELDS: &[&str] = &["models", "provider"];

/// Client headers OpenRouter uses for app attribution.
const ATTRIBUTION_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("http-referer"),
    HeaderName::from_static("x-title"),
];

/// Applies the preset's rewrites for upstream `model`; `None` when the request can go
/// as it is. The model itself is not rewritten here (see [`body`]).
fn rewrite(
    p: &OpenAiProvider,
    req: &ChatRequest,
    model: &str,
    stream: bool,
    foreign: &[&str],
) -> Option<ChatRequest> {
    let preset = p.preset;
    let mut owned: Option<ChatRequest> = None;
    let mut edit =
        |f: &mut dyn FnMut(&mut ChatRequest)| f(owned.get_or_insert_with(|| req.clone()));

    if !preset.developer_role && req.messages.iter().any(|m| m.role == Role::Developer) {
        edit(&mut |r| {
            for m in &mut r.messages {
                if m.role == Role::Developer {
                    m.role = Role::System;
                }
            }
        });
    }
    match preset.max_tokens {
        MaxTokensField::OpenAi if req.max_tokens.is_some() && is_openai_reasoning_model(model) => {
            edit(&mut |r| {
                let n = r.max_tokens.take();
                r.max_completion_tokens = r.max_completion_tokens.or(n);
            })
        }
        MaxTokensField::Legacy if req.max_completion_tokens.is_some() => edit(&mut |r| {
            let n = r.max_completion_tokens.take();
            r.max_tokens = r.max_tokens.or(n);
        }),
        _ => {}
    }
    if !preset.openrouter && OPENROUTER_FIELDS.iter().any(|f| req.extra.contains_key(*f)) {
        edit(&mut |r| {
            for f in OPENROUTER_FIELDS {
                r.extra.remove(*f);
            }
        });
    }
    // A call translated from another dialect may hold that dialect's own top-level
    // fields (Anthropic's `top_k`, `thinking`, …), which OpenAI rejects as unknown.
    if foreign.iter().any(|f| req.extra.contains_key(*f)) {
        edit(&mut |r| {
            for f in foreign {
                r.extra.remove(*f);
            }
        });
    }
    if req.is_stream() != stream {
        edit(&mut |r| r.stream = Some(stream));
    }
    if !stream && req.stream_options.is_some() {
        edit(&mut |r| r.stream_options = None);
    }
    if stream {
        match (&req.stream_options, preset.stream_options) {
            (Some(_), false) => edit(&mut |r| r.stream_options = None),
            // Always ask for usage where the server supports it; the gateway's stream
            // normalizer hides it from clients that did not ask.
            (Some(o), true) if o.include_usage != Some(true) => edit(&mut |r| {
                if let Some(o) = r.stream_options.as_mut() {
                    o.include_usage = Some(true);
                }
            }),
            _ => {}
        }
    }
    owned
}

/// `stream_options` asking for usage, as the first member of the upstream object.
const USAGE_FIELD: &[u8] = br#""stream_options":{"include_usage":true},"#;

fn serialise(r: &ChatRequest) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(r).map_err(|e| ProviderError::InvalidRequest {
        message: format!("request cannot be serialised: {e}"),
        param: None,
    })
}

/// The upstream body, naming the attempt's model (the request names the client's).
/// When the preset needs no rewrite, the client's own bytes go out with the model
/// spliced in; otherwise the (rewritten) request is serialised with the upstream
/// model. Naming the model and asking for usage on streams copy the request only
/// when a rewrite already did (or an escaped key defeats the splice).
fn body(p: &OpenAiProvider, attempt: &Attempt<'_>, stream: bool) -> Result<Vec<u8>, ProviderError> {
    let req = attempt.request();
    let model = attempt.model();
    let foreign = match attempt.call().dialect() {
        ClientDialect::Messages => modelway_core::dialect::messages::ANTHROPIC_ONLY_FIELDS,
        ClientDialect::ChatCompletions | ClientDialect::Responses => &[],
    };
    let mut rewritten = rewrite(p, req, model, stream, foreign);
    let insert: &[u8] = if stream
        && p.preset.stream_options
        && rewritten.as_ref().unwrap_or(req).stream_options.is_none()
    {
        USAGE_FIELD
    } else {
        b""
    };
    if rewritten.is_none() {
        if let Some(out) = attempt
            .client_body()
            .and_then(|raw| crate::splice::with_model(raw, model, insert))
        {
            return Ok(out);
        }
    }
    match &mut rewritten {
        Some(r) if r.model != model => model.clone_into(&mut r.model),
        Some(_) => {}
        None if req.model != model => {
            // Splice the model into the serialised request rather than copy it; the
            // scanner gives up only on an escaped key (an odd unknown field), and then
            // the copy is made.
            if let Some(out) = crate::splice::with_model(&serialise(req)?, model, insert) {
                return Ok(out);
            }
            let mut r = req.clone();
            model.clone_into(&mut r.model);
            rewritten = Some(r);
        }
        None => {}
    }
    let json = serialise(rewritten.as_ref().unwrap_or(req))?;
    if insert.is_empty() {
        return Ok(json);
    }
    // `json` is an object with at least `model` and `messages`, and has no
    // `stream_options`: putting it first yields a valid object with no duplicate.
    let mut out = Vec::with_capacity(json.len() + insert.len());
    out.push(b'{');
    out.extend_from_slice(insert);
    out.extend_from_slice(&json[1..]);
    Ok(out)
}

/// The upstream `POST …/chat/completions` request.
pub(crate) fn build(
    p: &OpenAiProvider,
    attempt: &Attempt<'_>,
    stream: bool,
) -> Result<Request<Full<Bytes>>, ProviderError> {
    let body = body(p, attempt, stream)?;
    Ok(post(
        p,
        p.chat_url.clone(),
        Bytes::from(body),
        stream,
        attempt,
    ))
}

/// A `POST` of `body` to `url` with the provider's credentials (or the client's own
/// key, where allowed), attribution for OpenRouter and the configured headers.
pub(crate) fn post(
    p: &OpenAiProvider,
    url: http::Uri,
    body: Bytes,
    stream: bool,
    attempt: &Attempt<'_>,
) -> Request<Full<Bytes>> {
    upstream_request(
        Method::POST,
        url,
        Some(body),
        stream,
        Some(attempt),
        &p.headers,
        |h| credentials_and_attribution(p, attempt, h),
    )
}

/// The provider's key — or a client's own, where the provider allows one — and, for
/// OpenRouter, the client's app attribution unless the provider configures its own.
fn credentials_and_attribution<R>(
    p: &OpenAiProvider,
    attempt: &Attempt<'_, R>,
    h: &mut http::HeaderMap,
) {
    if let Some(auth) = attempt
        .client_key_header("Bearer ")
        .or_else(|| p.auth.clone())
    {
        h.insert(AUTHORIZATION, auth);
    }
    if p.preset.openrouter {
        for name in &ATTRIBUTION_HEADERS {
            let configured = p.headers.iter().any(|(n, _)| n == name);
            if let (false, Some(v)) = (configured, attempt.header(name.as_str())) {
                h.append(name.clone(), v.clone());
            }
        }
    }
}

/// The upstream `POST …/embeddings` request: the client's bytes with only the model
/// spliced in, or the request serialised naming the attempt's model.
pub(crate) fn embeddings(
    p: &OpenAiProvider,
    attempt: &Attempt<'_, EmbedRequest>,
) -> Result<Request<Full<Bytes>>, ProviderError> {
    let model = attempt.model();
    let spliced = attempt
        .client_body()
        .and_then(|raw| crate::splice::with_model(raw, model, b""));
    let body = match spliced {
        Some(b) => b,
        None => {
            let req = attempt.request();
            let json = serde_json::to_vec(req).map_err(|e| ProviderError::InvalidRequest {
                message: format!("request cannot be serialised: {e}"),
                param: None,
            })?;
            match crate::splice::with_model(&json, model, b"") {
                Some(b) => b,
                // An escaped key in an unknown field defeats the splice: copy instead.
                None => {
                    let mut r = req.clone();
                    model.clone_into(&mut r.model);
                    serde_json::to_vec(&r).map_err(|e| ProviderError::InvalidRequest {
                        message: format!("request cannot be serialised: {e}"),
                        param: None,
                    })?
                }
            }
        }
    };
    Ok(upstream_request(
        Method::POST,
        p.embeddings_url.clone(),
        Some(Bytes::from(body)),
        false,
        Some(attempt),
        &p.headers,
        |h| credentials_and_attribution(p, attempt, h),
    ))
}

/// The upstream `GET …/models` request.
pub(crate) fn models(p: &OpenAiProvider) -> Request<Full<Bytes>> {
    upstream_request(
        Method::GET,
        p.models_url.clone(),
        None,
        false,
        None::<&Attempt<'_>>,
        &p.headers,
        |h| {
            if let Some(auth) = &p.auth {
                h.insert(AUTHORIZATION, auth.clone());
            }
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::OpenAiFactory;
    use modelway_core::chat::Message;
    use modelway_core::{Call, CallMeta, Timeouts};

    fn provider(kind: &str) -> OpenAiProvider {
        OpenAiProvider {
            name: "p".into(),
            preset: OpenAiFactory::for_kind(kind).unwrap().preset,
            chat_url: http::Uri::from_static("http://127.0.0.1:9/v1/chat/completions"),
            embeddings_url: http::Uri::from_static("http://127.0.0.1:9/v1/embeddings"),
            models_url: http::Uri::from_static("http://127.0.0.1:9/v1/models"),
            responses_url: None,
            auth: None,
            headers: Vec::new(),
        }
    }

    fn timeouts() -> Timeouts {
        Timeouts::uniform(std::time::Duration::from_secs(1))
    }

    #[test]
    fn embeddings_forward_the_client_bytes_with_only_the_model_spliced() {
        let raw = r#"{ "input" : ["a","b"], "model":"route", "encoding_format":"base64", "x_vendor":{"k":1} }"#;
        let req: EmbedRequest = serde_json::from_str(raw).unwrap();
        let call = Call::from_client(req.clone(), Bytes::from(raw), CallMeta::default());
        let attempt = Attempt::new(&call, "text-embedding-3-small", timeouts());
        let http_req = embeddings(&provider("openai"), &attempt).unwrap();
        assert_eq!(http_req.uri(), "http://127.0.0.1:9/v1/embeddings");
        let body = futures_body(http_req);
        assert_eq!(
            body,
            raw.replace(r#""model":"route""#, r#""model":"text-embedding-3-small""#),
            "the client's bytes, spacing and unknown fields included"
        );
        // Built in-process (no client bytes): the request serialised, naming the model.
        let call = Call::new(req);
        let attempt = Attempt::new(&call, "up-model", timeouts());
        let v: serde_json::Value = serde_json::from_str(&futures_body(
            embeddings(&provider("openai"), &attempt).unwrap(),
        ))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model": "up-model", "input": ["a", "b"],
                "encoding_format": "base64", "x_vendor": {"k": 1}})
        );
    }

    fn futures_body(r: Request<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let bytes = futures_util::FutureExt::now_or_never(r.into_body().collect())
            .unwrap()
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// The body `kind` sends for `req` at upstream `model`.
    fn body_of(kind: &str, req: &ChatRequest, model: &str, stream: bool) -> serde_json::Value {
        let call = Call::new(req.clone());
        let attempt = Attempt::new(&call, model, timeouts());
        serde_json::from_slice(&body(&provider(kind), &attempt, stream).unwrap()).unwrap()
    }

    #[test]
    fn client_bytes_go_out_with_the_upstream_model_spliced_in() {
        let raw: &[u8] = br#"{"model":"client-alias", "messages":[{"role":"developer","content":"be brief"}],"max_tokens":5,"x_unknown":{"k":[1, 2]}}"#;
        let req: ChatRequest = serde_json::from_slice(raw).unwrap();
        let call = Call::from_client(req, Bytes::from_static(raw), CallMeta::default());
        // No rewrite: the client's bytes, only the model changed (spacing kept).
        let got = body(
            &provider("openai"),
            &Attempt::new(&call, "gpt-4o", timeouts()),
            false,
        );
        let want = String::from_utf8_lossy(raw).replace("client-alias", "gpt-4o");
        assert_eq!(String::from_utf8(got.unwrap()).unwrap(), want);
        // Streams ask for usage in the same bytes.
        let got = body(
            &provider("openai"),
            &Attempt::new(&call, "gpt-4o", timeouts()),
            true,
        );
        let v: serde_json::Value = serde_json::from_slice(&got.unwrap()).unwrap();
        assert_eq!(
            (
                &v["model"],
                &v["stream_options"]["include_usage"],
                &v["x_unknown"]["k"][1]
            ),
            (&"gpt-4o".into(), &true.into(), &2.into())
        );
        // A rewrite chosen by the upstream model (o3 takes `max_completion_tokens`)
        // serialises the rewritten request, naming the upstream model.
        let got = body(
            &provider("openai"),
            &Attempt::new(&call, "o3-mini", timeouts()),
            false,
        );
        let v: serde_json::Value = serde_json::from_slice(&got.unwrap()).unwrap();
        assert_eq!(
            (
                &v["model"],
                &v["max_completion_tokens"],
                v.get("max_tokens")
            ),
            (&"o3-mini".into(), &5.into(), None)
        );
        // Without the client's bytes (an in-process call, an edited request) the
        // serialised request gets the upstream model too, even when an unknown field's
        // escaped key makes the splice give up.
        let mut edited = call.clone();
        edited
            .request_mut()
            .extra
            .insert("odd\"key".into(), serde_json::json!(1));
        for stream in [false, true] {
            let a = Attempt::new(&edited, "gpt-4o", timeouts());
            let got = body(&provider("openai"), &a, stream).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&got).unwrap();
            assert_eq!(
                (
                    &v["model"],
                    &v["odd\"key"],
                    &v["max_tokens"],
                    v["stream"] == true
                ),
                (&"gpt-4o".into(), &1.into(), &5.into(), stream)
            );
        }
        let plain = Call::new(call.request().clone());
        let got = body(
            &provider("openai"),
            &Attempt::new(&plain, "gpt-4o", timeouts()),
            true,
        );
        let v: serde_json::Value = serde_json::from_slice(&got.unwrap()).unwrap();
        assert_eq!(
            (
                &v["model"],
                &v["stream_options"]["include_usage"],
                &v["x_unknown"]["k"][1]
            ),
            (&"gpt-4o".into(), &true.into(), &2.into())
        );
        // Another preset's rewrite (no developer role) likewise.
        let got = body(
            &provider("mistral"),
            &Attempt::new(&call, "mistral-large", timeouts()),
            false,
        );
        let v: serde_json::Value = serde_json::from_slice(&got.unwrap()).unwrap();
        assert_eq!(
            (
                &v["model"],
                &v["messages"][0]["role"],
                &v["x_unknown"]["k"][0]
            ),
            (&"mistral-large".into(), &"system".into(), &1.into())
        );
    }

    /// A request naming the client's model, which is never the upstream's.
    fn req() -> ChatRequest {
        let mut r = ChatRequest::new(
            "client-alias",
            vec![
                Message::text(Role::Developer, "be brief"),
                Message::text(Role::User, "hi"),
            ],
        );
        r.extra
            .insert("foo_unknown".into(), serde_json::json!({"a": 1}));
        r
    }

    #[test]
    fn rewrite_rules() {
        // (kind, model, setup, stream, json pointer, expected value)
        type Setup = fn(&mut ChatRequest);
        let rows: &[(&str, &str, Setup, bool, &str, serde_json::Value)] = &[
            (
                "openai",
                "gpt-4o",
                |_| {},
                false,
                "/foo_unknown/a",
                1.into(),
            ),
            (
                "openai",
                "gpt-4o",
                |_| {},
                false,
                "/messages/0/role",
                "developer".into(),
            ),
            (
                "mistral",
                "m",
                |_| {},
                false,
                "/messages/0/role",
                "system".into(),
            ),
            (
                "openai",
                "o3-mini",
                |r| r.max_tokens = Some(5),
                false,
                "/max_completion_tokens",
                5.into(),
            ),
            (
                "openai",
                "o3-mini",
                |r| r.max_tokens = Some(5),
                false,
                "/max_tokens",
                serde_json::Value::Null,
            ),
            (
                "openai",
                "gpt-4o",
                |r| r.max_tokens = Some(5),
                false,
                "/max_tokens",
                5.into(),
            ),
            (
                "ollama",
                "llama3",
                |r| r.max_completion_tokens = Some(7),
                false,
                "/max_tokens",
                7.into(),
            ),
            (
                "openai",
                "gpt-4o",
                |r| {
                    r.extra
                        .insert("provider".into(), serde_json::json!({"order":["x"]}));
                },
                false,
                "/provider",
                serde_json::Value::Null,
            ),
            (
                "openrouter",
                "x/y",
                |r| {
                    r.extra
                        .insert("provider".into(), serde_json::json!({"order":["x"]}));
                },
                false,
                "/provider/order/0",
                "x".into(),
            ),
            (
                "openai",
                "gpt-4o",
                |_| {},
                true,
                "/stream_options/include_usage",
                true.into(),
            ),
            ("openai", "gpt-4o", |_| {}, true, "/stream", true.into()),
            (
                "openai",
                "gpt-4o",
                |r| {
                    r.stream_options = Some(
                        serde_json::from_str(
                            r#"{"include_usage":false,"include_obfuscation":false}"#,
                        )
                        .unwrap(),
                    )
                },
                true,
                "/stream_options/include_obfuscation",
                false.into(),
            ),
            (
                "mistral",
                "m",
                |r| {
                    r.stream_options =
                        Some(serde_json::from_str(r#"{"include_usage":true}"#).unwrap())
                },
                true,
                "/stream_options",
                serde_json::Value::Null,
            ),
            (
                "openai",
                "gpt-4o",
                |r| r.stream = Some(true),
                false,
                "/stream",
                false.into(),
            ),
        ];
        for (kind, model, setup, stream, ptr, want) in rows {
            let mut r = req();
            setup(&mut r);
            let got = body_of(kind, &r, model, *stream);
            let v = got.pointer(ptr).cloned().unwrap_or(serde_json::Value::Null);
            assert_eq!(&v, want, "{kind} {model} {ptr}: body {got}");
            assert_eq!(got["model"], *model, "{kind} {model}: body {got}");
        }
    }
}
