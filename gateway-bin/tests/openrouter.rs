//! End-to-end: OpenRouter's request dialect served on the operator's own keys. Each of
//! the behaviours — `models`, `provider.order/only/ignore/allow_fallbacks/sort`,
//! `:nitro` — and what reaches which upstream: the fields go to an OpenRouter upstream
//! untouched and to no other.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use modelway_testkit::{MockUpstream, Reply};
use serde_json::{json, Value};

fn config(or: &MockUpstream, a: &MockUpstream, b: &MockUpstream) -> String {
    format!(
        r#"[routing]
timeout = "5s"

[providers.router]
kind = "openrouter"
base_url = "{}"
api_key = "sk-or"

[providers.alpha]
kind = "openai-compatible"
base_url = "{}"

[providers.beta]
kind = "groq"
base_url = "{}"

[[routes]]
name = "pair"
targets = ["alpha/a-model", "beta/b-model"]
"#,
        or.base_url(),
        a.base_url(),
        b.base_url()
    )
}

fn body(model: &str, extra: Value) -> String {
    let mut v = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v.to_string()
}

fn chats(up: &MockUpstream) -> Vec<Value> {
    up.requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .map(|r| r.json())
        .collect()
}

struct Setup {
    or: MockUpstream,
    a: MockUpstream,
    b: MockUpstream,
    gw: Gw,
}

async fn setup() -> Setup {
    let (or, a, b) = (
        MockUpstream::start().await,
        MockUpstream::start().await,
        MockUpstream::start().await,
    );
    let gw = Gw::start(&config(&or, &a, &b));
    Setup { or, a, b, gw }
}

impl Setup {
    async fn ask(&self, model: &str, extra: Value) -> Resp {
        post(&self.gw.url("/v1/chat/completions"), body(model, extra)).await
    }
    fn reset(&self) {
        self.or.reset();
        self.a.reset();
        self.b.reset();
    }
}

#[tokio::test]
async fn models_is_the_calls_fallback_list() {
    let s = setup().await;
    s.a.push(Reply::error(500, "down"));
    let r = s
        .ask("alpha/a-model", json!({"models": ["beta/b-model"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-modelway-provider"), Some("beta"));
    assert_eq!(r.header("x-modelway-attempts"), Some("2"));
    // Neither non-OpenRouter upstream saw the dialect's fields.
    for up in [&s.a, &s.b] {
        let sent = chats(up);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].get("models").is_none(), "{}", sent[0]);
    }
    assert_eq!(chats(&s.b)[0]["model"], "b-model");
}

#[tokio::test]
async fn the_fields_reach_an_openrouter_upstream_untouched() {
    let s = setup().await;
    let extra = json!({
        "models": ["meta-llama/llama-3-70b", "mistralai/mixtral"],
        "provider": {"order": ["Groq"], "allow_fallbacks": true, "data_collection": "deny"},
        "transforms": ["middle-out"]
    });
    let r = s.ask("router/openai/gpt-4o:nitro", extra.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = chats(&s.or);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["model"], "openai/gpt-4o:nitro",
        "the suffix is OpenRouter's"
    );
    assert_eq!(sent[0]["provider"], extra["provider"]);
    assert_eq!(sent[0]["transforms"], extra["transforms"]);
    assert_eq!(sent[0]["models"], extra["models"]);

    // `provider.only` names OpenRouter's providers: it does not filter out the
    // OpenRouter target itself.
    let r = s
        .ask(
            "router/anthropic/claude",
            json!({"provider": {"only": ["Anthropic"]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(chats(&s.or)[1]["provider"]["only"][0], "Anthropic");
}

#[tokio::test]
async fn provider_order_only_and_ignore_choose_the_targets() {
    let s = setup().await;
    // order: beta first (by its kind, any case).
    let r = s
        .ask("pair", json!({"provider": {"order": ["GROQ"]}}))
        .await;
    assert_eq!(
        r.header("x-modelway-provider"),
        Some("beta"),
        "{}",
        r.text()
    );
    // only: alpha alone, by its configured name.
    s.a.push(Reply::error(500, "down"));
    let r = s
        .ask("pair", json!({"provider": {"only": ["alpha"]}}))
        .await;
    assert_eq!(r.status, 502, "only alpha may serve: {}", r.text());
    assert_eq!(chats(&s.b).len(), 1, "beta only served the `order` call");
    // ignore: never alpha.
    s.reset();
    let r = s
        .ask("pair", json!({"provider": {"ignore": ["alpha"]}}))
        .await;
    assert_eq!(r.header("x-modelway-provider"), Some("beta"));
    assert!(chats(&s.a).is_empty());
    // Filters that leave nothing: a 400 naming `provider`.
    let r = s
        .ask("pair", json!({"provider": {"only": ["nobody"]}}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "provider");
}

#[tokio::test]
async fn allow_fallbacks_false_keeps_to_the_first_target() {
    let s = setup().await;
    s.a.push(Reply::error(503, "overloaded"));
    let r = s
        .ask("pair", json!({"provider": {"allow_fallbacks": false}}))
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-modelway-attempts"), Some("1"));
    assert!(chats(&s.b).is_empty(), "beta was not tried");
}

#[tokio::test]
async fn sort_latency_and_nitro_pick_the_latency_strategy_and_unknown_fields_pass() {
    let s = setup().await;
    // Both cold at first: configured order. Warm both, then make alpha slow.
    for model in ["pair:nitro", "pair"] {
        let r = s
            .ask(model, json!({"provider": {"sort": "latency", "quantizations": ["fp8"]}, "transforms": []}))
            .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
    }
    let r = s.ask("pair:floor", json!({})).await;
    assert_eq!(r.status, 200, "`:floor` is the route too: {}", r.text());
    let bad = s
        .ask("pair", json!({"provider": {"sort": "fastest"}}))
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["param"], "provider.sort");
    let bad = s.ask("pair", json!({"models": "beta/b-model"})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["param"], "models");
}
