//! End-to-end: the real binary over real HTTP with testkit mocks as the Anthropic
//! upstream (`kind = "anthropic"`): answers, streams, tool calls, thinking replay,
//! routing by family and vendor slug, error mapping, fallback, stream cuts and
//! `drop_unsupported`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use modelway_testkit::{MockUpstream, Reply, SseStep, StreamEnd};
use serde_json::{json, Value};

const KEY: &str = "sk-ant-e2e-secret";

/// `claude` (the first provider of kind anthropic), `backup` and `dropper` (with
/// `drop_unsupported`); no retries, so each scripted failure is seen once.
fn config(up: &MockUpstream, backup: &MockUpstream) -> String {
    let root = |m: &MockUpstream| format!("http://{}", m.addr());
    format!(
        "[routing]\ntimeout = \"5s\"\nretries = 0\n\n\
         [providers.claude]\nkind = \"anthropic\"\nbase_url = \"{up}\"\napi_key = \"{KEY}\"\n\n\
         [providers.backup]\nkind = \"anthropic\"\nbase_url = \"{backup}\"\napi_key = \"{KEY}\"\n\n\
         [providers.dropper]\nkind = \"anthropic\"\nbase_url = \"{up}\"\napi_key = \"{KEY}\"\ndrop_unsupported = true\n\n\
         [[routes]]\nname = \"resilient\"\ntargets = [\"claude/claude-a\", \"backup/claude-b\"]\n",
        up = root(up),
        backup = root(backup),
    )
}

async fn setup() -> (MockUpstream, MockUpstream, Gw) {
    let up = MockUpstream::start().await;
    let backup = MockUpstream::start().await;
    let gw = Gw::start(&config(&up, &backup));
    (up, backup, gw)
}

fn messages_requests(m: &MockUpstream) -> Vec<modelway_testkit::RecordedRequest> {
    m.requests()
        .into_iter()
        .filter(|r| r.path == "/v1/messages")
        .collect()
}

/// The parsed `data:` chunks of a stream, and whether it ended with `[DONE]`.
fn chunks(body: &[u8]) -> (Vec<Value>, bool) {
    let data = sse_data(body);
    let done = data.last().map(String::as_str) == Some("[DONE]");
    let chunks = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    (chunks, done)
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

#[tokio::test]
async fn json_and_streamed_answers() {
    let (up, _b, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    let r = post_with(
        &url,
        chat("claude/claude-sonnet-4", "hello"),
        &[("authorization", "Bearer client-key")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: hello");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r.header("x-modelway-provider"), Some("claude"));
    let sent = messages_requests(&up);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header("x-api-key"), Some(KEY));
    assert_eq!(sent[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent[0].header("authorization"), None);
    assert_eq!(sent[0].json()["model"], "claude-sonnet-4");

    let body = json!({"model": "claude/claude-sonnet-4", "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "stream me please"}]});
    let r = post(&url, body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(stream_text(&r.body), "Echo: stream me please");
    let (chunks, done) = chunks(&r.body);
    assert!(done, "{}", r.text());
    let finishes: Vec<_> = chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().unwrap().clone())
        .filter_map(|c| c["finish_reason"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(finishes, ["stop"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c.get("usage").is_none_or(Value::is_null)));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
}

#[tokio::test]
async fn claude_family_names_and_anthropic_vendor_slugs_reach_anthropic() {
    let (up, _b, gw) = setup().await;
    for (model, upstream_model) in [
        ("claude-3-5-haiku-latest", "claude-3-5-haiku-latest"),
        (
            "anthropic/claude-sonnet-4-20250514",
            "claude-sonnet-4-20250514",
        ),
    ] {
        up.reset();
        let r = post(&gw.url("/v1/chat/completions"), chat(model, "hi")).await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_eq!(r.header("x-modelway-provider"), Some("claude"), "{model}");
        let sent = messages_requests(&up);
        assert_eq!(sent.len(), 1, "{model}");
        assert_eq!(sent[0].json()["model"], upstream_model, "{model}");
    }
}

#[tokio::test]
async fn tool_calls_and_a_tool_result_round_trip() {
    let (up, _b, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    let ask = json!({"model": "claude/claude-x", "tools": [weather_tool()],
        "messages": [{"role": "user", "content": "weather in Paris?"}]});
    let r = post(&url, ask.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &msg["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
    let sent = messages_requests(&up);
    assert_eq!(
        sent[0].json()["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );

    // Streamed: the tool follows a text block (Anthropic block 1) but is call 0.
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let r = post(&url, streamed.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (chunks, done) = chunks(&r.body);
    assert!(done);
    let frags: Vec<Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls").cloned())
        .flat_map(|t| t.as_array().unwrap().clone())
        .collect();
    assert!(frags.iter().all(|f| f["index"] == 0), "{frags:?}");
    let args: String = frags
        .iter()
        .filter_map(|f| f["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, r#"{"city":"Paris"}"#);
    assert_eq!(frags.iter().filter(|f| f.get("id").is_some()).count(), 1);

    // The answer goes back as a tool message; Anthropic wants it as a tool_result
    // in the next user turn, which the mock checks.
    let id = call["id"].as_str().unwrap();
    let back = json!({"model": "claude/claude-x", "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": msg["content"], "tool_calls": msg["tool_calls"]},
        {"role": "tool", "tool_call_id": id, "content": "sunny"}]});
    let r = post(&url, back.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "Tool result: sunny"
    );
}

#[tokio::test]
async fn signed_thinking_survives_a_tool_round_trip() {
    let (_up, _b, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    let ask = json!({"model": "claude/claude-x", "reasoning_effort": "low",
        "tools": [weather_tool()], "messages": [{"role": "user", "content": "weather?"}]});
    let r = post(&url, ask.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let msg = r.json()["choices"][0]["message"].clone();
    assert!(
        msg["reasoning_content"].as_str().unwrap().len() > 5,
        "{msg}"
    );
    assert_eq!(msg["thinking_blocks"][0]["type"], "thinking");
    // The client sends the assistant message back as it got it.
    let id = msg["tool_calls"][0]["id"].as_str().unwrap().to_owned();
    let back = json!({"model": "claude/claude-x", "reasoning_effort": "low",
        "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "weather?"}, msg,
        {"role": "tool", "tool_call_id": id, "content": "sunny"}]});
    let r = post(&url, back.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "Tool result: sunny"
    );
}

fn anthropic_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::Json {
        status,
        body: json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_x"}),
        headers: Vec::new(),
    }
}

#[tokio::test]
async fn upstream_errors_are_mapped_to_openai_errors() {
    let (up, _b, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    // (scripted reply, client status, message fragment, code)
    let rows: Vec<(Reply, u16, &str, Option<&str>)> = vec![
        (
            anthropic_error(400, "invalid_request_error", "max_tokens: too large"),
            400,
            "max_tokens: too large",
            None,
        ),
        (
            anthropic_error(401, "authentication_error", "invalid x-api-key"),
            502,
            // The upstream's words are not passed on for a rejected key: they often
            // quote it.
            "rejected modelway's credentials (HTTP 401)",
            Some("upstream_auth_failed"),
        ),
        (
            anthropic_error(429, "rate_limit_error", "Number of requests exceeded")
                .with_header("retry-after", "7"),
            429,
            "Number of requests exceeded",
            Some("rate_limit_exceeded"),
        ),
        (
            // An overloaded upstream keeps a code a client may wait out.
            anthropic_error(529, "overloaded_error", "Overloaded"),
            502,
            "Overloaded",
            Some("overloaded"),
        ),
    ];
    for (reply, status, fragment, code) in rows {
        for stream in [false, true] {
            up.push(reply.clone());
            let body = if stream {
                chat_stream("claude/claude-x", "hi")
            } else {
                chat("claude/claude-x", "hi")
            };
            let r = post(&url, body).await;
            assert_eq!(r.status, status, "{fragment} stream={stream}: {}", r.text());
            let v = r.json();
            let e = &v["error"];
            for k in ["message", "type", "param", "code"] {
                assert!(e.get(k).is_some(), "missing error.{k} in {v}");
            }
            assert!(
                e["message"].as_str().unwrap().contains(fragment),
                "{fragment}: {v}"
            );
            assert_eq!(e["code"].as_str(), code, "{fragment}: {v}");
            assert!(!r.text().contains(KEY), "the key leaked: {}", r.text());
            if status == 429 {
                assert_eq!(r.header("retry-after"), Some("7"));
            }
        }
    }
    // A request Anthropic cannot express is a 400 naming the parameter, before any
    // upstream call.
    up.reset();
    let r = post(
        &url,
        json!({"model": "claude/claude-x", "n": 2, "messages": [{"role": "user", "content": "x"}]})
            .to_string(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "n");
    assert!(messages_requests(&up).is_empty());
}

#[tokio::test]
async fn overloaded_first_target_falls_back_to_the_second() {
    let (up, backup, gw) = setup().await;
    up.push(anthropic_error(529, "overloaded_error", "Overloaded"));
    let r = post(&gw.url("/v1/chat/completions"), chat("resilient", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-modelway-provider"), Some("backup"));
    assert_eq!(r.header("x-modelway-attempts"), Some("2"));
    assert_eq!(messages_requests(&backup)[0].json()["model"], "claude-b");
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_error_event() {
    let (up, _b, gw) = setup().await;
    let ev = |name: &str, data: Value| SseStep::raw(&format!("event: {name}\ndata: {data}\n\n"));
    let head = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "model": "claude-x", "content": [], "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial"}}),
        ),
    ];
    let overloaded = ev(
        "error",
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    );
    for (name, events, end) in [
        ("dropped", head.clone(), StreamEnd::Drop),
        ("closed early", head.clone(), StreamEnd::Close),
        (
            "error event",
            [
                head.clone(),
                vec![overloaded.after(Duration::from_millis(20))],
            ]
            .concat(),
            StreamEnd::Close,
        ),
    ] {
        up.push(Reply::Sse { events, end });
        let r = post(
            &gw.url("/v1/chat/completions"),
            chat_stream("claude/claude-x", "hi"),
        )
        .await;
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(stream_text(&r.body), "partial", "{name}");
        let (chunks, done) = chunks(&r.body);
        assert!(!done, "{name}: a cut stream must not end with [DONE]");
        let last = chunks.last().unwrap();
        assert!(last["error"]["message"].is_string(), "{name}: {last}");
        assert!(
            chunks.iter().all(|c| c["choices"]
                .as_array()
                .is_none_or(|cs| cs.iter().all(|c| c["finish_reason"].is_null()))),
            "{name}: no fake finish"
        );
    }
}

#[tokio::test]
async fn drop_unsupported_drops_and_says_so() {
    let (up, _b, gw) = setup().await;
    let body = json!({"model": "dropper/claude-x", "seed": 3, "logprobs": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let r = post(&gw.url("/v1/chat/completions"), body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-modelway-dropped-params"),
        Some("logprobs, seed")
    );
    let sent = messages_requests(&up)[0].json();
    assert!(sent.get("seed").is_none() && sent.get("logprobs").is_none());

    let mut strict = body.clone();
    strict["model"] = json!("claude/claude-x");
    let r = post(&gw.url("/v1/chat/completions"), strict.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "logprobs");
    assert_eq!(r.header("x-modelway-dropped-params"), None);
}
