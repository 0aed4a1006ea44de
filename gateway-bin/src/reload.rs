//! Loading the config file, and reloading it when it changes or on `SIGHUP`.
//!
//! The directory is watched (not the file), so editors that write a temp file and
//! rename it, `..data` symlink swaps and in-place rewrites all count. Bursts of events
//! are debounced; a reload happens only when the file's hash changed. A new snapshot
//! is built off the request path and swapped in whole; a rejected file changes
//! nothing that serves.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use modelway_core::{Config, ConfigError};
use sha2::{Digest, Sha256};

use crate::app::{App, ReloadStatus};

/// A config file read and validated (not yet built against the registry).
pub struct Loaded {
    pub config: Config,
    pub hash: String,
}

/// Reads and validates `path`.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        message: format!("cannot read {}: {e}", path.display()),
        line: None,
    })?;
    let hash = hash(&src);
    let config = Config::from_toml_str_in(&src, &|k| std::env::var(k).ok(), path.parent())?;
    Ok(Loaded { config, hash })
}

/// Hex SHA-256 of the file's text.
pub fn hash(src: &str) -> String {
    let digest = Sha256::digest(src.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The file is unchanged.
    Unchanged,
    /// A new snapshot serves.
    Applied { version: u64 },
    /// The file was rejected; the old snapshot keeps serving.
    Rejected,
}

/// Re-reads the config file and swaps in a new snapshot if it changed and is valid.
/// The file's text once two reads 50 ms apart agree (at most ~1 s of trying). An
/// editor or `fs::write` truncates the file before it writes it: a watcher woken in
/// between, on a busy machine, could read a valid prefix (`[auth]` alone is a valid
/// config, and so is an empty file) and swap it in. `None`: unreadable (mid-rename,
/// deleted), empty, or still changing; the next event retries.
fn read_settled(path: &Path) -> Option<String> {
    let read = || match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "config file not readable");
            None
        }
    };
    let mut last = read()?;
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = read()?;
        // An empty file is one caught between truncate and write, never a config
        // anyone means to serve: wait for its content.
        if now == last && !now.trim().is_empty() {
            return Some(now);
        }
        last = now;
    }
    tracing::warn!(path = %path.display(), "config file empty or still changing; not reloaded");
    None
}

pub fn reload(app: &Arc<App>) -> Outcome {
    let Some(path) = &app.config_path else {
        return Outcome::Unchanged;
    };
    let Some(src) = read_settled(path) else {
        return Outcome::Unchanged;
    };
    let h = hash(&src);
    let status = app.reload.load();
    if status.active_hash.as_deref() == Some(h.as_str()) {
        if status.last_error.is_some() {
            // The file is back to what serves: the rejected edit is history.
            app.reload.store(Arc::new(ReloadStatus {
                active_hash: Some(h),
                ..ReloadStatus::default()
            }));
        }
        return Outcome::Unchanged;
    }
    if status.last_error_hash.as_deref() == Some(h.as_str()) {
        return Outcome::Rejected; // same bad file: already logged
    }
    let result = Config::from_toml_str_in(&src, &|k| std::env::var(k).ok(), path.parent())
        .and_then(|c| {
            // A reload may not turn a keyed gateway into an open relay.
            match app.listen.get().and_then(|l| c.auth().open_relay(l)) {
                Some(e) => Err(e),
                None => Ok(c),
            }
        })
        .map_err(|e| e.to_string())
        .and_then(|c| {
            // A changed ledger is opened first: one that cannot be opened rejects the
            // whole file, and the old config and ledger keep serving.
            let ledger = crate::usage::reopen_if_changed(app, &c.usage().ledger)?;
            let snap = app.gateway.reload(c).map_err(|e| e.to_string())?;
            Ok((snap, ledger))
        });
    match result {
        Ok((snap, ledger)) => {
            app.telemetry.metrics.reloaded(true);
            if *snap.config.telemetry() != app.telemetry_config {
                tracing::warn!("[telemetry] changed: it takes effect at the next restart");
            }
            if let Some(ledger) = ledger {
                crate::usage::switch_to(app, ledger);
            }
            if snap.config.limits() != app.gateway.limiter().config() {
                tracing::warn!("[limits] changed: it takes effect at the next restart");
            }
            tracing::info!(version = snap.version, hash = %&h[..12], "config reloaded");
            app.reload.store(Arc::new(ReloadStatus {
                active_hash: Some(h),
                ..ReloadStatus::default()
            }));
            Outcome::Applied {
                version: snap.version,
            }
        }
        Err(e) => {
            app.telemetry.metrics.reloaded(false);
            tracing::error!(path = %path.display(), error = %e, "config rejected; the previous config keeps serving");
            app.reload.store(Arc::new(ReloadStatus {
                active_hash: status.active_hash.clone(),
                last_error: Some(e),
                last_error_at: Some(SystemTime::now()),
                last_error_hash: Some(h),
            }));
            Outcome::Rejected
        }
    }
}

/// How long the directory must be quiet before a reload.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Watches the config file's directory (when `watch`) and reloads on `SIGHUP`. Runs
/// until the process ends.
pub fn spawn_watcher(app: Arc<App>, watch: bool) -> anyhow::Result<()> {
    let Some(path) = app.config_path.clone() else {
        return Ok(());
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = if watch {
        let event_tx = tx.clone();
        let name = path.file_name().map(|n| n.to_os_string());
        let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Only events about the config file itself, or a `..data`-style link swap
            // (Kubernetes ConfigMaps); other files in the directory (logs, editor swap
            // files) do not cost a reload check.
            let relevant = res.is_ok_and(|ev| {
                ev.paths.iter().any(|p| match p.file_name() {
                    Some(f) => Some(f) == name.as_deref() || f.to_string_lossy().starts_with(".."),
                    None => true,
                })
            });
            if relevant {
                let _ = event_tx.send(());
            }
        })?;
        notify::Watcher::watch(
            &mut w,
            &watch_dir(&path),
            notify::RecursiveMode::NonRecursive,
        )?;
        Some(w)
    } else {
        None
    };

    #[cfg(unix)]
    {
        let hup_tx = tx.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading config");
                let _ = hup_tx.send(());
            }
        });
    }

    tokio::spawn(async move {
        let _watcher = watcher; // dropping it stops the watch
        while rx.recv().await.is_some() {
            // Debounce: wait until no event arrived for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let app = app.clone();
            // Building providers is synchronous work; keep it off the request threads.
            let _ = tokio::task::spawn_blocking(move || reload(&app)).await;
        }
    });
    Ok(())
}

fn watch_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
