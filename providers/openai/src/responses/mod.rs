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

use modelway_core::chat::{Completion, NativeCompletion};
use modelway_core::http_client::{read_body, status_error};
use modelway_core::{Answer, Attempt, ChunkStream, ClientDialect, ProviderError};

use crate::OpenAiProvider;

/// A whole answer from `url`.
pub(crate) async fn chat(
    p: &OpenAiProvider,
    url: &http::Uri,
    attempt: &Attempt<'_>,
) -> Result<Answer<Completion>, ProviderError> {
    let resp = send(p, url, attempt, false).await?;
    let limits = modelway_core::limits::UpstreamLimits::from_headers(resp.headers());
    let body = read_body(resp.into_body(), attempt.timeouts.head).await?;
    let parsed = Box::new(response::parse(&body)?);
    let mut answer = Answer::new(Completion::Native(NativeCompletion {
        dialect: ClientDialect::Responses,
        body,
        parsed,
    }));
    answer.limits = limits;
    Ok(answer)
}

/// An event stream from `url`.
pub(crate) async fn chat_stream(
    p: &OpenAiProvider,
    url: &http::Uri,
    attempt: &Attempt<'_>,
) -> Result<Answer<ChunkStream>, ProviderError> {
    let resp = send(p, url, attempt, true).await?;
    let limits = modelway_core::limits::UpstreamLimits::from_headers(resp.headers());
    let mut answer = Answer::new(stream::chunks(resp, &attempt.timeouts).await?);
    answer.limits = limits;
    Ok(answer)
}

/// Sends the client's body; the response head is a success.
async fn send(
    p: &OpenAiProvider,
    url: &http::Uri,
    attempt: &Attempt<'_>,
    stream: bool,
) -> Result<http::Response<hyper::body::Incoming>, ProviderError> {
    let raw = attempt
        .native_body(ClientDialect::Responses)
        .ok_or_else(|| ProviderError::InvalidRequest {
            // `OpenAiProvider::responses_url_for` sends only calls that have one.
            message: "a Responses upstream needs the client's Responses body".into(),
            param: None,
        })?;
    let body = request::body(raw, attempt.model())?;
    let http_req = crate::request::post(p, url.clone(), body, stream, attempt);
    let t = &attempt.timeouts;
    let resp = p.http.send_attempt(http_req, t).await?;
    if !resp.status().is_success() {
        return Err(status_error(resp, t.head).await);
    }
    Ok(resp)
}
