//! `GET /v1/models` and `GET /v1/models/{id}` in OpenAI's shape.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use modelway_core::{GatewayError, ModelInfo};
use serde::Serialize;

use super::{bearer, json_response, secret_eq, Body};
use crate::app::App;

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'a str,
}

impl<'a> From<&'a ModelInfo> for Model<'a> {
    fn from(m: &'a ModelInfo) -> Self {
        Self {
            id: &m.id,
            object: "model",
            created: m.created,
            owned_by: &m.owned_by,
        }
    }
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

/// The models a key may use; all when `[auth]` has no keys.
fn check_key(
    app: &App,
    req: &Request<Incoming>,
) -> Result<Option<modelway_core::config::ClientKey>, GatewayError> {
    let snap = app.gateway.snapshot();
    let keys = &snap.config.auth.keys;
    if keys.is_empty() {
        return Ok(None);
    }
    let token = bearer(req).ok_or_else(|| {
        GatewayError::unauthorized("Missing gateway key: send `Authorization: Bearer <key>`.")
    })?;
    keys.iter()
        .find(|k| secret_eq(k.key.expose(), token))
        .cloned()
        .map(Some)
        .ok_or_else(|| GatewayError::unauthorized("Incorrect gateway key provided."))
}

pub(super) async fn list(
    app: &Arc<App>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let key = check_key(app, req)?;
    let snap = app.gateway.snapshot();
    let models = snap.models().await;
    let data = models
        .iter()
        .filter(|m| key.as_ref().is_none_or(|k| k.allows(&m.id)))
        .map(Model::from)
        .collect();
    let body = serde_json::to_vec(&List {
        object: "list",
        data,
    })
    .map_err(|e| GatewayError::internal(e.to_string()))?;
    Ok(json_response(StatusCode::OK, body))
}

pub(super) async fn retrieve(
    app: &Arc<App>,
    req: &Request<Incoming>,
    raw_id: &str,
) -> Result<Response<Body>, GatewayError> {
    let key = check_key(app, req)?;
    let id = percent_encoding::percent_decode_str(raw_id)
        .decode_utf8_lossy()
        .into_owned();
    if key.as_ref().is_some_and(|k| !k.allows(&id)) {
        return Err(GatewayError::model_not_found(&id));
    }
    let snap = app.gateway.snapshot();
    let plan = snap.resolve(&id)?;
    let owned_by = match &plan.via {
        modelway_core::router::Via::Route(_) => "modelway".to_owned(),
        _ => plan
            .targets
            .first()
            .map_or_else(|| "modelway".to_owned(), |t| t.provider.name.clone()),
    };
    let info = ModelInfo {
        id: id.clone(),
        owned_by,
        created: modelway_core::unix_now(),
    };
    let body = serde_json::to_vec(&Model::from(&info))
        .map_err(|e| GatewayError::internal(e.to_string()))?;
    Ok(json_response(StatusCode::OK, body))
}
