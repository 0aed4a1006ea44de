use serde::Serialize;

use super::de::deserialize_with_extra;
use super::{open_string_enum, Extra, Role, TokenCounts, ToolCall, Usage};

/// A non-streaming completion (`object: "chat.completion"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatResponse {
    /// The completion's id.
    pub id: String,
    /// Always `chat.completion`.
    #[serde(default = "completion_object")]
    pub object: String,
    /// Unix time in seconds the completion was created.
    #[serde(default)]
    pub created: u64,
    /// The model that answered, as the upstream names it.
    pub model: String,
    /// The choices, by `index`.
    pub choices: Vec<Choice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// `system_fingerprint`, `service_tier`, provider fields, kept exactly as sent
    /// (including explicit nulls).
    #[serde(flatten)]
    pub extra: Extra,
}

fn completion_object() -> String {
    "chat.completion".to_owned()
}

/// A non-streaming completion as a provider delivers it.
///
/// An upstream that already speaks OpenAI's format can hand over its own body
/// (`Raw`, checked to be a completion object) so the gateway forwards it without a
/// second parse and re-encode; translating providers build a `Parsed` one.
#[derive(Debug, Clone, PartialEq)]
// `Raw` is the passthrough hot path: moving its ~240 bytes is cheaper than a box.
#[allow(clippy::large_enum_variant)]
pub enum Completion {
    /// A typed completion.
    Parsed(Box<ChatResponse>),
    /// A JSON `chat.completion` object, as the upstream sent it.
    Raw(RawCompletion),
    /// An answer in the client's own dialect, as the upstream sent it (an Anthropic
    /// `message` for a Messages client): the client gets `body` unchanged; everything
    /// else (telemetry, usage, another dialect) reads `parsed`.
    Native(NativeCompletion),
}

/// An upstream's answer in the client's dialect, with its canonical reading.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeCompletion {
    /// The dialect `body` is in.
    pub dialect: super::ClientDialect,
    /// The upstream's body, byte for byte.
    pub body: bytes::Bytes,
    /// The same answer in the canonical model.
    pub parsed: Box<ChatResponse>,
}

impl Completion {
    /// The upstream's own body when it is in `dialect` (a passthrough answer).
    pub fn native(&self, dialect: super::ClientDialect) -> Option<&bytes::Bytes> {
        match self {
            Completion::Native(n) if n.dialect == dialect => Some(&n.body),
            _ => None,
        }
    }
}

/// An upstream's own `chat.completion` body, checked in one pass to be a well-formed
/// completion object, with where its `id`, `model` and `usage` are — so telemetry and
/// usage read them without parsing the body again.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCompletion {
    body: bytes::Bytes,
    id: Option<std::ops::Range<usize>>,
    model: Option<std::ops::Range<usize>>,
    usage: Option<std::ops::Range<usize>>,
    choices: std::ops::Range<usize>,
    /// Read once, on first ask: telemetry, the log line and accounting all ask.
    tokens_read: std::sync::OnceLock<Option<TokenCounts>>,
    finish_read: std::sync::OnceLock<Vec<FinishReason>>,
}

impl RawCompletion {
    /// `Some` when `body` is one well-formed JSON object with `choices` and no
    /// non-null `error` (one validating pass, nothing built).
    pub fn scan(body: bytes::Bytes) -> Option<Self> {
        let (mut id, mut model, mut usage, mut choices) = (None, None, None, None);
        let mut error = false;
        let valid = crate::json::object_members(&body, |key, value| match key {
            b"choices" => choices = Some(value),
            b"error" => error |= &body[value] != b"null",
            b"id" => id = Some(value),
            b"model" => model = Some(value),
            b"usage" => usage = Some(value),
            _ => {}
        });
        let choices = choices.filter(|_| valid && !error)?;
        Some(Self {
            body,
            id,
            model,
            usage,
            choices,
            tokens_read: std::sync::OnceLock::new(),
            finish_read: std::sync::OnceLock::new(),
        })
    }

    /// The body as the upstream sent it.
    pub fn body(&self) -> &bytes::Bytes {
        &self.body
    }

    /// A top-level string member (escapes left as sent; ids and model names have none).
    fn string(&self, at: &Option<std::ops::Range<usize>>) -> Option<&str> {
        let v = self.body.get(at.clone()?)?;
        let v = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\""))?;
        std::str::from_utf8(v).ok()
    }
}

impl RawCompletion {
    /// The token counts of `usage`, read in place (once): no value is built.
    fn tokens(&self) -> Option<TokenCounts> {
        *self.tokens_read.get_or_init(|| self.read_tokens())
    }

    fn read_tokens(&self) -> Option<TokenCounts> {
        let usage = self.body.get(self.usage.clone()?)?;
        if !usage.starts_with(b"{") {
            return None;
        }
        // The usage object was validated by the scan, and its keys are unique names
        // (`prompt_tokens`, and `cached_tokens` inside `prompt_tokens_details`, …), so
        // one walk from string to string finds each count: a string followed by `:` is
        // a key, and the number after it its value. No tree, no search per key.
        let (mut input, mut output, mut cached, mut reasoning, mut cache_write) =
            (None, None, None, None, None);
        let mut cost = None;
        let mut i = 0;
        while let Some(open) = memchr::memchr(b'"', &usage[i..]) {
            let start = i + open + 1;
            let Some(len) = string_len(&usage[start..]) else {
                break;
            };
            let key = &usage[start..start + len];
            i = start + len + 1;
            let Some(value) = usage[i..].trim_ascii_start().strip_prefix(b":") else {
                continue; // a string value, not a key
            };
            let value = value.trim_ascii_start();
            let slot = match key {
                b"prompt_tokens" => &mut input,
                b"completion_tokens" => &mut output,
                b"cached_tokens" => &mut cached,
                b"reasoning_tokens" => &mut reasoning,
                b"cache_write_tokens" => &mut cache_write,
                b"cost" => {
                    // OpenRouter's `usage.cost`, in USD: a number, not a count.
                    let end = value
                        .iter()
                        .position(|b| {
                            !(b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
                        })
                        .unwrap_or(value.len());
                    if cost.is_none() {
                        cost = std::str::from_utf8(&value[..end])
                            .ok()
                            .and_then(|n| n.parse::<f64>().ok())
                            .filter(|c| c.is_finite() && *c >= 0.0);
                    }
                    continue;
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = count(value);
            }
        }
        Some(TokenCounts {
            input: input.unwrap_or(0),
            output: output.unwrap_or(0),
            cached_input: cached,
            reasoning,
            cache_write,
            reported_cost: cost,
        })
    }

    /// Each choice's `finish_reason`, read in place (once).
    fn finish_reasons(&self) -> Vec<FinishReason> {
        self.finish_read
            .get_or_init(|| self.read_finish_reasons())
            .clone()
    }

    fn read_finish_reasons(&self) -> Vec<FinishReason> {
        // As for the token counts: `"finish_reason"` followed by `:` is a key (a quote
        // inside a string is escaped), so one pass over the quotes finds each choice's.
        const KEY: &[u8] = b"finish_reason\"";
        let Some(choices) = self.body.get(self.choices.clone()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for q in memchr::memchr_iter(b'"', choices) {
            let Some(after) = choices[q + 1..].strip_prefix(KEY) else {
                continue;
            };
            let Some(v) = after.trim_ascii_start().strip_prefix(b":") else {
                continue;
            };
            let Some(v) = v.trim_ascii_start().strip_prefix(b"\"") else {
                continue; // null
            };
            if let Some(end) = memchr::memchr(b'"', v) {
                if let Ok(r) = std::str::from_utf8(&v[..end]) {
                    out.push(FinishReason::from(r));
                }
            }
        }
        out
    }
}

/// The length of a JSON string's contents, `s` starting just after its opening quote
/// (escapes skipped, not decoded).
fn string_len(s: &[u8]) -> Option<usize> {
    let mut j = 0;
    loop {
        j += memchr::memchr2(b'"', b'\\', s.get(j..)?)?;
        if s[j] == b'"' {
            return Some(j);
        }
        j += 2;
    }
}

/// The non-negative integer `v` starts with (`None` for anything else, or one too
/// large for a `u64`).
fn count(v: &[u8]) -> Option<u64> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    v[..digits].iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// What telemetry and accounting read of a completion.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompletionFacts<'a> {
    /// The completion's id, when the body has one.
    pub id: Option<&'a str>,
    /// The model that answered, when the body names one.
    pub model: Option<&'a str>,
    /// Token counts, when the body carries them.
    pub tokens: Option<TokenCounts>,
}

impl Completion {
    /// The typed completion (parses a `Raw` body).
    pub fn into_response(self) -> Result<ChatResponse, serde_json::Error> {
        match self {
            Completion::Parsed(r) => Ok(*r),
            Completion::Raw(r) => serde_json::from_slice(&r.body),
            Completion::Native(n) => Ok(*n.parsed),
        }
    }

    /// The JSON body to send a client.
    pub fn to_json(&self) -> Result<bytes::Bytes, serde_json::Error> {
        match self {
            Completion::Parsed(r) => serde_json::to_vec(r.as_ref()).map(bytes::Bytes::from),
            Completion::Raw(r) => Ok(r.body.clone()),
            Completion::Native(n) => serde_json::to_vec(n.parsed.as_ref()).map(bytes::Bytes::from),
        }
    }

    /// Its id, model and token counts. A raw body's are read where the scan found
    /// them, in place (the body was validated once; nothing is parsed again).
    pub fn facts(&self) -> CompletionFacts<'_> {
        match self {
            Completion::Parsed(r) => CompletionFacts {
                id: Some(&r.id),
                model: Some(&r.model),
                tokens: r.usage.as_ref().map(TokenCounts::from),
            },
            Completion::Native(NativeCompletion { parsed: r, .. }) => CompletionFacts {
                id: Some(&r.id),
                model: Some(&r.model),
                tokens: r.usage.as_ref().map(TokenCounts::from),
            },
            Completion::Raw(r) => CompletionFacts {
                id: r.string(&r.id),
                model: r.string(&r.model),
                tokens: r.tokens(),
            },
        }
    }

    /// The finish reason of each choice (a raw body's read in place).
    pub fn finish_reasons(&self) -> Vec<FinishReason> {
        match self {
            Completion::Parsed(r) | Completion::Native(NativeCompletion { parsed: r, .. }) => r
                .choices
                .iter()
                .filter_map(|c| c.finish_reason.clone())
                .collect(),
            Completion::Raw(r) => r.finish_reasons(),
        }
    }
}

/// One choice of a completion. `logprobs` and `finish_reason` are always serialised
/// (as `null` when absent), as the OpenAI spec requires.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    /// Which choice this is.
    #[serde(default)]
    pub index: u32,
    /// The assistant's message.
    pub message: ResponseMessage,
    /// Log probabilities, when asked for; kept as sent.
    #[serde(default)]
    pub logprobs: Option<serde_json::Value>,
    /// Why the choice stopped.
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The assistant message of a choice. `content` and `refusal` are always serialised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseMessage {
    /// Always `assistant`.
    #[serde(default = "assistant")]
    pub role: Role,
    /// The answer's text (`null` when the model only called tools).
    #[serde(default)]
    pub content: Option<String>,
    /// Refusal text, when the model refused.
    #[serde(default)]
    pub refusal: Option<String>,
    /// The tools the model called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// `annotations`, `audio`, `reasoning_content`, …
    #[serde(flatten)]
    pub extra: Extra,
}

fn assistant() -> Role {
    Role::Assistant
}

impl ResponseMessage {
    /// An assistant message with this text.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: Some(text.into()),
            refusal: None,
            tool_calls: None,
            extra: Extra::new(),
        }
    }
}

open_string_enum! {
    /// Why a choice stopped.
    FinishReason {
        Stop = "stop",
        Length = "length",
        ToolCalls = "tool_calls",
        ContentFilter = "content_filter",
        FunctionCall = "function_call",
    }
}

deserialize_with_extra!(ChatResponse {
    id: "id" => req,
    object: "object" => (with completion_object()),
    created: "created" => default,
    model: "model" => req,
    choices: "choices" => req,
    usage: "usage" => opt,
});
deserialize_with_extra!(Choice {
    index: "index" => default,
    message: "message" => req,
    logprobs: "logprobs" => opt,
    finish_reason: "finish_reason" => opt,
});
deserialize_with_extra!(ResponseMessage {
    role: "role" => (with assistant()),
    content: "content" => opt,
    refusal: "refusal" => opt,
    tool_calls: "tool_calls" => opt,
});

#[cfg(test)]
mod raw_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_raw_completion_reads_its_facts_without_a_full_parse() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m-up","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"},{"index":1,"message":{"role":"assistant","content":"yo"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":2}}}"#;
        let raw = RawCompletion::scan(bytes::Bytes::from_static(body)).unwrap();
        let c = Completion::Raw(raw);
        let f = c.facts();
        assert_eq!(f.id, Some("chatcmpl-1"));
        assert_eq!(f.model, Some("m-up"));
        let t = f.tokens.unwrap();
        assert_eq!((t.input, t.output), (3, 5));
        assert_eq!(t.cached_input, Some(2));
        assert_eq!(t.reasoning, None);
        // Whitespace around the colon, and a count of 0.
        let raw = RawCompletion::scan(bytes::Bytes::from_static(
            br#"{"choices":[],"usage":{ "prompt_tokens" : 12 , "completion_tokens":0, "completion_tokens_details":{"reasoning_tokens": 7}}}"#,
        ))
        .unwrap();
        let t = Completion::Raw(raw).facts().tokens.unwrap();
        assert_eq!(
            (t.input, t.output, t.cached_input, t.reasoning),
            (12, 0, None, Some(7))
        );
        // Every count a provider reports, among keys that start alike, and
        // OpenRouter's cost.
        let raw = RawCompletion::scan(bytes::Bytes::from_static(
            br#"{"choices":[],"usage":{"completion_tokens_details":{"accepted_prediction_tokens":9,"reasoning_tokens":4},"prompt_tokens_details":{"cache_write_tokens":6,"cached_tokens":5},"cost":0.0125,"completion_tokens":8,"prompt_tokens":20,"cost_details":{"x":1}}}"#,
        ))
        .unwrap();
        let t = Completion::Raw(raw).facts().tokens.unwrap();
        assert_eq!(
            (
                t.input,
                t.output,
                t.cached_input,
                t.reasoning,
                t.cache_write
            ),
            (20, 8, Some(5), Some(4), Some(6))
        );
        assert_eq!(t.reported_cost, Some(0.0125));
        // String values (one with escaped quotes that spell a key) are not keys; a
        // count too large for a u64, or not a count, is none.
        let raw = RawCompletion::scan(bytes::Bytes::from_static(
            br#"{"choices":[],"usage":{"note":"\"prompt_tokens\":99","tier":"prompt_tokens","prompt_tokens":7,"completion_tokens":99999999999999999999999,"cached_tokens":null,"reasoning_tokens":-1}}"#,
        ))
        .unwrap();
        let t = Completion::Raw(raw).facts().tokens.unwrap();
        assert_eq!(
            (t.input, t.output, t.cached_input, t.reasoning),
            (7, 0, None, None)
        );
        assert_eq!(
            c.finish_reasons(),
            [FinishReason::from("stop"), FinishReason::from("length")]
        );
        assert!(RawCompletion::scan(bytes::Bytes::from_static(
            br#"{"error":{"message":"x"},"choices":[]}"#
        ))
        .is_none());
    }
}
