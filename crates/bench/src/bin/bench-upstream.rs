//! `bench-upstream`: a fast mock LLM upstream for benchmarks, speaking OpenAI Chat
//! Completions, Anthropic Messages and Gemini generateContent.
//!
//! `POST /v1/chat/completions` answers, after `--latency-ms`, either a chat.completion
//! built once at start or — when the body contains `"stream":true` — a paced SSE
//! stream: the role chunk and the first content chunk at once, then one content chunk
//! every `--chunk-interval-ms` (on a fixed schedule, so timer lateness does not
//! accumulate) up to `--chunks`, the finish chunk, the usage chunk if the request asked
//! for `include_usage`, and `data: [DONE]`, each its own body frame. With
//! `--dialect anthropic` it also answers `POST /v1/messages` (a `message`, or the
//! `message_start` … `message_stop` events), with `--dialect gemini`
//! `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent` (one
//! `GenerateContentResponse` per content chunk); both carry the same text and stamps as
//! the OpenAI answers, so the client-side measurements are unchanged. The OpenAI
//! endpoint always answers: the `direct` and `floor` targets of the translation paths
//! use it. On the Messages passthrough path (`anthropic-messages`) all three targets
//! call `/v1/messages`, so the same `message` and events reach the client directly,
//! through the floor proxy and through the gateway. Requests are never JSON-parsed. `POST /v1/traces` accepts OTLP http/protobuf exports (the tracing-on
//! phase) without reading them. Prints `listening on http://127.0.0.1:PORT` once bound.

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
    /// The translated wire format spoken besides OpenAI's.
    #[arg(long, value_enum, default_value_t = Dialect::Openai)]
    dialect: Dialect,
    /// Exit when stdin closes (the orchestrator's lifeline).
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Dialect {
    Openai,
    Anthropic,
    Gemini,
}

struct Canned {
    dialect: Dialect,
    latency: Duration,
    chunks: u32,
    interval: Duration,
    completion: Bytes,
    anthropic_completion: Bytes,
    gemini_completion: Bytes,
    role: Bytes,
    finish: Bytes,
    usage: Bytes,
}

type Body = Either<Full<Bytes>, http_body_util::combinators::BoxBody<Bytes, Infallible>>;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.exit_on_stdin_eof {
        modelway_bench::exit_when_stdin_closes();
    }
    let canned = Arc::new(Canned {
        dialect: cli.dialect,
        latency: Duration::from_millis(cli.latency_ms),
        chunks: cli.chunks,
        interval: Duration::from_millis(cli.chunk_interval_ms),
        completion: wire::completion(),
        anthropic_completion: wire::anthropic::completion(),
        gemini_completion: wire::gemini::completion(),
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

/// Which answer a request asks for: its dialect, and whether it streams (Gemini says
/// so in the path, the others in the body).
fn route(canned: &Canned, path: &str) -> Option<(Dialect, Option<bool>)> {
    match (canned.dialect, path) {
        (_, "/v1/chat/completions") => Some((Dialect::Openai, None)),
        (Dialect::Anthropic, "/v1/messages") => Some((Dialect::Anthropic, None)),
        (Dialect::Gemini, p) if p.starts_with("/v1beta/models/") => {
            if p.ends_with(":streamGenerateContent") {
                Some((Dialect::Gemini, Some(true)))
            } else if p.ends_with(":generateContent") {
                Some((Dialect::Gemini, Some(false)))
            } else {
                None
            }
        }
        _ => None,
    }
}

async fn handle(canned: Arc<Canned>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.method() == Method::POST && req.uri().path() == "/v1/traces" {
        // An OTLP http/protobuf receiver for the tracing-on phase: read, accept (an
        // empty ExportTraceServiceResponse is zero bytes), never decode.
        let _ = req.into_body().collect().await;
        let mut resp = Response::new(Either::Left(Full::new(Bytes::new())));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-protobuf"),
        );
        return Ok(resp);
    }
    let route = match req.method() {
        &Method::POST => route(&canned, req.uri().path()),
        _ => None,
    };
    let Some((dialect, path_stream)) = route else {
        let mut resp = Response::new(Either::Left(Full::new(Bytes::from_static(
            br#"{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}"#,
        ))));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return Ok(resp);
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if !canned.latency.is_zero() {
        tokio::time::sleep(canned.latency).await;
    }
    let stream = path_stream.unwrap_or_else(|| {
        modelway_bench::contains(&body, br#""stream":true"#)
            || modelway_bench::contains(&body, br#""stream": true"#)
    });
    if !stream {
        let completion = match dialect {
            Dialect::Openai => canned.completion.clone(),
            Dialect::Anthropic => canned.anthropic_completion.clone(),
            Dialect::Gemini => canned.gemini_completion.clone(),
        };
        let mut resp = Response::new(Either::Left(Full::new(completion)));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(resp);
    }
    let usage = modelway_bench::contains(&body, br#""include_usage":true"#)
        || modelway_bench::contains(&body, br#""include_usage": true"#);
    let frames = paced_frames(canned, dialect, usage);
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

/// The frames of one paced stream. Anthropic has no usage chunk (its usage rides on
/// `message_start`/`message_delta`) and no `[DONE]`; Gemini has neither a role event nor
/// `[DONE]`: its stream ends at EOF.
fn paced_frames(
    canned: Arc<Canned>,
    dialect: Dialect,
    usage: bool,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    let start = Instant::now();
    let first = match dialect {
        Dialect::Gemini => first_after_role(&canned),
        _ => Step::Role,
    };
    futures_util::stream::unfold(first, move |step| {
        let canned = canned.clone();
        async move {
            let (bytes, next) = match step {
                Step::Role => (
                    match dialect {
                        Dialect::Anthropic => wire::anthropic::start(),
                        _ => canned.role.clone(),
                    },
                    first_after_role(&canned),
                ),
                Step::Content(i) => {
                    if i > 0 {
                        tokio::time::sleep_until(start + canned.interval * i).await;
                    }
                    let next = if i + 1 < canned.chunks {
                        Step::Content(i + 1)
                    } else {
                        Step::Finish
                    };
                    let chunk = match dialect {
                        Dialect::Openai => wire::content_chunk(i),
                        Dialect::Anthropic => wire::anthropic::content_chunk(i),
                        Dialect::Gemini => wire::gemini::content_chunk(i),
                    };
                    (chunk, next)
                }
                Step::Finish => match dialect {
                    Dialect::Openai => (
                        canned.finish.clone(),
                        if usage { Step::Usage } else { Step::Done },
                    ),
                    Dialect::Anthropic => (wire::anthropic::finish(canned.chunks), Step::End),
                    Dialect::Gemini => (wire::gemini::finish(canned.chunks), Step::End),
                },
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
