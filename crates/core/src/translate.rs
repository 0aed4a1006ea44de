//! Pieces every translating provider needs: the rule for a parameter the upstream
//! cannot express ([`Unsupported`]: a hint is dropped and reported, anything else is a
//! 400 naming it unless the provider is configured `drop_unsupported = true`), the 400
//! for a request that must be refused whatever the setting, base64 data URLs, and
//! short excerpts of upstream bodies for error messages.

use crate::error::ProviderError;

/// The OpenAI request parameters that only tune *how* the model answers — style,
/// latency, price tier, caching, storage, abuse tracking — never *what* the client
/// gets back. An upstream that cannot express one drops it and lists it in
/// `x-modelway-dropped-params`, whatever `drop_unsupported` says: refusing the
/// request would fail clients that send them by default (the Agents SDK sends
/// `verbosity`) for no difference in the answer's shape.
///
/// Everything else a provider cannot express (`n > 1`, `logprobs`, audio output,
/// penalties, `seed`, …) changes what the client gets: a 400 naming it, unless
/// `drop_unsupported`. Each provider's docs list, per parameter, which of the two it
/// is there and what a mapped one becomes.
///
/// | parameter | what it tunes |
/// |---|---|
/// | `verbosity` | the length and style of a GPT-5 answer |
/// | `service_tier` | the latency and price tier (a tier the upstream has is mapped) |
/// | `store` | whether OpenAI keeps the completion |
/// | `metadata` | tags for OpenAI's dashboard (Anthropic's `user_id` is mapped) |
/// | `prediction` | predicted output, a latency optimisation |
/// | `prompt_cache_key`, `prompt_cache_retention`, `prompt_cache_options` | prompt-cache routing and lifetime |
/// | `safety_identifier`, `user` | an id for abuse tracking (mapped where the upstream has one) |
pub const HINTS: &[&str] = &[
    "verbosity",
    "service_tier",
    "store",
    "metadata",
    "prediction",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "safety_identifier",
    "user",
];

/// Whether `param` only tunes how the model answers (see [`HINTS`]).
pub fn is_hint(param: &str) -> bool {
    HINTS.contains(&param)
}

/// Decides what happens to a parameter the upstream cannot express — a [hint](HINTS)
/// is dropped, anything else is refused unless the provider's `drop_unsupported` says
/// drop — and remembers what it dropped (returned in [`crate::Answer::dropped`], for
/// `x-modelway-dropped-params`).
#[derive(Debug)]
pub struct Unsupported<'a> {
    provider: &'a str,
    dialect: &'static str,
    drop: bool,
    dropped: Vec<String>,
}

impl<'a> Unsupported<'a> {
    /// For provider `provider` (its configured name) speaking `dialect` (`"Anthropic"`,
    /// `"Gemini"`, …), dropping instead of refusing when `drop_unsupported`.
    pub fn new(provider: &'a str, dialect: &'static str, drop_unsupported: bool) -> Self {
        Self {
            provider,
            dialect,
            drop: drop_unsupported,
            dropped: Vec::new(),
        }
    }

    /// `Ok(())` when `param` is dropped (and recorded once): always for a hint, else
    /// only with `drop_unsupported`. Otherwise a 400 naming it, with `why` and the way
    /// out.
    pub fn reject_or_drop(&mut self, param: &str, why: &str) -> Result<(), ProviderError> {
        if self.drop || is_hint(param) {
            self.drop_hint(param);
            return Ok(());
        }
        Err(ProviderError::InvalidRequest {
            message: format!(
                "`{param}` is not supported by provider `{}` ({}): {why}. \
                 Remove it, or set `drop_unsupported = true` on the provider to drop it.",
                self.provider, self.dialect
            ),
            param: Some(param.to_owned()),
        })
    }

    /// Records `param` as dropped (once): for a hint the upstream cannot express, or
    /// one whose meaning another parameter already carries.
    pub fn drop_hint(&mut self, param: &str) {
        if !self.dropped.iter().any(|d| d == param) {
            self.dropped.push(param.to_owned());
        }
    }

    /// The parameters dropped so far, in the order first met.
    pub fn dropped(&self) -> &[String] {
        &self.dropped
    }

    /// The parameters dropped, in the order first met.
    pub fn into_dropped(self) -> Vec<String> {
        self.dropped
    }
}

/// A 400 the client must fix, naming `param`. No `drop_unsupported` escape: dropping
/// would change the conversation itself.
pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidRequest {
        message: message.into(),
        param: Some(param.into()),
    }
}

/// `data:<mime>;base64,<data>` → `(mime, data)`; `None` for any other URL.
pub fn split_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    Some((mime, data))
}

/// At most the first 200 bytes of an upstream body (cut at a character boundary,
/// invalid UTF-8 replaced), for error messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_parameters_are_refused_or_dropped_once() {
        let mut loud = Unsupported::new("claude", "Anthropic", false);
        match loud.reject_or_drop("logprobs", "no log probabilities") {
            Err(ProviderError::InvalidRequest { message, param }) => {
                assert_eq!(param.as_deref(), Some("logprobs"));
                assert!(message.contains("`logprobs` is not supported by provider `claude` (Anthropic): no log probabilities."), "{message}");
                assert!(message.contains("drop_unsupported = true"));
            }
            other => panic!("{other:?}"),
        }
        assert!(loud.dropped().is_empty());

        let mut quiet = Unsupported::new("gem", "Gemini", true);
        quiet.reject_or_drop("seed", "x").unwrap();
        quiet.reject_or_drop("logit_bias", "x").unwrap();
        quiet.reject_or_drop("seed", "x").unwrap();
        assert_eq!(quiet.into_dropped(), ["seed", "logit_bias"]);
    }

    #[test]
    fn hints_are_dropped_and_listed_whatever_drop_unsupported_says() {
        for drop in [false, true] {
            let mut u = Unsupported::new("claude", "Anthropic", drop);
            for hint in HINTS {
                u.reject_or_drop(hint, "x").unwrap();
            }
            assert_eq!(u.dropped(), HINTS, "drop_unsupported = {drop}");
        }
        let mut loud = Unsupported::new("claude", "Anthropic", false);
        for shape in ["n", "logprobs", "audio", "modalities", "seed"] {
            assert!(!is_hint(shape), "{shape}");
            assert!(loud.reject_or_drop(shape, "x").is_err(), "{shape}");
        }
    }

    #[test]
    fn data_urls_and_snippets() {
        assert_eq!(
            split_data_url("data:image/png;base64,iVBOR"),
            Some(("image/png", "iVBOR"))
        );
        assert_eq!(split_data_url("data:image/png,raw"), None);
        assert_eq!(split_data_url("https://x/y.png"), None);
        assert_eq!(snippet(b"short"), "short");
        let long = "é".repeat(150);
        let s = snippet(long.as_bytes());
        assert!(s.len() <= 200 && long.starts_with(&s));
        assert_eq!(snippet(b"\xff ok"), "\u{fffd} ok");
        match invalid("messages", "must not be empty") {
            ProviderError::InvalidRequest { message, param } => {
                assert_eq!(
                    (message.as_str(), param.as_deref()),
                    ("must not be empty", Some("messages"))
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
