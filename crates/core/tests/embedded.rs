//! An embedder's view: a service registers its own provider and calls
//! `Gateway::execute` in-process. It gets the same engine as the binary: fallback,
//! retries, health, the stream commit point, observers, the OpenRouter fields.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use modelway_core::chat::{
    ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Completion, Delta, Message,
    ResponseMessage, Role,
};
use modelway_core::embed::{
    EmbedInput, EmbedRequest, EmbedResponse, Embeddings, EncodingFormat, Vector,
};
use modelway_core::engine::{AttemptEnd, AttemptInfo, AttemptResult, SeededRandom, StreamEnd};
use modelway_core::provider::NoOptions;
use modelway_core::{
    Answer, Attempt, BuildError, Call, CallMeta, ChunkStream, ClientDialect, Config, Gateway,
    HttpClient, Observer, Provider, ProviderConfig, ProviderError, ProviderFactory,
    ProviderRegistry,
};

/// What a scripted provider does on one call.
#[derive(Clone, Copy, Debug)]
enum Step {
    Answer,
    /// Answer after this many milliseconds.
    Slow(u64),
    Fail(u16),
    /// A stream whose first event is an error (an error inside a 200).
    StreamErrorFirst,
}

/// A provider named by its config table, scripted per name through a shared board.
#[derive(Default)]
struct Board {
    scripts: Mutex<std::collections::HashMap<String, VecDeque<Step>>>,
    /// (provider, upstream model) of every call.
    calls: Mutex<Vec<(String, String)>>,
}

impl Board {
    fn push(&self, provider: &str, steps: &[Step]) {
        self.scripts
            .lock()
            .unwrap()
            .entry(provider.to_owned())
            .or_default()
            .extend(steps.iter().cloned());
    }
    fn next(&self, provider: &str) -> Step {
        self.scripts
            .lock()
            .unwrap()
            .get_mut(provider)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Step::Answer)
    }
    fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(p, m)| format!("{p}/{m}"))
            .collect()
    }
}

struct Scripted {
    name: String,
    board: Arc<Board>,
    /// Takes a Responses client's body as sent (kind `scripted-native`).
    native: bool,
}

fn text_chunk(text: &str, role: bool) -> ChatChunk {
    let mut c = ChatChunk::new("chatcmpl-1", 1, "m");
    c.choices.push(ChunkChoice::new(
        0,
        Delta {
            role: role.then_some(Role::Assistant),
            content: Some(text.into()),
            ..Delta::default()
        },
    ));
    c
}

impl Scripted {
    /// Records the call, takes this provider's next step and waits out a `Slow` one.
    async fn step(&self, attempt: &Attempt<'_>) -> Step {
        self.board
            .calls
            .lock()
            .unwrap()
            .push((self.name.clone(), attempt.model().to_owned()));
        let step = self.board.next(&self.name);
        if let Step::Slow(ms) = step {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        step
    }
}

#[async_trait]
impl Provider for Scripted {
    async fn chat(&self, attempt: &Attempt<'_>) -> Result<Answer<Completion>, ProviderError> {
        let step = self.step(attempt).await;
        match step {
            Step::Fail(status) => Err(ProviderError::Status {
                status,
                body: bytes::Bytes::from_static(b"{\"error\":{\"message\":\"scripted\"}}"),
                retry_after: None,
            }),
            _ => Ok(Answer::from(ChatResponse {
                id: "chatcmpl-1".into(),
                object: "chat.completion".into(),
                created: 1,
                model: attempt.model().to_owned(),
                choices: vec![Choice {
                    index: 0,
                    message: ResponseMessage::text(format!("from {}", self.name)),
                    logprobs: None,
                    finish_reason: None,
                    extra: Default::default(),
                }],
                usage: None,
                extra: Default::default(),
            })),
        }
    }

    async fn chat_stream(
        &self,
        attempt: &Attempt<'_>,
    ) -> Result<Answer<ChunkStream>, ProviderError> {
        let step = self.step(attempt).await;
        let items: Vec<Result<ChatChunk, ProviderError>> = match step {
            Step::Fail(status) => {
                return Err(ProviderError::Status {
                    status,
                    body: bytes::Bytes::new(),
                    retry_after: None,
                })
            }
            Step::StreamErrorFirst => vec![
                Ok(text_chunk("", true)),
                Err(ProviderError::Malformed("overloaded_error".into())),
            ],
            Step::Answer | Step::Slow(_) => vec![
                Ok(text_chunk("", true)),
                Ok(text_chunk(&format!("from {}", self.name), false)),
            ],
        };
        Ok(Answer::new(Box::pin(futures_util::stream::iter(items))))
    }

    fn forwards_natively(&self, dialect: ClientDialect) -> bool {
        self.native && dialect == ClientDialect::Responses
    }
}

struct ScriptedFactory(Arc<Board>);

impl ProviderFactory for ScriptedFactory {
    type Options = NoOptions;
    fn kind(&self) -> &str {
        "scripted"
    }
    fn build(
        &self,
        cfg: &ProviderConfig,
        _: NoOptions,
        _: &HttpClient,
    ) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(Scripted {
            name: cfg.name.clone(),
            board: self.0.clone(),
            native: false,
        }))
    }
}

/// Scripted providers that take a Responses client's body as sent.
struct NativeFactory(Arc<Board>);

impl ProviderFactory for NativeFactory {
    type Options = NoOptions;
    fn kind(&self) -> &str {
        "scripted-native"
    }
    fn build(
        &self,
        cfg: &ProviderConfig,
        _: NoOptions,
        _: &HttpClient,
    ) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(Scripted {
            name: cfg.name.clone(),
            board: self.0.clone(),
            native: true,
        }))
    }
}

#[derive(Default)]
struct Counting {
    started: AtomicU32,
    answered: AtomicU32,
    failed: AtomicU32,
    streams: AtomicU32,
    hedge_losers: AtomicU32,
}

impl Observer for Counting {
    fn attempt_started(&self, _: &AttemptInfo<'_>) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }
    fn attempt_ended(&self, _: &AttemptInfo<'_>, end: &AttemptEnd<'_>) {
        match end.result {
            AttemptResult::Answered => self.answered.fetch_add(1, Ordering::SeqCst),
            AttemptResult::Failed(_) => self.failed.fetch_add(1, Ordering::SeqCst),
            AttemptResult::Cancelled { hedge_loser } => {
                assert!(hedge_loser, "only hedges are cancelled in these tests");
                self.hedge_losers.fetch_add(1, Ordering::SeqCst)
            }
        };
    }
    fn stream_ended(&self, _: &AttemptInfo<'_>, _: &StreamEnd<'_>) {
        self.streams.fetch_add(1, Ordering::SeqCst);
    }
}

const CONFIG: &str = r#"
[providers.a]
kind = "scripted"
[providers.b]
kind = "scripted"
[providers.c]
kind = "scripted"

[routing]
retries = 1
backoff = { base = "1ms", max = "2ms" }
health = { failures = 3, cooldown = "1h" }

[[routes]]
name = "r"
targets = ["a/m1", "b/m2"]
"#;

fn gateway(board: &Arc<Board>) -> (Gateway, Arc<Counting>) {
    gateway_with(board, CONFIG)
}

fn gateway_with(board: &Arc<Board>, config: &str) -> (Gateway, Arc<Counting>) {
    let mut reg = ProviderRegistry::new();
    reg.register(ScriptedFactory(board.clone()));
    reg.register(NativeFactory(board.clone()));
    let cfg = Config::from_toml_str_with_env(config, &|_| None).unwrap();
    let counting = Arc::new(Counting::default());
    let gw = Gateway::new(cfg, reg)
        .unwrap()
        .with_observer(counting.clone())
        .with_random(Arc::new(SeededRandom::new(1)));
    (gw, counting)
}

fn ask(model: &str) -> Call {
    Call::new(ChatRequest::new(
        model,
        vec![Message::text(Role::User, "hi")],
    ))
}

fn answer_text(c: Completion) -> String {
    c.into_response().unwrap().choices[0]
        .message
        .content
        .clone()
        .unwrap_or_default()
}

#[tokio::test]
async fn an_embedder_sees_the_same_fallback_as_the_binary() {
    let board = Arc::new(Board::default());
    let (gw, counting) = gateway(&board);
    board.push("a", &[Step::Fail(500), Step::Fail(503)]);
    let served = gw.execute(ask("r")).await.unwrap();
    assert_eq!(answer_text(served.value), "from b");
    assert_eq!((served.provider.as_str(), served.attempts), ("b", 3));
    assert_eq!(
        board.calls(),
        vec!["a/m1", "a/m1", "b/m2"],
        "one retry of a, then b"
    );
    assert_eq!(counting.started.load(Ordering::SeqCst), 3);
    assert_eq!(counting.failed.load(Ordering::SeqCst), 2);
    assert_eq!(counting.answered.load(Ordering::SeqCst), 1);

    // A 400 is the request's fault: no retry, no fallback.
    board.push("a", &[Step::Fail(400)]);
    let err = gw.execute(ask("r")).await.unwrap_err();
    assert_eq!((err.status, err.attempts), (400, 1));
    // A 401 is the provider key's fault: no retry, but fallback.
    board.push("a", &[Step::Fail(401)]);
    let served = gw.execute(ask("r")).await.unwrap();
    assert_eq!((served.provider.as_str(), served.attempts), ("b", 2));
}

#[tokio::test]
async fn an_error_inside_a_stream_before_its_content_falls_back_invisibly() {
    let board = Arc::new(Board::default());
    let (gw, counting) = gateway(&board);
    board.push("a", &[Step::StreamErrorFirst, Step::StreamErrorFirst]);
    let mut call = ask("r");
    call.request_mut().stream = Some(true);
    let served = gw.execute_stream(call).await.unwrap();
    assert_eq!(served.provider, "b");
    let chunks: Vec<ChatChunk> = served.value.map(|c| c.unwrap()).collect().await;
    let text: String = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(text, "from b");
    let roles = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter(|c| c.delta.role.is_some())
        .count();
    assert_eq!(
        roles, 1,
        "one role chunk: nothing of a's stream reached the client"
    );
    assert_eq!(counting.streams.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failing_target_is_ejected_and_skipped() {
    let board = Arc::new(Board::default());
    let (gw, _) = gateway(&board);
    board.push("a", &[Step::Fail(500); 4]);
    // Two calls: a fails twice, then once more (3 = health.failures): ejected.
    for _ in 0..2 {
        assert_eq!(gw.execute(ask("r")).await.unwrap().provider, "b");
    }
    let before = board.calls().len();
    let served = gw.execute(ask("r")).await.unwrap();
    assert_eq!((served.provider.as_str(), served.attempts), ("b", 1));
    assert_eq!(&board.calls()[before..], ["b/m2"], "a was skipped");
    let report = gw.health().report();
    let a = report.iter().find(|r| r.provider == "a").unwrap();
    assert_eq!(a.state, "ejected");
    // A reload that leaves `a` unchanged keeps its health.
    let src = format!("{CONFIG}\n[[routes]]\nname = \"other\"\ntargets = [\"c/x\"]\n");
    gw.reload(Config::from_toml_str_with_env(&src, &|_| None).unwrap())
        .unwrap();
    let report = gw.health().report();
    assert_eq!(
        report.iter().find(|r| r.provider == "a").unwrap().state,
        "ejected"
    );
    // One that changes `a` forgets it.
    let src = CONFIG.replace(
        "[providers.a]\nkind = \"scripted\"",
        "[providers.a]\nkind = \"scripted\"\nheaders = { x = \"1\" }",
    );
    gw.reload(Config::from_toml_str_with_env(&src, &|_| None).unwrap())
        .unwrap();
    let report = gw.health().report();
    let a: Vec<_> = report.iter().filter(|r| r.provider == "a").collect();
    assert_eq!(a.len(), 1, "{report:?}");
    assert_eq!((a[0].state, a[0].consecutive_failures), ("healthy", 0));
    let served = gw.execute(ask("r")).await.unwrap();
    assert_eq!(served.provider, "a", "the changed provider is tried again");
}

#[tokio::test]
async fn openrouter_fields_shape_the_plan() {
    let board = Arc::new(Board::default());
    let (gw, _) = gateway(&board);
    let with = |extra: serde_json::Value| {
        let mut call = ask("r");
        for (k, v) in extra.as_object().unwrap() {
            call.request_mut().extra.insert(k.clone(), v.clone());
        }
        call
    };
    // `models` appends fallbacks.
    board.push("a", &[Step::Fail(500), Step::Fail(500)]);
    board.push("b", &[Step::Fail(500), Step::Fail(500)]);
    let served = gw
        .execute(with(serde_json::json!({"models": ["c/extra"]})))
        .await
        .unwrap();
    assert_eq!(
        (served.provider.as_str(), served.model.as_str()),
        ("c", "extra")
    );
    // `provider.order` puts b first; `only` keeps a; `ignore` drops a.
    for (extra, want) in [
        (serde_json::json!({"provider": {"order": ["b"]}}), "b"),
        (serde_json::json!({"provider": {"only": ["a"]}}), "a"),
        (serde_json::json!({"provider": {"ignore": ["a"]}}), "b"),
    ] {
        let served = gw.execute(with(extra.clone())).await.unwrap();
        assert_eq!(served.provider, want, "{extra}");
    }
    // `allow_fallbacks: false` keeps to the first target.
    board.push("a", &[Step::Fail(500), Step::Fail(500)]);
    let err = gw
        .execute(with(
            serde_json::json!({"provider": {"allow_fallbacks": false}}),
        ))
        .await
        .unwrap_err();
    assert_eq!((err.status, err.attempts), (502, 2));
    // Filters that leave nothing are a 400.
    let err = gw
        .execute(with(serde_json::json!({"provider": {"only": ["nobody"]}})))
        .await
        .unwrap_err();
    assert_eq!((err.status, err.param.as_deref()), (400, Some("provider")));
    // `:nitro` on a route name is the route, by latency, as is `provider.sort`: with
    // `b` measured faster than `a`, they pick `b`; the route's own `fallback`, `a`.
    let snap = gw.snapshot();
    let latency_of = |name: &str, model: &str, ms: u64| {
        let p = snap.router.providers().find(|p| p.name == name).unwrap();
        gw.health()
            .handle(name, p.generation, model)
            .record_latency(Duration::from_millis(ms));
    };
    latency_of("a", "m1", 300);
    latency_of("b", "m2", 10);
    assert_eq!(gw.execute(ask("r:nitro")).await.unwrap().provider, "b");
    let sorted = with(serde_json::json!({"provider": {"sort": "latency"}}));
    assert_eq!(gw.execute(sorted).await.unwrap().provider, "b");
    assert_eq!(gw.execute(ask("r")).await.unwrap().provider, "a");
}

#[tokio::test]
async fn all_failing_lists_every_attempt() {
    let board = Arc::new(Board::default());
    let (gw, _) = gateway(&board);
    board.push("a", &[Step::Fail(500), Step::Fail(500)]);
    board.push("b", &[Step::Fail(503), Step::Fail(503)]);
    let err = gw.execute(ask("r")).await.unwrap_err();
    assert_eq!((err.status, err.attempts), (502, 4));
    assert!(
        err.message
            .starts_with("4 attempts failed: a/m1 (server_error, HTTP 500"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("b/m2 (overloaded, HTTP 503"),
        "{}",
        err.message
    );
    let _ = Duration::ZERO;
}

const HEDGED: &str = r#"
[providers.a]
kind = "scripted"
[providers.b]
kind = "scripted"

[[routes]]
name = "h"
targets = ["a/m1", "b/m2"]
hedge_after = "40ms"
hedge_budget = 0.2
"#;

#[tokio::test]
async fn a_slow_first_target_is_hedged_and_the_loser_is_cancelled() {
    let board = Arc::new(Board::default());
    let (gw, counting) = gateway_with(&board, HEDGED);
    // Warm the budget: hedging is allowed once calls have been counted.
    for _ in 0..10 {
        gw.execute(ask("h")).await.unwrap();
    }
    board.push("a", &[Step::Slow(2_000)]);
    let t0 = std::time::Instant::now();
    let served = gw.execute(ask("h")).await.unwrap();
    let took = t0.elapsed();
    assert_eq!(served.provider, "b");
    assert!(served.hedged);
    assert_eq!(served.attempts, 2, "the hedge counts as an attempt");
    assert!(
        took < Duration::from_millis(1_000),
        "answered after the hedge, took {took:?}"
    );
    assert!(
        took >= Duration::from_millis(40),
        "not before hedge_after, took {took:?}"
    );
    assert_eq!(counting.hedge_losers.load(Ordering::SeqCst), 1);

    // Streams hedge too: the first to commit wins.
    board.push("a", &[Step::Slow(2_000)]);
    let mut call = ask("h");
    call.request_mut().stream = Some(true);
    let served = gw.execute_stream(call).await.unwrap();
    assert_eq!((served.provider.as_str(), served.hedged), ("b", true));
    assert_eq!(counting.hedge_losers.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_hedge_budget_bounds_the_share_of_hedged_calls() {
    let board = Arc::new(Board::default());
    let (gw, _) = gateway_with(&board, HEDGED);
    board.push("a", &[Step::Slow(60); 50]);
    let mut hedged = 0;
    for _ in 0..50 {
        if gw.execute(ask("h")).await.unwrap().hedged {
            hedged += 1;
        }
    }
    assert!(
        (8..=10).contains(&hedged),
        "20 % of 50 slow calls, got {hedged}"
    );
}

/// A provider that embeds (scripted through the same board): one vector per input,
/// `[position, length of the text]`.
struct Vectors {
    name: String,
    board: Arc<Board>,
}

#[async_trait]
impl Provider for Vectors {
    async fn chat(&self, _: &Attempt<'_>) -> Result<Answer<Completion>, ProviderError> {
        Err(ProviderError::Unsupported(modelway_core::Operation::Chat))
    }

    async fn chat_stream(&self, _: &Attempt<'_>) -> Result<Answer<ChunkStream>, ProviderError> {
        Err(ProviderError::Unsupported(modelway_core::Operation::Chat))
    }

    async fn embed(
        &self,
        attempt: &Attempt<'_, EmbedRequest>,
    ) -> Result<Answer<Embeddings>, ProviderError> {
        self.board
            .calls
            .lock()
            .unwrap()
            .push((self.name.clone(), attempt.model().to_owned()));
        if let Step::Fail(status) = self.board.next(&self.name) {
            return Err(ProviderError::Status {
                status,
                body: bytes::Bytes::new(),
                retry_after: None,
            });
        }
        let req = attempt.request();
        let texts = req.input.texts().unwrap_or_default();
        let vectors = texts
            .iter()
            .enumerate()
            .map(|(i, t)| vec![i as f32, t.len() as f32])
            .collect();
        Ok(Answer::new(Embeddings::from(EmbedResponse::new(
            attempt.model(),
            vectors,
            req.encoding(),
            texts.len() as u64,
        ))))
    }
}

struct VectorsFactory(Arc<Board>);

impl ProviderFactory for VectorsFactory {
    type Options = NoOptions;
    fn kind(&self) -> &str {
        "vectors"
    }
    fn build(
        &self,
        cfg: &ProviderConfig,
        _: NoOptions,
        _: &HttpClient,
    ) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(Vectors {
            name: cfg.name.clone(),
            board: self.0.clone(),
        }))
    }
}

#[tokio::test]
async fn embeddings_take_the_same_attempt_loop_and_skip_providers_that_cannot_embed() {
    let board = Arc::new(Board::default());
    let mut reg = ProviderRegistry::new();
    reg.register(ScriptedFactory(board.clone()));
    reg.register(VectorsFactory(board.clone()));
    let cfg = Config::from_toml_str_with_env(
        r#"
[providers.a]
kind = "scripted"
[providers.b]
kind = "scripted"
[providers.e1]
kind = "vectors"
[providers.e2]
kind = "vectors"

[routing]
retries = 1
backoff = { base = "1ms", max = "2ms" }
health = { failures = 1, cooldown = "1h" }

[[routes]]
name = "emb"
targets = ["a/chat-only", "e1/v1", "e2/v2"]

[[routes]]
name = "chat-only"
targets = ["a/m", "b/m"]
"#,
        &|_| None,
    )
    .unwrap();
    let counting = Arc::new(Counting::default());
    let gw = Gateway::new(cfg, reg)
        .unwrap()
        .with_observer(counting.clone());
    let ask = |model: &str, format: EncodingFormat| {
        let mut req = EmbedRequest::new(model, EmbedInput::Texts(vec!["x".into(), "yy".into()]));
        req.encoding_format = Some(format);
        Call::new(req)
    };

    // `a` cannot embed: skipped. e1 fails and is retried once, then e2 answers.
    board.push("e1", &[Step::Fail(500), Step::Fail(503)]);
    let served = gw.embed(ask("emb", EncodingFormat::Float)).await.unwrap();
    assert_eq!((served.provider.as_str(), served.attempts), ("e2", 4));
    assert_eq!(board.calls(), ["e1/v1", "e1/v1", "e2/v2"]);
    let answer = served.value.into_response().unwrap();
    assert_eq!(answer.model, "v2");
    assert_eq!(answer.data[1].embedding, Vector::Float(vec![1.0, 2.0]));
    assert_eq!(answer.usage.prompt_tokens, 2);
    assert_eq!(counting.started.load(Ordering::SeqCst), 4);
    assert_eq!(counting.failed.load(Ordering::SeqCst), 3);
    // Not embedding is no failure of `a`: with `failures = 1` it would be ejected.
    let report = gw.health().report();
    let a = report.iter().find(|r| r.provider == "a").unwrap();
    assert_eq!((a.state, a.consecutive_failures), ("healthy", 0), "{a:?}");
    // e1 failed: ejected, so the next call goes to e2 at once.
    let served = gw.embed(ask("emb", EncodingFormat::Base64)).await.unwrap();
    assert_eq!(served.provider, "e2");
    let answer = served.value.into_response().unwrap();
    assert_eq!(
        answer.data[1].embedding,
        Vector::Base64(modelway_core::embed::encode_vector(&[1.0, 2.0]))
    );

    // No target can embed: a 400 naming the model and the providers.
    let err = gw
        .embed(ask("chat-only", EncodingFormat::Float))
        .await
        .unwrap_err();
    assert_eq!(err.status, 400, "{err}");
    assert_eq!(err.code.as_deref(), Some("model_not_supported"));
    assert_eq!(err.param.as_deref(), Some("model"));
    assert!(
        err.message.contains("`chat-only`") && err.message.contains("a, b"),
        "{}",
        err.message
    );
}

/// A Responses client's call asking for `previous_response_id`, for `model`.
fn stateful(model: &str) -> Call {
    let body = format!(r#"{{"model":"{model}","input":"hi","previous_response_id":"resp_1"}}"#);
    let req = ChatRequest::new(model, vec![Message::text(Role::User, "hi")]);
    Call::from_client_in(
        ClientDialect::Responses,
        req,
        bytes::Bytes::from(body),
        CallMeta::default(),
    )
    .needing_native("previous_response_id")
}

#[tokio::test]
async fn a_call_only_a_passthrough_upstream_can_serve_goes_only_to_one() {
    let board = Arc::new(Board::default());
    let (gw, _) = gateway_with(
        &board,
        r#"
[providers.a]
kind = "scripted"
[providers.n]
kind = "scripted-native"
[providers.n2]
kind = "scripted-native"

[routing]
retries = 0

[[routes]]
name = "mixed"
targets = ["a/m1", "n/m2"]
[[routes]]
name = "plain"
targets = ["a/m1"]
[[routes]]
name = "edited"
targets = ["a/m1", { target = "n/m2", params = { max_tokens = 5 } }]
[[routes]]
name = "natives"
targets = ["n/m2", "n2/m3"]
"#,
    );
    // The translating target first in the route is passed over.
    let served = gw.execute(stateful("mixed")).await.unwrap();
    assert_eq!(
        (served.provider.as_str(), board.calls()),
        ("n", vec!["n/m2".to_owned()])
    );
    // Without the feature, the route's order stands.
    let plain = Call::from_client_in(
        ClientDialect::Responses,
        ChatRequest::new("mixed", vec![Message::text(Role::User, "hi")]),
        bytes::Bytes::from_static(br#"{"model":"mixed","input":"hi"}"#),
        CallMeta::default(),
    );
    assert_eq!(gw.execute(plain).await.unwrap().provider, "a");
    // Falling back stays among the targets that forward it.
    board.push("n", &[Step::Fail(500)]);
    let served = gw.execute(stateful("natives")).await.unwrap();
    assert_eq!(served.provider, "n2");
    // No target forwards it, or the only one edits the request: a 400 naming it, and
    // no upstream is called.
    board.calls.lock().unwrap().clear();
    for (model, why) in [("plain", ""), ("edited", "`params`")] {
        let e = gw.execute(stateful(model)).await.unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref(), e.code.as_deref()),
            (
                400,
                Some("previous_response_id"),
                Some("unsupported_parameter")
            ),
            "{model}: {e:?}"
        );
        assert!(
            e.message.contains("OpenAI Responses API") && e.message.contains(why),
            "{model}: {}",
            e.message
        );
    }
    // A chat client's call cannot ask it of a Responses upstream either.
    let chat = Call::from_client(
        ChatRequest::new("natives", vec![Message::text(Role::User, "hi")]),
        bytes::Bytes::from_static(br#"{"model":"natives","messages":[]}"#),
        CallMeta::default(),
    )
    .needing_native("x");
    assert_eq!(gw.execute(chat).await.unwrap_err().status, 400);
    assert!(board.calls().is_empty(), "{:?}", board.calls());
}
