//! OpenAI embeddings ↔ Gemini `POST {root}/models/{model}:batchEmbedContents`
//! (WIRE.md §9.3).
//!
//! Rules:
//! - Each input text is one request `{model: "models/{m}", content: {parts: [{text}]},
//!   outputDimensionality}`; `dimensions` goes on every request (without it Gemini
//!   answers its full 3072-wide vectors).
//! - Gemini takes at most [`MAX_BATCH`] requests per call: more inputs are split into
//!   batches that are sent side by side, and their vectors joined in input order with
//!   one continuous `index`.
//! - Token-id inputs are a 400 (`param: input`): Gemini embeds text only.
//! - `task_type` / `taskType` and `title` (Gemini-native fields sent as extensions) go
//!   on every request; `user` is not sent (an abuse-tracking id, no effect on the
//!   vectors); gateway fields are ignored; any other field is a 400 naming it, or
//!   dropped and reported with `drop_unsupported`.
//! - The answer's `values` become float32 vectors, written as floats or base64 as the
//!   request asks; `model` is the upstream model.
//! - `usage.prompt_tokens`: Gemini's `usageMetadata.promptTokenCount` when it sends one
//!   (summed over batches). The documented answers carry none; then it is **estimated**
//!   as the UTF-8 length of each input divided by 4, rounded up — the same estimate the
//!   gateway's token limits make before a call — so an embeddings call is never
//!   accounted as free.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use modelway_core::embed::{EmbedRequest, EmbedResponse, Embeddings};
use modelway_core::http_client::upstream_request;
use modelway_core::kit::Upstream;
use modelway_core::translate::{invalid, Unsupported};
use modelway_core::{Answer, Attempt, ProviderError};
use percent_encoding::utf8_percent_encode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::request::{gemini_headers, parse_uri, GATEWAY_FIELDS, SEGMENT};
use crate::GeminiProvider;

/// Gemini's limit of requests in one `batchEmbedContents` call.
pub(crate) const MAX_BATCH: usize = 100;

#[derive(Serialize)]
struct Batch<'a> {
    requests: &'a [EmbedContent<'a>],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedContent<'a> {
    model: &'a str,
    content: Content<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_type: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u64>,
}

#[derive(Serialize)]
struct Content<'a> {
    parts: [Part<'a>; 1],
}

#[derive(Serialize)]
struct Part<'a> {
    text: &'a str,
}

#[derive(Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    embeddings: Vec<Values>,
    #[serde(default, rename = "usageMetadata")]
    usage: Option<UsageMetadata>,
}

#[derive(Deserialize)]
struct Values {
    #[serde(default)]
    values: Vec<f32>,
}

#[derive(Deserialize)]
struct UsageMetadata {
    #[serde(default, rename = "promptTokenCount")]
    prompt_tokens: Option<u64>,
}

/// The translated batches of `req` for upstream `model` (one body per
/// [`MAX_BATCH`] inputs), and the fields dropped under `drop_unsupported`.
pub(crate) fn translate(
    req: &EmbedRequest,
    model: &str,
    provider: &str,
    drop_unsupported: bool,
) -> Result<(Vec<Vec<u8>>, Vec<String>), ProviderError> {
    let Some(texts) = req.input.texts() else {
        return Err(invalid(
            "input",
            "Gemini embeds text only: send strings, not token ids",
        ));
    };
    let mut loud = Unsupported::new(provider, "Gemini", drop_unsupported);
    let (mut task_type, mut title) = (None, None);
    for (key, value) in &req.extra {
        let key = key.as_str();
        if value.is_null() || GATEWAY_FIELDS.contains(&key) {
            continue;
        }
        match key {
            "task_type" | "taskType" => task_type = Some(value),
            "title" => title = Some(value),
            _ => loud.reject_or_drop(key, "Gemini has no such embeddings parameter")?,
        }
    }
    let name = format!("models/{}", model.strip_prefix("models/").unwrap_or(model));
    let requests: Vec<EmbedContent<'_>> = texts
        .iter()
        .map(|text| EmbedContent {
            model: &name,
            content: Content {
                parts: [Part { text }],
            },
            task_type,
            title,
            output_dimensionality: req.dimensions,
        })
        .collect();
    let bodies = requests
        .chunks(MAX_BATCH)
        .map(|chunk| {
            serde_json::to_vec(&Batch { requests: chunk }).map_err(|e| {
                ProviderError::InvalidRequest {
                    message: format!("request cannot be serialised: {e}"),
                    param: None,
                }
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((bodies, loud.dropped().to_vec()))
}

/// The upstream `POST …/models/{model}:batchEmbedContents` request.
fn build(
    p: &GeminiProvider,
    model: &str,
    body: Vec<u8>,
    attempt: &Attempt<'_, EmbedRequest>,
) -> Result<Request<Full<Bytes>>, ProviderError> {
    let model = model.strip_prefix("models/").unwrap_or(model);
    if model.is_empty() {
        return Err(invalid("model", "the Gemini model name is empty"));
    }
    let uri = parse_uri(format!(
        "{}/models/{}:batchEmbedContents",
        p.root,
        utf8_percent_encode(model, SEGMENT)
    ))?;
    Ok(upstream_request(
        Method::POST,
        uri,
        Some(Bytes::from(body)),
        false,
        Some(attempt),
        &p.headers,
        |h| gemini_headers(p, Some(attempt), h),
    ))
}

/// Reads one batch's answer: exactly `expected` vectors.
fn parse(body: &[u8], expected: usize) -> Result<(Vec<Vec<f32>>, Option<u64>), ProviderError> {
    let answer: BatchAnswer = serde_json::from_slice(body)
        .map_err(|e| ProviderError::Malformed(format!("not a batchEmbedContents answer: {e}")))?;
    if answer.embeddings.len() != expected {
        return Err(ProviderError::Malformed(format!(
            "asked for {expected} embeddings, got {}",
            answer.embeddings.len()
        )));
    }
    let tokens = answer.usage.and_then(|u| u.prompt_tokens);
    Ok((
        answer.embeddings.into_iter().map(|e| e.values).collect(),
        tokens,
    ))
}

/// The documented estimate when Gemini reports no usage: UTF-8 bytes / 4, rounded up,
/// per input.
pub(crate) fn estimate_tokens(texts: &[&str]) -> u64 {
    texts.iter().map(|t| (t.len() as u64).div_ceil(4)).sum()
}

/// One embeddings attempt: every batch sent side by side, their vectors joined in
/// order.
pub(crate) async fn embed(
    p: &GeminiProvider,
    upstream: Upstream<'_, GeminiProvider>,
    attempt: &Attempt<'_, EmbedRequest>,
) -> Result<Answer<Embeddings>, ProviderError> {
    let req = attempt.request();
    let model = attempt.model();
    let (bodies, dropped) = translate(req, model, &p.options.provider, p.options.drop_unsupported)?;
    let t = &attempt.timeouts;
    let total = req.input.len();
    let batches = bodies.into_iter().enumerate().map(|(i, body)| async move {
        let expected = MAX_BATCH.min(total - i * MAX_BATCH);
        let got = upstream.answer(build(p, model, body, attempt)?, t).await?;
        parse(&got.body, expected)
    });
    let answers = futures_util::future::try_join_all(batches).await?;
    let mut vectors = Vec::with_capacity(total);
    let mut reported: Option<u64> = None;
    for (v, tokens) in answers {
        vectors.extend(v);
        if let Some(n) = tokens {
            reported = Some(reported.unwrap_or(0) + n);
        }
    }
    let tokens =
        reported.unwrap_or_else(|| estimate_tokens(&req.input.texts().unwrap_or_default()));
    let answer = EmbedResponse::new(model, vectors, req.encoding(), tokens);
    Ok(Answer::with_dropped(Embeddings::from(answer), dropped))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use modelway_core::embed::EmbedInput;
    use serde_json::json;

    use super::*;

    fn request(v: Value) -> EmbedRequest {
        serde_json::from_value(v).unwrap()
    }

    fn bodies(v: Value, drop: bool) -> Result<(Vec<Value>, Vec<String>), ProviderError> {
        let (b, d) = translate(&request(v), "gemini-embedding-001", "gem", drop)?;
        Ok((
            b.iter()
                .map(|b| serde_json::from_slice(b).unwrap())
                .collect(),
            d,
        ))
    }

    #[test]
    fn translation_rules() {
        // (client request, the one upstream body)
        let rows = [
            (
                json!({"model": "x", "input": "hello"}),
                json!({"requests": [{"model": "models/gemini-embedding-001",
                    "content": {"parts": [{"text": "hello"}]}}]}),
            ),
            (
                json!({"model": "x", "input": ["a", "b"], "dimensions": 8, "user": "u",
                    "encoding_format": "base64"}),
                json!({"requests": [
                    {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]},
                     "outputDimensionality": 8},
                    {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]},
                     "outputDimensionality": 8}]}),
            ),
            (
                json!({"model": "x", "input": ["doc"], "task_type": "RETRIEVAL_DOCUMENT",
                    "title": "T", "provider": {"order": ["g"]}}),
                json!({"requests": [{"model": "models/gemini-embedding-001",
                    "content": {"parts": [{"text": "doc"}]},
                    "taskType": "RETRIEVAL_DOCUMENT", "title": "T"}]}),
            ),
        ];
        for (req, want) in rows {
            let (got, dropped) = bodies(req.clone(), false).unwrap();
            assert_eq!(got, [want], "{req}");
            assert!(dropped.is_empty());
        }
    }

    #[test]
    fn more_than_a_batch_is_split_in_order() {
        let inputs: Vec<String> = (0..250).map(|i| format!("t{i}")).collect();
        let (got, _) = bodies(json!({"model": "x", "input": inputs}), false).unwrap();
        let sizes: Vec<usize> = got
            .iter()
            .map(|b| b["requests"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(got[1]["requests"][0]["content"]["parts"][0]["text"], "t100");
        assert_eq!(
            got[2]["requests"][49]["content"]["parts"][0]["text"],
            "t249"
        );
    }

    #[test]
    fn what_gemini_cannot_take_is_a_400_naming_it() {
        let e = bodies(json!({"model": "x", "input": [1, 2]}), false).unwrap_err();
        assert!(
            matches!(&e, ProviderError::InvalidRequest { param: Some(p), .. } if p == "input"),
            "{e:?}"
        );
        let e = bodies(
            json!({"model": "x", "input": "a", "truncate": "END"}),
            false,
        )
        .unwrap_err();
        assert!(
            matches!(&e, ProviderError::InvalidRequest { param: Some(p), .. } if p == "truncate"),
            "{e:?}"
        );
        let (_, dropped) =
            bodies(json!({"model": "x", "input": "a", "truncate": "END"}), true).unwrap();
        assert_eq!(dropped, ["truncate"]);
    }

    #[test]
    fn answers_and_usage() {
        let (v, t) = parse(br#"{"embeddings":[{"values":[0.5,-1]},{"values":[2]}]}"#, 2).unwrap();
        assert_eq!((v, t), (vec![vec![0.5, -1.0], vec![2.0]], None));
        let (_, t) = parse(
            br#"{"embeddings":[{"values":[1]}],"usageMetadata":{"promptTokenCount":7}}"#,
            1,
        )
        .unwrap();
        assert_eq!(t, Some(7));
        assert!(matches!(
            parse(br#"{"embeddings":[]}"#, 1),
            Err(ProviderError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"<html>", 1),
            Err(ProviderError::Malformed(_))
        ));
        let texts = EmbedInput::Texts(vec!["abcd".into(), "abcde".into(), "é".into()]);
        assert_eq!(estimate_tokens(&texts.texts().unwrap()), 1 + 2 + 1);
    }
}
