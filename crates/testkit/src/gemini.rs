//! The mock's default Gemini answers (`POST /v1beta/models/{model}:generateContent`
//! and `:streamGenerateContent?alt=sse`). (Skeleton: being built.)

use http::HeaderMap;

use crate::Reply;

/// The default answer to `POST /v1beta/models/{model}:{method}`.
pub(crate) fn generate(
    _model: &str,
    _method: &str,
    _query: Option<&str>,
    _headers: &HeaderMap,
    _body: &[u8],
) -> Reply {
    Reply::error(501, "the Gemini mock is not built yet")
}
