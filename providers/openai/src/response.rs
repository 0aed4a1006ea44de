//! Upstream JSON answers → canonical types.

use bytes::Bytes;
use modelway_core::chat::ChatResponse;
use modelway_core::embed::{EmbedResponse, Embeddings, EncodingFormat, RawEmbeddings};
use modelway_core::{ModelInfo, ProviderError};
use serde::Deserialize;

use crate::error::embedded_error;

/// Parses a non-streaming completion.
pub(crate) fn parse(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    match serde_json::from_slice::<ChatResponse>(body) {
        Ok(r) => Ok(r),
        Err(e) => {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
                if let Some(err) = embedded_error(&v, body, false) {
                    return Err(err);
                }
            }
            Err(ProviderError::Malformed(format!(
                "not a chat completion: {e}"
            )))
        }
    }
}

/// Reads an embeddings answer. It is forwarded as the upstream sent it when its vectors
/// are written as the client asked (`wanted`); an upstream that ignored
/// `encoding_format` (some servers always answer floats) is parsed and re-encoded, so
/// the client gets what it asked for.
pub(crate) fn embeddings(body: Bytes, wanted: EncodingFormat) -> Result<Embeddings, ProviderError> {
    let Some(raw) = RawEmbeddings::scan(body.clone()) else {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
            if let Some(err) = embedded_error(&v, &body, false) {
                return Err(err);
            }
        }
        return Err(ProviderError::Malformed(
            "not an embeddings object (no `data` array)".to_owned(),
        ));
    };
    if raw.encoding().is_none_or(|f| f == wanted) {
        return Ok(Embeddings::Raw(raw));
    }
    let mut parsed: EmbedResponse = serde_json::from_slice(&body)
        .map_err(|e| ProviderError::Malformed(format!("not an embeddings object: {e}")))?;
    parsed.encode_as(wanted).map_err(ProviderError::Malformed)?;
    Ok(Embeddings::from(parsed))
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
    #[serde(default)]
    owned_by: Option<String>,
    #[serde(default)]
    created: Option<u64>,
}

/// Parses `GET /models`.
pub(crate) fn parse_models(body: &[u8], provider: &str) -> Result<Vec<ModelInfo>, ProviderError> {
    let list: ModelList = serde_json::from_slice(body)
        .map_err(|e| ProviderError::Malformed(format!("not a model list: {e}")))?;
    Ok(list
        .data
        .into_iter()
        .map(|m| ModelInfo {
            id: m.id,
            owned_by: m.owned_by.unwrap_or_else(|| provider.to_owned()),
            created: m.created.unwrap_or(0),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_embeddings_answer_is_forwarded_unless_its_encoding_is_not_the_one_asked() {
        let floats = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.125,-2.5]}],"model":"m","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
        let b64 = modelway_core::embed::encode_vector(&[0.125, -2.5]);
        // (body, asked, forwarded as is, the vector the client gets)
        let rows = [
            (
                floats.to_owned(),
                EncodingFormat::Float,
                true,
                serde_json::json!([0.125, -2.5]),
            ),
            (
                floats.to_owned(),
                EncodingFormat::Base64,
                false,
                serde_json::json!(b64),
            ),
            (
                floats.replace("[0.125,-2.5]", &format!("\"{b64}\"")),
                EncodingFormat::Float,
                false,
                serde_json::json!([0.125, -2.5]),
            ),
            (
                floats.replace("[0.125,-2.5]", &format!("\"{b64}\"")),
                EncodingFormat::Base64,
                true,
                serde_json::json!(b64),
            ),
        ];
        for (body, wanted, raw, vector) in rows {
            let e = embeddings(Bytes::from(body.clone()), wanted).unwrap();
            assert_eq!(matches!(e, Embeddings::Raw(_)), raw, "{body} as {wanted:?}");
            assert_eq!(e.tokens().unwrap().input, 2);
            let out: serde_json::Value = serde_json::from_slice(&e.to_json().unwrap()).unwrap();
            assert_eq!(out["data"][0]["embedding"], vector, "{body} as {wanted:?}");
        }
        let err = embeddings(
            Bytes::from_static(br#"{"error":{"message":"overloaded","code":503}}"#),
            EncodingFormat::Float,
        )
        .unwrap_err();
        assert_eq!(err.status(), Some(503));
        let err =
            embeddings(Bytes::from_static(b"{\"data\":[1"), EncodingFormat::Float).unwrap_err();
        assert!(matches!(err, ProviderError::Malformed(_)), "{err:?}");
    }

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../../../shared/fixtures/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn spec_examples_parse_and_round_trip() {
        for f in [
            "chat-default.json",
            "chat-functions.json",
            "chat-image-input.json",
            "chat-logprobs.json",
        ] {
            let raw = fixture(&format!("openai/spec-examples/{f}"));
            let parsed = parse(&raw).unwrap_or_else(|e| panic!("{f}: {e}"));
            let back = serde_json::to_value(&parsed).unwrap();
            let mut orig: serde_json::Value = serde_json::from_slice(&raw).unwrap();
            // The spec requires `message.refusal`; older examples omit it and we add null.
            for c in orig["choices"].as_array_mut().unwrap() {
                c["message"]
                    .as_object_mut()
                    .unwrap()
                    .entry("refusal")
                    .or_insert(serde_json::Value::Null);
            }
            assert_eq!(back, orig, "{f} must survive a round trip unchanged");
        }
    }

    #[test]
    fn completion_shape_check() {
        let rows: &[(&[u8], bool)] = &[
            (br#"{"id":"x","choices":[],"model":"m"}"#, true),
            (
                br#"{"choices":[{"message":{"content":"\u00e9"}}],"error":null}"#,
                true,
            ),
            (br#"{"error":{"message":"no credits","code":402}}"#, false),
            (br#"{"choices":[],"error":{"message":"x"}}"#, false),
            (br#"{"id":"x"}"#, false),
            (br#"{"choices":[],"id":"x""#, false),
            (b"{\"choices\":[],\"x\":\"\xff\"}", false),
            (b"<html>", false),
        ];
        for (body, want) in rows {
            assert_eq!(
                modelway_core::chat::RawCompletion::scan(bytes::Bytes::copy_from_slice(body))
                    .is_some(),
                *want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn errors_and_garbage() {
        assert!(matches!(parse(b"<html>"), Err(ProviderError::Malformed(_))));
        assert!(matches!(
            parse(br#"{"error":{"message":"no credits","code":402}}"#),
            Err(ProviderError::Status { status: 402, .. })
        ));
    }
}
