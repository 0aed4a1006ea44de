//! End-to-end: the real binary over real HTTP with testkit mocks as the Gemini
//! upstream (`kind = "gemini"`): answers, streams, tool calls (parallel ones too) and a
//! tool-result round trip with thought signatures, routing by family and vendor slug,
//! error mapping, fallback, stream cuts, the API key kept out of URLs, and
//! `drop_unsupported`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use modelway_testkit::{MockUpstream, RecordedRequest, Reply, SseStep, StreamEnd};
use serde_json::{json, Value};

const KEY: &str = "AIza-e2e-secret";

/// `gem` (the first provider of kind gemini), `backup` and `dropper` (with
/// `drop_unsupported`); no retries, so each scripted failure is seen once.
fn config(up: &MockUpstream, backup: &MockUpstream) -> String {
    let root = |m: &MockUpstream| format!("http://{}", m.addr());
    format!(
        "[routing]\ntimeout = \"5s\"\nretries = 0\n\n\
         [providers.gem]\nkind = \"gemini\"\nbase_url = \"{up}\"\napi_key = \"{KEY}\"\nlist_models = false\n\n\
         [providers.backup]\nkind = \"gemini\"\nbase_url = \"{backup}\"\napi_key = \"{KEY}\"\nlist_models = false\n\n\
         [providers.dropper]\nkind = \"gemini\"\nbase_url = \"{up}\"\napi_key = \"{KEY}\"\ndrop_unsupported = true\nlist_models = false\n\n\
         [[routes]]\nname = \"resilient\"\ntargets = [\"gem/gemini-a\", \"backup/gemini-b\"]\n",
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

fn generate_requests(m: &MockUpstream) -> Vec<RecordedRequest> {
    m.requests()
        .into_iter()
        .filter(|r| r.path.contains("GenerateContent") || r.path.contains("generateContent"))
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
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
            "additionalProperties": false, "$schema": "http://json-schema.org/draft-07/schema#"}}})
}

fn gemini_event(v: Value) -> SseStep {
    SseStep::raw(&format!("data: {v}\r\n\r\n"))
}

#[tokio::test]
async fn json_and_streamed_answers() {
    let (up, _b, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    let r = post_with(
        &url,
        chat("gem/gemini-2.5-flash", "hello"),
        &[("authorization", "Bearer client-key")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: hello");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r.header("x-modelway-provider"), Some("gem"));
    let sent = generate_requests(&up);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].path,
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(sent[0].header("x-goog-api-key"), Some(KEY));
    assert_eq!(sent[0].header("authorization"), None);

    let body = json!({"model": "gem/gemini-2.5-flash", "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "stream me please now"}]});
    let r = post(&url, body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(stream_text(&r.body), "Echo: stream me please now");
    let (chunks, done) = chunks(&r.body);
    assert!(done, "{}", r.text());
    assert!(chunks.len() > 3, "streamed in pieces: {}", r.text());
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
    let ids: std::collections::BTreeSet<_> = chunks.iter().map(|c| c["id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "one id for the whole stream");
    let sent = generate_requests(&up);
    assert_eq!(
        sent[1].path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    for s in &sent {
        assert!(!s.path.contains(KEY), "the key is in the URL: {}", s.path);
    }
}

#[tokio::test]
async fn gemini_family_names_and_google_vendor_slugs_reach_gemini() {
    let (up, _b, gw) = setup().await;
    for (model, upstream_model) in [
        ("gemini-2.5-flash", "gemini-2.5-flash"),
        ("google/gemini-2.5-pro", "gemini-2.5-pro"),
        ("gemini-3-pro-preview", "gemini-3-pro-preview"),
    ] {
        up.reset();
        let r = post(&gw.url("/v1/chat/completions"), chat(model, "hi")).await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_eq!(r.header("x-modelway-provider"), Some("gem"), "{model}");
        let sent = generate_requests(&up);
        assert_eq!(sent.len(), 1, "{model}");
        assert_eq!(
            sent[0].path,
            format!("/v1beta/models/{upstream_model}:generateContent"),
            "{model}"
        );
    }
}

#[tokio::test]
async fn tool_calls_and_a_tool_result_round_trip() {
    let (up, _b, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    let ask = json!({"model": "gem/gemini-2.5-flash", "tools": [weather_tool()],
        "messages": [{"role": "user", "content": "weather in Paris?"}]});
    let r = post(&url, ask.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = v["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    // The schema went as JSON Schema, without `$schema` (WIRE §5, BerriAI/litellm#14330).
    let sent = generate_requests(&up)[0].json();
    let decl = &sent["tools"][0]["functionDeclarations"][0];
    assert_eq!(decl["name"], "get_weather");
    assert!(
        decl["parametersJsonSchema"].get("$schema").is_none(),
        "{decl}"
    );

    // Streamed, the call arrives whole at index 0 with its id and name once.
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let r = post(&url, streamed.to_string()).await;
    let (chunks, done) = chunks(&r.body);
    assert!(done);
    let frags: Vec<Value> = chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().unwrap().clone())
        .flat_map(|c| {
            c["delta"]["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(frags.len(), 1, "{}", r.text());
    assert_eq!(frags[0]["index"], 0);
    assert_eq!(frags[0]["function"]["arguments"], r#"{"city":"Paris"}"#);

    // Second turn: the tool result goes back as a functionResponse named after the
    // call, and the model answers it.
    up.reset();
    let answer = json!({"model": "gem/gemini-2.5-flash", "tools": [weather_tool()],
        "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 24C"}]});
    let r = post(&url, answer.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        r#"Function get_weather returned {"result":"sunny, 24C"}"#
    );
    let sent = generate_requests(&up)[0].json();
    let contents = sent["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "{sent}");
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(
        contents[1]["parts"][0]["functionCall"]["name"],
        "get_weather"
    );
    assert_eq!(
        contents[1]["parts"][0]["functionCall"]["args"],
        json!({"city": "Paris"})
    );
    let fr = &contents[2]["parts"][0]["functionResponse"];
    assert_eq!(fr["name"], "get_weather");
    assert_eq!(fr["id"], call["id"]);
    assert_eq!(fr["response"], json!({"result": "sunny, 24C"}));
}

#[tokio::test]
async fn parallel_calls_get_distinct_ids_and_signatures_survive_the_round_trip() {
    let (up, _b, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    let calls = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLUE="},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]},
        "finishReason": "STOP", "index": 0, "finishMessage": "Model generated function call(s)."}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 8, "totalTokenCount": 30, "thoughtsTokenCount": 12},
        "modelVersion": "gemini-3-pro-preview", "responseId": "resp-par"});
    // Streamed: one call per event, the STOP in a trailing event (Gemini 3).
    up.push(Reply::Sse {
        events: vec![
            gemini_event(json!({"candidates": [{"content": {"role": "model", "parts": [calls["candidates"][0]["content"]["parts"][0]]}, "index": 0}]})),
            gemini_event(json!({"candidates": [{"content": {"role": "model", "parts": [calls["candidates"][0]["content"]["parts"][1]]}, "index": 0}]})),
            gemini_event(json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": calls["usageMetadata"]})),
        ],
        end: StreamEnd::Close,
    });
    let body = json!({"model": "gem/gemini-3-pro-preview", "stream": true, "tools": [weather_tool()],
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Paris and Rome?"}]});
    let r = post(&url, body.to_string()).await;
    let (chunks, done) = chunks(&r.body);
    assert!(done, "{}", r.text());
    let frags: Vec<Value> = chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
        .flat_map(|c| {
            c["delta"]["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let indexes: Vec<_> = frags.iter().map(|f| f["index"].clone()).collect();
    assert_eq!(indexes, [json!(0), json!(1)], "{}", r.text());
    assert_ne!(frags[0]["id"], frags[1]["id"]);
    let finishes: Vec<_> = chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["finish_reason"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(finishes, ["tool_calls"]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 20, "thoughts count: {usage}");
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 12);

    // Not streamed: same shape.
    up.push(Reply::Json {
        status: 200,
        body: calls.clone(),
        headers: vec![],
    });
    let mut plain = body.clone();
    plain.as_object_mut().unwrap().remove("stream");
    plain.as_object_mut().unwrap().remove("stream_options");
    let r = post(&url, plain.to_string()).await;
    let v = r.json();
    let tool_calls = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(tool_calls.len(), 2);
    assert_ne!(tool_calls[0]["id"], tool_calls[1]["id"]);
    assert_eq!(
        tool_calls[0]["extra_content"]["google"]["thought_signature"],
        "c2lnLUE="
    );

    // The client sends the calls back as it got them: the signature is replayed.
    up.reset();
    let back = json!({"model": "gem/gemini-3-pro-preview", "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "Paris and Rome?"},
        {"role": "assistant", "content": null, "tool_calls": tool_calls},
        {"role": "tool", "tool_call_id": tool_calls[0]["id"], "content": "{\"temp\": 24}"},
        {"role": "tool", "tool_call_id": tool_calls[1]["id"], "content": "rainy"}]});
    let r = post(&url, back.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = generate_requests(&up)[0].json();
    let contents = sent["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "both results in one turn: {sent}");
    assert_eq!(contents[1]["parts"][0]["thoughtSignature"], "c2lnLUE=");
    assert!(contents[1]["parts"][1].get("thoughtSignature").is_none());
    let parts = contents[2]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(
        parts[0]["functionResponse"]["response"],
        json!({"temp": 24})
    );
    assert_eq!(
        parts[1]["functionResponse"]["response"],
        json!({"result": "rainy"})
    );
}

fn google_error(status: u16, google: &str, message: &str) -> Reply {
    Reply::Json {
        status,
        body: json!({"error": {"code": status, "message": message, "status": google}}),
        headers: vec![],
    }
}

#[tokio::test]
async fn upstream_errors_are_mapped_to_openai_errors() {
    let (up, _b, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    // (scripted reply, client status, message fragment, code)
    let rows: Vec<(Reply, u16, &str, Option<&str>)> = vec![
        (
            google_error(
                400,
                "INVALID_ARGUMENT",
                "Invalid value at 'generation_config'",
            ),
            400,
            "Invalid value at 'generation_config'",
            Some("INVALID_ARGUMENT"),
        ),
        (
            google_error(
                403,
                "PERMISSION_DENIED",
                "Permission denied on resource project",
            ),
            502,
            "rejected modelway's credentials (HTTP 403)",
            Some("upstream_auth_failed"),
        ),
        (
            google_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted")
                .with_header("retry-after", "7"),
            429,
            "Resource has been exhausted",
            Some("RESOURCE_EXHAUSTED"),
        ),
        (
            google_error(503, "UNAVAILABLE", "The model is overloaded"),
            502,
            "The model is overloaded",
            Some("overloaded"),
        ),
    ];
    for (reply, status, fragment, code) in rows {
        for stream in [false, true] {
            up.push(reply.clone());
            let body = if stream {
                chat_stream("gem/gemini-x", "hi")
            } else {
                chat("gem/gemini-x", "hi")
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
    // A request Gemini cannot express is a 400 naming the parameter, before any
    // upstream call.
    up.reset();
    let r = post(
        &url,
        json!({"model": "gem/gemini-x", "logit_bias": {"1": 5}, "messages": [{"role": "user", "content": "x"}]})
            .to_string(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "logit_bias");
    assert!(generate_requests(&up).is_empty());
}

#[tokio::test]
async fn unavailable_first_target_falls_back_to_the_second() {
    let (up, backup, gw) = setup().await;
    up.push(google_error(503, "UNAVAILABLE", "The model is overloaded"));
    let r = post(&gw.url("/v1/chat/completions"), chat("resilient", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-modelway-provider"), Some("backup"));
    assert_eq!(r.header("x-modelway-attempts"), Some("2"));
    assert_eq!(
        generate_requests(&backup)[0].path,
        "/v1beta/models/gemini-b:generateContent"
    );
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_error_event() {
    let (up, _b, gw) = setup().await;
    let head = vec![gemini_event(
        json!({"candidates": [{"content": {"role": "model",
        "parts": [{"text": "partial"}]}, "index": 0}], "modelVersion": "gemini-x", "responseId": "r1"}),
    )];
    let bare_error = SseStep::raw(
        "{\n  \"error\": {\n    \"code\": 499,\n    \"message\": \"The operation was cancelled.\",\n    \"status\": \"CANCELLED\"\n  }\n}\n",
    );
    for (name, events, end) in [
        ("dropped", head.clone(), StreamEnd::Drop),
        ("closed early", head.clone(), StreamEnd::Close),
        (
            "bare error",
            [head.clone(), vec![bare_error]].concat(),
            StreamEnd::Close,
        ),
    ] {
        up.push(Reply::Sse { events, end });
        let r = post(
            &gw.url("/v1/chat/completions"),
            chat_stream("gem/gemini-x", "hi"),
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
    let body = json!({"model": "dropper/gemini-x", "logit_bias": {"1": 5}, "logprobs": true,
        "seed": 3, "messages": [{"role": "user", "content": "hi"}]});
    let r = post(&gw.url("/v1/chat/completions"), body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-modelway-dropped-params"),
        Some("logprobs, logit_bias")
    );
    let sent = generate_requests(&up)[0].json();
    assert_eq!(
        sent["generationConfig"]["seed"], 3,
        "seed is supported: {sent}"
    );

    let mut strict = body.clone();
    strict["model"] = json!("gem/gemini-x");
    let r = post(&gw.url("/v1/chat/completions"), strict.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "logprobs");
    assert_eq!(r.header("x-modelway-dropped-params"), None);
}
