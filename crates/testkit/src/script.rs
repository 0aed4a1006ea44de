//! Scripted replies: what a test queues with [`MockUpstream::push`](crate::MockUpstream::push)
//! (or `POST /__mock/script`) for the next `POST /v1/chat/completions` (or any other
//! model request: the queue is shared by every dialect's routes, embeddings included).

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

/// One scripted answer to a `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A JSON body with this status and extra response headers, e.g. a 500 error or a
    /// 429 with `retry-after`. `content-type: application/json` unless `headers` sets it.
    Json {
        status: u16,
        body: Value,
        headers: Vec<(String, String)>,
    },
    /// Arbitrary bytes, e.g. a malformed or truncated JSON body.
    Raw {
        status: u16,
        content_type: String,
        body: Bytes,
    },
    /// A `200 text/event-stream` whose body frames are `events`, then `end`.
    Sse {
        events: Vec<SseStep>,
        end: StreamEnd,
    },
    /// Replays an `.sse` file under the fixtures dir ([`fixtures_dir`](crate::fixtures_dir)),
    /// e.g. `"openai/sdk-recordings/stream-tool-call.sse"`, byte-for-byte as a
    /// `200 text/event-stream` (one body frame per event). A missing file answers 500.
    Fixture(String),
    /// Accepts the request and never answers, until the client goes away (counted by
    /// [`MockUpstream::cancelled`](crate::MockUpstream::cancelled)).
    Hang,
    /// Closes the connection without any response (HTTP/2: resets the stream).
    DropConnection,
}

impl Reply {
    /// An error in OpenAI's shape, `{"error":{"message","type","param":null,"code"}}`,
    /// with the `type`/`code` OpenAI uses for that status (`invalid_request_error`,
    /// `rate_limit_error`/`rate_limit_exceeded`, `server_error`, …).
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::Json {
            status,
            body: error_body(status, message, None),
            headers: Vec::new(),
        }
    }

    /// Adds a response header to a [`Reply::Json`], e.g.
    /// `Reply::error(429, "slow down").with_header("retry-after", "1")`.
    ///
    /// # Panics
    /// On any other variant: only `Json` replies carry headers, and silently dropping
    /// the header would make the test assert on something that never went on the wire.
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        match &mut self {
            Reply::Json { headers, .. } => headers.push((name.to_owned(), value.to_owned())),
            other => panic!("Reply::with_header only applies to Reply::Json, not {other:?}"),
        }
        self
    }

    /// Parses one reply of the control API (`POST /__mock/script`), see the crate docs.
    pub(crate) fn from_control_json(v: &Value) -> Result<Reply, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("a reply must be a JSON object, got {v}"))?;
        let status = match obj.get("status") {
            None => 200,
            Some(s) => s
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (100..=999).contains(s))
                .ok_or_else(|| format!("`status` must be an HTTP status code, got {s}"))?,
        };
        if obj.get("hang").and_then(Value::as_bool) == Some(true) {
            return Ok(Reply::Hang);
        }
        if obj.get("drop").and_then(Value::as_bool) == Some(true) {
            return Ok(Reply::DropConnection);
        }
        if let Some(f) = obj.get("fixture") {
            let f = f
                .as_str()
                .ok_or_else(|| format!("`fixture` must be a path string, got {f}"))?;
            let path = crate::fixtures_dir().join(f);
            if !path.is_file() {
                return Err(format!("fixture not found: {}", path.display()));
            }
            return Ok(Reply::Fixture(f.to_owned()));
        }
        if let Some(steps) = obj.get("sse") {
            let steps = steps
                .as_array()
                .ok_or_else(|| format!("`sse` must be an array of steps, got {steps}"))?;
            let events = steps
                .iter()
                .map(SseStep::from_control_json)
                .collect::<Result<Vec<_>, _>>()?;
            let end = match obj.get("end").map(|e| e.as_str()) {
                None | Some(Some("done")) => StreamEnd::Done,
                Some(Some("close")) => StreamEnd::Close,
                Some(Some("drop")) => StreamEnd::Drop,
                Some(_) => return Err("`end` must be \"done\", \"close\" or \"drop\"".to_owned()),
            };
            return Ok(Reply::Sse { events, end });
        }
        if let Some(raw) = obj.get("raw") {
            let raw = raw
                .as_str()
                .ok_or_else(|| format!("`raw` must be a string, got {raw}"))?;
            let content_type = match obj.get("content_type") {
                None => "application/json".to_owned(),
                Some(c) => c
                    .as_str()
                    .ok_or_else(|| format!("`content_type` must be a string, got {c}"))?
                    .to_owned(),
            };
            return Ok(Reply::Raw {
                status,
                content_type,
                body: Bytes::copy_from_slice(raw.as_bytes()),
            });
        }
        if obj.contains_key("status") || obj.contains_key("body") {
            let headers = match obj.get("headers") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Object(h)) => h
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
                Some(h) => return Err(format!("`headers` must be an object, got {h}")),
            };
            return Ok(Reply::Json {
                status,
                body: obj.get("body").cloned().unwrap_or_else(|| json!({})),
                headers,
            });
        }
        Err(format!(
            "unknown reply {v}: expected one of status/body, raw, sse, fixture, hang, drop"
        ))
    }
}

/// The body of an OpenAI error response.
pub(crate) fn error_body(status: u16, message: &str, param: Option<&str>) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        429 => ("rate_limit_error", Some("rate_limit_exceeded")),
        503 => ("server_error", Some("server_is_overloaded")),
        s if s >= 500 => ("server_error", None),
        _ => ("invalid_request_error", None),
    };
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// One body frame of a [`Reply::Sse`]: `data` is written as is, after `delay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseStep {
    pub delay: Duration,
    pub data: Bytes,
}

impl SseStep {
    /// `data: <json>\n\n`, with no delay.
    pub fn data(json: &Value) -> SseStep {
        SseStep {
            delay: Duration::ZERO,
            data: modelway_core::sse::encode_data(json.to_string().as_bytes()),
        }
    }

    /// These exact bytes (the caller writes the `data: ` framing, or breaks it on
    /// purpose), with no delay.
    pub fn raw(text: &str) -> SseStep {
        SseStep {
            delay: Duration::ZERO,
            data: Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    /// The same step, written `delay` after the previous one.
    pub fn after(self, delay: Duration) -> SseStep {
        SseStep { delay, ..self }
    }

    fn from_control_json(v: &Value) -> Result<SseStep, String> {
        let step = match (v.get("data"), v.get("raw")) {
            (Some(Value::String(s)), None) | (None, Some(Value::String(s))) => SseStep::raw(s),
            (Some(d), None) => SseStep::data(d),
            _ => {
                return Err(format!(
                    "an sse step needs `data` (JSON, or a raw string) or `raw`, got {v}"
                ))
            }
        };
        let delay = match v.get("delay_ms") {
            None => Duration::ZERO,
            Some(d) => Duration::from_millis(
                d.as_u64()
                    .ok_or_else(|| format!("`delay_ms` must be a whole number, got {d}"))?,
            ),
        };
        Ok(step.after(delay))
    }
}

/// How a [`Reply::Sse`] ends after its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Sends `data: [DONE]\n\n`, then ends the body.
    Done,
    /// Ends the body without `[DONE]`.
    Close,
    /// Aborts the connection mid-body: the client sees an incomplete chunked body
    /// (HTTP/2: a reset stream).
    Drop,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn control_json_rows() {
        let rows: Vec<(Value, Reply)> = vec![
            (json!({"hang": true}), Reply::Hang),
            (json!({"drop": true}), Reply::DropConnection),
            (
                json!({"status": 429, "body": {"x": 1}, "headers": {"retry-after": "2", "x-n": 3}}),
                Reply::Json {
                    status: 429,
                    body: json!({"x": 1}),
                    headers: vec![
                        ("retry-after".into(), "2".into()),
                        ("x-n".into(), "3".into()),
                    ],
                },
            ),
            (
                json!({"status": 500}),
                Reply::Json {
                    status: 500,
                    body: json!({}),
                    headers: vec![],
                },
            ),
            (
                json!({"raw": "{not json", "status": 200}),
                Reply::Raw {
                    status: 200,
                    content_type: "application/json".into(),
                    body: Bytes::from_static(b"{not json"),
                },
            ),
            (
                json!({"raw": "oops", "status": 502, "content_type": "text/html"}),
                Reply::Raw {
                    status: 502,
                    content_type: "text/html".into(),
                    body: Bytes::from_static(b"oops"),
                },
            ),
            (
                json!({"sse": [{"data": {"a": 1}}, {"data": "data: x\n\n", "delay_ms": 10}], "end": "drop"}),
                Reply::Sse {
                    events: vec![
                        SseStep::raw("data: {\"a\":1}\n\n"),
                        SseStep::raw("data: x\n\n").after(Duration::from_millis(10)),
                    ],
                    end: StreamEnd::Drop,
                },
            ),
            (
                json!({"sse": []}),
                Reply::Sse {
                    events: vec![],
                    end: StreamEnd::Done,
                },
            ),
            (
                json!({"fixture": "openai/sdk-recordings/stream-text.sse"}),
                Reply::Fixture("openai/sdk-recordings/stream-text.sse".into()),
            ),
        ];
        for (input, want) in rows {
            assert_eq!(Reply::from_control_json(&input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn control_json_errors() {
        for bad in [
            json!([]),
            json!({}),
            json!({"status": "x"}),
            json!({"sse": [{"delay_ms": 1}]}),
            json!({"sse": [], "end": "later"}),
            json!({"fixture": "nope/missing.sse"}),
        ] {
            assert!(Reply::from_control_json(&bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn error_shape() {
        let Reply::Json { status, body, .. } = Reply::error(429, "slow down") else {
            panic!("not json")
        };
        assert_eq!(status, 429);
        assert_eq!(
            body,
            json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})
        );
    }
}
