//! End-to-end: the real binary over real HTTP against testkit upstreams.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use modelway_testkit::{MockUpstream, Reply, SseStep, StreamEnd};
use serde_json::json;

fn config(upstreams: &[(&str, &MockUpstream)], extra: &str) -> String {
    let mut s =
        String::from("[routing]\ntimeout = \"5s\"\n\n[providers.mock]\nkind = \"mock\"\n\n");
    for (name, up) in upstreams {
        s.push_str(&format!(
            "[providers.{name}]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\napi_key = \"sk-{name}-secret\"\n\n",
            up.base_url()
        ));
    }
    s.push_str(extra);
    s
}

#[tokio::test]
async fn answers_and_headers_come_from_the_upstream() {
    let up = MockUpstream::start().await;
    let gw = Gw::start(&config(
        &[("up", &up)],
        "[[routes]]\nname = \"fast\"\ntargets = [\"up/gpt-4o-mini\"]\n",
    ));
    let r = post_with(
        &gw.url("/v1/chat/completions"),
        chat("fast", "hello"),
        &[
            ("authorization", "Bearer client-key"),
            ("x-request-id", "my-id-1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Echo: hello");
    assert_eq!(r.header("x-modelway-provider"), Some("up"));
    assert_eq!(r.header("x-modelway-model"), Some("gpt-4o-mini"));
    assert_eq!(r.header("x-modelway-attempts"), Some("1"));
    assert_eq!(r.header("x-request-id"), Some("my-id-1"));
    let seen = up.requests();
    let chat_req = seen
        .iter()
        .find(|r| r.path.ends_with("/chat/completions"))
        .unwrap();
    assert_eq!(
        chat_req.header("authorization"),
        Some("Bearer sk-up-secret")
    );
    assert_eq!(chat_req.json()["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn bad_input_gets_openai_errors() {
    let gw = Gw::start("[server]\nmax_body_bytes = 2048\n[providers.mock]\nkind = \"mock\"\n");
    let url = gw.url("/v1/chat/completions");
    let big = format!(
        "{{\"model\":\"mock/x\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "a".repeat(4096)
    );
    let rows: Vec<(&str, Bytes, u16, Option<&str>)> = vec![
        ("malformed json", Bytes::from("{\"model\":"), 400, None),
        (
            "missing model",
            Bytes::from(r#"{"messages":[{"role":"user","content":"x"}]}"#),
            400,
            None,
        ),
        (
            "missing messages",
            Bytes::from(r#"{"model":"mock/x"}"#),
            400,
            None,
        ),
        (
            "wrong type",
            Bytes::from(
                r#"{"model":"mock/x","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
            ),
            400,
            None,
        ),
        (
            "oversized body",
            Bytes::from(big),
            413,
            Some("request_too_large"),
        ),
        (
            "unknown model",
            Bytes::from(chat("gpt-4o", "x")),
            404,
            Some("model_not_found"),
        ),
        (
            "unknown provider slug",
            Bytes::from(chat("nope/x", "x")),
            404,
            Some("model_not_found"),
        ),
    ];
    for (name, body, status, code) in rows {
        let r = post(&url, body).await;
        assert_eq!(r.status, status, "{name}: {}", r.text());
        let v = r.json();
        for k in ["message", "type", "param", "code"] {
            assert!(
                v["error"].get(k).is_some(),
                "{name}: missing error.{k} in {v}"
            );
        }
        if let Some(code) = code {
            assert_eq!(v["error"]["code"], code, "{name}");
        }
    }
    let r = get(&gw.url("/v1/nothing"), &[]).await;
    assert_eq!(r.status, 404);
    let r = get(&gw.url("/v1/chat/completions"), &[]).await;
    assert_eq!(r.status, 405);
    // Still healthy after all that.
    assert_eq!(get(&gw.url("/healthz"), &[]).await.status, 200);
    assert_eq!(get(&gw.url("/readyz"), &[]).await.status, 200);
}

#[tokio::test]
async fn fallback_to_the_next_target_is_invisible() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(Reply::error(503, "overloaded"));
    let gw = Gw::start(&config(
        &[("a", &a), ("b", &b)],
        "[[routes]]\nname = \"r\"\ntargets = [\"a/m1\", \"b/m2\"]\n",
    ));
    let r = post(&gw.url("/v1/chat/completions"), chat("r", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-modelway-provider"), Some("b"));
    assert_eq!(r.header("x-modelway-attempts"), Some("2"));

    // Both failing: a 502 in OpenAI's shape naming the provider, never the key.
    a.push(Reply::error(500, "boom"));
    b.push(Reply::error(500, "boom"));
    let r = post(&gw.url("/v1/chat/completions"), chat("r", "hi")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(!r.text().contains("secret"), "{}", r.text());

    // A 400 from the upstream is the client's fault: passed through, no fallback.
    a.push(Reply::error(400, "bad temperature"));
    let r = post(&gw.url("/v1/chat/completions"), chat("r", "hi")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("bad temperature"));
}

#[tokio::test]
async fn streams_arrive_whole_and_failures_after_the_head_are_error_events() {
    let up = MockUpstream::start().await;
    let gw = Gw::start(&config(&[("up", &up)], ""));
    let url = gw.url("/v1/chat/completions");
    let r = post(&url, chat_stream("up/m", "one two three")).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(stream_text(&r.body), "Echo: one two three");
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));

    // The upstream drops the connection mid-stream.
    let chunk = |c: &str| json!({"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":c},"finish_reason":null}]});
    up.push(Reply::Sse {
        events: vec![
            SseStep::data(&chunk("partial ")),
            SseStep::data(&chunk("answer")),
        ],
        end: StreamEnd::Drop,
    });
    let r = post(&url, chat_stream("up/m", "x")).await;
    assert_eq!(r.status, 200);
    let events = sse_data(&r.body);
    assert_eq!(stream_text(&r.body), "partial answer");
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"].is_string(),
        "expected an error event last, got {events:?}"
    );
    assert!(
        !events.iter().any(|e| e == "[DONE]"),
        "a cut stream must not end with [DONE]"
    );

    // Fails before the first byte: falls back or errors with a status, not a 200.
    up.push(Reply::error(429, "slow down"));
    let r = post(&url, chat_stream("up/m", "x")).await;
    assert_eq!(r.status, 429, "{}", r.text());
}

#[tokio::test]
async fn passthrough_streams_send_the_upstreams_chunks_byte_for_byte() {
    let up = MockUpstream::start().await;
    let gw = Gw::start(&config(&[("up", &up)], ""));
    // Key order, spacing, explicit nulls and fields modelway does not know: a Chat
    // Completions client gets each chunk as the upstream wrote it.
    let first = r#"{"choices":[{"delta":{"role":"assistant","content":""},"index":0,"logprobs":null,"finish_reason":null}],"id":"c1", "created":5,"model":"m","object":"chat.completion.chunk","obfuscation":"x1"}"#;
    let second = r#"{"choices":[{"delta":{"content":"Hi"},"index":0,"logprobs":null,"finish_reason":null}],"id":"c1", "created":5,"model":"m","object":"chat.completion.chunk","obfuscation":"x22"}"#;
    // A server that repeats the role on every delta: this one is fixed, so it is
    // encoded again, without the role.
    let repeat = r#"{"choices":[{"delta":{"role":"assistant","content":" there"},"index":0,"finish_reason":null}],"id":"c1","created":5,"model":"m","object":"chat.completion.chunk"}"#;
    let last = r#"{"choices":[{"delta":{},"index":0,"logprobs":null,"finish_reason":"stop"}],"id":"c1", "created":5,"model":"m","object":"chat.completion.chunk"}"#;
    let usage = r#"{"choices":[],"id":"c1","created":5,"model":"m","object":"chat.completion.chunk","usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
    let events = [first, second, repeat, last, usage]
        .iter()
        .map(|d| SseStep::raw(&format!("data: {d}\n\n")))
        .collect::<Vec<_>>();
    up.push(Reply::Sse {
        events,
        end: StreamEnd::Done,
    });
    let r = post(&gw.url("/v1/chat/completions"), chat_stream("up/m", "x")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = sse_data(&r.body);
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[0], first);
    assert_eq!(got[1], second);
    let fixed: serde_json::Value = serde_json::from_str(&got[2]).unwrap();
    assert!(
        fixed["choices"][0]["delta"].get("role").is_none(),
        "{fixed}"
    );
    assert_eq!(fixed["choices"][0]["delta"]["content"], " there");
    assert_eq!(got[3], last);
    // The usage chunk the client did not ask for is read, not sent.
    assert_eq!(got[4], "[DONE]");
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_call() {
    let up = MockUpstream::start().await;
    let gw = Gw::start(&config(&[("up", &up)], ""));
    for body in [chat("up/m", "x"), chat_stream("up/m", "x")] {
        up.reset();
        up.push(Reply::Hang);
        let url = gw.url("/v1/chat/completions");
        let call = tokio::spawn(async move { post(&url, body).await });
        up.wait_for_requests(1, Duration::from_secs(5)).await;
        call.abort();
        let cancelled = eventually(Duration::from_secs(5), || async { up.cancelled() >= 1 }).await;
        assert!(
            cancelled,
            "the upstream call was not cancelled after the client left"
        );
    }
}

#[tokio::test]
async fn h2c_prior_knowledge_works() {
    let gw = Gw::start("[providers.mock]\nkind = \"mock\"\n");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<Bytes>>();
    let req = http::Request::post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(chat(
            "mock/m", "over h2",
        ))))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let mut gw = Gw::start(
        "[server]\nshutdown_timeout = \"10s\"\n[providers.slow]\nkind = \"mock\"\ndelay = \"1s\"\n",
    );
    let url = gw.url("/v1/chat/completions");
    let call = tokio::spawn(async move { post(&url, chat("slow/m", "finish me")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal("TERM");
    let r = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "finish me");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test]
async fn gateway_keys_guard_models() {
    let gw = Gw::start(
        "[auth]\nadmin_key = \"adm\"\nkeys = [{ name = \"web\", key = \"k-web\", models = [\"mock/*\"] }]\n[providers.mock]\nkind = \"mock\"\n[providers.other]\nkind = \"mock\"\n",
    );
    let url = gw.url("/v1/chat/completions");
    assert_eq!(post(&url, chat("mock/m", "x")).await.status, 401);
    assert_eq!(
        post_with(
            &url,
            chat("mock/m", "x"),
            &[("authorization", "Bearer wrong")]
        )
        .await
        .status,
        401
    );
    assert_eq!(
        post_with(
            &url,
            chat("mock/m", "x"),
            &[("authorization", "Bearer k-web")]
        )
        .await
        .status,
        200
    );
    let r = post_with(
        &url,
        chat("other/m", "x"),
        &[("authorization", "Bearer k-web")],
    )
    .await;
    assert_eq!(r.status, 403);
    // The admin endpoint needs the admin key and never shows secrets.
    assert_eq!(
        get(
            &gw.url("/admin/config"),
            &[("authorization", "Bearer k-web")]
        )
        .await
        .status,
        401
    );
    let r = get(&gw.url("/admin/config"), &[("authorization", "Bearer adm")]).await;
    assert_eq!(r.status, 200);
    assert!(
        !r.text().contains("k-web") && !r.text().contains("adm\""),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn models_are_listed_and_retrievable() {
    let up = MockUpstream::start().await;
    let gw = Gw::start(&config(
        &[("up", &up)],
        "[[routes]]\nname = \"fast\"\ntargets = [\"up/gpt-4o-mini\"]\n",
    ));
    let r = get(&gw.url("/v1/models"), &[]).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"fast"), "{ids:?}");
    assert!(
        ids.contains(&"up/gpt-4o-mini"),
        "upstream models are listed under their provider: {ids:?}"
    );
    let r = get(&gw.url("/v1/models/fast"), &[]).await;
    assert_eq!(r.json()["id"], "fast");
    let r = get(&gw.url("/v1/models/up%2Fsome%2Fmodel"), &[]).await;
    assert_eq!(r.json()["id"], "up/some/model");
    let r = get(&gw.url("/v1/models/unknown-thing"), &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn check_subcommand_validates() {
    let dir = temp_dir("check");
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[providers.m]\nkind = \"mock\"\n[[routes]]\nname = \"fast\"\ntargets = [\"m/x\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelway"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("fast"));
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[providers.m]\nkind = \"mock\"\nspeed = 3\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelway"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("speed") && err.contains("line 3"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_stalled_stream_is_cut_with_an_error_event_not_left_hanging() {
    let up = MockUpstream::start().await;
    let cfg = format!(
        "[routing]\ntimeout = \"500ms\"\n[providers.up]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\n",
        up.base_url()
    );
    let gw = Gw::start(&cfg);
    let chunk = |c: &str| json!({"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":c},"finish_reason":null}]});
    up.push(Reply::Sse {
        events: vec![
            SseStep::data(&chunk("first")),
            SseStep::data(&chunk(" never")).after(Duration::from_secs(5)),
        ],
        end: StreamEnd::Done,
    });
    let started = std::time::Instant::now();
    let r = post(&gw.url("/v1/chat/completions"), chat_stream("up/m", "x")).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the stall was not cut by the idle timeout"
    );
    assert_eq!(stream_text(&r.body), "first");
    let events = sse_data(&r.body);
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_cut", "{events:?}");
}

#[tokio::test]
async fn passthrough_keeps_the_clients_bytes_and_checks_the_upstreams() {
    let up = MockUpstream::start().await;
    let gw = Gw::start(&config(
        &[("up", &up)],
        "[[routes]]\nname = \"fast\"\ntargets = [\"up/gpt-4o-mini\"]\n",
    ));
    let url = gw.url("/v1/chat/completions");
    // Odd spacing, key order and unknown fields: the upstream gets these very bytes,
    // with only the model replaced.
    let sent = r#"{ "messages": [{"role":"user","content":"hi \"there\"","x_part":1}],  "x_top": {"model": "not this"}, "model" : "fast", "temperature": 0.25 }"#;
    let r = post(&url, sent).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/chat/completions"))
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        sent.replace(r#""model" : "fast""#, r#""model" : "gpt-4o-mini""#)
    );

    // A 200 that is not a completion is never forwarded as one.
    for bad in [
        "<html>oops</html>",
        r#"{"choices":[{"message":"#,
        r#"{"id":"x"}"#,
    ] {
        up.push(Reply::Raw {
            status: 200,
            content_type: "application/json".into(),
            body: bytes::Bytes::from(bad),
        });
        let r = post(&url, chat("fast", "x")).await;
        assert_eq!(r.status, 502, "{bad}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "upstream_malformed", "{bad}");
    }
    // An error inside a 200 (OpenRouter does this) keeps its status.
    up.push(Reply::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: bytes::Bytes::from(r#"{"error":{"message":"Rate limit exceeded","code":429}}"#),
    });
    let r = post(&url, chat("fast", "x")).await;
    assert_eq!(r.status, 429, "{}", r.text());
}
