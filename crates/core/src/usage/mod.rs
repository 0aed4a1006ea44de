//! Usage accounting: what a call consumed and what it cost.
//!
//! [`prices`] holds the price table (USD per 1M tokens, keyed by `provider/model`)
//! and the token counts a cost is computed from ([`Tokens`], OpenAI's inclusive
//! convention: `input` includes cached and cache-written tokens, `output` includes
//! reasoning tokens).

pub mod prices;

pub use prices::{Price, PriceTable, Tokens};
