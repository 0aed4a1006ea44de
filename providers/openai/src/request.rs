//! Canonical request → the upstream's HTTP request.
//!
//! The canonical request is serialised back as the client sent it (unknown fields
//! included). Only what a preset needs is rewritten, and the request is copied only
//! when something must change.

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderName, Method, Request};
use http_body_util::Full;
use modelway_core::chat::{ChatRequest, Role};
use modelway_core::http_client::upstream_request;
use modelway_core::{ProviderError, RequestContext};

use crate::preset::{is_openai_reasoning_model, MaxTokensField};
use crate::OpenAiProvider;

/// Fields of OpenRouter's request dialect; only OpenRouter itself receives them.
const OPENROUTER_FIELDS: &[&str] = &["models", "provider"];

/// Client headers OpenRouter uses for app attribution.
const ATTRIBUTION_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("http-referer"),
    HeaderName::from_static("x-title"),
];

/// Applies the preset's rewrites; `None` when the request can go as it is.
fn rewrite(p: &OpenAiProvider, req: &ChatRequest, stream: bool) -> Option<ChatRequest> {
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
        MaxTokensField::OpenAi
            if req.max_tokens.is_some() && is_openai_reasoning_model(&req.model) =>
        {
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

/// The upstream body. When the preset needs no rewrite, the client's own bytes go out
/// with the model spliced in; otherwise the (rewritten) request is serialised. Usage
/// is asked for on streams without copying the request.
fn body(
    p: &OpenAiProvider,
    req: &ChatRequest,
    ctx: &RequestContext,
    stream: bool,
) -> Result<Vec<u8>, ProviderError> {
    let rewritten = rewrite(p, req, stream);
    let r = rewritten.as_ref().unwrap_or(req);
    let insert: &[u8] = if stream && p.preset.stream_options && r.stream_options.is_none() {
        USAGE_FIELD
    } else {
        b""
    };
    if rewritten.is_none() {
        if let Some(out) = ctx
            .raw_body
            .as_deref()
            .and_then(|raw| crate::splice::with_model(raw, &req.model, insert))
        {
            return Ok(out);
        }
    }
    let json = serde_json::to_vec(r).map_err(|e| ProviderError::InvalidRequest {
        message: format!("request cannot be serialised: {e}"),
        param: None,
    })?;
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
    req: &ChatRequest,
    ctx: &RequestContext,
    stream: bool,
) -> Result<Request<Full<Bytes>>, ProviderError> {
    let body = body(p, req, ctx, stream)?;
    Ok(upstream_request(
        Method::POST,
        p.chat_url.clone(),
        Some(Bytes::from(body)),
        stream,
        Some(ctx),
        &p.headers,
        |h| {
            if let Some(auth) = &p.auth {
                h.insert(AUTHORIZATION, auth.clone());
            }
            if p.preset.openrouter {
                for name in &ATTRIBUTION_HEADERS {
                    let configured = p.headers.iter().any(|(n, _)| n == name);
                    if let (false, Some(v)) = (configured, ctx.client_header(name.as_str())) {
                        h.append(name.clone(), v.clone());
                    }
                }
            }
        },
    ))
}

/// The upstream `GET …/models` request.
pub(crate) fn models(p: &OpenAiProvider) -> Request<Full<Bytes>> {
    upstream_request(
        Method::GET,
        p.models_url.clone(),
        None,
        false,
        None,
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
    use modelway_core::HttpClient;

    fn body_of(kind: &str, req: &ChatRequest, stream: bool) -> serde_json::Value {
        let p = OpenAiProvider {
            name: "p".into(),
            preset: OpenAiFactory::for_kind(kind).unwrap().preset,
            chat_url: http::Uri::from_static("http://127.0.0.1:9/v1/chat/completions"),
            models_url: http::Uri::from_static("http://127.0.0.1:9/v1/models"),
            auth: None,
            headers: Vec::new(),
            http: HttpClient::new(),
            list_models: false,
            models_cache: modelway_core::ModelsCache::new(),
        };
        serde_json::from_slice(
            &body(
                &p,
                req,
                &RequestContext::new(std::time::Duration::from_secs(1)),
                stream,
            )
            .unwrap(),
        )
        .unwrap()
    }

    fn req(model: &str) -> ChatRequest {
        let mut r = ChatRequest::new(
            model,
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
            let mut r = req(model);
            setup(&mut r);
            let got = body_of(kind, &r, *stream);
            let v = got.pointer(ptr).cloned().unwrap_or(serde_json::Value::Null);
            assert_eq!(&v, want, "{kind} {model} {ptr}: body {got}");
        }
    }
}
