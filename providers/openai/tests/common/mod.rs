//! Helpers for the golden replay tests: load the recorded cassettes (raw `.sse` files
//! and go-vcr v2 YAML), build a gateway whose only provider `up` points at a mock
//! upstream, collect streams with a bounded wait, and reassemble streams from plain
//! `serde_json::Value`s (never through modelway's own types) so recordings and our
//! output are judged by the same independent accumulator.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use modelway_core::chat::ChatChunk;
use modelway_core::{ChunkStream, Config, Gateway, ProviderError, ProviderRegistry};
use modelway_openai::OpenAiFactory;
use serde::Deserialize;
use serde_json::{json, Value};

/// The api key every test provider is configured with.
pub const API_KEY: &str = "sk-modelway-test-key";

/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// Every preset kind this crate registers.
pub const ALL_KINDS: &[&str] = &[
    "openai",
    "openai-compatible",
    "openrouter",
    "groq",
    "together",
    "mistral",
    "deepseek",
    "fireworks",
    "xai",
    "ollama",
    "vllm",
];

/// A gateway with one provider named `up` of `kind` at `base_url`; `provider_toml` is
/// appended inside the provider's table (e.g. a `headers = {…}` line).
pub fn gateway(kind: &str, base_url: &str, provider_toml: &str) -> Gateway {
    let src = format!(
        "[providers.up]\nkind = \"{kind}\"\nbase_url = \"{base_url}\"\napi_key = \"{API_KEY}\"\n{provider_toml}\n\n[routing]\ntimeout = \"10s\"\nretries = 0\n"
    );
    gateway_from_src(&src)
}

/// A gateway from this config text, with every preset kind registered.
pub fn gateway_from_src(src: &str) -> Gateway {
    let cfg = Config::from_toml_str_with_env(src, &|_| None)
        .unwrap_or_else(|e| panic!("test config does not load: {e}\n{src}"));
    let mut registry = ProviderRegistry::new();
    for f in OpenAiFactory::all() {
        registry.register(f);
    }
    Gateway::new(cfg, registry)
        .unwrap_or_else(|e| panic!("test gateway does not build: {e}\n{src}"))
}

/// What a gateway stream produced.
#[derive(Debug, Default)]
pub struct Collected {
    /// Every `Ok` chunk before the first `Err`.
    pub chunks: Vec<ChatChunk>,
    /// The first `Err`, if any.
    pub error: Option<ProviderError>,
    /// Items of any kind after the first `Err` (must be 0: an `Err` ends the stream).
    pub after_error: usize,
}

/// Drains a stream to its end, bounded by [`WAIT`].
pub async fn collect(mut stream: ChunkStream) -> Collected {
    let drain = async move {
        let mut out = Collected::default();
        while let Some(item) = stream.next().await {
            match (item, out.error.is_some()) {
                (_, true) => out.after_error += 1,
                (Ok(c), false) => out.chunks.push(c),
                (Err(e), false) => out.error = Some(e),
            }
        }
        out
    };
    tokio::time::timeout(WAIT, drain)
        .await
        .expect("the gateway stream ended within the bounded wait")
}

// ------------------------------------------------------------------------------------
// Cassettes

/// One recorded exchange: the request body as the client sent it and the upstream's
/// answer, bytes unchanged.
#[derive(Debug, Clone)]
pub struct Case {
    /// `openai/vcr-fantasy/TestX/y/z.yaml#1` or `openai/sdk-recordings/x.sse`.
    pub name: String,
    /// The provider kind that matches the recording's upstream.
    pub kind: &'static str,
    pub request: Value,
    pub status: u16,
    pub content_type: String,
    pub response: String,
    /// For `.sse` files: the path under the fixtures dir, served with `Reply::Fixture`.
    pub fixture: Option<String>,
}

impl Case {
    pub fn is_stream(&self) -> bool {
        self.request.get("stream") == Some(&Value::Bool(true))
    }

    pub fn model(&self) -> &str {
        self.request["model"].as_str().expect("recorded model")
    }
}

#[derive(Deserialize)]
struct VcrFile {
    version: u32,
    interactions: Vec<VcrInteraction>,
}

#[derive(Deserialize)]
struct VcrInteraction {
    request: VcrRequest,
    response: VcrResponse,
}

#[derive(Deserialize)]
struct VcrRequest {
    body: String,
    method: String,
}

#[derive(Deserialize)]
struct VcrResponse {
    body: String,
    #[serde(default)]
    headers: BTreeMap<String, Vec<String>>,
    code: u16,
}

/// The provider kind matching a cassette's upstream (by its path under the fixtures dir).
pub fn kind_for(rel: &str) -> &'static str {
    if rel.starts_with("openai/") {
        "openai"
    } else if rel.contains("/TestOpenRouter") {
        "openrouter"
    } else if rel.contains("/groq-kimi-k2/") {
        "groq"
    } else if rel.contains("/xai-") {
        "xai"
    } else {
        "openai-compatible"
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().and_then(|e| e.to_str()) == Some("yaml") {
            out.push(p);
        }
    }
}

/// Every interaction of every cassette under `openai/vcr-fantasy` and
/// `openai-compatible/vcr-fantasy`, in path order.
pub fn vcr_cases() -> Vec<Case> {
    let root = modelway_testkit::fixtures_dir();
    let mut files = Vec::new();
    for dir in ["openai/vcr-fantasy", "openai-compatible/vcr-fantasy"] {
        yaml_files(&root.join(dir), &mut files);
    }
    let mut cases = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(&root)
            .expect("under the fixtures dir")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&path).expect("cassette readable");
        let file: VcrFile = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("{rel}: not a go-vcr cassette: {e}"));
        assert_eq!(file.version, 2, "{rel}: go-vcr format version");
        for (i, it) in file.interactions.into_iter().enumerate() {
            assert_eq!(it.request.method, "POST", "{rel}#{i}");
            let request: Value = serde_json::from_str(&it.request.body)
                .unwrap_or_else(|e| panic!("{rel}#{i}: request body is not JSON: {e}"));
            let content_type = it
                .response
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .and_then(|(_, v)| v.first().cloned())
                .unwrap_or_else(|| {
                    if request.get("stream") == Some(&Value::Bool(true)) {
                        "text/event-stream".to_owned()
                    } else {
                        "application/json".to_owned()
                    }
                });
            cases.push(Case {
                name: format!("{rel}#{i}"),
                kind: kind_for(&rel),
                request,
                status: it.response.code,
                content_type,
                response: it.response.body,
                fixture: None,
            });
        }
    }
    cases
}

/// The requests the openai-python tests sent for each SDK recording (per the owning
/// test, see `fixtures/openai/README.md`); the recordings themselves hold no request.
pub fn sdk_request(file: &str) -> Value {
    let location_schema = json!({
        "type": "json_schema",
        "json_schema": {
            "name": "Location",
            "strict": true,
            "schema": {
                "type": "object",
                "title": "Location",
                "properties": {
                    "city": {"type": "string", "title": "City"},
                    "temperature": {"type": "number", "title": "Temperature"},
                    "units": {"type": "string", "enum": ["c", "f"], "title": "Units"}
                },
                "required": ["city", "temperature", "units"],
                "additionalProperties": false
            }
        }
    });
    let weather_args_tool = json!({
        "type": "function",
        "function": {
            "name": "GetWeatherArgs",
            "strict": true,
            "parameters": {
                "type": "object",
                "title": "GetWeatherArgs",
                "properties": {
                    "city": {"type": "string", "title": "City"},
                    "country": {"type": "string", "title": "Country"},
                    "units": {"type": "string", "enum": ["c", "f"], "default": "c", "title": "Units"}
                },
                "required": ["city", "country", "units"],
                "additionalProperties": false
            }
        }
    });
    let get_weather = |strict: bool| {
        let mut f = json!({
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "state": {"type": "string"}},
                "required": ["city", "state"],
                "additionalProperties": false
            }
        });
        if strict {
            f["strict"] = json!(true);
        }
        json!({"type": "function", "function": f})
    };
    let user = |text: &str| json!([{"role": "user", "content": text}]);
    let weather_sf = "What's the weather like in SF?";
    let refused = "(a request the model refuses to answer)";
    let mut req = json!({
        "model": "gpt-4o-2024-08-06",
        "messages": user(weather_sf),
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    match file {
        "stream-text.sse" => {}
        "stream-json-schema.sse" => req["response_format"] = location_schema,
        "stream-json-schema-n3.sse" => {
            req["response_format"] = location_schema;
            req["n"] = json!(3);
        }
        "stream-max-tokens-1-length.sse" => {
            req["response_format"] = location_schema;
            req["max_tokens"] = json!(1);
        }
        "stream-refusal.sse" => {
            req["messages"] = user(refused);
            req["response_format"] = location_schema;
        }
        "stream-logprobs.sse" => {
            req["messages"] = user("Say foo");
            req["logprobs"] = json!(true);
        }
        "stream-refusal-logprobs.sse" => {
            req["messages"] = user(refused);
            req["logprobs"] = json!(true);
            req["response_format"] = location_schema;
        }
        "stream-tool-call.sse" => req["tools"] = json!([weather_args_tool]),
        "stream-parallel-tool-calls.sse" => {
            req["messages"] =
                user("What's the weather like in Edinburgh? And what's the price of AAPL?");
            req["tools"] = json!([weather_args_tool, {
                "type": "function",
                "function": {
                    "name": "get_stock_price",
                    "strict": true,
                    "parameters": {
                        "type": "object",
                        "properties": {"ticker": {"type": "string"}, "exchange": {"type": "string"}},
                        "required": ["ticker", "exchange"],
                        "additionalProperties": false
                    }
                }
            }]);
        }
        "stream-tool-call-strict.sse" => req["tools"] = json!([get_weather(true)]),
        "stream-tool-call-nonstrict.sse" => {
            req["messages"] = user("what's the weather in NYC?");
            req["tools"] = json!([get_weather(false)]);
        }
        "stream-json-object.sse" => {
            req["messages"] = user("What's the weather like in SF? Answer in JSON.");
            req["response_format"] = json!({"type": "json_object"});
        }
        other => panic!("no request known for sdk recording {other}"),
    }
    req
}

/// The 12 SDK recordings, served with `Reply::Fixture`.
pub fn sdk_cases() -> Vec<Case> {
    let dir = modelway_testkit::fixtures_dir().join("openai/sdk-recordings");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".sse"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let rel = format!("openai/sdk-recordings/{f}");
            Case {
                name: rel.clone(),
                kind: "openai",
                request: sdk_request(&f),
                status: 200,
                content_type: "text/event-stream; charset=utf-8".to_owned(),
                response: std::fs::read_to_string(dir.join(&f)).expect("recording readable"),
                fixture: Some(rel),
            }
        })
        .collect()
}

// ------------------------------------------------------------------------------------
// Independent SSE reading and stream reassembly

/// The `data` payloads of an SSE body, in order (comments skipped, multi-line data
/// joined with `\n`, any of `\r\n`/`\r`/`\n` as line end).
pub fn sse_data(body: &str) -> Vec<String> {
    let normalized = body.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in normalized.split('\n') {
        if line.is_empty() {
            if let Some(d) = cur.take() {
                out.push(d);
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut cur {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => cur = Some(value.to_owned()),
            }
        }
    }
    if let Some(d) = cur {
        out.push(d);
    }
    out
}

/// A recorded stream: its JSON chunks and whether it ended with `[DONE]`.
pub fn recorded_chunks(body: &str) -> (Vec<Value>, bool) {
    let data = sse_data(body);
    let done = data.last().map(String::as_str) == Some("[DONE]");
    let chunks = data
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("recorded chunk {d}: {e}")))
        .collect();
    (chunks, done)
}

/// One tool call assembled from its fragments by `index`. Every `id`, `type` and
/// `function.name` occurrence is kept, so a repeat shows.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ToolAsm {
    pub ids: Vec<String>,
    pub types: Vec<String>,
    pub names: Vec<String>,
    pub arguments: String,
}

/// One choice assembled the way openai-python's `accumulate_delta` does: strings are
/// concatenated; occurrences of one-shot fields are counted.
#[derive(Debug, Default, Clone)]
pub struct ChoiceAsm {
    pub content: String,
    pub refusal: String,
    pub reasoning_content: String,
    pub reasoning: String,
    pub reasoning_details: Vec<Value>,
    pub tool_calls: BTreeMap<u64, ToolAsm>,
    /// (ordinal of this choice's entry in the stream, role).
    pub roles: Vec<(usize, String)>,
    pub finishes: Vec<String>,
    pub logprobs_content: Vec<Value>,
    pub logprobs_refusal: Vec<Value>,
    /// How many chunk entries this choice had.
    pub entries: usize,
    /// Entries seen after this choice's first finish reason.
    pub entries_after_finish: usize,
    /// Tool-call fragments without an integer `index`.
    pub fragments_without_index: usize,
}

/// A whole stream, reassembled from JSON values.
#[derive(Debug, Default, Clone)]
pub struct Assembled {
    /// The `id` of each chunk, in order.
    pub ids: Vec<String>,
    /// The `object` of each chunk.
    pub objects: Vec<String>,
    pub choices: BTreeMap<u64, ChoiceAsm>,
    /// (chunk position, usage object, number of choices in that chunk) for every
    /// chunk carrying a non-null `usage`.
    pub usage: Vec<(usize, Value, usize)>,
    /// Positions of chunks with `choices: []` (or none).
    pub empty_choice_chunks: Vec<usize>,
    pub len: usize,
}

fn push_str(dst: &mut String, v: Option<&Value>) {
    if let Some(Value::String(s)) = v {
        dst.push_str(s);
    }
}

/// Reassembles chunks given as JSON values.
pub fn assemble(chunks: &[Value]) -> Assembled {
    let mut out = Assembled {
        len: chunks.len(),
        ..Assembled::default()
    };
    for (pos, c) in chunks.iter().enumerate() {
        out.ids
            .push(c.get("id").and_then(Value::as_str).unwrap_or("").to_owned());
        out.objects.push(
            c.get("object")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        );
        let choices = c.get("choices").and_then(Value::as_array);
        let n_choices = choices.map_or(0, Vec::len);
        if let Some(u) = c.get("usage").filter(|u| !u.is_null()) {
            out.usage.push((pos, u.clone(), n_choices));
        }
        if n_choices == 0 {
            out.empty_choice_chunks.push(pos);
        }
        for ch in choices.into_iter().flatten() {
            let index = ch.get("index").and_then(Value::as_u64).unwrap_or(0);
            let a = out.choices.entry(index).or_default();
            let ordinal = a.entries;
            a.entries += 1;
            if !a.finishes.is_empty() {
                a.entries_after_finish += 1;
            }
            let delta = ch.get("delta").cloned().unwrap_or(Value::Null);
            if let Some(Value::String(role)) = delta.get("role") {
                a.roles.push((ordinal, role.clone()));
            }
            push_str(&mut a.content, delta.get("content"));
            push_str(&mut a.refusal, delta.get("refusal"));
            push_str(&mut a.reasoning_content, delta.get("reasoning_content"));
            push_str(&mut a.reasoning, delta.get("reasoning"));
            if let Some(Value::Array(items)) = delta.get("reasoning_details") {
                a.reasoning_details.extend(items.iter().cloned());
            }
            if let Some(Value::Array(calls)) = delta.get("tool_calls") {
                for t in calls {
                    let Some(ti) = t.get("index").and_then(Value::as_u64) else {
                        a.fragments_without_index += 1;
                        continue;
                    };
                    let tc = a.tool_calls.entry(ti).or_default();
                    if let Some(Value::String(id)) = t.get("id") {
                        tc.ids.push(id.clone());
                    }
                    if let Some(Value::String(ty)) = t.get("type") {
                        tc.types.push(ty.clone());
                    }
                    if let Some(f) = t.get("function") {
                        if let Some(Value::String(n)) = f.get("name") {
                            tc.names.push(n.clone());
                        }
                        push_str(&mut tc.arguments, f.get("arguments"));
                    }
                }
            }
            if let Some(lp) = ch.get("logprobs").filter(|l| !l.is_null()) {
                if let Some(Value::Array(items)) = lp.get("content") {
                    a.logprobs_content.extend(items.iter().cloned());
                }
                if let Some(Value::Array(items)) = lp.get("refusal") {
                    a.logprobs_refusal.extend(items.iter().cloned());
                }
            }
            if let Some(Value::String(f)) = ch.get("finish_reason") {
                a.finishes.push(f.clone());
            }
        }
    }
    out
}

/// The first non-empty string of `v`, what a recording means by a repeated field.
pub fn first_non_empty(v: &[String]) -> Option<&str> {
    v.iter().map(String::as_str).find(|s| !s.is_empty())
}

// ------------------------------------------------------------------------------------
// JSON comparison

/// Lists where `got` and `want` differ, as JSON pointers (at most `limit` entries).
pub fn json_diff(got: &Value, want: &Value, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    diff_at(String::new(), got, want, &mut out, limit);
    out
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 160 {
        let mut end = 160;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

fn diff_at(path: String, got: &Value, want: &Value, out: &mut Vec<String>, limit: usize) {
    if out.len() >= limit || got == want {
        return;
    }
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                let p = format!("{path}/{k}");
                match g.get(k) {
                    Some(gv) => diff_at(p, gv, wv, out, limit),
                    None => out.push(format!("{p}: missing in ours (recorded {})", short(wv))),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) {
                    out.push(format!("{path}/{k}: only in ours ({})", short(gv)));
                }
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                diff_at(format!("{path}/{i}"), gv, wv, out, limit);
            }
        }
        _ => out.push(format!(
            "{path}: ours {} != recorded {}",
            short(got),
            short(want)
        )),
    }
    out.truncate(limit);
}
