//! The OpenAI Responses API (`POST /v1/responses`) as an ingress dialect, stateless
//! (WIRE.md §9.2): [`decode_request`] turns a `CreateResponse` body into the canonical
//! [`ChatRequest`](crate::chat::ChatRequest), [`encode_response`] turns a canonical
//! answer into a `response` object, and [`StreamEncoder`] turns canonical chunks into
//! the Responses event stream. No I/O and no routing: the HTTP handler calls these.
//! `examples/responses_sdk_check.py` runs what they produce through the official openai
//! and Agents SDKs.
//!
//! Request rules (`CreateResponse` → chat):
//!
//! | Responses | canonical chat |
//! |---|---|
//! | `input` string | one `user` message |
//! | `input[]` message items (with or without `type: "message"`) | a message of that role; a content array of one text part becomes a string (many servers take only strings), longer ones stay parts |
//! | `input_text`, `output_text` / `refusal` parts | `text` parts / the assistant's `refusal` |
//! | `input_image {image_url, detail}`, `input_file {file_data, filename}`, `input_audio` | `image_url` (`detail: original` dropped), `file`, `input_audio` parts |
//! | `function_call {call_id, name, arguments}` | assistant `tool_calls[{id: call_id, …}]`; consecutive calls and the assistant message just before them form one message |
//! | `function_call_output {call_id, output}` | a `tool` message (`output` string or parts) |
//! | `reasoning` items | dropped, except the signed thinking this codec put in `encrypted_content` itself (see below) |
//! | `instructions` | a leading `system` message |
//! | flat function `tools[] {name, description, parameters, strict}` | `tools[].function` |
//! | `tool_choice` mode, `{type:"function", name}`, `allowed_tools` | the chat shapes |
//! | `text.format` (`text`, `json_object`, `json_schema`), `text.verbosity` | `response_format` (none for `text`), `verbosity` |
//! | `reasoning.effort`, `max_output_tokens` | `reasoning_effort`, `max_completion_tokens` |
//! | `temperature`, `top_p`, `parallel_tool_calls`, `user`, `safety_identifier`, `prompt_cache_key`, `prompt_cache_retention`, `prompt_cache_options`, `service_tier` | the same names |
//! | `top_logprobs`, `include: ["message.output_text.logprobs"]` | `logprobs: true`, `top_logprobs` |
//! | `stream: true`, `stream_options.include_obfuscation` | `stream` with `stream_options.include_usage: true`, the same |
//! | `metadata`, `truncation`, `max_tool_calls`, `include`, `store: false` | echoed in the answer or ignored, never sent (chat `metadata` requires `store`) |
//! | any other field | forwarded in `extra`, like the chat path's provider extensions (`top_k`, …) |
//!
//! What only OpenAI can serve — server-side state (`previous_response_id`, `conversation`,
//! `store: true`, `background`, `prompt`, `context_management`), hosted tools and their
//! items, `moderation`, uploaded files (`file_id`, `file_url`) — is named in
//! [`Decoded::stateful`] rather than refused here, so the handler can forward the body to
//! OpenAI as it came, or answer 400 naming it.
//!
//! Answer rules (chat → `response`): choice 0 only (Responses has no `n`); output items in
//! the order reasoning (`reasoning_content`, as a summary), message (`output_text` with
//! `annotations` and `logprobs`, or `refusal`), one `function_call` per tool call
//! (`call_id` = the canonical tool-call id); finish `length` / `content_filter` →
//! `status: "incomplete"` with that `incomplete_details.reason`, anything else →
//! `completed`; `usage` with both detail objects always present.
//!
//! Signed thinking survives a round trip: Anthropic rejects a tool-use turn of a thinking
//! conversation whose assistant turn lacks its signed `thinking` blocks, and a Responses
//! client has nowhere to keep them but the reasoning item. So an answer's
//! `thinking_blocks` go into that item's `encrypted_content` (prefixed
//! [`CARRY_PREFIX`]); when a client replays the item (the Agents SDK does), they become
//! the `thinking_blocks` of the next assistant message again. Any other reasoning item
//! (OpenAI's own encrypted reasoning, plain summaries) is dropped: no other upstream
//! takes thoughts back.

mod request;
mod response;
mod stream;

pub use request::{decode_request, Decoded, Echo};
pub use response::encode_response;
pub use stream::StreamEncoder;

/// Marks the `encrypted_content` this codec writes on reasoning items (see the module
/// docs): the rest is a JSON object `{"thinking_blocks": [...]}`. Content without it is
/// someone else's (OpenAI's) and is never parsed.
pub const CARRY_PREFIX: &str = "modelway.v1:";
