//! The benchmark harness behind `cargo xtask bench`.
//!
//! Four binaries, all hyper 1.x on tokio:
//! - `bench-upstream`: a fast mock (OpenAI-compatible, and Anthropic or Gemini with
//!   `--dialect`) whose answers are bytes built once at start (no JSON parse per
//!   request), optionally delayed and, for `"stream":true`, paced SSE streams;
//! - `floor-proxy`: the minimal hyper pass-through every gateway is measured against;
//! - `loadgen`: our own driver, speaking OpenAI chat or Anthropic Messages
//!   ([`wire::ClientDialect`]) — closed-loop latency and max-throughput modes, an
//!   open-loop fixed-rate mode (latency measured from the *scheduled* send time, so a
//!   stall cannot hide behind coordinated omission) and a streaming mode;
//! - `bench-run`: the orchestrator `cargo xtask bench` calls: starts the processes
//!   (pinned with `taskset` when it can), drives every phase under a hard time bound,
//!   reads CPU time and RSS from `/proc`, repeats, and writes the table and JSON.
//!
//! The library holds what more than one binary needs.

pub mod load;
pub mod procfs;
pub mod run;
pub mod sse;
pub mod stats;
pub mod wire;

use std::io::Read;
use std::time::Duration;

/// The line every server binary prints on stdout once bound (the gateway prints
/// `modelway listening on http://…`, which contains it).
pub const LISTENING: &str = "listening on http://";

/// Prints the `listening on` line and flushes it.
pub fn announce(addr: std::net::SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{LISTENING}{addr}");
    let _ = out.flush();
}

/// Binds 127.0.0.1:`port`, announces the address and serves HTTP/1.1 with `handle` on
/// every accepted connection (`TCP_NODELAY`), until the process ends. The one accept
/// loop of the benchmark's servers, so the mock and the floor proxy differ only in
/// their handler.
pub async fn serve_http1<F, Fut, B>(port: u16, handle: F) -> std::io::Result<()>
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<http::Response<B>, std::convert::Infallible>>
        + Send
        + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    announce(listener.local_addr()?);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(handle);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// Exits the process when stdin reaches end of file: the orchestrator keeps a pipe to
/// each server it starts, so a server outlives it by no more than a moment even if the
/// orchestrator is killed without a chance to clean up.
pub fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = stdin.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
}

/// Ends the process after `limit` whatever it is doing: every binary's hard bound.
pub fn watchdog(what: &'static str, limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("{what}: hard time limit of {limit:?} reached; exiting");
        std::process::exit(3);
    });
}

/// Whether `needle` occurs in `hay` (a plain byte search; the bodies are small).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_search() {
        assert!(contains(br#"{"a":1,"stream":true}"#, br#""stream":true"#));
        assert!(!contains(br#"{"stream":false}"#, br#""stream":true"#));
        assert!(!contains(b"", b"x"));
        assert!(!contains(b"abc", b""));
    }
}
