//! Errors an OpenAI-compatible upstream reports inside a 200 (OpenRouter answers some
//! failures that way; any upstream may send `{"error":…}` mid-stream).

use bytes::Bytes;
use modelway_core::ProviderError;

/// If `v` is an error object (`{"error": …}` and no `choices`), the matching error.
pub(crate) fn embedded_error(
    v: &serde_json::Value,
    raw: &[u8],
    mid_stream: bool,
) -> Option<ProviderError> {
    let err = v.get("error")?;
    // A completion that merely has `"error": null` is not an error; mid-stream, an
    // error object arrives with or without `choices`.
    if err.is_null() || (!mid_stream && v.get("choices").is_some()) {
        return None;
    }
    let code = err
        .get("code")
        .and_then(|c| c.as_u64())
        .and_then(|c| u16::try_from(c).ok());
    let message = err
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("upstream error")
        .to_owned();
    if mid_stream {
        return Some(ProviderError::StreamCut(format!(
            "upstream error mid-stream: {message}"
        )));
    }
    Some(ProviderError::Status {
        status: code.filter(|c| (400..600).contains(c)).unwrap_or(502),
        body: Bytes::copy_from_slice(raw),
        retry_after: None,
    })
}

/// A JSON body a stream request got in place of the events: the error it reports
/// ([`embedded_error`]), else a malformed answer.
pub(crate) fn in_place_of_stream(body: &[u8]) -> ProviderError {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return ProviderError::Malformed(format!("expected an event stream: {e}")),
    };
    embedded_error(&v, body, false)
        .unwrap_or_else(|| ProviderError::Malformed("expected an event stream, got JSON".into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn embedded_errors() {
        let raw = br#"{"error":{"message":"Rate limit","code":429}}"#;
        let v = serde_json::from_slice(raw).unwrap();
        match embedded_error(&v, raw, false) {
            Some(ProviderError::Status { status: 429, .. }) => {}
            other => panic!("expected a 429, got {other:?}"),
        }
        assert!(matches!(
            embedded_error(&v, raw, true),
            Some(ProviderError::StreamCut(_))
        ));
        let ok = serde_json::json!({"choices": [], "error": null});
        assert!(embedded_error(&ok, b"", false).is_none());
    }
}
