//! Golden replay tests: recorded Anthropic bytes → what the provider emits.
//!
//! Every Anthropic recording under `shared/fixtures/anthropic` (the SDK `.sse`
//! transcripts and every interaction of the go-vcr cassettes) is served by a
//! [`MockUpstream`] over real HTTP to an [`AnthropicProvider`]. The recording is
//! reassembled on its own, from plain JSON values, and our OpenAI-shaped answer must
//! say the same thing (text, tool calls, thinking, finish reason, usage), in the shape
//! OpenAI clients accumulate correctly. For cassettes, the request our translator sends
//! — built from the OpenAI request equivalent to the recorded one — must mean what the
//! recorded request means.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue};
use modelway_anthropic::AnthropicFactory;
use modelway_core::chat::{ChatChunk, ChatRequest, ChatResponse};
use modelway_core::{
    ApiKey, Attempt, Call, CallMeta, ChunkStream, HttpClient, Provider, ProviderConfig,
    ProviderError, Timeouts,
};
use modelway_testkit::{MockUpstream, Reply, SseStep, StreamEnd};
use serde::Deserialize;
use serde_json::{json, Value};

const API_KEY: &str = "sk-ant-test-secret";

fn provider(mock: &MockUpstream) -> Arc<dyn Provider> {
    let mut cfg = ProviderConfig::new("claude", "anthropic");
    cfg.base_url = Some(format!("http://{}", mock.addr()));
    cfg.api_key = Some(ApiKey::new(API_KEY));
    modelway_core::provider::build_provider(&AnthropicFactory, &cfg, &HttpClient::new())
        .expect("provider builds")
}

fn timeouts() -> Timeouts {
    Timeouts::uniform(Duration::from_secs(5))
}

/// One attempt of `req` at its own model, the answer parsed (the provider translates:
/// it always answers a parsed completion).
async fn chat(p: &dyn Provider, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
    let call = Call::new(req.clone());
    let answer = p.chat(&Attempt::new(&call, &req.model, timeouts())).await?;
    assert!(answer.dropped.is_empty(), "{:?}", answer.dropped);
    Ok(answer.value.into_response().expect("a chat completion"))
}

/// One streamed attempt of `req` at its own model.
async fn chat_stream(p: &dyn Provider, req: &ChatRequest) -> Result<ChunkStream, ProviderError> {
    let call = Call::new(req.clone());
    let answer = p
        .chat_stream(&Attempt::new(&call, &req.model, timeouts()))
        .await?;
    assert!(answer.dropped.is_empty(), "{:?}", answer.dropped);
    Ok(answer.value)
}

/// What a recording or our answer says, in one comparable shape.
#[derive(Debug, Default, PartialEq)]
struct Said {
    text: String,
    /// (id, name, arguments)
    tool_calls: Vec<(String, String, String)>,
    reasoning: String,
    thinking_blocks: Vec<Value>,
    finish: String,
    /// (prompt, completion, total, cached)
    usage: (u64, u64, u64, u64),
}

fn finish_of(stop_reason: &str) -> &'static str {
    match stop_reason {
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

fn usage_of(u: &Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let prompt =
        n("input_tokens") + n("cache_creation_input_tokens") + n("cache_read_input_tokens");
    let completion = n("output_tokens");
    (
        prompt,
        completion,
        prompt + completion,
        n("cache_read_input_tokens"),
    )
}

/// Reassembles a recorded whole message.
fn recorded_message(m: &Value) -> Said {
    let mut s = Said::default();
    for b in m["content"].as_array().unwrap() {
        match b["type"].as_str().unwrap() {
            "text" => s.text.push_str(b["text"].as_str().unwrap()),
            "tool_use" => s.tool_calls.push((
                b["id"].as_str().unwrap().into(),
                b["name"].as_str().unwrap().into(),
                b["input"].to_string(),
            )),
            "thinking" => {
                s.reasoning.push_str(b["thinking"].as_str().unwrap());
                s.thinking_blocks.push(json!({"type": "thinking",
                    "thinking": b["thinking"], "signature": b["signature"]}));
            }
            _ => {}
        }
    }
    s.finish = finish_of(m["stop_reason"].as_str().unwrap()).into();
    s.usage = usage_of(&m["usage"]);
    s
}

/// Reassembles a recorded stream from its events, as plain JSON.
fn recorded_stream(body: &[u8]) -> Said {
    let mut s = Said::default();
    let mut usage = serde_json::Map::new();
    // Anthropic block index → position in `tool_calls` / `thinking_blocks`.
    let mut tools: BTreeMap<u64, usize> = BTreeMap::new();
    let mut thinking: BTreeMap<u64, usize> = BTreeMap::new();
    let mut stopped = false;
    for ev in modelway_core::sse::SseDecoder::decode_all(body) {
        if stopped {
            break;
        }
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        let index = v["index"].as_u64().unwrap_or(0);
        match v["type"].as_str().unwrap() {
            "message_start" => usage.extend(v["message"]["usage"].as_object().unwrap().clone()),
            "content_block_start" => {
                let b = &v["content_block"];
                match b["type"].as_str().unwrap() {
                    "tool_use" => {
                        tools.insert(index, s.tool_calls.len());
                        s.tool_calls.push((
                            b["id"].as_str().unwrap().into(),
                            b["name"].as_str().unwrap().into(),
                            String::new(),
                        ));
                    }
                    "thinking" => {
                        thinking.insert(index, s.thinking_blocks.len());
                        s.thinking_blocks
                            .push(json!({"type": "thinking", "thinking": "", "signature": ""}));
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                let append = |target: &mut Value, key: &str, piece: &str| {
                    let now = target[key].as_str().unwrap().to_owned() + piece;
                    target[key] = json!(now);
                };
                match d["type"].as_str().unwrap() {
                    "text_delta" => s.text.push_str(d["text"].as_str().unwrap()),
                    "input_json_delta" => {
                        s.tool_calls[tools[&index]]
                            .2
                            .push_str(d["partial_json"].as_str().unwrap());
                    }
                    "thinking_delta" => {
                        let piece = d["thinking"].as_str().unwrap();
                        s.reasoning.push_str(piece);
                        append(&mut s.thinking_blocks[thinking[&index]], "thinking", piece);
                    }
                    "signature_delta" => append(
                        &mut s.thinking_blocks[thinking[&index]],
                        "signature",
                        d["signature"].as_str().unwrap(),
                    ),
                    _ => {}
                }
            }
            "message_delta" => {
                s.finish = finish_of(v["delta"]["stop_reason"].as_str().unwrap()).into();
                usage.extend(v["usage"].as_object().unwrap().clone());
            }
            "message_stop" => stopped = true,
            _ => {}
        }
    }
    for call in &mut s.tool_calls {
        if call.2.is_empty() {
            call.2 = "{}".into();
        }
    }
    s.usage = usage_of(&Value::Object(usage));
    s
}

fn said_usage(u: &Value) -> (u64, u64, u64, u64) {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    (
        n(&u["prompt_tokens"]),
        n(&u["completion_tokens"]),
        n(&u["total_tokens"]),
        n(&u["prompt_tokens_details"]["cached_tokens"]),
    )
}

fn ours_message(r: &ChatResponse) -> Said {
    let v = serde_json::to_value(r).unwrap();
    let m = &v["choices"][0]["message"];
    let mut s = Said {
        text: m["content"].as_str().unwrap_or_default().into(),
        reasoning: m["reasoning_content"].as_str().unwrap_or_default().into(),
        thinking_blocks: m["thinking_blocks"].as_array().cloned().unwrap_or_default(),
        finish: v["choices"][0]["finish_reason"].as_str().unwrap().into(),
        usage: said_usage(&v["usage"]),
        ..Said::default()
    };
    for c in m["tool_calls"].as_array().into_iter().flatten() {
        assert_eq!(c["type"], "function");
        s.tool_calls.push((
            c["id"].as_str().unwrap().into(),
            c["function"]["name"].as_str().unwrap().into(),
            c["function"]["arguments"].as_str().unwrap().into(),
        ));
    }
    s
}

/// Assembles our chunks the way openai-python's accumulator does, checking on the
/// way the rules it relies on; problems go to `fails`.
fn ours_stream(chunks: &[ChatChunk], fails: &mut Vec<String>) -> Said {
    let mut s = Said::default();
    let mut roles = 0;
    let mut finishes = Vec::new();
    let mut calls: BTreeMap<u64, (Vec<String>, Vec<String>, String)> = BTreeMap::new();
    let mut blocks: BTreeMap<u64, Value> = BTreeMap::new();
    let (id, model) = (&chunks[0].id, &chunks[0].model);
    for (n, c) in chunks.iter().enumerate() {
        let v = serde_json::to_value(c).unwrap();
        if c.id != *id || c.model != *model {
            fails.push(format!("chunk {n}: id/model changed"));
        }
        if let Some(u) = v.get("usage") {
            if n + 1 != chunks.len() || !c.choices.is_empty() {
                fails.push(format!(
                    "chunk {n}: usage outside the final empty-choices chunk"
                ));
            }
            s.usage = said_usage(u);
            continue;
        }
        if c.choices.len() != 1 {
            fails.push(format!("chunk {n}: {} choices", c.choices.len()));
            continue;
        }
        if !finishes.is_empty() {
            fails.push(format!("chunk {n}: content after the finish chunk"));
        }
        let ch = &v["choices"][0];
        let d = &ch["delta"];
        if d.get("role").is_some() {
            roles += 1;
        }
        if let Some(f) = ch["finish_reason"].as_str() {
            finishes.push(f.to_owned());
        }
        s.text += d["content"].as_str().unwrap_or_default();
        s.reasoning += d["reasoning_content"].as_str().unwrap_or_default();
        for b in d["thinking_blocks"].as_array().into_iter().flatten() {
            let mut b = b.clone();
            let i = b["index"].as_u64().expect("thinking block index");
            b.as_object_mut().unwrap().remove("index");
            blocks.insert(i, b);
        }
        for t in d["tool_calls"].as_array().into_iter().flatten() {
            let Some(i) = t["index"].as_u64() else {
                fails.push(format!("chunk {n}: tool-call fragment without index"));
                continue;
            };
            let e = calls.entry(i).or_default();
            if let Some(id) = t["id"].as_str() {
                e.0.push(id.into());
            }
            if let Some(name) = t["function"]["name"].as_str() {
                e.1.push(name.into());
            }
            e.2 += t["function"]["arguments"].as_str().unwrap_or_default();
        }
    }
    if roles != 1 {
        fails.push(format!("{roles} role deltas, want 1"));
    }
    if finishes.len() != 1 {
        fails.push(format!("finish reasons {finishes:?}, want exactly one"));
    }
    s.finish = finishes.first().cloned().unwrap_or_default();
    for (i, (ids, names, args)) in calls {
        if ids.len() != 1 || names.len() != 1 {
            fails.push(format!(
                "tool call {i}: ids {ids:?} names {names:?}, want one of each"
            ));
        }
        let first = |v: &[String]| v.first().cloned().unwrap_or_default();
        s.tool_calls.push((first(&ids), first(&names), args));
    }
    s.thinking_blocks = blocks.into_values().collect();
    s
}

/// Compares what was said; arguments compare as JSON when both parse.
fn compare(ours: &Said, rec: &Said, fails: &mut Vec<String>) {
    let mut eq = |what: &str, got: String, want: String| {
        if got != want {
            fails.push(format!("{what}: ours {got} != recorded {want}"));
        }
    };
    eq(
        "text",
        format!("{:?}", ours.text),
        format!("{:?}", rec.text),
    );
    eq(
        "reasoning",
        format!("{:?}", ours.reasoning),
        format!("{:?}", rec.reasoning),
    );
    eq(
        "thinking_blocks",
        format!("{:?}", ours.thinking_blocks),
        format!("{:?}", rec.thinking_blocks),
    );
    eq("finish", ours.finish.clone(), rec.finish.clone());
    eq(
        "usage",
        format!("{:?}", ours.usage),
        format!("{:?}", rec.usage),
    );
    eq(
        "tool-call count",
        ours.tool_calls.len().to_string(),
        rec.tool_calls.len().to_string(),
    );
    for (o, r) in ours.tool_calls.iter().zip(&rec.tool_calls) {
        eq("tool id", o.0.clone(), r.0.clone());
        eq("tool name", o.1.clone(), r.1.clone());
        let parse = |s: &str| serde_json::from_str::<Value>(s).ok();
        match (parse(&o.2), parse(&r.2)) {
            (Some(a), Some(b)) => eq("tool arguments", a.to_string(), b.to_string()),
            _ => eq("tool arguments (raw)", o.2.clone(), r.2.clone()),
        }
    }
}

async fn collect(stream: modelway_core::ChunkStream) -> Result<Vec<ChatChunk>, ProviderError> {
    let all = tokio::time::timeout(
        Duration::from_secs(10),
        modelway_core::stream::normalize(stream, true).collect::<Vec<_>>(),
    )
    .await
    .expect("stream finished within 10 s");
    all.into_iter().collect()
}

fn split_frames(body: &[u8], size: usize) -> Vec<SseStep> {
    let bytes = Bytes::copy_from_slice(body);
    (0..bytes.len())
        .step_by(size)
        .map(|start| SseStep {
            delay: Duration::ZERO,
            data: bytes.slice(start..(start + size).min(bytes.len())),
        })
        .collect()
}

fn stream_request() -> ChatRequest {
    serde_json::from_value(json!({"model": "claude-x", "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]}))
    .unwrap()
}

#[tokio::test]
async fn sdk_transcripts_replay_event_by_event_and_split_anywhere() {
    let dir = modelway_testkit::fixtures_dir().join("anthropic/sdk-fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sse"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "{names:?}");
    let mock = MockUpstream::start().await;
    let p = provider(&mock);
    let mut fails = Vec::new();
    for name in &names {
        let body = std::fs::read(dir.join(name)).unwrap();
        let rec = recorded_stream(&body);
        for split in [None, Some(37)] {
            match split {
                None => mock.push(Reply::Fixture(format!("anthropic/sdk-fixtures/{name}"))),
                Some(n) => mock.push(Reply::Sse {
                    events: split_frames(&body, n),
                    end: StreamEnd::Close,
                }),
            }
            let mut local = Vec::new();
            match chat_stream(p.as_ref(), &stream_request()).await {
                Err(e) => local.push(format!("chat_stream failed: {e}")),
                Ok(stream) => match collect(stream).await {
                    Err(e) => local.push(format!("stream failed: {e}")),
                    Ok(chunks) => {
                        let ours = ours_stream(&chunks, &mut local);
                        compare(&ours, &rec, &mut local);
                    }
                },
            }
            fails.extend(
                local
                    .into_iter()
                    .map(|f| format!("{name} split {split:?}: {f}")),
            );
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
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
}

#[derive(Deserialize)]
struct VcrResponse {
    body: String,
    #[serde(default)]
    headers: BTreeMap<String, Vec<String>>,
    code: u16,
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
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

/// The OpenAI request a client would send to mean what `a` (an Anthropic request)
/// means — the reverse of the translation, written independently of it.
fn openai_equivalent(a: &Value) -> Value {
    let text_part = |b: &Value| {
        let mut p = json!({"type": "text", "text": b["text"]});
        if let Some(cc) = b.get("cache_control") {
            p["cache_control"] = cc.clone();
        }
        p
    };
    let mut messages = Vec::new();
    if let Some(system) = a["system"].as_array() {
        messages.push(
            json!({"role": "system", "content": system.iter().map(text_part).collect::<Vec<_>>()}),
        );
    }
    for m in a["messages"].as_array().unwrap() {
        let blocks = m["content"].as_array().unwrap();
        if m["role"] == "assistant" {
            let mut msg = json!({"role": "assistant"});
            let texts: Vec<Value> = blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .map(text_part)
                .collect();
            if !texts.is_empty() {
                msg["content"] = json!(texts);
            }
            let thinking: Vec<Value> = blocks
                .iter()
                .filter(|b| b["type"] == "thinking" || b["type"] == "redacted_thinking")
                .cloned()
                .collect();
            if !thinking.is_empty() {
                msg["thinking_blocks"] = json!(thinking);
            }
            let calls: Vec<Value> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .map(|b| {
                    let mut c = json!({"id": b["id"], "type": "function", "function": {
                        "name": b["name"], "arguments": b["input"].to_string()}});
                    if let Some(cc) = b.get("cache_control") {
                        c["cache_control"] = cc.clone();
                    }
                    c
                })
                .collect();
            if !calls.is_empty() {
                msg["tool_calls"] = json!(calls);
            }
            messages.push(msg);
            continue;
        }
        let mut parts = Vec::new();
        for b in blocks {
            match b["type"].as_str().unwrap() {
                "tool_result" => {
                    let mut t = json!({"role": "tool", "tool_call_id": b["tool_use_id"],
                        "content": b["content"].as_array().unwrap().iter().map(text_part).collect::<Vec<_>>()});
                    if let Some(cc) = b.get("cache_control") {
                        t["cache_control"] = cc.clone();
                    }
                    messages.push(t);
                }
                "text" => parts.push(text_part(b)),
                "image" => parts.push(json!({"type": "image_url", "image_url": {"url": format!(
                    "data:{};base64,{}",
                    b["source"]["media_type"].as_str().unwrap(),
                    b["source"]["data"].as_str().unwrap()
                )}})),
                other => panic!("no OpenAI equivalent for a `{other}` block"),
            }
        }
        if !parts.is_empty() {
            messages.push(json!({"role": "user", "content": parts}));
        }
    }
    let mut o = json!({"model": a["model"], "messages": messages, "max_tokens": a["max_tokens"]});
    if let Some(tools) = a["tools"].as_array() {
        o["tools"] = json!(tools
            .iter()
            .map(|t| {
                let mut f = json!({"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}});
                if let Some(d) = t.get("description") {
                    f["function"]["description"] = d.clone();
                }
                if let Some(cc) = t.get("cache_control") {
                    f["cache_control"] = cc.clone();
                }
                f
            })
            .collect::<Vec<_>>());
    }
    if let Some(tc) = a.get("tool_choice") {
        match tc["type"].as_str().unwrap() {
            "auto" => {}
            "any" => o["tool_choice"] = json!("required"),
            "none" => o["tool_choice"] = json!("none"),
            "tool" => {
                o["tool_choice"] = json!({"type": "function", "function": {"name": tc["name"]}})
            }
            other => panic!("tool_choice {other}"),
        }
        if tc["disable_parallel_tool_use"] == true {
            o["parallel_tool_calls"] = json!(false);
        }
    }
    if let Some(t) = a.get("thinking") {
        // An Anthropic-native extension the provider forwards.
        o["thinking"] = t.clone();
    }
    if a["stream"] == true {
        o["stream"] = json!(true);
        o["stream_options"] = json!({"include_usage": true});
    }
    o
}

/// Drops what means the same as its absence: `tool_choice` auto without
/// `disable_parallel_tool_use`, and `disable_parallel_tool_use: false`.
fn normalize_request(mut a: Value) -> Value {
    if let Some(tc) = a.get_mut("tool_choice").and_then(Value::as_object_mut) {
        if tc.get("disable_parallel_tool_use") == Some(&json!(false)) {
            tc.remove("disable_parallel_tool_use");
        }
        if tc.len() == 1 && tc.get("type") == Some(&json!("auto")) {
            a.as_object_mut().unwrap().remove("tool_choice");
        }
    }
    a
}

fn diff(got: &Value, want: &Value, path: String, out: &mut Vec<String>) {
    if got == want || out.len() > 10 {
        return;
    }
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for k in g
                .keys()
                .chain(w.keys())
                .collect::<std::collections::BTreeSet<_>>()
            {
                diff(
                    g.get(k).unwrap_or(&Value::Null),
                    w.get(k).unwrap_or(&Value::Null),
                    format!("{path}/{k}"),
                    out,
                );
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                diff(a, b, format!("{path}/{i}"), out);
            }
        }
        _ => {
            let short = |v: &Value| v.to_string().chars().take(160).collect::<String>();
            out.push(format!(
                "{path}: ours {} != recorded {}",
                short(got),
                short(want)
            ));
        }
    }
}

#[tokio::test]
async fn every_cassette_interaction_replays_and_its_request_round_trips() {
    let root = modelway_testkit::fixtures_dir();
    let mut files = Vec::new();
    yaml_files(&root.join("anthropic/vcr-fantasy"), &mut files);
    let mock = MockUpstream::start().await;
    let p = provider(&mock);
    let mut fails = Vec::new();
    let mut seen = 0;
    for path in files {
        let rel = path.strip_prefix(&root).unwrap().display().to_string();
        let file: VcrFile = serde_norway::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(file.version, 2, "{rel}");
        for (i, it) in file.interactions.into_iter().enumerate() {
            seen += 1;
            assert_eq!(it.response.code, 200, "{rel}#{i}");
            let recorded_req: Value = serde_json::from_str(&it.request.body).unwrap();
            let content_type = it
                .response
                .headers
                .get("Content-Type")
                .and_then(|v| v.first())
                .cloned()
                .unwrap_or_else(|| "application/json".into());
            mock.reset();
            mock.push(Reply::Raw {
                status: 200,
                content_type,
                body: Bytes::from(it.response.body.clone()),
            });
            let client: ChatRequest =
                serde_json::from_value(openai_equivalent(&recorded_req)).unwrap();
            let mut local = Vec::new();
            let body = it.response.body.as_bytes();
            let stream = recorded_req["stream"] == true;
            let ours = if stream {
                match chat_stream(p.as_ref(), &client).await {
                    Ok(s) => match collect(s).await {
                        Ok(chunks) => Some(ours_stream(&chunks, &mut local)),
                        Err(e) => {
                            local.push(format!("stream failed: {e}"));
                            None
                        }
                    },
                    Err(e) => {
                        local.push(format!("chat_stream failed: {e}"));
                        None
                    }
                }
            } else {
                match chat(p.as_ref(), &client).await {
                    Ok(r) => Some(ours_message(&r)),
                    Err(e) => {
                        local.push(format!("chat failed: {e}"));
                        None
                    }
                }
            };
            if let Some(ours) = ours {
                let rec = if stream {
                    recorded_stream(body)
                } else {
                    recorded_message(&serde_json::from_slice(body).unwrap())
                };
                compare(&ours, &rec, &mut local);
            }
            let sent = mock.requests();
            if sent.len() != 1 {
                local.push(format!("upstream got {} requests", sent.len()));
            } else {
                diff(
                    &normalize_request(sent[0].json()),
                    &normalize_request(recorded_req),
                    String::new(),
                    &mut local,
                );
            }
            fails.extend(local.into_iter().map(|f| format!("{rel}#{i}: {f}")));
        }
    }
    assert_eq!(seen, 30, "cassette interactions");
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

#[tokio::test]
async fn upstream_requests_carry_anthropic_headers_and_no_client_credentials() {
    let mock = MockUpstream::start().await;
    let p = provider(&mock);
    let meta = CallMeta {
        request_id: "req_1".into(),
        headers: vec![
            (
                HeaderName::from_static("traceparent"),
                HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ),
            (
                HeaderName::from_static("authorization"),
                HeaderValue::from_static("Bearer client-key"),
            ),
        ],
        ..CallMeta::default()
    };
    let req: ChatRequest = serde_json::from_value(json!({"model": "claude-x",
        "messages": [{"role": "user", "content": "hello"}]}))
    .unwrap();
    let call = Call::new(req).with_meta(meta);
    // The upstream model is the attempt's, not the one the client named.
    let answer = p
        .chat(&Attempt::new(&call, "claude-upstream", timeouts()))
        .await
        .unwrap();
    assert!(answer.dropped.is_empty(), "{:?}", answer.dropped);
    let r = answer.value.into_response().unwrap();
    assert_eq!(r.choices[0].message.content.as_deref(), Some("Echo: hello"));
    let sent = &mock.requests()[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(sent.header("x-api-key"), Some(API_KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(
        sent.header("traceparent"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(sent.json()["max_tokens"], 4096);
    assert_eq!(sent.json()["model"], "claude-upstream");

    // The models listing goes to the same base with the same auth.
    let models = p.models().await.unwrap();
    assert!(!models.is_empty());
    let listed = mock.requests();
    assert_eq!(listed.last().unwrap().path, "/v1/models");
    assert_eq!(listed.last().unwrap().header("x-api-key"), Some(API_KEY));
}

#[tokio::test]
async fn failures_mid_stream_are_errors_not_truncations() {
    let mock = MockUpstream::start().await;
    let p = provider(&mock);
    let body = std::fs::read(
        modelway_testkit::fixtures_dir().join("anthropic/sdk-fixtures/basic_response.sse"),
    )
    .unwrap();
    let cut = &body[..body.len() / 2];
    // The first three whole events.
    let whole = body
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == b"\n\n")
        .nth(2)
        .map(|(i, _)| &body[..i + 2])
        .unwrap();
    let overloaded = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    type Row<'a> = (&'a str, Reply, fn(&ProviderError) -> bool);
    let rows: Vec<Row<'_>> = vec![
        (
            "body ends before message_stop",
            Reply::Sse {
                events: vec![SseStep::raw(&String::from_utf8_lossy(cut))],
                end: StreamEnd::Close,
            },
            |e| matches!(e, ProviderError::StreamCut(_)),
        ),
        (
            "connection dropped",
            Reply::Sse {
                events: vec![SseStep::raw(&String::from_utf8_lossy(cut))],
                end: StreamEnd::Drop,
            },
            |e| matches!(e, ProviderError::StreamCut(_)),
        ),
        (
            "error event after the 200",
            Reply::Sse {
                events: vec![
                    SseStep::raw(&String::from_utf8_lossy(whole)),
                    SseStep::raw(&String::from_utf8_lossy(overloaded)),
                ],
                end: StreamEnd::Close,
            },
            // Named by its type, no invented status; still an overload worth a retry.
            |e| {
                matches!(e, ProviderError::InBand { kind, .. } if kind == "overloaded_error")
                    && e.status().is_none()
                    && e.is_retryable()
            },
        ),
    ];
    for (name, reply, ok) in rows {
        mock.push(reply);
        let stream = chat_stream(p.as_ref(), &stream_request()).await.unwrap();
        let all = tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
            .await
            .unwrap();
        let last = all.last().unwrap();
        match last {
            Err(e) if ok(e) => {}
            other => panic!("{name}: last item {other:?}"),
        }
        assert!(all[..all.len() - 1].iter().all(Result::is_ok), "{name}");
    }

    // Errors before the stream starts are statuses with the translated body.
    mock.push(Reply::Json {
        status: 529,
        body: json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        headers: vec![],
    });
    match chat_stream(p.as_ref(), &stream_request()).await {
        Err(ProviderError::Status {
            status: 529, body, ..
        }) => {
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["message"], "Overloaded");
            assert_eq!(v["error"]["code"], "overloaded_error");
        }
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("a 529 became a stream"),
    }
}
