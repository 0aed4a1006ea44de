//! Ingress dialects: pure codecs between a client's wire format and the canonical model.

pub mod messages;
