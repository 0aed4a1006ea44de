//! `POST /v1/embeddings` end to end: the real binary in front of the real mock upstream
//! (`modelway-testkit`), over HTTP. An OpenAI-compatible upstream gets the client's
//! bytes with only the model spliced in and its answer comes back as it was (re-encoded
//! when it ignored `encoding_format`); Gemini is translated to `:batchEmbedContents`
//! (batches of 100, `outputDimensionality`, base64 encoded by the gateway); fallback and
//! skipped providers that cannot embed; gateway keys, their model globs and limits;
//! the in-process mock; metrics and the usage ledger.
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::{get, post_with, Gw, Resp};
use modelway_testkit::embed::{base64_vector, vector};
use modelway_testkit::{MockUpstream, Reply};
use serde_json::{json, Value};

const ADMIN: &str = "adm-embed-secret";
const KEY: &str = "sk-embed-all";
const NARROW: &str = "sk-embed-narrow";
const TIGHT: &str = "sk-embed-tight";
const UP_KEY: &str = "sk-up-upstream-secret";
const GEMINI_KEY: &str = "AIza-embed-upstream-secret";

fn config(up: &MockUpstream, bad: &MockUpstream) -> String {
    let root = format!("http://{}", up.addr());
    format!(
        r#"[auth]
admin_key = "{ADMIN}"
keys = [
  {{ name = "all", key = "{KEY}" }},
  {{ name = "narrow", key = "{NARROW}", models = ["embed"] }},
  {{ name = "tight", key = "{TIGHT}", rpm = 1 }},
]

[[usage.prices]]
model = "up/text-embedding-3-small"
input = 0.02
output = 0.0

[providers.up]
kind = "openai-compatible"
base_url = "{up}"
api_key = "{UP_KEY}"

[providers.bad]
kind = "openai-compatible"
base_url = "{bad}"
api_key = "sk-bad"

[providers.gem]
kind = "gemini"
base_url = "{root}"
api_key = "{GEMINI_KEY}"
list_models = false

[providers.claude]
kind = "anthropic"
base_url = "{root}"
api_key = "sk-ant"
list_models = false

[providers.mock]
kind = "mock"

[routing]
retries = 0
timeout = "5s"

[[routes]]
name = "embed"
targets = ["bad/text-embedding-3-small", "up/text-embedding-3-small"]

[[routes]]
name = "past-claude"
targets = ["claude/claude-haiku-4-5", "up/text-embedding-3-small"]

[[routes]]
name = "claude-only"
targets = ["claude/claude-haiku-4-5"]
"#,
        up = up.base_url(),
        bad = bad.base_url(),
    )
}

struct Setup {
    gw: Gw,
    up: MockUpstream,
    bad: MockUpstream,
}

async fn setup() -> Setup {
    let up = MockUpstream::start().await;
    let bad = MockUpstream::start().await;
    let gw = Gw::start(&config(&up, &bad));
    Setup { gw, up, bad }
}

async fn embed_as(gw: &Gw, key: &str, body: &str) -> Resp {
    let auth = format!("Bearer {key}");
    post_with(
        &gw.url("/v1/embeddings"),
        body.to_owned(),
        &[("authorization", &auth)],
    )
    .await
}

async fn embed(gw: &Gw, body: &str) -> Resp {
    embed_as(gw, KEY, body).await
}

fn floats(v: &Value) -> Vec<f32> {
    match v {
        Value::String(s) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        v => serde_json::from_value(v.clone()).unwrap(),
    }
}

#[tokio::test]
async fn an_openai_compatible_upstream_gets_the_client_bytes_and_its_answer_back_unchanged() {
    let s = setup().await;
    let body = r#"{ "input": ["hello world", "x"], "model": "up/text-embedding-3-small", "encoding_format": "float", "x_vendor": {"k": 1} }"#;
    let r = embed(&s.gw, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = s.up.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].method.as_str(), sent[0].path.as_str()),
        ("POST", "/v1/embeddings")
    );
    assert_eq!(
        String::from_utf8_lossy(&sent[0].body),
        body.replace("up/text-embedding-3-small", "text-embedding-3-small"),
        "the client's bytes, with only the model changed"
    );
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {UP_KEY}").as_str()),
        "the provider's key, never the client's"
    );
    let v = r.json();
    assert_eq!(v["model"], "text-embedding-3-small");
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    assert_eq!(
        floats(&v["data"][0]["embedding"]),
        vector(b"hello world", 16)
    );
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(r.header("x-modelway-provider"), Some("up"));
    assert_eq!(r.header("x-modelway-model"), Some("text-embedding-3-small"));
    assert_eq!(r.header("x-modelway-attempts"), Some("1"));
    // 3 tokens at $0.02 per 1M.
    assert_eq!(r.header("x-modelway-cost"), Some("0.00000006"));

    // base64, as the SDKs ask by default: forwarded as the upstream wrote it.
    let r = embed(
        &s.gw,
        r#"{"model":"up/text-embedding-3-small","input":"hello world","dimensions":4,"encoding_format":"base64"}"#,
    )
    .await;
    let v = r.json();
    assert_eq!(
        v["data"][0]["embedding"],
        json!(base64_vector(&vector(b"hello world", 4)))
    );
    // An upstream that ignores `encoding_format` and answers floats: re-encoded.
    s.up.push(Reply::Json {
        status: 200,
        body: json!({"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.125, -2.5]}],
            "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
        headers: vec![],
    });
    let r = embed(
        &s.gw,
        r#"{"model":"up/text-embedding-3-small","input":"x","encoding_format":"base64"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"][0]["embedding"], json!("AAAAPgAAIMA="));
    // Token-id inputs pass through too.
    let r = embed(
        &s.gw,
        r#"{"model":"up/text-embedding-3-small","input":[[1,2],[3]]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["prompt_tokens"], 3);
}

#[tokio::test]
async fn gemini_is_translated_in_batches_of_100_and_the_gateway_writes_base64() {
    let s = setup().await;
    let texts: Vec<String> = (0..150).map(|i| format!("text number {i}")).collect();
    let body = json!({"model": "gem/gemini-embedding-001", "input": texts, "dimensions": 4,
        "encoding_format": "base64", "user": "u-1"});
    let r = embed(&s.gw, &body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut sent = s.up.requests();
    sent.sort_by_key(|r| r.json()["requests"][0]["content"]["parts"][0]["text"] != "text number 0");
    assert_eq!(sent.len(), 2, "150 inputs: two batches");
    for r in &sent {
        assert_eq!(
            r.path,
            "/v1beta/models/gemini-embedding-001:batchEmbedContents"
        );
        assert_eq!(r.header("x-goog-api-key"), Some(GEMINI_KEY));
        assert!(r.header("authorization").is_none());
    }
    let first = sent[0].json();
    assert_eq!(first["requests"].as_array().unwrap().len(), 100);
    assert_eq!(
        first["requests"][0],
        json!({"model": "models/gemini-embedding-001",
            "content": {"parts": [{"text": "text number 0"}]}, "outputDimensionality": 4})
    );
    assert_eq!(sent[1].json()["requests"].as_array().unwrap().len(), 50);
    let v = r.json();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 150);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i);
        assert_eq!(d["object"], "embedding");
        let b64 = d["embedding"].as_str().expect("base64, as asked");
        assert_eq!(
            b64,
            base64_vector(&vector(texts[i].as_bytes(), 4)),
            "input {i}"
        );
    }
    assert_eq!(v["model"], "gemini-embedding-001");
    // Gemini reports no usage: estimated as UTF-8 bytes / 4, rounded up, per input.
    let estimate: u64 = texts.iter().map(|t| (t.len() as u64).div_ceil(4)).sum();
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": estimate, "total_tokens": estimate})
    );

    // Floats by default; a bare `gemini-…` name reaches the gemini provider.
    let r = embed(&s.gw, r#"{"model":"gemini-embedding-001","input":"hi"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(floats(&r.json()["data"][0]["embedding"]), vector(b"hi", 16));
    // Gemini embeds text only.
    let r = embed(
        &s.gw,
        r#"{"model":"gem/gemini-embedding-001","input":[1,2,3]}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "input");
    // Gemini's errors come back in OpenAI's shape.
    s.up.push(Reply::Json {
        status: 400,
        body: json!({"error": {"code": 400, "message": "Request contains an invalid argument.",
            "status": "INVALID_ARGUMENT"}}),
        headers: vec![],
    });
    let r = embed(&s.gw, r#"{"model":"gem/gemini-embedding-001","input":"x"}"#).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["message"],
        "Request contains an invalid argument."
    );
}

#[tokio::test]
async fn a_failing_target_falls_back_and_a_provider_that_cannot_embed_is_skipped() {
    let s = setup().await;
    s.bad.push(Reply::error(503, "overloaded"));
    let r = embed(&s.gw, r#"{"model":"embed","input":"fall back"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-modelway-provider"), Some("up"));
    assert_eq!(r.header("x-modelway-attempts"), Some("2"));
    assert_eq!(s.bad.requests().len(), 1);
    assert_eq!(
        floats(&r.json()["data"][0]["embedding"]),
        vector(b"fall back", 16)
    );

    // Every target failing: a 502 listing the attempts.
    s.bad.push(Reply::error(500, "boom"));
    s.up.push(Reply::error(500, "boom"));
    let r = embed(&s.gw, r#"{"model":"embed","input":"x"}"#).await;
    assert_eq!(r.status, 502, "{}", r.text());
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("bad/text-embedding-3-small") && msg.contains("up/text-embedding-3-small"),
        "{msg}"
    );

    // Anthropic cannot embed: skipped (nothing is sent to it), the next target answers.
    let before = s.up.requests().len();
    let r = embed(&s.gw, r#"{"model":"past-claude","input":"x"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-modelway-provider"), Some("up"));
    assert_eq!(
        s.up.requests().len(),
        before + 1,
        "only the embeddings call went out"
    );
    // A model none of whose targets can embed: a 400 naming it.
    for model in ["claude-only", "claude-haiku-4-5"] {
        let r = embed(&s.gw, &json!({"model": model, "input": "x"}).to_string()).await;
        assert_eq!(r.status, 400, "{model}: {}", r.text());
        let e = &r.json()["error"];
        assert_eq!(e["code"], "model_not_supported", "{e}");
        assert_eq!(e["param"], "model");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{model}`")),
            "{e}"
        );
    }
    assert_eq!(s.up.requests().len(), before + 1);
    // Health: Anthropic's skips are no failures of it.
    let h = get(
        &s.gw.url("/admin/health"),
        &[("authorization", &format!("Bearer {ADMIN}"))],
    )
    .await;
    let h = h.json();
    let claude: Vec<&Value> = h["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["provider"] == "claude")
        .collect();
    assert!(
        claude
            .iter()
            .all(|t| t["state"] == "healthy" && t["consecutive_failures"] == 0),
        "{h}"
    );
}

#[tokio::test]
async fn keys_models_and_limits_apply_as_for_chat() {
    let s = setup().await;
    let body = r#"{"model":"up/text-embedding-3-small","input":"x"}"#;
    let r = post_with(&s.gw.url("/v1/embeddings"), body, &[]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = embed_as(&s.gw, "sk-wrong", body).await;
    assert_eq!(r.status, 401);
    let r = embed_as(&s.gw, NARROW, body).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "model_not_allowed");
    assert!(
        s.up.requests().is_empty(),
        "a refused call reaches no upstream"
    );
    let r = embed_as(&s.gw, NARROW, r#"{"model":"embed","input":"x"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // OpenRouter's `models` list is checked too: an OpenRouter upstream would act on it.
    let r = embed_as(
        &s.gw,
        NARROW,
        r#"{"model":"embed","input":"x","models":["up/text-embedding-3-small"]}"#,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    // rpm = 1: the second call in the minute is refused.
    assert_eq!(embed_as(&s.gw, TIGHT, body).await.status, 200);
    let r = embed_as(&s.gw, TIGHT, body).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    assert!(r.header("retry-after").is_some());
    assert!(r.header("x-ratelimit-limit-requests").is_some());
}

#[tokio::test]
async fn bad_requests_unknown_models_and_methods_are_openai_shaped() {
    let s = setup().await;
    for (body, param) in [
        (r#"{"model":"embed"}"#, "input"),
        (r#"{"model":"embed","input":[]}"#, "input"),
        (
            r#"{"model":"embed","input":"x","encoding_format":"int8"}"#,
            "encoding_format",
        ),
        (
            r#"{"model":"embed","input":"x","dimensions":0}"#,
            "dimensions",
        ),
    ] {
        let r = embed(&s.gw, body).await;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.json()["error"]["param"], param, "{body}");
    }
    let r = embed(&s.gw, r#"{"model":"nope","input":"x"}"#).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    let r = get(
        &s.gw.url("/v1/embeddings"),
        &[("authorization", &format!("Bearer {KEY}"))],
    )
    .await;
    assert_eq!(r.status, 405);
    assert!(s.up.requests().is_empty() && s.bad.requests().is_empty());
}

#[tokio::test]
async fn the_mock_provider_answers_deterministic_vectors() {
    let s = setup().await;
    let a = embed(&s.gw, r#"{"model":"mock/any","input":["same","other"]}"#)
        .await
        .json();
    let b = embed(
        &s.gw,
        r#"{"model":"mock/any","input":"same","dimensions":8,"encoding_format":"base64"}"#,
    )
    .await
    .json();
    let c = embed(
        &s.gw,
        r#"{"model":"mock/any","input":"same","dimensions":8}"#,
    )
    .await
    .json();
    assert_eq!(a["model"], "any");
    assert_eq!(floats(&a["data"][0]["embedding"]).len(), 64);
    assert_ne!(a["data"][0]["embedding"], a["data"][1]["embedding"]);
    assert!(b["data"][0]["embedding"].is_string());
    assert_eq!(
        floats(&b["data"][0]["embedding"]),
        floats(&c["data"][0]["embedding"])
    );
    assert_eq!(floats(&c["data"][0]["embedding"]).len(), 8);
}

#[tokio::test]
async fn metrics_and_the_ledger_record_embeddings() {
    let s = setup().await;
    s.bad.push(Reply::error(503, "overloaded"));
    let r = embed(
        &s.gw,
        r#"{"model":"embed","input":"four words right here"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let metrics = get(&s.gw.url("/metrics"), &[]).await.text();
    for line in [
        r#"modelway_requests_total{operation="embeddings",route="embed",provider="up",model="text-embedding-3-small",status="200"} 1"#,
        r#"modelway_tokens_total{operation="embeddings",route="embed",provider="up",model="text-embedding-3-small",kind="input"} 4"#,
        r#"modelway_upstream_attempts_total{operation="embeddings",provider="up",model="text-embedding-3-small",outcome="answered"} 1"#,
        r#"modelway_upstream_attempts_total{operation="embeddings",provider="bad",model="text-embedding-3-small",outcome="overloaded"} 1"#,
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
    // The ledger (in-memory totals here) holds the record, priced.
    let mut usage = Value::Null;
    for _ in 0..100 {
        usage = get(
            &s.gw.url("/admin/usage"),
            &[("authorization", &format!("Bearer {ADMIN}"))],
        )
        .await
        .json();
        if usage["requests"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(usage["requests"], 1, "{usage}");
    let t = &usage["totals"][0];
    assert_eq!(
        (&t["key"], &t["provider"], &t["model"]),
        (
            &json!("all"),
            &json!("up"),
            &json!("text-embedding-3-small")
        )
    );
    assert_eq!(
        (&t["input_tokens"], &t["output_tokens"]),
        (&json!(4), &json!(0))
    );
    assert!(
        (t["cost_usd"].as_f64().unwrap() - 4.0 * 0.02 / 1e6).abs() < 1e-15,
        "{t}"
    );
}
