//! `GET /admin/config`: the active snapshot and the last reload error, secrets
//! redacted. Needs the admin key.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use modelway_core::GatewayError;
use serde_json::json;

use super::{bearer, json_response, secret_eq, Body};
use crate::app::App;

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn config(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, GatewayError> {
    let snap = app.gateway.snapshot();
    let Some(admin) = &snap.config.auth.admin_key else {
        return Err(GatewayError::forbidden(
            "The admin endpoint is disabled: set `auth.admin_key` in the config.",
        )
        .with_code("admin_disabled"));
    };
    match bearer(req) {
        Some(t) if secret_eq(admin.expose(), t) => {}
        Some(_) => return Err(GatewayError::unauthorized("Incorrect admin key provided.")),
        None => {
            return Err(GatewayError::unauthorized(
                "Missing admin key: send `Authorization: Bearer <admin_key>`.",
            ))
        }
    }
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
                "timeout_ms": c.timeout.map(|t| t.as_millis() as u64),
            })
        })
        .collect();
    let routes: Vec<_> = snap
        .router
        .routes()
        .map(|r| {
            json!({
                "name": r.name,
                "strategy": format!("{:?}", r.strategy).to_lowercase(),
                "targets": r.targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "timeout_ms": r.timeout.as_millis() as u64,
                "retries": r.retries,
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
        "default_provider": snap.config.routing.default_provider,
        "providers": providers,
        "routes": routes,
    });
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}
