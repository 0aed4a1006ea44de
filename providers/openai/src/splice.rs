//! The model splice lives in core ([`modelway_core::splice`]): the Anthropic provider
//! forwards a Messages client's bytes the same way.

pub(crate) use modelway_core::splice::with_model;
