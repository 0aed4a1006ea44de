//! The canonical OpenAI Chat Completions model: what clients send and what every
//! provider answers with. Field names and shapes are OpenAI's; every struct keeps the
//! fields it does not know in an `extra` map so an OpenAI-compatible upstream receives
//! parameters modelway has never heard of.

mod chunk;
mod chunk_read;
pub(crate) mod de;
mod message;
mod request;
mod response;
mod usage;

pub use chunk::{ChatChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta};
pub use chunk_read::ChunkNames;
pub use message::{
    ContentPart, FileData, FunctionCall, ImageUrl, InputAudio, Message, MessageContent, PartType,
    Role, ToolCall,
};
pub use request::{
    ChatRequest, FunctionDef, JsonSchemaFormat, ResponseFormat, ResponseFormatType, Stop,
    StreamOptions, Tool, ToolChoice, ToolChoiceMode,
};
pub use response::{
    ChatResponse, Choice, Completion, CompletionFacts, FinishReason, NativeCompletion,
    RawCompletion, ResponseMessage,
};
pub use usage::{CompletionTokensDetails, PromptTokensDetails, TokenCounts, Usage};

/// Unknown JSON fields, kept verbatim.
pub type Extra = serde_json::Map<String, serde_json::Value>;

/// Declares a string enum whose unknown values survive as `Other(String)`, so a new
/// value from OpenAI (a new content-part type, a new finish reason) passes through
/// instead of failing the request.
macro_rules! open_string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* #[doc = concat!("`\"", $text, "\"` on the wire.")] $variant,)+
            /// A value modelway does not know; kept as sent.
            Other(String),
        }

        impl $name {
            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a string")
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok($name::from(v))
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
pub(crate) use open_string_enum;

/// The wire format a client spoke: which upstreams may take its bytes unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ClientDialect {
    /// OpenAI's own API: Chat Completions (`POST /v1/chat/completions`), the canonical
    /// model, and embeddings (`POST /v1/embeddings`).
    #[default]
    ChatCompletions,
    /// Anthropic Messages (`POST /v1/messages`).
    Messages,
    /// OpenAI Responses (`POST /v1/responses`).
    Responses,
}

impl ClientDialect {
    /// The upstream API that speaks this dialect, for messages to clients.
    pub fn api_name(self) -> &'static str {
        match self {
            Self::ChatCompletions => "OpenAI Chat Completions API",
            Self::Messages => "Anthropic Messages API",
            Self::Responses => "OpenAI Responses API",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(v: &Value) -> Value {
        let parsed: T = serde_json::from_value(v.clone()).expect("parses");
        let text = serde_json::to_string(&parsed).expect("serialises");
        // Through bytes too: the request path parses from a slice (borrowed keys).
        let again: T = serde_json::from_str(&text).expect("parses again");
        serde_json::to_value(&again).expect("serialises again")
    }

    #[test]
    fn a_maximal_request_survives_a_round_trip_unchanged() {
        let req = json!({
            "model": "gpt-4o", "stream": true,
            "stream_options": {"include_usage": true, "include_obfuscation": false},
            "max_tokens": 10, "max_completion_tokens": 20, "temperature": 0.5, "top_p": 0.9,
            "n": 2, "stop": ["a", "b"], "presence_penalty": 0.1, "frequency_penalty": -0.1,
            "logit_bias": {"50256": -100}, "logprobs": true, "top_logprobs": 3, "seed": 7,
            "user": "u", "parallel_tool_calls": false, "reasoning_effort": "low",
            "metadata": {"k": "v"}, "store": true, "service_tier": "flex",
            "prediction": {"type": "content", "content": "x"}, "foo_unknown": {"deep": [1, null]},
            "messages": [
                {"role": "developer", "content": "be brief", "x_dev": 1},
                {"role": "system", "content": [{"type": "text", "text": "sys"}], "name": "s"},
                {"role": "user", "content": [
                    {"type": "text", "text": "look", "prompt_cache_breakpoint": {"mode": "explicit"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                    {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
                    {"type": "file", "file": {"filename": "a.pdf", "file_data": "JVBE"}},
                    {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}}
                ]},
                {"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}
                ], "reasoning_content": "hmm"},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}
            ],
            "tools": [
                {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}, "strict": true}, "cache_control": {"type": "ephemeral"}},
                {"type": "custom", "custom": {"name": "grammar"}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": true}}
        });
        let mut want = req.clone();
        // `content: null` on an assistant message is the same as no content.
        want["messages"][3]
            .as_object_mut()
            .unwrap()
            .remove("content");
        want["messages"][3]
            .as_object_mut()
            .unwrap()
            .remove("refusal");
        assert_eq!(round_trip::<ChatRequest>(&req), want);
    }

    #[test]
    fn every_shape_of_the_polymorphic_fields_parses() {
        let rows = [
            json!({"stop": "END"}),
            json!({"stop": ["a"]}),
            json!({"tool_choice": "auto"}),
            json!({"tool_choice": "required"}),
            json!({"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}}),
            json!({"response_format": {"type": "json_object"}}),
            json!({"response_format": {"type": "text"}}),
            json!({"messages": [{"role": "user", "content": "plain"}]}),
            json!({"messages": [{"role": "critic", "content": "an unknown role is kept"}]}),
        ];
        for extra in rows {
            let mut req = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
            for (k, v) in extra.as_object().unwrap() {
                req[k] = v.clone();
            }
            assert_eq!(round_trip::<ChatRequest>(&req), req, "{extra}");
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let rows = [
            (r#"{"messages":[]}"#, "missing field `model`"),
            (r#"{"model":"m"}"#, "missing field `messages`"),
            (
                r#"{"model":"m","messages":[{"content":"x"}]}"#,
                "missing field `role`",
            ),
            (
                r#"{"model":"m","messages":[],"temperature":"hot"}"#,
                "invalid type",
            ),
            (
                r#"{"model":"m","messages":[],"stop":5}"#,
                "a string or an array of strings",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
                "a string or an array of content parts",
            ),
        ];
        for (body, want) in rows {
            let err = serde_json::from_str::<ChatRequest>(body)
                .expect_err(body)
                .to_string();
            assert!(err.contains(want), "{body}: expected {want:?} in {err:?}");
        }
    }

    #[test]
    fn recorded_chunks_survive_a_round_trip() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/openai/sdk-recordings"
        );
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("sse") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
                if line == "[DONE]" {
                    continue;
                }
                let v: Value = serde_json::from_str(line).expect("json");
                let mut want = v.clone();
                // A null `logprobs`, `delta.content` or `delta.refusal` is the same as
                // none to every accumulator; modelway omits them.
                for c in want["choices"].as_array_mut().unwrap() {
                    let c = c.as_object_mut().unwrap();
                    if c["logprobs"].is_null() {
                        c.remove("logprobs");
                    }
                    let delta = c.get_mut("delta").unwrap().as_object_mut().unwrap();
                    delta.retain(|k, v| !(v.is_null() && (k == "content" || k == "refusal")));
                }
                let got = round_trip::<ChatChunk>(&v);
                assert_eq!(got, want, "{}", path.display());
                seen += 1;
            }
        }
        assert!(seen > 100, "only {seen} chunks checked");
    }
}
