//! A Responses client's call through a gateway whose provider has the Responses API,
//! against the mock upstream over real HTTP: where it goes, what is sent, what comes
//! back (bytes and canonical reading), errors and streams.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{collect, gateway, API_KEY};
use modelway_core::chat::Completion;
use modelway_core::dialect::responses::decode_request;
use modelway_core::{Call, CallMeta, ClientDialect, GatewayError};
use modelway_testkit::{MockUpstream, Reply, SseStep, StreamEnd};
use serde_json::{json, Value};

/// `body` as a Responses client's call, marked as the front door marks it.
fn call(body: &Value) -> Call {
    let raw = Bytes::from(body.to_string());
    let d = decode_request(&raw).unwrap();
    let call = Call::from_client_in(
        ClientDialect::Responses,
        d.request,
        raw,
        CallMeta::default(),
    );
    match d.stateful.first() {
        Some(f) => call.needing_native(f.clone()),
        None => call,
    }
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/data/responses/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn only_request(mock: &MockUpstream) -> modelway_testkit::RecordedRequest {
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    reqs.into_iter().next().unwrap()
}

#[tokio::test]
async fn the_clients_body_goes_to_responses_and_the_answer_comes_back_as_sent() {
    let mock = MockUpstream::start().await;
    let gw = gateway("openai", &mock.base_url(), "");
    let body = json!({"model": "up/gpt-5.4", "input": "hi there", "previous_response_id": "resp_0",
                      "store": true, "include": ["reasoning.encrypted_content"]});
    let answer = fixture("reasoning-summary.json");
    mock.push(Reply::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: Bytes::from(answer.clone()),
    });
    let served = gw.execute(call(&body)).await.unwrap();
    let r = only_request(&mock);
    assert_eq!(r.path, "/v1/responses");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    // The client's bytes, only the model changed.
    let sent = body.to_string().replace("up/gpt-5.4", "gpt-5.4");
    assert_eq!(String::from_utf8_lossy(&r.body), sent);
    let Completion::Native(n) = &served.value else {
        panic!("not a passthrough answer: {:?}", served.value)
    };
    assert_eq!(n.dialect, ClientDialect::Responses);
    assert_eq!(String::from_utf8_lossy(&n.body), answer);
    let m = &n.parsed.choices[0].message;
    assert_eq!(m.content.as_deref(), Some("Paris."));
    assert_eq!(served.value.facts().tokens.map(|t| t.input), Some(120));
}

#[tokio::test]
async fn the_mock_answers_a_call_and_its_stream_through_the_provider() {
    let mock = MockUpstream::start().await;
    let gw = gateway("openai", &mock.base_url(), "");
    let tools = json!([{"type": "function", "name": "get_weather", "strict": true,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let served = gw
        .execute(call(
            &json!({"model": "up/m", "input": "weather?", "tools": tools}),
        ))
        .await
        .unwrap();
    let r = served.value.into_response().unwrap();
    let c = &r.choices[0];
    let t = &c.message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(
        (
            t.function.name.as_str(),
            t.function.arguments.as_str(),
            c.finish_reason.as_ref().map(|f| f.as_str())
        ),
        ("get_weather", r#"{"city":"Paris"}"#, Some("tool_calls"))
    );
    assert!(t.id.starts_with("call_mock"), "call_id is the id: {}", t.id);

    let served = gw
        .execute_stream(call(
            &json!({"model": "up/m", "input": "hi you", "stream": true}),
        ))
        .await
        .unwrap();
    let got = collect(served.value).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    let text: String = got
        .chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(text, "Echo: hi you");
    let native: Vec<u8> = got
        .chunks
        .iter()
        .flat_map(|c| c.native.as_deref().unwrap_or_default().to_vec())
        .collect();
    let native = String::from_utf8(native).unwrap();
    assert!(native.starts_with("event: response.created\n"), "{native}");
    assert!(native.ends_with("\n\n") && native.contains("event: response.completed\n"));
    let usage = got.chunks.iter().find_map(|c| c.usage.clone()).unwrap();
    assert_eq!(usage.completion_tokens, 3);
}

#[tokio::test]
async fn a_stream_goes_back_byte_for_byte() {
    let mock = MockUpstream::start().await;
    let gw = gateway("openai", &mock.base_url(), "");
    let sse = fixture("stream-function-calls.sse");
    mock.push(Reply::Raw {
        status: 200,
        content_type: "text/event-stream".into(),
        body: Bytes::from(sse.clone()),
    });
    let served = gw
        .execute_stream(call(
            &json!({"model": "up/m", "input": "x", "stream": true}),
        ))
        .await
        .unwrap();
    let got = collect(served.value).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    let native: Vec<u8> = got
        .chunks
        .iter()
        .flat_map(|c| c.native.as_deref().unwrap_or_default().to_vec())
        .collect();
    assert_eq!(String::from_utf8_lossy(&native), sse);
}

/// The error a call gets when the upstream answers with `reply`.
async fn failing(reply: Reply, stream: bool) -> GatewayError {
    let mock = MockUpstream::start().await;
    let gw = gateway("openai", &mock.base_url(), "");
    mock.push(reply);
    let body = json!({"model": "up/m", "input": "x", "stream": stream});
    if stream {
        gw.execute_stream(call(&body)).await.err().unwrap()
    } else {
        gw.execute(call(&body)).await.err().unwrap()
    }
}

#[tokio::test]
async fn upstream_errors_map_as_on_the_chat_path() {
    for stream in [false, true] {
        let e = failing(
            Reply::error(429, "Rate limit reached").with_header("retry-after", "1"),
            stream,
        )
        .await;
        assert_eq!(e.status, 429, "stream={stream}: {e:?}");
        assert!(e.message.contains("Rate limit reached"), "{e:?}");
        let e = failing(
            Reply::Json {
                status: 400,
                body: json!({"error": {"message": "Previous response with id 'resp_0' not found.",
                    "type": "invalid_request_error", "param": "previous_response_id", "code": "previous_response_not_found"}}),
                headers: Vec::new(),
            },
            stream,
        )
        .await;
        assert_eq!(
            (e.status, e.param.as_deref(), e.code.as_deref()),
            (
                400,
                Some("previous_response_id"),
                Some("previous_response_not_found")
            ),
            "stream={stream}: {e:?}"
        );
    }
    // A stream failing before its content fails the call (and would fall back).
    let e = failing(
        Reply::Raw {
            status: 200,
            content_type: "text/event-stream".into(),
            body: Bytes::from(fixture("stream-failed-before-content.sse")),
        },
        true,
    )
    .await;
    assert_eq!(e.status, 429, "{e:?}");
    // JSON in place of a stream is the upstream's error.
    let e = failing(
        Reply::Json {
            status: 200,
            body: json!({"error": {"message": "overloaded", "code": 503}}),
            headers: Vec::new(),
        },
        true,
    )
    .await;
    assert!(e.status >= 500, "{e:?}");
}

#[tokio::test]
async fn a_cut_stream_fails_after_its_content() {
    let mock = MockUpstream::start().await;
    let gw = gateway("openai", &mock.base_url(), "");
    let sse = fixture("stream-cut.sse");
    let events: Vec<SseStep> = sse.split_inclusive("\n\n").map(SseStep::raw).collect();
    mock.push(Reply::Sse {
        events,
        end: StreamEnd::Close,
    });
    let served = gw
        .execute_stream(call(
            &json!({"model": "up/m", "input": "x", "stream": true}),
        ))
        .await
        .unwrap();
    let got = collect(served.value).await;
    assert!(
        matches!(got.error, Some(modelway_core::ProviderError::StreamCut(_))),
        "{:?}",
        got.error
    );
}

#[tokio::test]
async fn without_the_responses_api_the_call_is_translated_and_state_refused() {
    let mock = MockUpstream::start().await;
    let gw = gateway("openai-compatible", &mock.base_url(), "");
    let served = gw
        .execute(call(&json!({"model": "up/m", "input": "hi"})))
        .await
        .unwrap();
    assert!(
        matches!(served.value, Completion::Raw(_)),
        "{:?}",
        served.value
    );
    assert_eq!(only_request(&mock).path, "/v1/chat/completions");
    mock.reset();
    let e = gw
        .execute(call(
            &json!({"model": "up/m", "input": "hi", "previous_response_id": "resp_0"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status, e.param.as_deref()),
        (400, Some("previous_response_id"))
    );
    assert!(mock.requests().is_empty());
    // Opted in, the same server takes it.
    let gw = gateway(
        "openai-compatible",
        &mock.base_url(),
        "responses_api = true",
    );
    let served = gw
        .execute(call(
            &json!({"model": "up/m", "input": "hi", "previous_response_id": "resp_0"}),
        ))
        .await
        .unwrap();
    let Completion::Native(n) = &served.value else {
        panic!("not passthrough")
    };
    let v: Value = serde_json::from_slice(&n.body).unwrap();
    assert_eq!(v["previous_response_id"], "resp_0");
    assert_eq!(only_request(&mock).path, "/v1/responses");
}
