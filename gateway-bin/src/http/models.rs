//! `GET /v1/models` and `GET /v1/models/{id}` in OpenAI's shape.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use modelway_core::{GatewayError, ModelInfo};
use serde::Serialize;

use super::{authenticate, json_response, Body};
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

pub(super) async fn list(
    app: &Arc<App>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let snap = app.gateway.snapshot();
    let key = authenticate(&snap, req)?;
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
    let snap = app.gateway.snapshot();
    let key = authenticate(&snap, req)?;
    let id = percent_encoding::percent_decode_str(raw_id)
        .decode_utf8_lossy()
        .into_owned();
    if key.is_some_and(|k| !k.allows(&id)) {
        return Err(GatewayError::model_not_found(&id));
    }
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
