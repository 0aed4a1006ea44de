//! The contract every provider keeps, as one suite a provider crate runs with its
//! factory, its config table and (for an HTTP provider) a [`MockUpstream`] and the
//! [`Wire`] of its upstream: [`assert_conforms`].
//!
//! | rule | what is checked |
//! |---|---|
//! | `json_answer` | a whole answer: one choice, role `assistant`, text, finish `stop`, usage that adds up |
//! | `stream_answer` | a stream: the first delta carries the role, text follows, one finish `stop`, usage on a chunk, nothing after the error-free end |
//! | `json_tool_call` | offered a forced tool: a call with an id, the tool's name and JSON arguments, finish `tool_calls` |
//! | `stream_tool_calls` | the same streamed: each call's first fragment has its id and name, its index never changes, indexes count from 0, the arguments join into JSON, finish `tool_calls` |
//! | `recorded_stream` | (HTTP) the wire's recorded text stream (a fixture) read through, finish `stop` |
//! | `recorded_tool_stream` | (HTTP) the wire's recorded tool-call stream: the same rules as `stream_tool_calls` |
//! | `error_classes` | (HTTP) 429, 500, 503 are retryable, 401 and 400 are not; 429 a rate limit, 401 an auth failure, 400 a bad request; the same before a stream starts |
//! | `retry_after` | (HTTP) a 429's `retry-after: 7` is carried as 7 s |
//! | `error_in_place_of_stream` | (HTTP) a 200 JSON error body answering a stream request is an error |
//! | `in_band_stream_error` | (HTTP) an error event after the first event ends the stream with an error, nothing after it |
//! | `cancellation` | (HTTP) dropping a stream, or an unfinished call, closes the upstream request (the mock sees it go) |
//! | `malformed_answers` | (HTTP) a table of broken whole answers (truncated, empty, not JSON, wrong shapes): each an error, no panic |
//! | `malformed_streams` | (HTTP) a table of broken streams cut from the recording (cut mid-event, before the end, a garbage event, bad UTF-8, a dropped connection, an empty body): each ends with an error, no panic |
//!
//! An in-process provider (no upstream, like `mock`) runs the first four rules only:
//! the others are about an upstream's bytes. Every wait is bounded ([`WAIT`]); a rule
//! that panics inside the provider is reported as that rule's failure.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use modelway_core::chat::{ChatChunk, ChatRequest, FinishReason, Role};
use modelway_core::engine::FailureClass;
use modelway_core::{
    Attempt, Call, ChunkStream, HttpClient, Provider, ProviderError, ProviderFactory, Timeouts,
};
use serde_json::{json, Value};

use crate::script::{Reply, SseStep, StreamEnd};
use crate::MockUpstream;

/// The longest any one wait of the suite takes.
pub const WAIT: Duration = Duration::from_secs(10);

/// How an upstream dialect spells what the suite scripts: recordings of good streams
/// (fixtures, to cut broken ones from), an in-band error event and an error body.
#[derive(Debug, Clone, Copy)]
pub struct Wire {
    /// The dialect's name, for messages.
    pub name: &'static str,
    /// A recorded streamed text answer ending in finish `stop`, as the upstream sends
    /// it: a path under [`fixtures_dir`](crate::fixtures_dir) (or an absolute path).
    pub text_stream: &'static str,
    /// A recorded streamed answer with tool calls, likewise.
    pub tool_stream: &'static str,
    /// Recorded whole answers (a text one, finish `stop`, with usage; one calling
    /// `get_weather`), as JSON files like the streams, for a dialect the mock does not
    /// speak: then every answer rule is served these recordings (and the streams above)
    /// instead of the mock's own echo model. `None` for the dialects the mock speaks,
    /// whose echo model answers what the provider actually sent.
    pub recorded_answers: Option<(&'static str, &'static str)>,
    /// One SSE event reporting an error inside a 200 stream, as sent.
    pub stream_error: &'static str,
    /// An error body of the dialect, for a status and message.
    pub error_body: fn(u16, &str) -> Value,
}

impl Wire {
    /// OpenAI's Chat Completions (and every OpenAI-compatible server).
    pub const OPENAI: Wire = Wire {
        name: "openai",
        text_stream: "openai/sdk-recordings/stream-text.sse",
        tool_stream: "openai/sdk-recordings/stream-parallel-tool-calls.sse",
        stream_error: "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"code\":500}}\n\n",
        error_body: openai_error,
        recorded_answers: None,
    };

    /// Anthropic's Messages API.
    pub const ANTHROPIC: Wire = Wire {
        name: "anthropic",
        text_stream: "anthropic/sdk-fixtures/basic_response.sse",
        tool_stream: "anthropic/sdk-fixtures/tool_use_response.sse",
        stream_error: "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        error_body: anthropic_error,
        recorded_answers: None,
    };

    /// The Gemini Developer API.
    pub const GEMINI: Wire = Wire {
        name: "gemini",
        text_stream: "gemini/firebase-test-data/googleai/streaming-success-basic-reply-short.txt",
        tool_stream: "gemini/firebase-test-data/googleai/streaming-success-thinking-function-call-thought-summary-signature.txt",
        stream_error: "data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\n\n",
        error_body: gemini_error,
        recorded_answers: None,
    };
}

fn openai_error(status: u16, message: &str) -> Value {
    crate::script::error_body(status, message, None)
}

fn anthropic_error(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_conformance"})
}

fn gemini_error(status: u16, message: &str) -> Value {
    let google = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    json!({"error": {"code": status, "message": message, "status": google}})
}

/// Where the provider's answers come from.
#[derive(Debug, Clone, Copy)]
pub enum Upstream<'a> {
    /// An HTTP upstream: `mock`, speaking `wire`. The provider's config must point at
    /// the mock (its `base_url`).
    Http {
        mock: &'a MockUpstream,
        wire: &'a Wire,
    },
    /// The provider answers in process (no upstream): only the answer rules run.
    InProcess,
}

/// The provider under test.
pub struct Subject<'a, F> {
    /// Its factory.
    pub factory: &'a F,
    /// Its config table, as in a config file (`kind`, `base_url`, `api_key`, options),
    /// without the `[providers.NAME]` header.
    pub table: &'a str,
    /// The upstream model every attempt names.
    pub model: &'a str,
}

/// Runs every rule against `subject` and panics listing each rule that failed, with
/// what it expected and what it got.
///
/// # Panics
/// When a rule fails (the point: it is called from a test), or the subject's table
/// does not build.
pub async fn assert_conforms<F: ProviderFactory>(subject: Subject<'_, F>, upstream: Upstream<'_>) {
    let failures = check(subject, upstream).await;
    if !failures.is_empty() {
        let mut msg = format!("{} conformance rule(s) failed:\n", failures.len());
        for (rule, why) in &failures {
            let _ = writeln!(msg, "- {rule}: {why}");
        }
        panic!("{msg}");
    }
}

/// Runs every rule and returns the failures (rule, why); empty: the subject conforms.
///
/// # Panics
/// If the subject's table does not build into a provider.
pub async fn check<F: ProviderFactory>(
    subject: Subject<'_, F>,
    upstream: Upstream<'_>,
) -> Vec<(&'static str, String)> {
    let provider = build(&subject);
    let recorded = match upstream {
        Upstream::Http { mock, wire } => wire.recorded_answers.map(|answers| Recorded {
            mock,
            wire,
            answers,
        }),
        Upstream::InProcess => None,
    };
    let s = Suite {
        provider,
        model: subject.model.to_owned(),
        recorded,
    };
    let mut failures = Vec::new();
    let mut rule = |name: &'static str, r: Result<(), String>| {
        if let Err(why) = r {
            failures.push((name, why));
        }
    };
    // Each rule starts from an empty queue: a reply one rule queued and its provider
    // never asked for must not answer the next rule.
    let fresh = || {
        if let Upstream::Http { mock, .. } = upstream {
            mock.reset();
        }
    };
    fresh();
    rule("json_answer", s.json_answer().await);
    fresh();
    rule("stream_answer", s.stream_answer().await);
    fresh();
    rule("json_tool_call", s.json_tool_call().await);
    fresh();
    rule("stream_tool_calls", s.stream_tool_calls().await);
    if let Upstream::Http { mock, wire } = upstream {
        let h = Http { s: &s, mock, wire };
        fresh();
        rule("recorded_stream", h.recorded_stream().await);
        fresh();
        rule("recorded_tool_stream", h.recorded_tool_stream().await);
        fresh();
        rule("error_classes", h.error_classes().await);
        fresh();
        rule("retry_after", h.retry_after().await);
        fresh();
        rule(
            "error_in_place_of_stream",
            h.error_in_place_of_stream().await,
        );
        fresh();
        rule("in_band_stream_error", h.in_band_stream_error().await);
        fresh();
        rule("cancellation", h.cancellation().await);
        fresh();
        rule("malformed_answers", h.malformed_answers().await);
        fresh();
        rule("malformed_streams", h.malformed_streams().await);
        fresh();
    }
    failures
}

/// Builds the subject as the gateway would: its table read as a `[providers.subject]`
/// table of a config file (`kind` defaulting to the factory's), then its options
/// checked against the factory's type and the factory called.
fn build<F: ProviderFactory>(subject: &Subject<'_, F>) -> Arc<dyn Provider> {
    let table: toml::Table = subject
        .table
        .parse()
        .unwrap_or_else(|e| panic!("the subject's table is not TOML: {e}\n{}", subject.table));
    let kind = if table.contains_key("kind") {
        String::new()
    } else {
        format!("kind = \"{}\"\n", subject.factory.kind())
    };
    let src = format!("[providers.subject]\n{kind}{}\n", subject.table);
    let config = modelway_core::Config::from_toml_str_with_env(&src, &|_| None)
        .unwrap_or_else(|e| panic!("the subject's table: {e}\n{}", subject.table));
    let cfg = &config.providers()["subject"];
    modelway_core::provider::build_provider(subject.factory, cfg, &HttpClient::new())
        .unwrap_or_else(|e| panic!("the subject does not build: {e}\n{}", subject.table))
}

struct Suite<'a> {
    provider: Arc<dyn Provider>,
    model: String,
    /// Serves the answer rules from recordings (a dialect the mock does not speak).
    recorded: Option<Recorded<'a>>,
}

struct Recorded<'a> {
    mock: &'a MockUpstream,
    wire: &'a Wire,
    answers: (&'static str, &'static str),
}

/// Which answer a rule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Text,
    Tool,
}

impl Recorded<'_> {
    /// Queues the recording for `asked`, as a whole answer or a stream.
    fn prime(&self, asked: Asked, stream: bool) -> Result<(), String> {
        let path = match (asked, stream) {
            (Asked::Text, false) => self.answers.0,
            (Asked::Tool, false) => self.answers.1,
            (Asked::Text, true) => self.wire.text_stream,
            (Asked::Tool, true) => self.wire.tool_stream,
        };
        if stream {
            self.mock.push(sse(recording(path)?, StreamEnd::Close));
        } else {
            let full = crate::fixtures_dir().join(path);
            let body = std::fs::read(&full)
                .map_err(|e| format!("cannot read the recording {}: {e}", full.display()))?;
            self.mock.push(Reply::Raw {
                status: 200,
                content_type: "application/json".into(),
                body: Bytes::from(body),
            });
        }
        Ok(())
    }
}

/// What a stream yielded.
#[derive(Debug, Default)]
struct Collected {
    chunks: Vec<ChatChunk>,
    error: Option<ProviderError>,
    after_error: usize,
}

fn text_request(stream: bool) -> ChatRequest {
    request(json!({
        "model": "conformance",
        "messages": [{"role": "user", "content": "Say hello to the conformance suite"}],
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
    }))
}

fn tool_request(stream: bool) -> ChatRequest {
    request(json!({
        "model": "conformance",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
    }))
}

fn request(mut v: Value) -> ChatRequest {
    if let Some(obj) = v.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
    }
    serde_json::from_value(v).unwrap_or_else(|e| panic!("the suite's request does not parse: {e}"))
}

impl Suite<'_> {
    /// Runs `f` on a task of its own, bounded by [`WAIT`]: a panic or a hang in the
    /// provider is the rule's failure, not the suite's.
    async fn isolated<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Provider>, String) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let task = tokio::spawn(f(Arc::clone(&self.provider), self.model.clone()));
        match tokio::time::timeout(WAIT + WAIT, task).await {
            Err(_) => Err(format!("no result within {:?}", WAIT + WAIT)),
            Ok(Err(e)) if e.is_panic() => Err(format!("the provider panicked: {e}")),
            Ok(Err(e)) => Err(format!("the provider's task failed: {e}")),
            Ok(Ok(v)) => Ok(v),
        }
    }

    async fn chat(
        &self,
        req: ChatRequest,
    ) -> Result<Result<modelway_core::chat::ChatResponse, ProviderError>, String> {
        self.isolated(move |p, model| async move {
            let call = Call::new(req);
            let attempt = Attempt::new(&call, &model, Timeouts::uniform(WAIT));
            match tokio::time::timeout(WAIT, p.chat(&attempt)).await {
                Err(_) => Err(ProviderError::Timeout(WAIT)),
                Ok(Err(e)) => Err(e),
                Ok(Ok(answer)) => answer.value.into_response().map_err(|e| {
                    ProviderError::Malformed(format!("the answer does not read back: {e}"))
                }),
            }
        })
        .await
    }

    async fn stream(&self, req: ChatRequest) -> Result<Result<Collected, ProviderError>, String> {
        self.isolated(move |p, model| async move {
            let call = Call::new(req);
            let attempt = Attempt::new(&call, &model, Timeouts::uniform(WAIT));
            let stream = match tokio::time::timeout(WAIT, p.chat_stream(&attempt)).await {
                Err(_) => return Err(ProviderError::Timeout(WAIT)),
                Ok(r) => r?.value,
            };
            Ok(collect(stream).await)
        })
        .await
    }

    /// Queues the recording a rule asks for, when the answers are recorded ones.
    fn prime(&self, asked: Asked, stream: bool) -> Result<(), String> {
        self.recorded
            .as_ref()
            .map_or(Ok(()), |r| r.prime(asked, stream))
    }

    async fn json_answer(&self) -> Result<(), String> {
        self.prime(Asked::Text, false)?;
        let r = self
            .chat(text_request(false))
            .await?
            .map_err(|e| format!("expected an answer, got {e}"))?;
        let [choice] = r.choices.as_slice() else {
            return Err(format!("expected one choice, got {}", r.choices.len()));
        };
        expect_eq("role", &choice.message.role, &Role::Assistant)?;
        let text = choice.message.content.as_deref().unwrap_or_default();
        if text.is_empty() {
            return Err(format!(
                "expected text content, got {:?}",
                choice.message.content
            ));
        }
        expect_eq(
            "finish_reason",
            &finish(choice.finish_reason.as_ref()),
            &Some("stop"),
        )?;
        let u = r.usage.ok_or("expected usage, got none")?;
        if u.completion_tokens == 0 || u.total_tokens != u.prompt_tokens + u.completion_tokens {
            return Err(format!(
                "expected usage that adds up with output tokens, got {u:?}"
            ));
        }
        Ok(())
    }

    async fn stream_answer(&self) -> Result<(), String> {
        self.prime(Asked::Text, true)?;
        let c = self
            .stream(text_request(true))
            .await?
            .map_err(|e| format!("expected a stream, got {e}"))?;
        check_text_stream(&c)?;
        if !c.chunks.iter().any(|c| c.usage.is_some()) {
            return Err(
                "expected usage on a chunk (stream_options.include_usage), got none".into(),
            );
        }
        Ok(())
    }

    async fn json_tool_call(&self) -> Result<(), String> {
        self.prime(Asked::Tool, false)?;
        let r = self
            .chat(tool_request(false))
            .await?
            .map_err(|e| format!("expected an answer, got {e}"))?;
        let choice = r.choices.first().ok_or("expected a choice, got none")?;
        let calls = choice.message.tool_calls.as_deref().unwrap_or_default();
        let call = calls.first().ok_or("expected a tool call, got none")?;
        if call.id.is_empty() {
            return Err("expected a tool call id, got an empty one".into());
        }
        expect_eq("tool name", &call.function.name.as_str(), &"get_weather")?;
        serde_json::from_str::<Value>(&call.function.arguments).map_err(|e| {
            format!(
                "expected JSON arguments, got {:?}: {e}",
                call.function.arguments
            )
        })?;
        expect_eq(
            "finish_reason",
            &finish(choice.finish_reason.as_ref()),
            &Some("tool_calls"),
        )
    }

    async fn stream_tool_calls(&self) -> Result<(), String> {
        self.prime(Asked::Tool, true)?;
        let c = self
            .stream(tool_request(true))
            .await?
            .map_err(|e| format!("expected a stream, got {e}"))?;
        check_tool_stream(&c, Some("get_weather"))
    }
}

fn finish(f: Option<&FinishReason>) -> Option<&str> {
    f.map(FinishReason::as_str)
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: &T, want: &T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("expected {what} {want:?}, got {got:?}"))
    }
}

async fn collect(mut stream: ChunkStream) -> Collected {
    let mut out = Collected::default();
    let drain = async {
        while let Some(item) = stream.next().await {
            match (item, out.error.is_some()) {
                (_, true) => out.after_error += 1,
                (Ok(c), false) => out.chunks.push(c),
                (Err(e), false) => out.error = Some(e),
            }
        }
    };
    if tokio::time::timeout(WAIT, drain).await.is_err() && out.error.is_none() {
        out.error = Some(ProviderError::Timeout(WAIT));
    }
    out
}

/// Role first, text, one finish `stop` that comes after all the text, no error.
fn check_text_stream(c: &Collected) -> Result<(), String> {
    if let Some(e) = &c.error {
        return Err(format!(
            "expected a clean stream, got the error {e} after {} chunks",
            c.chunks.len()
        ));
    }
    check_role_first(c)?;
    let text: String = deltas(c).filter_map(|d| d.1.content.as_deref()).collect();
    if text.is_empty() {
        return Err("expected text in the stream, got none".into());
    }
    let finishes = finishes(c);
    expect_eq("finish reasons", &finishes, &vec!["stop"])?;
    Ok(())
}

fn deltas(
    c: &Collected,
) -> impl Iterator<Item = (Option<&FinishReason>, &modelway_core::chat::Delta)> {
    c.chunks
        .iter()
        .flat_map(|ch| ch.choices.iter())
        .map(|choice| (choice.finish_reason.as_ref(), &choice.delta))
}

fn finishes(c: &Collected) -> Vec<&str> {
    deltas(c)
        .filter_map(|(f, _)| f.map(FinishReason::as_str))
        .collect()
}

fn check_role_first(c: &Collected) -> Result<(), String> {
    let first = c
        .chunks
        .iter()
        .flat_map(|ch| ch.choices.first())
        .next()
        .ok_or("expected chunks with choices, got none")?;
    expect_eq(
        "the first delta's role",
        &first.delta.role,
        &Some(Role::Assistant),
    )
}

/// Each call's first fragment has its id and name; its index never changes; indexes
/// count from 0; each call's arguments join into JSON; finish `tool_calls`.
fn check_tool_stream(c: &Collected, name: Option<&str>) -> Result<(), String> {
    if let Some(e) = &c.error {
        return Err(format!(
            "expected a clean stream, got the error {e} after {} chunks",
            c.chunks.len()
        ));
    }
    check_role_first(c)?;
    // (index, id, name, arguments), in order of first fragment.
    let mut calls: Vec<(u32, String, String, String)> = Vec::new();
    for (_, d) in deltas(c) {
        for t in d.tool_calls.iter().flatten() {
            let f = t.function.as_ref();
            match calls.iter_mut().find(|c| c.0 == t.index) {
                None => {
                    let id = t.id.clone().ok_or_else(|| {
                        format!(
                            "call {}: expected an id on its first fragment, got none",
                            t.index
                        )
                    })?;
                    let n = f.and_then(|f| f.name.clone()).ok_or_else(|| {
                        format!(
                            "call {}: expected a name on its first fragment, got none",
                            t.index
                        )
                    })?;
                    let a = f.and_then(|f| f.arguments.clone()).unwrap_or_default();
                    calls.push((t.index, id, n, a));
                }
                Some(call) => {
                    if let Some(id) = &t.id {
                        if *id != call.1 {
                            return Err(format!("call {}: a later fragment says id {id:?}, the first said {:?} (the index is not stable)", t.index, call.1));
                        }
                    }
                    if let Some(a) = f.and_then(|f| f.arguments.as_deref()) {
                        call.3.push_str(a);
                    }
                }
            }
        }
    }
    if calls.is_empty() {
        return Err("expected tool calls in the stream, got none".into());
    }
    let mut indexes: Vec<u32> = calls.iter().map(|c| c.0).collect();
    indexes.sort_unstable();
    let want: Vec<u32> = (0..u32::try_from(calls.len()).unwrap_or(u32::MAX)).collect();
    expect_eq("tool call indexes", &indexes, &want)?;
    for (i, id, n, args) in &calls {
        if let Some(name) = name {
            expect_eq(&format!("call {i}'s name"), &n.as_str(), &name)?;
        }
        if id.is_empty() {
            return Err(format!("call {i}: expected an id, got an empty one"));
        }
        let args = if args.is_empty() { "{}" } else { args.as_str() };
        serde_json::from_str::<Value>(args).map_err(|e| {
            format!("call {i}: expected its arguments to join into JSON, got {args:?}: {e}")
        })?;
    }
    expect_eq("finish reasons", &finishes(c), &vec!["tool_calls"])
}

struct Http<'a> {
    s: &'a Suite<'a>,
    mock: &'a MockUpstream,
    wire: &'a Wire,
}

/// A recording split into its events, each one body frame, as sent.
fn recording(path: &str) -> Result<Vec<Bytes>, String> {
    let full = crate::fixtures_dir().join(path);
    let bytes = std::fs::read(&full)
        .map_err(|e| format!("cannot read the recording {}: {e}", full.display()))?;
    Ok(crate::server::split_events(Bytes::from(bytes))
        .into_iter()
        .map(|s| s.data)
        .collect())
}

fn sse(frames: impl IntoIterator<Item = Bytes>, end: StreamEnd) -> Reply {
    Reply::Sse {
        events: frames
            .into_iter()
            .map(|data| SseStep {
                delay: Duration::ZERO,
                data,
            })
            .collect(),
        end,
    }
}

impl Http<'_> {
    async fn recorded_stream(&self) -> Result<(), String> {
        self.mock
            .push(sse(recording(self.wire.text_stream)?, StreamEnd::Close));
        let c = self
            .s
            .stream(text_request(true))
            .await?
            .map_err(|e| format!("expected a stream, got {e}"))?;
        check_text_stream(&c)
    }

    async fn recorded_tool_stream(&self) -> Result<(), String> {
        self.mock
            .push(sse(recording(self.wire.tool_stream)?, StreamEnd::Close));
        let c = self
            .s
            .stream(tool_request(true))
            .await?
            .map_err(|e| format!("expected a stream, got {e}"))?;
        check_tool_stream(&c, None)
    }

    fn error_reply(&self, status: u16) -> Reply {
        Reply::Json {
            status,
            body: (self.wire.error_body)(status, "scripted by the conformance suite"),
            headers: Vec::new(),
        }
    }

    async fn error_classes(&self) -> Result<(), String> {
        // (status, retryable, class)
        let rows = [
            (429, true, Some(FailureClass::RateLimited)),
            (500, true, None),
            (503, true, None),
            (401, false, Some(FailureClass::UpstreamAuth)),
            (400, false, Some(FailureClass::BadRequest)),
        ];
        let mut wrong = Vec::new();
        for (status, retryable, class) in rows {
            for stream in [false, true] {
                self.mock.reset();
                self.mock.push(self.error_reply(status));
                let e = if stream {
                    self.s.stream(text_request(true)).await?.err()
                } else {
                    self.s.chat(text_request(false)).await?.err()
                };
                let how = if stream { "stream" } else { "answer" };
                let Some(e) = e else {
                    wrong.push(format!("{how} {status}: expected an error, got an answer"));
                    continue;
                };
                if e.is_retryable() != retryable {
                    wrong.push(format!(
                        "{how} {status}: expected retryable={retryable}, got {} ({e})",
                        e.is_retryable()
                    ));
                }
                if let Some(class) = class {
                    if e.class() != class {
                        wrong.push(format!(
                            "{how} {status}: expected class {class:?}, got {:?} ({e})",
                            e.class()
                        ));
                    }
                }
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }

    async fn retry_after(&self) -> Result<(), String> {
        for stream in [false, true] {
            let Reply::Json { status, body, .. } = self.error_reply(429) else {
                return Err("the suite's error reply is not JSON".into());
            };
            self.mock.reset();
            self.mock.push(Reply::Json {
                status,
                body,
                headers: vec![("retry-after".into(), "7".into())],
            });
            let e = if stream {
                self.s.stream(text_request(true)).await?.err()
            } else {
                self.s.chat(text_request(false)).await?.err()
            };
            let e = e.ok_or("expected a 429 error, got an answer")?;
            expect_eq(
                "retry_after",
                &e.retry_after(),
                &Some(Duration::from_secs(7)),
            )?;
        }
        Ok(())
    }

    async fn error_in_place_of_stream(&self) -> Result<(), String> {
        self.mock.push(Reply::Json {
            status: 200,
            body: (self.wire.error_body)(500, "an error instead of a stream"),
            headers: Vec::new(),
        });
        match self.s.stream(text_request(true)).await? {
            Err(_) => Ok(()),
            Ok(c) if c.error.is_some() => Ok(()),
            Ok(c) => Err(format!(
                "expected an error, got a clean stream of {} chunks",
                c.chunks.len()
            )),
        }
    }

    async fn in_band_stream_error(&self) -> Result<(), String> {
        let frames = recording(self.wire.text_stream)?;
        let first = frames
            .first()
            .cloned()
            .ok_or("the recording has no events")?;
        let error = Bytes::from_static(self.wire.stream_error.as_bytes());
        self.mock.push(sse([first, error], StreamEnd::Close));
        let c = match self.s.stream(text_request(true)).await? {
            Err(_) => return Ok(()),
            Ok(c) => c,
        };
        if c.error.is_none() {
            return Err(format!(
                "expected the stream to end with an error, it ended clean after {} chunks",
                c.chunks.len()
            ));
        }
        expect_eq("items after the error", &c.after_error, &0)
    }

    async fn cancellation(&self) -> Result<(), String> {
        self.mock.reset();
        // A stream dropped after its first event.
        let frames = recording(self.wire.text_stream)?;
        let mut steps: Vec<SseStep> = frames
            .into_iter()
            .map(|data| SseStep {
                delay: Duration::ZERO,
                data,
            })
            .collect();
        if let Some(second) = steps.get_mut(1) {
            second.delay = Duration::from_secs(60);
        }
        self.mock.push(Reply::Sse {
            events: steps,
            end: StreamEnd::Close,
        });
        let opened = self
            .s
            .isolated(|p, model| async move {
                let call = Call::new(text_request(true));
                let attempt = Attempt::new(&call, &model, Timeouts::uniform(WAIT));
                let mut stream = p
                    .chat_stream(&attempt)
                    .await
                    .map_err(|e| e.to_string())?
                    .value;
                // The first event arrives; the rest would take a minute. Drop it.
                let _ = tokio::time::timeout(Duration::from_secs(2), stream.next()).await;
                drop(stream);
                Ok::<(), String>(())
            })
            .await?;
        opened.map_err(|e| format!("expected a stream, got {e}"))?;
        self.wait_cancelled(1, "a dropped stream").await?;
        // A whole answer abandoned before the upstream answered.
        self.mock.push(Reply::Hang);
        self.s
            .isolated(|p, model| async move {
                let call = Call::new(text_request(false));
                let attempt = Attempt::new(&call, &model, Timeouts::uniform(WAIT));
                let _ = tokio::time::timeout(Duration::from_millis(300), p.chat(&attempt)).await;
            })
            .await?;
        self.wait_cancelled(2, "an abandoned answer").await
    }

    async fn wait_cancelled(&self, n: usize, what: &str) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.mock.cancelled() < n {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("{what}: expected the upstream to see the request go within {WAIT:?}, it did not (cancelled = {})", self.mock.cancelled()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn malformed_answers(&self) -> Result<(), String> {
        let rows: [(&str, &[u8]); 8] = [
            (
                "truncated JSON",
                br#"{"id":"x","choices":[{"index":0,"message":{"role":"assi"#,
            ),
            ("an empty body", b""),
            ("null", b"null"),
            ("an array", b"[]"),
            ("a string", br#""hello""#),
            ("an HTML page", b"<html><body>502 Bad Gateway</body></html>"),
            ("bad UTF-8", b"{\"id\":\"\xff\xfe\"}"),
            (
                "wrong types",
                br#"{"choices":5,"candidates":"x","content":7,"usage":"many"}"#,
            ),
        ];
        let mut wrong = Vec::new();
        for (what, body) in rows {
            self.mock.reset();
            self.mock.push(Reply::Raw {
                status: 200,
                content_type: "application/json".into(),
                body: Bytes::from_static(body),
            });
            match self.s.chat(text_request(false)).await {
                Err(e) => wrong.push(format!("{what}: {e}")),
                Ok(Ok(r)) => wrong.push(format!("{what}: expected an error, got an answer {r:?}")),
                Ok(Err(_)) => {}
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }

    async fn malformed_streams(&self) -> Result<(), String> {
        let frames = recording(self.wire.text_stream)?;
        let n = frames.len();
        if n < 2 {
            return Err(format!(
                "the recording {} has fewer than two events",
                self.wire.text_stream
            ));
        }
        let first = frames[0].clone();
        let last = &frames[n - 1];
        let half = last.slice(..last.len() / 2);
        let mut cut_in_last: Vec<Bytes> = frames[..n - 1].to_vec();
        cut_in_last.push(half);
        let rows: Vec<(&str, Reply)> = vec![
            (
                "the body ends inside the last event",
                sse(cut_in_last, StreamEnd::Close),
            ),
            (
                "the body ends after the first event",
                sse([first.clone()], StreamEnd::Close),
            ),
            (
                "the connection drops after the first event",
                sse([first.clone()], StreamEnd::Drop),
            ),
            (
                "a garbage event",
                sse(
                    [
                        first.clone(),
                        Bytes::from_static(b"data: {not json at all\n\n"),
                    ],
                    StreamEnd::Close,
                ),
            ),
            (
                "bad UTF-8 in an event",
                sse(
                    [
                        first.clone(),
                        Bytes::from_static(b"data: {\"x\":\"\xff\xfe\"}\n\n"),
                    ],
                    StreamEnd::Close,
                ),
            ),
            ("an empty body", sse(Vec::<Bytes>::new(), StreamEnd::Close)),
            (
                "a body of blank lines",
                sse([Bytes::from_static(b"\n\n\n\n")], StreamEnd::Close),
            ),
        ];
        let mut wrong = Vec::new();
        for (what, reply) in rows {
            self.mock.reset();
            self.mock.push(reply);
            match self.s.stream(text_request(true)).await {
                Err(e) => wrong.push(format!("{what}: {e}")),
                Ok(Err(_)) => {}
                Ok(Ok(c)) if c.error.is_some() => {}
                Ok(Ok(c)) => wrong.push(format!("{what}: expected the stream to end with an error, it ended clean after {} chunks", c.chunks.len())),
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }
}
