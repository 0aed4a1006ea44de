//! Gemini failures → [`ProviderError`] (WIRE.md §3.5).
//!
//! Google's error body `{"error":{"code","message","status","details":[…]}}` is
//! rewritten into OpenAI's `{"error":{"message","type","param","code"}}` so the
//! gateway's client-facing mapping reads its message, with Google's `status` string
//! (`INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, …) as the `code`. Statuses are kept,
//! with three refinements:
//! - a bad API key is a 400 `API_KEY_INVALID` at Google; it becomes a 401, so the
//!   client is told the gateway's credentials were rejected (502), not that its own
//!   request was bad;
//! - a 429 without `Retry-After` takes its delay from `RetryInfo.retryDelay`;
//! - a 429 whose quota is per day is not worth retrying: its code becomes
//!   `insufficient_quota`, which the core treats as final.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use modelway_core::engine::FailureClass;
use modelway_core::error::openai_error_json;
use modelway_core::ProviderError;
use serde::Deserialize;

#[derive(Deserialize)]
struct GoogleError<'a> {
    #[serde(borrow)]
    error: GoogleErrorObject<'a>,
}

#[derive(Deserialize)]
pub(crate) struct GoogleErrorObject<'a> {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    details: Vec<Detail<'a>>,
}

#[derive(Deserialize)]
struct Detail<'a> {
    #[serde(rename = "@type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    /// `ErrorInfo.reason`.
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
    /// `RetryInfo.retryDelay`, e.g. `"37s"` or `"0.5s"`.
    #[serde(rename = "retryDelay", default, borrow)]
    retry_delay: Option<Cow<'a, str>>,
    /// `QuotaFailure.violations`.
    #[serde(default, borrow)]
    violations: Vec<Violation<'a>>,
}

#[derive(Deserialize)]
struct Violation<'a> {
    #[serde(rename = "quotaId", default, borrow)]
    quota_id: Option<Cow<'a, str>>,
}

/// The HTTP status Google uses for a status string (for errors inside a 200 stream,
/// whose `code` may be missing).
fn status_for(status: &str) -> u16 {
    match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ALREADY_EXISTS" | "ABORTED" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

/// A duration in Google's JSON form (`"37s"`, `"0.5s"`).
fn google_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// What a Google error body says, in OpenAI's shape.
struct Translated {
    status: u16,
    body: Bytes,
    retry_after: Option<Duration>,
}

/// A Google error body in OpenAI's shape, or `None` if `body` is not one. `status` is
/// the HTTP status (`None` inside a stream, where the body's `code` says it).
fn to_openai(status: Option<u16>, body: &[u8]) -> Option<Translated> {
    let e: GoogleError<'_> = serde_json::from_slice(trim_ascii(body)).ok()?;
    Some(translate_object(status, &e.error))
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

fn translate_object(status: Option<u16>, e: &GoogleErrorObject<'_>) -> Translated {
    let google_status = e.status.as_deref();
    let mut status = status
        .or(e.code)
        .or_else(|| google_status.map(status_for))
        .unwrap_or(500);
    let reason = |r: &str| e.details.iter().any(|d| d.reason.as_deref() == Some(r));
    if status == 400 && reason("API_KEY_INVALID") {
        // Google answers a bad key with 400; it is the gateway's credential that
        // failed, not the client's request.
        status = 401;
    }
    let retry_after = e
        .details
        .iter()
        .filter(|d| d.kind.as_deref().is_some_and(|k| k.ends_with("RetryInfo")))
        .find_map(|d| d.retry_delay.as_deref().and_then(google_duration));
    let per_day = e.details.iter().any(|d| {
        d.violations
            .iter()
            .any(|v| v.quota_id.as_deref().is_some_and(|q| q.contains("PerDay")))
    });
    let kind = match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    };
    let code = if status == 429 && per_day {
        Some("insufficient_quota")
    } else {
        google_status
    };
    let fallback = format!("Gemini returned HTTP {status}");
    let message = e
        .message
        .as_deref()
        .filter(|m| !m.is_empty())
        .unwrap_or(&fallback);
    let body = Bytes::from(openai_error_json(message, kind, None, code));
    Translated {
        status,
        body,
        retry_after,
    }
}

/// [`ProviderError::Status`] with the body translated (left as sent if it is not a
/// Google error, e.g. a proxy's HTML page). A `Retry-After` header wins over the
/// body's `RetryInfo`.
pub(crate) fn translate_status(
    status: u16,
    body: Bytes,
    retry_after: Option<Duration>,
) -> ProviderError {
    match to_openai(Some(status), &body) {
        Some(t) => ProviderError::Status {
            status: t.status,
            body: t.body,
            retry_after: retry_after.or(t.retry_after),
        },
        None => ProviderError::Status {
            status,
            body,
            retry_after,
        },
    }
}

/// An error object inside a 200 stream (an SSE event, bare JSON after the last event,
/// or a JSON body in place of the stream): what it was, by Google's status string
/// (`upstream stream error: UNAVAILABLE: …`), never as an HTTP status that did not
/// happen. Its `code`/`status` still decide the class (a per-day quota is final).
pub(crate) fn in_band(data: &[u8]) -> Option<ProviderError> {
    let e: GoogleError<'_> = serde_json::from_slice(trim_ascii(data)).ok()?;
    Some(in_band_object(&e.error))
}

/// An `error` member already parsed out of a stream event (see [`in_band`]).
pub(crate) fn in_band_object(e: &GoogleErrorObject<'_>) -> ProviderError {
    let t = translate_object(None, e);
    let kind = e
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("UNKNOWN");
    ProviderError::InBand {
        kind: kind.to_owned(),
        message: e
            .message
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or(kind)
            .to_owned(),
        class: FailureClass::of_status(t.status, &t.body),
        retry_after: t.retry_after,
    }
}

/// An `error` member of a whole (non-streamed) 200 answer: the status its
/// `code`/`status` imply.
pub(crate) fn from_object(e: &GoogleErrorObject<'_>) -> ProviderError {
    let t = translate_object(None, e);
    ProviderError::Status {
        status: t.status,
        body: t.body,
        retry_after: t.retry_after,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use modelway_core::GatewayError;

    fn fixture(name: &str) -> Bytes {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/gemini/firebase-test-data/"
        );
        Bytes::from(std::fs::read(format!("{path}{name}")).unwrap())
    }

    fn google(code: u16, status: &str, message: &str) -> Bytes {
        Bytes::from(
            serde_json::json!({"error": {"code": code, "message": message, "status": status}})
                .to_string(),
        )
    }

    #[test]
    fn statuses_map_to_client_errors() {
        // (status, google status, client status, client code, retryable)
        let rows = [
            (
                400,
                "INVALID_ARGUMENT",
                400,
                Some("INVALID_ARGUMENT"),
                false,
            ),
            (
                400,
                "FAILED_PRECONDITION",
                400,
                Some("FAILED_PRECONDITION"),
                false,
            ),
            (
                403,
                "PERMISSION_DENIED",
                502,
                Some("upstream_auth_failed"),
                false,
            ),
            (404, "NOT_FOUND", 404, Some("NOT_FOUND"), false),
            (
                429,
                "RESOURCE_EXHAUSTED",
                429,
                Some("RESOURCE_EXHAUSTED"),
                true,
            ),
            (500, "INTERNAL", 502, Some("upstream_error"), true),
            (503, "UNAVAILABLE", 502, Some("overloaded"), true),
            (
                504,
                "DEADLINE_EXCEEDED",
                504,
                Some("upstream_timeout"),
                true,
            ),
        ];
        for (status, gs, want, code, retry) in rows {
            let e = translate_status(status, google(status, gs, "the message"), None);
            assert_eq!(e.is_retryable(), retry, "{status}");
            let g = GatewayError::from_provider("gem", &e);
            assert_eq!(g.status, want, "{status}");
            assert_eq!(g.code.as_deref(), code, "{status}");
            // A rejected key's message is not passed on (it may quote the key).
            if g.code.as_deref() != Some("upstream_auth_failed") {
                assert!(g.message.contains("the message"), "{status}: {}", g.message);
            }
        }
    }

    #[test]
    fn recorded_errors_keep_their_message() {
        // A bad key: Google's 400 is the gateway's fault (502), never the key itself.
        let e = translate_status(400, fixture("googleai/unary-failure-api-key.json"), None);
        let g = GatewayError::from_provider("gem", &e);
        assert_eq!(g.status, 502);
        assert!(
            g.message.contains("rejected modelway's credentials"),
            "{}",
            g.message
        );
        assert!(
            !g.message.contains("key1234"),
            "debug detail leaked: {}",
            g.message
        );

        let e = translate_status(
            404,
            fixture("googleai/unary-failure-unknown-model.json"),
            None,
        );
        let g = GatewayError::from_provider("gem", &e);
        assert_eq!(g.status, 404);

        let e = translate_status(
            429,
            fixture("vertexai/unary-failure-quota-exceeded.json"),
            None,
        );
        assert!(e.is_retryable());
        let g = GatewayError::from_provider("gem", &e);
        assert_eq!((g.status, g.kind), (429, "rate_limit_error"));
        assert!(g.message.contains("Quota exceeded"), "{}", g.message);
    }

    #[test]
    fn retry_delay_comes_from_the_header_or_retry_info() {
        let body = Bytes::from(
            serde_json::json!({"error": {"code": 429, "message": "slow", "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                     "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}})
            .to_string(),
        );
        let e = translate_status(429, body.clone(), None);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(37)));
        assert!(e.is_retryable());
        let e = translate_status(429, body, Some(Duration::from_secs(2)));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));

        let daily = Bytes::from(
            serde_json::json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                     "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}})
            .to_string(),
        );
        let e = translate_status(429, daily, None);
        assert!(!e.is_retryable(), "a daily quota does not heal by retrying");
        assert_eq!(google_duration("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(google_duration("soon"), None);
    }

    #[test]
    fn non_google_bodies_stay_as_sent() {
        let e = translate_status(502, Bytes::from_static(b"<html>bad gateway</html>"), None);
        let ProviderError::Status { body, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(&body[..], b"<html>bad gateway</html>");
    }

    #[test]
    fn stream_errors_are_named_by_their_status_string_not_an_http_status() {
        let body = fixture("vertexai/streaming-failure-error-mid-stream.txt");
        // The bare object after the events.
        let at = body.windows(2).rposition(|w| w == b"\n{").unwrap() + 1;
        let tail = &body[at..];
        let e = in_band(tail).unwrap();
        assert!(
            matches!(&e, ProviderError::InBand { kind, class: FailureClass::ServerError, .. } if kind == "CANCELLED"),
            "{e:?}"
        );
        assert_eq!(e.status(), None);
        let g = GatewayError::from_provider("gem", &e);
        assert!(
            g.message
                .starts_with("provider `gem`: upstream stream error: CANCELLED: "),
            "{}",
            g.message
        );
        assert!(!g.message.contains("HTTP"), "{}", g.message);
        // (code, status, class)
        let rows = [
            (503, "UNAVAILABLE", FailureClass::Overloaded),
            (429, "RESOURCE_EXHAUSTED", FailureClass::RateLimited),
            (500, "INTERNAL", FailureClass::ServerError),
            (400, "INVALID_ARGUMENT", FailureClass::BadRequest),
        ];
        for (code, status, class) in rows {
            let e = in_band(&google(code, status, "m")).unwrap();
            assert_eq!(e.class(), class, "{status}");
            assert_eq!(e.to_string(), format!("upstream stream error: {status}: m"));
        }
        assert!(in_band(b"{\"candidates\":[]}").is_none());
        assert!(in_band(b"nope").is_none());
    }
}
