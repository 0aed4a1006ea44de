//! The mock's default Anthropic Messages answers (`POST /v1/messages`).
//! (Skeleton: being built.)

use http::HeaderMap;

use crate::Reply;

/// The default answer to `POST /v1/messages`.
pub(crate) fn messages(_headers: &HeaderMap, _body: &[u8]) -> Reply {
    Reply::error(501, "the Anthropic mock is not built yet")
}
