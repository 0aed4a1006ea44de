use std::borrow::Cow;

use bytestring::ByteString;
use serde::{Deserialize, Serialize};

use super::chunk_read::ChunkNames;
use super::de::deserialize_with_extra;
use super::{Extra, FinishReason, Role, Usage};

/// One streamed chunk (`object: "chat.completion.chunk"`).
///
/// Equality compares what the chunk says, not [`raw`](Self::raw).
#[derive(Debug, Clone, Serialize)]
pub struct ChatChunk {
    /// The completion's id, the same in every chunk of a stream.
    #[serde(default)]
    pub id: ByteString,
    /// Always `chat.completion.chunk` (borrowed, not allocated, when it is).
    pub object: Cow<'static, str>,
    /// Unix time in seconds the completion was created.
    #[serde(default)]
    pub created: u64,
    /// The model that wrote the chunk, as the upstream names it.
    #[serde(default)]
    pub model: ByteString,
    /// `system_fingerprint` as sent: `Some(None)` is an explicit `null`. A field of
    /// its own, not in [`extra`](Self::extra): OpenAI sends it in every chunk, and a
    /// map entry costs three allocations per chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<Option<ByteString>>,
    /// The choices' deltas; empty in a usage-only chunk.
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Token counts; only in the last chunk, when the client asked (`stream_options.include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Box<Usage>>,
    /// `system_fingerprint`, `service_tier`, provider fields, kept exactly as sent
    /// (including explicit nulls).
    #[serde(flatten)]
    pub extra: Extra,
    /// The upstream's own events this chunk was read from, in the client's dialect
    /// (an Anthropic stream for a Messages client), byte for byte: a passthrough
    /// stream sends these instead of encoding the chunk. Never serialised.
    #[serde(skip)]
    pub native: Option<bytes::Bytes>,
    /// The upstream's own JSON for this chunk (the `data:` of its event), kept when the
    /// upstream speaks Chat Completions: a Chat Completions client is sent these bytes
    /// rather than the chunk encoded again. Valid only while nothing changed the chunk:
    /// whatever edits a chunk that has them clears them (the stream normaliser does).
    /// Never serialised.
    #[serde(skip)]
    pub raw: Option<bytes::Bytes>,
}

impl PartialEq for ChatChunk {
    fn eq(&self, other: &Self) -> bool {
        // Destructured so that a new field must be placed here (compared or not).
        let Self {
            id,
            object,
            created,
            model,
            system_fingerprint,
            choices,
            usage,
            extra,
            native,
            raw: _,
        } = self;
        *id == other.id
            && *object == other.object
            && *created == other.created
            && *model == other.model
            && *system_fingerprint == other.system_fingerprint
            && *choices == other.choices
            && *usage == other.usage
            && *extra == other.extra
            && *native == other.native
    }
}

/// The `object` of every chunk.
pub(super) const CHUNK_OBJECT: &str = "chat.completion.chunk";

pub(super) fn chunk_object() -> Cow<'static, str> {
    Cow::Borrowed(CHUNK_OBJECT)
}

/// `object` as read: the usual value borrowed from a constant, anything else owned.
struct Object(Cow<'static, str>);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = super::de::Key::deserialize(d)?.0;
        Ok(Object(if s == CHUNK_OBJECT {
            chunk_object()
        } else {
            Cow::Owned(s.into_owned())
        }))
    }
}

/// `system_fingerprint` as read: `null` is `Some(None)`, not `None`, so that it is
/// written back as sent.
struct Fingerprint(Option<ByteString>);

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<ByteString>::deserialize(d).map(Fingerprint)
    }
}

impl ChatChunk {
    /// Parses one chunk's JSON (the `data:` of a Chat Completions stream event): the
    /// common shape directly, in one pass without serde's visitor, anything else
    /// through `Deserialize`. Either way the result is what `serde_json::from_str`
    /// gives for the same text.
    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        match super::chunk_read::read(text) {
            Some(chunk) => Ok(chunk),
            None => serde_json::from_str(text),
        }
    }

    /// [`Self::from_json`] for the next event of a stream, `data` as the SSE decoder
    /// gave it: its text is read in place (a chunk's content is a slice of `data`, not
    /// a copy), and `names` holds what the previous chunks said their `id`, `model` and
    /// `system_fingerprint` were, so a chunk that repeats them (nearly all do) shares
    /// that text rather than allocating it again. The result is the same.
    pub fn from_event(data: &ByteString, names: &mut ChunkNames) -> serde_json::Result<Self> {
        match super::chunk_read::read_shared(data, names) {
            Some(chunk) => Ok(chunk),
            None => serde_json::from_str(data),
        }
    }

    /// An empty chunk with these identifiers.
    pub fn new(id: impl Into<ByteString>, created: u64, model: impl Into<ByteString>) -> Self {
        Self {
            id: id.into(),
            object: chunk_object(),
            created,
            model: model.into(),
            system_fingerprint: None,
            choices: Vec::new(),
            usage: None,
            extra: Extra::new(),
            native: None,
            raw: None,
        }
    }
}

/// One choice's piece of a chunk. `finish_reason` is always serialised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkChoice {
    /// Which choice this delta continues.
    #[serde(default)]
    pub index: u32,
    /// What the choice adds in this chunk.
    #[serde(default)]
    pub delta: Delta,
    /// Log probabilities of the delta's tokens, when asked for; kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<serde_json::Value>,
    /// Set in the choice's last chunk: why it stopped.
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    /// Unknown fields, kept verbatim.
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// Set in a choice's first chunk (`assistant`).
    pub role: Option<Role>,
    /// The text this chunk adds.
    pub content: Option<ByteString>,
    /// With `content` unset, write `"content": null` rather than no key: what OpenAI
    /// sends in the role chunk of a turn that opens with tool calls
    /// (`{role: "assistant", content: null, tool_calls: […]}`). A translated stream
    /// must not say `content: ""` there: the Vercel AI SDK opens a text part for it and
    /// shows an empty one before the tool calls. Never read from the wire (a `null`
    /// from an upstream is the same as none to every accumulator).
    pub null_content: bool,
    /// Refusal text this chunk adds.
    pub refusal: Option<String>,
    /// Tool calls this chunk starts or continues (by `index`).
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// `reasoning_content`, `reasoning`, `function_call`, …
    pub extra: Extra,
}

impl Serialize for Delta {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        if let Some(role) = &self.role {
            m.serialize_entry("role", role)?;
        }
        match &self.content {
            Some(c) => m.serialize_entry("content", c)?,
            None if self.null_content => m.serialize_entry("content", &())?,
            None => {}
        }
        if let Some(r) = &self.refusal {
            m.serialize_entry("refusal", r)?;
        }
        if let Some(t) = &self.tool_calls {
            m.serialize_entry("tool_calls", t)?;
        }
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A fragment of a tool call. The first fragment of a call carries `id`, `type` and
/// `function.name`; later ones only `index` and an `arguments` piece.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallDelta {
    /// Which tool call of the choice this continues (stable for the whole stream).
    #[serde(default)]
    pub index: u32,
    /// The call's id, in its first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The call's `type` (`function`), in its first chunk.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The function's name (first chunk) and a piece of its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `function` of a tool-call fragment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    /// The function's name, in the call's first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The next piece of the JSON arguments; the pieces concatenated are the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

deserialize_with_extra!(ChatChunk {
    id: "id" => default,
    object: "object" => (via Object, chunk_object()),
    created: "created" => default,
    model: "model" => default,
    system_fingerprint: "system_fingerprint" => (via Fingerprint),
    choices: "choices" => default,
    usage: "usage" => opt,
} skip { native, raw });
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
} skip { null_content });
deserialize_with_extra!(ToolCallDelta {
    index: "index" => default,
    id: "id" => opt,
    kind: "type" => opt,
    function: "function" => opt,
});

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn object_and_fingerprint_are_written_back_as_sent() {
        // (chunk as sent, its `object` borrowed, what is written back when it differs)
        let rows = [
            (
                json!({"object": "chat.completion.chunk", "system_fingerprint": "fp_1"}),
                true,
            ),
            (
                json!({"object": "chat.completion.chunk", "system_fingerprint": null}),
                true,
            ),
            (json!({"object": "chat.completion.chunk"}), true),
            (
                json!({"object": "other", "system_fingerprint": "fp_2"}),
                false,
            ),
        ];
        for (sent, borrowed) in rows {
            let chunk: ChatChunk = serde_json::from_str(&sent.to_string()).unwrap();
            assert_eq!(matches!(chunk.object, Cow::Borrowed(_)), borrowed, "{sent}");
            let back = serde_json::to_value(&chunk).unwrap();
            assert_eq!(back.get("object"), sent.get("object"), "{sent}");
            assert_eq!(
                back.get("system_fingerprint"),
                sent.get("system_fingerprint"),
                "{sent}"
            );
            assert!(chunk.extra.is_empty(), "{sent}");
        }
        let absent: ChatChunk = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.object, "chat.completion.chunk");
        assert_eq!(absent.system_fingerprint, None);
    }

    #[test]
    fn a_delta_says_content_null_only_when_asked_and_never_reads_it() {
        // (delta, its JSON)
        let rows = [
            (Delta::default(), json!({})),
            (
                Delta {
                    role: Some(Role::Assistant),
                    null_content: true,
                    ..Delta::default()
                },
                json!({"role": "assistant", "content": null}),
            ),
            (
                Delta {
                    content: Some("hi".into()),
                    null_content: true,
                    ..Delta::default()
                },
                json!({"content": "hi"}),
            ),
            (
                Delta {
                    role: Some(Role::Assistant),
                    content: Some(ByteString::new()),
                    refusal: Some(String::new()),
                    extra: [("reasoning_content".to_owned(), json!("r"))]
                        .into_iter()
                        .collect(),
                    ..Delta::default()
                },
                json!({"role": "assistant", "content": "", "refusal": "", "reasoning_content": "r"}),
            ),
        ];
        for (delta, want) in rows {
            assert_eq!(serde_json::to_value(&delta).unwrap(), want, "{delta:?}");
        }
        let read: Delta =
            serde_json::from_value(json!({"role": "assistant", "content": null})).unwrap();
        assert_eq!((read.content, read.null_content), (None, false));
    }
}
