//! Anthropic Messages as a front door (WIRE.md §9.1): a `POST /v1/messages` body →
//! the canonical [`ChatRequest`], and canonical answers, streams and errors → the
//! Anthropic `message` object, SSE events and error body. Pure functions and one
//! state machine; the HTTP handler calls them.
//!
//! The canonical request carries what only Anthropic understands the way
//! `providers/anthropic` reads it back, so a translated route to Anthropic sends what
//! the client sent (the few exceptions are listed below). Unlike the table in WIRE.md
//! §9.1, system blocks are not joined into one string and `cache_control` is kept
//! everywhere: Claude Code marks its system prompt and last turn for caching, and a
//! route to Anthropic must keep its cache warm.
//!
//! | Messages request | canonical |
//! |---|---|
//! | `max_tokens` (required) | `max_completion_tokens` |
//! | `system` (string or text blocks) | one leading `system` message |
//! | `text` block `cache_control` | the text part's `extra.cache_control` |
//! | `image` base64 / url source | `image_url` part with a `data:` URL / the URL |
//! | `document` base64 PDF / text / content source | `file` part (`file_data` data URL, `filename` = title or `document.pdf`) / text parts |
//! | `tool_use` (assistant) | `tool_calls[]`, `arguments` = the input as compact JSON (key order kept), `cache_control` in the call's `extra` |
//! | `tool_result` (user) | a `tool` message per block, before the rest of the turn; `is_error` and `cache_control` in its `extra` |
//! | `thinking` / `redacted_thinking` (assistant) | `reasoning_content` (the thinking text) + `thinking_blocks` (`{type, thinking, signature}` / `{type, data}`, replayed verbatim by the provider) |
//! | `tools[]` | function tools; `cache_control` in the tool's `extra` |
//! | `tool_choice` auto / any / tool / none, `disable_parallel_tool_use` | `auto` / `required` / `{type:function, function:{name}}` / `none`, `parallel_tool_calls: false` |
//! | `stop_sequences`, `temperature`, `top_p` | `stop`, `temperature`, `top_p` |
//! | `metadata.user_id` | `user` |
//! | `stream: true` | `stream: true`, `stream_options.include_usage: true` |
//! | `output_config.format` json_schema | `response_format` json_schema (`name: "output"`, strict), `output_config` itself kept in `extra` |
//! | `thinking`, `top_k`, `service_tier`, `container`, `context_management`, … and any unknown field | `extra`, unchanged |
//!
//! `thinking` is not turned into `reasoning_effort`: which budget means which effort,
//! and whether a non-reasoning upstream should get one at all, is policy for the route
//! (WIRE.md §9.5), and the Anthropic provider prefers the client's `thinking` anyway.
//!
//! Content that is one text block without `cache_control` becomes a plain string;
//! anything else stays a list of parts (nothing is joined, so no separator is
//! invented). Lossy by design, and said here: a `document`'s `context` and
//! `citations`, a text block's `citations` and unknown fields of tools are dropped;
//! images and documents inside a `tool_result` move to the user message that follows
//! the tool messages (a chat `tool` message holds only text); text after a `tool_use`
//! joins the assistant content (chat has no interleaving); thinking blocks without a
//! signature (ours, from a non-Anthropic upstream) are kept only as
//! `reasoning_content`, since Anthropic rejects an unsigned replay. Refused with a 400
//! naming the field: server tools and server-tool blocks, `file` sources (Files API),
//! `url` document sources, blocks in a role that cannot hold them, unknown block types.
//!
//! Answers: thinking blocks first (from `thinking_blocks`, else one unsigned block from
//! `reasoning_content`/`reasoning`), then the text, then one `tool_use` per call.
//! `stop_reason` comes from the finish reason (`stop` → `end_turn`, `length` →
//! `max_tokens`, `tool_calls` → `tool_use`, `content_filter` → `refusal`; `stop` with
//! tool calls → `tool_use`), unless the upstream's own reason survived as a known
//! Anthropic `native_finish_reason`; a vLLM-style `stop_reason` string on a `stop`
//! choice is the matched stop sequence. Usage inverts the provider's mapping exactly:
//! `input_tokens = prompt_tokens − cached_tokens − cache_write_tokens`.

use bytes::Bytes;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::chat::{
    ChatChunk, ChatRequest, ContentPart, Extra, FileData, FinishReason, FunctionCall, FunctionDef,
    ImageUrl, JsonSchemaFormat, Message, MessageContent, PartType, ResponseFormat,
    ResponseFormatType, Role, Stop, StreamOptions, TokenCounts, Tool, ToolCall, ToolCallDelta,
    ToolChoice, ToolChoiceMode, Usage,
};
use crate::error::GatewayError;

/// The SSE `ping` event.
pub const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

/// Top-level fields of a Messages request that stay in [`ChatRequest::extra`] under
/// their Anthropic names (unknown fields are kept there too). The Anthropic provider
/// reads every one (Gemini's reads `top_k`), but a strict OpenAI-compatible upstream —
/// OpenAI itself — rejects parameters it does not know, so a route there should remove
/// them before the call.
pub const ANTHROPIC_ONLY_FIELDS: &[&str] = &[
    "thinking",
    "top_k",
    "output_config",
    "service_tier",
    "container",
    "context_management",
    "mcp_servers",
    "inference_geo",
    "cache_control",
];

// ---------------------------------------------------------------------------------
// The request, as sent.

/// A `content` (of a message, a `tool_result`, a document source) or a `system`: a
/// string or a list of blocks.
#[derive(Debug)]
enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of content blocks")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                // Elements go straight to the JSON deserializer (no buffering), so a
                // block's `input` can stay raw text.
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(b) = seq.next_element()? {
                    blocks.push(b);
                }
                Ok(Content::Blocks(blocks))
            }
        }
        d.deserialize_any(V)
    }
}

/// A content block, flat: whichever fields its `type` has are set; others ignored.
#[derive(Debug, Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    cache_control: Option<Value>,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Box<RawValue>>,
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    data: Option<String>,
}

/// An image or document `source`.
#[derive(Debug, Deserialize)]
struct Source {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
struct WireTool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
    #[serde(default)]
    cache_control: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct WireToolChoice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

/// The request's top level. Required fields are `Option`s so their absence is a 400
/// naming them, not a parse error.
#[derive(Debug, Default)]
struct Wire {
    model: Option<String>,
    max_tokens: Option<u64>,
    messages: Option<Vec<WireMessage>>,
    system: Option<Content>,
    stop_sequences: Option<Vec<String>>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    metadata: Option<Value>,
    tools: Option<Vec<WireTool>>,
    tool_choice: Option<WireToolChoice>,
    stream: Option<bool>,
    extra: Extra,
}

/// Parses the top level in one pass, remembering which known field was being read
/// when parsing failed (the 400's `param`).
struct WireSeed<'a> {
    reading: &'a mut Option<&'static str>,
}

impl<'de> DeserializeSeed<'de> for WireSeed<'_> {
    type Value = Wire;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Wire, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for WireSeed<'_> {
    type Value = Wire;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a Messages request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire, A::Error> {
        let mut w = Wire::default();
        while let Some(key) = map.next_key::<crate::chat::de::Key<'de>>()? {
            macro_rules! read {
                ($field:ident) => {{
                    *self.reading = Some(stringify!($field));
                    w.$field = map.next_value()?;
                }};
            }
            match key.0.as_ref() {
                "model" => read!(model),
                "max_tokens" => read!(max_tokens),
                "messages" => read!(messages),
                "system" => read!(system),
                "stop_sequences" => read!(stop_sequences),
                "temperature" => read!(temperature),
                "top_p" => read!(top_p),
                "metadata" => read!(metadata),
                "tools" => read!(tools),
                "tool_choice" => read!(tool_choice),
                "stream" => read!(stream),
                _ => {
                    let value: Value = map.next_value()?;
                    w.extra.insert(key.0.into_owned(), value);
                }
            }
            *self.reading = None;
        }
        Ok(w)
    }
}

// ---------------------------------------------------------------------------------
// Decoding.

/// Decodes a Messages request body into the canonical request.
///
/// Errors are [`GatewayError::bad_request`] (400, `invalid_request_error`), with
/// `param` set where a field is to blame: a body that is not JSON or not a Messages
/// request, a missing `model`, `max_tokens` or `messages`, and content the canonical
/// model cannot carry (server tools, Files API sources; see the module docs).
///
/// ```
/// use modelway_core::dialect::messages::decode_request;
///
/// let req = decode_request(br#"{"model": "claude-sonnet-4-5", "max_tokens": 256,
///     "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]}"#).unwrap();
/// assert_eq!(req.max_completion_tokens, Some(256));
/// assert_eq!(req.messages[0].text_content(), "Be brief.");
///
/// let err = decode_request(br#"{"model": "m", "messages": []}"#).unwrap_err();
/// assert_eq!((err.status, err.param.as_deref()), (400, Some("max_tokens")));
/// ```
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, GatewayError> {
    decode(body, true)
}

/// Decodes a `POST /v1/messages/count_tokens` body: a Messages request whose
/// `max_tokens` is optional (the count request has none), otherwise as
/// [`decode_request`].
pub fn decode_count_tokens_request(body: &[u8]) -> Result<ChatRequest, GatewayError> {
    decode(body, false)
}

/// The `code` of a 400 for content only Anthropic itself can serve (server tools and
/// their blocks, Files API and URL sources, unknown block types): the request is
/// well-formed, the canonical model just cannot carry it. See [`passthrough_reading`].
pub const ANTHROPIC_ONLY: &str = "anthropic_only";

/// For a body [`decode_request`] refused with [`ANTHROPIC_ONLY`]: a minimal canonical
/// reading — model, `max_tokens`, `stream` and each turn's text — enough to route the
/// call, check a key's models and limits and record it, for a call that can only go
/// to an upstream taking the body as sent (an Anthropic one). `None` when the body has
/// no string `model`.
pub fn passthrough_reading(body: &[u8]) -> Option<ChatRequest> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let model = v.get("model")?.as_str()?;
    let text = |content: &Value| -> String {
        match content {
            Value::String(s) => s.clone(),
            Value::Array(blocks) => blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    };
    let mut messages = Vec::new();
    if let Some(system) = v.get("system") {
        messages.push(Message::text(Role::System, text(system)));
    }
    for m in v
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("assistant") => Role::Assistant,
            _ => Role::User,
        };
        messages.push(Message::text(
            role,
            text(m.get("content").unwrap_or(&Value::Null)),
        ));
    }
    let mut req = ChatRequest::new(model, messages);
    req.max_completion_tokens = v.get("max_tokens").and_then(Value::as_u64);
    if v.get("stream").and_then(Value::as_bool) == Some(true) {
        req.stream = Some(true);
        req.stream_options = Some(crate::chat::StreamOptions {
            include_usage: Some(true),
            extra: Extra::new(),
        });
    }
    Some(req)
}

fn bad(param: impl Into<String>, message: impl Into<String>) -> GatewayError {
    GatewayError::bad_request(message).with_param(param)
}

fn decode(body: &[u8], needs_max_tokens: bool) -> Result<ChatRequest, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::bad_request(
            "The request body is empty; expected a JSON Messages request.",
        ));
    }
    let mut reading = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = WireSeed {
        reading: &mut reading,
    }
    .deserialize(&mut de)
    .and_then(|w| de.end().map(|()| w));
    let wire = parsed.map_err(|e| {
        let err = GatewayError::bad_request(if e.is_syntax() || e.is_eof() {
            format!("The request body is not valid JSON: {e}")
        } else {
            format!("Invalid request body: {e}")
        });
        match reading {
            Some(field) => err.with_param(field),
            None => err,
        }
    })?;
    convert(wire, needs_max_tokens)
}

fn convert(w: Wire, needs_max_tokens: bool) -> Result<ChatRequest, GatewayError> {
    let model = w
        .model
        .ok_or_else(|| bad("model", "`model` is required."))?;
    if model.trim().is_empty() {
        return Err(bad("model", "`model` must not be empty."));
    }
    let max_tokens = match w.max_tokens {
        Some(0) => return Err(bad("max_tokens", "`max_tokens` must be at least 1.")),
        None if needs_max_tokens => return Err(bad("max_tokens", "`max_tokens` is required.")),
        n => n,
    };
    let wire_messages = w
        .messages
        .ok_or_else(|| bad("messages", "`messages` is required."))?;
    if wire_messages.is_empty() {
        return Err(bad(
            "messages",
            "`messages` must contain at least one message.",
        ));
    }

    let mut messages = Vec::with_capacity(wire_messages.len() + 1);
    if let Some(system) = w.system {
        system_message(system, &mut messages)?;
    }
    for (i, m) in wire_messages.into_iter().enumerate() {
        let content = m.content.ok_or_else(|| {
            bad(
                format!("messages[{i}].content"),
                "a message needs `content`",
            )
        })?;
        match m.role.as_str() {
            "user" => user_turn(i, content, &mut messages)?,
            "assistant" => assistant_turn(i, content, &mut messages)?,
            other => {
                return Err(bad(
                    format!("messages[{i}].role"),
                    format!("`role` must be \"user\" or \"assistant\", not `{other}`"),
                ))
            }
        }
    }

    let mut req = ChatRequest::new(model, messages);
    req.max_completion_tokens = max_tokens;
    req.temperature = w.temperature;
    req.top_p = w.top_p;
    req.stop = w.stop_sequences.filter(|s| !s.is_empty()).map(Stop::Many);
    req.user = w
        .metadata
        .as_ref()
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if w.stream == Some(true) {
        req.stream = Some(true);
        // `message_delta` needs the usage, which chat streams send only when asked.
        req.stream_options = Some(StreamOptions {
            include_usage: Some(true),
            extra: Extra::new(),
        });
    }
    tools(w.tools, w.tool_choice, &mut req)?;
    req.response_format = output_format(&w.extra);
    req.extra = w.extra;
    Ok(req)
}

/// `system` → one leading system message.
fn system_message(system: Content, out: &mut Vec<Message>) -> Result<(), GatewayError> {
    match system {
        Content::Text(s) => {
            if !s.is_empty() {
                out.push(Message::text(Role::System, s));
            }
        }
        Content::Blocks(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (j, b) in blocks.into_iter().enumerate() {
                if b.kind != "text" {
                    return Err(bad(
                        format!("system[{j}].type"),
                        format!("`system` holds only text blocks, not `{}`", b.kind),
                    ));
                }
                parts.push(text_part(b, || format!("system[{j}].text"))?);
            }
            if !parts.is_empty() {
                out.push(message(Role::System, Some(content_of(parts))));
            }
        }
    }
    Ok(())
}

fn message(role: Role, content: Option<MessageContent>) -> Message {
    Message {
        role,
        content,
        name: None,
        tool_calls: None,
        tool_call_id: None,
        refusal: None,
        extra: Extra::new(),
    }
}

/// One text part without `cache_control` is a plain string; anything else stays a
/// list of parts.
fn content_of(mut parts: Vec<ContentPart>) -> MessageContent {
    if parts.len() == 1 && parts[0].kind == PartType::Text && parts[0].extra.is_empty() {
        if let Some(text) = parts.pop().and_then(|p| p.text) {
            return MessageContent::Text(text);
        }
    }
    MessageContent::Parts(parts)
}

fn with_cache_control(extra: &mut Extra, cc: Option<Value>) {
    if let Some(cc) = cc.filter(|v| !v.is_null()) {
        extra.insert("cache_control".into(), cc);
    }
}

fn text_part(b: Block, at: impl Fn() -> String) -> Result<ContentPart, GatewayError> {
    let text = b
        .text
        .ok_or_else(|| bad(at(), "a text block needs `text`"))?;
    let mut part = ContentPart::text(text);
    with_cache_control(&mut part.extra, b.cache_control);
    Ok(part)
}

fn image_part(b: Block, at: &dyn Fn() -> String) -> Result<ContentPart, GatewayError> {
    let source = b
        .source
        .ok_or_else(|| bad(format!("{}.source", at()), "an image block needs `source`"))?;
    let url = match source.kind.as_str() {
        "base64" => {
            let (Some(media_type), Some(data)) = (source.media_type, source.data) else {
                return Err(bad(
                    format!("{}.source", at()),
                    "a base64 image source needs `media_type` and `data`",
                ));
            };
            format!("data:{media_type};base64,{data}")
        }
        "url" => source.url.ok_or_else(|| {
            bad(
                format!("{}.source.url", at()),
                "a url image source needs `url`",
            )
        })?,
        other => return Err(unsupported_source(other, &format!("{}.source.type", at()))),
    };
    let mut extra = Extra::new();
    with_cache_control(&mut extra, b.cache_control);
    Ok(ContentPart {
        kind: PartType::ImageUrl,
        text: None,
        image_url: Some(ImageUrl {
            url,
            detail: None,
            extra: Extra::new(),
        }),
        input_audio: None,
        file: None,
        refusal: None,
        extra,
    })
}

fn unsupported_source(kind: &str, param: &str) -> GatewayError {
    let why = match kind {
        "file" => {
            "`file` sources (the Files API) cannot be served on this route; send the data as base64"
        }
        "url" => {
            "document `url` sources cannot be served on this route; send the document as base64"
        }
        _ => "unknown source type",
    };
    bad(param, format!("source type `{kind}`: {why}")).with_code(ANTHROPIC_ONLY)
}

/// A `document` block → a PDF `file` part, or text parts for text and content sources.
fn document_parts(
    b: Block,
    at: &dyn Fn() -> String,
    out: &mut Vec<ContentPart>,
) -> Result<(), GatewayError> {
    let source = b.source.ok_or_else(|| {
        bad(
            format!("{}.source", at()),
            "a document block needs `source`",
        )
    })?;
    let mut extra = Extra::new();
    with_cache_control(&mut extra, b.cache_control);
    match source.kind.as_str() {
        "base64" => {
            let media_type = source.media_type.unwrap_or_default();
            if media_type != "application/pdf" {
                return Err(bad(
                    format!("{}.source.media_type", at()),
                    format!("base64 documents must be `application/pdf`, not `{media_type}`"),
                ));
            }
            let data = source.data.ok_or_else(|| {
                bad(
                    format!("{}.source.data", at()),
                    "a base64 document source needs `data`",
                )
            })?;
            out.push(ContentPart {
                kind: PartType::File,
                text: None,
                image_url: None,
                input_audio: None,
                file: Some(FileData {
                    // OpenAI wants a file name with inline file data.
                    filename: Some(b.title.unwrap_or_else(|| "document.pdf".to_owned())),
                    file_data: Some(format!("data:application/pdf;base64,{data}")),
                    file_id: None,
                    extra: Extra::new(),
                }),
                refusal: None,
                extra,
            });
        }
        "text" => {
            let mut part = ContentPart::text(source.data.unwrap_or_default());
            part.extra = extra;
            out.push(part);
        }
        "content" => match source.content {
            Some(Content::Text(s)) => {
                let mut part = ContentPart::text(s);
                part.extra = extra;
                out.push(part);
            }
            Some(Content::Blocks(blocks)) => {
                for (k, inner) in blocks.into_iter().enumerate() {
                    let at = || format!("{}.source.content[{k}]", at());
                    match inner.kind.as_str() {
                        "text" => out.push(text_part(inner, || format!("{}.text", at()))?),
                        "image" => out.push(image_part(inner, &at)?),
                        other => {
                            return Err(bad(
                                format!("{}.type", at()),
                                format!(
                                    "a document's content holds text and images, not `{other}`"
                                ),
                            ))
                        }
                    }
                }
                if let (Some(cc), Some(last)) = (extra.remove("cache_control"), out.last_mut()) {
                    last.extra.insert("cache_control".into(), cc);
                }
            }
            None => {}
        },
        other => return Err(unsupported_source(other, &format!("{}.source.type", at()))),
    }
    Ok(())
}

fn unsupported_block(kind: &str, role: &str, param: String) -> GatewayError {
    const SERVER: &[&str] = &[
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "mcp_tool_use",
        "mcp_tool_result",
        "container_upload",
    ];
    let why = if SERVER.contains(&kind) || kind.ends_with("_tool_result") {
        format!("`{kind}` blocks belong to Anthropic server tools, which cannot be served on this route")
    } else {
        format!("{role} messages cannot hold `{kind}` blocks")
    };
    bad(param, why).with_code(ANTHROPIC_ONLY)
}

/// A user turn: its `tool_result` blocks become `tool` messages, then the rest of the
/// turn (with any images or documents the results held) is one user message.
fn user_turn(i: usize, content: Content, out: &mut Vec<Message>) -> Result<(), GatewayError> {
    let blocks = match content {
        Content::Text(s) => {
            out.push(Message::text(Role::User, s));
            return Ok(());
        }
        Content::Blocks(b) => b,
    };
    let mut parts = Vec::with_capacity(blocks.len());
    let mut moved = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        let at = || format!("messages[{i}].content[{j}]");
        match b.kind.as_str() {
            "text" => parts.push(text_part(b, || format!("{}.text", at()))?),
            "image" => parts.push(image_part(b, &at)?),
            "document" => document_parts(b, &at, &mut parts)?,
            "tool_result" => out.push(tool_message(b, &at, &mut moved)?),
            kind => return Err(unsupported_block(kind, "user", format!("{}.type", at()))),
        }
    }
    if !moved.is_empty() {
        moved.append(&mut parts);
        parts = moved;
    }
    if !parts.is_empty() {
        out.push(message(Role::User, Some(content_of(parts))));
    }
    Ok(())
}

/// A `tool_result` block → a `tool` message; its images and documents go to `moved`.
fn tool_message(
    b: Block,
    at: &dyn Fn() -> String,
    moved: &mut Vec<ContentPart>,
) -> Result<Message, GatewayError> {
    let id = b.tool_use_id.ok_or_else(|| {
        bad(
            format!("{}.tool_use_id", at()),
            "a tool_result block needs `tool_use_id`",
        )
    })?;
    let content = match b.content {
        None => MessageContent::Text(String::new()),
        Some(Content::Text(s)) => MessageContent::Text(s),
        Some(Content::Blocks(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (k, inner) in blocks.into_iter().enumerate() {
                let at = || format!("{}.content[{k}]", at());
                match inner.kind.as_str() {
                    "text" => parts.push(text_part(inner, || format!("{}.text", at()))?),
                    "image" => moved.push(image_part(inner, &at)?),
                    "document" => document_parts(inner, &at, moved)?,
                    kind => {
                        return Err(bad(
                            format!("{}.type", at()),
                            format!("a tool_result holds text, images and documents, not `{kind}`"),
                        ))
                    }
                }
            }
            if parts.is_empty() {
                MessageContent::Text(String::new())
            } else {
                content_of(parts)
            }
        }
    };
    let mut m = message(Role::Tool, Some(content));
    m.tool_call_id = Some(id);
    if let Some(e) = b.is_error {
        m.extra.insert("is_error".into(), e.into());
    }
    with_cache_control(&mut m.extra, b.cache_control);
    Ok(m)
}

/// An assistant turn: text → content, `tool_use` → tool calls, thinking → the
/// `reasoning_content` + `thinking_blocks` extension.
fn assistant_turn(i: usize, content: Content, out: &mut Vec<Message>) -> Result<(), GatewayError> {
    let blocks = match content {
        Content::Text(s) => {
            out.push(Message::text(Role::Assistant, s));
            return Ok(());
        }
        Content::Blocks(b) => b,
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        let at = || format!("messages[{i}].content[{j}]");
        match b.kind.as_str() {
            "text" => parts.push(text_part(b, || format!("{}.text", at()))?),
            "tool_use" => {
                let id =
                    b.id.ok_or_else(|| bad(format!("{}.id", at()), "a tool_use block needs `id`"))?;
                let name = b.name.ok_or_else(|| {
                    bad(format!("{}.name", at()), "a tool_use block needs `name`")
                })?;
                let mut extra = Extra::new();
                with_cache_control(&mut extra, b.cache_control);
                calls.push(ToolCall {
                    id,
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name,
                        arguments: b
                            .input
                            .map_or_else(|| "{}".to_owned(), |raw| crate::json::compact(raw.get())),
                    },
                    extra,
                });
            }
            "thinking" => {
                let thinking = b.thinking.unwrap_or_default();
                reasoning.push_str(&thinking);
                // Anthropic rejects a replayed thinking block without its signature;
                // an unsigned one (ours, from another upstream) stays text only.
                if let Some(signature) = b.signature.filter(|s| !s.is_empty()) {
                    let mut o = serde_json::Map::new();
                    o.insert("type".into(), "thinking".into());
                    o.insert("thinking".into(), thinking.into());
                    o.insert("signature".into(), signature.into());
                    thinking_blocks.push(Value::Object(o));
                }
            }
            "redacted_thinking" => {
                if let Some(data) = b.data {
                    let mut o = serde_json::Map::new();
                    o.insert("type".into(), "redacted_thinking".into());
                    o.insert("data".into(), data.into());
                    thinking_blocks.push(Value::Object(o));
                }
            }
            kind => {
                return Err(unsupported_block(
                    kind,
                    "assistant",
                    format!("{}.type", at()),
                ))
            }
        }
    }
    if parts.is_empty() && calls.is_empty() && thinking_blocks.is_empty() && reasoning.is_empty() {
        return Ok(());
    }
    let mut m = message(
        Role::Assistant,
        (!parts.is_empty()).then(|| content_of(parts)),
    );
    m.tool_calls = (!calls.is_empty()).then_some(calls);
    if !reasoning.is_empty() {
        m.extra
            .insert("reasoning_content".into(), Value::String(reasoning));
    }
    if !thinking_blocks.is_empty() {
        m.extra
            .insert("thinking_blocks".into(), Value::Array(thinking_blocks));
    }
    out.push(m);
    Ok(())
}

fn tools(
    wire: Option<Vec<WireTool>>,
    choice: Option<WireToolChoice>,
    req: &mut ChatRequest,
) -> Result<(), GatewayError> {
    let mut tools = Vec::new();
    for (i, t) in wire.into_iter().flatten().enumerate() {
        if let Some(kind) = t.kind.as_deref().filter(|k| *k != "custom") {
            return Err(bad(
                format!("tools[{i}].type"),
                format!(
                    "`{kind}` is an Anthropic server tool, which cannot be served on this route; \
                     only client tools (`name`, `description`, `input_schema`) can"
                ),
            )
            .with_code(ANTHROPIC_ONLY));
        }
        let name = t
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad(format!("tools[{i}].name"), "a tool needs a `name`"))?;
        let mut extra = Extra::new();
        with_cache_control(&mut extra, t.cache_control);
        tools.push(Tool {
            kind: "function".to_owned(),
            function: Some(FunctionDef {
                name,
                description: t.description,
                parameters: t.input_schema,
                strict: t.strict,
                extra: Extra::new(),
            }),
            extra,
        });
    }
    let Some(choice) = choice else {
        req.tools = (!tools.is_empty()).then_some(tools);
        return Ok(());
    };
    let mode = match choice.kind.as_str() {
        "auto" => ToolChoice::Mode(ToolChoiceMode::Auto),
        "any" => ToolChoice::Mode(ToolChoiceMode::Required),
        "none" => ToolChoice::Mode(ToolChoiceMode::None),
        "tool" => {
            let name = choice
                .name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad("tool_choice.name", "a `tool` tool_choice needs `name`"))?;
            let mut o = Extra::new();
            o.insert("type".into(), "function".into());
            o.insert("function".into(), serde_json::json!({ "name": name }));
            ToolChoice::Object(o)
        }
        other => {
            return Err(bad(
                "tool_choice.type",
                format!("`tool_choice.type` must be auto, any, tool or none, not `{other}`"),
            ))
        }
    };
    // Without tools a choice means nothing, and chat servers reject one.
    if !tools.is_empty() {
        req.tool_choice = Some(mode);
        if choice.disable_parallel_tool_use == Some(true) {
            req.parallel_tool_calls = Some(false);
        }
        req.tools = Some(tools);
    }
    Ok(())
}

/// `output_config.format` json_schema → `response_format`, for upstreams that know
/// only OpenAI's structured output (Anthropic's provider rebuilds the same format).
fn output_format(extra: &Extra) -> Option<ResponseFormat> {
    let format = extra.get("output_config")?.get("format")?;
    if format.get("type")?.as_str()? != "json_schema" {
        return None;
    }
    Some(ResponseFormat {
        kind: ResponseFormatType::JsonSchema,
        json_schema: Some(JsonSchemaFormat {
            name: "output".to_owned(),
            description: None,
            schema: Some(format.get("schema")?.clone()),
            strict: Some(true),
            extra: Extra::new(),
        }),
        extra: Extra::new(),
    })
}

// ---------------------------------------------------------------------------------
// Token estimate.

/// Tokens per message for the role and turn markers.
const MESSAGE_TOKENS: u64 = 4;
/// An image, whatever its size: Anthropic bills `width × height / 750`, capped near
/// 1600 for the largest images it accepts unscaled; the estimate assumes the cap.
const IMAGE_TOKENS: u64 = 1600;
/// The system prompt Anthropic adds when tools are offered (346 tokens for
/// `auto`/`none` on current models).
const TOOLS_PREAMBLE_TOKENS: u64 = 346;
/// Per tool definition and per tool call, for their framing.
const TOOL_TOKENS: u64 = 8;
/// UTF-8 bytes per token. Claude averages about 3.5 characters a token on English and
/// fewer on code and JSON; 3 over-counts a little, the safe side (an under-count makes
/// Claude Code compact too late and hit "prompt is too long").
const BYTES_PER_TOKEN: u64 = 3;
/// Base64 characters per token of a PDF: pages cost 1.5–3k tokens each and a text
/// page is 20–60 KB of base64, so one token per 16 characters errs high.
const PDF_BASE64_PER_TOKEN: u64 = 16;

/// An estimate of the input tokens of `req`, for `/v1/messages/count_tokens` on
/// routes whose upstream cannot count (and for `message_start` before the real count
/// arrives). The rule: every text the model reads — system, messages, tool calls (name
/// and arguments), tool results, and each tool's name, description and JSON schema —
/// counted in UTF-8 bytes, divided by 3 and rounded up; plus 4 tokens per message,
/// 8 per tool definition and per tool call, 346 once when tools are offered, 1600 per
/// image, and one token per 16 base64 characters of a PDF. Earlier turns' thinking is
/// not counted (Anthropic drops it from the context).
///
/// ```
/// use modelway_core::chat::{ChatRequest, Message, Role};
/// use modelway_core::dialect::messages::count_tokens_estimate;
///
/// // "Hello, world" is 12 bytes: 4 tokens, plus 4 for the message.
/// let req = ChatRequest::new("m", vec![Message::text(Role::User, "Hello, world")]);
/// assert_eq!(count_tokens_estimate(&req), 8);
/// ```
pub fn count_tokens_estimate(req: &ChatRequest) -> u64 {
    let mut bytes: u64 = 0;
    let mut tokens: u64 = 0;
    let len = |s: &str| s.len() as u64;
    for m in &req.messages {
        tokens += MESSAGE_TOKENS;
        match &m.content {
            None => {}
            Some(MessageContent::Text(s)) => bytes += len(s),
            Some(MessageContent::Parts(parts)) => {
                for p in parts {
                    bytes += p.text.as_deref().map_or(0, len) + p.refusal.as_deref().map_or(0, len);
                    if p.image_url.is_some() {
                        tokens += IMAGE_TOKENS;
                    }
                    if let Some(data) = p.file.as_ref().and_then(|f| f.file_data.as_deref()) {
                        tokens += len(data).div_ceil(PDF_BASE64_PER_TOKEN);
                    }
                    if let Some(audio) = &p.input_audio {
                        tokens += len(&audio.data).div_ceil(PDF_BASE64_PER_TOKEN);
                    }
                }
            }
        }
        for call in m.tool_calls.iter().flatten() {
            tokens += TOOL_TOKENS;
            bytes += len(&call.function.name) + len(&call.function.arguments);
        }
    }
    let tools = req.tools.as_deref().unwrap_or_default();
    if !tools.is_empty() {
        tokens += TOOLS_PREAMBLE_TOKENS;
    }
    for t in tools {
        tokens += TOOL_TOKENS;
        if let Some(f) = &t.function {
            bytes += len(&f.name) + f.description.as_deref().map_or(0, len);
            if let Some(p) = &f.parameters {
                bytes += json_len(p);
            }
        }
    }
    tokens + bytes.div_ceil(BYTES_PER_TOKEN)
}

/// The length of `v` as compact JSON, without building the text.
fn json_len(v: &Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => 0,
    }
}

/// The `/v1/messages/count_tokens` answer: `{"input_tokens": N}`.
pub fn count_tokens_response(input_tokens: u64) -> Bytes {
    Bytes::from(format!("{{\"input_tokens\":{input_tokens}}}"))
}

// ---------------------------------------------------------------------------------
// Answers.

/// Stop reasons the Messages API defines; an upstream's own one (kept by the
/// translating providers as `native_finish_reason`) is passed on when it is one.
const STOP_REASONS: &[&str] = &[
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
];

/// `stop_reason` and `stop_sequence` for a choice.
fn stop_reason<'a>(
    finish: Option<&FinishReason>,
    choice_extra: &'a Extra,
    has_tool_calls: bool,
) -> (&'static str, Option<&'a str>) {
    if let Some(native) = choice_extra
        .get("native_finish_reason")
        .and_then(Value::as_str)
    {
        if let Some(r) = STOP_REASONS.iter().find(|r| **r == native) {
            return (r, None);
        }
    }
    match finish {
        Some(FinishReason::Length) => ("max_tokens", None),
        Some(FinishReason::ToolCalls | FinishReason::FunctionCall) => ("tool_use", None),
        Some(FinishReason::ContentFilter) => ("refusal", None),
        // A forced tool choice finishes with `stop` (and some servers always do).
        _ if has_tool_calls => ("tool_use", None),
        // vLLM names the stop string that fired in the choice's `stop_reason`.
        Some(FinishReason::Stop) => match choice_extra
            .get("stop_reason")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(seq) => ("stop_sequence", Some(seq)),
            None => ("end_turn", None),
        },
        _ => ("end_turn", None),
    }
}

/// Anthropic `usage`. Its `input_tokens` excludes cache reads and writes, which chat's
/// `prompt_tokens` includes: the exact inverse of `providers/anthropic`'s mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
struct UsageOut {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

impl From<&Usage> for UsageOut {
    fn from(u: &Usage) -> Self {
        let t = TokenCounts::from(u);
        let read = t.cached_input.unwrap_or(0);
        let write = t.cache_write.unwrap_or(0);
        Self {
            input_tokens: t.input.saturating_sub(read).saturating_sub(write),
            cache_creation_input_tokens: write,
            cache_read_input_tokens: read,
            output_tokens: t.output,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut<'a> {
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Input<'a>,
    },
}

/// A `tool_use` input: the arguments when they are a JSON object, `{}` for none, and
/// anything else wrapped as `{"_raw_arguments": "<text>"}` — the input must be an
/// object, and the tool's own validation then shows the model what it sent.
enum Input<'a> {
    Object(&'a RawValue),
    Empty,
    Invalid(&'a str),
}

impl<'a> Input<'a> {
    fn of(arguments: &'a str) -> Self {
        let text = arguments.trim();
        if text.is_empty() {
            return Input::Empty;
        }
        match serde_json::from_str::<&RawValue>(text) {
            Ok(raw) if raw.get().starts_with('{') => Input::Object(raw),
            _ => Input::Invalid(arguments),
        }
    }
}

impl Serialize for Input<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Input::Object(raw) => raw.serialize(s),
            Input::Empty => s.serialize_map(Some(0))?.end(),
            Input::Invalid(text) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("_raw_arguments", text)?;
                m.end()
            }
        }
    }
}

#[derive(Serialize)]
struct MessageOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<BlockOut<'a>>,
    stop_reason: Option<&'a str>,
    stop_sequence: Option<&'a str>,
    usage: UsageOut,
}

/// The text of the reasoning extension a chat answer or delta carries, if any.
fn reasoning_text(extra: &Extra) -> Option<&str> {
    ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| extra.get(*k)?.as_str().filter(|s| !s.is_empty()))
}

/// Thinking blocks of a whole answer: the signed `thinking_blocks` when present, else
/// one unsigned block of the reasoning text.
fn thinking_out(extra: &Extra) -> Vec<BlockOut<'_>> {
    if let Some(Value::Array(blocks)) = extra.get("thinking_blocks") {
        let out: Vec<BlockOut<'_>> = blocks
            .iter()
            .filter_map(|b| match b.get("type")?.as_str()? {
                "thinking" => Some(BlockOut::Thinking {
                    thinking: b.get("thinking").and_then(Value::as_str).unwrap_or(""),
                    signature: b.get("signature").and_then(Value::as_str).unwrap_or(""),
                }),
                "redacted_thinking" => Some(BlockOut::RedactedThinking {
                    data: b.get("data")?.as_str()?,
                }),
                _ => None,
            })
            .collect();
        if !out.is_empty() {
            return out;
        }
    }
    reasoning_text(extra)
        .map(|thinking| BlockOut::Thinking {
            thinking,
            signature: "",
        })
        .into_iter()
        .collect()
}

/// `msg_…` from the canonical id (`chatcmpl-abc` → `msg_abc`; a fresh one if empty).
fn message_id(canonical: &str) -> String {
    if canonical.starts_with("msg_") {
        return canonical.to_owned();
    }
    let rest = canonical.strip_prefix("chatcmpl-").unwrap_or(canonical);
    if rest.is_empty() {
        return format!("msg_{}", uuid::Uuid::new_v4().simple());
    }
    format!("msg_{rest}")
}

fn tool_use_id() -> String {
    format!("toolu_{}", uuid::Uuid::new_v4().simple())
}

/// JSON bytes of a value whose serialisation cannot fail (plain structs of strings,
/// numbers and already-valid raw JSON).
fn to_bytes<T: Serialize>(v: &T) -> Bytes {
    match serde_json::to_vec(v) {
        Ok(b) => Bytes::from(b),
        Err(_) => Bytes::from_static(
            b"{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"the answer could not be encoded\"}}",
        ),
    }
}

/// A whole canonical answer as an Anthropic `message` object (JSON bytes); `model` is
/// the name to report (the one the client asked for). Only the first choice is used
/// (Messages answers have one).
pub fn encode_response(resp: &crate::chat::ChatResponse, model: &str) -> Bytes {
    let id = message_id(&resp.id);
    let choice = resp.choices.first();
    let calls = choice
        .and_then(|c| c.message.tool_calls.as_deref())
        .unwrap_or_default();
    // Ids for calls that came without one (the input must name every call).
    let generated: Vec<String> = calls
        .iter()
        .filter(|c| c.id.is_empty())
        .map(|_| tool_use_id())
        .collect();
    let mut content = Vec::new();
    let (mut stop, mut sequence) = ("end_turn", None);
    if let Some(choice) = choice {
        let m = &choice.message;
        content.extend(thinking_out(&m.extra));
        for text in [m.content.as_deref(), m.refusal.as_deref()]
            .into_iter()
            .flatten()
            .filter(|t| !t.is_empty())
        {
            content.push(BlockOut::Text { text });
        }
        let mut generated = generated.iter();
        for call in calls {
            let id = if call.id.is_empty() {
                generated.next().map_or("", String::as_str)
            } else {
                call.id.as_str()
            };
            content.push(BlockOut::ToolUse {
                id,
                name: &call.function.name,
                input: Input::of(&call.function.arguments),
            });
        }
        (stop, sequence) = stop_reason(
            choice.finish_reason.as_ref(),
            &choice.extra,
            !calls.is_empty(),
        );
    }
    to_bytes(&MessageOut {
        id: &id,
        kind: "message",
        role: "assistant",
        model,
        content,
        stop_reason: Some(stop),
        stop_sequence: sequence,
        usage: resp.usage.as_ref().map(UsageOut::from).unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------
// Errors.

/// The Anthropic error `type` for a gateway error: by status (400
/// `invalid_request_error`, 401 `authentication_error`, 402 `billing_error`, 403
/// `permission_error`, 404 `not_found_error`, 413 `request_too_large`, 429
/// `rate_limit_error`, 503/529 `overloaded_error`, 504 `timeout_error`, other 4xx
/// `invalid_request_error`, other 5xx `api_error`), except that an error whose code or
/// type says `overloaded` is `overloaded_error` whatever its status. The Anthropic
/// SDKs pick their exception by status; the type is what a client logs and shows.
pub fn error_type(err: &GatewayError) -> &'static str {
    let overloaded = |s: &str| s == "overloaded" || s == "overloaded_error";
    if err.code.as_deref().is_some_and(overloaded) || overloaded(err.kind) {
        return "overloaded_error";
    }
    match err.status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorOut<'a>,
}

/// The Anthropic error body for a gateway error:
/// `{"type":"error","error":{"type":…,"message":…}}`. (The request id travels in the
/// `request-id` header, which is where the SDKs read it.)
pub fn error_body(err: &GatewayError) -> Bytes {
    to_bytes(&ErrorBody {
        kind: "error",
        error: ErrorOut {
            kind: error_type(err),
            message: &err.message,
        },
    })
}

// ---------------------------------------------------------------------------------
// Streams.

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        message: MessageOut<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: BlockOut<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: DeltaOut<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: StopOut<'a>,
        usage: UsageOut,
    },
    MessageStop,
    Error {
        error: ErrorOut<'a>,
    },
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::MessageStart { .. } => "message_start",
            Event::ContentBlockStart { .. } => "content_block_start",
            Event::ContentBlockDelta { .. } => "content_block_delta",
            Event::ContentBlockStop { .. } => "content_block_stop",
            Event::MessageDelta { .. } => "message_delta",
            Event::MessageStop => "message_stop",
            Event::Error { .. } => "error",
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum DeltaOut<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

#[derive(Serialize)]
struct StopOut<'a> {
    stop_reason: &'a str,
    stop_sequence: Option<&'a str>,
}

/// Appends one complete SSE event (`event: NAME\ndata: JSON\n\n`).
fn emit(out: &mut Vec<u8>, ev: &Event<'_>) {
    let start = out.len();
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(ev.name().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    if serde_json::to_writer(&mut *out, ev).is_err() {
        // Unreachable (plain structs into a Vec); never leave half an event.
        out.truncate(start);
        return;
    }
    out.extend_from_slice(b"\n\n");
}

fn delta(out: &mut Vec<u8>, index: u32, delta: DeltaOut<'_>) {
    emit(out, &Event::ContentBlockDelta { index, delta });
}

/// Where a tool call's block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Seen, not started: its block waits for the open one to end.
    Waiting,
    Open,
    Closed,
}

/// Whether the arguments streamed so far form a complete JSON value: depth of
/// brackets outside strings. Used to tell a call that is done from one still
/// streaming when the next call's first fragment arrives.
#[derive(Debug, Default)]
struct JsonDepth {
    depth: i64,
    started: bool,
    in_string: bool,
    escaped: bool,
}

impl JsonDepth {
    fn feed(&mut self, piece: &str) {
        for b in piece.bytes() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => {
                    self.started = true;
                    self.in_string = true;
                }
                b'{' | b'[' => {
                    self.started = true;
                    self.depth += 1;
                }
                b'}' | b']' => self.depth -= 1,
                b if b.is_ascii_whitespace() => {}
                _ => self.started = true,
            }
        }
    }

    fn complete(&self) -> bool {
        self.started && self.depth <= 0 && !self.in_string
    }
}

#[derive(Debug)]
struct ToolState {
    /// The canonical tool-call index.
    index: u32,
    id: String,
    name: String,
    /// Arguments received while `Waiting`.
    pending: String,
    phase: Phase,
    json: JsonDepth,
    sent_arguments: bool,
}

/// The block currently open (one at a time: clients break on more, WIRE.md §9.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text(u32),
    Thinking(u32),
    /// (position in `tools`, block index)
    Tool(usize, u32),
}

/// Canonical chunks → Anthropic SSE events, one chunk at a time.
///
/// Fed the chunks the engine yields (role once, one finish reason, usage in a final
/// `choices: []` chunk — [`crate::stream::normalize`]), it writes `message_start`
/// with the first chunk, one content block at a time with contiguous indexes
/// (thinking, text, one `tool_use` per call), and `message_delta` once both the
/// finish reason and the usage are known; [`StreamEncoder::finish`] closes the
/// message. Only choice 0 is encoded. Tool calls are streamed as they arrive; if a
/// second call starts while the first one's arguments are still incomplete JSON (an
/// upstream interleaving calls), the second is held and sent whole once the first is
/// complete or the answer ends, since a client accepts one open block at a time.
///
/// ```
/// use modelway_core::chat::{ChatChunk, ChunkChoice, Delta};
/// use modelway_core::dialect::messages::StreamEncoder;
///
/// let mut enc = StreamEncoder::new("claude-sonnet-4-5");
/// let mut chunk = ChatChunk::new("chatcmpl-1", 0, "upstream-model");
/// chunk.choices.push(ChunkChoice::new(0, Delta { content: Some("Hi".into()), ..Delta::default() }));
/// let mut out = Vec::new();
/// enc.chunk(&chunk, &mut out);
/// enc.finish(&mut out);
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.starts_with("event: message_start\ndata: {\"type\":\"message_start\""));
/// assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
/// ```
#[derive(Debug)]
pub struct StreamEncoder {
    model: String,
    id: String,
    input_estimate: u64,
    started: bool,
    next_index: u32,
    open: Open,
    tools: Vec<ToolState>,
    stop: Option<(&'static str, Option<String>)>,
    usage: Option<UsageOut>,
    delta_sent: bool,
    done: bool,
}

impl StreamEncoder {
    /// An encoder reporting `model` (the name the client asked for).
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            id: String::new(),
            input_estimate: 0,
            started: false,
            next_index: 0,
            open: Open::None,
            tools: Vec::new(),
            stop: None,
            usage: None,
            delta_sent: false,
            done: false,
        }
    }

    /// Reports `tokens` (e.g. [`count_tokens_estimate`] of the request) as
    /// `message_start`'s `input_tokens`, until the real count replaces it in
    /// `message_delta`: clients that stamp usage from `message_start` (Claude Code)
    /// would otherwise show zero.
    pub fn with_input_estimate(mut self, tokens: u64) -> Self {
        self.input_estimate = tokens;
        self
    }

    /// Appends zero or more complete SSE events (`event: NAME\ndata: JSON\n\n`) for
    /// this chunk.
    pub fn chunk(&mut self, chunk: &ChatChunk, out: &mut Vec<u8>) {
        if self.done || self.delta_sent {
            return;
        }
        self.start(&chunk.id, out);
        if let Some(choice) = chunk.choices.iter().find(|c| c.index == 0) {
            // Content after the finish reason is not part of the answer.
            if self.stop.is_none() {
                let d = &choice.delta;
                if let Some(piece) = reasoning_text(&d.extra) {
                    self.thinking(piece, out);
                }
                if let Some(Value::Array(blocks)) = d.extra.get("thinking_blocks") {
                    for b in blocks {
                        self.thinking_block(b, out);
                    }
                }
                for text in [d.content.as_deref(), d.refusal.as_deref()]
                    .into_iter()
                    .flatten()
                    .filter(|t| !t.is_empty())
                {
                    self.text(text, out);
                }
                if let Some(calls) = &d.tool_calls {
                    for call in calls {
                        self.tool_fragment(call, out);
                    }
                    self.pump(out);
                }
                if let Some(finish) = &choice.finish_reason {
                    let (reason, sequence) =
                        stop_reason(Some(finish), &choice.extra, !self.tools.is_empty());
                    self.stop = Some((reason, sequence.map(str::to_owned)));
                    self.close_all(out);
                }
            }
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(UsageOut::from(&**u));
        }
        if self.stop.is_some() && self.usage.is_some() {
            self.message_delta(out);
        }
    }

    /// End of a successful stream: closes open blocks, sends `message_delta`
    /// (`stop_reason`, usage — zeros but the input estimate when the upstream sent
    /// none) if not yet sent, then `message_stop`. Does nothing a second time.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start("", out);
        self.close_all(out);
        self.message_delta(out);
        emit(out, &Event::MessageStop);
        self.done = true;
    }

    /// A failure after the stream began: `event: error` with the Anthropic error body
    /// (the SDKs raise it). Nothing more is sent after it.
    pub fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        emit(
            out,
            &Event::Error {
                error: ErrorOut {
                    kind: error_type(err),
                    message: &err.message,
                },
            },
        );
        self.done = true;
    }

    fn start(&mut self, chunk_id: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = message_id(chunk_id);
        emit(
            out,
            &Event::MessageStart {
                message: MessageOut {
                    id: &self.id,
                    kind: "message",
                    role: "assistant",
                    model: &self.model,
                    content: Vec::new(),
                    stop_reason: None,
                    stop_sequence: None,
                    usage: UsageOut {
                        input_tokens: self.input_estimate,
                        ..UsageOut::default()
                    },
                },
            },
        );
    }

    fn open_block(&mut self, block: BlockOut<'_>, out: &mut Vec<u8>) -> u32 {
        let index = self.next_index;
        self.next_index += 1;
        emit(
            out,
            &Event::ContentBlockStart {
                index,
                content_block: block,
            },
        );
        index
    }

    /// Ends the open block, if any.
    fn close(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.open, Open::None) {
            Open::None => {}
            Open::Text(index) | Open::Thinking(index) => {
                emit(out, &Event::ContentBlockStop { index });
            }
            Open::Tool(pos, index) => {
                if let Some(t) = self.tools.get_mut(pos) {
                    if !t.sent_arguments {
                        // A call without arguments: the joined input must be JSON.
                        delta(out, index, DeltaOut::InputJson { partial_json: "{}" });
                    }
                    t.phase = Phase::Closed;
                }
                emit(out, &Event::ContentBlockStop { index });
            }
        }
    }

    /// Ends the open block and sends every held tool call whole.
    fn close_all(&mut self, out: &mut Vec<u8>) {
        self.close(out);
        while let Some(pos) = self.tools.iter().position(|t| t.phase == Phase::Waiting) {
            self.open_tool(pos, out);
            self.close(out);
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let index = match self.open {
            Open::Text(i) => i,
            _ => {
                self.close(out);
                let i = self.open_block(BlockOut::Text { text: "" }, out);
                self.open = Open::Text(i);
                i
            }
        };
        delta(out, index, DeltaOut::Text { text });
    }

    fn open_thinking(&mut self, out: &mut Vec<u8>) -> u32 {
        self.close(out);
        let i = self.open_block(
            BlockOut::Thinking {
                thinking: "",
                signature: "",
            },
            out,
        );
        self.open = Open::Thinking(i);
        i
    }

    fn thinking(&mut self, piece: &str, out: &mut Vec<u8>) {
        let index = match self.open {
            Open::Thinking(i) => i,
            _ => self.open_thinking(out),
        };
        delta(out, index, DeltaOut::Thinking { thinking: piece });
    }

    /// A `thinking_blocks` entry: a thinking block's end (its signature), or a whole
    /// redacted block.
    fn thinking_block(&mut self, entry: &Value, out: &mut Vec<u8>) {
        let field = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or("");
        match field("type") {
            "thinking" => {
                let index = match self.open {
                    Open::Thinking(i) => i,
                    // The whole block at once (its text was not streamed).
                    _ => {
                        let i = self.open_thinking(out);
                        let text = field("thinking");
                        if !text.is_empty() {
                            delta(out, i, DeltaOut::Thinking { thinking: text });
                        }
                        i
                    }
                };
                let signature = field("signature");
                if !signature.is_empty() {
                    delta(out, index, DeltaOut::Signature { signature });
                }
                self.close(out);
            }
            "redacted_thinking" => {
                self.close(out);
                let index = self.open_block(
                    BlockOut::RedactedThinking {
                        data: field("data"),
                    },
                    out,
                );
                emit(out, &Event::ContentBlockStop { index });
            }
            _ => {}
        }
    }

    fn tool_fragment(&mut self, call: &ToolCallDelta, out: &mut Vec<u8>) {
        let pos = match self.tools.iter().position(|t| t.index == call.index) {
            Some(p) => p,
            None => {
                self.tools.push(ToolState {
                    index: call.index,
                    id: String::new(),
                    name: String::new(),
                    pending: String::new(),
                    phase: Phase::Waiting,
                    json: JsonDepth::default(),
                    sent_arguments: false,
                });
                self.tools.len() - 1
            }
        };
        let block = match self.open {
            Open::Tool(p, i) if p == pos => Some(i),
            _ => None,
        };
        let t = &mut self.tools[pos];
        if let Some(id) = call.id.as_deref().filter(|s| !s.is_empty()) {
            if t.id.is_empty() {
                t.id = id.to_owned();
            }
        }
        let f = call.function.as_ref();
        if let Some(name) = f.and_then(|f| f.name.as_deref()).filter(|s| !s.is_empty()) {
            if t.name.is_empty() {
                t.name = name.to_owned();
            }
        }
        let piece = f.and_then(|f| f.arguments.as_deref()).unwrap_or("");
        if piece.is_empty() {
            return;
        }
        t.json.feed(piece);
        match (t.phase, block) {
            (Phase::Open, Some(index)) => {
                t.sent_arguments = true;
                delta(
                    out,
                    index,
                    DeltaOut::InputJson {
                        partial_json: piece,
                    },
                );
            }
            (Phase::Waiting, _) => t.pending.push_str(piece),
            _ => tracing::warn!(
                tool_call = call.index,
                "tool-call arguments arrived after the call's block ended; dropped"
            ),
        }
    }

    /// Starts held tool calls while the open block may end: it is not a tool call, or
    /// its arguments are complete JSON.
    fn pump(&mut self, out: &mut Vec<u8>) {
        loop {
            let can_switch = match self.open {
                Open::Tool(pos, _) => self.tools.get(pos).is_none_or(|t| t.json.complete()),
                _ => true,
            };
            if !can_switch {
                return;
            }
            let Some(next) = self
                .tools
                .iter()
                .position(|t| t.phase == Phase::Waiting && !t.name.is_empty())
            else {
                return;
            };
            self.close(out);
            self.open_tool(next, out);
        }
    }

    fn open_tool(&mut self, pos: usize, out: &mut Vec<u8>) {
        let index = self.next_index;
        self.next_index += 1;
        let Some(t) = self.tools.get_mut(pos) else {
            return;
        };
        if t.id.is_empty() {
            t.id = tool_use_id();
        }
        emit(
            out,
            &Event::ContentBlockStart {
                index,
                content_block: BlockOut::ToolUse {
                    id: &t.id,
                    name: &t.name,
                    input: Input::Empty,
                },
            },
        );
        t.phase = Phase::Open;
        if !t.pending.is_empty() {
            let pending = std::mem::take(&mut t.pending);
            delta(
                out,
                index,
                DeltaOut::InputJson {
                    partial_json: &pending,
                },
            );
            t.sent_arguments = true;
        }
        self.open = Open::Tool(pos, index);
    }

    fn message_delta(&mut self, out: &mut Vec<u8>) {
        if self.delta_sent {
            return;
        }
        self.close_all(out);
        let (reason, sequence) = match &self.stop {
            Some((r, s)) => (*r, s.as_deref()),
            None if !self.tools.is_empty() => ("tool_use", None),
            None => ("end_turn", None),
        };
        let usage = self.usage.unwrap_or(UsageOut {
            input_tokens: self.input_estimate,
            ..UsageOut::default()
        });
        emit(
            out,
            &Event::MessageDelta {
                delta: StopOut {
                    stop_reason: reason,
                    stop_sequence: sequence,
                },
                usage,
            },
        );
        self.delta_sent = true;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::chat::{ChatResponse, ChunkChoice, Delta};
    use serde_json::json;

    // -----------------------------------------------------------------------------
    // Requests.

    #[test]
    fn content_only_anthropic_serves_is_marked_and_read_minimally() {
        let body = json!({"model": "claude-x", "max_tokens": 7, "stream": true,
            "system": [{"type": "text", "text": "sys"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}]});
        let bytes = serde_json::to_vec(&body).unwrap();
        let err = decode_request(&bytes).unwrap_err();
        assert_eq!(err.code.as_deref(), Some(ANTHROPIC_ONLY), "{}", err.message);
        let req = passthrough_reading(&bytes).unwrap();
        assert_eq!(req.model, "claude-x");
        assert_eq!(req.max_completion_tokens, Some(7));
        assert!(req.is_stream());
        assert_eq!(req.messages.len(), 3);
        assert_eq!(req.messages[0].text_content(), "sys");
        // A malformed request is not such content: it stays a plain 400.
        let err = decode_request(br#"{"model": "m", "messages": []}"#).unwrap_err();
        assert_ne!(err.code.as_deref(), Some(ANTHROPIC_ONLY));
        assert!(passthrough_reading(b"[1]").is_none());
    }

    /// A minimal valid request with `fields` set on it.
    fn request(fields: Value) -> Value {
        let mut r = json!({"model": "claude-x", "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in fields.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    }

    fn decoded(body: &Value) -> Value {
        let req = decode_request(body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{body}: expected to decode, got {e}"));
        serde_json::to_value(req).unwrap()
    }

    fn at(v: &Value, pointer: &str) -> Value {
        v.pointer(pointer).cloned().unwrap_or(Value::Null)
    }

    #[test]
    fn request_fields_map_to_the_canonical_request() {
        let weather = json!({"name": "weather", "description": "Weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}});
        let rows = [
            (json!({}), "/model", json!("claude-x")),
            (json!({}), "/max_completion_tokens", json!(100)),
            (json!({}), "/max_tokens", Value::Null),
            (
                json!({}),
                "/messages",
                json!([{"role": "user", "content": "hi"}]),
            ),
            (
                json!({"system": "be brief"}),
                "/messages/0",
                json!({"role": "system", "content": "be brief"}),
            ),
            (json!({"system": ""}), "/messages/0/role", json!("user")),
            (
                json!({"system": [{"type": "text", "text": "be brief"}]}),
                "/messages/0",
                json!({"role": "system", "content": "be brief"}),
            ),
            (
                json!({"system": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "b"}]}),
                "/messages/0/content",
                json!([{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "b"}]),
            ),
            (
                json!({"stop_sequences": ["a", "b"]}),
                "/stop",
                json!(["a", "b"]),
            ),
            (json!({"stop_sequences": []}), "/stop", Value::Null),
            (json!({"temperature": 0.5}), "/temperature", json!(0.5)),
            (json!({"top_p": 0.9}), "/top_p", json!(0.9)),
            (json!({"top_k": 40}), "/top_k", json!(40)),
            (
                json!({"metadata": {"user_id": "user_1"}}),
                "/user",
                json!("user_1"),
            ),
            (
                json!({"metadata": {"user_id": "user_1"}}),
                "/metadata",
                Value::Null,
            ),
            (
                json!({"thinking": {"type": "enabled", "budget_tokens": 2048}}),
                "/thinking",
                json!({"type": "enabled", "budget_tokens": 2048}),
            ),
            (
                json!({"thinking": {"type": "adaptive"}}),
                "/reasoning_effort",
                Value::Null,
            ),
            (json!({"stream": true}), "/stream", json!(true)),
            (
                json!({"stream": true}),
                "/stream_options",
                json!({"include_usage": true}),
            ),
            (json!({"stream": false}), "/stream", Value::Null),
            (
                json!({"service_tier": "auto"}),
                "/service_tier",
                json!("auto"),
            ),
            (
                json!({"context_management": {"edits": []}}),
                "/context_management",
                json!({"edits": []}),
            ),
            (
                json!({"x_future": {"deep": [1, null]}}),
                "/x_future",
                json!({"deep": [1, null]}),
            ),
            (
                json!({"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}),
                "/response_format",
                json!({"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": true}}),
            ),
            (
                json!({"output_config": {"effort": "low"}}),
                "/output_config",
                json!({"effort": "low"}),
            ),
            (
                json!({"tools": [{"name": "weather", "description": "Weather in a city",
                    "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}, "strict": true}]}),
                "/tools",
                json!([{"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                    "parameters": {"type": "object"}, "strict": true}, "cache_control": {"type": "ephemeral"}}]),
            ),
            (
                json!({"tools": [{"type": "custom", "name": "f", "input_schema": {}}]}),
                "/tools/0/function/name",
                json!("f"),
            ),
            (json!({"tools": []}), "/tools", Value::Null),
            (
                json!({"tools": [weather], "tool_choice": {"type": "auto"}}),
                "/tool_choice",
                json!("auto"),
            ),
            (
                json!({"tools": [weather], "tool_choice": {"type": "none"}}),
                "/tool_choice",
                json!("none"),
            ),
            (
                json!({"tools": [weather], "tool_choice": {"type": "any"}}),
                "/tool_choice",
                json!("required"),
            ),
            (
                json!({"tools": [weather], "tool_choice": {"type": "tool", "name": "weather"}}),
                "/tool_choice",
                json!({"type": "function", "function": {"name": "weather"}}),
            ),
            (
                json!({"tools": [weather], "tool_choice": {"type": "any", "disable_parallel_tool_use": true}}),
                "/parallel_tool_calls",
                json!(false),
            ),
            (
                json!({"tools": [weather], "tool_choice": {"type": "auto", "disable_parallel_tool_use": false}}),
                "/parallel_tool_calls",
                Value::Null,
            ),
            (
                json!({"tool_choice": {"type": "any"}}),
                "/tool_choice",
                Value::Null,
            ),
            (
                json!({"temperature": null, "system": null}),
                "/temperature",
                Value::Null,
            ),
        ];
        for (fields, pointer, want) in rows {
            let got = at(&decoded(&request(fields.clone())), pointer);
            assert_eq!(got, want, "{fields} at {pointer}");
        }
    }

    #[test]
    fn user_blocks_map_to_parts_and_tool_messages() {
        let png = json!({"type": "base64", "media_type": "image/png", "data": "iVBOR"});
        let rows = [
            (
                json!([{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]),
                json!([{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]),
            ),
            (
                json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]),
                json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]),
            ),
            (
                json!([{"type": "image", "source": png}, {"type": "text", "text": "what is it?"}]),
                json!([{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "text", "text": "what is it?"}]}]),
            ),
            (
                json!([{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}, "cache_control": {"type": "ephemeral"}}]),
                json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}, "cache_control": {"type": "ephemeral"}}]}]),
            ),
            (
                json!([{"type": "document", "title": "report.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]),
                json!([{"role": "user", "content": [{"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBE"}}]}]),
            ),
            (
                json!([{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]),
                json!([{"role": "user", "content": [{"type": "file", "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBE"}}]}]),
            ),
            (
                json!([{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "the text"}}]),
                json!([{"role": "user", "content": "the text"}]),
            ),
            (
                json!([{"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "p1"}, {"type": "image", "source": png}]}}]),
                json!([{"role": "user", "content": [{"type": "text", "text": "p1"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]}]),
            ),
            (
                json!([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}]),
                json!([{"role": "tool", "tool_call_id": "toolu_1", "content": "42"}]),
            ),
            (
                json!([{"type": "tool_result", "tool_use_id": "toolu_1"}]),
                json!([{"role": "tool", "tool_call_id": "toolu_1", "content": ""}]),
            ),
            (
                json!([{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true,
                    "content": [{"type": "text", "text": "no such file"}], "cache_control": {"type": "ephemeral"}}]),
                json!([{"role": "tool", "tool_call_id": "toolu_1", "content": "no such file",
                    "is_error": true, "cache_control": {"type": "ephemeral"}}]),
            ),
            (
                // Text first in the turn: tool results still come first.
                json!([{"type": "text", "text": "and?"},
                    {"type": "tool_result", "tool_use_id": "a", "content": [{"type": "text", "text": "1"}, {"type": "image", "source": png}]},
                    {"type": "tool_result", "tool_use_id": "b", "content": [{"type": "image", "source": png}]}]),
                json!([
                    {"role": "tool", "tool_call_id": "a", "content": "1"},
                    {"role": "tool", "tool_call_id": "b", "content": ""},
                    {"role": "user", "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                        {"type": "text", "text": "and?"}]}]),
            ),
            (json!([]), json!([])),
        ];
        for (content, want) in rows {
            let body = request(json!({"messages": [{"role": "user", "content": content}]}));
            assert_eq!(at(&decoded(&body), "/messages"), want, "{content}");
        }
    }

    #[test]
    fn a_multi_turn_tool_conversation_keeps_its_order() {
        // Raw text, not `json!`: the arguments must keep the client's key order.
        let body = r#"{
            "model": "claude-sonnet-4-5", "max_tokens": 1024,
            "system": [{"type": "text", "text": "You are terse."}],
            "tools": [{"name": "add", "input_schema": {"type": "object"}}, {"name": "mul", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "Add and multiply 2 and 3"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Both at once."},
                    {"type": "tool_use", "id": "toolu_A", "name": "add", "input": {"b": 3, "a": 2}},
                    {"type": "tool_use", "id": "toolu_B", "name": "mul", "input": { "a" : 2, "b" : [3, "x y"] }, "cache_control": {"type": "ephemeral"}},
                    {"type": "tool_use", "id": "toolu_C", "name": "mul"}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_A", "content": [{"type": "text", "text": "5"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_B", "content": "6"},
                    {"type": "tool_result", "tool_use_id": "toolu_C", "content": "?", "is_error": true},
                    {"type": "text", "text": "Now explain."}
                ]},
                {"role": "assistant", "content": "5 and 6."},
                {"role": "user", "content": "Thanks"}
            ]
        }"#;
        let want = json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Add and multiply 2 and 3"},
            {"role": "assistant", "content": "Both at once.", "tool_calls": [
                // Arguments keep the client's key order; whitespace outside strings goes.
                {"id": "toolu_A", "type": "function", "function": {"name": "add", "arguments": "{\"b\":3,\"a\":2}"}},
                {"id": "toolu_B", "type": "function", "function": {"name": "mul", "arguments": "{\"a\":2,\"b\":[3,\"x y\"]}"},
                    "cache_control": {"type": "ephemeral"}},
                {"id": "toolu_C", "type": "function", "function": {"name": "mul", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_A", "content": "5"},
            {"role": "tool", "tool_call_id": "toolu_B", "content": "6"},
            {"role": "tool", "tool_call_id": "toolu_C", "content": "?", "is_error": true},
            {"role": "user", "content": "Now explain."},
            {"role": "assistant", "content": "5 and 6."},
            {"role": "user", "content": "Thanks"}
        ]);
        let got = serde_json::to_value(decode_request(body.as_bytes()).unwrap()).unwrap();
        assert_eq!(got["messages"], want);
        assert_eq!(got["tools"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn thinking_turns_become_reasoning_and_replayable_blocks() {
        let rows = [
            (
                json!([
                    {"type": "thinking", "thinking": "Let me", "signature": "sig1=="},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "thinking", "thinking": " think.", "signature": "sig2=="},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Rome"}}
                ]),
                json!({"role": "assistant", "reasoning_content": "Let me think.",
                    "thinking_blocks": [
                        {"type": "thinking", "thinking": "Let me", "signature": "sig1=="},
                        {"type": "redacted_thinking", "data": "opaque"},
                        {"type": "thinking", "thinking": " think.", "signature": "sig2=="}],
                    "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}]}),
            ),
            (
                // Summaries omitted: an empty, signed block must still be replayed.
                json!([{"type": "thinking", "thinking": "", "signature": "sig=="}, {"type": "text", "text": "Hi"}]),
                json!({"role": "assistant", "content": "Hi",
                    "thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "sig=="}]}),
            ),
            (
                // Unsigned (ours, from another upstream): text only, never replayed.
                json!([{"type": "thinking", "thinking": "hmm", "signature": ""}, {"type": "text", "text": "Hi"}]),
                json!({"role": "assistant", "content": "Hi", "reasoning_content": "hmm"}),
            ),
        ];
        for (content, want) in rows {
            let body = request(json!({"messages": [
                {"role": "user", "content": "q"}, {"role": "assistant", "content": content}]}));
            assert_eq!(at(&decoded(&body), "/messages/1"), want, "{content}");
        }
    }

    #[test]
    fn bad_requests_are_400s_naming_the_field() {
        let user = |content: Value| json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": content}]});
        let assistant = |content: Value| {
            json!({"model": "m", "max_tokens": 5, "messages": [
                {"role": "user", "content": "q"}, {"role": "assistant", "content": content}]})
        };
        let rows: Vec<(String, Option<&str>, &str)> = vec![
            ("".into(), None, "empty"),
            ("  \n".into(), None, "empty"),
            ("{".into(), None, "not valid JSON"),
            ("[]".into(), None, "a Messages request object"),
            ("null".into(), None, "a Messages request object"),
            (r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]} trailing"#.into(), None, "not valid JSON"),
            (r#"{"max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#.into(), Some("model"), "`model` is required"),
            (r#"{"model":" ","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#.into(), Some("model"), "must not be empty"),
            (r#"{"model":7,"max_tokens":5,"messages":[]}"#.into(), Some("model"), "invalid type"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#.into(), Some("max_tokens"), "`max_tokens` is required"),
            (r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#.into(), Some("max_tokens"), "at least 1"),
            (r#"{"model":"m","max_tokens":"100","messages":[]}"#.into(), Some("max_tokens"), "invalid type"),
            (r#"{"model":"m","max_tokens":-1,"messages":[]}"#.into(), Some("max_tokens"), "invalid value"),
            (r#"{"model":"m","max_tokens":1.5,"messages":[]}"#.into(), Some("max_tokens"), "invalid type"),
            (r#"{"model":"m","max_tokens":5}"#.into(), Some("messages"), "`messages` is required"),
            (r#"{"model":"m","max_tokens":5,"messages":[]}"#.into(), Some("messages"), "at least one message"),
            (r#"{"model":"m","max_tokens":5,"messages":"hi"}"#.into(), Some("messages"), "invalid type"),
            (r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":5}]}"#.into(), Some("messages"), "a string or an array of content blocks"),
            (r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"text":"x"}]}]}"#.into(), Some("messages"), "missing field `type`"),
            (r#"{"model":"m","max_tokens":5,"temperature":"hot","messages":[]}"#.into(), Some("temperature"), "invalid type"),
            (r#"{"model":"m","max_tokens":5,"stream":"yes","messages":[]}"#.into(), Some("stream"), "invalid type"),
            (r#"{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"}]}"#.into(), Some("messages[0].role"), "\"user\" or \"assistant\""),
            (r#"{"model":"m","max_tokens":5,"messages":[{"role":"user"}]}"#.into(), Some("messages[0].content"), "needs `content`"),
            (user(json!([{"type": "video", "url": "x"}])).to_string(), Some("messages[0].content[0].type"), "cannot hold `video`"),
            (user(json!([{"type": "tool_use", "id": "t", "name": "n", "input": {}}])).to_string(), Some("messages[0].content[0].type"), "user messages cannot hold `tool_use`"),
            (user(json!([{"type": "text"}])).to_string(), Some("messages[0].content[0].text"), "needs `text`"),
            (user(json!([{"type": "image", "source": {"type": "file", "file_id": "f_1"}}])).to_string(), Some("messages[0].content[0].source.type"), "Files API"),
            (user(json!([{"type": "image", "source": {"type": "base64", "data": "x"}}])).to_string(), Some("messages[0].content[0].source"), "`media_type` and `data`"),
            (user(json!([{"type": "image"}])).to_string(), Some("messages[0].content[0].source"), "needs `source`"),
            (user(json!([{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}])).to_string(), Some("messages[0].content[0].source.type"), "as base64"),
            (user(json!([{"type": "document", "source": {"type": "base64", "media_type": "text/csv", "data": "x"}}])).to_string(), Some("messages[0].content[0].source.media_type"), "application/pdf"),
            (user(json!([{"type": "tool_result", "content": "x"}])).to_string(), Some("messages[0].content[0].tool_use_id"), "needs `tool_use_id`"),
            (user(json!([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "search_result"}]}])).to_string(), Some("messages[0].content[0].content[0].type"), "not `search_result`"),
            (user(json!([{"type": "web_search_tool_result", "tool_use_id": "s"}])).to_string(), Some("messages[0].content[0].type"), "server tools"),
            (assistant(json!([{"type": "tool_use", "name": "n", "input": {}}])).to_string(), Some("messages[1].content[0].id"), "needs `id`"),
            (assistant(json!([{"type": "tool_use", "id": "t", "input": {}}])).to_string(), Some("messages[1].content[0].name"), "needs `name`"),
            (assistant(json!([{"type": "tool_result", "tool_use_id": "t"}])).to_string(), Some("messages[1].content[0].type"), "assistant messages cannot hold `tool_result`"),
            (assistant(json!([{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}])).to_string(), Some("messages[1].content[0].type"), "server tools"),
            (assistant(json!([{"type": "image", "source": {"type": "url", "url": "https://x"}}])).to_string(), Some("messages[1].content[0].type"), "cannot hold `image`"),
            (request(json!({"system": [{"type": "image"}]})).to_string(), Some("system[0].type"), "only text blocks"),
            (request(json!({"system": 5})).to_string(), Some("system"), "invalid type"),
            (request(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]})).to_string(), Some("tools[0].type"), "`web_search_20250305` is an Anthropic server tool"),
            (request(json!({"tools": [{"input_schema": {"type": "object"}}]})).to_string(), Some("tools[0].name"), "needs a `name`"),
            (request(json!({"tools": {"name": "f"}})).to_string(), Some("tools"), "invalid type"),
            (request(json!({"tool_choice": {"type": "bogus"}})).to_string(), Some("tool_choice.type"), "not `bogus`"),
            (request(json!({"tool_choice": {"type": "tool"}})).to_string(), Some("tool_choice.name"), "needs `name`"),
            (request(json!({"tool_choice": "auto"})).to_string(), Some("tool_choice"), "invalid type"),
        ];
        for (body, param, want) in rows {
            let err = decode_request(body.as_bytes()).expect_err(&body);
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.kind, "invalid_request_error", "{body}");
            assert_eq!(err.param.as_deref(), param, "{body}: {}", err.message);
            assert!(
                err.message.contains(want),
                "{body}: expected {want:?} in {:?}",
                err.message
            );
        }
    }

    #[test]
    fn count_tokens_requests_need_no_max_tokens() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"name":"f","input_schema":{}}]}"#;
        assert!(decode_request(body).is_err());
        let req = decode_count_tokens_request(body).unwrap();
        assert_eq!(req.max_completion_tokens, None);
        assert_eq!(req.tools.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn malformed_bodies_are_errors_never_panics() {
        let full = request(json!({
            "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "f"},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "é\"\\"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}]},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, {"b": null}]}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "r"}]}]}
            ]
        }))
        .to_string();
        let mut bodies: Vec<Vec<u8>> = vec![
            b"\xff\xfe".to_vec(),
            b"{\"model\":\"\xff\"}".to_vec(),
            "[".repeat(100_000).into_bytes(),
            format!("{{\"x\":{}1{}}}", "[".repeat(5_000), "]".repeat(5_000)).into_bytes(),
            br#"{"model":"m","max_tokens":99999999999999999999999,"messages":[]}"#.to_vec(),
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"n","input":"not an object"}]}]}"#.to_vec(),
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"content"}}]}],"metadata":[1]}"#.to_vec(),
        ];
        // Every prefix of a full conversation, and every byte replaced by a quote or
        // a brace.
        for cut in 0..full.len() {
            bodies.push(full.as_bytes()[..cut].to_vec());
        }
        for i in 0..full.len() {
            for b in [b'"', b'{', b'0'] {
                let mut body = full.as_bytes().to_vec();
                body[i] = b;
                bodies.push(body);
            }
        }
        for body in &bodies {
            let _ = decode_request(body);
            let _ = decode_count_tokens_request(body);
        }
        assert!(decode_request(full.as_bytes()).is_ok());
    }

    // -----------------------------------------------------------------------------
    // Answers.

    fn response(v: Value) -> ChatResponse {
        serde_json::from_value(v).unwrap()
    }

    fn encoded(resp: Value) -> Value {
        serde_json::from_slice(&encode_response(&response(resp), "claude-x")).unwrap()
    }

    /// A completion with one choice of this message and finish reason.
    fn completion(message: Value, finish: Value, choice_extra: Value) -> Value {
        let mut choice = json!({"index": 0, "message": message, "finish_reason": finish});
        for (k, v) in choice_extra.as_object().unwrap() {
            choice[k] = v.clone();
        }
        json!({"id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [choice],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
    }

    #[test]
    fn a_whole_answer_is_a_message_object() {
        let got = encoded(completion(
            json!({"role": "assistant", "content": "Hello"}),
            json!("stop"),
            json!({}),
        ));
        assert_eq!(
            got,
            json!({"id": "msg_abc", "type": "message", "role": "assistant", "model": "claude-x",
                "content": [{"type": "text", "text": "Hello"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 5}})
        );
    }

    #[test]
    fn answer_content_and_stop_reason_table() {
        let calls = json!([
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}},
            {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}},
            {"id": "call_3", "type": "function", "function": {"name": "h", "arguments": "{\"a\":"}},
            {"id": "call_4", "type": "function", "function": {"name": "k", "arguments": "[1]"}}
        ]);
        let rows = [
            (
                json!({"content": "Let me check.", "tool_calls": calls}),
                json!("tool_calls"),
                json!({}),
                json!([{"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
                    {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
                    {"type": "tool_use", "id": "call_3", "name": "h", "input": {"_raw_arguments": "{\"a\":"}},
                    {"type": "tool_use", "id": "call_4", "name": "k", "input": {"_raw_arguments": "[1]"}}]),
                "tool_use",
                Value::Null,
            ),
            (
                json!({"content": null, "tool_calls": [calls[0]]}),
                json!("stop"),
                json!({}),
                json!([{"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}]),
                "tool_use",
                Value::Null,
            ),
            (
                json!({"content": "Hi", "reasoning_content": "hmmhm", "thinking_blocks": [
                    {"index": 0, "type": "thinking", "thinking": "hmm", "signature": "s1"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "thinking", "thinking": "hm", "signature": "s2"}]}),
                json!("stop"),
                json!({}),
                json!([{"type": "thinking", "thinking": "hmm", "signature": "s1"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "thinking", "thinking": "hm", "signature": "s2"},
                    {"type": "text", "text": "Hi"}]),
                "end_turn",
                Value::Null,
            ),
            (
                json!({"content": "Hi", "reasoning_content": "hmm"}),
                json!("stop"),
                json!({}),
                json!([{"type": "thinking", "thinking": "hmm", "signature": ""}, {"type": "text", "text": "Hi"}]),
                "end_turn",
                Value::Null,
            ),
            (
                json!({"content": "Hi", "reasoning": "via openrouter"}),
                json!("stop"),
                json!({}),
                json!([{"type": "thinking", "thinking": "via openrouter", "signature": ""}, {"type": "text", "text": "Hi"}]),
                "end_turn",
                Value::Null,
            ),
            (
                json!({"content": "Hi"}),
                json!("length"),
                json!({}),
                json!([{"type": "text", "text": "Hi"}]),
                "max_tokens",
                Value::Null,
            ),
            (
                json!({"content": ""}),
                json!("content_filter"),
                json!({}),
                json!([]),
                "refusal",
                Value::Null,
            ),
            (
                json!({"content": null, "refusal": "I can't."}),
                json!("stop"),
                json!({}),
                json!([{"type": "text", "text": "I can't."}]),
                "end_turn",
                Value::Null,
            ),
            (
                json!({"content": "Hi"}),
                json!(null),
                json!({}),
                json!([{"type": "text", "text": "Hi"}]),
                "end_turn",
                Value::Null,
            ),
            (
                json!({"content": "Hi"}),
                json!("eos"),
                json!({}),
                json!([{"type": "text", "text": "Hi"}]),
                "end_turn",
                Value::Null,
            ),
            // The upstream's own reason, kept by the translating providers.
            (
                json!({"content": "Hi"}),
                json!("stop"),
                json!({"native_finish_reason": "pause_turn"}),
                json!([{"type": "text", "text": "Hi"}]),
                "pause_turn",
                Value::Null,
            ),
            (
                json!({"content": "Hi"}),
                json!("length"),
                json!({"native_finish_reason": "model_context_window_exceeded"}),
                json!([{"type": "text", "text": "Hi"}]),
                "model_context_window_exceeded",
                Value::Null,
            ),
            (
                json!({"content": "Hi"}),
                json!("stop"),
                json!({"native_finish_reason": "STOP"}),
                json!([{"type": "text", "text": "Hi"}]),
                "end_turn",
                Value::Null,
            ),
            // vLLM: the stop string that fired (an int is a stop token: not a sequence).
            (
                json!({"content": "Hi"}),
                json!("stop"),
                json!({"stop_reason": "###"}),
                json!([{"type": "text", "text": "Hi"}]),
                "stop_sequence",
                json!("###"),
            ),
            (
                json!({"content": "Hi"}),
                json!("stop"),
                json!({"stop_reason": 128009}),
                json!([{"type": "text", "text": "Hi"}]),
                "end_turn",
                Value::Null,
            ),
        ];
        for (mut message, finish, extra, content, stop, sequence) in rows {
            message["role"] = json!("assistant");
            let got = encoded(completion(message.clone(), finish.clone(), extra.clone()));
            let ctx = format!("{message} / {finish} / {extra}");
            assert_eq!(got["content"], content, "{ctx}");
            assert_eq!(got["stop_reason"], stop, "{ctx}");
            assert_eq!(got["stop_sequence"], sequence, "{ctx}");
        }
    }

    #[test]
    fn answer_ids_and_missing_parts() {
        let rows = [
            ("chatcmpl-abc", "msg_abc"),
            ("msg_01XY", "msg_01XY"),
            ("gen-123", "msg_gen-123"),
        ];
        for (id, want) in rows {
            let mut r = completion(
                json!({"role": "assistant", "content": "x"}),
                json!("stop"),
                json!({}),
            );
            r["id"] = json!(id);
            assert_eq!(encoded(r)["id"], want);
        }
        let bare = json!({"id": "", "model": "m", "choices": []});
        let got = encoded(bare);
        assert!(
            got["id"].as_str().unwrap().starts_with("msg_")
                && got["id"].as_str().unwrap().len() > 10
        );
        assert_eq!(got["content"], json!([]));
        assert_eq!(got["stop_reason"], "end_turn");
        assert_eq!(
            got["usage"],
            json!({"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0})
        );
        // A call without an id gets one (a tool_use must have one).
        let r = completion(
            json!({"role": "assistant", "tool_calls": [{"id": "", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
            json!("tool_calls"),
            json!({}),
        );
        assert!(encoded(r)["content"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_"));
    }

    #[test]
    fn usage_inverts_the_anthropic_provider_mapping() {
        // (input, cache_creation, cache_read, output) as Anthropic reports them, and the
        // chat usage providers/anthropic makes of them (response.rs `to_openai`).
        let rows = [
            (
                (10, 0, 0, 5),
                json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}),
            ),
            (
                (3, 1200, 0, 7),
                json!({"prompt_tokens": 1203, "completion_tokens": 7, "total_tokens": 1210,
                    "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 1200}}),
            ),
            (
                (4, 0, 5000, 9),
                json!({"prompt_tokens": 5004, "completion_tokens": 9, "total_tokens": 5013,
                    "prompt_tokens_details": {"cached_tokens": 5000}}),
            ),
            (
                (2, 30, 400, 1),
                json!({"prompt_tokens": 432, "completion_tokens": 1, "total_tokens": 433,
                    "prompt_tokens_details": {"cached_tokens": 400, "cache_write_tokens": 30},
                    "completion_tokens_details": {"reasoning_tokens": 1}}),
            ),
            // An OpenAI upstream's cached prompt.
            (
                (24, 0, 1000, 3),
                json!({"prompt_tokens": 1024, "completion_tokens": 3, "total_tokens": 1027,
                    "prompt_tokens_details": {"cached_tokens": 1000, "audio_tokens": 0}}),
            ),
        ];
        for ((input, write, read, output), usage) in rows {
            let u: Usage = serde_json::from_value(usage.clone()).unwrap();
            assert_eq!(
                UsageOut::from(&u),
                UsageOut {
                    input_tokens: input,
                    cache_creation_input_tokens: write,
                    cache_read_input_tokens: read,
                    output_tokens: output
                },
                "{usage}"
            );
        }
    }

    // -----------------------------------------------------------------------------
    // Errors.

    fn gateway_error(status: u16, kind: &'static str, code: Option<&str>) -> GatewayError {
        GatewayError {
            status,
            kind,
            message: "m".into(),
            param: None,
            code: code.map(str::to_owned),
            retry_after: None,
            attempts: 0,
        }
    }

    #[test]
    fn error_types_by_status_and_code() {
        let rows = [
            (GatewayError::bad_request("x"), "invalid_request_error"),
            (GatewayError::unauthorized("x"), "authentication_error"),
            (
                gateway_error(402, "invalid_request_error", None),
                "billing_error",
            ),
            (GatewayError::forbidden("x"), "permission_error"),
            (GatewayError::model_not_found("m"), "not_found_error"),
            (GatewayError::not_found("x"), "not_found_error"),
            (
                GatewayError::method_not_allowed("x"),
                "invalid_request_error",
            ),
            (
                gateway_error(409, "invalid_request_error", None),
                "invalid_request_error",
            ),
            (GatewayError::payload_too_large(10), "request_too_large"),
            (GatewayError::rate_limited("x"), "rate_limit_error"),
            (GatewayError::internal("x"), "api_error"),
            (GatewayError::upstream("x"), "api_error"),
            (GatewayError::unavailable("x"), "overloaded_error"),
            (GatewayError::timeout("x"), "timeout_error"),
            (
                gateway_error(529, "upstream_error", None),
                "overloaded_error",
            ),
            (
                gateway_error(502, "upstream_error", Some("overloaded")),
                "overloaded_error",
            ),
            (
                gateway_error(500, "overloaded_error", None),
                "overloaded_error",
            ),
            (gateway_error(200, "server_error", None), "api_error"),
        ];
        for (err, want) in rows {
            assert_eq!(error_type(&err), want, "{err:?}");
        }
    }

    #[test]
    fn error_bodies_are_anthropic_shaped() {
        let err = GatewayError::model_not_found("nope");
        let v: Value = serde_json::from_slice(&error_body(&err)).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": "not_found_error", "message": err.message}})
        );
    }

    // -----------------------------------------------------------------------------
    // Token estimate.

    #[test]
    fn the_token_estimate_follows_its_documented_rule() {
        let req = |v: Value| -> ChatRequest { serde_json::from_value(v).unwrap() };
        let rows = [
            // 12 bytes → 4, + 4 per message.
            (
                json!({"messages": [{"role": "user", "content": "Hello, world"}]}),
                8,
            ),
            // 13 bytes round up to 5.
            (
                json!({"messages": [{"role": "user", "content": "Hello, world!"}]}),
                9,
            ),
            // "é" is 2 bytes.
            (
                json!({"messages": [{"role": "user", "content": "ééé"}]}),
                4 + 2,
            ),
            (
                json!({"messages": [{"role": "system", "content": "abc"}, {"role": "user", "content": [
                    {"type": "text", "text": "abc"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
                4 + 4 + 1600 + 2,
            ),
            (
                json!({"messages": [{"role": "user", "content": [
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAAAAAAAAAA"}}]}]}),
                // 40 characters of data URL / 16, rounded up.
                4 + 3,
            ),
            (
                json!({"messages": [{"role": "assistant", "content": null, "tool_calls": [
                    {"id": "t", "type": "function", "function": {"name": "abc", "arguments": "{\"a\":1}"}}]},
                    {"role": "tool", "tool_call_id": "t", "content": "ok"}]}),
                // 3 + 7 + 2 = 12 bytes → 4; two messages; one call.
                4 + 4 + 8 + 4,
            ),
            (
                json!({"messages": [{"role": "user", "content": "hi"}], "tools": [
                    {"type": "function", "function": {"name": "f", "description": "dd", "parameters": {"type": "object"}}}]}),
                // "hi" + "f" + "dd" + `{"type":"object"}` (17) = 22 bytes → 8.
                4 + 346 + 8 + 8,
            ),
        ];
        for (mut body, want) in rows {
            body["model"] = json!("m");
            assert_eq!(count_tokens_estimate(&req(body.clone())), want, "{body}");
        }
        assert_eq!(
            count_tokens_response(42),
            Bytes::from_static(b"{\"input_tokens\":42}")
        );
    }

    // -----------------------------------------------------------------------------
    // Streams.

    fn chunk(delta: Value) -> ChatChunk {
        let mut c = ChatChunk::new("chatcmpl-s1", 1, "upstream");
        let d: Delta = serde_json::from_value(delta).unwrap();
        c.choices.push(ChunkChoice::new(0, d));
        c
    }

    fn finish(reason: &str) -> ChatChunk {
        let mut c = chunk(json!({}));
        c.choices[0].finish_reason = Some(FinishReason::from(reason));
        c
    }

    fn usage(prompt: u64, completion: u64, cached: u64) -> ChatChunk {
        let mut c = ChatChunk::new("chatcmpl-s1", 1, "upstream");
        c.usage = Some(
            serde_json::from_value(json!({"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}}))
            .unwrap(),
        );
        c
    }

    fn text(s: &str) -> ChatChunk {
        chunk(json!({"content": s}))
    }

    fn tool(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> ChatChunk {
        let mut call = json!({"index": index, "function": {"arguments": args}});
        if let Some(id) = id {
            call["id"] = json!(id);
            call["type"] = json!("function");
        }
        if let Some(name) = name {
            call["function"]["name"] = json!(name);
        }
        chunk(json!({"tool_calls": [call]}))
    }

    fn role() -> ChatChunk {
        chunk(json!({"role": "assistant", "content": ""}))
    }

    /// Feeds `chunks`, then `finish()`; the events as (name, data) with the name
    /// checked against the data's `type`.
    fn events_of(enc: StreamEncoder, chunks: &[ChatChunk]) -> (Vec<u8>, Vec<Value>) {
        let mut enc = enc;
        let mut out = Vec::new();
        for c in chunks {
            enc.chunk(c, &mut out);
        }
        enc.finish(&mut out);
        (out.clone(), parse_events(&out))
    }

    fn parse_events(out: &[u8]) -> Vec<Value> {
        crate::sse::SseDecoder::decode_all(out)
            .into_iter()
            .map(|e| {
                let v: Value = serde_json::from_str(&e.data).unwrap();
                assert_eq!(e.event.as_deref(), v["type"].as_str(), "event name of {v}");
                v
            })
            .collect()
    }

    fn start(input: u64) -> Value {
        json!({"type": "message_start", "message": {"id": "msg_s1", "type": "message", "role": "assistant",
            "model": "claude-x", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}}})
    }
    fn block_start(index: u32, block: Value) -> Value {
        json!({"type": "content_block_start", "index": index, "content_block": block})
    }
    fn block_delta(index: u32, delta: Value) -> Value {
        json!({"type": "content_block_delta", "index": index, "delta": delta})
    }
    fn block_stop(index: u32) -> Value {
        json!({"type": "content_block_stop", "index": index})
    }
    fn text_start(index: u32) -> Value {
        block_start(index, json!({"type": "text", "text": ""}))
    }
    fn text_delta(index: u32, t: &str) -> Value {
        block_delta(index, json!({"type": "text_delta", "text": t}))
    }
    fn tool_start(index: u32, id: &str, name: &str) -> Value {
        block_start(
            index,
            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
        )
    }
    fn json_delta(index: u32, piece: &str) -> Value {
        block_delta(
            index,
            json!({"type": "input_json_delta", "partial_json": piece}),
        )
    }
    fn thinking_start(index: u32) -> Value {
        block_start(
            index,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
        )
    }
    fn thinking_delta(index: u32, t: &str) -> Value {
        block_delta(index, json!({"type": "thinking_delta", "thinking": t}))
    }
    fn message_delta(stop: &str, usage: (u64, u64, u64, u64)) -> Value {
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"input_tokens": usage.0, "cache_creation_input_tokens": usage.1,
                "cache_read_input_tokens": usage.2, "output_tokens": usage.3}})
    }
    fn stop() -> Value {
        json!({"type": "message_stop"})
    }

    /// The stream cases: (name, chunks, expected events). `sdk_check` replays them
    /// through the official SDK too (see `tests/anthropic_sdk_check.py`).
    fn stream_cases() -> Vec<(&'static str, Vec<ChatChunk>, Vec<Value>)> {
        vec![
            (
                "text",
                vec![
                    role(),
                    text("Hel"),
                    text("lo"),
                    finish("stop"),
                    usage(10, 2, 0),
                ],
                vec![
                    start(0),
                    text_start(0),
                    text_delta(0, "Hel"),
                    text_delta(0, "lo"),
                    block_stop(0),
                    message_delta("end_turn", (10, 0, 0, 2)),
                    stop(),
                ],
            ),
            (
                "tool_call_in_fragments",
                vec![
                    role(),
                    tool(0, Some("call_1"), Some("get_weather"), ""),
                    tool(0, None, None, "{\"city\":"),
                    tool(0, None, None, "\"Paris\"}"),
                    finish("tool_calls"),
                    usage(50, 9, 40),
                ],
                vec![
                    start(0),
                    tool_start(0, "call_1", "get_weather"),
                    json_delta(0, "{\"city\":"),
                    json_delta(0, "\"Paris\"}"),
                    block_stop(0),
                    message_delta("tool_use", (10, 0, 40, 9)),
                    stop(),
                ],
            ),
            (
                "thinking_then_text",
                vec![
                    role(),
                    chunk(json!({"reasoning_content": "Let me"})),
                    chunk(json!({"reasoning_content": " think."})),
                    chunk(
                        json!({"thinking_blocks": [{"index": 0, "type": "thinking", "thinking": "Let me think.", "signature": "c2lnbmF0dXJl"}]}),
                    ),
                    text("Answer."),
                    finish("stop"),
                    usage(20, 30, 0),
                ],
                vec![
                    start(0),
                    thinking_start(0),
                    thinking_delta(0, "Let me"),
                    thinking_delta(0, " think."),
                    block_delta(
                        0,
                        json!({"type": "signature_delta", "signature": "c2lnbmF0dXJl"}),
                    ),
                    block_stop(0),
                    text_start(1),
                    text_delta(1, "Answer."),
                    block_stop(1),
                    message_delta("end_turn", (20, 0, 0, 30)),
                    stop(),
                ],
            ),
            (
                "unsigned_reasoning_then_text",
                vec![
                    role(),
                    chunk(json!({"reasoning_content": "hmm"})),
                    text("Hi"),
                    finish("stop"),
                    usage(1, 2, 0),
                ],
                vec![
                    start(0),
                    thinking_start(0),
                    thinking_delta(0, "hmm"),
                    block_stop(0),
                    text_start(1),
                    text_delta(1, "Hi"),
                    block_stop(1),
                    message_delta("end_turn", (1, 0, 0, 2)),
                    stop(),
                ],
            ),
            (
                "redacted_and_omitted_thinking",
                vec![
                    role(),
                    chunk(
                        json!({"thinking_blocks": [{"index": 0, "type": "redacted_thinking", "data": "opaque"}]}),
                    ),
                    chunk(
                        json!({"thinking_blocks": [{"index": 1, "type": "thinking", "thinking": "", "signature": "c2ln"}]}),
                    ),
                    text("Hi"),
                    finish("stop"),
                    usage(1, 2, 0),
                ],
                vec![
                    start(0),
                    block_start(0, json!({"type": "redacted_thinking", "data": "opaque"})),
                    block_stop(0),
                    thinking_start(1),
                    block_delta(1, json!({"type": "signature_delta", "signature": "c2ln"})),
                    block_stop(1),
                    text_start(2),
                    text_delta(2, "Hi"),
                    block_stop(2),
                    message_delta("end_turn", (1, 0, 0, 2)),
                    stop(),
                ],
            ),
            (
                "text_then_two_calls",
                vec![
                    role(),
                    text("Both."),
                    tool(0, Some("call_a"), Some("add"), ""),
                    tool(0, None, None, "{\"a\":2,\"b\":3}"),
                    tool(1, Some("call_m"), Some("mul"), ""),
                    tool(1, None, None, "{\"a\":2,"),
                    tool(1, None, None, "\"b\":3}"),
                    finish("tool_calls"),
                    usage(30, 40, 0),
                ],
                vec![
                    start(0),
                    text_start(0),
                    text_delta(0, "Both."),
                    block_stop(0),
                    tool_start(1, "call_a", "add"),
                    json_delta(1, "{\"a\":2,\"b\":3}"),
                    block_stop(1),
                    tool_start(2, "call_m", "mul"),
                    json_delta(2, "{\"a\":2,"),
                    json_delta(2, "\"b\":3}"),
                    block_stop(2),
                    message_delta("tool_use", (30, 0, 0, 40)),
                    stop(),
                ],
            ),
            (
                // Whole calls in one fragment each (Gemini), one without arguments.
                "whole_calls",
                vec![
                    role(),
                    tool(0, Some("c0"), Some("f"), "{\"x\":[1,\"]\"]}"),
                    tool(1, Some("c1"), Some("g"), ""),
                    tool(2, Some("c2"), Some("h"), "{}"),
                    finish("tool_calls"),
                    usage(5, 5, 0),
                ],
                vec![
                    start(0),
                    tool_start(0, "c0", "f"),
                    json_delta(0, "{\"x\":[1,\"]\"]}"),
                    block_stop(0),
                    tool_start(1, "c1", "g"),
                    json_delta(1, "{}"),
                    block_stop(1),
                    tool_start(2, "c2", "h"),
                    json_delta(2, "{}"),
                    block_stop(2),
                    message_delta("tool_use", (5, 0, 0, 5)),
                    stop(),
                ],
            ),
            (
                // Interleaved calls: the second is held until the first is complete.
                "interleaved_calls",
                vec![
                    role(),
                    tool(0, Some("c0"), Some("f"), ""),
                    tool(1, Some("c1"), Some("g"), ""),
                    tool(0, None, None, "{\"a\":"),
                    tool(1, None, None, "{\"b\":2}"),
                    tool(0, None, None, "1}"),
                    finish("tool_calls"),
                    usage(5, 5, 0),
                ],
                vec![
                    start(0),
                    tool_start(0, "c0", "f"),
                    json_delta(0, "{\"a\":"),
                    json_delta(0, "1}"),
                    block_stop(0),
                    tool_start(1, "c1", "g"),
                    json_delta(1, "{\"b\":2}"),
                    block_stop(1),
                    message_delta("tool_use", (5, 0, 0, 5)),
                    stop(),
                ],
            ),
            (
                // A forced tool choice: OpenAI finishes with `stop`.
                "forced_tool_finishes_with_stop",
                vec![
                    role(),
                    tool(0, Some("c0"), Some("Person"), "{\"name\":\"Alice\"}"),
                    finish("stop"),
                    usage(5, 5, 0),
                ],
                vec![
                    start(0),
                    tool_start(0, "c0", "Person"),
                    json_delta(0, "{\"name\":\"Alice\"}"),
                    block_stop(0),
                    message_delta("tool_use", (5, 0, 0, 5)),
                    stop(),
                ],
            ),
            (
                "no_usage",
                vec![role(), text("Hi"), finish("length")],
                vec![
                    start(0),
                    text_start(0),
                    text_delta(0, "Hi"),
                    block_stop(0),
                    message_delta("max_tokens", (0, 0, 0, 0)),
                    stop(),
                ],
            ),
            (
                "empty_answer",
                vec![],
                vec![start(0), message_delta("end_turn", (0, 0, 0, 0)), stop()],
            ),
            (
                "refusal",
                vec![
                    role(),
                    chunk(json!({"refusal": "I can't help."})),
                    finish("content_filter"),
                    usage(3, 4, 0),
                ],
                vec![
                    start(0),
                    text_start(0),
                    text_delta(0, "I can't help."),
                    block_stop(0),
                    message_delta("refusal", (3, 0, 0, 4)),
                    stop(),
                ],
            ),
            (
                "content_after_the_finish_is_ignored",
                vec![
                    role(),
                    text("a"),
                    finish("stop"),
                    text("b"),
                    usage(1, 1, 0),
                    text("c"),
                ],
                vec![
                    start(0),
                    text_start(0),
                    text_delta(0, "a"),
                    block_stop(0),
                    message_delta("end_turn", (1, 0, 0, 1)),
                    stop(),
                ],
            ),
        ]
    }

    #[test]
    fn stream_event_sequences() {
        for (name, chunks, want) in stream_cases() {
            let (_, mut got) = events_of(StreamEncoder::new("claude-x"), &chunks);
            if chunks.is_empty() {
                // No chunk, no id to derive: a fresh one.
                let id = &mut got[0]["message"]["id"];
                assert!(
                    id.as_str()
                        .is_some_and(|s| s.len() > 10 && s.starts_with("msg_")),
                    "{id}"
                );
                *id = json!("msg_s1");
            }
            assert_eq!(got.len(), want.len(), "{name}: {got:#?}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g, w, "{name}: event {i}");
            }
        }
    }

    #[test]
    fn message_delta_waits_for_the_usage_after_the_finish() {
        let mut enc = StreamEncoder::new("claude-x");
        let mut out = Vec::new();
        for c in [role(), text("Hi"), finish("stop")] {
            enc.chunk(&c, &mut out);
        }
        let names: Vec<Value> = parse_events(&out)
            .iter()
            .map(|e| e["type"].clone())
            .collect();
        assert_eq!(
            names,
            json!([
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop"
            ])
            .as_array()
            .unwrap()
            .clone(),
            "the block closes at the finish; message_delta waits"
        );
        let mut more = Vec::new();
        enc.chunk(&usage(7, 1, 0), &mut more);
        assert_eq!(
            parse_events(&more),
            vec![message_delta("end_turn", (7, 0, 0, 1))]
        );
        let mut last = Vec::new();
        enc.finish(&mut last);
        assert_eq!(parse_events(&last), vec![stop()]);
        let mut nothing = Vec::new();
        enc.finish(&mut nothing);
        enc.chunk(&text("late"), &mut nothing);
        assert!(nothing.is_empty(), "nothing after message_stop");
    }

    #[test]
    fn the_input_estimate_fills_message_start_until_the_real_count() {
        let (_, got) = events_of(
            StreamEncoder::new("claude-x").with_input_estimate(42),
            &[text("Hi"), finish("stop")],
        );
        assert_eq!(got[0], start(42));
        assert_eq!(got[got.len() - 2], message_delta("end_turn", (42, 0, 0, 0)));
        let (_, got) = events_of(
            StreamEncoder::new("claude-x").with_input_estimate(42),
            &[text("Hi"), finish("stop"), usage(40, 1, 0)],
        );
        assert_eq!(got[got.len() - 2], message_delta("end_turn", (40, 0, 0, 1)));
    }

    #[test]
    fn a_failure_mid_stream_is_an_error_event_and_the_end() {
        let mut enc = StreamEncoder::new("claude-x");
        let mut out = Vec::new();
        enc.chunk(&text("Hel"), &mut out);
        enc.error(&GatewayError::unavailable("Overloaded"), &mut out);
        enc.chunk(&text("lo"), &mut out);
        enc.finish(&mut out);
        let got = parse_events(&out);
        assert_eq!(
            got,
            vec![
                start(0),
                text_start(0),
                text_delta(0, "Hel"),
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            ]
        );
        assert_eq!(PING, b"event: ping\ndata: {\"type\": \"ping\"}\n\n");
    }

    /// The official SDK's `accumulate_event` (anthropic-sdk-python
    /// `lib/streaming/_messages.py`), plus what its callers and Claude Code rely on: the
    /// first event is `message_start`, block indexes are contiguous and one block is
    /// open at a time, every delta goes to the open block of its kind, joined
    /// `partial_json` is a JSON object, `message_delta` comes once after every block
    /// closed, `message_stop` is last.
    fn accumulate(events: &[Value]) -> Value {
        let mut snapshot = Value::Null;
        let mut json_bufs: std::collections::BTreeMap<u64, String> = Default::default();
        let mut open: Option<u64> = None;
        let mut deltas = 0;
        for (n, ev) in events.iter().enumerate() {
            let kind = ev["type"].as_str().unwrap();
            if n == 0 {
                assert_eq!(kind, "message_start", "first event");
                snapshot = ev["message"].clone();
                continue;
            }
            assert_ne!(kind, "message_start", "a second message_start");
            assert!(
                deltas == 0 || kind == "message_stop",
                "{kind} after message_delta"
            );
            let index = ev["index"].as_u64();
            match kind {
                "content_block_start" => {
                    assert_eq!(open, None, "a block starts while another is open");
                    let content = snapshot["content"].as_array_mut().unwrap();
                    assert_eq!(
                        index,
                        Some(content.len() as u64),
                        "block indexes are contiguous"
                    );
                    content.push(ev["content_block"].clone());
                    open = index;
                }
                "content_block_delta" => {
                    assert_eq!(open, index, "a delta to a block that is not open");
                    let i = index.unwrap();
                    let block = &mut snapshot["content"][i as usize];
                    let d = &ev["delta"];
                    let append = |block: &mut Value, field: &str, piece: &Value| {
                        let s = format!(
                            "{}{}",
                            block[field].as_str().unwrap(),
                            piece.as_str().unwrap()
                        );
                        block[field] = Value::String(s);
                    };
                    match (d["type"].as_str().unwrap(), block["type"].as_str().unwrap()) {
                        ("text_delta", "text") => append(block, "text", &d["text"]),
                        ("thinking_delta", "thinking") => append(block, "thinking", &d["thinking"]),
                        ("signature_delta", "thinking") => {
                            block["signature"] = d["signature"].clone()
                        }
                        ("input_json_delta", "tool_use") => {
                            let buf = json_bufs.entry(i).or_default();
                            buf.push_str(d["partial_json"].as_str().unwrap());
                        }
                        (d, b) => panic!("a {d} to a {b} block"),
                    }
                }
                "content_block_stop" => {
                    assert_eq!(open, index, "stop of a block that is not open");
                    let i = index.unwrap();
                    if let Some(buf) = json_bufs.get(&i) {
                        let input: Value =
                            serde_json::from_str(buf).unwrap_or_else(|e| panic!("{buf}: {e}"));
                        assert!(input.is_object(), "{buf}");
                        snapshot["content"][i as usize]["input"] = input;
                    }
                    open = None;
                }
                "message_delta" => {
                    assert_eq!(open, None, "message_delta with a block open");
                    deltas += 1;
                    snapshot["stop_reason"] = ev["delta"]["stop_reason"].clone();
                    snapshot["stop_sequence"] = ev["delta"]["stop_sequence"].clone();
                    let u = &ev["usage"];
                    assert!(u["output_tokens"].is_u64(), "output_tokens is required");
                    for (k, v) in u.as_object().unwrap() {
                        if !v.is_null() {
                            snapshot["usage"][k] = v.clone();
                        }
                    }
                }
                "message_stop" => assert_eq!(n, events.len() - 1, "message_stop is last"),
                other => panic!("unexpected event {other}"),
            }
        }
        assert_eq!(deltas, 1, "one message_delta");
        snapshot
    }

    #[test]
    fn every_stream_accumulates_like_the_sdk_and_matches_the_whole_answer() {
        // Optional: `MODELWAY_SDK_CHECK_DIR=dir cargo test -p modelway-core dialect::messages`
        // writes each case's bytes and accumulated message for
        // `crates/core/tests/anthropic_sdk_check.py` (the real SDK).
        let dump = std::env::var_os("MODELWAY_SDK_CHECK_DIR").map(std::path::PathBuf::from);
        for (name, chunks, _) in stream_cases() {
            let (bytes, events) = events_of(StreamEncoder::new("claude-x"), &chunks);
            let message = accumulate(&events);
            if let Some(dir) = &dump {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::write(dir.join(format!("{name}.sse")), &bytes).unwrap();
                std::fs::write(
                    dir.join(format!("{name}.json")),
                    serde_json::to_vec_pretty(&message).unwrap(),
                )
                .unwrap();
            }
            // The same answer, whole, says the same thing.
            let whole = assemble(&chunks);
            let mut encoded: Value =
                serde_json::from_slice(&encode_response(&whole, "claude-x")).unwrap();
            if let Some(dir) = &dump {
                std::fs::write(
                    dir.join(format!("{name}.message.json")),
                    serde_json::to_vec_pretty(&encoded).unwrap(),
                )
                .unwrap();
            }
            encoded["id"] = message["id"].clone();
            assert_eq!(message, encoded, "{name}");
        }
        if let Some(dir) = &dump {
            let mut enc = StreamEncoder::new("claude-x");
            let mut out = Vec::new();
            enc.chunk(&text("Hel"), &mut out);
            enc.error(&GatewayError::unavailable("Overloaded"), &mut out);
            std::fs::write(dir.join("error_mid_stream.sse"), &out).unwrap();
        }
    }

    /// The chat completion a client would assemble from `chunks` (the OpenAI SDK's
    /// rules, choice 0), with its thinking extension.
    fn assemble(chunks: &[ChatChunk]) -> ChatResponse {
        let mut content = String::new();
        let mut refusal = String::new();
        let mut reasoning = String::new();
        let mut blocks = Vec::new();
        let mut calls: Vec<Value> = Vec::new();
        let mut finish = Value::Null;
        let mut usage = Value::Null;
        let mut finished = false;
        for c in chunks {
            if let Some(u) = &c.usage {
                usage = serde_json::to_value(u).unwrap();
            }
            let Some(ch) = c.choices.first() else {
                continue;
            };
            if finished {
                continue;
            }
            let d = &ch.delta;
            content += d.content.as_deref().unwrap_or("");
            refusal += d.refusal.as_deref().unwrap_or("");
            reasoning += d
                .extra
                .get("reasoning_content")
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Some(Value::Array(b)) = d.extra.get("thinking_blocks") {
                blocks.extend(b.iter().cloned());
            }
            for t in d.tool_calls.iter().flatten() {
                let i = t.index as usize;
                if calls.len() <= i {
                    calls.resize(
                        i + 1,
                        json!({"type": "function", "function": {"name": "", "arguments": ""}}),
                    );
                }
                if let Some(id) = &t.id {
                    calls[i]["id"] = json!(id);
                }
                if let Some(f) = &t.function {
                    for (k, v) in [("name", &f.name), ("arguments", &f.arguments)] {
                        let s = format!(
                            "{}{}",
                            calls[i]["function"][k].as_str().unwrap(),
                            v.as_deref().unwrap_or("")
                        );
                        calls[i]["function"][k] = json!(s);
                    }
                }
            }
            if let Some(f) = &ch.finish_reason {
                finish = json!(f.as_str());
                finished = true;
            }
        }
        let mut message = json!({"role": "assistant", "content": content});
        if !refusal.is_empty() {
            message["refusal"] = json!(refusal);
        }
        if !reasoning.is_empty() {
            message["reasoning_content"] = json!(reasoning);
        }
        if !blocks.is_empty() {
            message["thinking_blocks"] = json!(blocks);
        }
        if !calls.is_empty() {
            message["tool_calls"] = json!(calls);
        }
        let mut resp = json!({"id": "chatcmpl-s1", "model": "upstream",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]});
        if !usage.is_null() {
            resp["usage"] = usage;
        }
        response(resp)
    }
}
