//! Ingress dialects: other APIs clients speak, decoded into the canonical [`crate::chat`] model and encoded back.
pub mod responses;
