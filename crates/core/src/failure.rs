//! Failure classes: what the engine does with each way an attempt can fail. This table
//! is the one place the decision is made; README.md shows the same table.
//!
//! | class | what happened | retry this target | fall back |
//! |---|---|---|---|
//! | `rate_limited` | 429 | yes (after `Retry-After`, up to `max_retry_after`) | yes |
//! | `quota_exhausted` | 429 `insufficient_quota`, a daily quota | no | yes |
//! | `overloaded` | 503, 529 | yes | yes |
//! | `server_error` | other 5xx, 409 | yes | yes |
//! | `upstream_auth` | the provider rejected modelway's key (401, 403) | no | yes |
//! | `connect` | refused, reset, DNS, TLS | yes | yes |
//! | `timeout` | connect, head, first-token or idle timeout; an upstream 408 or 504 | yes | yes |
//! | `malformed` | an answer that is not the upstream's format | yes | yes |
//! | `stream_cut` | a stream that broke or ended before its content | yes | yes |
//! | `model_not_found` | 404 | no | only from a route's targets: the operator named that model, not the client |
//! | `bad_request` | 400, 413, 422, other 4xx, a request the upstream cannot express | no | no |
//! | `unsupported` | the provider does not serve this kind of call (embeddings from Anthropic) | no | yes: the target is skipped, not held against its health |
//!
//! A `bad_request` is wrong with the request itself, so every upstream would refuse it:
//! it is answered at once, as the upstream said it.

use std::fmt;

/// Why an attempt failed, as far as the engine's decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// `rate_limited`: 429.
    RateLimited,
    /// `quota_exhausted`: 429 `insufficient_quota`, a daily quota.
    QuotaExhausted,
    /// `overloaded`: 503, 529.
    Overloaded,
    /// `server_error`: other 5xx, 409.
    ServerError,
    /// `upstream_auth`: the provider rejected modelway's key (401, 403).
    UpstreamAuth,
    /// `connect`: no connection.
    Connect,
    /// `timeout`: a timeout fired.
    Timeout,
    /// `malformed`: the upstream's answer could not be read.
    Malformed,
    /// `stream_cut`: the stream ended or broke before it was complete.
    StreamCut,
    /// `model_not_found`: the upstream does not know the model.
    ModelNotFound,
    /// `bad_request`: the upstream refused the request as invalid.
    BadRequest,
    /// `unsupported`: the provider cannot serve this kind of call.
    Unsupported,
}

impl FailureClass {
    /// The class for an upstream HTTP status; `body` is read only for 429s.
    pub fn of_status(status: u16, body: &[u8]) -> Self {
        match status {
            429 if is_quota(body) => Self::QuotaExhausted,
            429 => Self::RateLimited,
            503 | 529 => Self::Overloaded,
            401 | 403 => Self::UpstreamAuth,
            404 => Self::ModelNotFound,
            // The upstream's own gateway or server gave up waiting.
            408 | 504 => Self::Timeout,
            409 | 500..=599 => Self::ServerError,
            // 499 (the upstream cancelled) is the upstream's failure, not the request's.
            499 => Self::ServerError,
            _ => Self::BadRequest,
        }
    }

    /// Whether trying the same target again may succeed.
    pub fn retries_same_target(self) -> bool {
        !matches!(
            self,
            Self::QuotaExhausted
                | Self::UpstreamAuth
                | Self::ModelNotFound
                | Self::BadRequest
                | Self::Unsupported
        )
    }

    /// Whether the next target may be tried. `from_route`: the target came from a
    /// configured route (the operator chose its model) rather than from the client.
    pub fn falls_back(self, from_route: bool) -> bool {
        match self {
            Self::BadRequest => false,
            Self::ModelNotFound => from_route,
            _ => true,
        }
    }

    /// Whether this failure says something about the target's health: a bad request
    /// does not (the same request fails everywhere), nor does a 404 of a model the
    /// client named, nor a provider that does not serve the kind of call; a route
    /// target's 404 does (the operator's model is gone there).
    pub fn counts_against_health(self, fallback_on_404: bool) -> bool {
        match self {
            Self::BadRequest | Self::Unsupported => false,
            Self::ModelNotFound => fallback_on_404,
            _ => true,
        }
    }

    /// Whether the client should be told the upstream timed out (504).
    pub fn is_timeout(self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// The stable name, for logs, error messages and the `error.type` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::QuotaExhausted => "quota_exhausted",
            Self::Overloaded => "overloaded",
            Self::ServerError => "server_error",
            Self::UpstreamAuth => "upstream_auth",
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Malformed => "malformed",
            Self::StreamCut => "stream_cut",
            Self::ModelNotFound => "model_not_found",
            Self::BadRequest => "bad_request",
            Self::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 429 that will not heal by waiting: OpenAI's `insufficient_quota` (Gemini's daily
/// quotas are translated to it by that provider).
fn is_quota(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"insufficient_quota").is_some()
}

#[cfg(test)]
mod tests {
    use super::FailureClass as C;

    #[test]
    fn statuses_map_to_classes_and_decisions() {
        // (status, body, class, retry same, fall back from a route, from the client)
        let rows: &[(u16, &str, C, bool, bool, bool)] = &[
            (429, "{}", C::RateLimited, true, true, true),
            (
                429,
                r#"{"error":{"code":"insufficient_quota"}}"#,
                C::QuotaExhausted,
                false,
                true,
                true,
            ),
            (503, "{}", C::Overloaded, true, true, true),
            (529, "{}", C::Overloaded, true, true, true),
            (500, "{}", C::ServerError, true, true, true),
            (502, "{}", C::ServerError, true, true, true),
            (504, "{}", C::Timeout, true, true, true),
            (408, "{}", C::Timeout, true, true, true),
            (401, "{}", C::UpstreamAuth, false, true, true),
            (403, "{}", C::UpstreamAuth, false, true, true),
            (404, "{}", C::ModelNotFound, false, true, false),
            (400, "{}", C::BadRequest, false, false, false),
            (413, "{}", C::BadRequest, false, false, false),
            (422, "{}", C::BadRequest, false, false, false),
        ];
        for (status, body, class, same, route, client) in rows {
            let c = C::of_status(*status, body.as_bytes());
            assert_eq!(c, *class, "{status}");
            assert_eq!(c.retries_same_target(), *same, "{status}");
            assert_eq!(c.falls_back(true), *route, "{status}");
            assert_eq!(c.falls_back(false), *client, "{status}");
        }
    }
}
