//! End-to-end: the engine's failure handling, black box. The real binary routes over
//! testkit upstreams that fail on purpose; each test asserts which upstream got how many
//! requests, what the client was answered, and that nothing was sent twice beyond the
//! retry policy.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use modelway_testkit::{MockUpstream, Reply, SseStep, StreamEnd};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Harness bits
// ---------------------------------------------------------------------------------------

const ADMIN: &str = "[auth]\nadmin_key = \"adm\"\n\n";

/// `[providers.NAME]` of kind `openai-compatible` at `base_url`, plus `extra` lines.
fn provider(name: &str, base_url: &str, extra: &str) -> String {
    format!(
        "[providers.{name}]\nkind = \"openai-compatible\"\nbase_url = \"{base_url}\"\napi_key = \"sk-{name}-secret\"\n{extra}\n"
    )
}

/// A config with `[routing]` lines, providers `a` and `b` and the given route tables.
fn config_ab(routing: &str, a_url: &str, a_extra: &str, b: &MockUpstream, routes: &str) -> String {
    format!(
        "[routing]\n{routing}\n\n{}{}{routes}",
        provider("a", a_url, a_extra),
        provider("b", &b.base_url(), "")
    )
}

/// A `http://127.0.0.1:PORT/v1` that refuses connections: a port bound, then released.
fn closed_port_base_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
}

/// How many chat requests `m` received (model listings and such are not counted).
fn chats(m: &MockUpstream) -> usize {
    m.requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .count()
}

/// Every call in these tests is answered within a few seconds when the gateway keeps
/// its contract; 10 s is the bound past which it counts as a hang.
const CALL_BOUND: Duration = Duration::from_secs(10);

async fn call(gw: &Gw, body: String) -> Resp {
    let req = post_request(&gw.url("/v1/chat/completions"), body.clone());
    try_send(&client(), req, CALL_BOUND)
        .await
        .unwrap_or_else(|e| {
            panic!("POST /v1/chat/completions {body}: expected a response, got: {e}")
        })
}

async fn ask(gw: &Gw, model: &str, text: &str) -> Resp {
    call(gw, chat(model, text)).await
}

async fn ask_stream(gw: &Gw, model: &str, text: &str) -> Resp {
    call(gw, chat_stream(model, text)).await
}

/// A one-line picture of a response for failure messages.
fn show(r: &Resp) -> String {
    format!(
        "HTTP {} attempts={:?} provider={:?} model={:?} retry-after={:?} body={}",
        r.status,
        r.header("x-modelway-attempts"),
        r.header("x-modelway-provider"),
        r.header("x-modelway-model"),
        r.header("retry-after"),
        r.text()
    )
}

fn attempts(r: &Resp) -> Option<usize> {
    r.header("x-modelway-attempts").and_then(|v| v.parse().ok())
}

/// Asserts a JSON answer `Echo: {text}` from `provider` after `attempts` attempts.
fn assert_answered(what: &str, r: &Resp, provider: &str, n_attempts: usize, text: &str) {
    assert_eq!(r.status, 200, "{what}: expected HTTP 200, got {}", show(r));
    assert_eq!(
        r.header("x-modelway-provider"),
        Some(provider),
        "{what}: expected x-modelway-provider {provider}, got {}",
        show(r)
    );
    assert_eq!(
        attempts(r),
        Some(n_attempts),
        "{what}: expected x-modelway-attempts {n_attempts}, got {}",
        show(r)
    );
    let model = if provider == "a" { "m1" } else { "m2" };
    assert_eq!(
        r.header("x-modelway-model"),
        Some(model),
        "{what}: expected x-modelway-model {model}, got {}",
        show(r)
    );
    let v = r.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("Echo: {text}"),
        "{what}: expected the upstream's echo answer, got {}",
        show(r)
    );
}

/// Asserts `{"error":{"message","type","param","code"}}` with this status and type; returns the message.
fn assert_error(what: &str, r: &Resp, status: u16, kind: &str) -> String {
    assert_eq!(
        r.status,
        status,
        "{what}: expected HTTP {status}, got {}",
        show(r)
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "{what}: expected an OpenAI error JSON, got non-JSON ({e}): {}",
            show(r)
        )
    });
    for k in ["message", "type", "param", "code"] {
        assert!(
            v["error"].get(k).is_some(),
            "{what}: expected error.{k} in the error body, got {}",
            show(r)
        );
    }
    assert_eq!(
        v["error"]["type"],
        kind,
        "{what}: expected error.type {kind}, got {}",
        show(r)
    );
    assert!(
        !r.text().contains("secret"),
        "{what}: an error body leaked an api key: {}",
        show(r)
    );
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Asserts how many chat requests each upstream got.
fn assert_counts(
    what: &str,
    a: Option<&MockUpstream>,
    want_a: usize,
    b: &MockUpstream,
    want_b: usize,
) {
    let got_a = a.map_or(0, chats);
    let got_b = chats(b);
    assert_eq!(
        (got_a, got_b),
        (want_a, want_b),
        "{what}: expected (a, b) chat requests {:?}, got {:?}",
        (want_a, want_b),
        (got_a, got_b)
    );
}

async fn health_of(gw: &Gw, provider: &str, model: &str) -> Option<Value> {
    let r = get(&gw.url("/admin/health"), &[("authorization", "Bearer adm")]).await;
    assert_eq!(r.status, 200, "GET /admin/health: {}", show(&r));
    let v = r.json();
    let targets = v["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("GET /admin/health: expected a `targets` list, got {v}"));
    targets
        .iter()
        .find(|t| t["provider"] == provider && t["model"] == model)
        .cloned()
}

async fn state_of(gw: &Gw, provider: &str, model: &str) -> String {
    health_of(gw, provider, model).await.map_or_else(
        || "<absent>".to_owned(),
        |t| t["state"].as_str().unwrap_or("?").to_owned(),
    )
}

async fn config_version(gw: &Gw) -> u64 {
    let r = get(&gw.url("/admin/config"), &[("authorization", "Bearer adm")]).await;
    assert_eq!(r.status, 200, "GET /admin/config: {}", show(&r));
    r.json()["version"].as_u64().unwrap()
}

/// A chat chunk from upstream `a`, recognisable by its id.
fn a_chunk(delta: Value) -> Value {
    json!({"id": "from-a", "object": "chat.completion.chunk", "created": 1, "model": "m1",
           "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
}

fn role_chunk() -> SseStep {
    SseStep::data(&a_chunk(json!({"role": "assistant", "content": ""})))
}

/// Asserts that an SSE body is exactly one whole stream from the mock's echo model for
/// `text`: one role chunk, one id, no error event, `[DONE]` once and last.
fn assert_one_clean_stream(what: &str, r: &Resp, text: &str) {
    assert_eq!(r.status, 200, "{what}: expected HTTP 200, got {}", show(r));
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/event-stream"),
        "{what}: expected text/event-stream, got {ct:?}"
    );
    let events = sse_data(&r.body);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{what}: expected the stream to end with [DONE], got {events:?}"
    );
    let dones = events.iter().filter(|e| *e == "[DONE]").count();
    assert_eq!(
        dones, 1,
        "{what}: expected one [DONE], got {dones}: {events:?}"
    );
    let chunks: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| {
            serde_json::from_str(e)
                .unwrap_or_else(|err| panic!("{what}: a data event is not JSON ({err}): {e:?}"))
        })
        .collect();
    assert!(
        chunks.iter().all(|c| c.get("error").is_none()),
        "{what}: expected no error event, got {events:?}"
    );
    let roles = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["role"] == "assistant")
        .count();
    assert_eq!(
        roles, 1,
        "{what}: expected exactly one role chunk, got {roles}: {events:?}"
    );
    let ids: std::collections::BTreeSet<String> = chunks
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "{what}: expected one stream (one chunk id), got {ids:?}"
    );
    let id = ids.iter().next().unwrap();
    assert!(
        id.starts_with("chatcmpl-mock"),
        "{what}: expected the healthy upstream's stream, got chunk id {id:?}: {events:?}"
    );
    assert_eq!(
        stream_text(&r.body),
        format!("Echo: {text}"),
        "{what}: expected the whole echo text, got {events:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 1. Failure classes: fall back, retry, or not
// ---------------------------------------------------------------------------------------

const AB: &str = r#"["a/m1", "b/m2"]"#;

enum AFault {
    /// Replies queued on mock `a`.
    Replies(Vec<Reply>),
    /// `a`'s base_url is a closed port.
    Refused,
}

struct Row {
    name: &'static str,
    fault: AFault,
    /// Extra lines of `[routing]`.
    routing: &'static str,
    /// Extra lines of the route table.
    route: &'static str,
    /// The route's `targets` value.
    targets: &'static str,
    provider: &'static str,
    attempts: usize,
    a_requests: usize,
    b_requests: usize,
}

fn malformed() -> Reply {
    Reply::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: bytes::Bytes::from_static(b"{\"id\":"),
    }
}

fn quota_429() -> Reply {
    Reply::Json {
        status: 429,
        body: json!({"error": {"message": "You exceeded your current quota",
                                "type": "insufficient_quota", "param": null,
                                "code": "insufficient_quota"}}),
        headers: vec![],
    }
}

async fn run_rows(rows: Vec<Row>) {
    for row in rows {
        let a = MockUpstream::start().await;
        let b = MockUpstream::start().await;
        let a_url = match &row.fault {
            AFault::Replies(replies) => {
                for r in replies {
                    a.push(r.clone());
                }
                a.base_url()
            }
            AFault::Refused => closed_port_base_url(),
        };
        let routes = format!(
            "[[routes]]\nname = \"r\"\ntargets = {}\nbackoff = {{ base = \"10ms\", max = \"50ms\" }}\n{}\n",
            row.targets, row.route
        );
        let routing = format!("timeout = \"5s\"\n{}", row.routing);
        let gw = Gw::start(&config_ab(&routing, &a_url, "", &b, &routes));
        let text = format!("row {}", row.name);
        let r = ask(&gw, "r", &text).await;
        assert_answered(row.name, &r, row.provider, row.attempts, &text);
        let a_seen = matches!(row.fault, AFault::Replies(_)).then_some(&a);
        assert_counts(row.name, a_seen, row.a_requests, &b, row.b_requests);
        if row.provider == "b" {
            assert_eq!(
                b.requests()
                    .iter()
                    .find(|q| q.path.ends_with("/chat/completions"))
                    .map(|q| q.json()["model"].clone()),
                Some(json!("m2")),
                "{}: expected b to be asked for its own model m2",
                row.name
            );
        }
    }
}

#[tokio::test]
async fn each_retryable_or_auth_failure_of_the_first_target_falls_back_to_the_second_once() {
    let row = |name, fault| Row {
        name,
        fault,
        routing: "",
        route: "",
        targets: AB,
        provider: "b",
        attempts: 2,
        a_requests: 1,
        b_requests: 1,
    };
    let one = |r: Reply| AFault::Replies(vec![r]);
    run_rows(vec![
        row(
            "429 retry-after 0",
            one(Reply::error(429, "slow down").with_header("retry-after", "0")),
        ),
        row("500", one(Reply::error(500, "boom"))),
        row("503", one(Reply::error(503, "overloaded"))),
        row("529", one(Reply::error(529, "overloaded"))),
        Row {
            a_requests: 0,
            ..row("connect refused", AFault::Refused)
        },
        row("reset before headers", one(Reply::DropConnection)),
        row("malformed JSON 200", one(malformed())),
        row("401 from the provider", one(Reply::error(401, "bad key"))),
        row("403 from the provider", one(Reply::error(403, "forbidden"))),
        row("429 insufficient_quota", one(quota_429())),
    ])
    .await;
}

#[tokio::test]
async fn retries_repeat_the_same_target_except_after_auth_and_quota_failures() {
    run_rows(vec![
        Row {
            name: "500 twice with retries = 1: a, a, then b",
            fault: AFault::Replies(vec![Reply::error(500, "boom"), Reply::error(500, "boom")]),
            routing: "",
            route: "retries = 1",
            targets: AB,
            provider: "b",
            attempts: 3,
            a_requests: 2,
            b_requests: 1,
        },
        Row {
            name: "500 once with retries = 1: a's retry answers",
            fault: AFault::Replies(vec![Reply::error(500, "boom")]),
            routing: "",
            route: "retries = 1",
            targets: AB,
            provider: "a",
            attempts: 2,
            a_requests: 2,
            b_requests: 0,
        },
        Row {
            name: "503 once with retries = 1: a's retry answers",
            fault: AFault::Replies(vec![Reply::error(503, "overloaded")]),
            routing: "",
            route: "retries = 1",
            targets: AB,
            provider: "a",
            attempts: 2,
            a_requests: 2,
            b_requests: 0,
        },
        Row {
            name: "drop once with retries = 1: a's retry answers",
            fault: AFault::Replies(vec![Reply::DropConnection]),
            routing: "",
            route: "retries = 1",
            targets: AB,
            provider: "a",
            attempts: 2,
            a_requests: 2,
            b_requests: 0,
        },
        Row {
            name: "401 with retries = 1: no retry, straight to b",
            fault: AFault::Replies(vec![
                Reply::error(401, "bad key"),
                Reply::error(401, "bad key"),
            ]),
            routing: "",
            route: "retries = 1",
            targets: AB,
            provider: "b",
            attempts: 2,
            a_requests: 1,
            b_requests: 1,
        },
        Row {
            name: "429 insufficient_quota with retries = 1: no retry, straight to b",
            fault: AFault::Replies(vec![quota_429(), quota_429()]),
            routing: "",
            route: "retries = 1",
            targets: AB,
            provider: "b",
            attempts: 2,
            a_requests: 1,
            b_requests: 1,
        },
        Row {
            name: "route retries = 0 beats [routing] retries = 1",
            fault: AFault::Replies(vec![Reply::error(500, "boom"), Reply::error(500, "boom")]),
            routing: "retries = 1",
            route: "retries = 0",
            targets: AB,
            provider: "b",
            attempts: 2,
            a_requests: 1,
            b_requests: 1,
        },
        Row {
            name: "[routing] retries = 1 applies when the route says nothing",
            fault: AFault::Replies(vec![Reply::error(500, "boom")]),
            routing: "retries = 1",
            route: "",
            targets: AB,
            provider: "a",
            attempts: 2,
            a_requests: 2,
            b_requests: 0,
        },
        Row {
            name: "target retries = 0 beats the route's retries = 1",
            fault: AFault::Replies(vec![Reply::error(500, "boom"), Reply::error(500, "boom")]),
            routing: "",
            route: "retries = 1",
            targets: r#"[{ target = "a/m1", retries = 0 }, "b/m2"]"#,
            provider: "b",
            attempts: 2,
            a_requests: 1,
            b_requests: 1,
        },
    ])
    .await;
}

// ---------------------------------------------------------------------------------------
// 2. Timeouts cut hangs
// ---------------------------------------------------------------------------------------

async fn hang_is_cut(what: &str, a_extra: &str, route_timeout: &str, targets: &str) {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(Reply::Hang);
    let routes =
        format!("[[routes]]\nname = \"r\"\ntimeout = \"{route_timeout}\"\ntargets = {targets}\n");
    let gw = Gw::start(&config_ab("", &a.base_url(), a_extra, &b, &routes));
    let started = Instant::now();
    let r = ask(&gw, "r", "after a hang").await;
    let took = started.elapsed();
    assert_answered(what, &r, "b", 2, "after a hang");
    assert!(
        took < Duration::from_secs(2),
        "{what}: expected b's answer within 2 s of the 300 ms cut, got it after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(250),
        "{what}: expected the hang to be waited on for ~300 ms, answered after {took:?}"
    );
    assert_counts(what, Some(&a), 1, &b, 1);
    let closed = eventually(Duration::from_secs(3), || async { a.cancelled() >= 1 }).await;
    assert!(
        closed,
        "{what}: expected the hung upstream call to be closed (cancelled = 1), got cancelled = {}",
        a.cancelled()
    );
    assert_eq!(
        a.cancelled(),
        1,
        "{what}: expected exactly one cancelled call on a"
    );
}

#[tokio::test]
async fn a_target_timeout_cuts_a_hang_and_the_next_target_answers() {
    hang_is_cut(
        "target timeout 300ms",
        "",
        "30s",
        r#"[{ target = "a/m1", timeout = "300ms" }, "b/m2"]"#,
    )
    .await;
}

#[tokio::test]
async fn a_provider_timeout_cuts_a_hang_on_a_route_target_even_when_the_route_allows_30s() {
    hang_is_cut(
        "provider timeout 300ms",
        "timeout = \"300ms\"",
        "30s",
        r#"["a/m1", "b/m2"]"#,
    )
    .await;
}

#[tokio::test]
async fn a_route_timeout_cuts_a_hang_even_when_the_target_and_provider_allow_30s() {
    hang_is_cut(
        "route timeout 300ms, target and provider 30s",
        "timeout = \"30s\"",
        "300ms",
        r#"[{ target = "a/m1", timeout = "30s" }, "b/m2"]"#,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// 3. Fail fast
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_bad_request_fails_fast_with_the_upstreams_status_and_param() {
    for status in [400u16, 413, 422] {
        let what = format!("upstream {status}");
        let a = MockUpstream::start().await;
        let b = MockUpstream::start().await;
        a.push(Reply::Json {
            status,
            body: json!({"error": {"message": "Invalid value for 'temperature'",
                                    "type": "invalid_request_error",
                                    "param": "temperature", "code": null}}),
            headers: vec![],
        });
        let gw = Gw::start(&config_ab(
            "timeout = \"5s\"",
            &a.base_url(),
            "",
            &b,
            "[[routes]]\nname = \"r\"\nretries = 1\ntargets = [\"a/m1\", \"b/m2\"]\n",
        ));
        let r = ask(&gw, "r", "x").await;
        assert_eq!(
            r.status,
            status,
            "{what}: expected HTTP {status}, got {}",
            show(&r)
        );
        let v = r.json();
        assert_eq!(
            v["error"]["param"],
            "temperature",
            "{what}: expected the upstream's param, got {}",
            show(&r)
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("temperature"),
            "{what}: expected the upstream's message, got {}",
            show(&r)
        );
        assert_counts(&what, Some(&a), 1, &b, 0);
    }
}

#[tokio::test]
async fn a_404_from_a_route_target_falls_back_but_a_named_model_404_fails_fast() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = Gw::start(&config_ab(
        "timeout = \"5s\"",
        &a.base_url(),
        "",
        &b,
        "[[routes]]\nname = \"r\"\nretries = 1\ntargets = [\"a/m1\", \"b/m2\"]\n",
    ));
    let not_found = || Reply::Json {
        status: 404,
        body: json!({"error": {"message": "The model 'm1' does not exist",
                                "type": "invalid_request_error", "param": "model",
                                "code": "model_not_found"}}),
        headers: vec![],
    };
    a.push(not_found());
    let r = ask(&gw, "r", "route 404").await;
    assert_answered("404 on a route target", &r, "b", 2, "route 404");
    assert_counts("404 on a route target (no retry)", Some(&a), 1, &b, 1);

    a.push(not_found());
    let r = ask(&gw, "a/m1", "named 404").await;
    assert_eq!(
        r.status,
        404,
        "404 on a named model: expected HTTP 404, got {}",
        show(&r)
    );
    assert_eq!(
        r.json()["error"]["code"],
        "model_not_found",
        "404 on a named model: {}",
        show(&r)
    );
    assert_counts("404 on a named model (no retry)", Some(&a), 2, &b, 1);
}

// ---------------------------------------------------------------------------------------
// 4. When everything fails
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn when_every_target_fails_the_client_gets_a_502_listing_each_attempt() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(Reply::error(500, "boom at a"));
    b.push(Reply::error(500, "boom at b"));
    let gw = Gw::start(&config_ab(
        "timeout = \"5s\"",
        &a.base_url(),
        "",
        &b,
        "[[routes]]\nname = \"r\"\ntargets = [\"a/m1\", \"b/m2\"]\n",
    ));
    let r = ask(&gw, "r", "x").await;
    let what = "two 500s";
    let msg = assert_error(what, &r, 502, "upstream_error");
    assert_eq!(
        attempts(&r),
        Some(2),
        "{what}: expected x-modelway-attempts 2, got {}",
        show(&r)
    );
    for want in [
        "2 attempts failed: ",
        "a/m1 (server_error, HTTP 500, ",
        "b/m2 (server_error, HTTP 500, ",
        " ms)",
        "Last error",
    ] {
        assert!(
            msg.contains(want),
            "{what}: expected the message to contain {want:?}, got {msg:?}"
        );
    }
    assert!(
        msg.find("a/m1") < msg.find("b/m2"),
        "{what}: expected the attempts in order, got {msg:?}"
    );
    assert_counts(what, Some(&a), 1, &b, 1);
}

#[tokio::test]
async fn a_refused_connection_is_named_in_the_502() {
    let b = MockUpstream::start().await;
    b.push(Reply::error(500, "boom at b"));
    let gw = Gw::start(&config_ab(
        "timeout = \"5s\"",
        &closed_port_base_url(),
        "",
        &b,
        "[[routes]]\nname = \"r\"\ntargets = [\"a/m1\", \"b/m2\"]\n",
    ));
    let r = ask(&gw, "r", "x").await;
    let what = "refused + 500";
    let msg = assert_error(what, &r, 502, "upstream_error");
    assert_eq!(
        attempts(&r),
        Some(2),
        "{what}: expected x-modelway-attempts 2, got {}",
        show(&r)
    );
    for want in ["a/m1 (connect", "b/m2 (server_error, HTTP 500"] {
        assert!(
            msg.contains(want),
            "{what}: expected the message to contain {want:?}, got {msg:?}"
        );
    }
    assert_counts(what, None, 0, &b, 1);
}

#[tokio::test]
async fn when_every_target_times_out_the_client_gets_a_504() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(Reply::Hang);
    b.push(Reply::Hang);
    let gw = Gw::start(&config_ab(
        "",
        &a.base_url(),
        "",
        &b,
        "[[routes]]\nname = \"r\"\ntimeout = \"300ms\"\ntargets = [\"a/m1\", \"b/m2\"]\n",
    ));
    let started = Instant::now();
    let r = ask(&gw, "r", "x").await;
    let took = started.elapsed();
    let what = "two hangs, timeout 300ms";
    assert_error(what, &r, 504, "timeout_error");
    assert_eq!(
        attempts(&r),
        Some(2),
        "{what}: expected x-modelway-attempts 2, got {}",
        show(&r)
    );
    assert!(
        took < Duration::from_secs(3),
        "{what}: expected a 504 within 3 s, got it after {took:?}"
    );
    assert_counts(what, Some(&a), 1, &b, 1);
    let closed = eventually(Duration::from_secs(3), || async {
        a.cancelled() == 1 && b.cancelled() == 1
    })
    .await;
    assert!(
        closed,
        "{what}: expected both hung calls closed, got cancelled a={} b={}",
        a.cancelled(),
        b.cancelled()
    );
}

#[tokio::test]
async fn when_every_target_is_rate_limited_the_client_gets_a_429_with_the_soonest_retry_after() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(Reply::error(429, "slow down a").with_header("retry-after", "7"));
    b.push(Reply::error(429, "slow down b").with_header("retry-after", "3"));
    let gw = Gw::start(&config_ab(
        "timeout = \"5s\"",
        &a.base_url(),
        "",
        &b,
        "[[routes]]\nname = \"r\"\ntargets = [\"a/m1\", \"b/m2\"]\n",
    ));
    let started = Instant::now();
    let r = ask(&gw, "r", "x").await;
    let what = "429 retry-after 7 then 429 retry-after 3";
    assert_eq!(r.status, 429, "{what}: expected HTTP 429, got {}", show(&r));
    assert_eq!(
        r.header("retry-after"),
        Some("3"),
        "{what}: expected Retry-After 3 (the soonest), got {}",
        show(&r)
    );
    assert_eq!(
        attempts(&r),
        Some(2),
        "{what}: expected x-modelway-attempts 2, got {}",
        show(&r)
    );
    let v = r.json();
    assert!(
        v["error"]["message"].is_string(),
        "{what}: expected an OpenAI error, got {}",
        show(&r)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{what}: the gateway waited instead of answering (retries = 0)"
    );
    assert_counts(what, Some(&a), 1, &b, 1);
}

#[tokio::test]
async fn the_route_deadline_bounds_the_whole_request_with_a_504() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(Reply::Hang);
    b.push(Reply::Hang);
    let gw = Gw::start(&config_ab(
        "",
        &a.base_url(),
        "",
        &b,
        "[[routes]]\nname = \"r\"\ntimeout = \"10s\"\ndeadline = \"400ms\"\ntargets = [\"a/m1\", \"b/m2\"]\n",
    ));
    let started = Instant::now();
    let r = ask(&gw, "r", "x").await;
    let took = started.elapsed();
    let what = "deadline 400ms over two hangs";
    assert_error(what, &r, 504, "timeout_error");
    assert!(
        took < Duration::from_secs(2),
        "{what}: expected a 504 within 2 s, got it after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(350),
        "{what}: answered before the deadline: {took:?}"
    );
    let sent = chats(&a) + chats(&b);
    assert_eq!(
        attempts(&r),
        Some(sent),
        "{what}: expected x-modelway-attempts to count the {sent} upstream requests, got {}",
        show(&r)
    );
    assert_counts(what, Some(&a), 1, &b, sent - 1);
}

// ---------------------------------------------------------------------------------------
// 5. Retry-After
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_retry_after_within_max_retry_after_is_waited_out_on_the_same_target() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(Reply::error(429, "slow down").with_header("retry-after", "1"));
    let gw = Gw::start(&config_ab(
        "timeout = \"5s\"",
        &a.base_url(),
        "",
        &b,
        "[[routes]]\nname = \"r\"\nretries = 1\nmax_retry_after = \"5s\"\ntargets = [\"a/m1\", \"b/m2\"]\n",
    ));
    let started = Instant::now();
    let r = ask(&gw, "r", "patience").await;
    let took = started.elapsed();
    let what = "429 retry-after 1, max_retry_after 5s";
    assert_answered(what, &r, "a", 2, "patience");
    assert!(
        took >= Duration::from_millis(900),
        "{what}: expected the retry to wait ~1 s, answered after {took:?}"
    );
    assert!(took < Duration::from_secs(3), "{what}: took {took:?}");
    assert_counts(what, Some(&a), 2, &b, 0);
}

#[tokio::test]
async fn a_retry_after_beyond_max_retry_after_moves_on_to_the_next_target() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(Reply::error(429, "slow down").with_header("retry-after", "1"));
    let gw = Gw::start(&config_ab(
        "timeout = \"5s\"",
        &a.base_url(),
        "",
        &b,
        "[[routes]]\nname = \"r\"\nretries = 1\nmax_retry_after = \"100ms\"\ntargets = [\"a/m1\", \"b/m2\"]\n",
    ));
    let started = Instant::now();
    let r = ask(&gw, "r", "moving on").await;
    let took = started.elapsed();
    let what = "429 retry-after 1, max_retry_after 100ms";
    assert_answered(what, &r, "b", 2, "moving on");
    assert!(
        took < Duration::from_millis(800),
        "{what}: expected b to answer at once, answered after {took:?}"
    );
    assert_counts(what, Some(&a), 1, &b, 1);
}

// ---------------------------------------------------------------------------------------
// 6. Health
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn consecutive_failures_eject_a_target_then_one_probe_readmits_it() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    // Two failures eject; the third 500 fails the first probe; then a answers again.
    for _ in 0..3 {
        a.push(Reply::error(500, "boom"));
    }
    let gw = Gw::start(&format!(
        "{ADMIN}{}",
        config_ab(
            "timeout = \"5s\"\nhealth = { failures = 2, cooldown = \"1s\", max_cooldown = \"4s\" }",
            &a.base_url(),
            "",
            &b,
            "[[routes]]\nname = \"r\"\ntargets = [\"a/m1\", \"b/m2\"]\n",
        )
    ));
    for i in 1..=2 {
        let text = format!("failing {i}");
        let r = ask(&gw, "r", &text).await;
        assert_answered(&format!("request {i} (a fails)"), &r, "b", 2, &text);
        assert_counts(&format!("request {i}"), Some(&a), i, &b, i);
    }
    let ejected_at = Instant::now();
    let h = health_of(&gw, "a", "m1").await;
    let h = h.unwrap_or_else(|| panic!("/admin/health: expected an entry for a/m1"));
    assert_eq!(
        h["state"], "ejected",
        "after 2 failures: expected a/m1 ejected, got {h}"
    );
    assert!(
        h["consecutive_failures"].as_u64() >= Some(2),
        "after 2 failures: expected consecutive_failures >= 2, got {h}"
    );
    assert_eq!(
        state_of(&gw, "b", "m2").await,
        "healthy",
        "b/m2 after answering twice"
    );

    for i in 3..=5 {
        let text = format!("ejected {i}");
        let r = ask(&gw, "r", &text).await;
        assert_answered(&format!("request {i} (a ejected)"), &r, "b", 1, &text);
        assert_counts(&format!("request {i} (a ejected)"), Some(&a), 2, &b, i);
    }
    assert!(
        ejected_at.elapsed() < Duration::from_millis(900),
        "test too slow: the requests meant for the cooldown took {:?}",
        ejected_at.elapsed()
    );

    // Cooldown over: exactly one probe gets through, even with three requests at once.
    tokio::time::sleep(Duration::from_millis(1200).saturating_sub(ejected_at.elapsed())).await;
    assert_eq!(
        state_of(&gw, "a", "m1").await,
        "half_open",
        "a/m1 after its 1 s cooldown"
    );
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let url = gw.url("/v1/chat/completions");
            tokio::spawn(async move { post(&url, chat("r", &format!("probe {i}"))).await })
        })
        .collect();
    let mut total_attempts = 0;
    for (i, c) in calls.into_iter().enumerate() {
        let r = c.await.unwrap();
        assert_eq!(
            r.status,
            200,
            "concurrent request {i} while half-open: {}",
            show(&r)
        );
        assert_eq!(
            r.header("x-modelway-provider"),
            Some("b"),
            "concurrent request {i}: {}",
            show(&r)
        );
        total_attempts += attempts(&r).unwrap_or(0);
    }
    assert_counts("half-open: one probe", Some(&a), 3, &b, 8);
    assert_eq!(
        total_attempts, 4,
        "half-open: expected 1 probe + 3 answers = 4 attempts, got {total_attempts}"
    );
    assert_eq!(
        state_of(&gw, "a", "m1").await,
        "ejected",
        "a/m1 after its probe failed"
    );
    let r = ask(&gw, "r", "re-ejected").await;
    assert_answered("right after the failed probe", &r, "b", 1, "re-ejected");
    assert_counts("right after the failed probe", Some(&a), 3, &b, 9);

    // a answers again (its queue is empty). Once the cooldown passes, the probe readmits it.
    let probing = eventually(Duration::from_secs(6), || async {
        state_of(&gw, "a", "m1").await == "half_open"
    })
    .await;
    assert!(
        probing,
        "a/m1 never came out of its second ejection: {}",
        state_of(&gw, "a", "m1").await
    );
    let r = ask(&gw, "r", "readmitted").await;
    assert_answered("the successful probe", &r, "a", 1, "readmitted");
    let h = health_of(&gw, "a", "m1").await.unwrap();
    assert_eq!(h["state"], "healthy", "after a successful probe: {h}");
    assert_eq!(
        h["consecutive_failures"], 0,
        "after a successful probe: {h}"
    );
    let r = ask(&gw, "r", "back in").await;
    assert_answered("after readmission", &r, "a", 1, "back in");
    assert_counts("after readmission", Some(&a), 5, &b, 9);
}

#[tokio::test]
async fn a_429_with_retry_after_ejects_its_target_for_that_long() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(Reply::error(429, "slow down").with_header("retry-after", "1"));
    let gw = Gw::start(&format!(
        "{ADMIN}{}",
        config_ab(
            "timeout = \"5s\"\nhealth = { failures = 5, cooldown = \"30s\" }",
            &a.base_url(),
            "",
            &b,
            "[[routes]]\nname = \"r\"\nmax_retry_after = \"100ms\"\nretries = 1\ntargets = [\"a/m1\", \"b/m2\"]\n",
        )
    ));
    let r = ask(&gw, "r", "limited").await;
    let limited_at = Instant::now();
    assert_answered("a rate limited for 1 s", &r, "b", 2, "limited");
    assert_counts("a rate limited for 1 s", Some(&a), 1, &b, 1);
    assert_eq!(
        state_of(&gw, "a", "m1").await,
        "ejected",
        "a/m1 after one 429 with retry-after 1 (failures = 5)"
    );
    let r = ask(&gw, "r", "while limited").await;
    assert_answered("within a's Retry-After", &r, "b", 1, "while limited");
    assert_counts("within a's Retry-After", Some(&a), 1, &b, 2);
    assert!(
        limited_at.elapsed() < Duration::from_millis(900),
        "test too slow to observe the 1 s ejection: {:?}",
        limited_at.elapsed()
    );
    // The ejection lasts the Retry-After (1 s), not the 30 s cooldown.
    let back = eventually(Duration::from_secs(3), || async {
        state_of(&gw, "a", "m1").await != "ejected"
    })
    .await;
    assert!(
        back,
        "a/m1 still ejected 3 s after a 1 s Retry-After: {:?}",
        health_of(&gw, "a", "m1").await
    );
    let r = ask(&gw, "r", "after the wait").await;
    assert_answered("after a's Retry-After passed", &r, "a", 1, "after the wait");
    assert_counts("after a's Retry-After passed", Some(&a), 2, &b, 2);
}

#[tokio::test]
async fn when_every_target_is_ejected_the_least_recently_ejected_is_tried_anyway() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(Reply::error(500, "boom"));
    b.push(Reply::error(500, "boom"));
    let gw = Gw::start(&format!(
        "{ADMIN}{}",
        config_ab(
            "timeout = \"5s\"\nhealth = { failures = 1, cooldown = \"30s\" }",
            &a.base_url(),
            "",
            &b,
            "[[routes]]\nname = \"r\"\ntargets = [\"a/m1\", \"b/m2\"]\n\n\
             [[routes]]\nname = \"only-a\"\ntargets = [\"a/m1\"]\n\n\
             [[routes]]\nname = \"only-b\"\ntargets = [\"b/m2\"]\n",
        )
    ));
    // b is ejected first, then a: b is the least recently ejected.
    let r = ask(&gw, "only-b", "x").await;
    assert_eq!(r.status, 502, "only-b failing: {}", show(&r));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = ask(&gw, "only-a", "x").await;
    assert_eq!(r.status, 502, "only-a failing: {}", show(&r));
    assert_eq!(
        state_of(&gw, "a", "m1").await,
        "ejected",
        "a/m1 after its failure"
    );
    assert_eq!(
        state_of(&gw, "b", "m2").await,
        "ejected",
        "b/m2 after its failure"
    );
    assert_counts("after ejecting both", Some(&a), 1, &b, 1);

    let r = ask(&gw, "r", "anyway").await;
    assert_answered(
        "every target ejected (b first, then a)",
        &r,
        "b",
        1,
        "anyway",
    );
    assert_counts("every target ejected", Some(&a), 1, &b, 2);
}

#[tokio::test]
async fn health_survives_an_unrelated_reload_and_resets_when_the_provider_changes() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(Reply::error(500, "boom"));
    a.push(Reply::error(500, "boom"));
    let cfg = |a_extra: &str, extra_routes: &str| {
        format!(
            "{ADMIN}{}",
            config_ab(
                "timeout = \"5s\"\nhealth = { failures = 2, cooldown = \"30s\" }",
                &a.base_url(),
                a_extra,
                &b,
                &format!(
                    "[[routes]]\nname = \"r\"\ntargets = [\"a/m1\", \"b/m2\"]\n\n{extra_routes}"
                ),
            )
        )
    };
    let gw = Gw::start(&cfg("", ""));
    for i in 1..=2 {
        let r = ask(&gw, "r", "x").await;
        assert_eq!(
            r.header("x-modelway-provider"),
            Some("b"),
            "request {i}: {}",
            show(&r)
        );
    }
    assert_eq!(
        state_of(&gw, "a", "m1").await,
        "ejected",
        "a/m1 after 2 failures"
    );
    assert_counts("before the reloads", Some(&a), 2, &b, 2);

    // An unrelated change: a stays ejected.
    let v0 = config_version(&gw).await;
    gw.write_config(&cfg(
        "",
        "[[routes]]\nname = \"other\"\ntargets = [\"b/zzz\"]\n",
    ));
    let reloaded = eventually(Duration::from_secs(3), || async {
        config_version(&gw).await > v0
    })
    .await;
    assert!(
        reloaded,
        "the config with an added route was not loaded within 3 s (version {v0})"
    );
    assert_eq!(
        state_of(&gw, "a", "m1").await,
        "ejected",
        "a/m1 after a reload that did not touch provider a"
    );
    let r = ask(&gw, "r", "still ejected").await;
    assert_answered("after the unrelated reload", &r, "b", 1, "still ejected");
    assert_counts("after the unrelated reload", Some(&a), 2, &b, 3);

    // a's settings change: its health starts over and it is tried again (and answers).
    let v1 = config_version(&gw).await;
    gw.write_config(&cfg(
        "headers = { \"x-modelway-test\" = \"2\" }",
        "[[routes]]\nname = \"other\"\ntargets = [\"b/zzz\"]\n",
    ));
    let reloaded = eventually(Duration::from_secs(3), || async {
        config_version(&gw).await > v1
    })
    .await;
    assert!(
        reloaded,
        "the config with a's new header was not loaded within 3 s (version {v1})"
    );
    let shown = health_of(&gw, "a", "m1").await;
    if let Some(h) = &shown {
        assert_eq!(
            h["state"], "healthy",
            "a/m1 after its provider changed: {h}"
        );
        assert_eq!(
            h["consecutive_failures"], 0,
            "a/m1 after its provider changed: {h}"
        );
    }
    let r = ask(&gw, "r", "fresh start").await;
    let what = format!(
        "after a's provider changed (/admin/health shows a/m1 as {})",
        shown.map_or_else(|| "absent: forgotten".to_owned(), |h| h.to_string())
    );
    assert_answered(&what, &r, "a", 1, "fresh start");
    assert_counts("after a's provider changed", Some(&a), 3, &b, 3);
    let last = a
        .requests()
        .into_iter()
        .rev()
        .find(|q| q.path.ends_with("/chat/completions"))
        .unwrap();
    assert_eq!(
        last.header("x-modelway-test"),
        Some("2"),
        "a was called with its new settings"
    );
}

// ---------------------------------------------------------------------------------------
// 7. Streams: failures before the first content are invisible
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stream_failing_before_its_first_content_falls_back_invisibly() {
    let rows: Vec<(&str, Reply)> = vec![
        (
            "first event is an error",
            Reply::Sse {
                events: vec![SseStep::data(
                    &json!({"error": {"message": "overloaded", "type": "server_error"}}),
                )],
                end: StreamEnd::Close,
            },
        ),
        (
            "role chunk then drop",
            Reply::Sse {
                events: vec![role_chunk()],
                end: StreamEnd::Drop,
            },
        ),
        ("reset before headers", Reply::DropConnection),
        (
            "HTTP 503 before the stream",
            Reply::error(503, "overloaded"),
        ),
        (
            "role chunk then [DONE] with no content",
            Reply::Sse {
                events: vec![role_chunk()],
                end: StreamEnd::Done,
            },
        ),
    ];
    for (what, reply) in rows {
        let a = MockUpstream::start().await;
        let b = MockUpstream::start().await;
        a.push(reply);
        let gw = Gw::start(&config_ab(
            "timeout = \"5s\"",
            &a.base_url(),
            "",
            &b,
            "[[routes]]\nname = \"r\"\ntargets = [\"a/m1\", \"b/m2\"]\n",
        ));
        let r = ask_stream(&gw, "r", "stream one two").await;
        assert_one_clean_stream(what, &r, "stream one two");
        assert_eq!(
            r.header("x-modelway-provider"),
            Some("b"),
            "{what}: {}",
            show(&r)
        );
        assert_eq!(
            attempts(&r),
            Some(2),
            "{what}: expected x-modelway-attempts 2, got {}",
            show(&r)
        );
        assert_counts(what, Some(&a), 1, &b, 1);
    }
}

#[tokio::test]
async fn a_first_token_timeout_cuts_a_stream_that_sends_only_its_role_chunk() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(Reply::Sse {
        events: vec![
            role_chunk(),
            SseStep::data(&a_chunk(json!({"content": "too late"}))).after(Duration::from_secs(5)),
        ],
        end: StreamEnd::Done,
    });
    let gw = Gw::start(&config_ab(
        "timeout = \"5s\"",
        &a.base_url(),
        "",
        &b,
        "[[routes]]\nname = \"r\"\nfirst_token_timeout = \"300ms\"\ntargets = [\"a/m1\", \"b/m2\"]\n",
    ));
    let started = Instant::now();
    let r = ask_stream(&gw, "r", "in time").await;
    let took = started.elapsed();
    let what = "first_token_timeout 300ms, a sends only a role chunk";
    assert_one_clean_stream(what, &r, "in time");
    assert_eq!(
        r.header("x-modelway-provider"),
        Some("b"),
        "{what}: {}",
        show(&r)
    );
    assert_eq!(
        attempts(&r),
        Some(2),
        "{what}: expected x-modelway-attempts 2, got {}",
        show(&r)
    );
    assert!(
        took < Duration::from_secs(3),
        "{what}: expected b's stream within 3 s, got {took:?}"
    );
    assert_counts(what, Some(&a), 1, &b, 1);
    let closed = eventually(Duration::from_secs(3), || async { a.cancelled() >= 1 }).await;
    assert!(
        closed,
        "{what}: expected a's stalled stream closed, cancelled = {}",
        a.cancelled()
    );
}

// ---------------------------------------------------------------------------------------
// 8. Strategies through the binary
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_latency_strategy_prefers_the_faster_target_after_measuring_both() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    // a is slow to its first token (250 ms); b is the mock's instant echo.
    for _ in 0..25 {
        a.push(Reply::Sse {
            events: vec![
                SseStep::data(&a_chunk(json!({"role": "assistant", "content": ""})))
                    .after(Duration::from_millis(250)),
                SseStep::data(&a_chunk(json!({"content": "slow"}))),
            ],
            end: StreamEnd::Done,
        });
    }
    let gw = Gw::start(&config_ab(
        "timeout = \"5s\"",
        &a.base_url(),
        "",
        &b,
        "[[routes]]\nname = \"r\"\nstrategy = \"latency\"\ntargets = [\"a/m1\", \"b/m2\"]\n",
    ));
    let mut by = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..20 {
        let r = ask_stream(&gw, "r", &format!("n{i}")).await;
        assert_eq!(r.status, 200, "latency request {i}: {}", show(&r));
        assert_eq!(attempts(&r), Some(1), "latency request {i}: {}", show(&r));
        let who = r.header("x-modelway-provider").unwrap_or("?").to_owned();
        *by.entry(who).or_default() += 1;
    }
    let to_b = by.get("b").copied().unwrap_or(0);
    assert!(
        to_b >= 15,
        "latency: expected most of 20 requests on the fast b (>= 15), got {by:?}"
    );
    assert!(
        chats(&a) >= 1,
        "latency: expected the cold a to be measured at least once, got {by:?}"
    );
    assert_eq!(
        chats(&a) + chats(&b),
        20,
        "latency: one upstream request per call, got {by:?}"
    );
}

#[tokio::test]
async fn the_weighted_strategy_splits_traffic_by_weight() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = Gw::start(&config_ab(
        "timeout = \"5s\"",
        &a.base_url(),
        "",
        &b,
        "[[routes]]\nname = \"r\"\nstrategy = \"weighted\"\ntargets = [{ target = \"a/m1\", weight = 1 }, { target = \"b/m2\", weight = 9 }]\n",
    ));
    let client = client();
    for i in 0..200 {
        let r = try_send(
            &client,
            post_request(&gw.url("/v1/chat/completions"), chat("r", "w")),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("weighted request {i}: {e}"));
        assert_eq!(r.status, 200, "weighted request {i}: {}", show(&r));
        assert_eq!(attempts(&r), Some(1), "weighted request {i}: {}", show(&r));
    }
    let (got_a, got_b) = (chats(&a), chats(&b));
    assert_eq!(
        got_a + got_b,
        200,
        "weighted: expected 200 upstream requests, got a={got_a} b={got_b}"
    );
    assert!(
        (150..=200).contains(&got_b),
        "weighted 1:9 over 200: expected b in 150..=200, got a={got_a} b={got_b}"
    );
    assert!(
        got_a >= 1,
        "weighted 1:9 over 200: expected a to get some, got a={got_a} b={got_b}"
    );
}
