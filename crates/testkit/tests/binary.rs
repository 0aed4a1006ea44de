//! Runs the `modelway-mock-upstream` binary the way a black-box test in another
//! language does: start it, read the address it prints, script it over `/__mock/*`.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(10);

async fn call(
    c: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    body: &Value,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, c.request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    (
        status,
        serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn binary_prints_its_address_and_obeys_the_control_api() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelway-mock-upstream"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let base = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let c = Client::builder(TokioExecutor::new()).build_http();
    let script = json!({"replies": [{"status": 500, "body": {"error": {"message": "boom"}}}]});
    assert_eq!(
        call(&c, Method::POST, &format!("{base}/__mock/script"), &script)
            .await
            .0,
        200
    );
    let req = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let url = format!("{base}/v1/chat/completions");
    assert_eq!(call(&c, Method::POST, &url, &req).await.0, 500);
    let (status, answer) = call(&c, Method::POST, &url, &req).await;
    assert_eq!(
        (status, &answer["choices"][0]["message"]["content"]),
        (200, &json!("Echo: hi"))
    );
    let (_, recorded) = call(
        &c,
        Method::GET,
        &format!("{base}/__mock/requests"),
        &Value::Null,
    )
    .await;
    assert_eq!(recorded.as_array().map(Vec::len), Some(2), "{recorded}");
    let (_, stats) = call(
        &c,
        Method::GET,
        &format!("{base}/__mock/stats"),
        &Value::Null,
    )
    .await;
    assert_eq!(stats["cancelled"], 0);

    child.start_kill().unwrap();
    tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
}
