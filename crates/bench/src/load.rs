//! What `loadgen` prints: one JSON object per run, preceded by marker lines the
//! orchestrator uses to read a process's CPU time exactly over the measured window.

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// Printed on stdout when the measured window starts (after the warm-up).
pub const MARK_START: &str = "@measure-start";
/// Printed on stdout when the measured window ends.
pub const MARK_END: &str = "@measure-end";

/// The result of one `loadgen` run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadReport {
    /// `latency`, `rate`, `max` or `stream`.
    pub mode: String,
    /// Requests counted in the measured window (scheduled in it, for `rate`).
    pub requests: u64,
    /// Of those, the ones that succeeded.
    pub ok: u64,
    pub errors: u64,
    /// A few distinct error messages.
    pub error_samples: Vec<String>,
    /// Length of the measured window, seconds.
    pub window_s: f64,
    /// Successful requests per second over the window.
    pub achieved_rps: f64,
    /// For `rate`: the rate asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rps: Option<f64>,
    /// Send to end of body (`rate`: from the scheduled send time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Summary>,
    /// `rate` only: how late the driver actually started each request after its
    /// scheduled time (its own noise, included in `latency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag: Option<Summary>,
    /// Most connections open at once.
    pub connections: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamReport>,
}

/// Streaming figures, one sample per stream unless said otherwise.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamReport {
    /// Content chunks each stream must carry.
    pub expected_chunks: u32,
    /// Streams that ended (`[DONE]`, or `message_stop`) after every content chunk, in
    /// order.
    pub complete: u64,
    pub incomplete: u64,
    /// Send to response head.
    pub ttfb: Option<Summary>,
    /// Send to the first chunk with non-empty content.
    pub ttfc: Option<Summary>,
    /// Per stream, the largest gap between consecutive content chunks.
    pub max_gap: Option<Summary>,
    /// Per content chunk (all streams): upstream write to client receipt.
    pub transit: Option<Summary>,
    /// Per stream, the largest transit of any of its chunks.
    pub max_transit: Option<Summary>,
}
