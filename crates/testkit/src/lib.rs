//! modelway-testkit: a mock OpenAI-compatible upstream served over real HTTP
//! (HTTP/1.1 and h2c on one port), for modelway's tests. By default it is an echo model
//! whose JSON and SSE answers have the shapes of the real recordings in
//! `shared/fixtures/openai` (chat completions), of the OpenAI spec's Responses API
//! (`POST /v1/responses`, `responses.rs`), of Anthropic's Messages and of Gemini (and a
//! deterministic embedding model behind OpenAI's `/v1/embeddings` and Gemini's
//! `:batchEmbedContents`, see [`embed`]); a test queues scripted [`Reply`]s (errors,
//! malformed bodies, hand-written or recorded streams, hangs, dropped connections) and
//! inspects every request the gateway sent. The same server is the binary
//! `modelway-mock-upstream`, driven over its `/__mock/*` control API by black-box tests.
//!
//! Invariants: this crate depends on `modelway-core` only (for the SSE codec; its
//! base64 vectors are its own, so the gateway's encoding is checked against another
//! implementation); no production crate may depend on it. Start reading at
//! [`MockUpstream`], then [`Reply`]; the default answers are in `openai.rs` (chat),
//! `responses.rs` (Responses) and `embed.rs` (embeddings), the HTTP side in `server.rs`.
//! [`RedisServer`] runs a real `redis-server` for the shared limit store's tests, and
//! [`PostgresServer`] a real PostgreSQL for the shared usage ledger's.
//!
//! # Control API (binary and library alike)
//! - `POST /__mock/script` with `{"replies": [..]}` appends replies, each one of
//!   `{"status":500,"body":{..},"headers":{"retry-after":"1"}}` ([`Reply::Json`]),
//!   `{"raw":"text","status":200,"content_type":"application/json"}` ([`Reply::Raw`]),
//!   `{"fixture":"openai/sdk-recordings/stream-tool-call.sse"}` ([`Reply::Fixture`]),
//!   `{"sse":[{"data":{..}|"raw string","delay_ms":10}],"end":"done"|"close"|"drop"}`
//!   ([`Reply::Sse`]; a JSON `data` becomes `data: <json>\n\n`, a string is sent as is),
//!   `{"hang":true}`, `{"drop":true}`. Answers `{"queued":N,"pending":M}`, or 400.
//! - `GET /__mock/requests`: the recorded requests as
//!   `[{method, path, headers: {name: value}, body: <JSON, or the text>}]`.
//! - `GET /__mock/stats`: `{"cancelled":N,"requests":N,"pending":N}`.
//! - `POST /__mock/reset`: clears the queue, the records and the counters.
//!
//! Control requests are never recorded.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use modelway_testkit::{MockUpstream, Reply};
//! let mock = MockUpstream::start().await;
//! mock.push(Reply::error(429, "slow down").with_header("retry-after", "1"));
//! assert!(mock.base_url().ends_with("/v1"));
//! # }
//! ```
#![forbid(unsafe_code)]

mod anthropic;
pub mod conformance;
pub mod embed;
mod gemini;
mod openai;
pub mod postgres;
pub mod redis;
mod responses;
mod schema;
mod script;
mod server;
mod service;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use postgres::PostgresServer;
pub use redis::RedisServer;
pub use script::{Reply, SseStep, StreamEnd};

/// The fixtures directory (`shared/fixtures` of the repository), or `$MODELWAY_FIXTURES`
/// when that is set and non-empty.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("MODELWAY_FIXTURES") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures"
        )),
    }
}

/// Every file under `fixtures_dir()/subdir`, at any depth, with its text (empty for a
/// file that is not UTF-8). Panics when the directory is missing: a test over the
/// recordings must not pass by reading none.
pub fn fixture_files(subdir: &str) -> Vec<(PathBuf, String)> {
    let root = fixtures_dir().join(subdir);
    let mut stack = vec![root.clone()];
    let mut out = Vec::new();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path)
                .unwrap_or_else(|e| panic!("fixtures {}: {e}", path.display()));
            stack.extend(entries.flatten().map(|e| e.path()));
        } else if path.is_file() {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.push((path, text));
        }
    }
    assert!(!out.is_empty(), "no fixtures under {}", root.display());
    out
}

/// A running mock upstream. Dropping it stops the server and closes every connection.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    task: JoinHandle<()>,
}

impl MockUpstream {
    /// Starts a server on `127.0.0.1:0` on the current tokio runtime.
    ///
    /// # Panics
    /// If no loopback port can be bound (a broken test environment).
    pub async fn start() -> MockUpstream {
        Self::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("binding 127.0.0.1:0 for the mock upstream")
    }

    /// Starts a server on `addr` (the binary's `--port`).
    ///
    /// # Errors
    /// If `addr` cannot be bound.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<MockUpstream> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(server::Shared::default());
        let task = tokio::spawn(server::serve(listener, Arc::clone(&shared)));
        Ok(MockUpstream { addr, shared, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, what a provider's `base_url` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues a reply for a later model request (`POST /v1/chat/completions`, and
    /// likewise `/v1/responses`, `/v1/messages`, `/v1/embeddings` and Gemini's
    /// `models/…:method`, which share the queue, and any other `POST` route while
    /// replies are queued: a dialect the mock does not speak is served its script);
    /// replies are used in the order pushed, and once the queue is empty the default
    /// models answer.
    pub fn push(&self, reply: Reply) {
        self.shared.push(reply);
    }

    /// Every request received so far (all paths except `/__mock/*`), in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Waits until at least `n` requests were received or `timeout` passed, and returns
    /// what was received (check its length: fewer than `n` means the wait timed out).
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.recorded.notified();
            tokio::pin!(notified);
            // Register before looking, so a request recorded in between still wakes us.
            notified.as_mut().enable();
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.requests();
            }
        }
    }

    /// How many chat replies were abandoned because the client went away before the
    /// reply finished: a [`Reply::Hang`], or a stream whose body was dropped before its
    /// end. Counted when hyper notices, so poll it with a bounded wait.
    pub fn cancelled(&self) -> usize {
        self.shared.cancelled()
    }

    /// Clears the queue, the recorded requests and the counters. Replies still in flight
    /// are not counted as cancelled afterwards.
    pub fn reset(&self) {
        self.shared.reset();
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

impl std::fmt::Debug for MockUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockUpstream")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// One request the mock received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The path with its query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// In arrival order, names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, or `Null` if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}
