use serde::Serialize;

use super::de::{deserialize_with_extra, string_or};
use super::{open_string_enum, Extra, Message};

/// `POST /v1/chat/completions` request body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRequest {
    /// The route, `provider/model` slug or model name to resolve.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Whether to answer as an SSE stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Stream options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// The most tokens to generate (the older name of `max_completion_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// The most tokens to generate, reasoning included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// How many choices to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Sequences that end the generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Penalty on tokens already present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Penalty on tokens by their frequency so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Token id → bias added to its logit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
    /// Whether to return log probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// How many most-likely tokens to return per position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// A seed for deterministic sampling, where the upstream offers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// An end-user id for the upstream's abuse monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Which tool the model must or may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Text, a JSON object or JSON matching a schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// `low`, `medium`, `high`, …: how hard a reasoning model thinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Everything else (`metadata`, `store`, `service_tier`, `prediction`, provider
    /// extensions, …), forwarded as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatRequest {
    /// A minimal request: one model, these messages.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            messages,
            stream: None,
            stream_options: None,
            max_tokens: None,
            max_completion_tokens: None,
            temperature: None,
            top_p: None,
            n: None,
            stop: None,
            presence_penalty: None,
            frequency_penalty: None,
            logit_bias: None,
            logprobs: None,
            top_logprobs: None,
            seed: None,
            user: None,
            tools: None,
            tool_choice: None,
            parallel_tool_calls: None,
            response_format: None,
            reasoning_effort: None,
            extra: Extra::new(),
        }
    }

    /// Whether the client asked for an SSE stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client asked for the final usage chunk of a stream.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

/// `stream_options`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamOptions {
    /// Whether the last chunk carries the usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `stop`: one sequence or several.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Stop {
    /// One sequence.
    One(String),
    /// Several sequences.
    Many(Vec<String>),
}

impl Stop {
    /// The sequences as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

/// A tool the model may call. `kind` is `function` (with `function` set) or `custom`
/// (payload kept in `extra`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tool {
    /// `function` or `custom`.
    #[serde(rename = "type", default = "super::message::function_type")]
    pub kind: String,
    /// A function tool's definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDef>,
    /// Unknown fields (a custom tool's payload), kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A function tool's definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionDef {
    /// The function's name.
    pub name: String,
    /// What the function does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// Whether the arguments must match `parameters` exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

open_string_enum! {
    /// The string forms of `tool_choice`.
    ToolChoiceMode {
        None = "none",
        Auto = "auto",
        Required = "required",
    }
}

/// `tool_choice`: a mode string or an object (`{type:"function", function:{name}}`,
/// `allowed_tools`, `custom`), the object kept as sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `none`, `auto` or `required`.
    Mode(ToolChoiceMode),
    /// An object, kept as sent.
    Object(Extra),
}

impl ToolChoice {
    /// The function name a `{type:"function", function:{name}}` choice forces.
    pub fn forced_function(&self) -> Option<&str> {
        match self {
            ToolChoice::Object(o) => o.get("function")?.get("name")?.as_str(),
            ToolChoice::Mode(_) => None,
        }
    }
}

open_string_enum! {
    /// `response_format.type`.
    ResponseFormatType {
        Text = "text",
        JsonObject = "json_object",
        JsonSchema = "json_schema",
    }
}

/// `response_format`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: ResponseFormatType,
    /// The schema of a `json_schema` format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<JsonSchemaFormat>,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `response_format.json_schema`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonSchemaFormat {
    /// The schema's name.
    pub name: String,
    /// What the schema is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// Whether the output must match the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

string_or!(Stop, "a string or an array of strings", str => Stop::One, seq => Stop::Many);
string_or!(ToolChoice, "\"none\", \"auto\", \"required\" or a tool choice object",
    str => |s: String| ToolChoice::Mode(ToolChoiceMode::from(s.as_str())), map => ToolChoice::Object);
deserialize_with_extra!(ChatRequest {
    model: "model" => req,
    messages: "messages" => req,
    stream: "stream" => opt,
    stream_options: "stream_options" => opt,
    max_tokens: "max_tokens" => opt,
    max_completion_tokens: "max_completion_tokens" => opt,
    temperature: "temperature" => opt,
    top_p: "top_p" => opt,
    n: "n" => opt,
    stop: "stop" => opt,
    presence_penalty: "presence_penalty" => opt,
    frequency_penalty: "frequency_penalty" => opt,
    logit_bias: "logit_bias" => opt,
    logprobs: "logprobs" => opt,
    top_logprobs: "top_logprobs" => opt,
    seed: "seed" => opt,
    user: "user" => opt,
    tools: "tools" => opt,
    tool_choice: "tool_choice" => opt,
    parallel_tool_calls: "parallel_tool_calls" => opt,
    response_format: "response_format" => opt,
    reasoning_effort: "reasoning_effort" => opt,
});
deserialize_with_extra!(StreamOptions {
    include_usage: "include_usage" => opt,
});
deserialize_with_extra!(Tool {
    kind: "type" => (with super::message::function_type()),
    function: "function" => opt,
});
deserialize_with_extra!(FunctionDef {
    name: "name" => req,
    description: "description" => opt,
    parameters: "parameters" => opt,
    strict: "strict" => opt,
});
deserialize_with_extra!(ResponseFormat {
    kind: "type" => req,
    json_schema: "json_schema" => opt,
});
deserialize_with_extra!(JsonSchemaFormat {
    name: "name" => req,
    description: "description" => opt,
    schema: "schema" => opt,
    strict: "strict" => opt,
});
