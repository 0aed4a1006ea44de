//! Upstream JSON answers → canonical types.

use modelway_core::chat::ChatResponse;
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
