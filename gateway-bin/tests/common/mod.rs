//! Harness for end-to-end tests: start the real `modelway` binary on 127.0.0.1:0 with
//! a config file in a temp dir, and talk to it over real HTTP. Every wait is bounded.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

pub struct Gw {
    child: Option<Child>,
    pub addr: String,
    pub dir: PathBuf,
    pub config: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("modelway-e2e-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Gw {
    /// Starts the gateway with this config text.
    pub fn start(config: &str) -> Gw {
        Self::start_with(config, &[])
    }

    pub fn start_with(config: &str, args: &[&str]) -> Gw {
        let dir = temp_dir("gw");
        let path = dir.join("modelway.toml");
        std::fs::write(&path, config).unwrap();
        Self::spawn(dir, path, args)
    }

    pub fn spawn(dir: PathBuf, config: PathBuf, args: &[&str]) -> Gw {
        Self::spawn_opts(dir, config, args, &[], None)
    }

    /// Starts the gateway with extra environment variables (`RUST_LOG` among them
    /// overrides the default `warn`), its stderr written to `stderr` when given.
    pub fn start_env(config: &str, envs: &[(&str, &str)], stderr: Option<&Path>) -> Gw {
        let dir = temp_dir("gw");
        let path = dir.join("modelway.toml");
        std::fs::write(&path, config).unwrap();
        Self::spawn_opts(dir, path, &[], envs, stderr)
    }

    pub fn spawn_opts(
        dir: PathBuf,
        config: PathBuf,
        args: &[&str],
        envs: &[(&str, &str)],
        stderr: Option<&Path>,
    ) -> Gw {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_modelway"));
        cmd.arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped());
        match stderr {
            Some(p) => cmd.stderr(std::fs::File::create(p).unwrap()),
            None => cmd.stderr(Stdio::inherit()),
        };
        let mut child = cmd.spawn().expect("spawn modelway");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("modelway printed its address within 20 s");
        let addr = line
            .trim()
            .strip_prefix("modelway listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Gw {
            child: Some(child),
            addr,
            dir,
            config,
        }
    }

    /// The process id (for reading its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a signal (e.g. "TERM", "HUP") to the process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let start = Instant::now();
        while start.elapsed() < bound {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Rewrites the config file in place.
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    /// Writes a temp file beside the config and renames it over the config.
    pub fn rename_config(&self, text: &str) {
        let tmp = self.dir.join(".modelway.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn send(req: http::Request<Full<Bytes>>) -> Resp {
    let resp = tokio::time::timeout(Duration::from_secs(30), async {
        let resp = client().request(req).await.expect("request sent");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body read").to_bytes();
        Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    })
    .await
    .expect("response within 30 s");
    resp
}

pub async fn post(url: &str, body: impl Into<Bytes>) -> Resp {
    post_with(url, body, &[]).await
}

pub async fn post_with(url: &str, body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Resp {
    let mut b = http::Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(body.into())).unwrap()).await
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = http::Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(Bytes::new())).unwrap()).await
}

/// A minimal chat request body.
pub fn chat(model: &str, text: &str) -> String {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]}).to_string()
}

pub fn chat_stream(model: &str, text: &str) -> String {
    serde_json::json!({"model": model, "stream": true, "messages": [{"role": "user", "content": text}]}).to_string()
}

/// The `data:` payloads of an SSE body.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    modelway_core::sse::SseDecoder::decode_all(body)
        .into_iter()
        .map(|e| e.data.to_string())
        .collect()
}

/// Concatenated `delta.content` of an SSE chat stream.
pub fn stream_text(body: &[u8]) -> String {
    sse_data(body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .flat_map(|v| v["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

/// Polls `f` every 50 ms until it returns true or `bound` passes.
pub async fn eventually<F, Fut>(bound: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < bound {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Sends `req` on `client` (so keep-alive connections are reused) and reads the whole
/// body, all within `bound`. `Err` says what went wrong instead of panicking: a transport
/// error, or the bound passing (a hang).
pub async fn try_send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
    bound: Duration,
) -> Result<Resp, String> {
    let fut = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("request failed: {e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body read failed after HTTP {}: {e:?}", parts.status))?
            .to_bytes();
        Ok(Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    match tokio::time::timeout(bound, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no complete response within {bound:?}")),
    }
}

/// A JSON POST request, for [`try_send`].
pub fn post_request(url: &str, body: impl Into<Bytes>) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}
