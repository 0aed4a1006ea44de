//! `bench-upstream`: a fast OpenAI-compatible mock for benchmarks.
//!
//! `POST /v1/chat/completions` answers, after `--latency-ms`, either a chat.completion
//! built once at start or — when the body contains `"stream":true` — a paced SSE
//! stream: the role chunk and the first content chunk at once, then one content chunk
//! every `--chunk-interval-ms` (on a fixed schedule, so timer lateness does not
//! accumulate) up to `--chunks`, the finish chunk, the usage chunk if the request asked
//! for `include_usage`, and `data: [DONE]`, each its own body frame. Requests are never
//! JSON-parsed. Prints `listening on http://127.0.0.1:PORT` once bound.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};

use modelway_bench::wire;
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "bench-upstream",
    about = "A fast OpenAI-compatible mock upstream"
)]
struct Cli {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Delay before every answer's head.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Content chunks per streamed answer.
    #[arg(long, default_value_t = 100)]
    chunks: u32,
    /// Pause between content chunks.
    #[arg(long, default_value_t = 5)]
    chunk_interval_ms: u64,
    /// The wire format spoken (only `openai` exists; the translation paths will add theirs).
    #[arg(long, default_value = "openai")]
    dialect: String,
    /// Exit when stdin closes (the orchestrator's lifeline).
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

struct Canned {
    latency: Duration,
    chunks: u32,
    interval: Duration,
    completion: Bytes,
    role: Bytes,
    finish: Bytes,
    usage: Bytes,
}

type Body = Either<Full<Bytes>, http_body_util::combinators::BoxBody<Bytes, Infallible>>;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.dialect != "openai" {
        anyhow::bail!(
            "--dialect {}: only `openai` is implemented (add the Anthropic and Gemini \
             dialects here when their providers exist)",
            cli.dialect
        );
    }
    if cli.exit_on_stdin_eof {
        modelway_bench::exit_when_stdin_closes();
    }
    let canned = Arc::new(Canned {
        latency: Duration::from_millis(cli.latency_ms),
        chunks: cli.chunks,
        interval: Duration::from_millis(cli.chunk_interval_ms),
        completion: wire::completion(),
        role: wire::role_chunk(),
        finish: wire::finish_chunk(),
        usage: wire::usage_chunk(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(cli.port, canned))
}

async fn serve(port: u16, canned: Arc<Canned>) -> anyhow::Result<()> {
    modelway_bench::serve_http1(port, move |req| handle(canned.clone(), req)).await?;
    Ok(())
}

async fn handle(canned: Arc<Canned>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::POST || req.uri().path() != "/v1/chat/completions" {
        let mut resp = Response::new(Either::Left(Full::new(Bytes::from_static(
            br#"{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}"#,
        ))));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return Ok(resp);
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if !canned.latency.is_zero() {
        tokio::time::sleep(canned.latency).await;
    }
    let stream = modelway_bench::contains(&body, br#""stream":true"#)
        || modelway_bench::contains(&body, br#""stream": true"#);
    if !stream {
        let mut resp = Response::new(Either::Left(Full::new(canned.completion.clone())));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(resp);
    }
    let usage = modelway_bench::contains(&body, br#""include_usage":true"#)
        || modelway_bench::contains(&body, br#""include_usage": true"#);
    let frames = paced_frames(canned, usage);
    let mut resp = Response::new(Either::Right(BodyExt::boxed(StreamBody::new(frames))));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    Ok(resp)
}

/// What the stream sends next.
enum Step {
    Role,
    Content(u32),
    Finish,
    Usage,
    Done,
    End,
}

fn paced_frames(
    canned: Arc<Canned>,
    usage: bool,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    let start = Instant::now();
    futures_util::stream::unfold(Step::Role, move |step| {
        let canned = canned.clone();
        async move {
            let (bytes, next) = match step {
                Step::Role => (canned.role.clone(), first_after_role(&canned)),
                Step::Content(i) => {
                    if i > 0 {
                        tokio::time::sleep_until(start + canned.interval * i).await;
                    }
                    let next = if i + 1 < canned.chunks {
                        Step::Content(i + 1)
                    } else {
                        Step::Finish
                    };
                    (wire::content_chunk(i), next)
                }
                Step::Finish => (
                    canned.finish.clone(),
                    if usage { Step::Usage } else { Step::Done },
                ),
                Step::Usage => (canned.usage.clone(), Step::Done),
                Step::Done => (Bytes::from_static(wire::DONE), Step::End),
                Step::End => return None,
            };
            Some((Ok(Frame::data(bytes)), next))
        }
    })
}

fn first_after_role(canned: &Canned) -> Step {
    if canned.chunks > 0 {
        Step::Content(0)
    } else {
        Step::Finish
    }
}
