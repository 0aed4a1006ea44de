//! Drives a real `MockUpstream` over HTTP: default answers, scripted replies, faults,
//! recording and the control API.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use modelway_core::chat::ChatChunk;
use modelway_core::sse::SseDecoder;
use modelway_testkit::{fixtures_dir, MockUpstream, Reply, SseStep, StreamEnd};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    body: &str,
) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test")
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("response head in time")
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("body in time")
        .unwrap()
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn chat(mock: &MockUpstream, req: &Value) -> Answer {
    let url = format!("{}/chat/completions", mock.base_url());
    send(&client(), Method::POST, &url, &req.to_string()).await
}

/// The `data:` payloads of an SSE body, decoded with modelway's own decoder.
fn sse_data(body: &[u8]) -> Vec<String> {
    SseDecoder::decode_all(body)
        .into_iter()
        .map(|e| e.data.to_string())
        .collect()
}

/// The chunks before `[DONE]`; asserts the stream ends with `[DONE]`.
fn chunks(body: &[u8]) -> Vec<ChatChunk> {
    let data = sse_data(body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("chunk {d}: {e}")))
        .collect()
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn hello(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there world"}]})
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters":
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

#[tokio::test]
async fn default_answer_echoes_the_last_user_message() {
    let mock = MockUpstream::start().await;
    let a = chat(&mock, &hello(false)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "application/json");
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock"));
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Echo: hello there world");
    assert_eq!(choice["message"]["refusal"], Value::Null);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 9);
    // It must also parse as modelway's canonical response.
    serde_json::from_value::<modelway_core::chat::ChatResponse>(v).unwrap();
}

#[tokio::test]
async fn default_stream_reassembles_to_the_echo() {
    let mock = MockUpstream::start().await;
    let a = chat(&mock, &hello(true)).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let chunks = chunks(&a.body);
    assert!(chunks.len() >= 5, "{chunks:?}");
    let first = &chunks[0].choices[0].delta;
    assert_eq!(
        first.role.as_ref().map(|r| r.to_string()).as_deref(),
        Some("assistant")
    );
    assert_eq!(first.content.as_deref(), Some(""));
    let text: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(text, "Echo: hello there world");
    let last = chunks.last().unwrap();
    assert_eq!(
        last.choices[0].finish_reason.as_ref().unwrap().as_str(),
        "stop"
    );
    assert!(chunks
        .iter()
        .all(|c| c.usage.is_none() && c.id == chunks[0].id));
    assert!(
        !a.body.windows(7).any(|w| w == b"\"usage\""),
        "no usage key without include_usage"
    );
}

#[tokio::test]
async fn include_usage_adds_a_final_usage_chunk() {
    let mock = MockUpstream::start().await;
    let mut req = hello(true);
    req["stream_options"] = json!({"include_usage": true});
    let chunks = chunks(&chat(&mock, &req).await.body);
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    let usage = last.usage.as_ref().unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (5, 4, 9)
    );
    let before = &chunks[chunks.len() - 2];
    assert_eq!(
        before.choices[0].finish_reason.as_ref().unwrap().as_str(),
        "stop"
    );
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c.usage.is_none() && !c.choices.is_empty()));
}

#[tokio::test]
async fn tools_get_one_default_tool_call() {
    let mock = MockUpstream::start().await;
    let mut req = hello(false);
    req["tools"] = weather_tools();
    let v = chat(&mock, &req).await.json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);

    req["stream"] = json!(true);
    let chunks = chunks(&chat(&mock, &req).await.body);
    let frags: Vec<_> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .flat_map(|c| c.delta.tool_calls.iter().flatten())
        .collect();
    assert!(frags.len() > 2, "{frags:?}");
    let head = frags[0];
    assert_eq!(head.index, 0);
    assert!(head.id.as_deref().unwrap().starts_with("call_"));
    assert_eq!(head.kind.as_deref(), Some("function"));
    let f = head.function.as_ref().unwrap();
    assert_eq!(
        (f.name.as_deref(), f.arguments.as_deref()),
        (Some("get_weather"), Some(""))
    );
    for rest in &frags[1..] {
        assert!(rest.id.is_none() && rest.kind.is_none(), "{rest:?}");
        assert!(rest.function.as_ref().unwrap().name.is_none());
    }
    let args: String = frags
        .iter()
        .filter_map(|t| t.function.as_ref()?.arguments.as_deref())
        .collect();
    assert_eq!(args, r#"{"city":"Paris"}"#);
    let last = chunks.last().unwrap();
    assert_eq!(
        last.choices[0].finish_reason.as_ref().unwrap().as_str(),
        "tool_calls"
    );
}

#[tokio::test]
async fn fixture_reply_is_replayed_byte_for_byte() {
    let mock = MockUpstream::start().await;
    let name = "openai/sdk-recordings/stream-tool-call.sse";
    mock.push(Reply::Fixture(name.to_owned()));
    let a = chat(&mock, &hello(true)).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let want = std::fs::read(fixtures_dir().join(name)).unwrap();
    assert_eq!(a.body, want);
}

#[tokio::test]
async fn scripted_replies_are_used_in_order_then_the_default() {
    let mock = MockUpstream::start().await;
    mock.push(Reply::error(500, "boom"));
    mock.push(Reply::error(429, "slow down").with_header("retry-after", "2"));
    mock.push(Reply::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: Bytes::from_static(b"{\"id\": \"trunc"),
    });

    let a = chat(&mock, &hello(false)).await;
    assert_eq!(a.status, 500);
    assert_eq!(
        a.json(),
        json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}})
    );
    let a = chat(&mock, &hello(false)).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.headers["retry-after"], "2");
    assert_eq!(a.json()["error"]["code"], "rate_limit_exceeded");
    let a = chat(&mock, &hello(false)).await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::OK, &b"{\"id\": \"trunc"[..])
    );
    let a = chat(&mock, &hello(false)).await;
    assert_eq!(
        a.json()["choices"][0]["message"]["content"],
        "Echo: hello there world"
    );
}

#[tokio::test]
async fn scripted_sse_steps_are_sent_with_their_delays() {
    let mock = MockUpstream::start().await;
    mock.push(Reply::Sse {
        events: vec![
            SseStep::data(&json!({"a": 1})),
            SseStep::raw(": keep-alive\n\n").after(Duration::from_millis(50)),
        ],
        end: StreamEnd::Close,
    });
    let started = std::time::Instant::now();
    let a = chat(&mock, &hello(true)).await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(&a.body[..], b"data: {\"a\":1}\n\n: keep-alive\n\n");
    assert_eq!(mock.cancelled(), 0);
}

#[tokio::test]
async fn stream_end_drop_is_a_body_error_for_the_client() {
    let mock = MockUpstream::start().await;
    mock.push(Reply::Sse {
        events: vec![SseStep::data(&json!({"a": 1}))],
        end: StreamEnd::Drop,
    });
    let req = Request::post(format!("{}/chat/completions", mock.base_url()))
        .body(Full::new(Bytes::from(hello(true).to_string())))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, client().request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    let err = loop {
        match tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("frame in time")
        {
            Some(Ok(f)) => got.extend_from_slice(f.data_ref().map_or(&[][..], |d| &d[..])),
            Some(Err(e)) => break e,
            None => panic!(
                "body ended cleanly after {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    };
    assert_eq!(got, b"data: {\"a\":1}\n\n", "then error {err}");
    assert_eq!(mock.cancelled(), 0, "the mock dropped it, not the client");
}

#[tokio::test]
async fn hang_then_client_gone_counts_as_cancelled() {
    let mock = MockUpstream::start().await;
    mock.push(Reply::Hang);
    let body = hello(false).to_string();
    let mut tcp = TcpStream::connect(mock.addr()).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    assert_eq!(mock.wait_for_requests(1, WAIT).await.len(), 1);
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut buf)).await;
    assert!(read.is_err(), "a hang must not answer, got {read:?}");
    assert_eq!(mock.cancelled(), 0);
    drop(tcp);
    eventually("cancelled() == 1", || mock.cancelled() == 1).await;
}

#[tokio::test]
async fn hang_then_hyper_client_timeout_counts_as_cancelled() {
    let mock = MockUpstream::start().await;
    mock.push(Reply::Hang);
    let req = Request::post(format!("{}/chat/completions", mock.base_url()))
        .body(Full::new(Bytes::from(hello(false).to_string())))
        .unwrap();
    let c = client();
    let r = tokio::time::timeout(Duration::from_millis(200), c.request(req)).await;
    assert!(r.is_err(), "a hang must not answer");
    drop(c);
    eventually("cancelled() == 1", || mock.cancelled() == 1).await;
}

#[tokio::test]
async fn stream_abandoned_mid_body_counts_as_cancelled() {
    let mock = MockUpstream::start().await;
    mock.push(Reply::Sse {
        events: vec![
            SseStep::data(&json!({"a": 1})),
            SseStep::data(&json!({"b": 2})).after(Duration::from_secs(30)),
        ],
        end: StreamEnd::Done,
    });
    let req = Request::post(format!("{}/chat/completions", mock.base_url()))
        .body(Full::new(Bytes::from(hello(true).to_string())))
        .unwrap();
    let c = client();
    let resp = tokio::time::timeout(WAIT, c.request(req))
        .await
        .unwrap()
        .unwrap();
    let mut body = resp.into_body();
    let first = tokio::time::timeout(WAIT, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.data_ref().unwrap(), &b"data: {\"a\":1}\n\n"[..]);
    assert_eq!(mock.cancelled(), 0);
    drop(body);
    drop(c);
    eventually("cancelled() == 1", || mock.cancelled() == 1).await;
    mock.reset();
    assert_eq!(mock.cancelled(), 0);
}

#[tokio::test]
async fn drop_connection_closes_without_a_response() {
    let mock = MockUpstream::start().await;
    mock.push(Reply::DropConnection);
    let body = hello(false).to_string();
    let mut tcp = TcpStream::connect(mock.addr()).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let n = tokio::time::timeout(WAIT, tcp.read_to_end(&mut got))
        .await
        .expect("closed in time");
    // A reset is as good as a clean close here; what matters is that no bytes came.
    assert!(
        got.is_empty(),
        "got {:?} ({n:?})",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn requests_are_recorded_with_headers_and_body() {
    let mock = MockUpstream::start().await;
    let c = client();
    let models = send(
        &c,
        Method::GET,
        &format!("{}/models?limit=2", mock.base_url()),
        "",
    )
    .await;
    assert_eq!(models.status, 200);
    let ids: Vec<_> = models.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["gpt-4o-mini", "mock-model"]);
    // Without the /v1 prefix too.
    let url = format!("http://{}/chat/completions", mock.addr());
    assert_eq!(
        send(&c, Method::POST, &url, &hello(false).to_string())
            .await
            .status,
        200
    );
    assert_eq!(send(&c, Method::POST, &url, "{not json").await.status, 400);

    let reqs = mock.wait_for_requests(3, WAIT).await;
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("GET", "/v1/models?limit=2")
    );
    assert_eq!(
        (reqs[1].method.as_str(), reqs[1].path.as_str()),
        ("POST", "/chat/completions")
    );
    assert_eq!(reqs[1].header("Authorization"), Some("Bearer sk-test"));
    assert_eq!(reqs[1].header("content-type"), Some("application/json"));
    assert!(reqs[1].headers.iter().all(|(k, _)| *k == k.to_lowercase()));
    assert_eq!(reqs[1].json(), hello(false));
    assert_eq!(reqs[2].json(), Value::Null);

    mock.reset();
    assert!(mock.requests().is_empty());
    let none = mock.wait_for_requests(1, Duration::from_millis(20)).await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn serves_h2c_with_prior_knowledge() {
    let mock = MockUpstream::start().await;
    let c: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let a = send(
        &c,
        Method::POST,
        &format!("{}/chat/completions", mock.base_url()),
        &hello(true).to_string(),
    )
    .await;
    assert_eq!(a.status, 200);
    let text: String = chunks(&a.body)
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(text, "Echo: hello there world");
}

#[tokio::test]
async fn control_api_scripts_records_and_resets() {
    let mock = MockUpstream::start().await;
    let c = client();
    let base = format!("http://{}", mock.addr());
    let script = json!({"replies": [
        {"status": 503, "body": {"error": {"message": "overloaded"}}, "headers": {"retry-after": "1"}},
        {"sse": [{"data": {"x": 1}}, {"data": "data: raw\n\n", "delay_ms": 5}], "end": "close"},
        {"fixture": "openai/sdk-recordings/stream-text.sse"},
    ]});
    let a = send(
        &c,
        Method::POST,
        &format!("{base}/__mock/script"),
        &script.to_string(),
    )
    .await;
    assert_eq!(
        (a.status, a.json()["queued"].clone()),
        (StatusCode::OK, json!(3))
    );
    let bad = send(
        &c,
        Method::POST,
        &format!("{base}/__mock/script"),
        r#"{"replies":[{}]}"#,
    )
    .await;
    assert_eq!(bad.status, 400);

    let a = chat(&mock, &hello(false)).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers["retry-after"], "1");
    assert_eq!(
        &chat(&mock, &hello(true)).await.body[..],
        b"data: {\"x\":1}\n\ndata: raw\n\n"
    );
    let fixture = std::fs::read(fixtures_dir().join("openai/sdk-recordings/stream-text.sse"));
    assert_eq!(chat(&mock, &hello(true)).await.body, fixture.unwrap());

    let recorded = send(&c, Method::GET, &format!("{base}/__mock/requests"), "")
        .await
        .json();
    let recorded = recorded.as_array().unwrap();
    assert_eq!(
        recorded.len(),
        3,
        "control calls are not recorded: {recorded:?}"
    );
    assert_eq!(recorded[0]["method"], "POST");
    assert_eq!(recorded[0]["path"], "/v1/chat/completions");
    assert_eq!(recorded[0]["headers"]["authorization"], "Bearer sk-test");
    assert_eq!(recorded[0]["body"], hello(false));

    let stats = send(&c, Method::GET, &format!("{base}/__mock/stats"), "")
        .await
        .json();
    assert_eq!(stats["cancelled"], 0);
    let reset = send(&c, Method::POST, &format!("{base}/__mock/reset"), "").await;
    assert_eq!(reset.status, 200);
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn dropping_the_mock_stops_the_server() {
    let mock = MockUpstream::start().await;
    let addr = mock.addr();
    drop(mock);
    let deadline = tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting after drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn openai_embeddings_are_deterministic_and_honour_dimensions_and_base64() {
    let mock = MockUpstream::start().await;
    let c = client();
    let url = format!("{}/embeddings", mock.base_url());
    let a = send(
        &c,
        Method::POST,
        &url,
        r#"{"model":"text-embedding-3-small","input":["hello world","x"]}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json());
    let v = a.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    assert_eq!(v["data"][1]["index"], 1);
    let first: Vec<f32> = serde_json::from_value(v["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(first, modelway_testkit::embed::vector(b"hello world", 16));

    let b = send(
        &c,
        Method::POST,
        &url,
        r#"{"model":"m","input":"hello world","dimensions":3,"encoding_format":"base64"}"#,
    )
    .await
    .json();
    assert_eq!(
        b["data"][0]["embedding"],
        json!(modelway_testkit::embed::base64_vector(
            &modelway_testkit::embed::vector(b"hello world", 3)
        ))
    );
    let t = send(
        &c,
        Method::POST,
        &url,
        r#"{"model":"m","input":[[1,2],[3]]}"#,
    )
    .await
    .json();
    assert_eq!(t["usage"]["prompt_tokens"], 3);

    for (body, param) in [
        (r#"{"input":"x"}"#, "model"),
        (r#"{"model":"m"}"#, "input"),
        (r#"{"model":"m","input":[]}"#, "input"),
        (r#"{"model":"m","input":""}"#, "input"),
        (r#"{"model":"m","input":"x","dimensions":0}"#, "dimensions"),
        (
            r#"{"model":"m","input":"x","encoding_format":"int8"}"#,
            "encoding_format",
        ),
    ] {
        let r = send(&c, Method::POST, &url, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.json()["error"]["param"], param, "{body}");
    }
    // Scripted replies and faults apply here too.
    mock.push(Reply::error(500, "boom"));
    let r = send(&c, Method::POST, &url, r#"{"model":"m","input":"x"}"#).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn gemini_batch_embed_contents_answers_one_vector_per_request() {
    let mock = MockUpstream::start().await;
    let c = client();
    let url = format!(
        "http://{}/v1beta/models/gemini-embedding-001:batchEmbedContents",
        mock.addr()
    );
    let post = |body: String, key: bool| {
        let mut b = Request::post(&url).header("content-type", "application/json");
        if key {
            b = b.header("x-goog-api-key", "AIza-test");
        }
        let req = b.body(Full::new(Bytes::from(body))).unwrap();
        let c = c.clone();
        async move {
            let resp = tokio::time::timeout(WAIT, c.request(req))
                .await
                .unwrap()
                .unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    let req = |text: &str, dims: Option<u64>| {
        let mut r = json!({"model": "models/gemini-embedding-001",
            "content": {"parts": [{"text": text}]}});
        if let Some(d) = dims {
            r["outputDimensionality"] = json!(d);
        }
        r
    };
    let (status, v) = post(
        json!({"requests": [req("a", None), req("b", Some(4))]}).to_string(),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let second: Vec<f32> = serde_json::from_value(v["embeddings"][1]["values"].clone()).unwrap();
    assert_eq!(second, modelway_testkit::embed::vector(b"b", 4));
    assert_eq!(v["embeddings"][0]["values"].as_array().unwrap().len(), 16);
    assert!(v.get("usageMetadata").is_none());

    let (status, _) = post(json!({"requests": [req("a", None)]}).to_string(), false).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let many: Vec<Value> = (0..101).map(|_| req("a", None)).collect();
    let (status, v) = post(json!({ "requests": many }).to_string(), true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 100"),
        "{v}"
    );
    let wrong =
        json!({"requests": [{"model": "models/other", "content": {"parts": [{"text": "a"}]}}]});
    let (status, _) = post(wrong.to_string(), true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
