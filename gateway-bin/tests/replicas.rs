//! Two gateway processes sharing one real `redis-server` enforce one key's rpm
//! together; Redis going away mid-run gives each its `on_store_error` behaviour, at
//! once, and coming back restores the limits.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{client, get, post_request, try_send, Gw};
use modelway_testkit::RedisServer;

fn config(redis: &str, on_store_error: &str) -> String {
    format!(
        r#"[auth]
admin_key = "adm-replicas"
keys = [{{ name = "shared", key = "sk-shared", rpm = 30 }}]

[limits]
store = "{redis}"
on_store_error = "{on_store_error}"
timeout = "200ms"

[providers.mock]
kind = "mock"

[[routes]]
name = "fast"
targets = ["mock/mock-fast"]
"#
    )
}

fn request(gw: &Gw) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let body = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    let mut req = post_request(&gw.url("/v1/chat/completions"), body);
    req.headers_mut()
        .insert("authorization", "Bearer sk-shared".parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_limit_and_follow_on_store_error_when_redis_goes() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let a = Gw::start(&config(&url, "deny"));
    let b = Gw::start(&config(&url, "deny"));
    let open = Gw::start(&config(&url, "allow"));

    // 90 requests, three at a time on each replica, against one rpm of 30.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for gw in [&a, &b] {
        for _ in 0..3 {
            let reqs: Vec<_> = (0..15).map(|_| request(gw)).collect();
            tasks.push(tokio::spawn(async move {
                let c = client();
                let mut statuses = Vec::new();
                for req in reqs {
                    let r = try_send(&c, req, Duration::from_secs(5)).await.unwrap();
                    statuses.push(r.status);
                }
                statuses
            }));
        }
    }
    let mut ok = 0;
    for t in tasks {
        for s in t.await.unwrap() {
            match s {
                200 => ok += 1,
                429 => {}
                s => panic!("unexpected status {s}"),
            }
        }
    }
    // The documented tolerance: the minute's burst, what refilled during the run
    // (30/min), and one for the refill boundary.
    let refilled = (started.elapsed().as_secs_f64() * 30.0 / 60.0).floor() as u32;
    assert!(ok >= 30, "only {ok} got through");
    assert!(
        ok <= 30 + refilled + 1,
        "{ok} got through two replicas sharing rpm = 30"
    );
    // Both replicas see the spent bucket.
    let c = client();
    for gw in [&a, &b] {
        let r = try_send(&c, request(gw), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    }

    redis.stop();
    // deny: 503 at once, never a hang; allow: served.
    for _ in 0..3 {
        let t = Instant::now();
        let r = try_send(&c, request(&a), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "limits_unavailable");
        assert!(r.header("retry-after").is_some());
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let r = try_send(&c, request(&open), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let h = get(
        &a.url("/admin/health"),
        &[("authorization", "Bearer adm-replicas")],
    )
    .await;
    let store = &h.json()["limit_store"];
    assert_eq!(store["healthy"], false, "{store}");
    assert_eq!(store["kind"], "redis");
    assert!(store["error"].as_str().is_some_and(|e| !e.is_empty()));

    // Redis back (empty: no persistence): the limit is enforced again.
    redis.restart();
    let mut back = false;
    for _ in 0..50 {
        let r = try_send(&c, request(&a), Duration::from_secs(5))
            .await
            .unwrap();
        if r.status == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the replica never recovered its store");
    let h = get(
        &a.url("/admin/health"),
        &[("authorization", "Bearer adm-replicas")],
    )
    .await;
    assert_eq!(h.json()["limit_store"]["healthy"], true);
}
