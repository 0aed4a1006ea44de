//! Errors: what went wrong upstream ([`ProviderError`]) and what a client is told
//! ([`GatewayError`], always rendered in the OpenAI error shape).

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

pub use crate::failure::FailureClass;

/// What happened when a provider was called. Each variant says whether trying again
/// (the same or another target) can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The upstream answered with a non-success status.
    #[error("upstream returned HTTP {status}: {}", summarize(body))]
    Status {
        status: u16,
        /// The upstream's error body, as sent.
        body: Bytes,
        /// From the upstream's `Retry-After` / `retry-after-ms`.
        retry_after: Option<Duration>,
    },
    /// The upstream could not be reached.
    #[error("could not connect to upstream: {0}")]
    Connect(String),
    /// The upstream did not answer in time.
    #[error("upstream timed out after {0:?}")]
    Timeout(Duration),
    /// A new connection to the upstream could not be established in time.
    #[error("connecting to upstream timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// A stream produced no content within `first_token_timeout`.
    #[error("no first token within {0:?}")]
    FirstTokenTimeout(Duration),
    /// The upstream answered something that is not the format it should speak.
    #[error("malformed upstream response: {0}")]
    Malformed(String),
    /// The upstream's stream ended or broke before it was complete.
    #[error("upstream stream cut: {0}")]
    StreamCut(String),
    /// The request cannot be expressed for this upstream (a 400 to the client).
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    /// This provider does not serve this kind of call at all (an Anthropic upstream
    /// asked for embeddings). Nothing was sent; the engine skips the target.
    #[error("this provider cannot serve {0}")]
    Unsupported(crate::call::Operation),
    /// The upstream reported a failure inside a successful response: an error event in
    /// its stream (Anthropic's `event: error`, Gemini's error object), or an error body
    /// sent where the stream should be. No HTTP status said so, so none is invented:
    /// `kind` is the upstream's own name for the error (`overloaded_error`,
    /// `UNAVAILABLE`), `class` what the provider read it as, which decides retries and
    /// fallback as a status would.
    #[error("upstream stream error: {kind}: {message}")]
    InBand {
        kind: String,
        message: String,
        class: FailureClass,
        /// A delay the upstream asked for in the error, if any.
        retry_after: Option<Duration>,
    },
}

fn summarize(body: &Bytes) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    } else {
        text.to_owned()
    }
}

impl ProviderError {
    /// What kind of failure this is: the engine's retry and fallback decisions read
    /// only this (see [`crate::engine::FailureClass`] for the table).
    pub fn class(&self) -> FailureClass {
        match self {
            ProviderError::Status { status, body, .. } => FailureClass::of_status(*status, body),
            ProviderError::Connect(_) => FailureClass::Connect,
            ProviderError::Timeout(_)
            | ProviderError::ConnectTimeout(_)
            | ProviderError::FirstTokenTimeout(_) => FailureClass::Timeout,
            ProviderError::Malformed(_) => FailureClass::Malformed,
            ProviderError::StreamCut(_) => FailureClass::StreamCut,
            ProviderError::InvalidRequest { .. } => FailureClass::BadRequest,
            ProviderError::Unsupported(_) => FailureClass::Unsupported,
            ProviderError::InBand { class, .. } => *class,
        }
    }

    /// Whether trying the same target again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.class().retries_same_target()
    }

    /// The upstream's requested delay before retrying, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Status { retry_after, .. }
            | ProviderError::InBand { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The upstream's HTTP status, when it answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProviderError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error as logs and spans may show it: a credentials failure without the
    /// upstream's message (providers quote the key they refused), and `secret` (the
    /// provider's key) replaced wherever an upstream message repeats it.
    pub fn redacted(&self, secret: Option<&str>) -> String {
        if self.class() == FailureClass::UpstreamAuth {
            return match self.status() {
                Some(s) => format!(
                    "upstream returned HTTP {s} (credentials refused; its message is not shown)"
                ),
                None => "upstream refused the credentials".to_owned(),
            };
        }
        let text = self.to_string();
        match secret.filter(|s| s.len() >= 4) {
            Some(s) if text.contains(s) => text.replace(s, "[redacted]"),
            _ => text,
        }
    }
}

/// An error as the client sees it: an HTTP status and the OpenAI error object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct GatewayError {
    pub status: u16,
    /// The OpenAI `error.type`.
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
    /// Sent as `Retry-After` (seconds) on 429 and 503.
    pub retry_after: Option<Duration>,
    /// Upstream attempts made before this error (`x-modelway-attempts`); 0 when the
    /// call never reached a provider.
    pub attempts: u32,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// An OpenAI error body, `{"error":{"message","type","param","code"}}`: what the
/// gateway's own errors are, and what translating providers turn their upstream's error
/// bodies into.
pub fn openai_error_json(
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Vec<u8> {
    let body = ErrorBody {
        error: ErrorObject {
            message,
            kind,
            param,
            code,
        },
    };
    serde_json::to_vec(&body).unwrap_or_else(|_| {
        b"{\"error\":{\"message\":\"error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}".to_vec()
    })
}

impl GatewayError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
            attempts: 0,
        }
    }

    /// Sets `error.param`.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets `error.code`.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// 400: the request is malformed or cannot be served as asked.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }

    /// 401: missing or unknown gateway key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "invalid_request_error", message).with_code("invalid_api_key")
    }

    /// 403: the key may not use this model.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "permission_error", message).with_code("model_not_allowed")
    }

    /// 404 for a model no route, slug or default provider resolves.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            format!("The model `{model}` does not exist or no configured provider serves it."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// 400 for a model none of whose providers serves this kind of call (`op`): an
    /// Anthropic model asked for embeddings. `providers` are the ones skipped.
    pub fn operation_not_supported(
        model: &str,
        op: crate::call::Operation,
        providers: &[String],
    ) -> Self {
        Self::new(
            400,
            "invalid_request_error",
            format!(
                "The model `{model}` cannot serve {op}: {} {} not.",
                providers.join(", "),
                if providers.len() == 1 { "does" } else { "do" }
            ),
        )
        .with_param("model")
        .with_code("model_not_supported")
    }

    /// 404 for an unknown path.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "invalid_request_error", message).with_code("not_found")
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "invalid_request_error", message).with_code("method_not_allowed")
    }

    /// 413: the body exceeds the configured limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            format!("Request body exceeds the limit of {limit} bytes."),
        )
        .with_code("request_too_large")
    }

    /// 429: every target was rate limiting.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(429, "rate_limit_error", message).with_code("rate_limit_exceeded")
    }

    /// 502: no upstream gave a usable answer.
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(502, "upstream_error", message).with_code("upstream_error")
    }

    /// 504: the upstream (or the call's deadline) ran out of time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "timeout_error", message).with_code("upstream_timeout")
    }

    /// 500: a bug in modelway.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "server_error", message)
    }

    /// 503: the gateway is not ready or is shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "server_error", message).with_code("unavailable")
    }

    /// The OpenAI error JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        openai_error_json(
            &self.message,
            self.kind,
            self.param.as_deref(),
            self.code.as_deref(),
        )
    }

    /// Maps a provider's failure to what the client is told. `provider` names the
    /// configured provider (never its key or URL credentials).
    pub fn from_provider(provider: &str, err: &ProviderError) -> Self {
        match err {
            ProviderError::Status {
                status,
                body,
                retry_after,
            } => {
                let upstream = UpstreamError::parse(body);
                let message = upstream
                    .message
                    .unwrap_or_else(|| format!("upstream returned HTTP {status}"));
                match *status {
                    // The provider rejected the gateway's own credentials: the client
                    // did nothing wrong, so it is a gateway-side failure.
                    // The upstream's own words are not passed on: they often quote
                    // the rejected key (OpenAI: "Incorrect API key provided: sk-…wxyz").
                    401 | 403 => Self::new(
                        502,
                        "upstream_error",
                        format!(
                            "provider `{provider}` rejected modelway's credentials (HTTP {status})"
                        ),
                    )
                    .with_code("upstream_auth_failed"),
                    429 => {
                        let mut e = Self::new(
                            429,
                            "rate_limit_error",
                            format!("provider `{provider}` is rate limited: {message}"),
                        );
                        e.retry_after = *retry_after;
                        e.code = upstream.code.or(Some("rate_limit_exceeded".into()));
                        e
                    }
                    408 | 504 => Self::new(
                        504,
                        "timeout_error",
                        format!("provider `{provider}` timed out: {message}"),
                    )
                    .with_code("upstream_timeout"),
                    // 499: the upstream says the request was cancelled (nginx's "client
                    // closed", Google's CANCELLED). The client did not cancel anything
                    // here, and 499 is no status a client expects: a gateway failure.
                    499 => Self::new(
                        502,
                        "upstream_error",
                        format!(
                            "provider `{provider}` cancelled the request (HTTP 499): {message}"
                        ),
                    )
                    .with_code("upstream_error"),
                    400..=498 => {
                        let mut e = Self::new(*status, "invalid_request_error", message);
                        e.param = upstream.param;
                        e.code = upstream.code;
                        e
                    }
                    // Overloaded (Anthropic's 529, anyone's 503): a gateway failure
                    // still, but one a client may wait out; its code says so, and the
                    // Messages dialect answers it as Anthropic's `overloaded_error`.
                    503 | 529 => {
                        let mut e = Self::new(
                            502,
                            "upstream_error",
                            format!(
                                "provider `{provider}` is overloaded (HTTP {status}): {message}"
                            ),
                        )
                        .with_code("overloaded");
                        e.retry_after = *retry_after;
                        e
                    }
                    _ => Self::new(
                        502,
                        "upstream_error",
                        format!("provider `{provider}` failed (HTTP {status}): {message}"),
                    )
                    .with_code("upstream_error"),
                }
            }
            ProviderError::Connect(m) => Self::new(
                502,
                "upstream_error",
                format!("could not reach provider `{provider}`: {m}"),
            )
            .with_code("upstream_unreachable"),
            ProviderError::Timeout(d) => Self::new(
                504,
                "timeout_error",
                format!("provider `{provider}` did not answer within {d:?}"),
            )
            .with_code("upstream_timeout"),
            ProviderError::ConnectTimeout(d) => Self::new(
                504,
                "timeout_error",
                format!("could not connect to provider `{provider}` within {d:?}"),
            )
            .with_code("upstream_timeout"),
            ProviderError::FirstTokenTimeout(d) => Self::new(
                504,
                "timeout_error",
                format!("provider `{provider}` sent no first token within {d:?}"),
            )
            .with_code("upstream_timeout"),
            ProviderError::Malformed(m) => Self::new(
                502,
                "upstream_error",
                format!("provider `{provider}` sent a malformed response: {m}"),
            )
            .with_code("upstream_malformed"),
            ProviderError::StreamCut(m) => Self::new(
                502,
                "upstream_error",
                format!("provider `{provider}` cut the stream: {m}"),
            )
            .with_code("upstream_stream_cut"),
            ProviderError::InvalidRequest { message, param } => {
                let mut e = Self::bad_request(message.clone());
                e.param = param.clone();
                e
            }
            ProviderError::Unsupported(op) => {
                Self::bad_request(format!("provider `{provider}` cannot serve {op}."))
                    .with_param("model")
                    .with_code("model_not_supported")
            }
            ProviderError::InBand {
                kind,
                message,
                class,
                retry_after,
            } => Self::in_band(provider, kind, message, *class, *retry_after),
        }
    }

    /// An error the upstream reported inside a 2xx: the status and code its class
    /// implies (as [`Self::from_provider`] gives a status of that class), the message
    /// saying what it was.
    fn in_band(
        provider: &str,
        kind: &str,
        message: &str,
        class: FailureClass,
        retry_after: Option<Duration>,
    ) -> Self {
        let said = format!("provider `{provider}`: upstream stream error: {kind}: {message}");
        let mut e = match class {
            FailureClass::RateLimited => {
                Self::new(429, "rate_limit_error", said).with_code("rate_limit_exceeded")
            }
            FailureClass::QuotaExhausted => {
                Self::new(429, "rate_limit_error", said).with_code("insufficient_quota")
            }
            // The Messages dialect answers this code as Anthropic's `overloaded_error`.
            FailureClass::Overloaded => {
                Self::new(502, "upstream_error", said).with_code("overloaded")
            }
            FailureClass::Timeout => {
                Self::new(504, "timeout_error", said).with_code("upstream_timeout")
            }
            // As for a 401/403: the upstream's words may quote the key.
            FailureClass::UpstreamAuth => Self::new(
                502,
                "upstream_error",
                format!(
                    "provider `{provider}` rejected modelway's credentials (upstream stream error: {kind})"
                ),
            )
            .with_code("upstream_auth_failed"),
            FailureClass::BadRequest => Self::bad_request(said),
            FailureClass::ModelNotFound => {
                Self::new(404, "invalid_request_error", said).with_code("model_not_found")
            }
            FailureClass::ServerError
            | FailureClass::Connect
            | FailureClass::Malformed
            | FailureClass::StreamCut
            | FailureClass::Unsupported => {
                Self::new(502, "upstream_error", said).with_code("upstream_error")
            }
        };
        e.retry_after = retry_after;
        e
    }
}

/// The fields modelway reads from an upstream error body (OpenAI shape, or the
/// `{"error": {"message"}}` / `{"message"}` shapes others use).
#[derive(Debug, Default)]
struct UpstreamError {
    message: Option<String>,
    param: Option<String>,
    code: Option<String>,
}

impl UpstreamError {
    fn parse(body: &[u8]) -> Self {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            return Self {
                message: (!text.is_empty()).then(|| summarize(&Bytes::from(text))),
                ..Self::default()
            };
        };
        let obj = v.get("error").unwrap_or(&v);
        let obj = if let Some(first) = obj.as_array().and_then(|a| a.first()) {
            first.get("error").unwrap_or(first)
        } else {
            obj
        };
        let text = |k: &str| match obj.get(k) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Self {
            message: text("message").or_else(|| obj.as_str().map(str::to_owned)),
            param: text("param"),
            code: text("code"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, body: &str) -> ProviderError {
        ProviderError::Status {
            status,
            body: Bytes::from(body.to_owned()),
            retry_after: Some(Duration::from_secs(3)),
        }
    }

    #[test]
    fn retryable_classes() {
        let rows = [
            (status(500, "{}"), true),
            (status(503, "{}"), true),
            (
                status(429, r#"{"error":{"type":"rate_limit_error"}}"#),
                true,
            ),
            (
                status(429, r#"{"error":{"code":"insufficient_quota"}}"#),
                false,
            ),
            (status(400, "{}"), false),
            (status(404, "{}"), false),
            (ProviderError::Connect("refused".into()), true),
            (ProviderError::Timeout(Duration::from_secs(1)), true),
            (
                ProviderError::InvalidRequest {
                    message: "x".into(),
                    param: None,
                },
                false,
            ),
        ];
        for (err, want) in rows {
            assert_eq!(err.is_retryable(), want, "{err:?}");
        }
    }

    #[test]
    fn provider_errors_map_to_client_statuses() {
        let rows = [
            (
                status(
                    400,
                    r#"{"error":{"message":"bad temp","param":"temperature","code":null}}"#,
                ),
                400,
                Some("temperature"),
            ),
            (
                status(401, r#"{"error":{"message":"Incorrect API key"}}"#),
                502,
                None,
            ),
            (status(429, "{}"), 429, None),
            (
                status(404, r#"{"error":{"message":"no such model"}}"#),
                404,
                None,
            ),
            (status(408, "{}"), 504, None),
            (
                status(499, r#"{"error":{"status":"CANCELLED"}}"#),
                502,
                None,
            ),
            (status(500, "oops"), 502, None),
            (ProviderError::Timeout(Duration::from_secs(1)), 504, None),
            (ProviderError::Connect("refused".into()), 502, None),
        ];
        for (err, want, param) in rows {
            let e = GatewayError::from_provider("p", &err);
            assert_eq!(e.status, want, "{err:?}");
            assert_eq!(e.param.as_deref(), param, "{err:?}");
        }
        let e = GatewayError::from_provider("p", &status(429, "{}"));
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
    }

    #[test]
    fn in_band_errors_say_what_they_were_and_keep_their_class() {
        let inband = |kind: &str, class| ProviderError::InBand {
            kind: kind.into(),
            message: "Overloaded".into(),
            class,
            retry_after: None,
        };
        // (error, client status, code, retryable)
        let rows = [
            (
                inband("overloaded_error", FailureClass::Overloaded),
                502,
                Some("overloaded"),
                true,
            ),
            (
                inband("rate_limit_error", FailureClass::RateLimited),
                429,
                Some("rate_limit_exceeded"),
                true,
            ),
            (
                inband("api_error", FailureClass::ServerError),
                502,
                Some("upstream_error"),
                true,
            ),
            (
                inband("invalid_request_error", FailureClass::BadRequest),
                400,
                None,
                false,
            ),
        ];
        for (err, status, code, retry) in rows {
            assert_eq!(err.is_retryable(), retry, "{err:?}");
            assert_eq!(err.status(), None, "no HTTP status happened: {err:?}");
            let e = GatewayError::from_provider("claude", &err);
            assert_eq!((e.status, e.code.as_deref()), (status, code), "{err:?}");
            let ProviderError::InBand { kind, .. } = &err else {
                unreachable!()
            };
            let want = format!("provider `claude`: upstream stream error: {kind}: Overloaded");
            assert_eq!(e.message, want);
            assert!(!e.message.contains("HTTP"), "{}", e.message);
        }
        let auth = inband("authentication_error", FailureClass::UpstreamAuth);
        let e = GatewayError::from_provider("claude", &auth);
        assert_eq!(e.code.as_deref(), Some("upstream_auth_failed"));
        assert!(!e.message.contains("Overloaded"), "{}", e.message);
    }

    #[test]
    fn error_json_has_all_four_keys() {
        let e = GatewayError::model_not_found("nope");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        let o = v["error"].as_object().unwrap();
        for k in ["message", "type", "param", "code"] {
            assert!(o.contains_key(k), "missing {k} in {v}");
        }
        assert_eq!(v["error"]["code"], "model_not_found");
    }
}
