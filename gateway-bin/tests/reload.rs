//! Hot reload end to end: the real binary, its config file rewritten under it.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use modelway_testkit::MockUpstream;

const ADMIN: &str = "[auth]\nadmin_key = \"adm\"\n";

fn base(routes: &str) -> String {
    format!("{ADMIN}[providers.m]\nkind = \"mock\"\n\n{routes}")
}

fn route(name: &str, target: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\ntargets = [\"{target}\"]\n\n")
}

async fn status_of(gw: &Gw, model: &str) -> u16 {
    post(&gw.url("/v1/chat/completions"), chat(model, "x"))
        .await
        .status
}

async fn admin(gw: &Gw) -> serde_json::Value {
    get(&gw.url("/admin/config"), &[("authorization", "Bearer adm")])
        .await
        .json()
}

const BOUND: Duration = Duration::from_secs(2);

#[tokio::test]
async fn adding_a_route_serves_within_two_seconds_in_place_and_by_rename() {
    let gw = Gw::start(&base(&route("a", "m/x")));
    assert_eq!(status_of(&gw, "b").await, 404);

    gw.write_config(&base(&(route("a", "m/x") + &route("b", "m/y"))));
    assert!(
        eventually(BOUND, || async { status_of(&gw, "b").await == 200 }).await,
        "in-place write not applied"
    );

    gw.rename_config(&base(
        &(route("a", "m/x") + &route("b", "m/y") + &route("c", "m/z")),
    ));
    assert!(
        eventually(BOUND, || async { status_of(&gw, "c").await == 200 }).await,
        "write-then-rename not applied"
    );

    // Removing a route.
    gw.write_config(&base(&route("a", "m/x")));
    assert!(
        eventually(BOUND, || async { status_of(&gw, "c").await == 404 }).await,
        "removed route still served"
    );
    assert_eq!(status_of(&gw, "a").await, 200);
    let v = admin(&gw).await;
    assert!(v["version"].as_u64().unwrap() >= 4, "{v}");
    assert_eq!(v["hash"].as_str().unwrap().len(), 64);
    assert!(v["last_error"].is_null());
}

#[cfg(unix)]
#[tokio::test]
async fn symlink_swaps_like_kubernetes_configmaps_reload() {
    let dir = temp_dir("k8s");
    let v1 = dir.join("..v1");
    let v2 = dir.join("..v2");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v1.join("modelway.toml"), base(&route("a", "m/x"))).unwrap();
    std::fs::write(
        v2.join("modelway.toml"),
        base(&(route("a", "m/x") + &route("b", "m/y"))),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/modelway.toml", dir.join("modelway.toml")).unwrap();
    let gw = Gw::spawn(dir.clone(), dir.join("modelway.toml"), &[]);
    assert_eq!(status_of(&gw, "b").await, 404);
    // Atomic swap of ..data, as the kubelet does.
    std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    assert!(
        eventually(BOUND, || async { status_of(&gw, "b").await == 200 }).await,
        "symlink swap not applied"
    );
}

#[tokio::test]
async fn changing_base_url_moves_traffic() {
    let one = MockUpstream::start().await;
    let two = MockUpstream::start().await;
    let cfg = |url: &str| {
        format!("{ADMIN}[providers.up]\nkind = \"openai-compatible\"\nbase_url = \"{url}\"\n")
    };
    let gw = Gw::start(&cfg(&one.base_url()));
    assert_eq!(status_of(&gw, "up/m").await, 200);
    assert_eq!(one.requests().len(), 1);
    gw.write_config(&cfg(&two.base_url()));
    assert!(
        eventually(BOUND, || async {
            status_of(&gw, "up/m").await == 200 && !two.requests().is_empty()
        })
        .await,
        "traffic did not move to the new base_url"
    );
}

#[tokio::test]
async fn bad_files_are_rejected_whole_and_the_old_config_keeps_serving() {
    let good = base(&route("a", "m/x"));
    let gw = Gw::start(&good);
    let rows: &[(&str, String, &str)] = &[
        ("invalid toml", format!("{good}\n[[routes]\nname = "), "line"),
        ("unknown kind", format!("{good}[providers.w]\nkind = \"warp-drive\"\n"), "warp-drive"),
        ("unset variable", format!("{good}[providers.o]\nkind = \"openai\"\napi_key = \"${{MODELWAY_TEST_UNSET_VAR}}\"\n"), "MODELWAY_TEST_UNSET_VAR"),
        ("route to a missing provider", format!("{good}{}", route("b", "ghost/y")), "ghost"),
    ];
    let mut versions = Vec::new();
    for (name, text, needle) in rows {
        // Each bad file also drops route `a` and adds `b`: neither may take effect.
        gw.write_config(&text.replace("name = \"a\"", "name = \"a2\""));
        let shown = eventually(BOUND, || async {
            admin(&gw).await["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(needle))
        })
        .await;
        let v = admin(&gw).await;
        assert!(shown, "{name}: error not shown on /admin/config: {v}");
        assert!(
            v["last_error"].as_str().unwrap().contains("line"),
            "{name}: no line number in {v}"
        );
        assert_eq!(
            status_of(&gw, "a").await,
            200,
            "{name}: old config no longer serving"
        );
        assert_eq!(
            status_of(&gw, "a2").await,
            404,
            "{name}: part of a bad file took effect"
        );
        versions.push(v["version"].as_u64().unwrap());
        // Back to good, so the next bad file is a distinct change.
        gw.write_config(&good);
        assert!(eventually(BOUND, || async { admin(&gw).await["last_error"].is_null() }).await);
    }
    assert!(
        versions.iter().all(|v| *v == versions[0]),
        "a rejected file bumped the version: {versions:?}"
    );
}

#[tokio::test]
async fn sighup_reloads() {
    let gw = Gw::start_with(&base(&route("a", "m/x")), &["--no-watch"]);
    gw.write_config(&base(&(route("a", "m/x") + &route("b", "m/y"))));
    // Not watching: nothing changes until the signal (a bounded look, not a timing claim).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status_of(&gw, "b").await, 404);
    gw.signal("HUP");
    assert!(
        eventually(BOUND, || async { status_of(&gw, "b").await == 200 }).await,
        "SIGHUP did not reload"
    );
}

#[tokio::test]
async fn a_stream_in_flight_completes_on_its_old_snapshot() {
    let slow = format!(
        "{ADMIN}[providers.m]\nkind = \"mock\"\nchunk_delay = \"50ms\"\n\n{}",
        route("a", "m/x")
    );
    let gw = Gw::start(&slow);
    let words: Vec<String> = (0..30).map(|i| format!("w{i}")).collect();
    let text = words.join(" ");
    let url = gw.url("/v1/chat/completions");
    let body = chat_stream("a", &text);
    let call = tokio::spawn(async move { post(&url, body).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Remove the route and the provider it used.
    gw.write_config(&format!("{ADMIN}[providers.other]\nkind = \"mock\"\n"));
    assert!(eventually(BOUND, || async { status_of(&gw, "a").await == 404 }).await);
    let r = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        stream_text(&r.body),
        text,
        "the in-flight stream was cut or changed by the reload"
    );
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
}

/// ~20 s: clients send requests continuously while the file is rewritten 50 times,
/// valid and invalid alternately. No request fails, and every answer comes from a
/// snapshot in which the route it asked for existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stress_reload_under_load_loses_nothing() {
    // Generation g: route `common` always; `even` in even generations, `odd` in odd ones.
    // The mock replies "gen-g", so an answer says which snapshot served it.
    let gen_cfg = |g: usize| {
        let parity = if g.is_multiple_of(2) { "even" } else { "odd" };
        format!(
            "{ADMIN}[providers.m]\nkind = \"mock\"\nreply = \"gen-{g}\"\n\n{}{}",
            route("common", "m/x"),
            route(parity, "m/y")
        )
    };
    let gw = Arc::new(Gw::start(&gen_cfg(0)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let not_found = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (gw, stop, ok, not_found) = (gw.clone(), stop.clone(), ok.clone(), not_found.clone());
        clients.push(tokio::spawn(async move {
            let models = ["common", "even", "odd"];
            let mut i = c;
            let deadline = Instant::now() + Duration::from_secs(40);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let model = models[i % 3];
                i += 1;
                let stream = i % 2 == 0;
                let body = if stream {
                    chat_stream(model, "q")
                } else {
                    chat(model, "q")
                };
                let r = post(&gw.url("/v1/chat/completions"), body).await;
                match r.status {
                    200 => {
                        let text = if stream {
                            stream_text(&r.body)
                        } else {
                            r.json()["choices"][0]["message"]["content"]
                                .as_str()
                                .unwrap()
                                .to_owned()
                        };
                        let g: usize = text
                            .strip_prefix("gen-")
                            .unwrap_or_else(|| panic!("odd answer {text:?}"))
                            .parse()
                            .unwrap();
                        let parity = if g.is_multiple_of(2) { "even" } else { "odd" };
                        assert!(
                            model == "common" || model == parity,
                            "route {model} served by generation {g}, where it did not exist"
                        );
                        if stream {
                            assert_eq!(
                                sse_data(&r.body).last().map(String::as_str),
                                Some("[DONE]")
                            );
                        }
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    404 => {
                        assert_ne!(model, "common", "route `common` exists in every generation");
                        not_found.fetch_add(1, Ordering::Relaxed);
                    }
                    s => panic!("request failed with {s}: {}", r.text()),
                }
            }
        }));
    }
    let mut generation = 0;
    for i in 0..50u32 {
        if i.is_multiple_of(2) {
            generation += 1;
            gw.write_config(&gen_cfg(generation));
        } else {
            gw.write_config(&format!(
                "{}\n[[routes]]\nname = \"broken\"\ntargets = [\"nowhere/x\"]\n",
                gen_cfg(generation + 100)
            ));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .unwrap()
            .unwrap();
    }
    let v = admin(&gw).await;
    assert!(
        v["version"].as_u64().unwrap() >= 20,
        "most valid rewrites should have applied: {v}"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 200,
        "too few requests completed: {}",
        ok.load(Ordering::Relaxed)
    );
    eprintln!(
        "stress: {} answered, {} 404 (route absent in that generation), final {v}",
        ok.load(Ordering::Relaxed),
        not_found.load(Ordering::Relaxed)
    );
}
