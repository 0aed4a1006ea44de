//! Anthropic failures → [`ProviderError`] (WIRE.md §2.5).
//!
//! Anthropic's error body `{"type":"error","error":{"type","message"},"request_id"}` is
//! rewritten into OpenAI's `{"error":{"message","type","param","code"}}` so the
//! gateway's client-facing mapping reads its message and code; the HTTP status is kept
//! (529 `overloaded_error` and 5xx are retryable, 429 carries `retry-after`). An error
//! inside a 200 (an `event: error` in the stream) had no status: it is a
//! [`ProviderError::InBand`] named by its type (`upstream stream error:
//! overloaded_error: Overloaded`), its class read from the type.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use modelway_core::engine::FailureClass;
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

/// What an Anthropic error type means for retries and fallback (for errors that
/// arrive inside a 200 stream, where there is no status): the class of the status
/// Anthropic documents for the type.
fn class_for(kind: &str) -> FailureClass {
    match kind {
        "invalid_request_error" | "request_too_large" => FailureClass::BadRequest,
        "authentication_error" | "permission_error" => FailureClass::UpstreamAuth,
        "billing_error" => FailureClass::QuotaExhausted,
        "not_found_error" => FailureClass::ModelNotFound,
        "rate_limit_error" => FailureClass::RateLimited,
        "timeout_error" => FailureClass::Timeout,
        "overloaded_error" => FailureClass::Overloaded,
        // `api_error` and types this version does not know.
        _ => FailureClass::ServerError,
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

/// An `event: error` inside a 200 stream (e.g. `overloaded_error`), or an error body
/// sent in place of a stream: what it was, by its type, with no invented status.
pub(crate) fn embedded(data: &[u8]) -> Option<ProviderError> {
    let e: AnthropicError<'_> = serde_json::from_slice(data).ok()?;
    if e.kind != "error" {
        return None;
    }
    let kind = e.error.kind.as_deref().unwrap_or("api_error");
    Some(ProviderError::InBand {
        kind: kind.to_owned(),
        message: e.error.message.as_deref().unwrap_or(kind).to_owned(),
        class: class_for(kind),
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
    fn stream_errors_are_named_by_their_type_not_an_invented_status() {
        // (type, class, retryable, client status, client code)
        let rows = [
            (
                "overloaded_error",
                FailureClass::Overloaded,
                true,
                502,
                Some("overloaded"),
            ),
            (
                "rate_limit_error",
                FailureClass::RateLimited,
                true,
                429,
                Some("rate_limit_exceeded"),
            ),
            (
                "api_error",
                FailureClass::ServerError,
                true,
                502,
                Some("upstream_error"),
            ),
            (
                "timeout_error",
                FailureClass::Timeout,
                true,
                504,
                Some("upstream_timeout"),
            ),
            (
                "something_new",
                FailureClass::ServerError,
                true,
                502,
                Some("upstream_error"),
            ),
            (
                "invalid_request_error",
                FailureClass::BadRequest,
                false,
                400,
                None,
            ),
            (
                "billing_error",
                FailureClass::QuotaExhausted,
                false,
                429,
                Some("insufficient_quota"),
            ),
        ];
        for (kind, class, retry, status, code) in rows {
            let e = embedded(&anthropic(kind, "Overloaded")).unwrap();
            assert_eq!(e.class(), class, "{kind}");
            assert_eq!(e.is_retryable(), retry, "{kind}");
            assert_eq!(e.status(), None, "{kind}");
            let g = GatewayError::from_provider("claude", &e);
            assert_eq!((g.status, g.code.as_deref()), (status, code), "{kind}");
            assert_eq!(
                g.message,
                format!("provider `claude`: upstream stream error: {kind}: Overloaded")
            );
        }
        assert!(embedded(br#"{"type":"ping"}"#).is_none());
        assert!(embedded(b"nope").is_none());
    }
}
