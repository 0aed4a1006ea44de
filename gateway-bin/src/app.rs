//! Process-wide state shared by every connection.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use modelway_core::config::TelemetryConfig;
use modelway_core::Gateway;

use crate::limits::Admission;
use crate::telemetry::Telemetry;

/// What the admin endpoint reports about config loading.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// A hash of the file the active snapshot came from.
    pub active_hash: Option<String>,
    /// The last rejected file's error, cleared by the next successful load.
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    /// Hash of the file that produced `last_error` (to log each distinct error once).
    pub last_error_hash: Option<String>,
}

/// Shared state: the gateway, where its config came from, readiness.
pub struct App {
    pub gateway: Gateway,
    pub telemetry: Arc<Telemetry>,
    /// `[telemetry]` as it was at start (it is not reloaded).
    pub telemetry_config: TelemetryConfig,
    pub config_path: Option<PathBuf>,
    pub reload: ArcSwap<ReloadStatus>,
    /// The address being served (as given), for the open-relay check on reload.
    pub listen: std::sync::OnceLock<String>,
    /// Requests and body bytes held at once (`max_in_flight*`).
    pub admission: Arc<Admission>,
    /// What each key with a budget has spent this period.
    pub budgets: Arc<crate::budgets::Budgets>,
    ready: AtomicBool,
}

impl App {
    /// Wraps a gateway built from `config_path` (or the built-in quickstart). The
    /// gateway should already report to `telemetry`'s observers.
    pub fn new(
        gateway: Gateway,
        telemetry: Arc<Telemetry>,
        config_path: Option<PathBuf>,
        hash: Option<String>,
    ) -> Arc<Self> {
        let telemetry_config = gateway.snapshot().config.telemetry().clone();
        Arc::new(Self {
            gateway,
            telemetry,
            telemetry_config,
            config_path,
            reload: ArcSwap::from_pointee(ReloadStatus {
                active_hash: hash,
                ..ReloadStatus::default()
            }),
            listen: std::sync::OnceLock::new(),
            admission: Arc::new(Admission::default()),
            budgets: Arc::default(),
            ready: AtomicBool::new(false),
        })
    }

    /// Whether `/readyz` should answer 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the gateway ready (listener bound) or draining.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}
