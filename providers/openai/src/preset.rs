//! The OpenAI-compatible presets: default base URLs and the request rewrites each
//! server needs. Data, not code paths: adding a preset is adding a row.

/// Which max-tokens field an upstream understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokensField {
    /// Forward what the client sent.
    AsSent,
    /// OpenAI: reasoning models (o-series, gpt-5) reject `max_tokens`, so it is sent as
    /// `max_completion_tokens` to them.
    OpenAi,
    /// Servers that only know `max_tokens`: `max_completion_tokens` is sent as it.
    Legacy,
}

/// One preset kind.
#[derive(Debug)]
pub struct Preset {
    pub kind: &'static str,
    /// `None`: the config must give `base_url`.
    pub base_url: Option<&'static str>,
    /// Whether the server knows the `developer` role (else it is sent as `system`).
    pub developer_role: bool,
    pub max_tokens: MaxTokensField,
    /// Whether `stream_options` may be sent (then modelway always asks for usage).
    pub stream_options: bool,
    /// OpenRouter itself: receives the client's attribution headers and the OpenRouter
    /// request dialect (`models`, `provider`, …).
    pub openrouter: bool,
    /// Whether the server has OpenAI's Responses API (`POST …/responses`), so a
    /// Responses client's body goes there as it came; the provider option
    /// `responses_api` overrides it.
    pub responses_api: bool,
    /// OpenRouter vendor prefixes this kind serves (`openai/gpt-4o` → `gpt-4o`).
    pub vendor_prefixes: &'static [&'static str],
    /// Bare model-name families this kind serves (`gpt-4o`).
    pub model_families: &'static [&'static str],
}

const fn preset(kind: &'static str, base_url: Option<&'static str>) -> Preset {
    Preset {
        kind,
        base_url,
        developer_role: false,
        max_tokens: MaxTokensField::AsSent,
        stream_options: true,
        openrouter: false,
        responses_api: false,
        vendor_prefixes: &[],
        model_families: &[],
    }
}

/// Every kind this crate serves.
pub static PRESETS: &[Preset] = &[
    Preset {
        developer_role: true,
        max_tokens: MaxTokensField::OpenAi,
        responses_api: true,
        vendor_prefixes: &["openai"],
        model_families: &["gpt", "chatgpt", "o1", "o3", "o4"],
        ..preset("openai", Some("https://api.openai.com/v1"))
    },
    Preset {
        developer_role: true,
        ..preset("openai-compatible", None)
    },
    Preset {
        developer_role: true,
        openrouter: true,
        ..preset("openrouter", Some("https://openrouter.ai/api/v1"))
    },
    preset("groq", Some("https://api.groq.com/openai/v1")),
    Preset {
        max_tokens: MaxTokensField::Legacy,
        ..preset("together", Some("https://api.together.xyz/v1"))
    },
    Preset {
        max_tokens: MaxTokensField::Legacy,
        stream_options: false,
        vendor_prefixes: &["mistralai"],
        model_families: &["mistral", "codestral", "ministral"],
        ..preset("mistral", Some("https://api.mistral.ai/v1"))
    },
    Preset {
        max_tokens: MaxTokensField::Legacy,
        vendor_prefixes: &["deepseek"],
        model_families: &["deepseek"],
        ..preset("deepseek", Some("https://api.deepseek.com/v1"))
    },
    Preset {
        max_tokens: MaxTokensField::Legacy,
        ..preset("fireworks", Some("https://api.fireworks.ai/inference/v1"))
    },
    Preset {
        developer_role: true,
        vendor_prefixes: &["x-ai"],
        model_families: &["grok"],
        ..preset("xai", Some("https://api.x.ai/v1"))
    },
    Preset {
        max_tokens: MaxTokensField::Legacy,
        ..preset("ollama", Some("http://127.0.0.1:11434/v1"))
    },
    preset("vllm", Some("http://127.0.0.1:8000/v1")),
];

/// Whether an OpenAI model is a reasoning model that rejects `max_tokens`.
pub(crate) fn is_openai_reasoning_model(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| m == *p || m.starts_with(&format!("{p}-")) || m.starts_with(&format!("{p}.")))
}
