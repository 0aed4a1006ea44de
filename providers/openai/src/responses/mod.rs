//! OpenAI's Responses API as the upstream (`POST {base_url}/responses`), for a Responses
//! client only: its body goes as it came, with the attempt's model spliced in, and the
//! answer and events come back byte for byte ([`Completion::Native`],
//! `ChatChunk::native`), each also read into the canonical model so telemetry, usage
//! and the engine's commit point see what they see of any answer.
//!
//! One edit is made: a reasoning input item whose `encrypted_content` starts with
//! [`CARRY_PREFIX`](modelway_core::dialect::responses::CARRY_PREFIX) is the gateway's own (Anthropic thinking carried through the
//! client, see [`modelway_core::dialect::responses`]) and OpenAI would reject it as
//! undecryptable, so it is removed and the body re-serialised — only then.
//!
//! `request.rs` builds the body, `response.rs` reads a whole answer, `stream.rs` the
//! event stream; errors are the chat path's (`crate::error`, `status_error`).

mod request;
mod response;
mod stream;

use std::time::Duration;

use bytes::Bytes;
use modelway_core::chat::{Completion, NativeCompletion};
use modelway_core::kit::{UpstreamBody, UpstreamRequest};
use modelway_core::{Attempt, ChunkStream, ClientDialect, ProviderError};

use crate::OpenAiProvider;

/// The upstream request to `url`: the client's body, its model the attempt's.
pub(crate) fn request(
    p: &OpenAiProvider,
    url: &http::Uri,
    attempt: &Attempt<'_>,
    stream: bool,
) -> Result<UpstreamRequest, ProviderError> {
    let raw = attempt
        .native_body(ClientDialect::Responses)
        .ok_or_else(|| ProviderError::InvalidRequest {
            // `OpenAiProvider::responses_url_for` sends only calls that have one.
            message: "a Responses upstream needs the client's Responses body".into(),
            param: None,
        })?;
    let body = request::body(raw, attempt.model())?;
    Ok(crate::request::post(p, url.clone(), body, stream, attempt))
}

/// A whole answer: the upstream's bytes, read into the canonical answer too.
pub(crate) fn parse(body: Bytes) -> Result<Completion, ProviderError> {
    let parsed = Box::new(response::parse(&body)?);
    Ok(Completion::Native(NativeCompletion {
        dialect: ClientDialect::Responses,
        body,
        parsed,
    }))
}

/// An event stream; `idle` bounds each wait for the next event.
pub(crate) fn chunks(body: UpstreamBody, idle: Duration) -> ChunkStream {
    stream::chunks(body, idle)
}
