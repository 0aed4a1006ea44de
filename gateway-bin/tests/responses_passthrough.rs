//! End-to-end: `POST /v1/responses` to an upstream of kind `openai` goes through as it
//! came, both ways, byte for byte; what needs OpenAI's server-side state goes only to
//! such a target and is a 400 naming it where the model has none. The real binary over
//! real HTTP, the testkit mock as OpenAI and as Anthropic.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use modelway_testkit::{MockUpstream, Reply, SseStep, StreamEnd};
use serde_json::{json, Value};

/// `oai` (kind openai) and `claude` (kind anthropic) on the same mock.
fn config(up: &MockUpstream) -> String {
    format!(
        "[routing]\ntimeout = \"5s\"\nretries = 0\n\n\
         [providers.oai]\nkind = \"openai\"\nbase_url = \"{v1}\"\napi_key = \"sk-oai\"\nlist_models = false\n\n\
         [providers.claude]\nkind = \"anthropic\"\nbase_url = \"http://{addr}\"\napi_key = \"sk-ant\"\nlist_models = false\n\n\
         [[routes]]\nname = \"gpt\"\ntargets = [\"oai/gpt-5.4\"]\n\n\
         [[routes]]\nname = \"claude\"\ntargets = [\"claude/claude-x\"]\n\n\
         [[routes]]\nname = \"mixed\"\ntargets = [\"claude/claude-x\", \"oai/gpt-5.4\"]\n",
        v1 = up.base_url(),
        addr = up.addr(),
    )
}

async fn setup() -> (MockUpstream, Gw) {
    let up = MockUpstream::start().await;
    let gw = Gw::start(&config(&up));
    (up, gw)
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../providers/openai/tests/data/responses/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn raw(content_type: &str, body: &str) -> Reply {
    Reply::Raw {
        status: 200,
        content_type: content_type.into(),
        body: Bytes::from(body.to_owned()),
    }
}

async fn responses(gw: &Gw, body: &Value) -> Resp {
    post(&gw.url("/v1/responses"), body.to_string()).await
}

fn upstream_calls(up: &MockUpstream) -> Vec<modelway_testkit::RecordedRequest> {
    up.requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect()
}

#[tokio::test]
async fn an_answer_and_a_stream_from_openai_reach_the_client_byte_for_byte() {
    let (up, gw) = setup().await;
    let answer = fixture("function-call.json");
    up.push(raw("application/json", &answer));
    let body = json!({"model": "gpt", "input": "weather in Boston?", "store": false,
                      "tools": [{"type": "function", "name": "get_current_weather", "parameters": {"type": "object"}, "strict": false}]});
    let r = responses(&gw, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), answer);
    assert_eq!(r.header("x-modelway-provider"), Some("oai"));
    let calls = upstream_calls(&up);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/v1/responses");
    assert_eq!(calls[0].header("authorization"), Some("Bearer sk-oai"));
    assert_eq!(
        String::from_utf8_lossy(&calls[0].body),
        body.to_string()
            .replace(r#""model":"gpt""#, r#""model":"gpt-5.4""#)
    );

    up.reset();
    let sse = fixture("stream-reasoning-then-text.sse");
    let events: Vec<SseStep> = sse.split_inclusive("\n\n").map(SseStep::raw).collect();
    up.push(Reply::Sse {
        events,
        end: StreamEnd::Close,
    });
    let r = responses(
        &gw,
        &json!({"model": "gpt", "input": "capital?", "stream": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(r.text(), sse);
}

#[tokio::test]
async fn previous_response_id_reaches_openai_and_is_refused_where_no_target_can_take_it() {
    let (up, gw) = setup().await;
    let body =
        json!({"model": "gpt", "input": "and then?", "previous_response_id": "resp_earlier"});
    let r = responses(&gw, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["previous_response_id"], "resp_earlier");
    let sent = upstream_calls(&up);
    assert_eq!(sent[0].json()["previous_response_id"], "resp_earlier");

    // A route with a translating target first: only the OpenAI one is tried.
    up.reset();
    let mixed = json!({"model": "mixed", "input": "and then?", "previous_response_id": "resp_earlier", "stream": true});
    let r = responses(&gw, &mixed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-modelway-provider"), Some("oai"));
    assert!(r
        .text()
        .contains("\"previous_response_id\":\"resp_earlier\""));
    let paths: Vec<String> = upstream_calls(&up).into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v1/responses"]);
    // Without it, the route's order stands and Anthropic answers, translated.
    up.reset();
    let r = responses(&gw, &json!({"model": "mixed", "input": "hi"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-modelway-provider"), Some("claude"));
    assert_eq!(r.json()["object"], "response");
    assert_eq!(upstream_calls(&up)[0].path, "/v1/messages");

    up.reset();
    for stream in [false, true] {
        let body = json!({"model": "claude", "input": "and then?", "previous_response_id": "resp_earlier", "stream": stream});
        let r = responses(&gw, &body).await;
        assert_eq!(r.status, 400, "stream={stream}: {}", r.text());
        let e = &r.json()["error"];
        assert_eq!(
            (&e["param"], &e["type"], &e["code"]),
            (
                &json!("previous_response_id"),
                &json!("invalid_request_error"),
                &json!("unsupported_parameter")
            ),
            "{e}"
        );
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("`previous_response_id`"),
            "{e}"
        );
    }
    assert!(upstream_calls(&up).is_empty(), "{:?}", upstream_calls(&up));
}

#[tokio::test]
async fn hosted_tools_and_stored_responses_go_only_to_openai() {
    let (up, gw) = setup().await;
    for (field, value) in [
        ("tools", json!([{"type": "web_search"}])),
        ("store", json!(true)),
    ] {
        let mut body = json!({"model": "claude", "input": "news?"});
        body[field] = value.clone();
        let r = responses(&gw, &body).await;
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        let param = r.json()["error"]["param"].as_str().unwrap().to_owned();
        assert!(
            param == "web_search" || param == "store",
            "{field}: {param}"
        );
        body["model"] = json!("gpt");
        let r = responses(&gw, &body).await;
        assert_eq!(r.status, 200, "{field}: {}", r.text());
        assert_eq!(r.json()["object"], "response");
    }
    let sent: Vec<Value> = upstream_calls(&up).iter().map(|r| r.json()).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0]["tools"][0]["type"], "web_search");
    assert_eq!(sent[1]["store"], true);
}

#[tokio::test]
async fn our_carried_thinking_is_not_sent_to_openai() {
    let (up, gw) = setup().await;
    let carried = format!(
        "{}{}",
        modelway_core::dialect::responses::CARRY_PREFIX,
        json!({"thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}]})
    );
    let body = json!({"model": "gpt", "input": [
        {"role": "user", "content": "hi"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": carried},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
        {"role": "user", "content": "again"}]});
    let r = responses(&gw, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = upstream_calls(&up)[0].json();
    let kinds: Vec<&str> = sent["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap_or("message"))
        .collect();
    assert_eq!(kinds, ["message", "message", "message"], "{sent}");
    assert_eq!(sent["model"], "gpt-5.4");
}

#[tokio::test]
async fn a_failure_in_the_middle_of_an_openai_stream_is_an_error_event_numbered_after_it() {
    let (up, gw) = setup().await;
    let sse = fixture("stream-cut.sse");
    let events: Vec<SseStep> = sse.split_inclusive("\n\n").map(SseStep::raw).collect();
    let sent = events.len();
    up.push(Reply::Sse {
        events,
        end: StreamEnd::Drop,
    });
    let r = responses(&gw, &json!({"model": "gpt", "input": "x", "stream": true})).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    let (passed, rest) = text.split_at(sse.len());
    assert_eq!(passed, sse);
    let evs = modelway_core::sse::SseDecoder::decode_all(rest.as_bytes());
    assert_eq!(evs.len(), 1, "{rest}");
    assert_eq!(evs[0].event.as_deref(), Some("error"));
    let v: Value = serde_json::from_str(&evs[0].data).unwrap();
    assert_eq!(
        (&v["type"], &v["sequence_number"]),
        (&json!("error"), &json!(sent))
    );
}

#[tokio::test]
async fn openais_errors_and_an_early_failure_are_answered_as_http_errors() {
    let (up, gw) = setup().await;
    up.push(Reply::Json {
        status: 400,
        body: json!({"error": {"message": "Previous response with id 'resp_x' not found.",
            "type": "invalid_request_error", "param": "previous_response_id", "code": "previous_response_not_found"}}),
        headers: Vec::new(),
    });
    let r = responses(
        &gw,
        &json!({"model": "gpt", "input": "x", "previous_response_id": "resp_x"}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let e = &r.json()["error"];
    assert_eq!(
        (&e["param"], &e["code"]),
        (
            &json!("previous_response_id"),
            &json!("previous_response_not_found")
        )
    );
    // `response.failed` before any content: the client's head was not sent yet.
    up.push(raw(
        "text/event-stream",
        &fixture("stream-failed-before-content.sse"),
    ));
    let r = responses(&gw, &json!({"model": "gpt", "input": "x", "stream": true})).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("Rate limit reached"), "{}", r.text());
}
