//! Golden replay tests: recorded upstream bytes → what our gateway emits.
//!
//! Every recorded OpenAI / OpenAI-compatible exchange under `shared/fixtures` (the 12
//! openai-python SSE captures and every interaction of the go-vcr cassettes) is served
//! by a mock upstream and requested through a real [`Gateway`] whose only provider
//! `up` has the kind matching the recording. The recording is reassembled on its own,
//! from plain JSON values, and our output must say the same thing in the OpenAI shape
//! clients accumulate correctly; the body the upstream received must be the recorded
//! request. Then: mid-stream failures, upstream error statuses, and which headers go
//! upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{HeaderName, HeaderValue};
use modelway_core::chat::ChatRequest;
use modelway_core::{Call, CallMeta, GatewayError, ProviderError};
use modelway_testkit::{MockUpstream, RecordedRequest, Reply, SseStep, StreamEnd};
use serde_json::{json, Value};

/// How a recorded stream is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// The recorded request as is (it asks for usage); the recorded body in one piece
    /// (`.sse` files: one body frame per event, via `Reply::Fixture`).
    AsRecorded,
    /// The client does not ask for usage and adds unknown fields; the recorded body is
    /// cut into 37-byte frames (splitting lines, JSON and UTF-8 sequences).
    NoUsageSplit,
}

fn parse_request(v: &Value) -> ChatRequest {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("not a ChatRequest: {e}\n{v}"))
}

/// The request as a client sends it to the gateway: `model` is `up/<recorded model>`.
fn via_gateway(client_body: &Value) -> ChatRequest {
    let mut sent = client_body.clone();
    let model = sent["model"].as_str().expect("model").to_owned();
    sent["model"] = json!(format!("up/{model}"));
    parse_request(&sent)
}

/// The one request the mock received, with its shape checked.
fn single_upstream_request(
    mock: &MockUpstream,
    fails: &mut Vec<String>,
) -> Option<RecordedRequest> {
    let reqs = mock.requests();
    if reqs.len() != 1 {
        fails.push(format!("upstream received {} requests, want 1", reqs.len()));
        return None;
    }
    let r = reqs.into_iter().next().expect("one");
    if r.method != "POST" || r.path != "/v1/chat/completions" {
        fails.push(format!("upstream request line {} {}", r.method, r.path));
    }
    let auth: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str())
        .collect();
    if auth != [format!("Bearer {API_KEY}").as_str()] {
        fails.push(format!("upstream authorization headers {auth:?}"));
    }
    if r.header("content-type") != Some("application/json") {
        fails.push(format!(
            "upstream content-type {:?}",
            r.header("content-type")
        ));
    }
    Some(r)
}

fn check_request_body(got: &Value, want: &Value, fails: &mut Vec<String>) {
    for d in json_diff(got, want, 12) {
        fails.push(format!("upstream request body {d}"));
    }
}

fn split_frames(body: &str, size: usize) -> Vec<SseStep> {
    let bytes = Bytes::from(body.to_owned());
    (0..bytes.len())
        .step_by(size)
        .map(|start| SseStep {
            delay: Duration::ZERO,
            data: bytes.slice(start..(start + size).min(bytes.len())),
        })
        .collect()
}

/// Judges our stream against the recording. `rec` is the recording reassembled,
/// `ours` our chunks as JSON.
fn check_stream(
    rec: &Assembled,
    ours_json: &[Value],
    include_usage: bool,
    fails: &mut Vec<String>,
) {
    let ours = assemble(ours_json);
    let rec_keys: Vec<_> = rec.choices.keys().collect();
    let our_keys: Vec<_> = ours.choices.keys().collect();
    if rec_keys != our_keys {
        fails.push(format!(
            "choice indexes: ours {our_keys:?}, recorded {rec_keys:?}"
        ));
    }
    for (index, r) in &rec.choices {
        let Some(o) = ours.choices.get(index) else {
            continue;
        };
        let mut local = Vec::new();
        let mut eq = |what: &str, got: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
            let (g, w) = (format!("{got:?}"), format!("{want:?}"));
            if g != w {
                local.push(format!("choice {index} {what}: ours {g} != recorded {w}"));
            }
        };
        eq("content", &o.content, &r.content);
        eq("refusal", &o.refusal, &r.refusal);
        eq(
            "reasoning_content",
            &o.reasoning_content,
            &r.reasoning_content,
        );
        eq("reasoning", &o.reasoning, &r.reasoning);
        eq(
            "reasoning_details",
            &o.reasoning_details,
            &r.reasoning_details,
        );
        eq("logprobs.content", &o.logprobs_content, &r.logprobs_content);
        eq("logprobs.refusal", &o.logprobs_refusal, &r.logprobs_refusal);
        eq(
            "tool-call indexes",
            &o.tool_calls.keys().collect::<Vec<_>>(),
            &r.tool_calls.keys().collect::<Vec<_>>(),
        );
        for (ti, rt) in &r.tool_calls {
            let Some(ot) = o.tool_calls.get(ti) else {
                continue;
            };
            // A client concatenates every occurrence: each must appear exactly once.
            let want_id: Vec<_> = first_non_empty(&rt.ids).into_iter().collect();
            let want_name: Vec<_> = first_non_empty(&rt.names).into_iter().collect();
            eq(&format!("tool call {ti} id"), &ot.ids, &want_id);
            eq(&format!("tool call {ti} name"), &ot.names, &want_name);
            eq(
                &format!("tool call {ti} type"),
                &ot.types,
                &first_non_empty(&rt.types).into_iter().collect::<Vec<_>>(),
            );
            eq(
                &format!("tool call {ti} arguments"),
                &ot.arguments,
                &rt.arguments,
            );
            if let Err(e) = serde_json::from_str::<Value>(&ot.arguments) {
                let what = format!("tool call {ti} arguments {:?} parse as JSON", ot.arguments);
                eq(&what, &e.to_string(), &"ok");
            }
        }
        let want_finish = r.finishes.first().cloned();
        eq(
            "finish reasons",
            &o.finishes,
            &want_finish.into_iter().collect::<Vec<_>>(),
        );
        eq(
            "roles (entry ordinal, role)",
            &o.roles,
            &vec![(0usize, "assistant".to_owned())],
        );
        eq("entries after the finish", &o.entries_after_finish, &0usize);
        eq(
            "tool-call fragments without index",
            &o.fragments_without_index,
            &0usize,
        );
        fails.append(&mut local);
    }

    // Usage: one final `choices: []` chunk when asked, none otherwise.
    let last = ours.len.saturating_sub(1);
    if include_usage {
        let want = rec.usage.last().map(|(_, u, _)| u);
        match (ours.usage.as_slice(), want) {
            ([(pos, u, n)], Some(w)) => {
                if *pos != last || *n != 0 {
                    fails.push(format!(
                        "usage chunk at {pos} with {n} choices; want the last chunk ({last}) with none"
                    ));
                }
                for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
                    if u.get(k) != w.get(k) {
                        fails.push(format!(
                            "usage.{k}: ours {:?} != recorded {:?}",
                            u.get(k),
                            w.get(k)
                        ));
                    }
                }
                for d in json_diff(u, w, 8) {
                    fails.push(format!("usage object {d}"));
                }
            }
            (got, want) => fails.push(format!(
                "usage chunks: ours {} ({:?}), recorded usage {}",
                got.len(),
                got.iter().map(|(p, _, n)| (p, n)).collect::<Vec<_>>(),
                want.is_some()
            )),
        }
        if ours.empty_choice_chunks != [last] {
            fails.push(format!(
                "chunks with empty choices at {:?}; want only the usage chunk at {last}",
                ours.empty_choice_chunks
            ));
        }
    } else {
        if !ours.usage.is_empty() {
            fails.push(format!(
                "usage sent although the client did not ask, in chunks {:?}",
                ours.usage.iter().map(|(p, _, _)| p).collect::<Vec<_>>()
            ));
        }
        if !ours.empty_choice_chunks.is_empty() {
            fails.push(format!(
                "chunks with empty choices at {:?} although no usage was asked",
                ours.empty_choice_chunks
            ));
        }
    }
    for (i, c) in ours_json.iter().enumerate() {
        if c.get("usage").is_some_and(Value::is_null) {
            fails.push(format!("chunk {i} has \"usage\": null"));
        }
    }

    // One id for the whole stream: the upstream's.
    let rec_id = &rec.ids[0];
    let ours_distinct: BTreeSet<&String> = ours.ids.iter().collect();
    // Avian changes its id mid-stream (`chatcmpl-…` then `gen-…`); clients key on
    // the id, so every chunk carries the first one.
    if ours_distinct.len() != 1 || ours.ids.first() != Some(rec_id) {
        fails.push(format!("chunk ids {ours_distinct:?}; want only {rec_id:?}"));
    }
    if let Some(o) = ours.objects.iter().find(|o| *o != "chat.completion.chunk") {
        fails.push(format!("chunk object {o:?}"));
    }
}

/// Replays one recorded stream; returns what is wrong (empty when all is well).
async fn replay_stream(case: &Case, variant: Variant, n: usize) -> Vec<String> {
    let mut fails = Vec::new();
    let (rec_chunks, rec_done) = recorded_chunks(&case.response);
    assert!(rec_done, "{}: the recording ends with [DONE]", case.name);
    let rec = assemble(&rec_chunks);

    let mock = MockUpstream::start().await;
    mock.push(match (variant, &case.fixture) {
        (Variant::AsRecorded, Some(f)) => Reply::Fixture(f.clone()),
        (Variant::AsRecorded, None) => Reply::Raw {
            status: case.status,
            content_type: case.content_type.clone(),
            body: Bytes::from(case.response.clone()),
        },
        (Variant::NoUsageSplit, _) => Reply::Sse {
            events: split_frames(&case.response, 37),
            end: StreamEnd::Close,
        },
    });

    // What the client sends, and what the upstream must receive.
    let mut client = case.request.clone();
    if variant == Variant::NoUsageSplit {
        client["x_modelway_unknown"] = json!({"nested": [1, null, "s", {"k": true}], "f": 0.25});
        client["messages"][0]["x_message_unknown"] = json!("kept");
        if n & 1 == 0 {
            client
                .as_object_mut()
                .expect("object")
                .remove("stream_options");
        } else {
            client["stream_options"] =
                json!({"include_usage": false, "include_obfuscation": false});
        }
    }
    let include_usage = client["stream_options"]["include_usage"] == json!(true);
    let mut want_upstream = client.clone();
    match want_upstream.get_mut("stream_options") {
        Some(Value::Object(o)) => {
            o.insert("include_usage".into(), json!(true));
        }
        _ => want_upstream["stream_options"] = json!({"include_usage": true}),
    }

    let gw = gateway(case.kind, &mock.base_url(), "");
    let served = tokio::time::timeout(WAIT, gw.execute_stream(Call::new(via_gateway(&client))))
        .await
        .expect("the gateway answered within the bounded wait");
    match served {
        Err(e) => fails.push(format!("gateway error {e}")),
        Ok(s) => {
            if (s.provider.as_str(), s.model.as_str(), s.attempts) != ("up", case.model(), 1) {
                fails.push(format!(
                    "served by {} / {} in {} attempts",
                    s.provider, s.model, s.attempts
                ));
            }
            let got = collect(s.value).await;
            if let Some(e) = &got.error {
                fails.push(format!(
                    "stream error after {} chunks: {e}",
                    got.chunks.len()
                ));
            }
            if got.after_error != 0 {
                fails.push(format!("{} items after the error", got.after_error));
            }
            let ours: Vec<Value> = got
                .chunks
                .iter()
                .map(|c| serde_json::to_value(c).expect("chunk serialises"))
                .collect();
            check_stream(&rec, &ours, include_usage, &mut fails);
        }
    }
    if let Some(r) = single_upstream_request(&mock, &mut fails) {
        if r.header("accept") != Some("text/event-stream") {
            fails.push(format!("upstream accept {:?}", r.header("accept")));
        }
        check_request_body(&r.json(), &want_upstream, &mut fails);
    }
    fails
        .into_iter()
        .map(|f| format!("{} [{variant:?}]: {f}", case.name))
        .collect()
}

/// Replays one recorded non-streaming exchange.
async fn replay_json(case: &Case) -> Vec<String> {
    let mut fails = Vec::new();
    let mock = MockUpstream::start().await;
    mock.push(Reply::Raw {
        status: case.status,
        content_type: case.content_type.clone(),
        body: Bytes::from(case.response.clone()),
    });
    let gw = gateway(case.kind, &mock.base_url(), "");
    let served = tokio::time::timeout(WAIT, gw.execute(Call::new(via_gateway(&case.request))))
        .await
        .expect("the gateway answered within the bounded wait");
    match served {
        Err(e) => fails.push(format!("gateway error {e}")),
        Ok(s) => {
            if (s.provider.as_str(), s.model.as_str(), s.attempts) != ("up", case.model(), 1) {
                fails.push(format!(
                    "served by {} / {} in {} attempts",
                    s.provider, s.model, s.attempts
                ));
            }
            let resp = s.value.into_response().expect("a chat completion");
            let got = serde_json::to_value(&resp).expect("response serialises");
            let mut want: Value = serde_json::from_str(&case.response).expect("recorded JSON");
            // The spec requires `choices[].logprobs`, `message.content` and
            // `message.refusal` (all nullable); modelway always sends them, so a recording
            // that omits one gets `null` (gpt-5/o4-mini, xAI, z.ai and llama.cpp omit
            // `logprobs`; the HF router omits `content` on a tool-call turn).
            for c in want["choices"].as_array_mut().expect("choices") {
                let c = c.as_object_mut().expect("choice");
                c.entry("logprobs").or_insert(Value::Null);
                let m = c["message"].as_object_mut().expect("message");
                m.entry("content").or_insert(Value::Null);
                m.entry("refusal").or_insert(Value::Null);
            }
            for d in json_diff(&got, &want, 12) {
                fails.push(format!("response {d}"));
            }
        }
    }
    if let Some(r) = single_upstream_request(&mock, &mut fails) {
        if r.header("accept") != Some("application/json") {
            fails.push(format!("upstream accept {:?}", r.header("accept")));
        }
        check_request_body(&r.json(), &case.request, &mut fails);
    }
    fails
        .into_iter()
        .map(|f| format!("{}: {f}", case.name))
        .collect()
}

fn report(what: &str, checked: usize, fails: &[String]) {
    assert!(
        fails.is_empty(),
        "{what}: {} problem(s) in {checked} replays:\n{}",
        fails.len(),
        fails.join("\n")
    );
}

// ------------------------------------------------------------------------------------
// Golden replays

#[tokio::test]
async fn sdk_recordings_replay_through_the_gateway() {
    let cases = sdk_cases();
    assert_eq!(cases.len(), 12, "openai/sdk-recordings/*.sse");
    let mut fails = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        for v in [Variant::AsRecorded, Variant::NoUsageSplit] {
            fails.extend(replay_stream(case, v, n).await);
        }
    }
    report("sdk recordings", cases.len() * 2, &fails);
}

#[tokio::test]
async fn vcr_streaming_interactions_replay_through_the_gateway() {
    let cases: Vec<Case> = vcr_cases().into_iter().filter(Case::is_stream).collect();
    assert_eq!(cases.len(), STREAM_INTERACTIONS, "streaming interactions");
    let mut fails = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        for v in [Variant::AsRecorded, Variant::NoUsageSplit] {
            fails.extend(replay_stream(case, v, n).await);
        }
    }
    report("streaming cassettes", cases.len() * 2, &fails);
}

#[tokio::test]
async fn vcr_non_streaming_twins_round_trip() {
    let cases: Vec<Case> = vcr_cases().into_iter().filter(|c| !c.is_stream()).collect();
    assert_eq!(cases.len(), JSON_INTERACTIONS, "non-streaming interactions");
    let mut fails = Vec::new();
    for case in &cases {
        fails.extend(replay_json(case).await);
    }
    report("non-streaming cassettes", cases.len(), &fails);
}

/// 16 in `openai/vcr-fantasy` (22 files) + 48 in `openai-compatible/vcr-fantasy` (55
/// files): a fixture that disappears or stops parsing fails the count, not silently.
const STREAM_INTERACTIONS: usize = 64;
/// 16 + 46 non-streaming interactions in the same files.
const JSON_INTERACTIONS: usize = 62;

// ------------------------------------------------------------------------------------
// Mid-stream failures

/// The first `n` events of a recorded `.sse` file, as frames, and their JSON.
fn leading_events(file: &str, n: usize) -> (Vec<SseStep>, Vec<Value>) {
    let body = std::fs::read_to_string(modelway_testkit::fixtures_dir().join(file))
        .expect("recording readable");
    let (chunks, _) = recorded_chunks(&body);
    let chunks: Vec<Value> = chunks.into_iter().take(n).collect();
    let steps = chunks
        .iter()
        .map(|c| SseStep::raw(&format!("data: {c}\n\n")))
        .collect();
    (steps, chunks)
}

fn stream_request(include_usage: bool) -> ChatRequest {
    let mut body = sdk_request("stream-text.sse");
    body["stream_options"]["include_usage"] = json!(include_usage);
    via_gateway(&body)
}

/// Streams `events` + `end` from the mock through an `openai` provider.
async fn stream_through(
    kind: &str,
    events: Vec<SseStep>,
    end: StreamEnd,
    include_usage: bool,
) -> Collected {
    let mock = MockUpstream::start().await;
    mock.push(Reply::Sse { events, end });
    let gw = gateway(kind, &mock.base_url(), "");
    let served = tokio::time::timeout(
        WAIT,
        gw.execute_stream(Call::new(stream_request(include_usage))),
    )
    .await
    .expect("the gateway answered within the bounded wait")
    .expect("the stream starts: the upstream answered 200");
    collect(served.value).await
}

/// The good chunks before a failure reached the client unchanged in meaning.
fn assert_good_prefix(label: &str, got: &Collected, recorded: &[Value]) {
    let ours: Vec<Value> = got
        .chunks
        .iter()
        .map(|c| serde_json::to_value(c).expect("serialises"))
        .collect();
    assert_eq!(
        got.chunks.len(),
        recorded.len(),
        "{label}: good chunks before the error: {ours:?}"
    );
    let (o, r) = (assemble(&ours), assemble(recorded));
    assert_eq!(o.choices[&0].content, r.choices[&0].content, "{label}");
    assert_eq!(
        o.choices[&0].roles,
        vec![(0, "assistant".to_owned())],
        "{label}"
    );
    assert!(
        o.usage.is_empty(),
        "{label}: no usage after a failure: {ours:?}"
    );
    assert!(
        o.choices[&0].finishes.is_empty(),
        "{label}: no finish was sent: {ours:?}"
    );
    assert_eq!(got.after_error, 0, "{label}: the error ends the stream");
}

#[tokio::test]
async fn mid_stream_error_event_yields_stream_cut_after_the_good_chunks() {
    let error_events = [
        // OpenAI: a `data:` line holding only `{"error":…}`, then the connection closes.
        (
            r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#,
            "The server had an error",
        ),
        // OpenRouter's error object (numeric code), no choices.
        (
            r#"{"error":{"code":502,"message":"Provider disconnected unexpectedly"}}"#,
            "Provider disconnected unexpectedly",
        ),
    ];
    for (event, message) in error_events {
        for end in [StreamEnd::Close, StreamEnd::Done] {
            for include_usage in [true, false] {
                let label = format!("{message} / {end:?} / include_usage={include_usage}");
                let (mut events, good) = leading_events("openai/sdk-recordings/stream-text.sse", 4);
                events.push(SseStep::raw(&format!("data: {event}\n\n")));
                let got = stream_through("openai", events, end, include_usage).await;
                assert_good_prefix(&label, &got, &good);
                match &got.error {
                    Some(ProviderError::StreamCut(m)) if m.contains(message) => {}
                    other => {
                        panic!("{label}: want StreamCut naming the upstream message, got {other:?}")
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn openrouter_mid_stream_error_chunk_with_choices() {
    // OpenRouter documents a failure after tokens were sent as a chunk that has both a
    // top-level `error` and `choices: [{…, "finish_reason": "error"}]`, then the end.
    let (mut events, good) = leading_events_vcr(
        "openai-compatible/vcr-fantasy/TestOpenRouterCommon/openai/simple_streaming.yaml#0",
        2,
    );
    let id = good[0]["id"].as_str().expect("id");
    events.push(SseStep::data(&json!({
        "id": id, "object": "chat.completion.chunk", "created": 1777319799,
        "model": "openai/gpt-4o-mini", "provider": "OpenAI",
        "error": {"code": "server_error", "message": "Provider disconnected unexpectedly"},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "error"}]
    })));
    let got = stream_through("openrouter", events, StreamEnd::Close, true).await;
    let ours: Vec<Value> = got
        .chunks
        .iter()
        .map(|c| serde_json::to_value(c).expect("serialises"))
        .collect();
    // A chunk carrying a top-level `error` is an upstream failure even when it also
    // has `choices`: the good chunks, then a stream cut naming the upstream's message.
    assert!(
        matches!(&got.error, Some(ProviderError::StreamCut(m)) if m.contains("Provider disconnected unexpectedly")),
        "expected a StreamCut after the good chunks; got {:?}",
        got.error
    );
    assert_eq!(ours.len(), good.len(), "{ours:?}");
}

/// The first `n` chunks of a recorded cassette stream, as frames, and their JSON.
fn leading_events_vcr(name: &str, n: usize) -> (Vec<SseStep>, Vec<Value>) {
    let case = vcr_cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cassette interaction {name}"));
    let (chunks, _) = recorded_chunks(&case.response);
    let chunks: Vec<Value> = chunks.into_iter().take(n).collect();
    let steps = chunks.iter().map(SseStep::data).collect();
    (steps, chunks)
}

#[tokio::test]
async fn stream_ending_without_done_before_any_finish_is_cut() {
    for include_usage in [true, false] {
        // The body ends cleanly after whole events, but no finish_reason and no [DONE].
        let (events, good) = leading_events("openai/sdk-recordings/stream-text.sse", 4);
        let got = stream_through("openai", events, StreamEnd::Close, include_usage).await;
        let label = format!("closed, include_usage={include_usage}");
        assert_good_prefix(&label, &got, &good);
        assert!(
            matches!(&got.error, Some(ProviderError::StreamCut(m)) if m.contains("[DONE]")),
            "{label}: {:?}",
            got.error
        );

        // The connection is aborted mid-body.
        let (events, good) = leading_events("openai/sdk-recordings/stream-text.sse", 4);
        let got = stream_through("openai", events, StreamEnd::Drop, include_usage).await;
        let label = format!("dropped, include_usage={include_usage}");
        assert_good_prefix(&label, &got, &good);
        assert!(
            matches!(&got.error, Some(ProviderError::StreamCut(_))),
            "{label}: {:?}",
            got.error
        );

        // The body ends in the middle of an event (no blank line, JSON cut short).
        let (mut events, good) = leading_events("openai/sdk-recordings/stream-text.sse", 4);
        events.push(SseStep::raw(
            r#"data: {"id":"chatcmpl-ABfw2c4b4BqMKA0nUFJ2MBKfx4H3a","object":"chat.comp"#,
        ));
        let got = stream_through("openai", events, StreamEnd::Close, include_usage).await;
        let label = format!("cut mid-event, include_usage={include_usage}");
        assert_good_prefix(&label, &got, &good);
        // A body that ends inside an event is a cut stream, not a malformed one.
        assert!(
            matches!(&got.error, Some(ProviderError::StreamCut(_))),
            "{label}: {:?}",
            got.error
        );
    }
}

#[tokio::test]
async fn stream_ending_without_done_after_the_finish_ends_cleanly() {
    // Some servers omit [DONE]; once every choice finished that is a complete answer.
    let body = std::fs::read_to_string(
        modelway_testkit::fixtures_dir().join("openai/sdk-recordings/stream-text.sse"),
    )
    .expect("recording");
    let (chunks, _) = recorded_chunks(&body);
    let events: Vec<SseStep> = chunks.iter().map(SseStep::data).collect();
    let got = stream_through("openai", events, StreamEnd::Close, true).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    let ours: Vec<Value> = got
        .chunks
        .iter()
        .map(|c| serde_json::to_value(c).expect("serialises"))
        .collect();
    let (o, r) = (assemble(&ours), assemble(&chunks));
    assert_eq!(o.choices[&0].content, r.choices[&0].content);
    assert_eq!(o.choices[&0].finishes, ["stop"]);
    assert_eq!(o.usage.len(), 1, "{ours:?}");
    assert_eq!(o.usage[0].0, ours.len() - 1);
}

// ------------------------------------------------------------------------------------
// Upstream error statuses

struct StatusRow {
    label: &'static str,
    status: u16,
    body: Value,
    headers: &'static [(&'static str, &'static str)],
    want_status: u16,
    want_kind: &'static str,
    want_code: Option<&'static str>,
    want_param: Option<&'static str>,
    want_retry_after: Option<Duration>,
    /// The client message must contain this.
    message: &'static str,
}

fn status_rows() -> Vec<StatusRow> {
    let invalid_temp = "Invalid value for 'temperature': expected a number between 0 and 2.";
    vec![
        StatusRow {
            label: "400 passes through with its param",
            status: 400,
            body: json!({"error": {"message": invalid_temp, "type": "invalid_request_error", "param": "temperature", "code": "invalid_value"}}),
            headers: &[],
            want_status: 400,
            want_kind: "invalid_request_error",
            want_code: Some("invalid_value"),
            want_param: Some("temperature"),
            want_retry_after: None,
            message: invalid_temp,
        },
        StatusRow {
            label: "404 unknown upstream model passes through",
            status: 404,
            body: json!({"error": {"message": "The model `gpt-9` does not exist or you do not have access to it.", "type": "invalid_request_error", "param": null, "code": "model_not_found"}}),
            headers: &[],
            want_status: 404,
            want_kind: "invalid_request_error",
            want_code: Some("model_not_found"),
            want_param: None,
            want_retry_after: None,
            message: "does not exist",
        },
        StatusRow {
            label: "401 (modelway's key rejected) is the gateway's failure",
            status: 401,
            body: json!({"error": {"message": "Incorrect API key provided: sk-model***************-key. You can find your API key at https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
            headers: &[],
            want_status: 502,
            want_kind: "upstream_error",
            want_code: Some("upstream_auth_failed"),
            want_param: None,
            want_retry_after: None,
            message: "rejected modelway's credentials",
        },
        StatusRow {
            label: "403 is the gateway's failure too",
            status: 403,
            body: json!({"error": {"message": "Country, region, or territory not supported", "type": "request_forbidden", "param": null, "code": "unsupported_country_region_territory"}}),
            headers: &[],
            want_status: 502,
            want_kind: "upstream_error",
            want_code: Some("upstream_auth_failed"),
            want_param: None,
            want_retry_after: None,
            message: "HTTP 403",
        },
        StatusRow {
            label: "429 keeps Retry-After",
            status: 429,
            body: json!({"error": {"message": "Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): Limit 500, Used 500, Requested 1.", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
            headers: &[("retry-after", "7")],
            want_status: 429,
            want_kind: "rate_limit_error",
            want_code: Some("rate_limit_exceeded"),
            want_param: None,
            want_retry_after: Some(Duration::from_secs(7)),
            message: "Rate limit reached",
        },
        StatusRow {
            label: "429 keeps retry-after-ms",
            status: 429,
            body: json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": "slow_down"}}),
            headers: &[("retry-after-ms", "1500")],
            want_status: 429,
            want_kind: "rate_limit_error",
            want_code: Some("slow_down"),
            want_param: None,
            want_retry_after: Some(Duration::from_millis(1500)),
            message: "slow down",
        },
        StatusRow {
            label: "429 quota",
            status: 429,
            body: json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
            headers: &[],
            want_status: 429,
            want_kind: "rate_limit_error",
            want_code: Some("insufficient_quota"),
            want_param: None,
            want_retry_after: None,
            message: "exceeded your current quota",
        },
        StatusRow {
            label: "500 becomes 502",
            status: 500,
            body: json!({"error": {"message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": null, "code": null}}),
            headers: &[],
            want_status: 502,
            want_kind: "upstream_error",
            want_code: Some("upstream_error"),
            want_param: None,
            want_retry_after: None,
            message: "HTTP 500",
        },
        StatusRow {
            label: "503 overloaded becomes 502",
            status: 503,
            body: json!({"error": {"message": "That model is currently overloaded with other requests.", "type": "server_error", "param": null, "code": "server_is_overloaded"}}),
            headers: &[],
            want_status: 502,
            want_kind: "upstream_error",
            want_code: Some("overloaded"),
            want_param: None,
            want_retry_after: None,
            message: "currently overloaded",
        },
        StatusRow {
            label: "504 is a timeout",
            status: 504,
            body: json!({"error": {"message": "Gateway Timeout", "type": "server_error", "param": null, "code": null}}),
            headers: &[],
            want_status: 504,
            want_kind: "timeout_error",
            want_code: Some("upstream_timeout"),
            want_param: None,
            want_retry_after: None,
            message: "timed out",
        },
        StatusRow {
            label: "200 with an error body in place of the answer (OpenRouter)",
            status: 200,
            body: json!({"error": {"message": "Insufficient credits", "code": 402}}),
            headers: &[],
            want_status: 402,
            want_kind: "invalid_request_error",
            want_code: Some("402"),
            want_param: None,
            want_retry_after: None,
            message: "Insufficient credits",
        },
    ]
}

fn check_gateway_error(label: &str, e: &GatewayError, row: &StatusRow) {
    let got = (
        e.status,
        e.kind,
        e.code.as_deref(),
        e.param.as_deref(),
        e.retry_after,
    );
    let want = (
        row.want_status,
        row.want_kind,
        row.want_code,
        row.want_param,
        row.want_retry_after,
    );
    assert_eq!(got, want, "{label}: {e:?}");
    assert!(
        e.message.contains(row.message),
        "{label}: message {:?}",
        e.message
    );
    assert!(
        !e.message.contains(API_KEY),
        "{label}: the api key leaked: {:?}",
        e.message
    );
    let body: Value = serde_json::from_slice(&e.to_json()).expect("error JSON");
    for k in ["message", "type", "param", "code"] {
        assert!(
            body["error"].get(k).is_some(),
            "{label}: {k} missing from {body}"
        );
    }
}

#[tokio::test]
async fn upstream_error_statuses_map_to_gateway_errors() {
    for row in status_rows() {
        for stream in [false, true] {
            let label = format!("{} (stream={stream})", row.label);
            let mock = MockUpstream::start().await;
            let mut reply = Reply::Json {
                status: row.status,
                body: row.body.clone(),
                headers: Vec::new(),
            };
            for (k, v) in row.headers {
                reply = reply.with_header(k, v);
            }
            mock.push(reply);
            let gw = gateway("openai", &mock.base_url(), "");
            let mut body = sdk_request("stream-text.sse");
            if !stream {
                let o = body.as_object_mut().expect("object");
                o.remove("stream");
                o.remove("stream_options");
            }
            let req = via_gateway(&body);
            let err = tokio::time::timeout(WAIT, async {
                if stream {
                    gw.execute_stream(Call::new(req)).await.map(|_| ())
                } else {
                    gw.execute(Call::new(req)).await.map(|_| ())
                }
            })
            .await
            .expect("the gateway answered within the bounded wait")
            .expect_err(&label);
            check_gateway_error(&label, &err, &row);
            // `retries = 0`: one attempt, even for retryable statuses.
            assert_eq!(mock.requests().len(), 1, "{label}");
        }
    }
}

// ------------------------------------------------------------------------------------
// Headers that go upstream

const CLIENT_REFERER: &str = "https://client.example/app";
const CLIENT_TITLE: &str = "Client App";

fn client_meta(attribution: bool) -> CallMeta {
    let mut meta = CallMeta::default();
    let mut add = |k: &'static str, v: &'static str| {
        meta.headers
            .push((HeaderName::from_static(k), HeaderValue::from_static(v)));
    };
    if attribution {
        add("http-referer", CLIENT_REFERER);
        add("x-title", CLIENT_TITLE);
    }
    add(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    // Never forwarded, whatever a caller puts in the call's metadata.
    add("authorization", "Bearer client-secret-token");
    add("x-api-key", "client-secret-token");
    meta
}

/// Sends one chat and one streamed chat with `meta`; returns the two upstream requests.
async fn send_both(kind: &str, provider_toml: &str, meta: &CallMeta) -> Vec<RecordedRequest> {
    let mock = MockUpstream::start().await;
    let gw = gateway(kind, &mock.base_url(), provider_toml);
    send_both_to(&gw, &mock, meta).await
}

async fn send_both_to(
    gw: &modelway_core::Gateway,
    mock: &MockUpstream,
    meta: &CallMeta,
) -> Vec<RecordedRequest> {
    let snap = gw.snapshot();
    let mut body = sdk_request("stream-text.sse");
    let stream_req = via_gateway(&body);
    let o = body.as_object_mut().expect("object");
    o.remove("stream");
    o.remove("stream_options");
    let chat_req = via_gateway(&body);
    tokio::time::timeout(WAIT, async {
        gw.execute_on(&snap, Call::new(chat_req).with_meta(meta.clone()))
            .await
            .expect("chat");
        let served = gw
            .execute_stream_on(&snap, Call::new(stream_req).with_meta(meta.clone()))
            .await
            .expect("stream");
        let got = collect(served.value).await;
        assert!(got.error.is_none(), "{:?}", got.error);
    })
    .await
    .expect("answered within the bounded wait");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "one chat and one stream upstream");
    reqs
}

fn header_values<'a>(r: &'a RecordedRequest, name: &str) -> Vec<&'a str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn assert_no_client_credentials(label: &str, r: &RecordedRequest, want_auth: &[&str]) {
    assert_eq!(header_values(r, "authorization"), want_auth, "{label}");
    assert!(header_values(r, "x-api-key").is_empty(), "{label}");
    for (k, v) in &r.headers {
        assert!(
            !v.contains("client-secret-token"),
            "{label}: client secret in {k}"
        );
    }
}

/// (label, provider table line, client sends attribution, want referer, want title)
type AttributionRow = (
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
);

#[tokio::test]
async fn openrouter_receives_client_attribution_unless_configured() {
    let bearer = format!("Bearer {API_KEY}");
    let rows: &[AttributionRow] = &[
        (
            "client headers forwarded",
            "",
            true,
            &[CLIENT_REFERER],
            &[CLIENT_TITLE],
        ),
        ("no client headers, none configured", "", false, &[], &[]),
        (
            "configured headers win",
            r#"headers = { "HTTP-Referer" = "https://configured.example", "X-Title" = "Configured" }"#,
            true,
            &["https://configured.example"],
            &["Configured"],
        ),
        (
            "configured title, client referer",
            r#"headers = { "X-Title" = "Configured" }"#,
            true,
            &[CLIENT_REFERER],
            &["Configured"],
        ),
        (
            "configured headers without client ones",
            r#"headers = { "HTTP-Referer" = "https://configured.example", "X-Title" = "Configured" }"#,
            false,
            &["https://configured.example"],
            &["Configured"],
        ),
    ];
    for (label, toml, attribution, referer, title) in rows {
        for r in send_both("openrouter", toml, &client_meta(*attribution)).await {
            assert_eq!(header_values(&r, "http-referer"), *referer, "{label}");
            assert_eq!(header_values(&r, "x-title"), *title, "{label}");
            assert_no_client_credentials(label, &r, &[bearer.as_str()]);
        }
    }
}

#[tokio::test]
async fn other_kinds_never_forward_attribution_or_client_credentials() {
    let bearer = format!("Bearer {API_KEY}");
    for kind in ALL_KINDS.iter().filter(|k| **k != "openrouter") {
        for r in send_both(kind, "", &client_meta(true)).await {
            assert!(
                header_values(&r, "http-referer").is_empty(),
                "{kind}: {:?}",
                r.headers
            );
            assert!(
                header_values(&r, "x-title").is_empty(),
                "{kind}: {:?}",
                r.headers
            );
            assert_no_client_credentials(kind, &r, &[bearer.as_str()]);
            // W3C trace context is sent upstream by every kind (DESIGN.md, Telemetry).
            assert_eq!(
                header_values(&r, "traceparent"),
                ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
                "{kind}"
            );
        }
    }
}

#[tokio::test]
async fn without_an_api_key_no_authorization_is_sent_at_all() {
    for kind in ALL_KINDS {
        let mock = MockUpstream::start().await;
        let src = format!(
            "[providers.up]\nkind = \"{kind}\"\nbase_url = \"{}\"\n\n[routing]\ntimeout = \"10s\"\n",
            mock.base_url()
        );
        let gw = gateway_from_src(&src);
        for r in send_both_to(&gw, &mock, &client_meta(true)).await {
            assert_no_client_credentials(kind, &r, &[]);
        }
    }
}

// ------------------------------------------------------------------------------------
// Upstream dialects not in the recordings (WIRE.md §4.7)

#[tokio::test]
async fn repeated_tool_call_id_and_name_fragments() {
    // Some OpenAI-compatible servers repeat `id`, `type` and `function.name` on every
    // fragment of a call (vercel/ai#14722, lmstudio-ai/lmstudio-bug-tracker#649).
    let frag = |args: &str| json!({"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": args}});
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-rep", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let chunks = [
        chunk(
            json!({"role": "assistant", "tool_calls": [frag("")]}),
            Value::Null,
        ),
        chunk(json!({"tool_calls": [frag("{\"location\":")]}), Value::Null),
        chunk(json!({"tool_calls": [frag("\"Florence\"}")]}), Value::Null),
        chunk(json!({}), json!("tool_calls")),
    ];
    let events = chunks.iter().map(SseStep::data).collect();
    let got = stream_through("openai-compatible", events, StreamEnd::Done, false).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    let ours: Vec<Value> = got
        .chunks
        .iter()
        .map(|c| serde_json::to_value(c).expect("serialises"))
        .collect();
    let call = &assemble(&ours).choices[&0].tool_calls[&0];
    assert_eq!(call.arguments, r#"{"location":"Florence"}"#);
    // WIRE.md §1.5/§4.7: clients concatenate string fields, so `id`, `type` and
    // `function.name` are sent once per call index.
    assert_eq!(call.ids, ["call_1"], "{ours:?}");
    assert_eq!(call.names, ["weather"], "{ours:?}");
    assert_eq!(call.types, ["function"], "{ours:?}");
}
