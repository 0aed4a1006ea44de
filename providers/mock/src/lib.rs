//! modelway-mock: an in-process provider with canned, deterministic answers, for
//! quickstarts, demos and benchmarks. It calls nothing over the network: it echoes the
//! last user message (or answers a fixed `reply`), streams that answer word by word,
//! can play the model's side of a tool-calling loop, and answers embeddings with
//! deterministic vectors.
//!
//! Depends only on `modelway-core`. Start at [`MockFactory`] for its config keys, then
//! [`MockProvider`]; `answer.rs` decides what to answer and counts tokens, `stream.rs`
//! cuts an answer into chunks, `embed.rs` makes the vectors.
#![forbid(unsafe_code)]

mod answer;
mod embed;
mod stream;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use modelway_core::chat::{ChatRequest, Completion};
use modelway_core::config::DurationOption;
use modelway_core::embed::{EmbedRequest, Embeddings};
use modelway_core::{
    unix_now, Attempt, BuildError, ChunkStream, HttpClient, ModelInfo, Provider, ProviderConfig,
    ProviderError, ProviderFactory,
};

use crate::answer::Answer;
use crate::stream::Chunks;

/// Builds [`MockProvider`]s for `kind = "mock"`.
///
/// | key | type | default | effect |
/// |---|---|---|---|
/// | `reply` | string | — | answer this text instead of echoing the last user message |
/// | `chunk_words` | integer ≥ 1 | `1` | words per streamed content chunk |
/// | `chunk_delay` | duration (`"10ms"`) | `"0ms"` | pause between streamed chunks |
/// | `delay` | duration | `"0ms"` | pause before answering (before a stream starts) |
/// | `tool_calls` | bool | `false` | call a tool when the request offers tools |
/// | `dimensions` | integer ≥ 1 | `64` | embedding size when the request sets no `dimensions` |
///
/// ```toml
/// [providers.mock]
/// kind = "mock"
/// reply = "Hello from modelway!"
/// chunk_delay = "20ms"
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MockFactory;

/// Registers this crate's kind (`mock`, built by [`MockFactory`]) in `registry`: what
/// `modelway-providers` calls for each provider crate it depends on.
pub fn register(registry: &mut modelway_core::ProviderRegistry) {
    registry.register(MockFactory);
}

/// The kind-specific keys [`MockFactory`] accepts (see its table).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockOptions {
    /// The answer's text, instead of echoing the last user message.
    pub reply: Option<String>,
    /// Words per streamed chunk (default 1).
    pub chunk_words: Option<u64>,
    /// Pause between streamed chunks.
    pub chunk_delay: Option<DurationOption>,
    /// Pause before the answer (or the stream's head).
    pub delay: Option<DurationOption>,
    /// Call the request's first tool instead of answering in text.
    pub tool_calls: Option<bool>,
    /// Embedding size when the request sets none (default 64).
    pub dimensions: Option<u64>,
}

impl ProviderFactory for MockFactory {
    type Options = MockOptions;

    fn kind(&self) -> &str {
        "mock"
    }

    fn build(
        &self,
        cfg: &ProviderConfig,
        options: MockOptions,
        _http: &HttpClient,
    ) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(MockProvider::from_config(cfg, options)?))
    }
}

/// The mock provider. Any model name is accepted and the attempt's (upstream) model is
/// echoed back in `model`.
///
/// Answers are deterministic: the same request gets the same text, tool call and
/// token counts (a token is a whitespace-separated word). Only the ids differ: they
/// count requests, `chatcmpl-mock-1`, `chatcmpl-mock-2`, … (`call_mock_<n>` for tool
/// calls).
///
/// With `tool_calls = true`, a request whose last message is the user's and which
/// offers function tools (and does not set `tool_choice: "none"`) is answered with one
/// call to the forced function, else the first one, its arguments filling each
/// `required` parameter with a placeholder (`"mock"`, `0`, `false` or `null` by type);
/// a request whose last message is a tool result is answered
/// `Tool result: <that message's text>`.
///
/// Embeddings are unit vectors derived from a hash of each input alone (the same text
/// always gets the same vector), `dimensions` long (else the `dimensions` option,
/// else 64), as floats or base64 as asked; a token is a word, as for chat.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use modelway_core::chat::{ChatRequest, Message, Role};
/// use modelway_core::{Attempt, Call, Provider, Timeouts};
/// use modelway_mock::MockProvider;
///
/// let mock = MockProvider::default();
/// let call = Call::new(ChatRequest::new("mock-1", vec![Message::text(Role::User, "Say hi")]));
/// let attempt = Attempt::new(&call, "mock-1", Timeouts::uniform(std::time::Duration::from_secs(5)));
/// let resp = mock.chat(&attempt).await?.value.into_response()?;
/// assert_eq!(resp.model, "mock-1");
/// assert_eq!(resp.choices[0].message.content.as_deref(), Some("Say hi"));
/// assert_eq!(resp.usage.map(|u| u.total_tokens), Some(4));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MockProvider {
    reply: Option<Arc<str>>,
    chunk_words: usize,
    chunk_delay: Duration,
    delay: Duration,
    tool_calls: bool,
    /// Embedding size when the request names none.
    dimensions: u64,
    /// Requests answered so far, for ids.
    served: AtomicU64,
}

impl Default for MockProvider {
    /// An echoing provider without delays or tool calls.
    fn default() -> Self {
        Self {
            reply: None,
            chunk_words: 1,
            chunk_delay: Duration::ZERO,
            delay: Duration::ZERO,
            tool_calls: false,
            dimensions: embed::DEFAULT_DIMENSIONS,
            served: AtomicU64::new(0),
        }
    }
}

/// The most choices a request may ask for (OpenAI's limit), so a stray `n` cannot
/// make the mock build a huge answer.
const MAX_CHOICES: u32 = 128;

/// `created` of the listed model: fixed, so listings are deterministic.
const MODEL_CREATED: u64 = 1_700_000_000;

impl MockProvider {
    /// A provider configured by the table's kind-specific keys (see [`MockFactory`]).
    ///
    /// # Errors
    /// A [`BuildError`] naming the key when one has the wrong type or `chunk_words`
    /// is 0.
    pub fn from_config(cfg: &ProviderConfig, options: MockOptions) -> Result<Self, BuildError> {
        let chunk_words = match options.chunk_words {
            None => 1,
            Some(0) => {
                return Err(BuildError(format!(
                    "provider `{}`: `chunk_words` must be at least 1",
                    cfg.name
                )))
            }
            Some(w) => usize::try_from(w).map_err(|_| {
                BuildError(format!(
                    "provider `{}`: `chunk_words` is too large",
                    cfg.name
                ))
            })?,
        };
        let dimensions = match options.dimensions {
            None => embed::DEFAULT_DIMENSIONS,
            Some(d) if (1..=embed::MAX_DIMENSIONS).contains(&d) => d,
            Some(_) => {
                return Err(BuildError(format!(
                    "provider `{}`: `dimensions` must be between 1 and {}",
                    cfg.name,
                    embed::MAX_DIMENSIONS
                )))
            }
        };
        Ok(Self {
            reply: options.reply.map(Arc::from),
            chunk_words,
            chunk_delay: options.chunk_delay.unwrap_or_default().get(),
            delay: options.delay.unwrap_or_default().get(),
            tool_calls: options.tool_calls.unwrap_or(false),
            dimensions,
            served: AtomicU64::new(0),
        })
    }

    /// Checks the request, waits `delay`, and decides the answer.
    async fn prepare(&self, req: &ChatRequest) -> Result<Prepared, ProviderError> {
        let n = req.n.unwrap_or(1);
        if !(1..=MAX_CHOICES).contains(&n) {
            return Err(ProviderError::InvalidRequest {
                message: format!("`n` must be between 1 and {MAX_CHOICES}, got {n}"),
                param: Some("n".to_owned()),
            });
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let seq = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        let answer = Answer::for_request(req, self.reply.as_ref(), self.tool_calls);
        Ok(Prepared { seq, n, answer })
    }
}

/// A request checked and answered, not yet shaped as a response or a stream.
struct Prepared {
    seq: u64,
    n: u32,
    answer: Answer,
}

impl Prepared {
    fn id(&self) -> String {
        format!("chatcmpl-mock-{}", self.seq)
    }
}

fn call_id(seq: u64) -> String {
    format!("call_mock_{seq}")
}

#[async_trait]
impl Provider for MockProvider {
    async fn chat(
        &self,
        attempt: &Attempt<'_>,
    ) -> Result<modelway_core::Answer<Completion>, ProviderError> {
        let req = attempt.request();
        let p = self.prepare(req).await?;
        let usage = p.answer.usage(req, p.n);
        let id = p.id();
        let seq = p.seq;
        Ok(p.answer
            .into_response(
                id,
                unix_now(),
                attempt.model().to_owned(),
                || call_id(seq),
                p.n,
                usage,
            )
            .into())
    }

    async fn chat_stream(
        &self,
        attempt: &Attempt<'_>,
    ) -> Result<modelway_core::Answer<ChunkStream>, ProviderError> {
        let req = attempt.request();
        let p = self.prepare(req).await?;
        let usage = p.answer.usage(req, p.n);
        let call_id = match p.answer {
            Answer::ToolCall { .. } => call_id(p.seq),
            Answer::Text(_) => String::new(),
        };
        let chunks = Chunks::new(
            p.id(),
            unix_now(),
            attempt.model().to_owned(),
            p.answer,
            call_id,
            p.n,
            self.chunk_words,
            usage,
        );
        Ok(modelway_core::Answer::new(
            chunks.into_stream(self.chunk_delay),
        ))
    }

    async fn embed(
        &self,
        attempt: &Attempt<'_, EmbedRequest>,
    ) -> Result<modelway_core::Answer<Embeddings>, ProviderError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let answer = embed::answer(attempt.request(), attempt.model(), self.dimensions)?;
        Ok(modelway_core::Answer::new(Embeddings::from(answer)))
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        Ok(vec![ModelInfo {
            id: "mock-1".to_owned(),
            owned_by: "modelway".to_owned(),
            created: MODEL_CREATED,
        }])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use futures_util::StreamExt;
    use modelway_core::chat::ChatResponse;
    use modelway_core::chat::{
        ChatChunk, ContentPart, FinishReason, Message, MessageContent, Role, Tool, ToolChoice,
    };
    use modelway_core::{Call, Config, Timeouts};
    use serde_json::{json, Value};

    use super::*;

    /// A provider built from these option lines of a `[providers.m]` table.
    fn mock(options: &str) -> Result<MockProvider, BuildError> {
        let src = format!("[providers.m]\nkind = \"mock\"\n{options}\n");
        let cfg = Config::from_toml_str_with_env(&src, &|_| None).expect("valid TOML config");
        let cfg = &cfg.providers()["m"];
        // The gateway's path: options checked against the type, then the factory.
        let mut registry = modelway_core::ProviderRegistry::new();
        registry.register(MockFactory);
        registry.build(cfg, &HttpClient::new())?;
        MockProvider::from_config(cfg, cfg.options.read().expect("checked"))
    }

    /// The model the tests' attempts name upstream; requests name another, the
    /// client's, so the answers show which one the mock echoes.
    const UPSTREAM: &str = "upstream-model";

    /// One attempt of `req` at [`UPSTREAM`], its answer parsed.
    async fn chat(p: &MockProvider, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let call = Call::new(req.clone());
        let attempt = Attempt::new(&call, UPSTREAM, Timeouts::uniform(Duration::from_secs(5)));
        let answer = p.chat(&attempt).await?;
        assert!(answer.dropped.is_empty(), "{:?}", answer.dropped);
        Ok(answer.value.into_response().expect("a chat.completion"))
    }

    fn request(messages: Vec<Message>) -> ChatRequest {
        ChatRequest::new("client-model", messages)
    }

    fn user(text: &str) -> Message {
        Message::text(Role::User, text)
    }

    fn weather_tools() -> Vec<Tool> {
        serde_json::from_value(json!([
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
            {"type": "function", "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "days": {"type": "integer"},
                        "metric": {"type": "boolean"},
                        "note": {"type": "string"}
                    },
                    "required": ["city", "days", "metric"]
                }
            }}
        ]))
        .unwrap()
    }

    fn forced(name: &str) -> ToolChoice {
        serde_json::from_value(json!({"type": "function", "function": {"name": name}})).unwrap()
    }

    async fn collect(p: &MockProvider, req: &ChatRequest) -> Vec<ChatChunk> {
        let call = Call::new(req.clone());
        let attempt = Attempt::new(&call, UPSTREAM, Timeouts::uniform(Duration::from_secs(5)));
        let answer = p.chat_stream(&attempt).await.unwrap();
        assert!(answer.dropped.is_empty(), "{:?}", answer.dropped);
        answer.value.map(|c| c.unwrap()).collect().await
    }

    /// The content a client accumulates for choice `index`.
    fn content_of(chunks: &[ChatChunk], index: u32) -> String {
        chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter(|c| c.index == index)
            .filter_map(|c| c.delta.content.as_deref())
            .collect()
    }

    #[test]
    fn factory_kind_and_keys() {
        assert_eq!(MockFactory.kind(), "mock");
        let mut registry = modelway_core::ProviderRegistry::new();
        registry.register(MockFactory);
        assert_eq!(
            registry.option_keys("mock").unwrap(),
            [
                "reply",
                "chunk_words",
                "chunk_delay",
                "delay",
                "tool_calls",
                "dimensions"
            ]
        );
        let cfg = ProviderConfig::new("m", "mock");
        assert!(registry.build(&cfg, &HttpClient::new()).is_ok());
    }

    #[test]
    fn options_parse() {
        let p = mock(
            "reply = \"hi\"\nchunk_words = 3\nchunk_delay = \"10ms\"\ndelay = \"1s\"\ntool_calls = true\ndimensions = 8",
        )
        .unwrap();
        assert_eq!(p.dimensions, 8);
        assert_eq!(p.reply.as_deref(), Some("hi"));
        assert_eq!(p.chunk_words, 3);
        assert_eq!(p.chunk_delay, Duration::from_millis(10));
        assert_eq!(p.delay, Duration::from_secs(1));
        assert!(p.tool_calls);

        let d = mock("").unwrap();
        assert_eq!(
            (d.reply, d.chunk_words, d.chunk_delay, d.delay, d.tool_calls),
            (None, 1, Duration::ZERO, Duration::ZERO, false)
        );
    }

    #[test]
    fn bad_options_are_rejected_by_name() {
        let rows = [
            ("chunk_words = 0", "chunk_words"),
            ("chunk_words = -1", "chunk_words"),
            ("chunk_words = \"two\"", "chunk_words"),
            ("reply = 3", "reply"),
            ("delay = \"soon\"", "delay"),
            ("chunk_delay = 5", "chunk_delay"),
            ("tool_calls = \"yes\"", "tool_calls"),
            ("dimensions = 0", "dimensions"),
            ("dimensions = 100000", "dimensions"),
        ];
        for (line, key) in rows {
            let err = mock(line).expect_err(line);
            assert!(
                err.0.contains(&format!("`{key}`")) && err.0.contains("provider `m`"),
                "{line}: expected provider `m` and `{key}` in {:?}",
                err.0
            );
        }
    }

    #[tokio::test]
    async fn echoes_the_last_user_message() {
        let p = MockProvider::default();
        let req = request(vec![
            Message::text(Role::System, "Be brief."),
            user("first question"),
            Message::text(Role::Assistant, "an answer"),
            user("Hello there, mock!"),
        ]);
        let resp = chat(&p, &req).await.unwrap();
        assert_eq!(resp.id, "chatcmpl-mock-1");
        assert_eq!(resp.object, "chat.completion");
        assert_eq!(resp.model, "upstream-model");
        assert!(resp.created > 0);
        assert_eq!(resp.choices.len(), 1);
        let choice = &resp.choices[0];
        assert_eq!(choice.message.role, Role::Assistant);
        assert_eq!(
            choice.message.content.as_deref(),
            Some("Hello there, mock!")
        );
        assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
        let usage = resp.usage.unwrap();
        // 2 + 2 + 2 + 3 prompt words, 3 answer words.
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (9, 3, 12)
        );

        let again = chat(&p, &req).await.unwrap();
        assert_eq!(again.id, "chatcmpl-mock-2");
        assert_eq!(again.choices, resp.choices);
    }

    #[tokio::test]
    async fn echoes_text_parts() {
        let mut msg = user("");
        msg.content = Some(MessageContent::Parts(vec![
            ContentPart::text("Hello, "),
            ContentPart::text("parts"),
        ]));
        let resp = chat(&MockProvider::default(), &request(vec![msg]))
            .await
            .unwrap();
        assert_eq!(
            resp.choices[0].message.content.as_deref(),
            Some("Hello, parts")
        );
        assert_eq!(resp.usage.unwrap().prompt_tokens, 2);
    }

    #[tokio::test]
    async fn fixed_reply() {
        let p = mock("reply = \"I am a mock.\"").unwrap();
        let resp = chat(&p, &request(vec![user("anything at all")]))
            .await
            .unwrap();
        assert_eq!(
            resp.choices[0].message.content.as_deref(),
            Some("I am a mock.")
        );
        let usage = resp.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (3, 4));
    }

    #[tokio::test]
    async fn n_choices() {
        let p = MockProvider::default();
        let mut req = request(vec![user("two ways")]);
        req.n = Some(2);
        let resp = chat(&p, &req).await.unwrap();
        let got: Vec<_> = resp
            .choices
            .iter()
            .map(|c| (c.index, c.message.content.as_deref()))
            .collect();
        assert_eq!(got, [(0, Some("two ways")), (1, Some("two ways"))]);
        assert_eq!(resp.usage.unwrap().completion_tokens, 4);

        let chunks = collect(&p, &req).await;
        assert_eq!(content_of(&chunks, 0), "two ways");
        assert_eq!(content_of(&chunks, 1), "two ways");
        let finishes: Vec<_> = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter(|c| c.finish_reason.is_some())
            .map(|c| c.index)
            .collect();
        assert_eq!(finishes, [0, 1]);

        for bad in [0, MAX_CHOICES + 1] {
            req.n = Some(bad);
            let err = chat(&p, &req).await.expect_err("n out of range");
            assert!(
                matches!(&err, ProviderError::InvalidRequest { param: Some(p), .. } if p == "n"),
                "n = {bad}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn stream_reassembles_to_the_answer_and_ends_with_usage() {
        let p = MockProvider::default();
        let text = "  The quick  brown fox\njumps. ";
        let req = request(vec![user(text)]);
        let chunks = collect(&p, &req).await;

        let first = &chunks[0];
        assert_eq!(first.object, "chat.completion.chunk");
        assert_eq!(first.choices[0].delta.role, Some(Role::Assistant));
        assert_eq!(first.choices[0].delta.content.as_deref(), Some(""));
        assert!(chunks
            .iter()
            .all(|c| c.id == "chatcmpl-mock-1" && c.model == "upstream-model" && c.created > 0));

        assert_eq!(content_of(&chunks, 0), text);
        // One word per chunk, plus the trailing space on its own.
        let pieces: Vec<_> = chunks[1..]
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.content.as_deref())
            .collect();
        assert_eq!(
            pieces,
            ["  The", " quick", "  brown", " fox", "\njumps.", " "]
        );

        let (last, rest) = chunks.split_last().unwrap();
        assert!(last.choices.is_empty(), "{last:?}");
        let usage = last.usage.as_ref().unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (5, 5));
        assert!(rest.iter().all(|c| c.usage.is_none()));

        let finish = rest.last().unwrap();
        assert_eq!(finish.choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(finish.choices[0].delta, Default::default());
    }

    #[tokio::test]
    async fn chunk_words_groups_words() {
        let p = mock("chunk_words = 2\nreply = \"one two three four five\"").unwrap();
        let chunks = collect(&p, &request(vec![user("hi")])).await;
        let pieces: Vec<_> = chunks[1..]
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.content.as_deref())
            .collect();
        assert_eq!(pieces, ["one two", " three four", " five"]);
    }

    #[tokio::test]
    async fn delays_do_not_change_the_answer() {
        // Timing is for `cargo xtask bench`; here only that delayed answers are whole.
        let p = mock("delay = \"1ms\"\nchunk_delay = \"1ms\"").unwrap();
        let req = request(vec![user("slow and steady")]);
        let resp = chat(&p, &req).await.unwrap();
        assert_eq!(
            resp.choices[0].message.content.as_deref(),
            Some("slow and steady")
        );
        let chunks = collect(&p, &req).await;
        assert_eq!(content_of(&chunks, 0), "slow and steady");
        assert!(chunks.last().unwrap().usage.is_some());
    }

    #[tokio::test]
    async fn tool_call_to_the_first_function() {
        let p = mock("tool_calls = true").unwrap();
        let mut req = request(vec![user("What time is it?")]);
        req.tools = Some(weather_tools());
        let resp = chat(&p, &req).await.unwrap();
        let choice = &resp.choices[0];
        assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(choice.message.content, None);
        let calls = choice.message.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].id, "call_mock_1");
        assert_eq!(calls[0].kind, "function");
        assert_eq!(calls[0].function.name, "get_time");
        assert_eq!(calls[0].function.arguments, "{}");
    }

    #[tokio::test]
    async fn tool_call_to_the_forced_function_fills_required_params() {
        let p = mock("tool_calls = true").unwrap();
        let mut req = request(vec![user("Weather in Paris?")]);
        req.tools = Some(weather_tools());
        req.tool_choice = Some(forced("get_weather"));
        let want = json!({"city": "mock", "days": 0, "metric": false});

        let resp = chat(&p, &req).await.unwrap();
        let call = &resp.choices[0].message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.function.name, "get_weather");
        let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
        assert_eq!(args, want);

        let chunks = collect(&p, &req).await;
        let fragments: Vec<_> = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.tool_calls.as_ref())
            .flatten()
            .collect();
        let head = fragments[0];
        assert_eq!(head.index, 0);
        assert_eq!(head.id.as_deref(), Some("call_mock_2"));
        assert_eq!(head.kind.as_deref(), Some("function"));
        let f = head.function.as_ref().unwrap();
        assert_eq!(
            (f.name.as_deref(), f.arguments.as_deref()),
            (Some("get_weather"), Some(""))
        );
        assert!(
            fragments.len() >= 3,
            "head and 2+ argument pieces: {fragments:?}"
        );
        for frag in &fragments[1..] {
            assert_eq!(
                (frag.index, &frag.id, &frag.kind),
                (0, &None, &None),
                "{frag:?}"
            );
            assert_eq!(frag.function.as_ref().unwrap().name, None, "{frag:?}");
        }
        let joined: String = fragments
            .iter()
            .filter_map(|f| f.function.as_ref()?.arguments.as_deref())
            .collect();
        let args: Value = serde_json::from_str(&joined).unwrap();
        assert_eq!(args, want);

        let (usage_chunk, rest) = chunks.split_last().unwrap();
        assert!(usage_chunk.choices.is_empty() && usage_chunk.usage.is_some());
        let finish = rest.last().unwrap();
        assert_eq!(
            finish.choices[0].finish_reason,
            Some(FinishReason::ToolCalls)
        );
    }

    #[tokio::test]
    async fn no_tool_call_when_not_offered_or_refused_or_disabled() {
        let on = mock("tool_calls = true").unwrap();
        let mut req = request(vec![user("just talk")]);
        let plain = |r: &ChatResponse| {
            r.choices[0].message.tool_calls.is_none()
                && r.choices[0].message.content.as_deref() == Some("just talk")
        };
        // No tools, then an empty list.
        assert!(plain(&chat(&on, &req).await.unwrap()));
        req.tools = Some(Vec::new());
        assert!(plain(&chat(&on, &req).await.unwrap()));
        // tool_choice "none".
        req.tools = Some(weather_tools());
        req.tool_choice = Some(serde_json::from_value(json!("none")).unwrap());
        assert!(plain(&chat(&on, &req).await.unwrap()));
        // The option off.
        req.tool_choice = None;
        assert!(plain(&chat(&MockProvider::default(), &req).await.unwrap()));
    }

    #[tokio::test]
    async fn tool_result_is_acknowledged() {
        let p = mock("tool_calls = true").unwrap();
        let mut tool_msg = Message::text(Role::Tool, "{\"temp\": 21}");
        tool_msg.tool_call_id = Some("call_mock_1".to_owned());
        let mut req = request(vec![user("Weather in Paris?"), tool_msg]);
        req.tools = Some(weather_tools());
        let resp = chat(&p, &req).await.unwrap();
        let choice = &resp.choices[0];
        assert_eq!(
            choice.message.content.as_deref(),
            Some("Tool result: {\"temp\": 21}")
        );
        assert_eq!(choice.message.tool_calls, None);
        assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    }

    #[tokio::test]
    async fn lists_one_model() {
        let models = MockProvider::default().models().await.unwrap();
        assert_eq!(
            models,
            [ModelInfo {
                id: "mock-1".to_owned(),
                owned_by: "modelway".to_owned(),
                created: MODEL_CREATED,
            }]
        );
    }
}
