//! Calls only a passthrough upstream can serve.
//!
//! A client may ask for something the canonical model cannot carry — a Responses
//! client's `previous_response_id` names a conversation OpenAI keeps, and no
//! translation can send it anywhere else. Such a call is marked by its ingress
//! ([`Call::needing_native`]); before its targets are ordered, the plan keeps only
//! those whose provider [forwards the client's dialect as sent]
//! (crate::Provider::forwards_natively) and that do not edit the request (a target's
//! `params` would drop the client's bytes). None left: a 400 naming the feature, never
//! a translation that silently drops it.

use std::borrow::Cow;

use crate::call::Call;
use crate::error::GatewayError;
use crate::router::{Plan, Target};

use super::kind::RequestKind;

/// Whether `target` sends `call`'s own bytes upstream.
fn forwards<R>(target: &Target, call: &Call<R>) -> bool {
    target.params.is_none() && target.provider.provider.forwards_natively(call.dialect())
}

/// `plan` narrowed to the targets that can serve `call`, which needs `feature`; a 400
/// naming it when there is none.
pub(crate) fn restrict<'a, R: RequestKind>(
    plan: Plan<'a>,
    call: &Call<R>,
    feature: &str,
) -> Result<Plan<'a>, GatewayError> {
    let bytes_kept = call.native_body(call.dialect()).is_some();
    if bytes_kept && plan.targets.iter().all(|t| forwards(t, call)) {
        return Ok(plan);
    }
    let kept: Vec<Target> = if bytes_kept {
        plan.targets
            .iter()
            .filter(|t| forwards(t, call))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    if kept.is_empty() {
        let api = call.dialect().api_name();
        let edited = if plan.targets.iter().any(|t| t.params.is_some()) {
            " (a target with `params` edits the request, so it cannot)"
        } else {
            ""
        };
        return Err(GatewayError::bad_request(format!(
            "`{feature}` can only be served by the {api} itself, and no target of model `{}` \
             takes {api} requests as sent{edited}. The gateway does not drop it: route the \
             model to such a provider, or leave `{feature}` out.",
            call.request().model()
        ))
        .with_param(feature)
        .with_code("unsupported_parameter"));
    }
    Ok(Plan {
        targets: Cow::Owned(kept),
        ..plan
    })
}
