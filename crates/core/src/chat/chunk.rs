use serde::{Deserialize, Serialize};

use super::de::deserialize_with_extra;
use super::{Extra, FinishReason, Role, Usage};

/// One streamed chunk (`object: "chat.completion.chunk"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatChunk {
    #[serde(default)]
    pub id: String,
    #[serde(default = "chunk_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// `system_fingerprint`, `service_tier`, provider fields, kept exactly as sent
    /// (including explicit nulls).
    #[serde(flatten)]
    pub extra: Extra,
    /// The upstream's own events this chunk was read from, in the client's dialect
    /// (an Anthropic stream for a Messages client), byte for byte: a passthrough
    /// stream sends these instead of encoding the chunk. Never serialised.
    #[serde(skip)]
    pub native: Option<bytes::Bytes>,
}

fn chunk_object() -> String {
    "chat.completion.chunk".to_owned()
}

impl ChatChunk {
    /// An empty chunk with these identifiers.
    pub fn new(id: impl Into<String>, created: u64, model: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            object: chunk_object(),
            created,
            model: model.into(),
            choices: Vec::new(),
            usage: None,
            extra: Extra::new(),
            native: None,
        }
    }
}

/// One choice's piece of a chunk. `finish_reason` is always serialised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<serde_json::Value>,
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChunkChoice {
    /// A choice carrying this delta.
    pub fn new(index: u32, delta: Delta) -> Self {
        Self {
            index,
            delta,
            logprobs: None,
            finish_reason: None,
            extra: Extra::new(),
        }
    }
}

/// What a chunk adds to a choice's message.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// `reasoning_content`, `reasoning`, `function_call`, …
    #[serde(flatten)]
    pub extra: Extra,
}

/// A fragment of a tool call. The first fragment of a call carries `id`, `type` and
/// `function.name`; later ones only `index` and an `arguments` piece.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallDelta {
    #[serde(default)]
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `function` of a tool-call fragment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

deserialize_with_extra!(ChatChunk {
    id: "id" => default,
    object: "object" => (with chunk_object()),
    created: "created" => default,
    model: "model" => default,
    choices: "choices" => default,
    usage: "usage" => opt,
} skip { native });
deserialize_with_extra!(ChunkChoice {
    index: "index" => default,
    delta: "delta" => default,
    logprobs: "logprobs" => opt,
    finish_reason: "finish_reason" => opt,
});
deserialize_with_extra!(Delta {
    role: "role" => opt,
    content: "content" => opt,
    refusal: "refusal" => opt,
    tool_calls: "tool_calls" => opt,
});
deserialize_with_extra!(ToolCallDelta {
    index: "index" => default,
    id: "id" => opt,
    kind: "type" => opt,
    function: "function" => opt,
});
