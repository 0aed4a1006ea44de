//! End-to-end: hedged requests and the stream keep-alive, through the real binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use modelway_testkit::{MockUpstream, Reply, SseStep, StreamEnd};
use serde_json::json;

fn config(a: &MockUpstream, b: &MockUpstream, route: &str) -> String {
    format!(
        r#"[routing]
timeout = "10s"

[providers.a]
kind = "openai-compatible"
base_url = "{}"

[providers.b]
kind = "openai-compatible"
base_url = "{}"

[[routes]]
name = "r"
targets = ["a/m1", "b/m2"]
{route}
"#,
        a.base_url(),
        b.base_url()
    )
}

fn role() -> SseStep {
    SseStep::data(
        &json!({"id": "a", "object": "chat.completion.chunk", "created": 1, "model": "m1",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
    )
}

fn text(t: &str) -> SseStep {
    SseStep::data(
        &json!({"id": "a", "object": "chat.completion.chunk", "created": 1, "model": "m1",
        "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": null}]}),
    )
}

/// Warms the hedge budget: it allows hedges as a share of the route's recent calls.
async fn warm(gw: &Gw, n: usize) {
    for _ in 0..n {
        let r = post(&gw.url("/v1/chat/completions"), chat("r", "warm")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[tokio::test]
async fn a_hung_first_target_is_hedged_after_hedge_after_and_its_connection_closed() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gw::start(&config(
        &a,
        &b,
        "hedge_after = \"200ms\"\nhedge_budget = 0.5",
    ));
    warm(&gw, 4).await;
    a.push(Reply::Hang);
    let t0 = Instant::now();
    let r = post(&gw.url("/v1/chat/completions"), chat("r", "hedge me")).await;
    let took = t0.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-modelway-provider"), Some("b"));
    assert_eq!(r.header("x-modelway-hedged"), Some("true"));
    assert_eq!(r.header("x-modelway-attempts"), Some("2"));
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_millis(1500),
        "about hedge_after + b's latency, took {took:?}"
    );
    assert!(
        eventually(Duration::from_secs(3), || async { a.cancelled() == 1 }).await,
        "the hung upstream sees its connection closed, cancelled = {}",
        a.cancelled()
    );
    // Not hedged: no header.
    let r = post(&gw.url("/v1/chat/completions"), chat("r", "plain")).await;
    assert_eq!(r.header("x-modelway-hedged"), None);
}

#[tokio::test]
async fn a_slow_first_token_is_hedged_for_streams_and_the_client_sees_one_stream() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gw::start(&config(
        &a,
        &b,
        "hedge_after = \"150ms\"\nhedge_budget = 0.5",
    ));
    warm(&gw, 4).await;
    a.push(Reply::Sse {
        events: vec![role(), text("late").after(Duration::from_secs(3))],
        end: StreamEnd::Done,
    });
    let t0 = Instant::now();
    let r = post(&gw.url("/v1/chat/completions"), chat_stream("r", "hello")).await;
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-modelway-provider"), Some("b"));
    assert_eq!(r.header("x-modelway-hedged"), Some("true"));
    assert_eq!(stream_text(&r.body), "Echo: hello");
    let events = sse_data(&r.body);
    let roles = events.iter().filter(|e| e.contains("\"role\"")).count();
    assert_eq!(
        roles, 1,
        "one role chunk, nothing of a's stream: {events:?}"
    );
    assert!(
        eventually(Duration::from_secs(3), || async { a.cancelled() == 1 }).await,
        "the slow stream's connection is closed"
    );
}

#[tokio::test]
async fn the_hedge_budget_bounds_how_many_calls_hedge() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gw::start(&config(
        &a,
        &b,
        "hedge_after = \"30ms\"\nhedge_budget = 0.2",
    ));
    let slow = || Reply::Sse {
        events: vec![role(), text("slow").after(Duration::from_millis(150))],
        end: StreamEnd::Done,
    };
    for _ in 0..50 {
        a.push(slow());
    }
    let mut hedged = 0;
    for _ in 0..50 {
        let r = post(&gw.url("/v1/chat/completions"), chat_stream("r", "x")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        if r.header("x-modelway-hedged") == Some("true") {
            hedged += 1;
        }
    }
    assert!(
        (5..=11).contains(&hedged),
        "at most ~20 % of 50 hedged, got {hedged}"
    );
}

#[tokio::test]
async fn a_p95_hedge_waits_for_samples_then_adapts() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gw::start(&config(
        &a,
        &b,
        "hedge_after = \"p95\"\nhedge_budget = 1.0\ntimeout = \"1s\"",
    ));
    // Cold: no samples, no hedge — the hang is cut by the 1 s timeout, then b.
    a.push(Reply::Hang);
    let t0 = Instant::now();
    let r = post(&gw.url("/v1/chat/completions"), chat("r", "cold")).await;
    assert_eq!(r.header("x-modelway-hedged"), None, "{}", r.text());
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    // Warm a's time to first token with fast answers.
    warm(&gw, 24).await;
    a.push(Reply::Hang);
    let t0 = Instant::now();
    let r = post(&gw.url("/v1/chat/completions"), chat("r", "warm")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-modelway-hedged"), Some("true"));
    assert!(
        t0.elapsed() < Duration::from_millis(600),
        "hedged after a's p95, not its timeout: {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn a_long_wait_for_the_first_token_sends_keepalives_and_still_falls_back_invisibly() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gw::start(&config(&a, &b, "stream_keepalive = \"150ms\""));
    // a: role chunk, then after 2.5 × keepalive an error event before any content.
    a.push(Reply::Sse {
        events: vec![
            role(),
            SseStep::data(&json!({"error": {"message": "overloaded", "type": "server_error"}}))
                .after(Duration::from_millis(400)),
        ],
        end: StreamEnd::Close,
    });
    let r = post(&gw.url("/v1/chat/completions"), chat_stream("r", "wait")).await;
    assert_eq!(r.status, 200);
    let raw = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        raw.starts_with(": keep-alive\n\n"),
        "comments first: {raw:?}"
    );
    assert!(raw.matches(": keep-alive").count() >= 2, "{raw:?}");
    assert_eq!(stream_text(&r.body), "Echo: wait");
    let events = sse_data(&r.body);
    assert!(
        !raw.contains("overloaded"),
        "a's error never reaches the client: {raw}"
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(
        events.iter().filter(|e| e.contains("\"role\"")).count(),
        1,
        "{events:?}"
    );

    // Every target failing after the head went out: the error arrives as an event.
    a.push(Reply::Sse {
        events: vec![role().after(Duration::from_millis(300))],
        end: StreamEnd::Close,
    });
    b.push(Reply::error(500, "down"));
    let r = post(&gw.url("/v1/chat/completions"), chat_stream("r", "fail")).await;
    assert_eq!(r.status, 200, "the head was sent before the failure");
    let events = sse_data(&r.body);
    assert_eq!(events.len(), 1, "{events:?}");
    let err: serde_json::Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(err["error"]["type"], "upstream_error", "{err}");

    // A quick first token: no keep-alive, the usual head with x-modelway headers.
    let r = post(&gw.url("/v1/chat/completions"), chat_stream("r", "quick")).await;
    assert_eq!(r.header("x-modelway-provider"), Some("a"));
    assert!(!String::from_utf8_lossy(&r.body).contains("keep-alive"));
}
