//! Canonical (OpenAI) request → Anthropic Messages request (WIRE.md §4.1, §4.3, §4.6).
//!
//! The upstream body is a tree of `Serialize` structs borrowing from the canonical
//! request, so nothing is copied but what must change. Rules, in the order applied:
//! - `system`/`developer` messages → top-level `system` text blocks, in order
//!   (mid-conversation ones are hoisted: Anthropic has no system turn).
//! - `user`/`tool` messages → `user` turns, `assistant` → `assistant` turns;
//!   consecutive turns of one role are merged, and a turn's `tool_result` blocks come
//!   before its other blocks (Anthropic requires both).
//! - Empty or whitespace-only text is never sent; a turn left empty is skipped.
//! - Assistant `tool_calls` → `tool_use` blocks whose `input` is the parsed arguments
//!   (`""` → `{}`; anything but a JSON object is a 400). `thinking_blocks` on an
//!   assistant message are replayed first, as Anthropic requires.
//! - Tool-call ids outside `[a-zA-Z0-9_-]` are rewritten deterministically, the same
//!   way on `tool_use` and `tool_result`.
//! - `cache_control` on a content part, a message (→ its last block) or a tool
//!   (top level or inside `function`) is forwarded as is.
//! - `response_format: json_object` (Anthropic has no JSON mode without a schema):
//!   a tool [`JSON_TOOL`] whose input schema is any object is offered and forced
//!   (`tool_choice: tool`; `any` next to the client's own tools, so the model either
//!   calls one of them or answers through it); the answer reads its input back as the
//!   message content. Not with thinking enabled (Anthropic refuses a forced tool then):
//!   a 400 naming `response_format`, unless `drop_unsupported`.
//! - Parameters Anthropic cannot express: a hint ([`modelway_core::translate::HINTS`])
//!   is dropped and reported; anything else is a 400 naming it, or dropped and
//!   reported with `drop_unsupported`. The provider docs (`lib.rs`) have the table.
//! - Lossy by design, documented here: `name` on messages is dropped; a final
//!   assistant message is sent as is, and Anthropic continues it (prefill);
//!   `reasoning_effort` becomes a `thinking` budget (minimal 1024 … max 63999 tokens,
//!   kept below the client's `max_completion_tokens`); `response_format` json_schema
//!   becomes `output_config.format` (its `name`/`description` have no place);
//!   Anthropic-native fields (`top_k`, `thinking`, `output_config`, `cache_control`,
//!   …) sent as extensions are forwarded unchanged.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;

use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use modelway_core::chat::{
    ChatRequest, ContentPart, Message, MessageContent, PartType, ResponseFormatType, Role, Tool,
    ToolChoice, ToolChoiceMode,
};
use modelway_core::http_client::upstream_request;
use modelway_core::translate::{invalid, split_data_url, Unsupported};
use modelway_core::{Attempt, ClientDialect, ProviderError};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::AnthropicProvider;

/// Per-provider translation settings.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) provider: String,
    pub(crate) default_max_tokens: u64,
    pub(crate) drop_unsupported: bool,
}

/// A translated request.
#[derive(Debug)]
pub(crate) struct Translated {
    pub(crate) body: Vec<u8>,
    /// Parameters dropped: hints, and more under `drop_unsupported`.
    pub(crate) dropped: Vec<String>,
    /// `json_object` goes through [`JSON_TOOL`]: its input is the answer's content.
    pub(crate) json_mode: bool,
}

/// The tool a `response_format: json_object` request is answered through. Its input
/// is the JSON object the client asked for; it never reaches the client as a call.
pub(crate) const JSON_TOOL: &str = "json_response";

/// What the model reads about [`JSON_TOOL`].
const JSON_TOOL_DESCRIPTION: &str = "Give your whole reply through this tool: its input \
    is the JSON object the conversation asks for, exactly as it should be returned.";

/// Request fields that belong to the gateway (OpenRouter's routing dialect), consumed
/// before a provider is called; never an upstream parameter.
const GATEWAY_FIELDS: &[&str] = &["models", "provider", "usage", "transforms", "route"];

/// Anthropic-native fields a client may send as extensions; forwarded unchanged.
const NATIVE_FIELDS: &[&str] = &[
    "top_k",
    "container",
    "inference_geo",
    "cache_control",
    "context_management",
    "mcp_servers",
];

/// Thinking budgets for `reasoning_effort` (Anthropic's `thinking.budget_tokens`
/// minimum is 1024).
const EFFORT_BUDGETS: &[(&str, u64)] = &[
    ("minimal", 1024),
    ("low", 2048),
    ("medium", 8192),
    ("high", 16384),
    ("xhigh", 32768),
    ("max", 63999),
];

const MIN_THINKING_BUDGET: u64 = 1024;

// ---------------------------------------------------------------------------------
// The upstream body.

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'a>>,
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolDef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Cow<'a, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(flatten)]
    native: BTreeMap<&'a str, &'a Value>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    user_id: &'a str,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Image {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Document {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: &'a str,
        input: Input<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    ToolResult {
        tool_use_id: Cow<'a, str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        content: Vec<Block<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    /// A block replayed as the client holds it (signed thinking).
    #[serde(untagged)]
    Raw(Value),
}

impl<'a> Block<'a> {
    fn set_cache_control(&mut self, cc: &'a Value) {
        match self {
            Block::Text { cache_control, .. }
            | Block::Image { cache_control, .. }
            | Block::Document { cache_control, .. }
            | Block::ToolUse { cache_control, .. }
            | Block::ToolResult { cache_control, .. } => *cache_control = Some(cc),
            // Thinking blocks cannot be cached.
            Block::Raw(_) => {}
        }
    }

    fn is_tool_result(&self) -> bool {
        matches!(self, Block::ToolResult { .. })
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

#[derive(Serialize)]
struct ToolDef<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Cow<'a, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<&'a Value>,
}

#[derive(Serialize)]
struct ToolChoiceOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<bool>,
}

// ---------------------------------------------------------------------------------
// Loudness.

/// Collects what cannot be expressed: the first one fails the request, unless the
/// provider drops them.
/// The provider's `drop_unsupported` rule, applied during one translation.
struct Loud<'o> {
    params: Unsupported<'o>,
}

impl<'o> Loud<'o> {
    fn new(opts: &'o Options) -> Self {
        Self {
            params: Unsupported::new(&opts.provider, "Anthropic", opts.drop_unsupported),
        }
    }

    /// `Ok(())` when the parameter is dropped (and recorded), else the 400.
    fn unsupported(&mut self, param: &str, why: &str) -> Result<(), ProviderError> {
        self.params.reject_or_drop(param, why)
    }
}

// ---------------------------------------------------------------------------------
// Translation.

/// Translates `req` into the upstream body naming `model` (the upstream's, not
/// `req.model`, which is the client's).
pub(crate) fn translate<'a>(
    req: &'a ChatRequest,
    model: &'a str,
    opts: &Options,
    stream: bool,
) -> Result<Translated, ProviderError> {
    let mut loud = Loud::new(opts);
    let (system, messages) = messages(&req.messages, &mut loud)?;
    let mut body = Body {
        model,
        max_tokens: 0,
        system,
        messages,
        stop_sequences: None,
        temperature: None,
        top_p: req.top_p,
        metadata: None,
        tools: Vec::new(),
        tool_choice: None,
        thinking: None,
        output_config: None,
        service_tier: None,
        stream: stream.then_some(true),
        native: BTreeMap::new(),
    };
    parameters(req, &mut body, &mut loud)?;
    tools(req, &mut body, &mut loud)?;
    let requested_max = req.max_completion_tokens.or(req.max_tokens);
    body.max_tokens = requested_max.unwrap_or(opts.default_max_tokens);
    thinking(req, &mut body, requested_max)?;
    output_config(req, &mut body, &mut loud)?;
    let json_mode = json_mode(req, &mut body, &mut loud)?;
    extras(req, &mut body, &mut loud)?;
    let bytes = serde_json::to_vec(&body).map_err(|e| ProviderError::InvalidRequest {
        message: format!("request cannot be serialised: {e}"),
        param: None,
    })?;
    Ok(Translated {
        body: bytes,
        dropped: loud.params.into_dropped(),
        json_mode,
    })
}

fn parameters<'a>(
    req: &'a ChatRequest,
    body: &mut Body<'a>,
    loud: &mut Loud<'_>,
) -> Result<(), ProviderError> {
    if let Some(t) = req.temperature {
        if (0.0..=1.0).contains(&t) {
            body.temperature = Some(t);
        } else {
            loud.unsupported("temperature", "Anthropic accepts 0 to 1")?;
            // Dropped: clamp into Anthropic's range rather than lose the intent.
            body.temperature = Some(t.clamp(0.0, 1.0));
        }
    }
    if let Some(stop) = &req.stop {
        let seqs: Vec<&str> = match stop {
            modelway_core::chat::Stop::One(s) => vec![s.as_str()],
            modelway_core::chat::Stop::Many(v) => v.iter().map(String::as_str).collect(),
        };
        if !seqs.is_empty() {
            body.stop_sequences = Some(seqs);
        }
    }
    if req.n.is_some_and(|n| n > 1) {
        loud.unsupported("n", "Anthropic returns one choice per request")?;
    }
    if req.logprobs == Some(true) {
        loud.unsupported("logprobs", "Anthropic returns no log probabilities")?;
    }
    if req.top_logprobs.is_some_and(|n| n > 0) {
        loud.unsupported("top_logprobs", "Anthropic returns no log probabilities")?;
    }
    if req.seed.is_some() {
        loud.unsupported("seed", "Anthropic has no sampling seed")?;
    }
    if req.presence_penalty.is_some_and(|p| p != 0.0) {
        loud.unsupported("presence_penalty", "Anthropic has no penalties")?;
    }
    if req.frequency_penalty.is_some_and(|p| p != 0.0) {
        loud.unsupported("frequency_penalty", "Anthropic has no penalties")?;
    }
    if req.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        loud.unsupported("logit_bias", "Anthropic has no token biases")?;
    }
    let safety_id = req.extra.get("safety_identifier").and_then(Value::as_str);
    if let Some(user) = req.user.as_deref().or(safety_id) {
        body.metadata = Some(Metadata { user_id: user });
    }
    if req.user.is_some() && safety_id.is_some() {
        // One `user_id` only: `user` went, the other is dropped.
        loud.params.drop_hint("safety_identifier");
    }
    Ok(())
}

fn tools<'a>(
    req: &'a ChatRequest,
    body: &mut Body<'a>,
    loud: &mut Loud<'_>,
) -> Result<(), ProviderError> {
    static EMPTY_SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    for tool in req.tools.iter().flatten() {
        match (tool.kind.as_str(), &tool.function) {
            ("function", Some(f)) => {
                body.tools.push(ToolDef {
                    name: &f.name,
                    description: f.description.as_deref(),
                    input_schema: match &f.parameters {
                        Some(p) => Cow::Borrowed(p),
                        None => Cow::Borrowed(EMPTY_SCHEMA.get_or_init(
                            || serde_json::json!({"type": "object", "properties": {}}),
                        )),
                    },
                    strict: f.strict,
                    cache_control: tool_cache_control(tool),
                })
            }
            (kind, _) => loud.unsupported(
                "tools",
                &format!("only function tools can be offered, not `{kind}` tools"),
            )?,
        }
    }
    if body.tools.is_empty() {
        // Without tools, `tool_choice` and `parallel_tool_calls` mean nothing.
        return Ok(());
    }
    let disable_parallel = (req.parallel_tool_calls == Some(false)).then_some(true);
    let choice = match &req.tool_choice {
        None | Some(ToolChoice::Mode(ToolChoiceMode::Auto)) => {
            disable_parallel.map(|d| ToolChoiceOut {
                kind: "auto",
                name: None,
                disable_parallel_tool_use: Some(d),
            })
        }
        Some(ToolChoice::Mode(ToolChoiceMode::None)) => Some(ToolChoiceOut {
            kind: "none",
            name: None,
            disable_parallel_tool_use: None,
        }),
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) => Some(ToolChoiceOut {
            kind: "any",
            name: None,
            disable_parallel_tool_use: disable_parallel,
        }),
        Some(c @ ToolChoice::Object(o)) => match c.forced_function() {
            Some(name) if o.get("type").and_then(Value::as_str) != Some("custom") => {
                Some(ToolChoiceOut {
                    kind: "tool",
                    name: Some(name),
                    disable_parallel_tool_use: disable_parallel,
                })
            }
            _ => {
                loud.unsupported(
                    "tool_choice",
                    "only \"none\", \"auto\", \"required\" or a named function",
                )?;
                None
            }
        },
        Some(ToolChoice::Mode(other)) => {
            loud.unsupported("tool_choice", &format!("unknown mode `{other}`"))?;
            None
        }
    };
    body.tool_choice = choice;
    Ok(())
}

fn tool_cache_control(tool: &Tool) -> Option<&Value> {
    tool.extra
        .get("cache_control")
        .or_else(|| tool.function.as_ref()?.extra.get("cache_control"))
        .filter(|v| !v.is_null())
}

/// `reasoning_effort` → `thinking` (a client-sent `thinking` wins).
fn thinking<'a>(
    req: &'a ChatRequest,
    body: &mut Body<'a>,
    requested_max: Option<u64>,
) -> Result<(), ProviderError> {
    if let Some(t) = req.extra.get("thinking").filter(|v| !v.is_null()) {
        body.thinking = Some(Cow::Borrowed(t));
        return Ok(());
    }
    let Some(effort) = req.reasoning_effort.as_deref() else {
        return Ok(());
    };
    if effort == "none" {
        return Ok(());
    }
    let Some(&(_, budget)) = EFFORT_BUDGETS.iter().find(|(e, _)| *e == effort) else {
        return Err(invalid(
            "reasoning_effort",
            format!("unknown reasoning_effort `{effort}`: use none, minimal, low, medium, high, xhigh or max"),
        ));
    };
    let budget = match requested_max {
        // The client bounded the answer: thinking must leave room inside it.
        Some(max) if max <= MIN_THINKING_BUDGET => {
            return Err(invalid(
                "reasoning_effort",
                format!(
                    "Anthropic thinking needs max_completion_tokens above {MIN_THINKING_BUDGET} (got {max})"
                ),
            ))
        }
        Some(max) if budget >= max => (max / 2).max(MIN_THINKING_BUDGET),
        Some(_) => budget,
        None => {
            // No bound from the client: the default answer length comes on top.
            body.max_tokens = body.max_tokens.saturating_add(budget);
            budget
        }
    };
    body.thinking = Some(Cow::Owned(
        serde_json::json!({"type": "enabled", "budget_tokens": budget}),
    ));
    Ok(())
}

/// `response_format` json_schema → `output_config.format`, merged with a client-sent
/// `output_config`.
fn output_config(
    req: &ChatRequest,
    body: &mut Body<'_>,
    loud: &mut Loud<'_>,
) -> Result<(), ProviderError> {
    let mut config = match req.extra.get("output_config") {
        Some(Value::Object(o)) => Some(o.clone()),
        Some(Value::Null) | None => None,
        Some(_) => {
            return Err(invalid(
                "output_config",
                "`output_config` must be an object",
            ))
        }
    };
    if let Some(rf) = &req.response_format {
        match &rf.kind {
            ResponseFormatType::Text => {}
            ResponseFormatType::JsonSchema => {
                let Some(schema) = rf.json_schema.as_ref().and_then(|j| j.schema.as_ref()) else {
                    return Err(invalid(
                        "response_format",
                        "`response_format.json_schema.schema` is required",
                    ));
                };
                config.get_or_insert_with(Default::default).insert(
                    "format".into(),
                    serde_json::json!({"type": "json_schema", "schema": schema}),
                );
            }
            // Through a forced tool: see `json_mode`.
            ResponseFormatType::JsonObject => {}
            ResponseFormatType::Other(t) => {
                loud.unsupported("response_format", &format!("unknown type `{t}`"))?
            }
        }
    }
    body.output_config = config.map(Value::Object);
    Ok(())
}

/// `response_format: json_object` → [`JSON_TOOL`], forced; whether it was offered.
/// A turn the client forces to call one of its own tools (`required`, a named
/// function) answers with that call, not JSON: no JSON tool then.
fn json_mode<'a>(
    req: &'a ChatRequest,
    body: &mut Body<'a>,
    loud: &mut Loud<'_>,
) -> Result<bool, ProviderError> {
    static ANY_OBJECT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let wanted = req
        .response_format
        .as_ref()
        .is_some_and(|rf| matches!(rf.kind, ResponseFormatType::JsonObject));
    if !wanted {
        return Ok(false);
    }
    let thinking = body
        .thinking
        .as_deref()
        .is_some_and(|t| t.get("type").and_then(Value::as_str) != Some("disabled"));
    if thinking {
        loud.unsupported(
            "response_format",
            "`json_object` is answered through a forced tool, which Anthropic refuses \
             while thinking is enabled; use `json_schema`, or drop `reasoning_effort`",
        )?;
        return Ok(false);
    }
    if body.tools.iter().any(|t| t.name == JSON_TOOL) {
        return Err(invalid(
            "tools",
            format!("a tool may not be named `{JSON_TOOL}` with `response_format: json_object` (modelway answers JSON mode through a tool of that name)"),
        ));
    }
    let choice = match &body.tool_choice {
        _ if body.tools.is_empty() => ToolChoiceOut {
            kind: "tool",
            name: Some(JSON_TOOL),
            disable_parallel_tool_use: None,
        },
        // `auto`: a call of the client's tools, or the answer.
        None => ToolChoiceOut {
            kind: "any",
            name: None,
            disable_parallel_tool_use: None,
        },
        Some(c) if c.kind == "auto" => ToolChoiceOut {
            kind: "any",
            name: None,
            disable_parallel_tool_use: c.disable_parallel_tool_use,
        },
        Some(c) if c.kind == "none" => ToolChoiceOut {
            kind: "tool",
            name: Some(JSON_TOOL),
            disable_parallel_tool_use: None,
        },
        Some(_) => return Ok(false),
    };
    body.tools.push(ToolDef {
        name: JSON_TOOL,
        description: Some(JSON_TOOL_DESCRIPTION),
        input_schema: Cow::Borrowed(
            ANY_OBJECT.get_or_init(
                || serde_json::json!({"type": "object", "additionalProperties": true}),
            ),
        ),
        strict: None,
        cache_control: None,
    });
    body.tool_choice = Some(choice);
    Ok(true)
}

/// Unknown top-level fields: Anthropic-native ones are forwarded, gateway ones
/// ignored, the rest are OpenAI parameters Anthropic cannot express (hints dropped).
fn extras<'a>(
    req: &'a ChatRequest,
    body: &mut Body<'a>,
    loud: &mut Loud<'_>,
) -> Result<(), ProviderError> {
    for (key, value) in &req.extra {
        let key = key.as_str();
        if value.is_null()
            || GATEWAY_FIELDS.contains(&key)
            || matches!(key, "thinking" | "output_config" | "safety_identifier")
        {
            continue;
        }
        if NATIVE_FIELDS.contains(&key) {
            body.native.insert(key, value);
            continue;
        }
        match (key, value) {
            ("store", Value::Bool(false)) => {}
            // Text out is what Anthropic gives anyway.
            ("modalities", Value::Array(m)) if m.iter().all(|x| x == "text") => {}
            ("service_tier", Value::String(t)) => match t.as_str() {
                "auto" | "standard_only" => body.service_tier = Some(t),
                "default" => body.service_tier = Some("standard_only"),
                _ => loud.unsupported(
                    "service_tier",
                    "Anthropic knows only `auto` and `standard_only`",
                )?,
            },
            ("metadata", Value::Object(m))
                if m.len() == 1 && m.get("user_id").is_some_and(Value::is_string) =>
            {
                if body.metadata.is_none() {
                    body.metadata = m
                        .get("user_id")
                        .and_then(Value::as_str)
                        .map(|user_id| Metadata { user_id });
                } else {
                    // `user` already set the one `user_id`.
                    loud.params.drop_hint("metadata");
                }
            }
            _ => loud.unsupported(key, "Anthropic has no such parameter")?,
        }
    }
    Ok(())
}

/// The upstream `system` blocks and turns.
fn messages<'a>(
    msgs: &'a [Message],
    loud: &mut Loud<'_>,
) -> Result<(Vec<Block<'a>>, Vec<Turn<'a>>), ProviderError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn<'a>> = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let msg_cc = m.extra.get("cache_control").filter(|v| !v.is_null());
        match &m.role {
            Role::System | Role::Developer => {
                let start = system.len();
                text_blocks(m, i, &mut system, loud)?;
                if let (Some(cc), true) = (msg_cc, system.len() > start) {
                    if let Some(last) = system.last_mut() {
                        last.set_cache_control(cc);
                    }
                }
            }
            Role::User => {
                let mut blocks = Vec::new();
                user_blocks(m, i, &mut blocks, loud)?;
                push_turn(&mut turns, "user", blocks, msg_cc);
            }
            Role::Tool => {
                let block = tool_result(m, i)?;
                push_turn(&mut turns, "user", vec![block], msg_cc);
            }
            Role::Assistant => {
                let blocks = assistant_blocks(m, i)?;
                push_turn(&mut turns, "assistant", blocks, msg_cc);
            }
            other => {
                return Err(invalid(
                    format!("messages[{i}].role"),
                    format!("role `{other}` cannot be sent to Anthropic"),
                ))
            }
        }
    }
    Ok((system, turns))
}

/// Appends `blocks` as a turn, merging into the previous turn of the same role.
/// `tool_result` blocks go before the other blocks of a user turn.
fn push_turn<'a>(
    turns: &mut Vec<Turn<'a>>,
    role: &'static str,
    mut blocks: Vec<Block<'a>>,
    cache_control: Option<&'a Value>,
) {
    if blocks.is_empty() {
        return;
    }
    if let (Some(cc), Some(last)) = (cache_control, blocks.last_mut()) {
        last.set_cache_control(cc);
    }
    match turns.last_mut() {
        Some(t) if t.role == role => {
            for b in blocks {
                if b.is_tool_result() {
                    let at = t.content.iter().take_while(|b| b.is_tool_result()).count();
                    t.content.insert(at, b);
                } else {
                    t.content.push(b);
                }
            }
        }
        _ => {
            if role == "user" {
                // Keep tool results first within a fresh turn too.
                blocks.sort_by_key(|b| !b.is_tool_result());
            }
            turns.push(Turn {
                role,
                content: blocks,
            })
        }
    }
}

/// Non-blank text, or nothing (Anthropic rejects empty and whitespace-only text).
fn non_blank(s: &str) -> Option<&str> {
    (!s.trim().is_empty()).then_some(s)
}

fn part_cache_control(p: &ContentPart) -> Option<&Value> {
    static EPHEMERAL: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    match p.extra.get("cache_control").filter(|v| !v.is_null()) {
        Some(cc) => Some(cc),
        // OpenAI's newer explicit cache breakpoint means the same thing.
        None => p
            .extra
            .get("prompt_cache_breakpoint")
            .filter(|v| !v.is_null())
            .map(|_| EPHEMERAL.get_or_init(|| serde_json::json!({"type": "ephemeral"}))),
    }
}

/// Text-only content (system, developer) → text blocks.
fn text_blocks<'a>(
    m: &'a Message,
    i: usize,
    out: &mut Vec<Block<'a>>,
    loud: &mut Loud<'_>,
) -> Result<(), ProviderError> {
    match &m.content {
        None => {}
        Some(MessageContent::Text(s)) => {
            if let Some(text) = non_blank(s) {
                out.push(Block::Text {
                    text,
                    cache_control: None,
                });
            }
        }
        Some(MessageContent::Parts(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                match (&p.kind, p.text.as_deref()) {
                    (PartType::Text, Some(t)) => {
                        if let Some(text) = non_blank(t) {
                            out.push(Block::Text {
                                text,
                                cache_control: part_cache_control(p),
                            });
                        }
                    }
                    (kind, _) => loud.unsupported(
                        &format!("messages[{i}].content[{j}]"),
                        &format!("a {} message can hold only text, not `{kind}`", m.role),
                    )?,
                }
            }
        }
    }
    Ok(())
}

fn user_blocks<'a>(
    m: &'a Message,
    i: usize,
    out: &mut Vec<Block<'a>>,
    loud: &mut Loud<'_>,
) -> Result<(), ProviderError> {
    let Some(MessageContent::Parts(parts)) = &m.content else {
        return text_blocks(m, i, out, loud);
    };
    for (j, p) in parts.iter().enumerate() {
        let cache_control = part_cache_control(p);
        let at = || format!("messages[{i}].content[{j}]");
        match &p.kind {
            PartType::Text => {
                if let Some(text) = p.text.as_deref().and_then(non_blank) {
                    out.push(Block::Text {
                        text,
                        cache_control,
                    });
                }
            }
            PartType::ImageUrl => {
                let Some(img) = &p.image_url else {
                    return Err(invalid(at(), "an image_url part needs `image_url.url`"));
                };
                out.push(Block::Image {
                    source: image_source(&img.url).map_err(|m| invalid(at(), m))?,
                    cache_control,
                });
            }
            PartType::File => {
                let file = p.file.as_ref();
                let data = file.and_then(|f| f.file_data.as_deref());
                let name = file.and_then(|f| f.filename.as_deref());
                match data.map(|d| split_data_url(d).unwrap_or(("", d))) {
                    Some((mime, data))
                        if mime == "application/pdf"
                            || (mime.is_empty()
                                && name
                                    .is_some_and(|n| n.to_ascii_lowercase().ends_with(".pdf"))) =>
                    {
                        out.push(Block::Document {
                            source: Source::Base64 {
                                media_type: "application/pdf",
                                data,
                            },
                            title: name,
                            cache_control,
                        })
                    }
                    _ => loud.unsupported(
                        &at(),
                        "only inline PDF files (`file.file_data`) can be sent to Anthropic",
                    )?,
                }
            }
            kind => loud.unsupported(
                &at(),
                &format!("content parts of type `{kind}` cannot be sent to Anthropic"),
            )?,
        }
    }
    Ok(())
}

fn image_source(url: &str) -> Result<Source<'_>, String> {
    const TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];
    if url.starts_with("data:") {
        let Some((mime, data)) = split_data_url(url) else {
            return Err("an image data URL must be `data:<type>;base64,<data>`".into());
        };
        let Some(media_type) = TYPES.iter().find(|t| t.eq_ignore_ascii_case(mime)) else {
            return Err(format!(
                "Anthropic accepts images of type {}, not `{mime}`",
                TYPES.join(", ")
            ));
        };
        return Ok(Source::Base64 { media_type, data });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Source::Url { url });
    }
    Err("an image URL must be http(s) or a base64 data URL".into())
}

fn tool_result(m: &Message, i: usize) -> Result<Block<'_>, ProviderError> {
    let Some(id) = m.tool_call_id.as_deref() else {
        return Err(invalid(
            format!("messages[{i}].tool_call_id"),
            "a tool message needs `tool_call_id`",
        ));
    };
    let mut content = Vec::new();
    match &m.content {
        None => {}
        Some(MessageContent::Text(s)) => {
            if let Some(text) = non_blank(s) {
                content.push(Block::Text {
                    text,
                    cache_control: None,
                });
            }
        }
        Some(MessageContent::Parts(parts)) => {
            for p in parts {
                if let Some(text) = p.text.as_deref().and_then(non_blank) {
                    content.push(Block::Text {
                        text,
                        cache_control: part_cache_control(p),
                    });
                }
            }
        }
    }
    Ok(Block::ToolResult {
        tool_use_id: tool_id(id),
        content,
        is_error: m.extra.get("is_error").and_then(Value::as_bool),
        cache_control: None,
    })
}

fn assistant_blocks(m: &Message, i: usize) -> Result<Vec<Block<'_>>, ProviderError> {
    let mut out = Vec::new();
    // Signed thinking first: Anthropic rejects a tool-use turn of a thinking
    // conversation that does not start with it.
    if let Some(Value::Array(blocks)) = m.extra.get("thinking_blocks") {
        for b in blocks {
            let Value::Object(o) = b else { continue };
            let kind = o.get("type").and_then(Value::as_str);
            if !matches!(kind, Some("thinking" | "redacted_thinking")) {
                continue;
            }
            let mut o = o.clone();
            // `index` is ours (stream accumulators key list entries on it).
            o.remove("index");
            out.push(Block::Raw(Value::Object(o)));
        }
    }
    match &m.content {
        None => {}
        Some(MessageContent::Text(s)) => {
            if let Some(text) = non_blank(s) {
                out.push(Block::Text {
                    text,
                    cache_control: None,
                });
            }
        }
        Some(MessageContent::Parts(parts)) => {
            for p in parts {
                let text = match p.kind {
                    PartType::Refusal => p.refusal.as_deref(),
                    _ => p.text.as_deref(),
                };
                if let Some(text) = text.and_then(non_blank) {
                    out.push(Block::Text {
                        text,
                        cache_control: part_cache_control(p),
                    });
                }
            }
        }
    }
    if let Some(text) = m.refusal.as_deref().and_then(non_blank) {
        out.push(Block::Text {
            text,
            cache_control: None,
        });
    }
    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
        let args = call.function.arguments.trim();
        let input = if args.is_empty() {
            Input::Empty
        } else {
            match serde_json::from_str::<&RawValue>(args) {
                Ok(raw) if raw.get().starts_with('{') => Input::Raw(raw),
                _ => {
                    return Err(invalid(
                        format!("messages[{i}].tool_calls[{j}].function.arguments"),
                        format!(
                        "tool call `{}` arguments must be a JSON object to be sent to Anthropic",
                        call.id
                    ),
                    ))
                }
            }
        };
        out.push(Block::ToolUse {
            id: tool_id(&call.id),
            name: &call.function.name,
            input,
            cache_control: call.extra.get("cache_control").filter(|v| !v.is_null()),
        });
    }
    Ok(out)
}

/// A `tool_use` input: the client's arguments as they are, or `{}` for none.
enum Input<'a> {
    Raw(&'a RawValue),
    Empty,
}

impl Serialize for Input<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Input::Raw(r) => r.serialize(s),
            Input::Empty => serde::ser::SerializeMap::end(s.serialize_map(Some(0))?),
        }
    }
}

/// A tool-call id as Anthropic accepts it (`^[a-zA-Z0-9_-]+$`): valid ids unchanged;
/// others get their invalid characters replaced by `_` plus a hash of the original,
/// so two different ids never collide and the same id always maps the same way.
pub(crate) fn tool_id(id: &str) -> Cow<'_, str> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !id.is_empty() && id.chars().all(valid) {
        return Cow::Borrowed(id);
    }
    // FNV-1a, 64 bit: stable across runs and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let cleaned: String = id.chars().map(|c| if valid(c) { c } else { '_' }).collect();
    Cow::Owned(format!("{cleaned}_{hash:016x}"))
}

// ---------------------------------------------------------------------------------
// HTTP.

const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

/// Every request's own headers: the API version, the key, the betas.
/// A client's own key (`attempt`'s, where the provider allows one) replaces ours.
fn anthropic_headers(
    p: &AnthropicProvider,
    attempt: Option<&Attempt<'_>>,
    h: &mut http::HeaderMap,
) {
    // A Messages client's own `anthropic-version` and `anthropic-beta` go upstream with
    // its bytes: they say how to read them. Configured betas are added to the client's.
    let native = attempt.filter(|a| a.native_body(ClientDialect::Messages).is_some());
    let version = native.and_then(|a| a.header("anthropic-version"));
    h.insert(ANTHROPIC_VERSION, version.unwrap_or(&p.version).clone());
    let client = attempt.and_then(|a| a.client_key_header(""));
    if let Some(key) = client.or_else(|| p.api_key.clone()) {
        h.insert(X_API_KEY, key);
    }
    let client_beta = attempt.and_then(|a| a.header("anthropic-beta"));
    let beta = match (client_beta, &p.beta) {
        (Some(c), Some(ours)) => {
            let (c, o) = (
                c.to_str().unwrap_or_default(),
                ours.to_str().unwrap_or_default(),
            );
            let mut names: Vec<&str> = c
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            for name in o.split(',').map(str::trim) {
                if !name.is_empty() && !names.contains(&name) {
                    names.push(name);
                }
            }
            HeaderValue::from_str(&names.join(",")).ok()
        }
        (Some(c), None) => Some(c.clone()),
        (None, ours) => ours.clone(),
    };
    if let Some(beta) = beta {
        h.insert(ANTHROPIC_BETA, beta);
    }
}

/// What a request's translation remembers for reading its answer.
pub struct Plan {
    /// The parameters the translation dropped.
    pub(crate) dropped: Vec<String>,
    /// How to read the answer: [`crate::stream::Reading::Native`] when the client's Messages
    /// body went as it came (its answer goes back the same way).
    pub(crate) reading: crate::stream::Reading,
}

/// The upstream `POST …/v1/messages` request.
pub(crate) fn build(
    p: &AnthropicProvider,
    body: Vec<u8>,
    attempt: &Attempt<'_>,
    stream: bool,
) -> Request<Full<Bytes>> {
    upstream_request(
        Method::POST,
        p.messages_url.clone(),
        Some(Bytes::from(body)),
        stream,
        Some(attempt),
        &p.headers,
        |h| anthropic_headers(p, Some(attempt), h),
    )
}

/// The upstream `GET …/v1/models` request.
pub(crate) fn models(p: &AnthropicProvider) -> Request<Full<Bytes>> {
    upstream_request(
        Method::GET,
        p.models_url.clone(),
        None,
        false,
        None::<&Attempt<'_>>,
        &p.headers,
        |h| anthropic_headers(p, None, h),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn opts(drop: bool) -> Options {
        Options {
            provider: "claude".into(),
            default_max_tokens: 4096,
            drop_unsupported: drop,
        }
    }

    fn run(req: Value, drop: bool) -> Result<(Value, Vec<String>), ProviderError> {
        let req: ChatRequest = serde_json::from_value(req).expect("a ChatRequest");
        let t = translate(&req, &req.model, &opts(drop), false)?;
        Ok((serde_json::from_slice(&t.body).unwrap(), t.dropped))
    }

    fn body(req: Value) -> Value {
        run(req, false).unwrap_or_else(|e| panic!("{e}")).0
    }

    fn with(extra: Value) -> Value {
        let mut r = json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    }

    #[test]
    fn the_body_names_the_upstream_model_not_the_clients() {
        let req: ChatRequest = serde_json::from_value(with(json!({}))).unwrap();
        let t = translate(&req, "claude-upstream", &opts(false), false).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["model"], "claude-upstream");
    }

    #[test]
    fn parameter_table() {
        // (what the client sends besides model + one user "hi", JSON pointer, expected)
        let rows: Vec<(Value, &str, Value)> = vec![
            (json!({}), "/max_tokens", json!(4096)),
            (json!({"max_tokens": 50}), "/max_tokens", json!(50)),
            (
                json!({"max_tokens": 50, "max_completion_tokens": 70}),
                "/max_tokens",
                json!(70),
            ),
            (json!({"temperature": 0.3}), "/temperature", json!(0.3)),
            (json!({"top_p": 0.9}), "/top_p", json!(0.9)),
            (json!({"stop": "END"}), "/stop_sequences", json!(["END"])),
            (
                json!({"stop": ["a", "b"]}),
                "/stop_sequences",
                json!(["a", "b"]),
            ),
            (
                json!({"user": "u-1"}),
                "/metadata",
                json!({"user_id": "u-1"}),
            ),
            (
                json!({"safety_identifier": "s-1"}),
                "/metadata",
                json!({"user_id": "s-1"}),
            ),
            (json!({"n": 1, "logprobs": false}), "/n", Value::Null),
            (json!({"top_k": 5}), "/top_k", json!(5)),
            (
                json!({"service_tier": "auto"}),
                "/service_tier",
                json!("auto"),
            ),
            (
                json!({"service_tier": "default"}),
                "/service_tier",
                json!("standard_only"),
            ),
            (
                json!({"store": false, "models": ["a"]}),
                "/store",
                Value::Null,
            ),
            (
                json!({"reasoning_effort": "low"}),
                "/thinking",
                json!({"type": "enabled", "budget_tokens": 2048}),
            ),
            (
                json!({"reasoning_effort": "low"}),
                "/max_tokens",
                json!(4096 + 2048),
            ),
            (
                json!({"reasoning_effort": "high", "max_completion_tokens": 10000}),
                "/thinking/budget_tokens",
                json!(5000),
            ),
            (
                json!({"reasoning_effort": "none"}),
                "/thinking",
                Value::Null,
            ),
            (
                json!({"thinking": {"type": "adaptive"}, "reasoning_effort": "high"}),
                "/thinking",
                json!({"type": "adaptive"}),
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"}}}}),
                "/output_config",
                json!({"format": {"type": "json_schema", "schema": {"type": "object"}}}),
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"}}}, "output_config": {"effort": "low"}}),
                "/output_config/effort",
                json!("low"),
            ),
            (
                json!({"response_format": {"type": "text"}}),
                "/output_config",
                Value::Null,
            ),
            (json!({"stream": true}), "/stream", Value::Null),
        ];
        for (extra, ptr, want) in rows {
            let got = body(with(extra.clone()));
            assert_eq!(
                got.pointer(ptr).cloned().unwrap_or(Value::Null),
                want,
                "{extra} at {ptr}: body {got}"
            );
        }
    }

    #[test]
    fn unsupported_parameters_are_loud_or_dropped() {
        let rows: Vec<(Value, &str)> = vec![
            (json!({"n": 2}), "n"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"top_logprobs": 2}), "top_logprobs"),
            (json!({"seed": 7}), "seed"),
            (json!({"presence_penalty": 0.5}), "presence_penalty"),
            (json!({"frequency_penalty": 0.5}), "frequency_penalty"),
            (json!({"logit_bias": {"1": 2}}), "logit_bias"),
            (json!({"temperature": 1.5}), "temperature"),
            (
                json!({"audio": {"voice": "alloy", "format": "wav"}}),
                "audio",
            ),
            (json!({"modalities": ["text", "audio"]}), "modalities"),
            (
                json!({"response_format": {"type": "json_object"}, "reasoning_effort": "low"}),
                "response_format",
            ),
            (
                json!({"tools": [{"type": "custom", "custom": {"name": "g"}}]}),
                "tools",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f"}}],
                       "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}}),
                "tool_choice",
            ),
        ];
        for (extra, param) in rows {
            match run(with(extra.clone()), false) {
                Err(ProviderError::InvalidRequest {
                    param: Some(p),
                    message,
                }) => {
                    assert_eq!(p, param, "{extra}");
                    assert!(
                        message.contains(param) && message.contains("claude"),
                        "{message}"
                    );
                }
                other => panic!("{extra}: expected a 400 naming {param}, got {other:?}"),
            }
            let (_, dropped) = run(with(extra.clone()), true).unwrap();
            assert_eq!(dropped, vec![param.to_owned()], "{extra}");
        }
        let (b, dropped) = run(with(json!({"temperature": 1.7, "seed": 1})), true).unwrap();
        assert_eq!(b["temperature"], 1.0);
        assert_eq!(dropped, ["temperature", "seed"]);
    }

    #[test]
    fn hint_parameters_are_dropped_and_listed_even_without_drop_unsupported() {
        // (what the client sends, what is listed as dropped)
        let rows: Vec<(Value, &[&str])> = vec![
            (json!({"verbosity": "low"}), &["verbosity"]),
            (json!({"service_tier": "flex"}), &["service_tier"]),
            (json!({"service_tier": "priority"}), &["service_tier"]),
            (json!({"store": true}), &["store"]),
            (json!({"metadata": {"k": "v"}}), &["metadata"]),
            (
                json!({"prediction": {"type": "content", "content": "x"}}),
                &["prediction"],
            ),
            (json!({"prompt_cache_key": "k"}), &["prompt_cache_key"]),
            (
                json!({"prompt_cache_retention": "24h"}),
                &["prompt_cache_retention"],
            ),
            (
                json!({"user": "u", "safety_identifier": "s"}),
                &["safety_identifier"],
            ),
            (
                json!({"user": "u", "metadata": {"user_id": "m"}}),
                &["metadata"],
            ),
            (
                json!({"verbosity": "high", "store": true, "prompt_cache_key": "k"}),
                &["prompt_cache_key", "store", "verbosity"],
            ),
            // Mapped, so not dropped.
            (
                json!({"store": false, "service_tier": "auto", "modalities": ["text"]}),
                &[],
            ),
            (json!({"safety_identifier": "s"}), &[]),
        ];
        for (extra, want) in rows {
            for drop in [false, true] {
                let (b, dropped) = run(with(extra.clone()), drop)
                    .unwrap_or_else(|e| panic!("{extra}: a hint must not fail the request: {e}"));
                assert_eq!(dropped, want, "{extra} (drop_unsupported = {drop})");
                for hint in want {
                    if *hint != "metadata" {
                        assert!(b.get(*hint).is_none(), "{hint} sent: {b}");
                    }
                }
            }
        }
        let (b, _) = run(with(json!({"user": "u", "safety_identifier": "s"})), false).unwrap();
        assert_eq!(b["metadata"], json!({"user_id": "u"}));
    }

    #[test]
    fn json_object_is_a_forced_tool_whose_input_is_any_object() {
        let t = |extra: Value| {
            let req: ChatRequest = serde_json::from_value(with(extra)).unwrap();
            let t = translate(&req, "claude-x", &opts(false), false).unwrap();
            let b: Value = serde_json::from_slice(&t.body).unwrap();
            (b, t.json_mode)
        };
        let (b, json_mode) = t(json!({"response_format": {"type": "json_object"}}));
        assert!(json_mode);
        assert_eq!(
            b["tools"],
            json!([{"name": JSON_TOOL, "description": JSON_TOOL_DESCRIPTION,
                    "input_schema": {"type": "object", "additionalProperties": true}}])
        );
        assert_eq!(b["tool_choice"], json!({"type": "tool", "name": JSON_TOOL}));
        assert!(b.get("output_config").is_none(), "{b}");

        let f = json!([{"type": "function", "function": {"name": "f"}}]);
        // (tool_choice and parallel_tool_calls besides the client's tool f, the
        // upstream tool_choice, whether the JSON tool is offered)
        let rows: Vec<(Value, Value, bool)> = vec![
            (json!({}), json!({"type": "any"}), true),
            (json!({"tool_choice": "auto"}), json!({"type": "any"}), true),
            (
                json!({"parallel_tool_calls": false}),
                json!({"type": "any", "disable_parallel_tool_use": true}),
                true,
            ),
            (
                json!({"tool_choice": "none"}),
                json!({"type": "tool", "name": JSON_TOOL}),
                true,
            ),
            (
                json!({"tool_choice": "required"}),
                json!({"type": "any"}),
                false,
            ),
            (
                json!({"tool_choice": {"type": "function", "function": {"name": "f"}}}),
                json!({"type": "tool", "name": "f"}),
                false,
            ),
        ];
        for (extra, choice, offered) in rows {
            let mut e = extra.clone();
            e["tools"] = f.clone();
            e["response_format"] = json!({"type": "json_object"});
            let (b, json_mode) = t(e);
            assert_eq!(b["tool_choice"], choice, "{extra}");
            assert_eq!(json_mode, offered, "{extra}");
            let names: Vec<&str> = b["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap())
                .collect();
            let want: &[&str] = if offered { &["f", JSON_TOOL] } else { &["f"] };
            assert_eq!(names, want, "{extra}");
        }
        // json_schema keeps the native structured output.
        let (b, json_mode) = t(json!({"response_format": {"type": "json_schema",
            "json_schema": {"name": "p", "schema": {"type": "object"}}}}));
        assert!(!json_mode && b.get("tools").is_none());
        assert_eq!(b["output_config"]["format"]["type"], "json_schema");
        // A client tool of the JSON tool's name would be answered as content: refused.
        let clash = with(json!({"response_format": {"type": "json_object"},
            "tools": [{"type": "function", "function": {"name": JSON_TOOL}}]}));
        assert!(matches!(
            run(clash, true),
            Err(ProviderError::InvalidRequest { param: Some(p), .. }) if p == "tools"
        ));
    }

    #[test]
    fn client_errors_are_400s_even_when_dropping() {
        let rows: Vec<(Value, &str)> = vec![
            (json!({"reasoning_effort": "huge"}), "reasoning_effort"),
            (
                json!({"reasoning_effort": "low", "max_tokens": 500}),
                "reasoning_effort",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
                "response_format",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA"}}]}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].tool_call_id",
            ),
            (
                json!({"messages": [{"role": "critic", "content": "x"}]}),
                "messages[0].role",
            ),
        ];
        for (extra, param) in rows {
            for drop in [false, true] {
                match run(with(extra.clone()), drop) {
                    Err(ProviderError::InvalidRequest { param: Some(p), .. }) => {
                        assert_eq!(p, param, "{extra}")
                    }
                    other => panic!("{extra}: expected a 400 naming {param}, got {other:?}"),
                }
            }
        }
    }

    #[test]
    fn messages_translate_per_wire_rules() {
        let got = body(json!({"model": "m", "messages": [
            {"role": "system", "content": "sys one"},
            {"role": "developer", "content": [{"type": "text", "text": "dev", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "hi", "name": "ignored"},
            {"role": "user", "content": [
                {"type": "text", "text": ""},
                {"type": "text", "text": "  "},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://x/cat.jpg"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}}
            ]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "a", "arguments": ""}},
                {"id": "functions.weather:0", "type": "function", "function": {"name": "b", "arguments": "{\"x\": 1}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "one"},
            {"role": "tool", "tool_call_id": "functions.weather:0", "content": [{"type": "text", "text": "two"}]},
            {"role": "user", "content": "thanks"},
            {"role": "system", "content": "late system"}
        ]}));
        let id2 = tool_id("functions.weather:0").into_owned();
        assert!(id2.starts_with("functions_weather_0_"), "{id2}");
        let want = json!({
            "model": "m",
            "max_tokens": 4096,
            "system": [
                {"type": "text", "text": "sys one"},
                {"type": "text", "text": "dev", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "late system"}
            ],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x/cat.jpg"}},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}, "title": "a.pdf"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "a", "input": {}},
                    {"type": "tool_use", "id": id2, "name": "b", "input": {"x": 1}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "one"}]},
                    {"type": "tool_result", "tool_use_id": id2, "content": [{"type": "text", "text": "two"}]},
                    {"type": "text", "text": "thanks"}
                ]}
            ]
        });
        assert_eq!(got, want, "got {got:#}");
    }

    #[test]
    fn tool_results_come_before_user_text_in_a_merged_turn() {
        let got = body(json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
            {"role": "user", "content": "note"},
            {"role": "tool", "tool_call_id": "t1", "content": "r"}
        ]}));
        let kinds: Vec<_> = got["messages"][2]["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["tool_result", "text"]);
        assert_eq!(got["messages"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn tool_ids_are_stable_and_collision_free() {
        let rows = [
            "toolu_01A",
            "call-1",
            "functions.weather:0",
            "a.b",
            "a:b",
            "",
            "ü",
        ];
        let mut seen = std::collections::HashSet::new();
        for id in rows {
            let out = tool_id(id);
            assert_eq!(out, tool_id(id), "deterministic");
            assert!(
                !out.is_empty()
                    && out
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "{id} -> {out}"
            );
            assert!(seen.insert(out.into_owned()), "collision for {id}");
        }
        assert_eq!(tool_id("toolu_01A"), "toolu_01A");
    }

    #[test]
    fn tools_and_tool_choice_table() {
        let tools = json!([
            {"type": "function", "function": {"name": "a", "description": "A", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}, "strict": true}},
            {"type": "function", "function": {"name": "b"}, "cache_control": {"type": "ephemeral"}}
        ]);
        let got = body(with(json!({"tools": tools})));
        assert_eq!(
            got["tools"],
            json!([
                {"name": "a", "description": "A", "input_schema": {"type": "object", "properties": {"x": {"type": "string"}}}, "strict": true},
                {"name": "b", "input_schema": {"type": "object", "properties": {}}, "cache_control": {"type": "ephemeral"}}
            ])
        );
        let rows: Vec<(Value, Value)> = vec![
            (json!({}), Value::Null),
            (json!({"tool_choice": "auto"}), Value::Null),
            (json!({"tool_choice": "none"}), json!({"type": "none"})),
            (json!({"tool_choice": "required"}), json!({"type": "any"})),
            (
                json!({"tool_choice": {"type": "function", "function": {"name": "b"}}}),
                json!({"type": "tool", "name": "b"}),
            ),
            (
                json!({"parallel_tool_calls": false}),
                json!({"type": "auto", "disable_parallel_tool_use": true}),
            ),
            (
                json!({"parallel_tool_calls": false, "tool_choice": "required"}),
                json!({"type": "any", "disable_parallel_tool_use": true}),
            ),
            (
                json!({"parallel_tool_calls": false, "tool_choice": "none"}),
                json!({"type": "none"}),
            ),
            (json!({"parallel_tool_calls": true}), Value::Null),
        ];
        for (extra, want) in rows {
            let mut e = extra.clone();
            e["tools"] = tools.clone();
            let got = body(with(e));
            assert_eq!(got["tool_choice"], want, "{extra}");
        }
        // Without tools, tool_choice is not sent at all.
        let got = body(with(
            json!({"tool_choice": "none", "parallel_tool_calls": false}),
        ));
        assert!(got.get("tool_choice").is_none() && got.get("tools").is_none());
    }

    #[test]
    fn thinking_and_cache_control_round_trip_from_the_openai_shape() {
        let got = body(json!({"model": "m", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "q", "prompt_cache_breakpoint": {"mode": "explicit"}}]},
            {"role": "assistant", "content": "let me look",
             "reasoning_content": "hmm",
             "thinking_blocks": [
                {"index": 0, "type": "thinking", "thinking": "hmm", "signature": "sig=="},
                {"index": 1, "type": "redacted_thinking", "data": "opaque"}
             ],
             "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "r", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ]}));
        assert_eq!(
            got["messages"][0]["content"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(
            got["messages"][1]["content"],
            json!([
                {"type": "thinking", "thinking": "hmm", "signature": "sig=="},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "let me look"},
                {"type": "tool_use", "id": "t1", "name": "a", "input": {}}
            ])
        );
        assert_eq!(
            got["messages"][2]["content"][0]["cache_control"],
            json!({"type": "ephemeral", "ttl": "1h"})
        );
    }

    #[test]
    fn empty_assistant_turns_and_blank_text_are_never_sent() {
        let got = body(json!({"model": "m", "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "b"},
            {"role": "system", "content": ""}
        ]}));
        assert!(got.get("system").is_none(), "{got}");
        assert_eq!(
            got["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
        );
    }
}
