//! The modelway gateway binary's library half: the HTTP server (raw hyper 1.x,
//! HTTP/1.1 and h2c), its handlers, gateway keys, config loading and reloading.
//!
//! It wires `modelway-core` to the built-in provider crates; nothing here knows a
//! wire format beyond OpenAI's, which it serves. Start at [`server::serve`], then
//! [`http::handle`].
#![forbid(unsafe_code)]

pub mod app;
pub mod budgets;
pub mod http;
pub mod ledger;
pub mod limits;
pub mod reload;
pub mod server;
pub mod telemetry;
pub mod usage;

use modelway_core::ProviderRegistry;

/// Every provider kind built into the binary. Adding a provider crate is one line here.
pub fn builtin_registry() -> ProviderRegistry {
    let mut reg = ProviderRegistry::new();
    for f in modelway_openai::OpenAiFactory::all() {
        reg.register(f);
    }
    reg.register(modelway_anthropic::AnthropicFactory);
    reg.register(modelway_gemini::GeminiFactory);
    reg.register(modelway_mock::MockFactory);
    reg
}
