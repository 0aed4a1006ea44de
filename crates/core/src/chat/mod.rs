//! The canonical OpenAI Chat Completions model: what clients send and what every
//! provider answers with. Field names and shapes are OpenAI's; every struct keeps the
//! fields it does not know in an `extra` map so an OpenAI-compatible upstream receives
//! parameters modelway has never heard of.

mod chunk;
mod message;
mod request;
mod response;
mod usage;

pub use chunk::{ChatChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta};
pub use message::{
    ContentPart, FileData, FunctionCall, ImageUrl, InputAudio, Message, MessageContent, PartType,
    Role, ToolCall,
};
pub use request::{
    ChatRequest, FunctionDef, JsonSchemaFormat, ResponseFormat, ResponseFormatType, Stop,
    StreamOptions, Tool, ToolChoice, ToolChoiceMode,
};
pub use response::{ChatResponse, Choice, FinishReason, ResponseMessage};
pub use usage::{CompletionTokensDetails, PromptTokensDetails, Usage};

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
            $($(#[$vmeta])* $variant,)+
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
