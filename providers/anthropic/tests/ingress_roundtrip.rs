//! The Anthropic Messages front door (`modelway_core::dialect::messages`) against this
//! provider, both ways, over every Anthropic recording in `shared/fixtures/anthropic`:
//!
//! - a recorded Anthropic request, decoded into the canonical request and translated
//!   by this provider, must be the recorded request again (thinking signatures,
//!   `cache_control`, tool ids and inputs intact);
//! - the recorded answer, read by this provider and encoded back by the front door —
//!   whole, or streamed through `stream::normalize` and the `StreamEncoder` — must say
//!   what the recording says (blocks, ids, signatures, stop reason, usage).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use modelway_anthropic::AnthropicFactory;
use modelway_core::chat::{ChatRequest, ChatResponse};
use modelway_core::dialect::messages::{decode_request, encode_response, StreamEncoder};
use modelway_core::{
    ApiKey, Attempt, Call, GatewayError, HttpClient, Provider, ProviderConfig, Timeouts,
};
use modelway_testkit::{MockUpstream, Reply};
use serde::Deserialize;
use serde_json::{json, Value};

fn provider(mock: &MockUpstream) -> Arc<dyn Provider> {
    let mut cfg = ProviderConfig::new("claude", "anthropic");
    cfg.base_url = Some(format!("http://{}", mock.addr()));
    cfg.api_key = Some(ApiKey::new("sk-ant-test"));
    modelway_core::provider::build_provider(&AnthropicFactory, &cfg, &HttpClient::new())
        .expect("provider builds")
}

fn timeouts() -> Timeouts {
    Timeouts::uniform(Duration::from_secs(5))
}

#[derive(Deserialize)]
struct VcrFile {
    interactions: Vec<VcrInteraction>,
}

#[derive(Deserialize)]
struct VcrInteraction {
    request: VcrBody,
    response: VcrResponse,
}

#[derive(Deserialize)]
struct VcrBody {
    body: String,
}

#[derive(Deserialize)]
struct VcrResponse {
    body: String,
    #[serde(default)]
    headers: BTreeMap<String, Vec<String>>,
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

/// Reassembles an SSE body as the SDK does (`accumulate_event`), as plain JSON; a tool's
/// input stays the joined `partial_json` text (`input_json`), so truncated or invalid
/// inputs compare too. Unknown events and `ping` are skipped. `Err` for an error event.
fn accumulate(body: &[u8]) -> Result<Value, Value> {
    let mut snapshot = Value::Null;
    for ev in modelway_core::sse::SseDecoder::decode_all(body) {
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            continue;
        };
        let index = v["index"].as_u64().unwrap_or(0) as usize;
        match v["type"].as_str().unwrap_or("") {
            "message_start" => snapshot = v["message"].clone(),
            "content_block_start" => snapshot["content"]
                .as_array_mut()
                .unwrap()
                .push(v["content_block"].clone()),
            "content_block_delta" => {
                let block = &mut snapshot["content"][index];
                let d = &v["delta"];
                let (field, piece) = match d["type"].as_str().unwrap() {
                    "text_delta" => ("text", &d["text"]),
                    "thinking_delta" => ("thinking", &d["thinking"]),
                    "input_json_delta" => ("input_json", &d["partial_json"]),
                    "signature_delta" => {
                        block["signature"] = d["signature"].clone();
                        continue;
                    }
                    _ => continue,
                };
                let joined = format!(
                    "{}{}",
                    block[field].as_str().unwrap_or(""),
                    piece.as_str().unwrap()
                );
                block[field] = Value::String(joined);
            }
            "message_delta" => {
                snapshot["stop_reason"] = v["delta"]["stop_reason"].clone();
                snapshot["stop_sequence"] = v["delta"]["stop_sequence"].clone();
                for (k, u) in v["usage"].as_object().unwrap() {
                    if !u.is_null() {
                        snapshot["usage"][k] = u.clone();
                    }
                }
            }
            "error" => return Err(v),
            _ => {}
        }
    }
    Ok(snapshot)
}

/// What a message says, in one comparable shape. Empty text blocks are left out (the
/// front door never sends one), and so are fields chat has no room for (`caller`,
/// `citations`, `cache_creation`, `service_tier`, …).
fn said(m: &Value) -> Value {
    let content: Vec<Value> = m["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| {
            Some(match b["type"].as_str()? {
                "text" if b["text"] == "" => return None,
                "text" => json!({"type": "text", "text": b["text"]}),
                "thinking" => json!({"type": "thinking", "thinking": b["thinking"], "signature": b["signature"]}),
                "redacted_thinking" => json!({"type": "redacted_thinking", "data": b["data"]}),
                "tool_use" => {
                    // Streams compare the joined `partial_json` text; whole answers the
                    // input object (as compact text). Nothing streamed means `{}`.
                    let input = match b.get("input_json").and_then(Value::as_str) {
                        Some("") => "{}".to_owned(),
                        Some(joined) => joined.to_owned(),
                        None => b["input"].to_string(),
                    };
                    json!({"type": "tool_use", "id": b["id"], "name": b["name"], "input": input})
                }
                _ => return None,
            })
        })
        .collect();
    let n = |k: &str| m["usage"][k].as_u64().unwrap_or(0);
    json!({
        "id": m["id"], "model": m["model"], "content": content,
        "stop_reason": m["stop_reason"], "stop_sequence": m["stop_sequence"],
        "usage": [n("input_tokens"), n("cache_creation_input_tokens"), n("cache_read_input_tokens"), n("output_tokens")],
    })
}

/// The front door's streamed answer to `req`: the provider's chunks, normalized as the
/// engine does, through the encoder; its SSE bytes.
async fn streamed(p: &dyn Provider, req: &ChatRequest) -> Vec<u8> {
    let call = Call::new(req.clone());
    let answer = p
        .chat_stream(&Attempt::new(&call, &req.model, timeouts()))
        .await
        .expect("the stream starts");
    let mut chunks = modelway_core::stream::normalize(answer.value, req.wants_stream_usage());
    let mut enc = StreamEncoder::new(&req.model);
    let mut out = Vec::new();
    let run = async {
        while let Some(item) = chunks.next().await {
            match item {
                Ok(c) => enc.chunk(&c, &mut out),
                Err(e) => {
                    enc.error(&GatewayError::from_provider("claude", &e), &mut out);
                    return;
                }
            }
        }
        enc.finish(&mut out);
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the stream ends within 10 s");
    out
}

async fn whole(p: &dyn Provider, req: &ChatRequest) -> Value {
    let call = Call::new(req.clone());
    let answer = p
        .chat(&Attempt::new(&call, &req.model, timeouts()))
        .await
        .expect("an answer");
    let resp: ChatResponse = answer.value.into_response().unwrap();
    serde_json::from_slice(&encode_response(&resp, &req.model)).unwrap()
}

#[tokio::test]
async fn every_recorded_request_survives_the_front_door_and_the_provider() {
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
        for (i, it) in file.interactions.into_iter().enumerate() {
            seen += 1;
            let at = format!("{rel}#{i}");
            let recorded_req: Value = serde_json::from_str(&it.request.body).unwrap();
            let req = match decode_request(it.request.body.as_bytes()) {
                Ok(r) => r,
                Err(e) => {
                    fails.push(format!("{at}: the front door refused it: {e}"));
                    continue;
                }
            };
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
            let body = it.response.body.as_bytes();
            let (ours, recorded) = if req.is_stream() {
                let ours = accumulate(&streamed(p.as_ref(), &req).await);
                (ours, accumulate(body))
            } else {
                (
                    Ok(whole(p.as_ref(), &req).await),
                    Ok(serde_json::from_slice(body).unwrap()),
                )
            };
            match (ours, recorded) {
                (Ok(ours), Ok(rec)) if said(&ours) != said(&rec) => fails.push(format!(
                    "{at}: the answer differs\n  ours     {}\n  recorded {}",
                    said(&ours),
                    said(&rec)
                )),
                (Ok(_), Ok(_)) => {}
                (ours, rec) => fails.push(format!("{at}: ours {ours:?}, recorded {rec:?}")),
            }
            let sent = mock.requests();
            let sent = sent.first().map(|r| normalize_request(r.json()));
            if sent.as_ref() != Some(&normalize_request(recorded_req.clone())) {
                fails.push(format!(
                    "{at}: the upstream request differs\n  sent     {}\n  recorded {recorded_req}",
                    sent.unwrap_or_default()
                ));
            }
        }
    }
    assert_eq!(seen, 30, "cassette interactions");
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

#[tokio::test]
async fn sdk_transcripts_stream_back_as_recorded() {
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
    let req = decode_request(
        br#"{"model":"claude-x","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .unwrap();
    let mut fails = Vec::new();
    for name in &names {
        let body = std::fs::read(dir.join(name)).unwrap();
        mock.push(Reply::Fixture(format!("anthropic/sdk-fixtures/{name}")));
        let ours = accumulate(&streamed(p.as_ref(), &req).await).unwrap();
        let mut rec = accumulate(&body).unwrap();
        // The front door reports the model the client asked for.
        rec["model"] = json!("claude-x");
        if said(&ours) != said(&rec) {
            fails.push(format!(
                "{name}:\n  ours     {}\n  recorded {}",
                said(&ours),
                said(&rec)
            ));
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

/// One request with every block kind the front door carries, and what reaches
/// Anthropic: the same request, but for the two documented moves.
#[tokio::test]
async fn every_block_kind_reaches_anthropic_as_sent() {
    let png = json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="});
    let sent_by_client = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 2048, "stream": false,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "metadata": {"user_id": "user_abc_account__session_123"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "top_k": 5, "temperature": 0.5, "stop_sequences": ["\n\nHuman:"],
        "tools": [{"name": "Read", "description": "Read a file", "cache_control": {"type": "ephemeral"},
                   "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Look at these."},
                {"type": "image", "source": png, "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "document", "title": "spec.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "First the file.", "signature": "c2lnLTE="},
                {"type": "redacted_thinking", "data": "cmVkYWN0ZWQ="},
                {"type": "text", "text": "Reading it."},
                {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"path": "/a"}},
                {"type": "tool_use", "id": "toolu_02", "name": "Read", "input": {"path": "/b"}, "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": [{"type": "text", "text": "contents of a"}]},
                {"type": "tool_result", "tool_use_id": "toolu_02", "is_error": true, "content": "no such file",
                 "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Go on.", "cache_control": {"type": "ephemeral"}}]}
        ]
    });
    let mut want = sent_by_client.clone();
    let o = want.as_object_mut().unwrap();
    // `stream: false` is the default; a string tool_result content is a text block.
    o.remove("stream");
    want["messages"][2]["content"][1]["content"] =
        json!([{"type": "text", "text": "no such file"}]);

    let mock = MockUpstream::start().await;
    let p = provider(&mock);
    mock.push(Reply::Json {
        status: 200,
        body: json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1}}),
        headers: vec![],
    });
    let req = decode_request(sent_by_client.to_string().as_bytes()).unwrap();
    let answer = whole(p.as_ref(), &req).await;
    assert_eq!(answer["content"], json!([{"type": "text", "text": "ok"}]));
    let sent = mock.requests()[0].json();
    let mut diffs = Vec::new();
    diff(&sent, &want, String::new(), &mut diffs);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));

    // Images in a tool result cannot stay in a chat tool message: they follow the
    // results, in the same user turn.
    let moved = json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
            "content": [{"type": "text", "text": "a screenshot"}, {"type": "image", "source": png}]}]}]});
    mock.reset();
    mock.push(Reply::Json {
        status: 200,
        body: json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "m",
            "content": [], "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}}),
        headers: vec![],
    });
    let req = decode_request(moved.to_string().as_bytes()).unwrap();
    whole(p.as_ref(), &req).await;
    assert_eq!(
        mock.requests()[0].json()["messages"][1],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "a screenshot"}]},
            {"type": "image", "source": png}]})
    );
}

fn diff(got: &Value, want: &Value, path: String, out: &mut Vec<String>) {
    if got == want {
        return;
    }
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let keys: std::collections::BTreeSet<_> = g.keys().chain(w.keys()).collect();
            for k in keys {
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
        _ => out.push(format!("{path}: sent {got} != want {want}")),
    }
}
