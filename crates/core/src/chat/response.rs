use serde::Serialize;

use super::de::deserialize_with_extra;
use super::{open_string_enum, Extra, Role, ToolCall, Usage};

/// A non-streaming completion (`object: "chat.completion"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatResponse {
    pub id: String,
    #[serde(default = "completion_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
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
pub enum Completion {
    Parsed(Box<ChatResponse>),
    /// A JSON `chat.completion` object, as the upstream sent it.
    Raw(bytes::Bytes),
}

impl Completion {
    /// The typed completion (parses a `Raw` body).
    pub fn into_response(self) -> Result<ChatResponse, serde_json::Error> {
        match self {
            Completion::Parsed(r) => Ok(*r),
            Completion::Raw(b) => serde_json::from_slice(&b),
        }
    }

    /// The JSON body to send a client.
    pub fn to_json(&self) -> Result<bytes::Bytes, serde_json::Error> {
        match self {
            Completion::Parsed(r) => serde_json::to_vec(r.as_ref()).map(bytes::Bytes::from),
            Completion::Raw(b) => Ok(b.clone()),
        }
    }
}

/// One choice of a completion. `logprobs` and `finish_reason` are always serialised
/// (as `null` when absent), as the OpenAI spec requires.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: ResponseMessage,
    #[serde(default)]
    pub logprobs: Option<serde_json::Value>,
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The assistant message of a choice. `content` and `refusal` are always serialised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseMessage {
    #[serde(default = "assistant")]
    pub role: Role,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
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
