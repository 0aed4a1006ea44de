//! Provider quotas and client-supplied provider keys.
//!
//! A provider's `rpm` / `tpm` is the quota the operator holds with it. Before each
//! attempt the engine asks the [`Limiter`] whether the target's provider has room (one
//! request, and the call's token estimate); one that has not is skipped like an
//! ejected target, and a call whose every target is over quota gets 429 with the
//! soonest time one fits. The tokens actually used are charged when the answer is in,
//! by [`QuotaCharger`], an observer.

use std::sync::Arc;
use std::time::Duration;

use crate::call::Call;
use crate::chat::Usage;
use crate::error::GatewayError;
use crate::limits::{estimate_tokens, Limiter, Take, TakeKind, Verdict};
use crate::router::{Plan, Target};

use super::kind::RequestKind;
use super::observer::{AttemptEnd, AttemptInfo, Observer, StreamEnd};

/// The bucket of a provider's quota.
fn bucket(provider: &str, what: &str) -> String {
    format!("provider:{provider}:{what}")
}

/// When `target`'s provider has no room for `call` under its quota: how long until it
/// would. `None`: go ahead (no quota, room, or a store that cannot answer under
/// `on_store_error = "allow"`).
pub(crate) async fn over_quota<R: RequestKind>(
    limiter: &Limiter,
    target: &Target,
    call: &Call<R>,
) -> Option<Duration> {
    let cfg = &target.provider.config;
    if cfg.rpm.is_none() && cfg.tpm.is_none() {
        return None;
    }
    let (rpm_bucket, tpm_bucket) = (
        bucket(&target.provider.name, "rpm"),
        bucket(&target.provider.name, "tpm"),
    );
    let mut takes = Vec::with_capacity(2);
    if let Some(per_minute) = cfg.rpm {
        takes.push(Take {
            bucket: &rpm_bucket,
            kind: TakeKind::Rate {
                per_minute,
                cost: 1,
            },
        });
    }
    if let Some(per_minute) = cfg.tpm {
        let estimate = estimate_tokens(call.client_body_len(), call.request().max_output_tokens());
        takes.push(Take {
            bucket: &tpm_bucket,
            kind: TakeKind::Peek {
                per_minute,
                cost: estimate,
            },
        });
    }
    match limiter.check(&takes).await {
        Verdict::Allowed(_) | Verdict::Unchecked => None,
        Verdict::Denied(d) => Some(d.retry_after.unwrap_or(Duration::from_secs(1))),
        Verdict::Unavailable => Some(Duration::from_secs(1)),
    }
}

/// A client sent its own provider key: every target the call may reach must take
/// one, or the call is a 400 (the key would otherwise be ignored on some, or sent
/// where the operator did not allow it).
pub(crate) fn check_client_key(plan: &Plan<'_>) -> Result<(), GatewayError> {
    let refusing: Vec<&str> = plan
        .targets
        .iter()
        .filter(|t| !t.provider.config.allow_client_key)
        .map(|t| t.provider.name.as_str())
        .collect();
    if refusing.is_empty() {
        return Ok(());
    }
    Err(GatewayError::bad_request(format!(
        "`x-modelway-provider-key` is not accepted for provider{} {}: only providers with `allow_client_key = true` take a client's key.",
        if refusing.len() == 1 { "" } else { "s" },
        refusing.join(", ")
    ))
    .with_code("client_key_not_allowed"))
}

/// Charges each answer's real token usage to its provider's `tpm` quota.
pub struct QuotaCharger {
    limiter: Arc<Limiter>,
}

impl QuotaCharger {
    pub fn new(limiter: Arc<Limiter>) -> Self {
        Self { limiter }
    }

    fn charge(&self, attempt: &AttemptInfo<'_>, tokens: u64) {
        let cfg = &attempt.target.provider.config;
        if let Some(per_minute) = cfg.tpm {
            self.limiter.charge(
                bucket(&attempt.target.provider.name, "tpm"),
                per_minute,
                tokens,
            );
        }
    }
}

impl Observer for QuotaCharger {
    fn attempt_ended(&self, attempt: &AttemptInfo<'_>, end: &AttemptEnd<'_>) {
        if attempt.target.provider.config.tpm.is_none() {
            return;
        }
        let tokens = match (end.answer, end.embeddings) {
            (Some(a), _) => a.facts().tokens,
            (None, Some(e)) => e.tokens(),
            (None, None) => None,
        };
        if let Some(t) = tokens {
            self.charge(attempt, t.input + t.output);
        }
    }

    fn stream_ended(&self, attempt: &AttemptInfo<'_>, end: &StreamEnd<'_>) {
        if attempt.target.provider.config.tpm.is_none() {
            return;
        }
        if let Some(u) = end.usage {
            self.charge(attempt, usage_tokens(u));
        }
    }
}

/// Input plus output tokens of a usage block.
pub fn usage_tokens(u: &Usage) -> u64 {
    u.prompt_tokens + u.completion_tokens
}
