//! A bounded soak (~30 s): three upstreams failing at random under twelve concurrent
//! clients. Every request must end exactly once, either with a complete answer or with a
//! well-formed OpenAI error (429/502/504); none may hang, and the gateway may send no
//! upstream request it does not count in `x-modelway-attempts`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use modelway_testkit::{MockUpstream, Reply, SseStep, StreamEnd};
use serde_json::{json, Value};

const CLIENTS: usize = 12;
const RUN_FOR: Duration = Duration::from_secs(25);
const CLIENT_BOUND: Duration = Duration::from_secs(15);
/// The share of upstream requests that get a fault; the rest get the echo model.
const FAULT_RATE: f64 = 0.35;

/// A small LCG (Knuth's MMIX constants): seeded, reproducible, no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// One fault, drawn from the LCG. Only failures before any content: a stream cut after
/// its content is a legitimate error event, not what this soak checks.
fn fault(rng: &mut Lcg) -> (&'static str, Reply) {
    match rng.next() % 100 {
        0..=29 => ("500", Reply::error(500, "boom")),
        30..=49 => (
            "429",
            Reply::error(429, "slow down").with_header("retry-after", "0"),
        ),
        50..=64 => ("drop", Reply::DropConnection),
        65..=79 => (
            "malformed",
            Reply::Raw {
                status: 200,
                content_type: "application/json".into(),
                body: bytes::Bytes::from_static(b"{\"id\":"),
            },
        ),
        80..=89 => ("503", Reply::error(503, "overloaded")),
        90..=97 => (
            "sse error event",
            Reply::Sse {
                events: vec![SseStep::data(
                    &json!({"error": {"message": "overloaded", "type": "server_error"}}),
                )],
                end: StreamEnd::Close,
            },
        ),
        _ => ("hang", Reply::Hang),
    }
}

/// Keeps `FAULT_RATE` of `mock`'s traffic faulty: whatever is not a queued fault gets the
/// default echo answer (JSON or stream, as asked), so the queue holds faults only and is
/// topped up as requests arrive. Returns how many of each fault were queued.
async fn faulter(
    mock: Arc<MockUpstream>,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> BTreeMap<&'static str, usize> {
    let mut rng = Lcg(seed);
    let mut pushed = BTreeMap::new();
    // A seeded mix queued up front, then topped up at the same rate.
    for _ in 0..10 {
        let (name, r) = fault(&mut rng);
        *pushed.entry(name).or_default() += 1;
        mock.push(r);
    }
    let stats_url = format!("http://{}/__mock/stats", mock.addr());
    let client = client();
    let mut seen = 0u64;
    let mut owed = 0.0f64;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let req = http::Request::get(&stats_url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let Ok(r) = try_send(&client, req, Duration::from_secs(5)).await else {
            continue;
        };
        let n = r.json()["requests"].as_u64().unwrap_or(seen);
        owed += (n.saturating_sub(seen)) as f64 * FAULT_RATE;
        seen = n;
        while owed >= 1.0 {
            let (name, r) = fault(&mut rng);
            *pushed.entry(name).or_default() += 1;
            mock.push(r);
            owed -= 1.0;
        }
    }
    pushed
}

#[derive(Default, Debug)]
struct Tally {
    json_ok: usize,
    stream_ok: usize,
    errors: BTreeMap<u16, usize>,
    hangs: Vec<String>,
    malformed: Vec<String>,
    /// Sum of `x-modelway-attempts` over every response.
    attempts: usize,
    missing_attempts: Vec<String>,
    most_attempts: usize,
}

fn check_error(r: &Resp) -> Result<(), String> {
    if ![429, 502, 504].contains(&r.status) {
        return Err(format!("unexpected status {}", r.status));
    }
    let v: Value =
        serde_json::from_slice(&r.body).map_err(|e| format!("error body is not JSON: {e}"))?;
    for k in ["message", "type", "param", "code"] {
        if v["error"].get(k).is_none() {
            return Err(format!("error body without error.{k}"));
        }
    }
    if !v["error"]["message"].is_string() {
        return Err("error.message is not a string".into());
    }
    if r.status == 429 && r.header("retry-after").is_none() {
        return Err("a 429 without Retry-After".into());
    }
    Ok(())
}

fn check_json(r: &Resp, text: &str) -> Result<(), String> {
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("answer not JSON: {e}"))?;
    let choices = v["choices"].as_array().ok_or("answer without choices")?;
    if choices.len() != 1 {
        return Err(format!("{} choices", choices.len()));
    }
    let want = format!("Echo: {text}");
    if choices[0]["message"]["content"] != want.as_str() {
        return Err(format!(
            "content {} instead of {want:?}",
            choices[0]["message"]["content"]
        ));
    }
    Ok(())
}

fn check_stream(r: &Resp, text: &str) -> Result<(), String> {
    let ct = r.header("content-type").unwrap_or_default();
    if !ct.starts_with("text/event-stream") {
        return Err(format!("a 200 stream with content-type {ct:?}"));
    }
    let events = sse_data(&r.body);
    if events.last().map(String::as_str) != Some("[DONE]") {
        return Err(format!("stream does not end with [DONE]: {events:?}"));
    }
    if events.iter().filter(|e| *e == "[DONE]").count() != 1 {
        return Err(format!("more than one [DONE]: {events:?}"));
    }
    let mut roles = 0;
    let mut ids = std::collections::BTreeSet::new();
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let v: Value =
            serde_json::from_str(e).map_err(|err| format!("event not JSON ({err}): {e:?}"))?;
        if v.get("error").is_some() {
            return Err(format!("error event in a 200 stream: {e}"));
        }
        if v["choices"][0]["delta"]["role"] == "assistant" {
            roles += 1;
        }
        if let Some(id) = v["id"].as_str() {
            ids.insert(id.to_owned());
        }
    }
    if roles != 1 || ids.len() != 1 {
        return Err(format!(
            "not one stream: {roles} role chunks, ids {ids:?}: {events:?}"
        ));
    }
    let want = format!("Echo: {text}");
    let got = stream_text(&r.body);
    if got != want {
        return Err(format!("stream text {got:?} instead of {want:?}"));
    }
    Ok(())
}

async fn client_task(url: String, id: usize, until: Instant, tally: Arc<Mutex<Tally>>) {
    let client = client();
    let mut i = 0usize;
    while Instant::now() < until {
        let stream = (id + i) % 2 == 1;
        let text = format!("soak c{id} n{i}");
        let body = if stream {
            chat_stream("soak", &text)
        } else {
            chat("soak", &text)
        };
        let what = format!(
            "client {id} request {i} ({})",
            if stream { "stream" } else { "json" }
        );
        let got = try_send(&client, post_request(&url, body), CLIENT_BOUND).await;
        let mut t = tally.lock().unwrap();
        match got {
            Err(e) => t.hangs.push(format!("{what}: {e}")),
            Ok(r) => {
                match r
                    .header("x-modelway-attempts")
                    .and_then(|v| v.parse::<usize>().ok())
                {
                    Some(n) => {
                        t.attempts += n;
                        t.most_attempts = t.most_attempts.max(n);
                    }
                    None => {
                        t.missing_attempts
                            .push(format!("{what}: HTTP {} {}", r.status, r.text()))
                    }
                }
                let verdict = match (r.status, stream) {
                    (200, false) => check_json(&r, &text).map(|()| t.json_ok += 1),
                    (200, true) => check_stream(&r, &text).map(|()| t.stream_ok += 1),
                    (s, _) => check_error(&r).map(|()| *t.errors.entry(s).or_default() += 1),
                };
                if let Err(e) = verdict {
                    t.malformed
                        .push(format!("{what}: {e}; HTTP {} {}", r.status, r.text()));
                }
            }
        }
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_random_upstream_faults_every_request_ends_once_with_an_answer_or_a_clean_error() {
    let started = Instant::now();
    let mocks: Vec<Arc<MockUpstream>> = vec![
        Arc::new(MockUpstream::start().await),
        Arc::new(MockUpstream::start().await),
        Arc::new(MockUpstream::start().await),
    ];
    let names = ["a", "b", "c"];
    let mut cfg = String::from(
        "[routing]\ntimeout = \"1s\"\ndeadline = \"8s\"\nhealth = { failures = 3, cooldown = \"1s\", max_cooldown = \"2s\" }\n\n",
    );
    for (name, m) in names.iter().zip(&mocks) {
        cfg.push_str(&format!(
            "[providers.{name}]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\napi_key = \"sk-{name}-secret\"\n\n",
            m.base_url()
        ));
    }
    cfg.push_str(
        "[[routes]]\nname = \"soak\"\nstrategy = \"fallback\"\nretries = 1\nbackoff = { base = \"10ms\", max = \"50ms\" }\ntargets = [\"a/m\", \"b/m\", \"c/m\"]\n",
    );
    let gw = Gw::start(&cfg);

    let stop = Arc::new(AtomicBool::new(false));
    let faulters: Vec<_> = mocks
        .iter()
        .enumerate()
        .map(|(i, m)| {
            tokio::spawn(faulter(
                Arc::clone(m),
                0x5eed_0000 + i as u64,
                Arc::clone(&stop),
            ))
        })
        .collect();

    let tally = Arc::new(Mutex::new(Tally::default()));
    let until = Instant::now() + RUN_FOR;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(client_task(
                gw.url("/v1/chat/completions"),
                id,
                until,
                Arc::clone(&tally),
            ))
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let mut pushed = Vec::new();
    for f in faulters {
        pushed.push(f.await.unwrap());
    }

    let t = tally.lock().unwrap();
    let upstream: Vec<usize> = mocks
        .iter()
        .map(|m| {
            m.requests()
                .iter()
                .filter(|r| r.path.ends_with("/chat/completions"))
                .count()
        })
        .collect();
    let total = t.json_ok
        + t.stream_ok
        + t.errors.values().sum::<usize>()
        + t.hangs.len()
        + t.malformed.len();
    println!(
        "soak: {total} requests in {:?}: {} json ok, {} stream ok, errors {:?}, {} hangs, {} malformed, {} without x-modelway-attempts; \
         attempts reported {} (most in one request {}), upstream chat requests a/b/c {:?}; faults queued {:?}",
        started.elapsed(),
        t.json_ok,
        t.stream_ok,
        t.errors,
        t.hangs.len(),
        t.malformed.len(),
        t.missing_attempts.len(),
        t.attempts,
        t.most_attempts,
        upstream,
        pushed
    );
    let first = |v: &Vec<String>| v.iter().take(5).cloned().collect::<Vec<_>>().join("\n  ");
    assert!(
        t.hangs.is_empty(),
        "expected 0 hangs, got {}:\n  {}",
        t.hangs.len(),
        first(&t.hangs)
    );
    assert!(
        t.malformed.is_empty(),
        "expected 0 malformed responses, got {}:\n  {}",
        t.malformed.len(),
        first(&t.malformed)
    );
    assert!(
        t.json_ok > 0 && t.stream_ok > 0,
        "expected both JSON and stream answers, got json {} stream {}",
        t.json_ok,
        t.stream_ok
    );
    assert!(
        t.missing_attempts.is_empty(),
        "expected x-modelway-attempts on every response, missing on {}:\n  {}",
        t.missing_attempts.len(),
        first(&t.missing_attempts)
    );
    assert!(
        t.most_attempts <= 6,
        "expected at most 3 targets x (1 + 1 retry) = 6 attempts per request, got {}",
        t.most_attempts
    );
    let sent: usize = upstream.iter().sum();
    assert_eq!(
        sent, t.attempts,
        "expected every upstream request counted in x-modelway-attempts: upstreams got {sent} ({upstream:?}), responses reported {}",
        t.attempts
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "soak overran its 40 s budget: {:?}",
        started.elapsed()
    );
}
