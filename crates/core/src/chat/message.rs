use serde::{Deserialize, Serialize};

use super::de::{deserialize_with_extra, string_or};
use super::{open_string_enum, Extra};

open_string_enum! {
    /// Who wrote a message.
    Role {
        System = "system",
        Developer = "developer",
        User = "user",
        Assistant = "assistant",
        Tool = "tool",
        /// Deprecated predecessor of `tool`.
        Function = "function",
    }
}

/// One message of the conversation, any role.
///
/// A flat struct rather than an enum per role: roles share most fields, and a
/// translator matches on `role` and reads what that role may carry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// `None` serialises as an absent key (assistant tool-call turns may omit it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// An optional name of the participant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Assistant only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Tool only: which call this message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Assistant only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// `tool_call_id`, `audio`, provider fields, …: kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Message {
    /// A message with text content.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(MessageContent::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            refusal: None,
            extra: Extra::new(),
        }
    }

    /// The text of the message: the string content, or its text parts joined.
    pub fn text_content(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(MessageContent::Text(s)) => s.clone(),
            Some(MessageContent::Parts(parts)) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

/// A message's content: a plain string or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// A plain string.
    Text(String),
    /// Content parts (text, images, audio, files).
    Parts(Vec<ContentPart>),
}

open_string_enum! {
    /// The `type` of a content part.
    PartType {
        Text = "text",
        ImageUrl = "image_url",
        InputAudio = "input_audio",
        File = "file",
        Refusal = "refusal",
    }
}

/// One content part. `kind` says which payload field is set; part types modelway does
/// not know (e.g. vLLM's `video_url`) keep their payload in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContentPart {
    /// Which of the payload fields below is set.
    #[serde(rename = "type")]
    pub kind: PartType,
    /// A `text` part's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An `image_url` part's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<ImageUrl>,
    /// An `input_audio` part's audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_audio: Option<InputAudio>,
    /// A `file` part's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileData>,
    /// A `refusal` part's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Unknown fields (and unknown parts' payloads), kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            kind: PartType::Text,
            text: Some(text.into()),
            image_url: None,
            input_audio: None,
            file: None,
            refusal: None,
            extra: Extra::new(),
        }
    }
}

/// `image_url` payload: an http(s) URL or a `data:` URI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageUrl {
    /// An `https:` URL or a `data:` URI.
    pub url: String,
    /// `auto`, `low` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `input_audio` payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputAudio {
    /// Base64 audio bytes.
    pub data: String,
    /// `wav` or `mp3`.
    pub format: String,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `file` payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileData {
    /// The file's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The file's bytes as a base64 `data:` URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    /// An uploaded file's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool call made by the assistant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    /// The call's id, which the tool's answer names.
    pub id: String,
    /// The call's `type` (`function`).
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function and its arguments.
    pub function: FunctionCall,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

pub(crate) fn function_type() -> String {
    "function".to_owned()
}

/// The function a tool call invokes; `arguments` is a JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// Its arguments, a JSON text.
    #[serde(default)]
    pub arguments: String,
}

string_or!(MessageContent, "a string or an array of content parts",
    str => MessageContent::Text, seq => MessageContent::Parts);
deserialize_with_extra!(Message {
    role: "role" => req,
    content: "content" => opt,
    name: "name" => opt,
    tool_calls: "tool_calls" => opt,
    tool_call_id: "tool_call_id" => opt,
    refusal: "refusal" => opt,
});
deserialize_with_extra!(ContentPart {
    kind: "type" => req,
    text: "text" => opt,
    image_url: "image_url" => opt,
    input_audio: "input_audio" => opt,
    file: "file" => opt,
    refusal: "refusal" => opt,
});
deserialize_with_extra!(ImageUrl {
    url: "url" => req,
    detail: "detail" => opt,
});
deserialize_with_extra!(InputAudio {
    data: "data" => req,
    format: "format" => req,
});
deserialize_with_extra!(FileData {
    filename: "filename" => opt,
    file_data: "file_data" => opt,
    file_id: "file_id" => opt,
});
deserialize_with_extra!(ToolCall {
    id: "id" => req,
    kind: "type" => (with function_type()),
    function: "function" => req,
});
