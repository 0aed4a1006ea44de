//! `[usage]`: where usage records go and what tokens cost.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::raw::RawUsage;
use super::{ConfigError, Validator};
use crate::usage::PriceTable;

/// `[usage]`, validated.
#[derive(Debug, Clone, Default)]
pub struct UsageConfig {
    /// `ledger`: where each call's usage is recorded.
    pub ledger: LedgerConfig,
    /// The price file's table with the inline `[[usage.prices]]` over it.
    pub prices: Arc<PriceTable>,
    /// The price file, resolved against the config file's directory.
    pub prices_file: Option<PathBuf>,
}

impl PartialEq for UsageConfig {
    fn eq(&self, other: &Self) -> bool {
        self.ledger == other.ledger && self.prices_file == other.prices_file
    }
}

/// `usage.ledger`.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum LedgerConfig {
    /// No ledger: in-memory totals only (lost on restart).
    #[default]
    Memory,
    /// `sqlite:PATH`, resolved against the config file's directory.
    Sqlite(PathBuf),
    /// `postgres://…` (or `postgresql://…`): one ledger shared by every replica. The
    /// URL may hold a password: it prints redacted.
    Postgres(String),
}

impl std::fmt::Debug for LedgerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl LedgerConfig {
    /// As shown on `/admin/config`.
    pub fn describe(&self) -> String {
        match self {
            Self::Memory => "memory".to_owned(),
            Self::Sqlite(p) => format!("sqlite:{}", p.display()),
            Self::Postgres(url) => super::auth::redact_url(url),
        }
    }
}

fn resolve(base: Option<&Path>, p: &str) -> PathBuf {
    let p = Path::new(p);
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.to_path_buf(),
    }
}

impl Validator<'_> {
    pub(super) fn usage(&self, raw: RawUsage) -> Result<UsageConfig, ConfigError> {
        let line = |k| self.lines.key(&["usage", k]);
        let mut out = UsageConfig::default();
        if let Some(l) = raw.ledger {
            let l = self.expand("usage.ledger", &l)?;
            out.ledger = if let Some(path) = l.strip_prefix("sqlite:") {
                let path = path.trim_start_matches("//");
                if path.is_empty() {
                    return Err(ConfigError::new(
                        "`usage.ledger` needs a file: \"sqlite:usage.db\"",
                        line("ledger"),
                    ));
                }
                LedgerConfig::Sqlite(resolve(self.base, path))
            } else if l.starts_with("postgres://") || l.starts_with("postgresql://") {
                if l.split_once("://").is_some_and(|(_, rest)| rest.is_empty()) {
                    return Err(ConfigError::new(
                        "`usage.ledger` needs a server: \"postgres://user:password@host:5432/db\"",
                        line("ledger"),
                    ));
                }
                LedgerConfig::Postgres(l)
            } else {
                return Err(ConfigError::new(
                    format!(
                        "`usage.ledger` must be \"sqlite:PATH\" or \"postgres://…\", got `{}`",
                        super::auth::redact_url(&l)
                    ),
                    line("ledger"),
                ));
            };
        }
        let mut table = PriceTable::default();
        match raw.prices {
            None => {}
            Some(toml::Value::String(file)) => {
                let file = self.expand("usage.prices", &file)?;
                let path = resolve(self.base, &file);
                let src = std::fs::read_to_string(&path).map_err(|e| {
                    ConfigError::new(
                        format!("`usage.prices`: cannot read {}: {e}", path.display()),
                        line("prices"),
                    )
                })?;
                table = PriceTable::parse(&src, &path.display().to_string()).map_err(|e| {
                    ConfigError::new(format!("`usage.prices`: {e}"), line("prices"))
                })?;
                out.prices_file = Some(path);
            }
            Some(toml::Value::Array(entries)) => {
                // Inline `[[usage.prices]]`: the same shape as a price file's entries.
                let mut doc = toml::Table::new();
                doc.insert("prices".into(), toml::Value::Array(entries));
                let text = toml::to_string(&doc).map_err(|e| {
                    ConfigError::new(format!("`usage.prices`: {e}"), line("prices"))
                })?;
                table = PriceTable::parse(&text, "[[usage.prices]]").map_err(|e| {
                    ConfigError::new(e.to_string(), self.lines.key(&["usage", "prices"]))
                })?;
            }
            Some(_) => {
                return Err(ConfigError::new(
                    "`usage.prices` must be a price file's path or [[usage.prices]] tables",
                    line("prices"),
                ))
            }
        }
        out.prices = Arc::new(table);
        Ok(out)
    }
}
