//! `GET /admin/config`: the active snapshot and the last reload error, secrets
//! redacted; `GET /admin/health`: every target's health. Both need the admin key and
//! are disabled without one.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use modelway_core::GatewayError;
use serde_json::json;

use super::{json_response, presented_key, Body};
use crate::app::App;

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks the admin key of `snap`'s config.
fn admin_auth(snap: &modelway_core::Snapshot, req: &Request<Incoming>) -> Result<(), GatewayError> {
    let auth = snap.config.auth();
    if auth.admin_key.is_none() {
        return Err(GatewayError::forbidden(
            "The admin endpoint is disabled: set `auth.admin_key` (or `admin_key_sha256`) in the config.",
        )
        .with_code("admin_disabled"));
    }
    match presented_key(req) {
        Some(t) if auth.is_admin(t) => {}
        Some(_) => return Err(GatewayError::unauthorized("Incorrect admin key provided.")),
        None => {
            return Err(GatewayError::unauthorized(
                "Missing admin key: send `Authorization: Bearer <admin_key>`.",
            ))
        }
    }
    Ok(())
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A policy as JSON, durations in milliseconds.
fn policy_json(p: &modelway_core::engine::Policy) -> serde_json::Value {
    json!({
        "retries": p.retries,
        "backoff_base_ms": ms(p.backoff.base),
        "backoff_max_ms": ms(p.backoff.max),
        "max_retry_after_ms": ms(p.max_retry_after),
        "connect_timeout_ms": ms(p.connect_timeout),
        "timeout_ms": ms(p.timeout),
        "first_token_timeout_ms": p.first_token_timeout.map(ms),
        "idle_timeout_ms": ms(p.idle_timeout),
        "deadline_ms": p.deadline.map(ms),
    })
}

pub(super) fn config(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, GatewayError> {
    let snap = app.gateway.snapshot();
    admin_auth(&snap, req)?;
    let status = app.reload.load();
    let providers: Vec<_> = snap
        .router
        .providers()
        .map(|p| {
            let c = &p.config;
            json!({
                "name": p.name,
                "kind": p.config.kind,
                "base_url": c.base_url,
                "api_key": c.api_key.as_ref().map(|_| "***"),
                // Header values often carry tokens: names only.
                "headers": c.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
                "timeout_ms": c.policy.timeout.map(ms),
                "connect_timeout_ms": c.policy.connect_timeout.map(ms),
                "rpm": c.rpm,
                "tpm": c.tpm,
                "allow_client_key": c.allow_client_key,
            })
        })
        .collect();
    let routes: Vec<_> = snap
        .router
        .routes()
        .map(|r| {
            json!({
                "name": r.name,
                "strategy": r.strategy.as_str(),
                "deadline_ms": r.policy.deadline.map(ms),
                "stream_keepalive_ms": r.policy.stream_keepalive.map(ms),
                "hedge": r.hedge.map(|h| h.describe()),
                "targets": r.targets.iter().map(|t| json!({
                    "target": t.to_string(),
                    "weight": t.weight,
                    "params": t.params.as_deref(),
                    "policy": policy_json(&t.policy),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = json!({
        "version": snap.version,
        "loaded_at": unix(snap.loaded_at),
        "source": app.config_path.as_ref().map(|p| p.display().to_string()),
        "hash": status.active_hash,
        "last_error": status.last_error,
        "last_error_at": status.last_error_at.map(unix),
        "default_provider": snap.config.routing().default_provider,
        // Names and limits only: never a key or its digest.
        "auth": {
            "admin": snap.config.auth().admin_key.is_some(),
            "allow_unauthenticated": snap.config.auth().allow_unauthenticated,
            "keys": snap.config.auth().keys.iter().map(|k| json!({
                "name": k.name,
                "models": k.models,
                "rpm": k.limits.rpm,
                "tpm": k.limits.tpm,
                "max_concurrent": k.limits.max_concurrent,
                "budget_usd": k.budget.map(|b| b.usd),
                "budget_period": k.budget.map(|b| b.period.as_str()),
                "spent_usd": k.budget.map(|b| app.budgets.spent(&k.name, &b, crate::ledger::now_ms())),
            })).collect::<Vec<_>>(),
        },
        "limits": {
            "store": snap.config.limits().store.redacted(),
            "on_store_error": snap.config.limits().on_store_error.as_str(),
            "timeout_ms": ms(snap.config.limits().timeout),
        },
        "usage": {
            "ledger": snap.config.usage().ledger.describe(),
            "prices_file": snap.config.usage().prices_file.as_ref().map(|p| p.display().to_string()),
            "prices": snap.config.usage().prices.len(),
            "prices_source": snap.config.usage().prices.source(),
            "prices_date": snap.config.usage().prices.date(),
        },
        "server": {
            "max_in_flight": snap.config.server().max_in_flight,
            "max_in_flight_bytes": snap.config.server().max_in_flight_bytes,
        },
        "providers": providers,
        "routes": routes,
    });
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}

/// `GET /admin/health`: each target's state, consecutive failures, how much longer it
/// is ejected, and its time-to-first-token EWMA.
pub(super) fn health(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, GatewayError> {
    let snap = app.gateway.snapshot();
    admin_auth(&snap, req)?;
    let h = app.gateway.health();
    let s = h.settings();
    let store = app.gateway.limiter().health();
    let body = json!({
        "settings": {
            "failures": s.failures,
            "cooldown_ms": ms(s.cooldown),
            "max_cooldown_ms": ms(s.max_cooldown),
        },
        "targets": h.report(),
        "limit_store": {
            "kind": store.kind,
            "store": store.store,
            "healthy": store.healthy,
            "on_store_error": store.on_store_error,
            "error": store.error,
            "since": store.since.map(unix),
        },
        "admission": {
            "in_flight": app.admission.in_flight(),
            "max_in_flight": snap.config.server().max_in_flight,
            "in_flight_bytes": app.admission.bytes(),
            "max_in_flight_bytes": snap.config.server().max_in_flight_bytes,
        },
        "usage_ledger": app.telemetry.ledger().map(|l| l.health()),
    });
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}

/// `GET /admin/usage?from=…&to=…`: usage totals by key, provider, model and day from
/// the ledger (default: the last 31 days). `from` / `to` are unix seconds or UTC dates;
/// `to` is exclusive (a date means its midnight).
pub(super) async fn usage(
    app: &App,
    req: &Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let snap = app.gateway.snapshot();
    admin_auth(&snap, req)?;
    let Some(ledger) = app.telemetry.ledger() else {
        return Err(GatewayError::unavailable("the usage ledger is not running"));
    };
    let now_ms = modelway_core::civil::now_ms();
    let mut from = now_ms - 31 * 86_400_000;
    let mut to = now_ms + 60_000;
    for (k, v) in super::query_pairs(req.uri().query().unwrap_or("")) {
        let slot = match k {
            "from" => &mut from,
            "to" => &mut to,
            _ => {
                return Err(GatewayError::bad_request(format!(
                    "unknown parameter `{k}` (use from, to)"
                )))
            }
        };
        *slot = crate::ledger::parse_bound(&v).ok_or_else(|| {
            GatewayError::bad_request(format!(
                "`{k}` must be unix seconds or a date YYYY-MM-DD, got `{v}`"
            ))
            .with_param(k)
        })?;
    }
    let ledger_shown = ledger.target().describe();
    let totals =
        tokio::task::spawn_blocking(move || ledger.totals(from, to).map(|t| (t, ledger.dropped())))
            .await
            .map_err(|e| GatewayError::internal(format!("usage query: {e}")))?
            .map_err(|e| GatewayError::internal(format!("usage query: {e}")))?;
    let (totals, dropped) = totals;
    let cost: f64 = totals.iter().map(|t| t.cost_usd).sum();
    let requests: u64 = totals.iter().map(|t| t.requests).sum();
    let unpriced: u64 = totals.iter().map(|t| t.unpriced_requests).sum();
    let body = json!({
        "from_ms": from,
        "to_ms": to,
        "ledger": ledger_shown,
        "requests": requests,
        "cost_usd": cost,
        "unpriced_requests": unpriced,
        "records_dropped": dropped,
        "totals": totals,
    });
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}
