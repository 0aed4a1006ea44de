//! Ingress dialects: pure codecs between the wire formats clients speak and the
//! canonical [`crate::chat`] model — a request decoded, an answer, a stream and an
//! error encoded back. The gateway's front doors call them; embedders may too.

pub mod messages;
pub mod responses;
