//! End-to-end: `GET /v1/models` through the real binary lists what each translated
//! upstream reports, fetched in that upstream's own listing shape (Anthropic's
//! `GET /v1/models`, Gemini's `GET /v1beta/models`), with the provider's credentials in
//! headers and never in the URL.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use modelway_testkit::MockUpstream;

#[tokio::test]
async fn translated_upstreams_list_their_models() {
    let up = MockUpstream::start().await;
    let root = format!("http://{}", up.addr());
    let gw = Gw::start(&format!(
        "[providers.claude]\nkind = \"anthropic\"\nbase_url = \"{root}\"\napi_key = \"sk-ant-list\"\n\n\
         [providers.gem]\nkind = \"gemini\"\nbase_url = \"{root}\"\napi_key = \"AIza-list\"\n"
    ));
    let r = get(&gw.url("/v1/models"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for want in [
        "claude/claude-sonnet-4-20250514",
        "claude/claude-3-5-haiku-20241022",
        "gem/gemini-2.5-flash",
        "gem/gemini-2.5-pro",
    ] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    let owner = |id: &str| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["owned_by"].as_str().unwrap().to_owned())
    };
    assert_eq!(v["object"], "list");
    assert!(owner("gem/gemini-2.5-pro").is_some());

    let listings: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(listings.iter().any(|r| r.path.starts_with("/v1/models")
        && r.headers
            .iter()
            .any(|(k, v)| k == "x-api-key" && v == "sk-ant-list")));
    assert!(listings.iter().any(|r| r.path.starts_with("/v1beta/models")
        && r.headers
            .iter()
            .any(|(k, v)| k == "x-goog-api-key" && v == "AIza-list")));
    for r in &listings {
        assert!(
            !r.path.contains("AIza") && !r.path.contains("sk-ant"),
            "{}",
            r.path
        );
    }
}
