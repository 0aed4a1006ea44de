use serde::Serialize;

use super::de::deserialize_with_extra;
use super::Extra;

/// Token accounting of one completion.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Input tokens, cached ones included.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output tokens, reasoning included.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Input and output tokens.
    #[serde(default)]
    pub total_tokens: u64,
    /// Breakdown of the input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Breakdown of the output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// Provider extras (`cost`, `queue_time`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The token counts telemetry and accounting read: `Copy`, so a stream's record keeps
/// them without cloning a [`Usage`] and its extras.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TokenCounts {
    /// `prompt_tokens`: every prompt token, cached and cache-written ones included.
    pub input: u64,
    /// `completion_tokens`: every output token, reasoning included.
    pub output: u64,
    /// `prompt_tokens_details.cached_tokens`.
    pub cached_input: Option<u64>,
    /// `completion_tokens_details.reasoning_tokens`.
    pub reasoning: Option<u64>,
    /// `prompt_tokens_details.cache_write_tokens` (Anthropic's cache creation, as the
    /// translation reports it).
    pub cache_write: Option<u64>,
    /// The cost the upstream itself reported, USD (OpenRouter's `usage.cost`).
    pub reported_cost: Option<f64>,
}

impl TokenCounts {
    /// As the price table counts them.
    pub fn tokens(&self) -> crate::usage::Tokens {
        crate::usage::Tokens {
            input: self.input,
            output: self.output,
            cached_input: self.cached_input.unwrap_or(0),
            cache_write: self.cache_write.unwrap_or(0),
            reasoning: self.reasoning.unwrap_or(0),
        }
    }
}

impl From<&Usage> for TokenCounts {
    fn from(u: &Usage) -> Self {
        Self {
            input: u.prompt_tokens,
            output: u.completion_tokens,
            cached_input: u
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens),
            reasoning: u
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens),
            cache_write: u
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.extra.get("cache_write_tokens"))
                .and_then(serde_json::Value::as_u64),
            reported_cost: u
                .extra
                .get("cost")
                .and_then(serde_json::Value::as_f64)
                .filter(|c| c.is_finite() && *c >= 0.0),
        }
    }
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PromptTokensDetails {
    /// Input tokens served from the upstream's prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    /// Input audio tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u64>,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CompletionTokensDetails {
    /// Output tokens spent reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// Output audio tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u64>,
    /// Predicted tokens that appeared in the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_prediction_tokens: Option<u64>,
    /// Predicted tokens that did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_prediction_tokens: Option<u64>,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

deserialize_with_extra!(Usage {
    prompt_tokens: "prompt_tokens" => default,
    completion_tokens: "completion_tokens" => default,
    total_tokens: "total_tokens" => default,
    prompt_tokens_details: "prompt_tokens_details" => opt,
    completion_tokens_details: "completion_tokens_details" => opt,
});
deserialize_with_extra!(PromptTokensDetails {
    cached_tokens: "cached_tokens" => opt,
    audio_tokens: "audio_tokens" => opt,
});
deserialize_with_extra!(CompletionTokensDetails {
    reasoning_tokens: "reasoning_tokens" => opt,
    audio_tokens: "audio_tokens" => opt,
    accepted_prediction_tokens: "accepted_prediction_tokens" => opt,
    rejected_prediction_tokens: "rejected_prediction_tokens" => opt,
});
