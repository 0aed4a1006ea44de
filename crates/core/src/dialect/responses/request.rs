//! `CreateResponse` body → canonical [`ChatRequest`] (rules in the parent module's docs).

use serde::Serialize;
use serde_json::{Map, Value};

use super::CARRY_PREFIX;
use crate::chat::{
    ChatRequest, ContentPart, FileData, FunctionCall, FunctionDef, ImageUrl, InputAudio,
    JsonSchemaFormat, Message, MessageContent, PartType, ResponseFormat, ResponseFormatType, Role,
    StreamOptions, Tool, ToolCall, ToolChoice, ToolChoiceMode,
};
use crate::error::GatewayError;

/// A decoded `POST /v1/responses` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The canonical request, routable to any provider (best effort when `stateful` is
    /// not empty: what needs OpenAI is left out of it).
    pub request: ChatRequest,
    /// Features that need server-side state or OpenAI-hosted tools, by their field name
    /// (`previous_response_id`, `store` when true, `conversation`, `background`,
    /// `prompt`, `context_management`, `moderation`), tool or tool-choice type
    /// (`web_search`, `file_search`, `code_interpreter`, `computer_use_preview`,
    /// `image_generation`, `mcp`, `custom`, …), input item type (`item_reference`,
    /// `web_search_call`, …) or file reference (`file_id`, `file_url`), each once, in the
    /// order met. The handler answers 400 naming the first one unless it can forward the
    /// body to OpenAI itself.
    pub stateful: Vec<String>,
    /// What the answer's `response` object repeats of the request.
    pub echo: Echo,
}

/// The request fields a `response` object repeats (`instructions`, `tools`,
/// `tool_choice`, `text`, `temperature`, …), as the client sent them, with the
/// documented defaults for those it left out. Built by [`decode_request`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Echo {
    /// The model the client asked for: the answer's `model` when the upstream names none.
    #[serde(skip)]
    model: String,
    instructions: Option<String>,
    max_output_tokens: Option<u64>,
    max_tool_calls: Option<u64>,
    metadata: Map<String, Value>,
    parallel_tool_calls: bool,
    prompt_cache_key: Option<String>,
    reasoning: Option<Value>,
    safety_identifier: Option<String>,
    service_tier: Option<String>,
    temperature: Option<f64>,
    text: Value,
    tool_choice: Value,
    tools: Vec<Value>,
    top_logprobs: Option<u64>,
    top_p: Option<f64>,
    truncation: String,
    user: Option<String>,
}

impl Default for Echo {
    fn default() -> Self {
        Self {
            model: String::new(),
            instructions: None,
            max_output_tokens: None,
            max_tool_calls: None,
            metadata: Map::new(),
            parallel_tool_calls: true,
            prompt_cache_key: None,
            reasoning: None,
            safety_identifier: None,
            service_tier: None,
            temperature: None,
            text: serde_json::json!({"format": {"type": "text"}}),
            tool_choice: Value::String("auto".into()),
            tools: Vec::new(),
            top_logprobs: None,
            top_p: None,
            truncation: "disabled".into(),
            user: None,
        }
    }
}

impl Echo {
    /// The model the client asked for.
    pub fn model(&self) -> &str {
        &self.model
    }
}

/// Decodes a Responses request body (`CreateResponse`) into the canonical request, the
/// list of features only OpenAI can serve, and what the answer echoes (rules in the
/// module docs).
///
/// # Errors
/// A 400 ([`GatewayError::bad_request`]) for a body that is not a JSON object, a field
/// of the wrong type, a missing `model` or `input` (unless a stateful feature stands in
/// for them), an unknown role, content part or `text.format`, and a function call or
/// tool without its required fields; `param` names the field (`input[2].call_id`).
///
/// ```
/// use modelway_core::dialect::responses::decode_request;
///
/// let d = decode_request(br#"{"model":"m","input":"hi","instructions":"be brief"}"#).unwrap();
/// assert_eq!(d.request.messages.len(), 2);
/// assert!(d.stateful.is_empty());
/// let e = decode_request(br#"{"model":"m","input":"hi","temperature":"hot"}"#).unwrap_err();
/// assert_eq!((e.status, e.param.as_deref()), (400, Some("temperature")));
/// ```
pub fn decode_request(body: &[u8]) -> Result<Decoded, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::bad_request(format!(
            "We could not parse the JSON body of your request ({e}). \
             The body must be a JSON object (a CreateResponse)."
        ))
    })?;
    let Value::Object(body) = value else {
        return Err(GatewayError::bad_request(
            "The request body must be a JSON object (a CreateResponse).",
        ));
    };
    Decoder::default().decode(body)
}

fn missing(param: &str) -> GatewayError {
    GatewayError::bad_request(format!("Missing required parameter: '{param}'.")).with_param(param)
}

fn invalid_type(param: &str, want: &str, got: &Value) -> GatewayError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    GatewayError::bad_request(format!(
        "Invalid type for '{param}': expected {want}, but got {got} instead."
    ))
    .with_param(param)
}

fn invalid_value(param: &str, got: &str, supported: &str) -> GatewayError {
    GatewayError::bad_request(format!(
        "Invalid value for '{param}': '{got}'. Supported values are: {supported}."
    ))
    .with_param(param)
}

/// Typed reads of an object's members, each removing the member; absent and `null` are
/// `None`. `at` is the object's path (`""` at the top, `"input[3]."` inside an item),
/// used only to name a field in an error.
struct Fields<'a> {
    map: Map<String, Value>,
    at: &'a str,
}

impl<'a> Fields<'a> {
    fn new(map: Map<String, Value>, at: &'a str) -> Self {
        Self { map, at }
    }

    fn path(&self, key: &str) -> String {
        format!("{}{key}", self.at)
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, GatewayError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(invalid_type(&self.path(key), "a string", &v)),
        }
    }

    fn required_string(&mut self, key: &str) -> Result<String, GatewayError> {
        self.string(key)?.ok_or_else(|| missing(&self.path(key)))
    }

    fn number(&mut self, key: &str) -> Result<Option<f64>, GatewayError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(v) => Err(invalid_type(&self.path(key), "a number", &v)),
        }
    }

    fn integer(&mut self, key: &str) -> Result<Option<u64>, GatewayError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(v) => Err(invalid_type(&self.path(key), "a non-negative integer", &v)),
        }
    }

    fn boolean(&mut self, key: &str) -> Result<Option<bool>, GatewayError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(v) => Err(invalid_type(&self.path(key), "a boolean", &v)),
        }
    }

    fn object(&mut self, key: &str) -> Result<Option<Map<String, Value>>, GatewayError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(v) => Err(invalid_type(&self.path(key), "an object", &v)),
        }
    }

    fn array(&mut self, key: &str) -> Result<Option<Vec<Value>>, GatewayError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(invalid_type(&self.path(key), "an array", &v)),
        }
    }
}

/// The `include` value that asks for logprobs on output text.
const INCLUDE_LOGPROBS: &str = "message.output_text.logprobs";

/// Request fields that are read for the echo or ignored, and never forwarded.
const NOT_FORWARDED: &[&str] = &["include", "truncation", "max_tool_calls", "store"];

#[derive(Default)]
struct Decoder {
    stateful: Vec<String>,
}

impl Decoder {
    fn flag(&mut self, name: &str) {
        if !self.stateful.iter().any(|s| s == name) {
            self.stateful.push(name.to_owned());
        }
    }

    fn decode(mut self, body: Map<String, Value>) -> Result<Decoded, GatewayError> {
        let mut f = Fields::new(body, "");
        let mut echo = Echo::default();

        // Server-side state first: it decides whether a missing `model`/`input` is an error.
        for key in [
            "previous_response_id",
            "conversation",
            "prompt",
            "context_management",
            "moderation",
        ] {
            if f.take(key).is_some() {
                self.flag(key);
            }
        }
        if f.boolean("background")? == Some(true) {
            self.flag("background");
        }
        if let Some(v) = f.map.get("store") {
            match v {
                Value::Bool(true) => self.flag("store"),
                Value::Bool(false) | Value::Null => {}
                other => return Err(invalid_type("store", "a boolean", other)),
            }
        }

        let model = match f.string("model")? {
            Some(m) => m,
            None if !self.stateful.is_empty() => String::new(),
            None => return Err(missing("model")),
        };
        echo.model.clone_from(&model);

        let mut messages = Vec::new();
        if let Some(instructions) = f.take("instructions") {
            let Value::String(s) = instructions else {
                return Err(invalid_type("instructions", "a string", &instructions));
            };
            messages.push(Message::text(Role::System, s.clone()));
            echo.instructions = Some(s);
        }
        match f.take("input") {
            None => {}
            Some(Value::String(s)) => messages.push(Message::text(Role::User, s)),
            Some(Value::Array(items)) => self.input_items(items, &mut messages)?,
            Some(v) => return Err(invalid_type("input", "a string or an array of items", &v)),
        }
        if messages.is_empty() && self.stateful.is_empty() {
            return Err(missing("input"));
        }

        let mut req = ChatRequest::new(model, messages);

        if let Some(tools) = f.array("tools")? {
            let mut out = Vec::new();
            for (i, tool) in tools.into_iter().enumerate() {
                if let Some(t) = self.tool(tool, i, &mut echo.tools)? {
                    out.push(t);
                }
            }
            req.tools = (!out.is_empty()).then_some(out);
        }
        if let Some(choice) = f.take("tool_choice") {
            req.tool_choice = self.tool_choice(&choice)?;
            echo.tool_choice = choice;
        }
        if let Some(mut text) = f.object("text")? {
            let mut t = Fields::new(std::mem::take(&mut text), "text.");
            if let Some(format) = t.object("format")? {
                req.response_format = response_format(&format)?;
                text.insert("format".into(), Value::Object(format));
            } else {
                text.insert("format".into(), serde_json::json!({"type": "text"}));
            }
            if let Some(verbosity) = t.take("verbosity") {
                req.extra.insert("verbosity".into(), verbosity.clone());
                text.insert("verbosity".into(), verbosity);
            }
            // Other members of `text` are kept in the echo, not forwarded.
            text.extend(t.map);
            echo.text = Value::Object(text);
        }
        if let Some(reasoning) = f.object("reasoning")? {
            let mut r = Fields::new(reasoning.clone(), "reasoning.");
            req.reasoning_effort = r.string("effort")?;
            echo.reasoning = Some(Value::Object(reasoning));
        }

        req.max_completion_tokens = f.integer("max_output_tokens")?;
        echo.max_output_tokens = req.max_completion_tokens;
        req.temperature = f.number("temperature")?;
        echo.temperature = req.temperature;
        req.top_p = f.number("top_p")?;
        echo.top_p = req.top_p;
        req.parallel_tool_calls = f.boolean("parallel_tool_calls")?;
        echo.parallel_tool_calls = req.parallel_tool_calls.unwrap_or(true);
        req.user = f.string("user")?;
        echo.user.clone_from(&req.user);
        echo.max_tool_calls = f.integer("max_tool_calls")?;
        if let Some(metadata) = f.object("metadata")? {
            echo.metadata = metadata;
        }
        if let Some(truncation) = f.string("truncation")? {
            echo.truncation = truncation;
        }
        for (key, slot) in [
            ("safety_identifier", &mut echo.safety_identifier),
            ("prompt_cache_key", &mut echo.prompt_cache_key),
            ("service_tier", &mut echo.service_tier),
        ] {
            if let Some(v) = f.string(key)? {
                req.extra.insert(key.into(), Value::String(v.clone()));
                *slot = Some(v);
            }
        }
        for key in ["prompt_cache_retention", "prompt_cache_options"] {
            if let Some(v) = f.take(key) {
                req.extra.insert(key.into(), v);
            }
        }

        let wants_logprobs = match f.array("include")? {
            Some(include) => include.iter().any(|v| v.as_str() == Some(INCLUDE_LOGPROBS)),
            None => false,
        };
        let top_logprobs = f.integer("top_logprobs")?;
        echo.top_logprobs = top_logprobs;
        if wants_logprobs || top_logprobs.is_some_and(|n| n > 0) {
            req.logprobs = Some(true);
            req.top_logprobs = top_logprobs.and_then(|n| u32::try_from(n).ok());
        }

        let stream_options = f.object("stream_options")?;
        if f.boolean("stream")? == Some(true) {
            req.stream = Some(true);
            let mut extra = stream_options.unwrap_or_default();
            extra.remove("include_usage");
            req.stream_options = Some(StreamOptions {
                // Usage goes into `response.completed`, whatever the client asked.
                include_usage: Some(true),
                extra,
            });
        }

        for key in NOT_FORWARDED {
            f.map.remove(*key);
        }
        req.extra.extend(f.map);

        Ok(Decoded {
            request: req,
            stateful: self.stateful,
            echo,
        })
    }

    /// `input[]`: messages, function calls and their outputs, reasoning.
    fn input_items(
        &mut self,
        items: Vec<Value>,
        messages: &mut Vec<Message>,
    ) -> Result<(), GatewayError> {
        // Whether the last message is an assistant turn still open to the function calls
        // that follow it (it came from the item just before).
        let mut open_turn = false;
        // Signed thinking replayed from our own reasoning items, for the next assistant
        // message.
        let mut thinking: Vec<Value> = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("input[{i}].");
            let Value::Object(item) = item else {
                return Err(invalid_type(&format!("input[{i}]"), "an object", &item));
            };
            let mut f = Fields::new(item, &at);
            let kind = match f.string("type")? {
                Some(k) => k,
                None if f.map.contains_key("role") => "message".to_owned(),
                None => return Err(missing(&f.path("type"))),
            };
            match kind.as_str() {
                "message" => {
                    let m = message(f, self)?;
                    let assistant = m.role == Role::Assistant;
                    messages.push(m);
                    if assistant {
                        attach_thinking(messages, &mut thinking);
                    }
                    open_turn = assistant;
                }
                "function_call" => {
                    let call_id = f.required_string("call_id")?;
                    let name = f.required_string("name")?;
                    let arguments = match f.take("arguments") {
                        None => String::new(),
                        Some(Value::String(s)) => s,
                        // Lenient: an object given where its JSON text belongs.
                        Some(v) => v.to_string(),
                    };
                    let call = ToolCall {
                        id: call_id,
                        kind: "function".into(),
                        function: FunctionCall { name, arguments },
                        extra: Map::new(),
                    };
                    match messages.last_mut() {
                        Some(last) if open_turn => {
                            last.tool_calls.get_or_insert_with(Vec::new).push(call);
                        }
                        _ => {
                            let mut m = bare_message(Role::Assistant);
                            m.tool_calls = Some(vec![call]);
                            messages.push(m);
                            attach_thinking(messages, &mut thinking);
                            open_turn = true;
                        }
                    }
                }
                "function_call_output" => {
                    let call_id = f.required_string("call_id")?;
                    let content = match f.take("output") {
                        None => return Err(missing(&f.path("output"))),
                        Some(Value::String(s)) => MessageContent::Text(s),
                        Some(Value::Array(parts)) => {
                            let at = f.path("output");
                            let parts = parts.into_iter().enumerate().collect();
                            parts_of(parts, &at, self)?
                                .unwrap_or_else(|| MessageContent::Text(String::new()))
                        }
                        Some(v) => MessageContent::Text(v.to_string()),
                    };
                    let mut m = bare_message(Role::Tool);
                    m.content = Some(content);
                    m.tool_call_id = Some(call_id);
                    messages.push(m);
                    open_turn = false;
                }
                "reasoning" => {
                    if let Some(Value::String(c)) = f.map.get("encrypted_content") {
                        thinking.extend(carried_thinking(c));
                    }
                    if open_turn {
                        attach_thinking(messages, &mut thinking);
                    }
                }
                other => {
                    // `item_reference`, hosted-tool calls and their outputs: OpenAI's.
                    self.flag(other);
                    open_turn = false;
                }
            }
        }
        Ok(())
    }

    /// One `tools[]` entry: a function tool in the chat shape, or `None` for a hosted
    /// tool (flagged). `echo` receives the tool as the answer repeats it.
    fn tool(
        &mut self,
        tool: Value,
        i: usize,
        echo: &mut Vec<Value>,
    ) -> Result<Option<Tool>, GatewayError> {
        let at = format!("tools[{i}].");
        let Value::Object(tool) = tool else {
            return Err(invalid_type(&format!("tools[{i}]"), "an object", &tool));
        };
        let mut f = Fields::new(tool.clone(), &at);
        let kind = f.required_string("type")?;
        if kind != "function" {
            self.flag(&kind);
            echo.push(Value::Object(tool));
            return Ok(None);
        }
        let name = f.required_string("name")?;
        let description = f.string("description")?;
        let parameters = f.object("parameters")?.map(Value::Object);
        let strict = f.boolean("strict")?;
        // The spec requires `parameters` and `strict` (nullable) on the echoed tool.
        let mut echoed = tool;
        echoed.entry("parameters").or_insert(Value::Null);
        echoed.entry("strict").or_insert(Value::Null);
        echo.push(Value::Object(echoed));
        Ok(Some(Tool {
            kind,
            function: Some(FunctionDef {
                name,
                description,
                parameters,
                strict,
                extra: Map::new(),
            }),
            extra: Map::new(),
        }))
    }

    /// `tool_choice` in the chat shape; `None` for a hosted tool's choice (flagged).
    fn tool_choice(&mut self, choice: &Value) -> Result<Option<ToolChoice>, GatewayError> {
        const MODES: &str = "'none', 'auto' and 'required'";
        let o = match choice {
            Value::String(s) => {
                return match s.as_str() {
                    "none" | "auto" | "required" => {
                        Ok(Some(ToolChoice::Mode(ToolChoiceMode::from(s.as_str()))))
                    }
                    other => Err(invalid_value("tool_choice", other, MODES)),
                };
            }
            Value::Object(o) => o,
            other => return Err(invalid_type("tool_choice", "a string or an object", other)),
        };
        let mut f = Fields::new(o.clone(), "tool_choice.");
        let kind = f.required_string("type")?;
        match kind.as_str() {
            "function" => {
                let name = f.required_string("name")?;
                Ok(Some(ToolChoice::Object(chat_function_choice(name))))
            }
            "allowed_tools" => {
                let mode = f.string("mode")?.unwrap_or_else(|| "auto".into());
                if !matches!(mode.as_str(), "auto" | "required") {
                    return Err(invalid_value(
                        "tool_choice.mode",
                        &mode,
                        "'auto' and 'required'",
                    ));
                }
                let mut tools = Vec::new();
                for (i, t) in f
                    .array("tools")?
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                {
                    let at = format!("tool_choice.tools[{i}].");
                    let Value::Object(t) = t else {
                        return Err(invalid_type(
                            &format!("tool_choice.tools[{i}]"),
                            "an object",
                            &t,
                        ));
                    };
                    let mut t = Fields::new(t, &at);
                    let kind = t.required_string("type")?;
                    if kind == "function" {
                        let name = t.required_string("name")?;
                        tools.push(Value::Object(chat_function_choice(name)));
                    } else {
                        self.flag(&kind);
                    }
                }
                let mut allowed = Map::new();
                allowed.insert("mode".into(), Value::String(mode));
                allowed.insert("tools".into(), Value::Array(tools));
                let mut o = Map::new();
                o.insert("type".into(), Value::String("allowed_tools".into()));
                o.insert("allowed_tools".into(), Value::Object(allowed));
                Ok(Some(ToolChoice::Object(o)))
            }
            other => {
                self.flag(other);
                Ok(None)
            }
        }
    }
}

/// A message of this role with nothing in it yet.
fn bare_message(role: Role) -> Message {
    Message {
        role,
        content: None,
        name: None,
        tool_calls: None,
        tool_call_id: None,
        refusal: None,
        extra: Map::new(),
    }
}

/// A content part of this type with no payload yet.
fn empty_part(kind: PartType) -> ContentPart {
    ContentPart {
        kind,
        text: None,
        image_url: None,
        input_audio: None,
        file: None,
        refusal: None,
        extra: Map::new(),
    }
}

/// `{type:"function", function:{name}}`.
fn chat_function_choice(name: String) -> Map<String, Value> {
    let mut function = Map::new();
    function.insert("name".into(), Value::String(name));
    let mut o = Map::new();
    o.insert("type".into(), Value::String("function".into()));
    o.insert("function".into(), Value::Object(function));
    o
}

/// Puts replayed signed thinking on the last message (an assistant one).
fn attach_thinking(messages: &mut [Message], thinking: &mut Vec<Value>) {
    if thinking.is_empty() {
        return;
    }
    if let Some(m) = messages.last_mut() {
        let blocks = m
            .extra
            .entry("thinking_blocks")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(b) = blocks {
            b.append(thinking);
        }
    }
}

/// The thinking blocks in an `encrypted_content` this codec wrote; none for any other.
pub(super) fn carried_thinking(content: &str) -> Vec<Value> {
    let Some(json) = content.strip_prefix(CARRY_PREFIX) else {
        return Vec::new();
    };
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(mut o)) => match o.remove("thinking_blocks") {
            Some(Value::Array(blocks)) => blocks.into_iter().filter(Value::is_object).collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// A message item (`EasyInputMessage` or `InputMessage`/`OutputMessage`).
fn message(mut f: Fields<'_>, d: &mut Decoder) -> Result<Message, GatewayError> {
    let role_text = f.required_string("role")?;
    let role = match role_text.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" => Role::System,
        "developer" => Role::Developer,
        other => {
            return Err(invalid_value(
                &f.path("role"),
                other,
                "'user', 'assistant', 'system' and 'developer'",
            ))
        }
    };
    let mut m = bare_message(role.clone());
    match f.take("content") {
        None if role == Role::Assistant => m.content = None,
        None => return Err(missing(&f.path("content"))),
        Some(Value::String(s)) => m.content = Some(MessageContent::Text(s)),
        Some(Value::Array(parts)) => {
            let at = f.path("content");
            let mut refusal = None;
            let mut kept = Vec::with_capacity(parts.len());
            for (j, part) in parts.into_iter().enumerate() {
                // The assistant's refusal is a message field in chat, not a part.
                if role == Role::Assistant
                    && part.get("type").and_then(Value::as_str) == Some("refusal")
                {
                    let text = part.get("refusal").and_then(Value::as_str);
                    let Some(text) = text else {
                        return Err(missing(&format!("{at}[{j}].refusal")));
                    };
                    refusal = Some(text.to_owned());
                    continue;
                }
                kept.push((j, part));
            }
            m.refusal = refusal;
            m.content = match parts_of(kept, &at, d)? {
                Some(c) => Some(c),
                None if role == Role::Assistant => None,
                None => Some(MessageContent::Text(String::new())),
            };
        }
        Some(v) => {
            return Err(invalid_type(
                &f.path("content"),
                "a string or an array of content parts",
                &v,
            ))
        }
    }
    Ok(m)
}

/// Content parts (with their index in the item, for error paths) → chat content: one
/// text part becomes a string, more stay parts; `None` when nothing is left. Parts that
/// reference files stored by OpenAI are left out and flagged on `d`.
fn parts_of(
    parts: Vec<(usize, Value)>,
    at: &str,
    d: &mut Decoder,
) -> Result<Option<MessageContent>, GatewayError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts {
        let path = format!("{at}[{j}]");
        let Value::Object(part) = part else {
            return Err(invalid_type(&path, "an object", &part));
        };
        let prefix = format!("{path}.");
        let mut f = Fields::new(part, &prefix);
        let kind = f.required_string("type")?;
        match kind.as_str() {
            "input_text" | "output_text" | "text" => {
                out.push(ContentPart::text(f.required_string("text")?));
            }
            "input_image" => {
                let detail = f.string("detail")?.filter(|d| d != "original");
                match f.string("image_url")? {
                    Some(url) => {
                        let mut p = empty_part(PartType::ImageUrl);
                        p.image_url = Some(ImageUrl {
                            url,
                            detail,
                            extra: Map::new(),
                        });
                        out.push(p);
                    }
                    None if f.string("file_id")?.is_some() => d.flag("file_id"),
                    None => return Err(missing(&f.path("image_url"))),
                }
            }
            "input_file" => {
                if f.string("file_id")?.is_some() {
                    d.flag("file_id");
                } else if f.string("file_url")?.is_some() {
                    d.flag("file_url");
                } else {
                    let file_data = f.required_string("file_data")?;
                    let mut p = empty_part(PartType::File);
                    p.file = Some(FileData {
                        filename: f.string("filename")?,
                        file_data: Some(file_data),
                        file_id: None,
                        extra: Map::new(),
                    });
                    out.push(p);
                }
            }
            "input_audio" => {
                let Some(audio) = f.object("input_audio")? else {
                    return Err(missing(&f.path("input_audio")));
                };
                let inner = f.path("input_audio.");
                let mut a = Fields::new(audio, &inner);
                let mut p = empty_part(PartType::InputAudio);
                p.input_audio = Some(InputAudio {
                    data: a.required_string("data")?,
                    format: a.required_string("format")?,
                    extra: Map::new(),
                });
                out.push(p);
            }
            other => {
                return Err(invalid_value(
                    &f.path("type"),
                    other,
                    "'input_text', 'input_image', 'input_file', 'input_audio', 'output_text' and 'refusal'",
                ))
            }
        }
    }
    Ok(match out.len() {
        0 => None,
        1 if out[0].kind == PartType::Text => {
            let p = out.pop();
            p.and_then(|p| p.text).map(MessageContent::Text)
        }
        _ => Some(MessageContent::Parts(out)),
    })
}

/// `text.format` → `response_format` (`None` for plain text).
fn response_format(format: &Map<String, Value>) -> Result<Option<ResponseFormat>, GatewayError> {
    let mut f = Fields::new(format.clone(), "text.format.");
    let kind = f.required_string("type")?;
    match kind.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(ResponseFormat {
            kind: ResponseFormatType::JsonObject,
            json_schema: None,
            extra: Map::new(),
        })),
        "json_schema" => {
            let name = f.required_string("name")?;
            let Some(schema) = f.object("schema")? else {
                return Err(missing("text.format.schema"));
            };
            Ok(Some(ResponseFormat {
                kind: ResponseFormatType::JsonSchema,
                json_schema: Some(JsonSchemaFormat {
                    name,
                    description: f.string("description")?,
                    schema: Some(Value::Object(schema)),
                    strict: f.boolean("strict")?,
                    extra: Map::new(),
                }),
                extra: Map::new(),
            }))
        }
        other => Err(invalid_value(
            "text.format.type",
            other,
            "'text', 'json_object' and 'json_schema'",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode(body: &Value) -> Decoded {
        match decode_request(body.to_string().as_bytes()) {
            Ok(d) => d,
            Err(e) => panic!("{body} did not decode: {e}"),
        }
    }

    fn with_input(input: Value) -> Value {
        json!({"model": "m", "input": input})
    }

    #[test]
    fn input_becomes_chat_messages() {
        let rows = [
            (
                "a string is one user message",
                json!("hi"),
                json!([{"role": "user", "content": "hi"}]),
            ),
            (
                "easy messages of every role, without `type`",
                json!([
                    {"role": "developer", "content": "d"}, {"role": "system", "content": "s"},
                    {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}
                ]),
                json!([
                    {"role": "developer", "content": "d"}, {"role": "system", "content": "s"},
                    {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}
                ]),
            ),
            (
                "one text part becomes a string",
                json!([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look"}]}]),
                json!([{"role": "user", "content": "look"}]),
            ),
            (
                "several parts stay parts: text, image (detail `original` dropped), file, audio",
                json!([{"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "see"},
                    {"type": "input_image", "image_url": "https://x/a.png", "detail": "low"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "original"},
                    {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
                    {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}
                ]}]),
                json!([{"role": "user", "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}},
                    {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}
                ]}]),
            ),
            (
                "replayed assistant output: output_text text, refusal part as the refusal field",
                json!([
                    {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                     "content": [{"type": "output_text", "text": "x", "annotations": [], "logprobs": []}]},
                    {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}
                ]),
                json!([{"role": "assistant", "content": "x"}, {"role": "assistant", "refusal": "no"}]),
            ),
            (
                "a reasoning item of someone else's is dropped",
                json!([
                    {"role": "user", "content": "q"},
                    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hm"}], "encrypted_content": "gAAAA"},
                    {"role": "assistant", "content": "a"}
                ]),
                json!([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]),
            ),
        ];
        for (rule, input, want) in rows {
            let d = decode(&with_input(input));
            let got = serde_json::to_value(&d.request.messages).unwrap();
            assert_eq!(got, want, "{rule}");
            assert!(d.stateful.is_empty(), "{rule}: {:?}", d.stateful);
        }
    }

    #[test]
    fn a_multi_turn_function_call_conversation_keeps_each_turn_together() {
        // As the Agents SDK replays it: the assistant's message and the calls right after
        // it are one turn; outputs are tool messages; a later call starts a new turn.
        let input = json!([
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "weather",
             "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
            {"type": "function_call", "call_id": "call_b", "name": "weather", "arguments": "{\"city\":\"Rome\"}"},
            {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "rainy"}]},
            {"type": "function_call", "call_id": "call_c", "name": "clock", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_c", "output": "noon"},
            {"role": "user", "content": "thanks"}
        ]);
        let d = decode(&with_input(input));
        let call = |id: &str, name: &str, args: &str| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}});
        let want = json!([
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                call("call_a", "weather", "{\"city\":\"Paris\"}"),
                call("call_b", "weather", "{\"city\":\"Rome\"}")
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": "rainy"},
            {"role": "assistant", "tool_calls": [call("call_c", "clock", "{}")]},
            {"role": "tool", "tool_call_id": "call_c", "content": "noon"},
            {"role": "user", "content": "thanks"}
        ]);
        assert_eq!(serde_json::to_value(&d.request.messages).unwrap(), want);
    }

    #[test]
    fn request_fields_map_to_their_chat_names() {
        // (rule, request fields, expected members of the chat request; null = absent)
        let rows = [
            (
                "instructions lead as a system message",
                json!({"instructions": "be brief", "input": "hi"}),
                json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
            ),
            (
                "flat function tools, tool_choice by name",
                json!({
                    "tools": [{"type": "function", "name": "f", "description": "d",
                               "parameters": {"type": "object"}, "strict": true}],
                    "tool_choice": {"type": "function", "name": "f"}, "parallel_tool_calls": false
                }),
                json!({
                    "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                               "parameters": {"type": "object"}, "strict": true}}],
                    "tool_choice": {"type": "function", "function": {"name": "f"}},
                    "parallel_tool_calls": false
                }),
            ),
            (
                "tool_choice modes and allowed_tools",
                json!({"tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]}}),
                json!({"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required",
                       "tools": [{"type": "function", "function": {"name": "f"}}]}}}),
            ),
            (
                "tool_choice required",
                json!({"tool_choice": "required"}),
                json!({"tool_choice": "required"}),
            ),
            (
                "text.format json_schema, verbosity",
                json!({"text": {"format": {"type": "json_schema", "name": "Out", "strict": true,
                       "description": "d", "schema": {"type": "object", "properties": {}}}, "verbosity": "low"}}),
                json!({
                    "response_format": {"type": "json_schema", "json_schema": {"name": "Out", "strict": true,
                        "description": "d", "schema": {"type": "object", "properties": {}}}},
                    "verbosity": "low"
                }),
            ),
            (
                "text.format json_object",
                json!({"text": {"format": {"type": "json_object"}}}),
                json!({"response_format": {"type": "json_object"}}),
            ),
            (
                "text.format text is the default: no response_format",
                json!({"text": {"format": {"type": "text"}}}),
                json!({"response_format": null}),
            ),
            (
                "sampling, limits, reasoning, user and cache fields",
                json!({
                    "temperature": 0.2, "top_p": 0.9, "max_output_tokens": 64,
                    "reasoning": {"effort": "low", "summary": "auto"}, "user": "u",
                    "safety_identifier": "s", "prompt_cache_key": "k", "service_tier": "flex"
                }),
                json!({
                    "temperature": 0.2, "top_p": 0.9, "max_completion_tokens": 64, "reasoning_effort": "low",
                    "user": "u", "safety_identifier": "s", "prompt_cache_key": "k", "service_tier": "flex",
                    "max_tokens": null
                }),
            ),
            (
                "stream always asks for usage",
                json!({"stream": true, "stream_options": {"include_obfuscation": false}}),
                json!({"stream": true, "stream_options": {"include_usage": true, "include_obfuscation": false}}),
            ),
            (
                "no stream, no stream_options",
                json!({"stream": false, "stream_options": {"include_obfuscation": false}}),
                json!({"stream": null, "stream_options": null}),
            ),
            (
                "logprobs through include and top_logprobs",
                json!({"include": ["message.output_text.logprobs"], "top_logprobs": 2}),
                json!({"logprobs": true, "top_logprobs": 2}),
            ),
            (
                "echo-only and ignored fields are not forwarded; unknown ones are",
                json!({"metadata": {"a": "b"}, "store": false, "truncation": "auto", "include": [],
                       "max_tool_calls": 3, "background": false, "top_k": 5}),
                json!({"metadata": null, "store": null, "truncation": null, "include": null,
                       "max_tool_calls": null, "background": null, "top_k": 5}),
            ),
        ];
        for (rule, fields, want) in rows {
            let mut body = json!({"model": "m", "input": "hi"});
            for (k, v) in fields.as_object().unwrap() {
                body[k] = v.clone();
            }
            let d = decode(&body);
            let got = serde_json::to_value(&d.request).unwrap();
            for (k, v) in want.as_object().unwrap() {
                let have = got.get(k).unwrap_or(&Value::Null);
                assert_eq!(have, v, "{rule}: `{k}` in {got}");
            }
            assert!(d.stateful.is_empty(), "{rule}: {:?}", d.stateful);
        }
    }

    #[test]
    fn what_only_openai_can_serve_is_listed_by_name() {
        let rows = [
            (
                json!({"previous_response_id": "resp_1"}),
                vec!["previous_response_id"],
            ),
            (json!({"store": true}), vec!["store"]),
            (json!({"store": false, "background": false}), vec![]),
            (
                json!({"conversation": {"id": "conv_1"}}),
                vec!["conversation"],
            ),
            (json!({"background": true}), vec!["background"]),
            (json!({"prompt": {"id": "pmpt_1"}}), vec!["prompt"]),
            (
                json!({"context_management": [{"type": "compaction"}]}),
                vec!["context_management"],
            ),
            (
                json!({"tools": [
                    {"type": "web_search"}, {"type": "file_search", "vector_store_ids": []},
                    {"type": "function", "name": "f", "parameters": {}, "strict": false},
                    {"type": "code_interpreter", "container": {"type": "auto"}},
                    {"type": "computer_use_preview"}, {"type": "image_generation"},
                    {"type": "mcp", "server_label": "x"}, {"type": "web_search"}
                ]}),
                vec![
                    "web_search",
                    "file_search",
                    "code_interpreter",
                    "computer_use_preview",
                    "image_generation",
                    "mcp",
                ],
            ),
            (
                json!({"tool_choice": {"type": "web_search_preview"}}),
                vec!["web_search_preview"],
            ),
            (
                json!({"input": [
                    {"type": "item_reference", "id": "msg_1"},
                    {"type": "web_search_call", "id": "ws_1", "status": "completed"},
                    {"role": "user", "content": [{"type": "input_image", "file_id": "file-1"},
                                                 {"type": "input_file", "file_url": "https://x/a.pdf"}]}
                ]}),
                vec!["item_reference", "web_search_call", "file_id", "file_url"],
            ),
            (
                json!({"previous_response_id": "resp_1", "input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}),
                vec!["previous_response_id"],
            ),
        ];
        for (fields, want) in rows {
            let mut body = json!({"model": "m", "input": "hi"});
            for (k, v) in fields.as_object().unwrap() {
                body[k] = v.clone();
            }
            let d = decode(&body);
            assert_eq!(d.stateful, want, "{fields}");
        }
        // Server state stands in for a missing model or input.
        let d = decode(&json!({"prompt": {"id": "pmpt_1"}}));
        assert_eq!(d.stateful, ["prompt"]);
        assert!(d.request.messages.is_empty());
    }

    #[test]
    fn bad_bodies_are_400s_naming_the_field() {
        let rows = [
            (r#"not json"#, None),
            (r#"[1]"#, None),
            (r#"{"input":"hi"}"#, Some("model")),
            (r#"{"model":"m"}"#, Some("input")),
            (r#"{"model":7,"input":"hi"}"#, Some("model")),
            (r#"{"model":"m","input":5}"#, Some("input")),
            (
                r#"{"model":"m","input":"hi","temperature":"hot"}"#,
                Some("temperature"),
            ),
            (
                r#"{"model":"m","input":"hi","max_output_tokens":-1}"#,
                Some("max_output_tokens"),
            ),
            (
                r#"{"model":"m","input":"hi","stream":"yes"}"#,
                Some("stream"),
            ),
            (r#"{"model":"m","input":"hi","store":"yes"}"#, Some("store")),
            (
                r#"{"model":"m","input":"hi","instructions":["x"]}"#,
                Some("instructions"),
            ),
            (r#"{"model":"m","input":[7]}"#, Some("input[0]")),
            (
                r#"{"model":"m","input":[{"content":"x"}]}"#,
                Some("input[0].type"),
            ),
            (
                r#"{"model":"m","input":[{"role":"critic","content":"x"}]}"#,
                Some("input[0].role"),
            ),
            (
                r#"{"model":"m","input":[{"type":"message","role":"user"}]}"#,
                Some("input[0].content"),
            ),
            (
                r#"{"model":"m","input":[{"role":"user","content":7}]}"#,
                Some("input[0].content"),
            ),
            (
                r#"{"model":"m","input":[{"role":"user","content":[{"type":"video","url":"x"}]}]}"#,
                Some("input[0].content[0].type"),
            ),
            (
                r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text"}]}]}"#,
                Some("input[0].content[0].text"),
            ),
            (
                r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_image"}]}]}"#,
                Some("input[0].content[0].image_url"),
            ),
            (
                r#"{"model":"m","input":["x",{"type":"function_call","name":"f","arguments":"{}"}]}"#,
                Some("input[0]"),
            ),
            (
                r#"{"model":"m","input":[{"type":"function_call","name":"f","arguments":"{}"}]}"#,
                Some("input[0].call_id"),
            ),
            (
                r#"{"model":"m","input":[{"type":"function_call","call_id":"c","arguments":"{}"}]}"#,
                Some("input[0].name"),
            ),
            (
                r#"{"model":"m","input":[{"type":"function_call_output","call_id":"c"}]}"#,
                Some("input[0].output"),
            ),
            (
                r#"{"model":"m","input":"hi","tools":[{"type":"function","function":{"name":"f"}}]}"#,
                Some("tools[0].name"),
            ),
            (r#"{"model":"m","input":"hi","tools":{}}"#, Some("tools")),
            (
                r#"{"model":"m","input":"hi","tool_choice":"sometimes"}"#,
                Some("tool_choice"),
            ),
            (
                r#"{"model":"m","input":"hi","tool_choice":{"type":"function"}}"#,
                Some("tool_choice.name"),
            ),
            (
                r#"{"model":"m","input":"hi","text":{"format":{"type":"json_schema","schema":{}}}}"#,
                Some("text.format.name"),
            ),
            (
                r#"{"model":"m","input":"hi","text":{"format":{"type":"json_schema","name":"n"}}}"#,
                Some("text.format.schema"),
            ),
            (
                r#"{"model":"m","input":"hi","text":{"format":{"type":"yaml"}}}"#,
                Some("text.format.type"),
            ),
            (
                r#"{"model":"m","input":"hi","reasoning":{"effort":3}}"#,
                Some("reasoning.effort"),
            ),
        ];
        for (body, param) in rows {
            let err = match decode_request(body.as_bytes()) {
                Ok(d) => panic!("{body}: expected a 400, decoded {:?}", d.request),
                Err(e) => e,
            };
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.param.as_deref(), param, "{body}: {}", err.message);
        }
    }

    #[test]
    fn no_body_makes_the_decoder_panic() {
        // Truncations and type swaps of a full request: every one decodes or is a 400.
        let full = json!({
            "model": "m", "instructions": "i", "stream": true, "tools": [{"type": "function", "name": "f", "parameters": {}}],
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "t"}]},
                      {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text", "text": "o"}]},
                      {"type": "reasoning", "encrypted_content": "modelway.v1:{\"thinking_blocks\":7}"}],
            "text": {"format": {"type": "json_schema", "name": "n", "schema": {}}}, "reasoning": {"effort": "low"}
        })
        .to_string();
        for end in 0..full.len() {
            if full.is_char_boundary(end) {
                let _ = decode_request(&full.as_bytes()[..end]);
            }
        }
        let swaps = [
            json!(null),
            json!(1),
            json!("s"),
            json!([]),
            json!({}),
            json!([null]),
            json!(true),
        ];
        let paths: &[&[&str]] = &[
            &["input"],
            &["tools"],
            &["text"],
            &["text", "format"],
            &["reasoning"],
            &["tool_choice"],
            &["stream_options"],
            &["include"],
            &["metadata"],
        ];
        for path in paths {
            for swap in &swaps {
                let mut v: Value = serde_json::from_str(&full).unwrap();
                let mut at = &mut v;
                for p in &path[..path.len() - 1] {
                    at = &mut at[*p];
                }
                at[path[path.len() - 1]] = swap.clone();
                let _ = decode_request(v.to_string().as_bytes());
            }
        }
        for i in 0..4 {
            for swap in &swaps {
                let mut v: Value = serde_json::from_str(&full).unwrap();
                v["input"][i] = swap.clone();
                let _ = decode_request(v.to_string().as_bytes());
                for key in ["content", "output", "call_id", "arguments", "role", "type"] {
                    let mut v: Value = serde_json::from_str(&full).unwrap();
                    if let Some(o) = v["input"][i].as_object_mut() {
                        o.insert(key.into(), swap.clone());
                    }
                    let _ = decode_request(v.to_string().as_bytes());
                }
            }
        }
    }

    #[test]
    fn the_echo_repeats_what_the_client_sent() {
        let d = decode(&json!({
            "model": "m", "input": "hi", "instructions": "be brief", "temperature": 0.5,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"}, "max_output_tokens": 99,
            "metadata": {"k": "v"}, "reasoning": {"effort": "high", "summary": "auto"},
            "text": {"format": {"type": "json_object"}, "verbosity": "low"}, "truncation": "auto"
        }));
        let echo = serde_json::to_value(&d.echo).unwrap();
        let want = json!({
            "instructions": "be brief", "temperature": 0.5, "top_p": null, "max_output_tokens": 99,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": null}],
            "tool_choice": {"type": "function", "name": "f"}, "metadata": {"k": "v"},
            "reasoning": {"effort": "high", "summary": "auto"}, "parallel_tool_calls": true,
            "text": {"format": {"type": "json_object"}, "verbosity": "low"}, "truncation": "auto",
            "max_tool_calls": null, "prompt_cache_key": null, "safety_identifier": null,
            "service_tier": null, "top_logprobs": null, "user": null
        });
        assert_eq!(echo, want);
        assert_eq!(d.echo.model(), "m");
        let defaults = serde_json::to_value(decode(&with_input(json!("x"))).echo).unwrap();
        assert_eq!(defaults["tool_choice"], "auto");
        assert_eq!(defaults["text"], json!({"format": {"type": "text"}}));
        assert_eq!(defaults["tools"], json!([]));
        assert_eq!(defaults["truncation"], "disabled");
    }
}
