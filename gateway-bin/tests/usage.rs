//! Usage records and cost, end to end: the real binary with a SQLite ledger and with a
//! Postgres one (a real server started by the test, see `PostgresServer`), answers
//! priced from inline prices, `x-modelway-cost`, a streamed call recorded like its JSON
//! twin (usage kept from a client that did not ask for it), an upstream's own
//! `usage.cost` winning, unpriced models counted, 200 concurrent calls → 200 records, and
//! the ledger surviving a restart, and two replicas sharing one Postgres ledger and one
//! budget.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{client, get, post_request, sse_data, temp_dir, try_send, Gw};
use modelway_testkit::{MockUpstream, PostgresServer, Reply, SseStep, StreamEnd};
use serde_json::{json, Value};

const ADMIN: &str = "adm-usage";

/// A ledger for one test: a SQLite file in a temporary directory, or a database on a
/// fresh Postgres server (`None` when Postgres is not installed and may be skipped).
enum Ledger {
    Sqlite(std::path::PathBuf),
    Postgres(PostgresServer),
}

impl Ledger {
    fn sqlite(name: &str) -> Self {
        Self::Sqlite(temp_dir(name))
    }

    fn postgres() -> Option<Self> {
        PostgresServer::start().map(Self::Postgres)
    }

    /// `[usage] ledger`'s value.
    fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => format!("sqlite:{}", dir.join("usage.db").display()),
            Self::Postgres(pg) => pg.url(),
        }
    }
}

/// A directory for a Postgres test's files.
fn ledger_log_dir() -> std::path::PathBuf {
    temp_dir("pglog")
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Self::Sqlite(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn config(up: &MockUpstream, ledger: &Ledger) -> String {
    format!(
        r#"[auth]
admin_key = "{ADMIN}"
keys = [{{ name = "team-a", key = "sk-a" }}, {{ name = "team-b", key = "sk-b" }}]

[usage]
ledger = "{ledger}"

[[usage.prices]]
model = "mock/mock-fast"
input = 1.0
output = 2.0

[[usage.prices]]
model = "openai-compatible/priced"
input = 2.0
output = 8.0
cached_input = 0.5

[providers.mock]
kind = "mock"

[providers.up]
kind = "openai-compatible"
base_url = "{}"

[[routes]]
name = "fast"
targets = ["mock/mock-fast"]
"#,
        up.base_url(),
        ledger = ledger.url()
    )
}

fn keyed(body: Value, key: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = post_request("http://unused/v1/chat/completions", body.to_string());
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    req
}

async fn call(gw: &Gw, body: Value, key: &str) -> common::Resp {
    let mut req = keyed(body, key);
    *req.uri_mut() = gw.url("/v1/chat/completions").parse().unwrap();
    try_send(&client(), req, Duration::from_secs(10))
        .await
        .unwrap()
}

async fn usage(gw: &Gw) -> Value {
    let r = get(
        &gw.url("/admin/usage"),
        &[("authorization", &format!("Bearer {ADMIN}"))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Waits (bounded) until the ledger holds `n` requests in all.
async fn wait_requests(gw: &Gw, n: u64) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = usage(gw).await;
        if last["requests"].as_u64() == Some(n) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the ledger never reached {n} requests: {last}");
}

fn group<'a>(u: &'a Value, key: &str, model: &str) -> &'a Value {
    u["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == key && t["model"] == model)
        .unwrap_or_else(|| panic!("no group {key}/{model} in {u}"))
}

fn completion(usage: Value) -> Value {
    json!({"id": "chatcmpl-u", "object": "chat.completion", "created": 1, "model": "priced",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
        "finish_reason": "stop"}], "usage": usage})
}

fn detailed_usage() -> Value {
    json!({"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 200},
        "completion_tokens_details": {"reasoning_tokens": 100}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_priced_recorded_and_survive_a_restart() {
    priced_recorded_and_restarted(Ledger::sqlite("ledger")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_priced_recorded_and_survive_a_restart_in_postgres() {
    let Some(ledger) = Ledger::postgres() else {
        return;
    };
    priced_recorded_and_restarted(ledger).await;
}

async fn priced_recorded_and_restarted(ledger: Ledger) {
    let up = MockUpstream::start().await;
    let cfg = config(&up, &ledger);
    let mut gw = Gw::start(&cfg);

    // The in-process mock: 1 prompt token, 1 completion token → 1×$1 + 1×$2 per 1M.
    let r = call(
        &gw,
        json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}),
        "sk-a",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let u = &r.json()["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_f64().unwrap(),
        u["completion_tokens"].as_f64().unwrap(),
    );
    let want = (p * 1.0 + c * 2.0) / 1e6;
    let got: f64 = r.header("x-modelway-cost").unwrap().parse().unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");

    // Cached and reasoning tokens: 800 uncached × $2 + 200 cached × $0.5 + 500 × $8.
    up.push(Reply::Json {
        status: 200,
        body: completion(detailed_usage()),
        headers: vec![],
    });
    let body = json!({"model": "up/priced", "messages": [{"role": "user", "content": "hi"}]});
    let r = call(&gw, body.clone(), "sk-b").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-modelway-cost"), Some("0.0057"));

    // The same answer streamed to a client that did not ask for usage: it gets none,
    // the ledger records the same tokens and cost.
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
            "model": "priced", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    up.push(Reply::Sse {
        events: vec![
            SseStep::data(&chunk(
                json!({"role": "assistant", "content": "ok"}),
                Value::Null,
            )),
            SseStep::data(&chunk(json!({}), json!("stop"))),
            SseStep::data(
                &json!({"id": "chatcmpl-s", "object": "chat.completion.chunk",
                "created": 1, "model": "priced", "choices": [], "usage": detailed_usage()}),
            ),
        ],
        end: StreamEnd::Done,
    });
    let mut stream_body = body.clone();
    stream_body["stream"] = json!(true);
    let r = call(&gw, stream_body.clone(), "sk-b").await;
    assert_eq!(r.status, 200);
    let events = sse_data(&r.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(
        events.iter().all(|e| !e.contains("\"usage\":{")),
        "a usage chunk the client did not ask for: {events:?}"
    );
    // Asked for: the usage chunk carries the cost, OpenRouter's way.
    up.push(Reply::Sse {
        events: vec![
            SseStep::data(&chunk(
                json!({"role": "assistant", "content": "ok"}),
                json!("stop"),
            )),
            SseStep::data(
                &json!({"id": "chatcmpl-s", "object": "chat.completion.chunk",
                "created": 1, "model": "priced", "choices": [], "usage": detailed_usage()}),
            ),
        ],
        end: StreamEnd::Done,
    });
    stream_body["stream_options"] = json!({"include_usage": true});
    let r = call(&gw, stream_body, "sk-b").await;
    let usage_event: Value = sse_data(&r.body)
        .iter()
        .filter(|e| e.contains("\"usage\":{"))
        .map(|e| serde_json::from_str(e).unwrap())
        .next()
        .unwrap();
    assert_eq!(usage_event["usage"]["cost"], json!(0.0057));

    // An upstream's own cost wins over the price table.
    let mut reported = detailed_usage();
    reported["cost"] = json!(0.125);
    up.push(Reply::Json {
        status: 200,
        body: completion(reported),
        headers: vec![],
    });
    let r = call(&gw, body.clone(), "sk-b").await;
    assert_eq!(r.header("x-modelway-cost"), Some("0.125"));

    // No price: no header, and counted as unpriced (never $0).
    let r = call(
        &gw,
        json!({"model": "up/unpriced", "messages": [{"role": "user", "content": "hi"}]}),
        "sk-a",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-modelway-cost").is_none());

    let u = wait_requests(&gw, 6).await;
    let b = group(&u, "team-b", "priced");
    assert_eq!(b["requests"], 4);
    assert_eq!(b["input_tokens"], 4000);
    assert_eq!(b["cached_input_tokens"], 800);
    assert_eq!(b["reasoning_tokens"], 400);
    let cost = b["cost_usd"].as_f64().unwrap();
    assert!((cost - (0.0057 * 3.0 + 0.125)).abs() < 1e-9, "{cost}");
    let unpriced = group(&u, "team-a", "unpriced");
    assert_eq!(unpriced["unpriced_requests"], 1);
    assert_eq!(u["unpriced_requests"], 1);
    // The same on /metrics, by key name (never the key).
    let metrics = get(&gw.url("/metrics"), &[]).await.text();
    let sample = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
    };
    let c = sample(r#"modelway_usage_cost_usd_total{key="team-b",provider="up",model="priced"}"#);
    assert!((c - cost).abs() < 1e-9, "{c}");
    assert_eq!(
        sample(
            r#"modelway_usage_unpriced_requests_total{key="team-a",provider="up",model="unpriced"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            r#"modelway_usage_tokens_total{key="team-b",provider="up",model="priced",kind="cached_input"}"#
        ),
        800.0
    );
    assert!(!metrics.contains("sk-a") && !metrics.contains("sk-b"));

    // 200 concurrent calls: 200 records, none lost.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let url = gw.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let mut req = keyed(json!({"model": "fast", "messages": [{"role": "user", "content": format!("n{i}")}]}), "sk-a");
            *req.uri_mut() = url.parse().unwrap();
            try_send(&client(), req, Duration::from_secs(20)).await.unwrap().status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let u = wait_requests(&gw, 206).await;
    assert_eq!(u["records_dropped"], 0);
    assert_eq!(group(&u, "team-a", "mock-fast")["requests"], 201);

    // A graceful stop writes what is queued; a new process reads the same ledger.
    gw.signal("TERM");
    assert!(
        gw.wait_exit(Duration::from_secs(15)).is_some(),
        "it did not stop"
    );
    let gw = Gw::start(&cfg);
    let u = wait_requests(&gw, 206).await;
    assert_eq!(group(&u, "team-b", "priced")["requests"], 4);
    // `modelway usage` prints the same from the ledger file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelway"))
        .arg("--config")
        .arg(&gw.config)
        .args(["usage", "--from", "2000-01-01"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("total: 206 requests"), "{text}");
    assert!(text.contains("team-b") && text.contains("priced"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelway"))
        .arg("--config")
        .arg(&gw.config)
        .args(["usage", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["totals"].as_array().unwrap().len(),
        u["totals"].as_array().unwrap().len()
    );
    if let Ledger::Postgres(pg) = &ledger {
        // The password never shows: not on the admin API, not in the logs.
        let admin = [("authorization", format!("Bearer {ADMIN}"))];
        let admin: Vec<(&str, &str)> = admin.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let shown =
            get(&gw.url("/admin/config"), &admin).await.text() + &usage(&gw).await.to_string();
        assert!(
            shown.contains(&format!("127.0.0.1:{}", pg.port())),
            "{shown}"
        );
        assert!(
            !shown.contains(modelway_testkit::postgres::POSTGRES_PASSWORD),
            "{shown}"
        );
        // A replica logging at debug level (the ledger's connects among it) logs none.
        let logdir = ledger_log_dir();
        let log = logdir.join("gw.log");
        let mut verbose = Gw::start_env(&cfg, &[("RUST_LOG", "debug")], Some(&log));
        let r = call(
            &verbose,
            json!({"model": "fast", "messages": [{"role": "user", "content": "x"}]}),
            "sk-a",
        )
        .await;
        assert_eq!(r.status, 200);
        wait_requests(&verbose, 207).await;
        verbose.signal("TERM");
        verbose.wait_exit(Duration::from_secs(15));
        let logs = std::fs::read_to_string(&log).unwrap();
        assert!(logs.contains("tokio_postgres"), "{logs}");
        assert!(
            !logs.contains(modelway_testkit::postgres::POSTGRES_PASSWORD),
            "{logs}"
        );
        // Every row is in the table itself.
        if let Some(n) = pg.psql("SELECT count(*) FROM modelway_usage") {
            assert_eq!(n, "207");
        }
    }
    drop(ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_kind_records_the_same_usage_streamed_and_not() {
    same_usage_streamed_and_not(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_kind_records_the_same_usage_streamed_and_not_in_postgres() {
    let Some(ledger) = Ledger::postgres() else {
        return;
    };
    same_usage_streamed_and_not(Some(ledger)).await;
}

async fn same_usage_streamed_and_not(ledger: Option<Ledger>) {
    let up = MockUpstream::start().await;
    let root = format!("http://{}", up.addr());
    let ledger_line = ledger
        .as_ref()
        .map(|l| format!("[usage]\nledger = \"{}\"\n", l.url()))
        .unwrap_or_default();
    let cfg = format!(
        r#"[auth]
admin_key = "{ADMIN}"
keys = [{{ name = "json", key = "sk-json" }}, {{ name = "stream", key = "sk-stream" }}]

{ledger_line}

[[usage.prices]]
model = "oai/m-oai"
input = 1.0
output = 3.0

[[usage.prices]]
model = "anthropic/m-anth"
input = 3.0
output = 15.0

[[usage.prices]]
model = "gemini/m-gem"
input = 0.3
output = 2.5

[[usage.prices]]
model = "mock/m-mock"
input = 1.0
output = 2.0

[providers.oai]
kind = "openai-compatible"
base_url = "{v1}"

[providers.anth]
kind = "anthropic"
base_url = "{root}"
api_key = "sk-ant"

[providers.gem]
kind = "gemini"
base_url = "{root}"
api_key = "g-key"
list_models = false

[providers.mock]
kind = "mock"
"#,
        v1 = up.base_url(),
    );
    let gw = Gw::start(&cfg);
    let models = ["oai/m-oai", "anth/m-anth", "gem/m-gem", "mock/m-mock"];
    for model in models {
        let body = json!({"model": model, "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "count the words in this sentence please"}]});
        let r = call(&gw, body.clone(), "sk-json").await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let mut s = body;
        s["stream"] = json!(true);
        let r = call(&gw, s, "sk-stream").await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let events = sse_data(&r.body);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{model}");
        assert!(
            events.iter().all(|e| !e.contains("\"usage\":{")),
            "{model}: the client did not ask for usage: {events:?}"
        );
    }
    let u = wait_requests(&gw, 8).await;
    for model in models {
        let served = model.split_once('/').unwrap().1;
        let j = group(&u, "json", served);
        let s = group(&u, "stream", served);
        for field in [
            "requests",
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "unpriced_requests",
        ] {
            assert_eq!(
                j[field], s[field],
                "{model}: {field}: json {j} vs stream {s}"
            );
        }
        assert!(j["input_tokens"].as_u64().unwrap() > 0, "{model}: {j}");
        assert!(j["output_tokens"].as_u64().unwrap() > 0, "{model}: {j}");
        let (jc, sc) = (
            j["cost_usd"].as_f64().unwrap(),
            s["cost_usd"].as_f64().unwrap(),
        );
        assert!(jc > 0.0 && (jc - sc).abs() < 1e-12, "{model}: {jc} vs {sc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_refuses_until_its_period_ends_even_after_a_restart() {
    spent_budget_refuses(Ledger::sqlite("budget")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_refuses_until_its_period_ends_even_after_a_restart_in_postgres() {
    let Some(ledger) = Ledger::postgres() else {
        return;
    };
    spent_budget_refuses(ledger).await;
}

fn budget_config(ledger: &Ledger) -> String {
    // Each call to the mock costs $0.000003 (1 + 1 tokens at $1 / $2 per 1M).
    format!(
        r#"[auth]
admin_key = "{ADMIN}"
keys = [{{ name = "capped", key = "sk-capped", budget_usd = 0.000005, budget_period = "day" }},
        {{ name = "free", key = "sk-free" }}]

[usage]
ledger = "{}"

[[usage.prices]]
model = "mock/mock-fast"
input = 1.0
output = 2.0

[providers.mock]
kind = "mock"
"#,
        ledger.url()
    )
}

async fn spent_budget_refuses(ledger: Ledger) {
    let cfg = budget_config(&ledger);
    let mut gw = Gw::start(&cfg);
    let hi = || json!({"model": "mock/mock-fast", "messages": [{"role": "user", "content": "hi"}]});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = call(&gw, hi(), "sk-capped").await;
        statuses.push(r.status);
        if r.status == 429 {
            assert_eq!(r.json()["error"]["code"], "budget_exceeded");
            let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
            assert!(
                msg.contains("budget for this day") && msg.contains("T00:00:00Z"),
                "{msg}"
            );
            let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=86_400).contains(&wait), "{wait}");
        }
        // Let the ledger's writer charge the call before the next check.
        wait_requests(&gw, statuses.iter().filter(|&&s| s == 200).count() as u64).await;
    }
    assert_eq!(statuses, [200, 200, 429]);
    // Another key is not affected.
    assert_eq!(call(&gw, hi(), "sk-free").await.status, 200);

    // A restart reads this period's spend back from the ledger.
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(15)).is_some());
    let gw = Gw::start(&cfg);
    let r = call(&gw, hi(), "sk-capped").await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "budget_exceeded");
    drop(ledger);
}

/// Two replicas on one Postgres ledger: each sees both's records on `/admin/usage`,
/// and a key's budget spent through one is refused by the other (within the budget
/// sync's interval).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_postgres_ledger_and_one_budget() {
    let Some(ledger) = Ledger::postgres() else {
        return;
    };
    let cfg = budget_config(&ledger);
    let (a, b) = (Gw::start(&cfg), Gw::start(&cfg));
    let hi = || json!({"model": "mock/mock-fast", "messages": [{"role": "user", "content": "hi"}]});
    // $0.000006 spent through replica a, over the $0.000005 budget.
    for _ in 0..2 {
        assert_eq!(call(&a, hi(), "sk-capped").await.status, 200);
    }
    assert_eq!(call(&b, hi(), "sk-free").await.status, 200);
    // Each replica's totals are the shared ledger's.
    let ua = wait_requests(&a, 3).await;
    let ub = wait_requests(&b, 3).await;
    assert_eq!(ua["totals"], ub["totals"]);
    assert_eq!(group(&ub, "capped", "mock-fast")["requests"], 2);
    // Replica b has not served `capped`, yet refuses it once it has read the ledger.
    let mut last = 0;
    for _ in 0..60 {
        let r = call(&b, hi(), "sk-capped").await;
        last = r.status;
        if last == 429 {
            assert_eq!(r.json()["error"]["code"], "budget_exceeded");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 429, "replica b never saw the spend through replica a");
}

/// Postgres going away never fails a request: answers keep coming, `/admin/health`
/// says the ledger refuses writes (the URL without its password), and the records
/// waiting are written once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_fails_no_request_and_loses_no_record() {
    let Some(mut ledger) = Ledger::postgres() else {
        return;
    };
    let cfg = budget_config(&ledger);
    let gw = Gw::start(&cfg);
    let hi = || json!({"model": "mock/mock-fast", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(call(&gw, hi(), "sk-free").await.status, 200);
    wait_requests(&gw, 1).await;
    let Ledger::Postgres(pg) = &mut ledger else {
        unreachable!()
    };
    pg.stop();
    for _ in 0..20 {
        assert_eq!(call(&gw, hi(), "sk-free").await.status, 200);
    }
    let admin = format!("Bearer {ADMIN}");
    let mut health = Value::Null;
    for _ in 0..100 {
        health = get(&gw.url("/admin/health"), &[("authorization", &admin)])
            .await
            .json();
        if health["usage_ledger"]["healthy"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let l = &health["usage_ledger"];
    assert_eq!(l["healthy"], false, "{health}");
    assert_eq!(l["waiting"], 20, "{health}");
    assert!(l["error"].is_string(), "{health}");
    assert!(
        !health
            .to_string()
            .contains(modelway_testkit::postgres::POSTGRES_PASSWORD),
        "{health}"
    );
    pg.resume();
    // The writer retries with backoff (at most 5 s between tries). It is healthy again
    // once the refused batch is written; a record that arrived after that batch was
    // taken is written by the next one, so wait for nothing to be waiting as well.
    let mut last = Value::Null;
    for _ in 0..150 {
        last = get(&gw.url("/admin/health"), &[("authorization", &admin)])
            .await
            .json();
        if last["usage_ledger"]["healthy"] == true && last["usage_ledger"]["waiting"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["usage_ledger"]["healthy"], true, "{last}");
    assert_eq!(last["usage_ledger"]["written"], 21, "{last}");
    let u = wait_requests(&gw, 21).await;
    assert_eq!(u["records_dropped"], 0);
}

/// `[usage] ledger` reloads: records go to the new ledger from the reload on (the old
/// one written out first), and a ledger that cannot be opened rejects the reload whole
/// — the old config and ledger keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_the_ledger_and_a_bad_one_is_rejected_whole() {
    let (a, b) = (Ledger::sqlite("reload-a"), Ledger::sqlite("reload-b"));
    let gw = Gw::start(&budget_config(&a));
    let admin = format!("Bearer {ADMIN}");
    let hi = || json!({"model": "mock/mock-fast", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(call(&gw, hi(), "sk-free").await.status, 200);
    wait_requests(&gw, 1).await;

    let ledger_of = |u: &Value| u["ledger"].as_str().unwrap_or_default().to_owned();
    let wait_ledger = |want: String| {
        let gw = &gw;
        async move {
            let mut last = Value::Null;
            for _ in 0..100 {
                last = usage(gw).await;
                if ledger_of(&last) == want {
                    return last;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the ledger never became {want}: {last}");
        }
    };
    gw.rename_config(&budget_config(&b));
    let u = wait_ledger(b.url()).await;
    // The new ledger starts empty; the next answer is recorded there.
    assert_eq!(u["requests"], 0, "{u}");
    assert_eq!(call(&gw, hi(), "sk-free").await.status, 200);
    wait_requests(&gw, 1).await;

    // A Postgres nobody listens on: the reload is rejected, b keeps serving.
    let port = modelway_testkit::redis::unused_port();
    let bad = budget_config(&b).replace(
        &format!("ledger = \"{}\"", b.url()),
        &format!("ledger = \"postgres://m:hunter2@127.0.0.1:{port}/m\""),
    );
    gw.rename_config(&bad);
    let mut status = Value::Null;
    for _ in 0..200 {
        status = get(&gw.url("/admin/config"), &[("authorization", &admin)])
            .await
            .json();
        if status["last_error"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = status["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("usage.ledger") && err.contains("127.0.0.1"),
        "{status}"
    );
    assert!(!status.to_string().contains("hunter2"), "{status}");
    assert_eq!(call(&gw, hi(), "sk-free").await.status, 200);
    let u = wait_requests(&gw, 2).await;
    assert_eq!(ledger_of(&u), b.url());

    // The old ledger was written out: a has its one record (read through a config
    // naming it: the file on disk is the rejected one now).
    let cfg_a = temp_dir("reload-cfg").join("a.toml");
    std::fs::write(&cfg_a, budget_config(&a)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelway"))
        .arg("--config")
        .arg(&cfg_a)
        .args(["usage", "--json", "--from", "2000-01-01"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let n: u64 = v["totals"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["requests"].as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(n, 1, "{v} {}", String::from_utf8_lossy(&out.stderr));
}
