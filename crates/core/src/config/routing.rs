//! `[routing]` and `[[routes]]`: the default provider, the policy keys at every level
//! (routing, route, target table), hedging, health thresholds and target `params`.

use std::fmt;
use std::time::Duration;

use super::raw::{self, RawPolicy};
use super::{parse_duration, ConfigError, Validator};
use crate::policy::{HealthSettings, PolicyLayer, StrategyKind};

/// `[routing]`.
#[derive(Debug, Clone, Default)]
pub struct RoutingConfig {
    /// `default_provider`: serves a model no route or slug resolves.
    pub default_provider: Option<String>,
    /// The policy keys set on `[routing]` (the defaults of every route).
    pub policy: PolicyLayer,
    /// `health`: when targets are ejected and re-admitted.
    pub health: HealthSettings,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// `name`: what clients send as `model`.
    pub name: String,
    /// `strategy`: how targets are ordered (`fallback`, `weighted`, `latency`).
    pub strategy: StrategyKind,
    /// `targets`: where the route's calls go.
    pub targets: Vec<TargetSpec>,
    /// The policy keys set on the route.
    pub policy: PolicyLayer,
    /// `hedge_after` / `hedge_max` / `hedge_budget`, when the route hedges.
    pub hedge: Option<crate::policy::Hedge>,
}

/// A route target: a configured provider and the model name to send it, with what
/// its table sets.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    /// The configured provider's name.
    pub provider: String,
    /// The model name sent upstream.
    pub model: String,
    /// Relative share under the `weighted` strategy (default 1).
    pub weight: u32,
    /// The policy keys set on the target table.
    pub policy: PolicyLayer,
    /// Request parameters this target overrides (`params = { max_tokens = 1024 }`).
    pub params: Option<crate::chat::Extra>,
}

impl TargetSpec {
    /// A plain `provider/model` target.
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            model: model.into(),
            weight: 1,
            policy: PolicyLayer::default(),
            params: None,
        }
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

/// The longest any policy duration may be: longer ones are mistakes, and would
/// overflow a deadline computed from now.
pub const MAX_POLICY_DURATION: Duration = Duration::from_secs(86_400);
/// The most retries per target.
pub const MAX_RETRIES: u32 = 100;

impl Validator<'_> {
    /// The policy keys of one table; `line` finds a key's line.
    pub(super) fn policy(
        &self,
        table: &str,
        raw: RawPolicy<'_>,
        line: &dyn Fn(&'static str) -> Option<usize>,
    ) -> Result<PolicyLayer, ConfigError> {
        let mut d = [None; 7];
        for (slot, (key, value)) in d.iter_mut().zip(raw.durations) {
            if let Some(v) = value {
                let parsed = self.duration(&format!("{table}.{key}"), v, line(key))?;
                if parsed > MAX_POLICY_DURATION {
                    return Err(ConfigError::new(
                        format!("`{table}.{key}` must be at most a day ({v} is longer)"),
                        line(key),
                    ));
                }
                if parsed.is_zero() && key != "max_retry_after" {
                    return Err(ConfigError::new(
                        format!("`{table}.{key}` must be longer than 0"),
                        line(key),
                    ));
                }
                *slot = Some(parsed);
            }
        }
        let backoff = match raw.backoff {
            None => None,
            Some(b) => {
                let defaults = crate::policy::Backoff::default();
                let part = |k: &str, v: &Option<String>, dflt| match v {
                    Some(v) => self.duration(&format!("{table}.backoff.{k}"), v, line("backoff")),
                    None => Ok(dflt),
                };
                let base = part("base", &b.base, defaults.base)?;
                let max = part("max", &b.max, defaults.max.max(base))?;
                if base > max {
                    return Err(ConfigError::new(
                        format!("`{table}.backoff.base` ({base:?}) is longer than `max` ({max:?})"),
                        line("backoff"),
                    ));
                }
                Some(crate::policy::Backoff { base, max })
            }
        };
        let [max_retry_after, connect_timeout, timeout, first_token_timeout, idle_timeout, deadline, stream_keepalive] =
            d;
        if let Some(r) = raw.retries.filter(|&r| r > MAX_RETRIES) {
            return Err(ConfigError::new(
                format!("`{table}.retries` must be at most {MAX_RETRIES}, got {r}"),
                line("retries"),
            ));
        }
        Ok(PolicyLayer {
            retries: raw.retries,
            backoff,
            max_retry_after,
            connect_timeout,
            timeout,
            first_token_timeout,
            idle_timeout,
            deadline,
            stream_keepalive,
        })
    }

    /// A route's hedging keys: `hedge_after` turns hedging on; the others need it.
    pub(super) fn hedge(
        &self,
        r: &raw::RawRoute,
        line: &dyn Fn(&'static str) -> Option<usize>,
    ) -> Result<Option<crate::policy::Hedge>, ConfigError> {
        use crate::policy::{Hedge, HedgeAfter};
        let what = format!("routes[{}]", r.name);
        let Some(after) = &r.hedge_after else {
            for (key, set) in [
                ("hedge_max", r.hedge_max.is_some()),
                ("hedge_budget", r.hedge_budget.is_some()),
            ] {
                if set {
                    return Err(ConfigError::new(
                        format!("`{what}.{key}` needs `hedge_after`"),
                        line(key),
                    ));
                }
            }
            return Ok(None);
        };
        let after = self.expand(&format!("{what}.hedge_after"), after)?;
        let after = match after.as_str() {
            p if p.starts_with('p')
                && p[1..].parse::<u8>().is_ok_and(|n| (50..=99).contains(&n)) =>
            {
                HedgeAfter::Percentile(f64::from(p[1..].parse::<u8>().unwrap_or(95)) / 100.0)
            }
            d => {
                let d = parse_duration(d).map_err(|e| {
                    ConfigError::new(
                        format!("`{what}.hedge_after`: {e} (or a percentile such as \"p95\")"),
                        line("hedge_after"),
                    )
                })?;
                if d.is_zero() || d > MAX_POLICY_DURATION {
                    return Err(ConfigError::new(
                        format!("`{what}.hedge_after` must be longer than 0 and at most a day"),
                        line("hedge_after"),
                    ));
                }
                HedgeAfter::Fixed(d)
            }
        };
        let max = r.hedge_max.unwrap_or(1);
        if !(1..=4).contains(&max) {
            return Err(ConfigError::new(
                format!("`{what}.hedge_max` must be between 1 and 4, got {max}"),
                line("hedge_max"),
            ));
        }
        let budget = r.hedge_budget.unwrap_or(Hedge::DEFAULT_BUDGET);
        if !(budget > 0.0 && budget <= 1.0) {
            return Err(ConfigError::new(
                format!("`{what}.hedge_budget` must be a share in (0, 1], got {budget}"),
                line("hedge_budget"),
            ));
        }
        Ok(Some(Hedge { after, max, budget }))
    }

    pub(super) fn health(
        &self,
        h: &raw::RawHealth,
        line: Option<usize>,
    ) -> Result<HealthSettings, ConfigError> {
        let mut out = HealthSettings::default();
        if let Some(f) = h.failures {
            if f == 0 {
                return Err(ConfigError::new(
                    "`routing.health.failures` must be at least 1",
                    line,
                ));
            }
            out.failures = f;
        }
        if let Some(c) = &h.cooldown {
            out.cooldown = self.duration("routing.health.cooldown", c, line)?;
        }
        out.max_cooldown = match &h.max_cooldown {
            Some(c) => self.duration("routing.health.max_cooldown", c, line)?,
            None => out.max_cooldown.max(out.cooldown),
        };
        if out.max_cooldown > MAX_POLICY_DURATION {
            return Err(ConfigError::new(
                "`routing.health` cooldowns must be at most a day",
                line,
            ));
        }
        if out.max_cooldown < out.cooldown {
            return Err(ConfigError::new(
                "`routing.health.max_cooldown` is shorter than `cooldown`",
                line,
            ));
        }
        Ok(out)
    }

    /// A target's request overrides, checked once: they must leave a valid request.
    pub(super) fn params(
        &self,
        what: &str,
        params: &toml::Table,
        line: Option<usize>,
    ) -> Result<crate::chat::Extra, ConfigError> {
        let bad = |m: String| ConfigError::new(format!("`{what}.params`: {m}"), line);
        for key in ["model", "messages", "stream"] {
            if params.contains_key(key) {
                return Err(bad(format!("`{key}` cannot be overridden")));
            }
        }
        let serde_json::Value::Object(map) =
            serde_json::to_value(params).map_err(|e| bad(e.to_string()))?
        else {
            return Err(bad("must be a table".to_owned()));
        };
        let probe = crate::chat::ChatRequest::new("probe", Vec::new());
        crate::policy::apply_params(&probe, &map).map_err(|e| bad(e.to_string()))?;
        Ok(map)
    }
}
