//! Embedding modelway in your own service: no HTTP server, just the engine.
//!
//! It builds a [`Gateway`] from a TOML string with the built-in providers and one of
//! its own (`shout`, which answers in capitals), serves a JSON call and a streamed
//! one, then builds a config in code and swaps it in while the gateway runs — a route
//! whose first target fails falls back to the mock provider — and reads the health
//! the failure left behind.
//!
//! Run it with `cargo run -p modelway-providers --example embedded`; CI does.

use std::sync::Arc;

use futures_util::StreamExt;
use modelway_core::chat::{
    ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Completion, Delta, Extra,
    FinishReason, Message, ResponseMessage, Role,
};
use modelway_core::provider::{
    Answer, Attempt, BuildError, ChunkStream, HttpClient, Provider, ProviderConfig, ProviderFactory,
};
use modelway_core::{Call, Config, Gateway, ProviderError};

/// A provider of our own: answers with the last user message in capitals, or fails
/// every attempt when its table says `fail = true`.
struct Shout {
    fail: bool,
}

impl Shout {
    fn answer(&self, attempt: &Attempt<'_>) -> Result<String, ProviderError> {
        if self.fail {
            return Err(ProviderError::Connect("shout is switched off".into()));
        }
        let last = attempt.request().messages.last();
        Ok(last
            .map(Message::text_content)
            .unwrap_or_default()
            .to_uppercase())
    }
}

#[async_trait::async_trait]
impl Provider for Shout {
    async fn chat(&self, attempt: &Attempt<'_>) -> Result<Answer<Completion>, ProviderError> {
        let text = self.answer(attempt)?;
        Ok(Answer::new(Completion::Parsed(Box::new(ChatResponse {
            id: format!("shout-{}", attempt.request_id()),
            object: "chat.completion".into(),
            created: 0,
            model: attempt.model().to_owned(),
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage::text(text),
                logprobs: None,
                finish_reason: Some(FinishReason::Stop),
                extra: Extra::new(),
            }],
            usage: None,
            extra: Extra::new(),
        }))))
    }

    async fn chat_stream(
        &self,
        attempt: &Attempt<'_>,
    ) -> Result<Answer<ChunkStream>, ProviderError> {
        let text = self.answer(attempt)?;
        let id = format!("shout-{}", attempt.request_id());
        let chunk = |delta: Delta, finish: Option<FinishReason>| {
            let mut c = ChatChunk::new(id.clone(), 0, attempt.model());
            let mut choice = ChunkChoice::new(0, delta);
            choice.finish_reason = finish;
            c.choices.push(choice);
            Ok(c)
        };
        // One chunk per word, the role first and the finish reason last.
        let mut chunks = vec![chunk(
            Delta {
                role: Some(Role::Assistant),
                ..Delta::default()
            },
            None,
        )];
        for (i, word) in text.split(' ').enumerate() {
            let content = if i == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            };
            chunks.push(chunk(
                Delta {
                    content: Some(content.into()),
                    ..Delta::default()
                },
                None,
            ));
        }
        chunks.push(chunk(Delta::default(), Some(FinishReason::Stop)));
        let stream: ChunkStream = Box::pin(futures_util::stream::iter(chunks));
        Ok(Answer::new(stream))
    }
}

struct ShoutFactory;

/// The keys a `[providers.NAME]` table of kind `shout` takes besides the common ones:
/// any other key, or a `fail` that is not a bool, is a config error with its line.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ShoutOptions {
    fail: Option<bool>,
}

impl ProviderFactory for ShoutFactory {
    type Options = ShoutOptions;

    fn kind(&self) -> &str {
        "shout"
    }

    fn build(
        &self,
        _: &ProviderConfig,
        options: ShoutOptions,
        _: &HttpClient,
    ) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(Shout {
            fail: options.fail.unwrap_or(false),
        }))
    }
}

const CONFIG: &str = r#"
[providers.mock]
kind = "mock"

[providers.shout]
kind = "shout"

[routing]
default_provider = "mock"

[[routes]]
name = "loud"
targets = ["shout/v1"]
"#;

fn ask(model: &str, text: &str) -> Call {
    Call::new(ChatRequest::new(
        model,
        vec![Message::text(Role::User, text)],
    ))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The shipped providers plus our own, registered by kind.
    let mut registry = modelway_providers::builtin_registry();
    registry.register(ShoutFactory);

    // 1. From a TOML string (a file's text: errors name the key and its line).
    let gateway = Gateway::new(Config::from_toml_str(CONFIG)?, registry.clone())?;

    // A JSON answer.
    let served = gateway
        .execute(ask("loud", "hello from the embedder"))
        .await?;
    let answer = served.value.into_response()?;
    let text = answer.choices[0]
        .message
        .content
        .clone()
        .unwrap_or_default();
    println!("json   {}/{}: {text}", served.provider, served.model);
    assert_eq!(text, "HELLO FROM THE EMBEDDER");

    // A streamed answer: the stream is returned at its first content.
    let served = gateway
        .execute_stream(ask("loud", "streamed word by word"))
        .await?;
    let mut streamed = String::new();
    let mut stream = served.value;
    while let Some(chunk) = stream.next().await {
        for choice in chunk?.choices {
            streamed.push_str(choice.delta.content.as_deref().unwrap_or_default());
        }
    }
    println!("stream {}/{}: {streamed}", served.provider, served.model);
    assert_eq!(streamed, "STREAMED WORD BY WORD");

    // 2. From code: the same schema, validated the same way, with no file.
    let from_code = Config::from_value(serde_json::json!({
        "providers": {
            "mock": { "kind": "mock" },
            "shout": { "kind": "shout", "fail": true },
        },
        "routing": { "default_provider": "mock", "retries": 0 },
        "routes": [{ "name": "loud", "targets": ["shout/v1", "mock/mock-fast"] }],
    }))?;
    // A second gateway could be built from it (`Gateway::new(from_code, registry)`);
    // here it replaces the running one's config. Calls in flight keep the old one.
    let version = gateway.set_config(from_code)?;
    println!("config swapped: version {version}");
    assert_eq!(gateway.config_version(), 2);

    // `shout` now fails, so the route falls back to the mock, invisibly to the caller.
    let served = gateway.execute(ask("loud", "anyone there?")).await?;
    println!(
        "json   {}/{} after {} attempts",
        served.provider, served.model, served.attempts
    );
    assert_eq!((served.provider.as_str(), served.attempts), ("mock", 2));

    // An invalid config is refused whole; the one serving stays.
    let bad = Config::from_value(serde_json::json!({
        "routes": [{ "name": "loud", "targets": ["nowhere/x"] }],
    }));
    assert!(bad.is_err(), "a route to an unknown provider is refused");
    println!(
        "refused: {}",
        bad.err().map(|e| e.to_string()).unwrap_or_default()
    );

    // The health the failure left: one failure on shout/v1, a success on the mock.
    for h in gateway.health_report() {
        println!(
            "health {}/{}: {} ({} consecutive failures)",
            h.provider, h.model, h.state, h.consecutive_failures
        );
    }
    let shout = gateway
        .health_report()
        .into_iter()
        .find(|h| h.provider == "shout");
    assert_eq!(shout.map(|h| h.consecutive_failures), Some(1));
    Ok(())
}
