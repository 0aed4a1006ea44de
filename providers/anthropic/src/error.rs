//! Anthropic failures → [`ProviderError`] (WIRE.md §2.5).
//!
//! Anthropic's error body `{"type":"error","error":{"type","message"},"request_id"}` is
//! rewritten into OpenAI's `{"error":{"message","type","param","code"}}` so the
//! gateway's client-facing mapping reads its message and code; the HTTP status is kept
//! (529 `overloaded_error` and 5xx are retryable, 429 carries `retry-after`).

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use modelway_core::error::openai_error_json;
use modelway_core::ProviderError;
use serde::Deserialize;

#[derive(Deserialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    error: ErrorDetail<'a>,
}

#[derive(Deserialize)]
struct ErrorDetail<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

/// The HTTP status Anthropic uses for an error type (for errors that arrive inside a
/// 200 stream, where there is no status).
fn status_for(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// An Anthropic error body in OpenAI's shape, or `None` if `body` is not one.
fn to_openai(status: u16, body: &[u8]) -> Option<(String, Bytes)> {
    let e: AnthropicError<'_> = serde_json::from_slice(body).ok()?;
    if e.kind != "error" {
        return None;
    }
    let kind = e.error.kind.as_deref().unwrap_or("api_error");
    let message = e.error.message.as_deref().unwrap_or(kind);
    let code = match (status, kind) {
        (429, _) => Some("rate_limit_exceeded"),
        (_, "invalid_request_error") => None,
        (_, k) => Some(k),
    };
    let json = openai_error_json(message, kind, None, code);
    Some((kind.to_owned(), Bytes::from(json)))
}

/// [`ProviderError::Status`] with the body translated (left as sent if it is not an
/// Anthropic error, e.g. a proxy's HTML page).
pub(crate) fn translate_status(
    status: u16,
    body: Bytes,
    retry_after: Option<Duration>,
) -> ProviderError {
    let body = to_openai(status, &body).map_or(body, |(_, b)| b);
    ProviderError::Status {
        status,
        body,
        retry_after,
    }
}

/// Reads a non-success response into a [`ProviderError`].
pub(crate) async fn status_error(
    resp: http::Response<Incoming>,
    timeout: Duration,
) -> ProviderError {
    modelway_core::http_client::status_error_with(resp, timeout, translate_status).await
}

/// An `event: error` inside a 200 stream (e.g. `overloaded_error`), or an error body
/// sent in place of a stream: the status its type implies.
pub(crate) fn embedded(data: &[u8]) -> Option<ProviderError> {
    let e: AnthropicError<'_> = serde_json::from_slice(data).ok()?;
    if e.kind != "error" {
        return None;
    }
    let status = status_for(e.error.kind.as_deref().unwrap_or("api_error"));
    let (_, body) = to_openai(status, data)?;
    Some(ProviderError::Status {
        status,
        body,
        retry_after: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use modelway_core::GatewayError;

    fn anthropic(kind: &str, message: &str) -> Bytes {
        Bytes::from(
            serde_json::json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"})
                .to_string(),
        )
    }

    #[test]
    fn statuses_map_to_client_errors() {
        // (status, anthropic type, client status, client code, retryable)
        let rows = [
            (400, "invalid_request_error", 400, None, false),
            (
                401,
                "authentication_error",
                502,
                Some("upstream_auth_failed"),
                false,
            ),
            (
                403,
                "permission_error",
                502,
                Some("upstream_auth_failed"),
                false,
            ),
            (404, "not_found_error", 404, Some("not_found_error"), false),
            (
                413,
                "request_too_large",
                413,
                Some("request_too_large"),
                false,
            ),
            (
                429,
                "rate_limit_error",
                429,
                Some("rate_limit_exceeded"),
                true,
            ),
            (500, "api_error", 502, Some("upstream_error"), true),
            (504, "timeout_error", 504, Some("upstream_timeout"), true),
            (529, "overloaded_error", 502, Some("overloaded"), true),
        ];
        for (status, kind, want, code, retry) in rows {
            let e = translate_status(
                status,
                anthropic(kind, "the message"),
                Some(Duration::from_secs(2)),
            );
            assert_eq!(e.is_retryable(), retry, "{status}");
            let g = GatewayError::from_provider("claude", &e);
            assert_eq!(g.status, want, "{status}");
            assert_eq!(g.code.as_deref(), code, "{status}");
            // A rejected key's message is not passed on (it may quote the key).
            if !matches!(status, 401 | 403) {
                assert!(g.message.contains("the message"), "{status}: {}", g.message);
            }
            if status == 429 {
                assert_eq!(g.retry_after, Some(Duration::from_secs(2)));
            }
        }
    }

    #[test]
    fn non_anthropic_bodies_stay_as_sent() {
        let e = translate_status(502, Bytes::from_static(b"<html>bad gateway</html>"), None);
        let ProviderError::Status { body, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(&body[..], b"<html>bad gateway</html>");
    }

    #[test]
    fn stream_errors_get_the_status_of_their_type() {
        let e = embedded(&anthropic("overloaded_error", "Overloaded")).unwrap();
        assert!(matches!(e, ProviderError::Status { status: 529, .. }));
        assert!(e.is_retryable());
        let g = GatewayError::from_provider("claude", &e);
        assert!(g.message.contains("Overloaded"), "{}", g.message);
        assert!(embedded(br#"{"type":"ping"}"#).is_none());
        assert!(embedded(b"nope").is_none());
    }
}
