//! Canonical (OpenAI) request → Gemini `GenerateContentRequest` (WIRE.md §4.2, §4.3,
//! §4.6).
//!
//! The upstream body is a tree of `Serialize` structs borrowing from the canonical
//! request, so nothing is copied but what must change. Rules, in the order applied:
//! - `system`/`developer` messages → `systemInstruction.parts[].text`, in order
//!   (mid-conversation ones are hoisted: Gemini has no system turn).
//! - `user` → `user` contents, `assistant` → `model` contents; consecutive turns of
//!   one role are merged, except that a turn of `functionResponse` parts is never
//!   merged with plain user text.
//! - Assistant `tool_calls` → `functionCall {name, args, id}` parts, `args` the parsed
//!   arguments (`""` → `{}`; anything but a JSON object is a 400), with the call's
//!   `extra_content.google.thought_signature` replayed as the part's
//!   `thoughtSignature` (a message-level one goes on the first text part). With
//!   `thought_signature_fallback`, a call turn with no signature at all gets Google's
//!   documented `skip_thought_signature_validator` on its first call.
//! - `tool` messages → `functionResponse {name, response, id}` parts, the name found
//!   through the assistant call with that id; consecutive ones share one turn.
//!   `response` is the content when it is a JSON object, else `{"result": content}`.
//! - A history that starts with a model tool-call turn gets a minimal user turn (`.`)
//!   before it (Gemini requires one).
//! - Images: `data:` URLs → `inlineData`; http(s) URLs → `fileData {mimeType,
//!   fileUri}` (mime type from the extension, else `image/jpeg`). Audio → `inlineData`
//!   `audio/wav|mp3`; files with `file_data` → `inlineData` (PDF and other types named
//!   by the data URL or the file name), `file_id` URLs → `fileData`.
//! - Tools → one `functionDeclarations` list. Schemas go as JSON Schema
//!   (`parametersJsonSchema`, without `$schema`), or with `schema = "openapi"`
//!   converted to Google's `Schema` subset (`parameters`): upper-case types,
//!   `["x","null"]` → `nullable`, `const` → `enum`, `oneOf` → `anyOf`, `$ref`s inlined,
//!   every other keyword (`additionalProperties`, `$schema`, `title`, `default`, …)
//!   removed.
//! - `response_format: json_object` → `responseMimeType: application/json`;
//!   `json_schema` adds the schema (`responseJsonSchema`, or `responseSchema`).
//! - Parameters Gemini cannot express: a hint ([`modelway_core::translate::HINTS`]:
//!   `user`, `safety_identifier`, `verbosity`, `prompt_cache_key`, …) is dropped and
//!   reported; anything else is a 400 naming it, or dropped and reported with
//!   `drop_unsupported`. The provider docs (`lib.rs`) have the table.
//! - Lossy by design, documented here: `name` on messages is dropped;
//!   `reasoning_content` on assistant messages is not replayed (Gemini does not
//!   take thoughts back; signatures carry the context); `reasoning_effort` becomes a
//!   `thinkingLevel` for Gemini 3 models and a `thinkingBudget` for older ones, with
//!   `includeThoughts` so summaries come back as `reasoning_content`. Gemini-native
//!   fields sent as extensions (`top_k`, `safety_settings`, `cached_content`,
//!   `thinking_config`, camelCase or snake_case) are forwarded.

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderName, Method, Request};
use http_body_util::Full;
use modelway_core::chat::{
    ChatRequest, ContentPart, Message, MessageContent, PartType, ResponseFormatType, Role,
    ToolChoice, ToolChoiceMode,
};
use modelway_core::http_client::upstream_request;
use modelway_core::translate::{invalid, split_data_url, Unsupported};
use modelway_core::{Attempt, ProviderError};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::GeminiProvider;

/// The thought signature Google documents for histories whose signatures are lost.
pub(crate) const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// How tool and response schemas are sent (the `schema` option).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub enum SchemaMode {
    /// `"json_schema"`: `parametersJsonSchema` / `responseJsonSchema`.
    #[default]
    #[serde(rename = "json_schema")]
    JsonSchema,
    /// `"openapi"`: `parameters` / `responseSchema`, converted to Google's OpenAPI
    /// subset.
    #[serde(rename = "openapi")]
    OpenApi,
}

/// Per-provider translation settings.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) provider: String,
    pub(crate) drop_unsupported: bool,
    pub(crate) schema: SchemaMode,
    pub(crate) signature_fallback: bool,
}

/// A translated request.
#[derive(Debug)]
pub(crate) struct Translated {
    pub(crate) body: Vec<u8>,
    /// Parameters dropped under `drop_unsupported`.
    pub(crate) dropped: Vec<String>,
}

/// Request fields that belong to the gateway (OpenRouter's routing dialect), consumed
/// before a provider is called; never an upstream parameter.
pub(crate) const GATEWAY_FIELDS: &[&str] = &["models", "provider", "usage", "transforms", "route"];

/// `reasoning_effort` → (`thinkingBudget` for Gemini 2.x, `thinkingLevel` for 3.x).
const EFFORTS: &[(&str, i64, &str)] = &[
    ("none", 0, "minimal"),
    ("minimal", 512, "minimal"),
    ("low", 1024, "low"),
    ("medium", 8192, "medium"),
    ("high", 24576, "high"),
    ("xhigh", 32768, "high"),
    ("max", 32768, "high"),
];

// ---------------------------------------------------------------------------------
// The upstream body.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<SystemInstruction<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    generation_config: GenerationConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_settings: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cached_content: Option<&'a Value>,
}

#[derive(Serialize)]
struct SystemInstruction<'a> {
    parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: Vec<Part<'a>>,
    /// A user turn of `functionResponse` parts (never merged with plain text).
    #[serde(skip)]
    responses: bool,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Part<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inline_data: Option<Blob<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_data: Option<FileRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_call: Option<FunctionCallOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_response: Option<FunctionResponseOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought_signature: Option<&'a str>,
}

impl<'a> Part<'a> {
    fn text(text: &'a str) -> Self {
        Part {
            text: Some(text),
            ..Part::default()
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Blob<'a> {
    mime_type: Cow<'a, str>,
    data: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileRef<'a> {
    mime_type: Cow<'a, str>,
    file_uri: &'a str,
}

#[derive(Serialize)]
struct FunctionCallOut<'a> {
    name: &'a str,
    args: Args<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

#[derive(Serialize)]
struct FunctionResponseOut<'a> {
    name: &'a str,
    response: ResponseOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

/// Function-call arguments: the client's JSON object as it is, or `{}` for none.
enum Args<'a> {
    Raw(&'a RawValue),
    Empty,
}

impl Serialize for Args<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Args::Raw(r) => r.serialize(s),
            Args::Empty => serde::ser::SerializeMap::end(s.serialize_map(Some(0))?),
        }
    }
}

/// A function response: the tool's JSON object, or its text as `{"result": text}`.
enum ResponseOut<'a> {
    Raw(&'a RawValue),
    Value(Value),
    Text(Cow<'a, str>),
}

impl Serialize for ResponseOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            ResponseOut::Raw(r) => r.serialize(s),
            ResponseOut::Value(v) => v.serialize(s),
            ResponseOut::Text(t) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("result", t)?;
                m.end()
            }
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolOut<'a> {
    function_declarations: Vec<FunctionDeclaration<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionDeclaration<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters_json_schema: Option<Cow<'a, Value>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    function_calling_config: FunctionCallingConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<Vec<&'a str>>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<Cow<'a, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<Cow<'a, Value>>,
}

impl GenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        self.stop_sequences.is_none()
            && self.candidate_count.is_none()
            && self.max_output_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_mime_type.is_none()
            && self.response_schema.is_none()
            && self.response_json_schema.is_none()
            && self.thinking_config.is_none()
    }
}

// ---------------------------------------------------------------------------------
// Loudness.

/// Collects what cannot be expressed: the first one fails the request, unless the
/// provider drops them.
/// The translation's view of the provider's options and its `drop_unsupported` rule.
struct Loud<'o> {
    opts: &'o Options,
    params: Unsupported<'o>,
}

impl<'o> Loud<'o> {
    fn new(opts: &'o Options) -> Self {
        Self {
            opts,
            params: Unsupported::new(&opts.provider, "Gemini", opts.drop_unsupported),
        }
    }

    /// `Ok(())` when the parameter is dropped (and recorded), else the 400.
    fn unsupported(&mut self, param: &str, why: &str) -> Result<(), ProviderError> {
        self.params.reject_or_drop(param, why)
    }
}

// ---------------------------------------------------------------------------------
// Translation.

/// Translates `req` into the upstream body for upstream `model` (the attempt's, not
/// `req.model`, which is the client's; it goes in the URL, see [`build`]).
pub(crate) fn translate(
    req: &ChatRequest,
    model: &str,
    opts: &Options,
) -> Result<Translated, ProviderError> {
    let mut loud = Loud::new(opts);
    let (system, contents) = messages(&req.messages, opts, &mut loud)?;
    let mut body = Body {
        contents,
        system_instruction: (!system.is_empty()).then_some(SystemInstruction { parts: system }),
        tools: Vec::new(),
        tool_config: None,
        generation_config: GenerationConfig::default(),
        safety_settings: None,
        cached_content: None,
    };
    parameters(req, &mut body, &mut loud)?;
    tools(req, &mut body, &mut loud)?;
    response_format(req, &mut body, &mut loud)?;
    thinking(req, model, &mut body)?;
    extras(req, &mut body, &mut loud)?;
    let bytes = serde_json::to_vec(&body).map_err(|e| ProviderError::InvalidRequest {
        message: format!("request cannot be serialised: {e}"),
        param: None,
    })?;
    Ok(Translated {
        body: bytes,
        dropped: loud.params.into_dropped(),
    })
}

fn parameters<'a>(
    req: &'a ChatRequest,
    body: &mut Body<'a>,
    loud: &mut Loud<'_>,
) -> Result<(), ProviderError> {
    let g = &mut body.generation_config;
    g.temperature = req.temperature;
    g.top_p = req.top_p;
    g.max_output_tokens = req.max_completion_tokens.or(req.max_tokens);
    if let Some(stop) = &req.stop {
        let seqs: Vec<&str> = match stop {
            modelway_core::chat::Stop::One(s) => vec![s.as_str()],
            modelway_core::chat::Stop::Many(v) => v.iter().map(String::as_str).collect(),
        };
        if !seqs.is_empty() {
            g.stop_sequences = Some(seqs);
        }
    }
    g.candidate_count = req.n.filter(|&n| n != 1);
    g.seed = req.seed;
    g.presence_penalty = req.presence_penalty;
    g.frequency_penalty = req.frequency_penalty;
    if req.logprobs == Some(true) {
        loud.unsupported(
            "logprobs",
            "modelway does not translate Gemini log probabilities",
        )?;
    }
    if req.top_logprobs.is_some_and(|n| n > 0) {
        loud.unsupported(
            "top_logprobs",
            "modelway does not translate Gemini log probabilities",
        )?;
    }
    if req.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        loud.unsupported("logit_bias", "Gemini has no token biases")?;
    }
    Ok(())
}

fn tools<'a>(
    req: &'a ChatRequest,
    body: &mut Body<'a>,
    loud: &mut Loud<'_>,
) -> Result<(), ProviderError> {
    let mut decls = Vec::new();
    for (i, tool) in req.tools.iter().flatten().enumerate() {
        match (tool.kind.as_str(), &tool.function) {
            ("function", Some(f)) => {
                let (parameters, parameters_json_schema) = match &f.parameters {
                    None | Some(Value::Null) => (None, None),
                    Some(p) => match loud.opts.schema {
                        SchemaMode::JsonSchema => (None, Some(json_schema(p))),
                        SchemaMode::OpenApi => (Some(openapi_schema(p)), None),
                    },
                };
                decls.push(FunctionDeclaration {
                    name: &f.name,
                    description: f.description.as_deref(),
                    parameters,
                    parameters_json_schema,
                });
            }
            (kind, _) => loud.unsupported(
                &format!("tools[{i}]"),
                &format!("only function tools can be offered, not `{kind}` tools"),
            )?,
        }
    }
    if decls.is_empty() {
        // Without tools, `tool_choice` and `parallel_tool_calls` mean nothing.
        return Ok(());
    }
    body.tools.push(ToolOut {
        function_declarations: decls,
    });
    if req.parallel_tool_calls == Some(false) {
        loud.unsupported(
            "parallel_tool_calls",
            "Gemini cannot be limited to one call per turn",
        )?;
    }
    let config = |mode, names| {
        Some(ToolConfig {
            function_calling_config: FunctionCallingConfig {
                mode,
                allowed_function_names: names,
            },
        })
    };
    body.tool_config = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Mode(ToolChoiceMode::Auto)) => config("AUTO", None),
        Some(ToolChoice::Mode(ToolChoiceMode::None)) => config("NONE", None),
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) => config("ANY", None),
        Some(ToolChoice::Mode(other)) => {
            loud.unsupported("tool_choice", &format!("unknown mode `{other}`"))?;
            None
        }
        Some(c @ ToolChoice::Object(o)) => {
            match (o.get("type").and_then(Value::as_str), c.forced_function()) {
                (Some("function") | None, Some(name)) => config("ANY", Some(vec![name])),
                (Some("allowed_tools"), _) => {
                    let allowed = o.get("allowed_tools");
                    let names: Option<Vec<&str>> = allowed
                        .and_then(|a| a.get("tools"))
                        .and_then(Value::as_array)
                        .map(|tools| {
                            tools
                                .iter()
                                .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                                .collect()
                        });
                    match (allowed.and_then(|a| a.get("mode")).and_then(Value::as_str), names) {
                        (Some("required"), Some(n)) if !n.is_empty() => config("ANY", Some(n)),
                        // Gemini allows names only with ANY or VALIDATED (calls or text,
                        // calls restricted to the names).
                        (Some("auto") | None, Some(n)) if !n.is_empty() => {
                            config("VALIDATED", Some(n))
                        }
                        _ => {
                            return Err(invalid(
                                "tool_choice",
                                "`allowed_tools` needs a mode (`auto` or `required`) and function tools",
                            ))
                        }
                    }
                }
                _ => {
                    loud.unsupported(
                        "tool_choice",
                        "only \"none\", \"auto\", \"required\", a named function or allowed_tools",
                    )?;
                    None
                }
            }
        }
    };
    Ok(())
}

/// A JSON Schema as `parametersJsonSchema` takes it: as sent, minus `$schema`.
fn json_schema(schema: &Value) -> Cow<'_, Value> {
    match schema {
        Value::Object(o) if o.contains_key("$schema") => {
            let mut o = o.clone();
            o.remove("$schema");
            Cow::Owned(Value::Object(o))
        }
        _ => Cow::Borrowed(schema),
    }
}

/// Keywords of Google's `Schema` (OpenAPI subset) kept as they are.
const OPENAPI_KEEP: &[&str] = &[
    "format",
    "description",
    "nullable",
    "enum",
    "required",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
    "propertyOrdering",
];

/// A JSON Schema converted to Google's `Schema` subset (see the module docs).
pub(crate) fn openapi_schema(schema: &Value) -> Value {
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .and_then(Value::as_object);
    convert_schema(schema, defs, 0)
}

fn convert_schema(schema: &Value, defs: Option<&Map<String, Value>>, depth: usize) -> Value {
    let Value::Object(o) = schema else {
        return Value::Object(Map::new());
    };
    if depth > 16 {
        // A recursive `$ref`: Google's subset cannot say more.
        return serde_json::json!({"type": "OBJECT"});
    }
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"));
        if let Some(target) = name.and_then(|n| defs?.get(n)) {
            let mut resolved = convert_schema(target, defs, depth + 1);
            if let (Some(d), Value::Object(m)) = (o.get("description"), &mut resolved) {
                m.insert("description".into(), d.clone());
            }
            return resolved;
        }
        return serde_json::json!({"type": "OBJECT"});
    }
    let mut out = Map::new();
    match o.get("type") {
        Some(Value::String(t)) => {
            out.insert("type".into(), Value::String(t.to_ascii_uppercase()));
        }
        Some(Value::Array(types)) => {
            let named: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            let real: Vec<&str> = named.iter().copied().filter(|t| *t != "null").collect();
            if real.len() < named.len() {
                out.insert("nullable".into(), Value::Bool(true));
            }
            match real.as_slice() {
                [one] => {
                    out.insert("type".into(), Value::String(one.to_ascii_uppercase()));
                }
                [] => {}
                many => {
                    let any: Vec<Value> = many
                        .iter()
                        .map(|t| serde_json::json!({"type": t.to_ascii_uppercase()}))
                        .collect();
                    out.insert("anyOf".into(), Value::Array(any));
                }
            }
        }
        _ => {}
    }
    for key in OPENAPI_KEEP {
        if let Some(v) = o.get(*key) {
            out.insert((*key).into(), v.clone());
        }
    }
    if let Some(c) = o.get("const") {
        out.insert("enum".into(), Value::Array(vec![c.clone()]));
    }
    if let Some(Value::Object(props)) = o.get("properties") {
        let converted: Map<String, Value> = props
            .iter()
            .map(|(k, v)| (k.clone(), convert_schema(v, defs, depth + 1)))
            .collect();
        out.insert("properties".into(), Value::Object(converted));
    }
    if let Some(items) = o.get("items") {
        out.insert("items".into(), convert_schema(items, defs, depth + 1));
    }
    if let Some(Value::Array(any)) = o.get("anyOf").or_else(|| o.get("oneOf")) {
        let converted = any
            .iter()
            .map(|s| convert_schema(s, defs, depth + 1))
            .collect();
        out.insert("anyOf".into(), Value::Array(converted));
    }
    if let Some(Value::Array(all)) = o.get("allOf") {
        // Merge the parts' properties: the common use is composition of objects.
        for s in all {
            if let Value::Object(part) = convert_schema(s, defs, depth + 1) {
                for (k, v) in part {
                    match (out.get_mut(&k), v) {
                        (Some(Value::Object(a)), Value::Object(b)) => a.extend(b),
                        (Some(_), _) => {}
                        (None, v) => {
                            out.insert(k, v);
                        }
                    }
                }
            }
        }
    }
    Value::Object(out)
}

/// `response_format` → `responseMimeType` (+ schema).
fn response_format<'a>(
    req: &'a ChatRequest,
    body: &mut Body<'a>,
    loud: &mut Loud<'_>,
) -> Result<(), ProviderError> {
    let Some(rf) = &req.response_format else {
        return Ok(());
    };
    let g = &mut body.generation_config;
    match &rf.kind {
        ResponseFormatType::Text => {}
        ResponseFormatType::JsonObject => g.response_mime_type = Some("application/json"),
        ResponseFormatType::JsonSchema => {
            let Some(schema) = rf.json_schema.as_ref().and_then(|j| j.schema.as_ref()) else {
                return Err(invalid(
                    "response_format",
                    "`response_format.json_schema.schema` is required",
                ));
            };
            g.response_mime_type = Some("application/json");
            match loud.opts.schema {
                SchemaMode::JsonSchema => g.response_json_schema = Some(json_schema(schema)),
                SchemaMode::OpenApi => g.response_schema = Some(openapi_schema(schema)),
            }
        }
        ResponseFormatType::Other(t) => {
            loud.unsupported("response_format", &format!("unknown type `{t}`"))?
        }
    }
    Ok(())
}

/// `reasoning_effort` → `thinkingConfig` (a client-sent `thinking_config` wins).
fn thinking<'a>(
    req: &'a ChatRequest,
    model: &str,
    body: &mut Body<'a>,
) -> Result<(), ProviderError> {
    let native = req
        .extra
        .get("thinking_config")
        .or_else(|| req.extra.get("thinkingConfig"))
        .filter(|v| !v.is_null());
    if let Some(t) = native {
        body.generation_config.thinking_config = Some(Cow::Borrowed(t));
        return Ok(());
    }
    let Some(effort) = req.reasoning_effort.as_deref() else {
        return Ok(());
    };
    let Some(&(_, budget, level)) = EFFORTS.iter().find(|(e, _, _)| *e == effort) else {
        return Err(invalid(
            "reasoning_effort",
            format!(
                "unknown reasoning_effort `{effort}`: use none, minimal, low, medium, high, xhigh or max"
            ),
        ));
    };
    let model = model.strip_prefix("models/").unwrap_or(model);
    let gemini3 = model.starts_with("gemini-3");
    let mut config = Map::new();
    if gemini3 {
        config.insert("thinkingLevel".into(), level.into());
    } else {
        config.insert("thinkingBudget".into(), budget.into());
    }
    if effort != "none" {
        config.insert("includeThoughts".into(), true.into());
    }
    body.generation_config.thinking_config = Some(Cow::Owned(Value::Object(config)));
    Ok(())
}

/// Unknown top-level fields: Gemini-native ones are forwarded, gateway ones and
/// no-effect ones ignored, the rest are OpenAI parameters Gemini cannot express.
fn extras<'a>(
    req: &'a ChatRequest,
    body: &mut Body<'a>,
    loud: &mut Loud<'_>,
) -> Result<(), ProviderError> {
    for (key, value) in &req.extra {
        let key = key.as_str();
        if value.is_null() || GATEWAY_FIELDS.contains(&key) {
            continue;
        }
        match (key, value) {
            ("thinking_config" | "thinkingConfig", _) => {}
            ("top_k" | "topK", v) => body.generation_config.top_k = Some(v),
            ("safety_settings" | "safetySettings", v) => body.safety_settings = Some(v),
            ("cached_content" | "cachedContent", v) => body.cached_content = Some(v),
            // What Gemini does anyway.
            ("store", Value::Bool(false)) => {}
            ("service_tier", Value::String(t)) if t == "auto" || t == "default" => {}
            ("modalities", Value::Array(m)) if m.iter().all(|x| x == "text") => {}
            // Hints (`verbosity`, `safety_identifier`, `prompt_cache_key`, …) are dropped
            // and listed; the rest would change the answer.
            _ => loud.unsupported(key, "Gemini has no such parameter")?,
        }
    }
    if req.user.is_some() {
        // An abuse-tracking id Gemini has no field for.
        loud.params.drop_hint("user");
    }
    Ok(())
}

/// The `systemInstruction` parts and the contents.
fn messages<'a>(
    msgs: &'a [Message],
    opts: &Options,
    loud: &mut Loud<'_>,
) -> Result<(Vec<Part<'a>>, Vec<Content<'a>>), ProviderError> {
    let mut system = Vec::new();
    let mut contents: Vec<Content<'a>> = Vec::with_capacity(msgs.len());
    // Tool-call id → function name, from the assistant messages seen so far.
    let mut names: HashMap<&'a str, &'a str> = HashMap::new();
    for (i, m) in msgs.iter().enumerate() {
        match &m.role {
            Role::System | Role::Developer => text_parts(m, i, &mut system, loud)?,
            Role::User => {
                let mut parts = Vec::new();
                user_parts(m, i, &mut parts, loud)?;
                push(&mut contents, "user", parts, false);
            }
            Role::Tool => {
                let part = function_response(m, i, &names)?;
                push(&mut contents, "user", vec![part], true);
            }
            Role::Assistant => {
                for call in m.tool_calls.iter().flatten() {
                    names.insert(&call.id, &call.function.name);
                }
                let parts = model_parts(m, i, opts, loud)?;
                push(&mut contents, "model", parts, false);
            }
            other => {
                return Err(invalid(
                    format!("messages[{i}].role"),
                    format!("role `{other}` cannot be sent to Gemini"),
                ))
            }
        }
    }
    if contents.is_empty() {
        return Err(invalid(
            "messages",
            "Gemini needs at least one user or assistant message with content",
        ));
    }
    let starts_with_call =
        contents[0].role == "model" && contents[0].parts.iter().any(|p| p.function_call.is_some());
    if starts_with_call {
        // A function-call turn must follow a user turn.
        contents.insert(
            0,
            Content {
                role: "user",
                parts: vec![Part::text(".")],
                responses: false,
            },
        );
    }
    Ok((system, contents))
}

/// Appends `parts` as a turn, merging into the previous turn of the same role —
/// except that function responses and plain user text stay in separate turns.
fn push<'a>(
    contents: &mut Vec<Content<'a>>,
    role: &'static str,
    parts: Vec<Part<'a>>,
    responses: bool,
) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role == role && last.responses == responses => last.parts.extend(parts),
        _ => contents.push(Content {
            role,
            parts,
            responses,
        }),
    }
}

/// Text-only content (system, developer) → text parts.
fn text_parts<'a>(
    m: &'a Message,
    i: usize,
    out: &mut Vec<Part<'a>>,
    loud: &mut Loud<'_>,
) -> Result<(), ProviderError> {
    match &m.content {
        None => {}
        Some(MessageContent::Text(s)) if !s.is_empty() => out.push(Part::text(s)),
        Some(MessageContent::Text(_)) => {}
        Some(MessageContent::Parts(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                match (&p.kind, p.text.as_deref()) {
                    (PartType::Text, Some(t)) => {
                        if !t.is_empty() {
                            out.push(Part::text(t));
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

fn user_parts<'a>(
    m: &'a Message,
    i: usize,
    out: &mut Vec<Part<'a>>,
    loud: &mut Loud<'_>,
) -> Result<(), ProviderError> {
    let Some(MessageContent::Parts(parts)) = &m.content else {
        return text_parts(m, i, out, loud);
    };
    for (j, p) in parts.iter().enumerate() {
        let at = || format!("messages[{i}].content[{j}]");
        match &p.kind {
            PartType::Text => {
                if let Some(t) = p.text.as_deref().filter(|t| !t.is_empty()) {
                    out.push(Part::text(t));
                }
            }
            PartType::ImageUrl => {
                let Some(img) = &p.image_url else {
                    return Err(invalid(at(), "an image_url part needs `image_url.url`"));
                };
                out.push(media(&img.url, None, "image/jpeg").map_err(|m| invalid(at(), m))?);
            }
            PartType::InputAudio => {
                let Some(audio) = &p.input_audio else {
                    return Err(invalid(at(), "an input_audio part needs `input_audio`"));
                };
                let mime = match audio.format.as_str() {
                    "wav" => "audio/wav",
                    "mp3" => "audio/mp3",
                    other => {
                        return Err(invalid(
                            at(),
                            format!("audio format `{other}`: Gemini takes wav or mp3 here"),
                        ))
                    }
                };
                out.push(Part {
                    inline_data: Some(Blob {
                        mime_type: Cow::Borrowed(mime),
                        data: &audio.data,
                    }),
                    ..Part::default()
                });
            }
            PartType::File => {
                let file = p.file.as_ref();
                let name = file.and_then(|f| f.filename.as_deref());
                let guessed = name.and_then(mime_from_name);
                let source = file.and_then(|f| f.file_data.as_deref().or(f.file_id.as_deref()));
                match (source, guessed) {
                    (Some(src), guessed) if src.starts_with("data:") || src.starts_with("http") => {
                        out.push(
                            media(src, guessed, "application/pdf").map_err(|m| invalid(at(), m))?,
                        );
                    }
                    (Some(data), Some(mime))
                        if file.is_some_and(|f| f.file_data.is_some()) =>
                    {
                        out.push(Part {
                            inline_data: Some(Blob {
                                mime_type: Cow::Borrowed(mime),
                                data,
                            }),
                            ..Part::default()
                        });
                    }
                    _ => loud.unsupported(
                        &at(),
                        "a file needs `file_data` (a data URL, or base64 with a `filename` that names its type) or an http(s) `file_id`",
                    )?,
                }
            }
            kind => loud.unsupported(
                &at(),
                &format!("content parts of type `{kind}` cannot be sent to Gemini"),
            )?,
        }
    }
    Ok(())
}

/// A MIME type from a file name or URL path extension.
fn mime_from_name(name: &str) -> Option<&'static str> {
    let path = name.split(['?', '#']).next().unwrap_or(name);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" => "text/html",
        "wav" => "audio/wav",
        "mp3" => "audio/mp3",
        "mp4" => "video/mp4",
        _ => return None,
    })
}

/// A data URL → `inlineData`; an http(s) URL → `fileData`.
fn media<'a>(
    url: &'a str,
    mime: Option<&'static str>,
    default_mime: &'static str,
) -> Result<Part<'a>, String> {
    if url.starts_with("data:") {
        let Some((mime, data)) = split_data_url(url) else {
            return Err("a data URL must be `data:<type>;base64,<data>`".into());
        };
        return Ok(Part {
            inline_data: Some(Blob {
                mime_type: Cow::Borrowed(mime),
                data,
            }),
            ..Part::default()
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        let mime = mime.or_else(|| mime_from_name(url)).unwrap_or(default_mime);
        return Ok(Part {
            file_data: Some(FileRef {
                mime_type: Cow::Borrowed(mime),
                file_uri: url,
            }),
            ..Part::default()
        });
    }
    Err("a URL must be http(s) or a base64 data URL".into())
}

/// The signature a message or tool call carries in `extra_content`.
fn signature(extra: &modelway_core::chat::Extra) -> Option<&str> {
    extra
        .get("extra_content")?
        .get("google")?
        .get("thought_signature")?
        .as_str()
        .filter(|s| !s.is_empty())
}

fn model_parts<'a>(
    m: &'a Message,
    i: usize,
    opts: &Options,
    loud: &mut Loud<'_>,
) -> Result<Vec<Part<'a>>, ProviderError> {
    let mut out = Vec::new();
    match &m.content {
        None => {}
        Some(MessageContent::Text(s)) if !s.is_empty() => out.push(Part::text(s)),
        Some(MessageContent::Text(_)) => {}
        Some(MessageContent::Parts(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                let text = match p.kind {
                    PartType::Refusal => p.refusal.as_deref(),
                    PartType::Text => p.text.as_deref(),
                    ref kind => {
                        loud.unsupported(
                            &format!("messages[{i}].content[{j}]"),
                            &format!("an assistant message can hold only text, not `{kind}`"),
                        )?;
                        None
                    }
                };
                if let Some(t) = text.filter(|t| !t.is_empty()) {
                    out.push(Part::text(t));
                }
            }
        }
    }
    if let Some(t) = m.refusal.as_deref().filter(|t| !t.is_empty()) {
        out.push(Part::text(t));
    }
    if let (Some(sig), Some(first)) = (signature(&m.extra), out.first_mut()) {
        first.thought_signature = Some(sig);
    }
    let calls_from = out.len();
    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
        let args = call.function.arguments.trim();
        let args = if args.is_empty() {
            Args::Empty
        } else {
            match serde_json::from_str::<&RawValue>(args) {
                Ok(raw) if raw.get().starts_with('{') => Args::Raw(raw),
                _ => {
                    return Err(invalid(
                        format!("messages[{i}].tool_calls[{j}].function.arguments"),
                        format!(
                            "tool call `{}` arguments must be a JSON object to be sent to Gemini",
                            call.id
                        ),
                    ))
                }
            }
        };
        out.push(Part {
            function_call: Some(FunctionCallOut {
                name: &call.function.name,
                args,
                id: Some(&call.id)
                    .filter(|id| !id.is_empty())
                    .map(String::as_str),
            }),
            thought_signature: signature(&call.extra),
            ..Part::default()
        });
    }
    let calls = &mut out[calls_from..];
    if opts.signature_fallback
        && !calls.is_empty()
        && calls.iter().all(|p| p.thought_signature.is_none())
    {
        // Gemini 3 rejects a replayed call turn without its signature; a client that
        // dropped `extra_content` still gets its history accepted.
        calls[0].thought_signature = Some(SKIP_SIGNATURE);
    }
    Ok(out)
}

fn function_response<'a>(
    m: &'a Message,
    i: usize,
    names: &HashMap<&'a str, &'a str>,
) -> Result<Part<'a>, ProviderError> {
    let Some(id) = m.tool_call_id.as_deref() else {
        return Err(invalid(
            format!("messages[{i}].tool_call_id"),
            "a tool message needs `tool_call_id`",
        ));
    };
    let Some(name) = names.get(id).copied() else {
        return Err(invalid(
            format!("messages[{i}].tool_call_id"),
            format!(
                "tool message answers `{id}`, but no earlier assistant message made a tool call with that id (Gemini needs the function's name)"
            ),
        ));
    };
    let response = match &m.content {
        None => ResponseOut::Text(Cow::Borrowed("")),
        Some(MessageContent::Text(s)) => match serde_json::from_str::<&RawValue>(s.trim()) {
            Ok(raw) if raw.get().starts_with('{') => ResponseOut::Raw(raw),
            _ => ResponseOut::Text(Cow::Borrowed(s)),
        },
        Some(MessageContent::Parts(parts)) => {
            let text: String = parts
                .iter()
                .filter_map(|p: &ContentPart| p.text.as_deref())
                .collect();
            match serde_json::from_str::<Value>(text.trim()) {
                Ok(v @ Value::Object(_)) => ResponseOut::Value(v),
                _ => ResponseOut::Text(Cow::Owned(text)),
            }
        }
    };
    Ok(Part {
        function_response: Some(FunctionResponseOut {
            name,
            response,
            id: Some(id).filter(|id| !id.is_empty()),
        }),
        ..Part::default()
    })
}

// ---------------------------------------------------------------------------------
// HTTP.

/// What may appear unescaped in the model segment (RFC 3986 unreserved).
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");

/// The key, in its header: never in the URL, where logs and traces would see it.
/// A client's own key (`attempt`'s, where the provider allows one) replaces ours.
pub(crate) fn gemini_headers<R>(
    p: &GeminiProvider,
    attempt: Option<&Attempt<'_, R>>,
    h: &mut http::HeaderMap,
) {
    let client = attempt.and_then(|a| a.client_key_header(""));
    if let Some(key) = client.or_else(|| p.api_key.clone()) {
        h.insert(X_GOOG_API_KEY, key);
    }
}

pub(crate) fn parse_uri(uri: String) -> Result<http::Uri, ProviderError> {
    uri.parse().map_err(|e| ProviderError::InvalidRequest {
        message: format!("invalid upstream request: {e}"),
        param: None,
    })
}

/// The upstream `POST …/models/{model}:generateContent` (or
/// `:streamGenerateContent?alt=sse`) request.
pub(crate) fn build(
    p: &GeminiProvider,
    model: &str,
    body: Vec<u8>,
    attempt: &Attempt<'_>,
    stream: bool,
) -> Result<Request<Full<Bytes>>, ProviderError> {
    let model = model.strip_prefix("models/").unwrap_or(model);
    if model.is_empty() {
        return Err(invalid("model", "the Gemini model name is empty"));
    }
    let method = if stream {
        ":streamGenerateContent?alt=sse"
    } else {
        ":generateContent"
    };
    let uri = parse_uri(format!(
        "{}/models/{}{method}",
        p.root,
        utf8_percent_encode(model, SEGMENT)
    ))?;
    Ok(upstream_request(
        Method::POST,
        uri,
        Some(Bytes::from(body)),
        stream,
        Some(attempt),
        &p.headers,
        |h| gemini_headers(p, Some(attempt), h),
    ))
}

/// The upstream `GET …/models` request.
pub(crate) fn models(p: &GeminiProvider) -> Result<Request<Full<Bytes>>, ProviderError> {
    let uri = parse_uri(format!("{}/models?pageSize=1000", p.root))?;
    Ok(upstream_request(
        Method::GET,
        uri,
        None,
        false,
        None::<&Attempt<'_>>,
        &p.headers,
        |h| gemini_headers(p, None::<&Attempt<'_>>, h),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn opts(drop: bool, schema: SchemaMode) -> Options {
        Options {
            provider: "gem".into(),
            drop_unsupported: drop,
            schema,
            signature_fallback: true,
        }
    }

    fn run_with(req: Value, o: &Options) -> Result<(Value, Vec<String>), ProviderError> {
        let req: ChatRequest = serde_json::from_value(req).unwrap();
        translate(&req, &req.model, o)
            .map(|t| (serde_json::from_slice(&t.body).unwrap(), t.dropped))
    }

    fn body(extra: Value) -> Value {
        let mut req =
            json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        run_with(req, &opts(false, SchemaMode::JsonSchema))
            .unwrap()
            .0
    }

    #[test]
    fn the_upstream_model_decides_not_the_clients() {
        // The client names an alias of a Gemini 3 model: the attempt's model decides
        // between a thinking level and a budget.
        let req: ChatRequest = serde_json::from_value(json!({"model": "gemini-2.5-flash",
            "reasoning_effort": "high", "messages": [{"role": "user", "content": "hi"}]}))
        .unwrap();
        let o = opts(false, SchemaMode::JsonSchema);
        let t = translate(&req, "models/gemini-3-pro-preview", &o).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(
            v["generationConfig"]["thinkingConfig"],
            json!({"thinkingLevel": "high", "includeThoughts": true})
        );
    }

    #[test]
    fn parameter_table() {
        let weather = json!([{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}]);
        // (OpenAI fields, JSON pointer in the Gemini body, expected value)
        let rows = [
            (
                json!({"max_tokens": 5}),
                "/generationConfig/maxOutputTokens",
                json!(5),
            ),
            (
                json!({"max_tokens": 5, "max_completion_tokens": 7}),
                "/generationConfig/maxOutputTokens",
                json!(7),
            ),
            (
                json!({"temperature": 1.5}),
                "/generationConfig/temperature",
                json!(1.5),
            ),
            (json!({"top_p": 0.5}), "/generationConfig/topP", json!(0.5)),
            (
                json!({"stop": "END"}),
                "/generationConfig/stopSequences",
                json!(["END"]),
            ),
            (
                json!({"n": 2}),
                "/generationConfig/candidateCount",
                json!(2),
            ),
            (json!({"seed": 9}), "/generationConfig/seed", json!(9)),
            (
                json!({"presence_penalty": 0.5}),
                "/generationConfig/presencePenalty",
                json!(0.5),
            ),
            (
                json!({"frequency_penalty": -0.5}),
                "/generationConfig/frequencyPenalty",
                json!(-0.5),
            ),
            (json!({"top_k": 40}), "/generationConfig/topK", json!(40)),
            (
                json!({"response_format": {"type": "json_object"}}),
                "/generationConfig/responseMimeType",
                json!("application/json"),
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object", "$schema": "x"}}}}),
                "/generationConfig/responseJsonSchema",
                json!({"type": "object"}),
            ),
            (
                json!({"reasoning_effort": "low"}),
                "/generationConfig/thinkingConfig",
                json!({"thinkingBudget": 1024, "includeThoughts": true}),
            ),
            (
                json!({"reasoning_effort": "none"}),
                "/generationConfig/thinkingConfig",
                json!({"thinkingBudget": 0}),
            ),
            (
                json!({"model": "gemini-3-pro-preview", "reasoning_effort": "high"}),
                "/generationConfig/thinkingConfig",
                json!({"thinkingLevel": "high", "includeThoughts": true}),
            ),
            (
                json!({"thinking_config": {"thinkingBudget": 128}}),
                "/generationConfig/thinkingConfig",
                json!({"thinkingBudget": 128}),
            ),
            (
                json!({"safety_settings": [{"category": "c", "threshold": "t"}]}),
                "/safetySettings/0/threshold",
                json!("t"),
            ),
            (
                json!({"tools": weather, "tool_choice": "auto"}),
                "/toolConfig/functionCallingConfig",
                json!({"mode": "AUTO"}),
            ),
            (
                json!({"tools": weather, "tool_choice": "none"}),
                "/toolConfig/functionCallingConfig",
                json!({"mode": "NONE"}),
            ),
            (
                json!({"tools": weather, "tool_choice": "required"}),
                "/toolConfig/functionCallingConfig",
                json!({"mode": "ANY"}),
            ),
            (
                json!({"tools": weather, "tool_choice": {"type": "function", "function": {"name": "w"}}}),
                "/toolConfig/functionCallingConfig",
                json!({"mode": "ANY", "allowedFunctionNames": ["w"]}),
            ),
            (
                json!({"tools": weather, "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "w"}}]}}}),
                "/toolConfig/functionCallingConfig",
                json!({"mode": "VALIDATED", "allowedFunctionNames": ["w"]}),
            ),
            (
                json!({"tools": weather}),
                "/tools/0/functionDeclarations/0",
                json!({"name": "w", "parametersJsonSchema": {"type": "object"}}),
            ),
            (
                json!({"user": "u", "safety_identifier": "s", "store": false}),
                "/contents/0/parts/0/text",
                json!("hi"),
            ),
        ];
        for (extra, pointer, want) in rows {
            let got = body(extra.clone());
            assert_eq!(got.pointer(pointer), Some(&want), "{extra} → {got}");
        }
        assert!(
            body(json!({"tool_choice": "required"}))
                .get("toolConfig")
                .is_none(),
            "no tools, no toolConfig"
        );
    }

    #[test]
    fn unsupported_parameters_are_loud_or_dropped() {
        let tools = json!([{"type": "function", "function": {"name": "w"}}]);
        let rows = [
            (json!({"logit_bias": {"1": 2}}), "logit_bias"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"top_logprobs": 2}), "top_logprobs"),
            (
                json!({"tools": tools, "parallel_tool_calls": false}),
                "parallel_tool_calls",
            ),
            (
                json!({"tools": [{"type": "custom", "custom": {"name": "g"}}]}),
                "tools[0]",
            ),
            (json!({"modalities": ["audio"]}), "modalities"),
            (
                json!({"audio": {"voice": "alloy", "format": "wav"}}),
                "audio",
            ),
            (
                json!({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}, {"role": "user", "content": "x"}]}),
                "messages[0].content[0]",
            ),
        ];
        for (extra, param) in rows {
            let mut req =
                json!({"model": "gemini-x", "messages": [{"role": "user", "content": "hi"}]});
            for (k, v) in extra.as_object().unwrap() {
                req[k] = v.clone();
            }
            match run_with(req.clone(), &opts(false, SchemaMode::JsonSchema)) {
                Err(ProviderError::InvalidRequest {
                    param: Some(p),
                    message,
                }) => {
                    assert_eq!(p, param, "{extra}");
                    assert!(message.contains("drop_unsupported"), "{message}");
                }
                other => panic!("{extra}: {other:?}"),
            }
            let (_, dropped) = run_with(req, &opts(true, SchemaMode::JsonSchema)).unwrap();
            assert_eq!(dropped, [param], "{extra}");
        }
    }

    #[test]
    fn hint_parameters_are_dropped_and_listed_even_without_drop_unsupported() {
        // (what the client sends, what is listed as dropped)
        let rows: Vec<(Value, &[&str])> = vec![
            (json!({"verbosity": "low"}), &["verbosity"]),
            (json!({"service_tier": "flex"}), &["service_tier"]),
            (json!({"store": true}), &["store"]),
            (json!({"metadata": {"k": "v"}}), &["metadata"]),
            (
                json!({"prediction": {"type": "content", "content": "x"}}),
                &["prediction"],
            ),
            (json!({"prompt_cache_key": "k"}), &["prompt_cache_key"]),
            (json!({"safety_identifier": "s"}), &["safety_identifier"]),
            (json!({"user": "u"}), &["user"]),
            // What Gemini does anyway: nothing to say.
            (
                json!({"store": false, "service_tier": "auto", "modalities": ["text"]}),
                &[],
            ),
        ];
        for (extra, want) in rows {
            for drop in [false, true] {
                let mut req =
                    json!({"model": "gemini-x", "messages": [{"role": "user", "content": "hi"}]});
                for (k, v) in extra.as_object().unwrap() {
                    req[k] = v.clone();
                }
                let (b, dropped) = run_with(req, &opts(drop, SchemaMode::JsonSchema))
                    .unwrap_or_else(|e| panic!("{extra}: a hint must not fail the request: {e}"));
                assert_eq!(dropped, want, "{extra} (drop_unsupported = {drop})");
                for hint in want {
                    assert!(b.get(*hint).is_none(), "{hint} sent: {b}");
                    assert!(
                        b["generationConfig"].get(*hint).is_none(),
                        "{hint} sent: {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn messages_translate_per_wire_rules() {
        let req = json!({"model": "gemini-x", "messages": [
            {"role": "system", "content": "sys"},
            {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "a", "arguments": ""}},
                {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "plain"},
            {"role": "tool", "tool_call_id": "c2", "content": "{\"ok\":true}"},
            {"role": "user", "content": [{"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x/cat.webp"}},
                {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "JVBE"}}]},
            {"role": "user", "content": "more"},
            {"role": "assistant", "content": "one", "extra_content": {"google": {"thought_signature": "sigT"}}},
            {"role": "assistant", "content": "two"}]});
        let (b, _) = run_with(req, &opts(false, SchemaMode::JsonSchema)).unwrap();
        assert_eq!(
            b["systemInstruction"],
            json!({"parts": [{"text": "sys"}, {"text": "dev"}]})
        );
        assert_eq!(
            b["contents"],
            json!([
                {"role": "user", "parts": [{"text": "."}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "a", "args": {}, "id": "c1"}, "thoughtSignature": SKIP_SIGNATURE},
                    {"functionCall": {"name": "b", "args": {"x": 1}, "id": "c2"}}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "a", "response": {"result": "plain"}, "id": "c1"}},
                    {"functionResponse": {"name": "b", "response": {"ok": true}, "id": "c2"}}]},
                {"role": "user", "parts": [
                    {"text": "look"},
                    {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                    {"fileData": {"mimeType": "image/webp", "fileUri": "https://x/cat.webp"}},
                    {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}},
                    {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
                    {"text": "more"}]},
                {"role": "model", "parts": [{"text": "one", "thoughtSignature": "sigT"}, {"text": "two"}]}
            ])
        );
    }

    #[test]
    fn client_errors_are_400s_even_when_dropping() {
        let rows = [
            (
                json!([{"role": "tool", "tool_call_id": "nope", "content": "x"}]),
                "messages[0].tool_call_id",
            ),
            (
                json!([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                json!([{"role": "system", "content": "only a system prompt"}]),
                "messages",
            ),
            (
                json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]),
                "messages[0].content[0]",
            ),
        ];
        for (messages, param) in rows {
            let req = json!({"model": "gemini-x", "messages": messages});
            match run_with(req, &opts(true, SchemaMode::JsonSchema)) {
                Err(ProviderError::InvalidRequest { param: Some(p), .. }) => assert_eq!(p, param),
                other => panic!("{param}: {other:?}"),
            }
        }
    }

    #[test]
    fn openapi_mode_sanitizes_schemas() {
        // BerriAI/litellm#14330: additionalProperties, $schema, title… are 400s in `parameters`.
        let schema = json!({"$schema": "http://json-schema.org/draft-07/schema#", "title": "T",
            "type": "object", "additionalProperties": false,
            "properties": {
                "city": {"type": "string", "default": "Paris", "description": "d"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                "kind": {"const": "x"},
                "loc": {"$ref": "#/$defs/Loc"},
                "tags": {"type": "array", "items": {"type": "integer"}},
                "either": {"oneOf": [{"type": "string"}, {"type": "number"}]}},
            "required": ["city"],
            "$defs": {"Loc": {"type": "object", "properties": {"lat": {"type": "number"}}}}});
        assert_eq!(
            openapi_schema(&schema),
            json!({"type": "OBJECT", "required": ["city"], "properties": {
                "city": {"type": "STRING", "description": "d"},
                "unit": {"type": "STRING", "nullable": true, "enum": ["c", "f"]},
                "kind": {"enum": ["x"]},
                "loc": {"type": "OBJECT", "properties": {"lat": {"type": "NUMBER"}}},
                "tags": {"type": "ARRAY", "items": {"type": "INTEGER"}},
                "either": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]}}})
        );
        let req = json!({"model": "g", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object", "title": "x"}}}});
        let (b, _) = run_with(req.clone(), &opts(false, SchemaMode::OpenApi)).unwrap();
        let decl = &b["tools"][0]["functionDeclarations"][0];
        assert!(
            decl.get("parametersJsonSchema").is_none() && decl["parameters"]["type"] == "OBJECT",
            "{decl}"
        );
        assert_eq!(
            b["generationConfig"]["responseSchema"],
            json!({"type": "OBJECT"})
        );
        // JSON Schema mode: everything Gemini's JSON Schema takes goes, `$schema` does not.
        let (b, _) = run_with(req, &opts(false, SchemaMode::JsonSchema)).unwrap();
        let p = &b["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"];
        assert!(
            p.get("$schema").is_none() && p["additionalProperties"] == false,
            "{p}"
        );
    }
}
