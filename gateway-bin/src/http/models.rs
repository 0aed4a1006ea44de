//! `GET /v1/models` and `GET /v1/models/{id}`: in OpenAI's shape, or in Anthropic's for a
//! client that sends `anthropic-version` (Anthropic's SDKs always do, OpenAI's never):
//! `client.models.list()` of the `anthropic` SDK pages with `limit`, `after_id` and
//! `before_id` and reads `type`, `display_name` and an RFC 3339 `created_at`.

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

/// One model in Anthropic's shape (`ModelInfo`).
#[derive(Serialize)]
struct AnthropicModel<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    display_name: &'a str,
    created_at: String,
    lifecycle: &'static str,
}

impl<'a> From<&'a ModelInfo> for AnthropicModel<'a> {
    fn from(m: &'a ModelInfo) -> Self {
        Self {
            kind: "model",
            id: &m.id,
            display_name: &m.id,
            created_at: modelway_core::civil::rfc3339_of(
                i64::try_from(m.created.saturating_mul(1000)).unwrap_or(i64::MAX),
            ),
            lifecycle: "active",
        }
    }
}

/// A page of models in Anthropic's shape.
#[derive(Serialize)]
struct AnthropicPage<'a> {
    data: Vec<AnthropicModel<'a>>,
    has_more: bool,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
}

/// Whether the client speaks Anthropic's API (its SDKs send `anthropic-version` on
/// every request).
pub(super) fn anthropic_client<B>(req: &Request<B>) -> bool {
    req.headers().contains_key("anthropic-version")
}

pub(super) async fn list(
    app: &Arc<App>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let snap = app.gateway.snapshot();
    let key = authenticate(&snap, req)?;
    let page = if anthropic_client(req) {
        Some(Paging::of(req.uri().query().unwrap_or(""))?)
    } else {
        None
    };
    let models = snap.models().await;
    let allowed = models
        .iter()
        .filter(|m| key.as_ref().is_none_or(|k| k.allows(&m.id)));
    let body = match page {
        None => serde_json::to_vec(&List {
            object: "list",
            data: allowed.map(Model::from).collect(),
        }),
        Some(page) => {
            let all: Vec<&ModelInfo> = allowed.collect();
            let (slice, has_more) = page.select(&all);
            serde_json::to_vec(&AnthropicPage {
                first_id: slice.first().map(|m| m.id.as_str()),
                last_id: slice.last().map(|m| m.id.as_str()),
                data: slice.iter().map(|m| AnthropicModel::from(*m)).collect(),
                has_more,
            })
        }
    }
    .map_err(|e| GatewayError::internal(e.to_string()))?;
    Ok(json_response(StatusCode::OK, body))
}

/// Anthropic's list parameters: `limit` (1..=1000, default 20) and a cursor,
/// `after_id` or `before_id` (the page just after or just before that model).
#[derive(Debug, Default, PartialEq)]
struct Paging {
    limit: usize,
    after_id: Option<String>,
    before_id: Option<String>,
}

impl Paging {
    fn of(query: &str) -> Result<Self, GatewayError> {
        let mut p = Paging {
            limit: 20,
            ..Paging::default()
        };
        for (k, v) in super::query_pairs(query) {
            match k {
                "limit" => {
                    p.limit = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            GatewayError::bad_request(format!(
                                "limit: must be an integer from 1 to 1000, got {v:?}"
                            ))
                            .with_param("limit")
                        })?;
                }
                "after_id" => p.after_id = Some(v),
                "before_id" => p.before_id = Some(v),
                _ => {}
            }
        }
        Ok(p)
    }

    /// The page of `all` these parameters ask for, and whether more follow it in the
    /// direction of travel. An id that is not listed gives an empty page.
    fn select<'a, 'm>(&self, all: &'a [&'m ModelInfo]) -> (&'a [&'m ModelInfo], bool) {
        let at = |id: &str| all.iter().position(|m| m.id == id);
        if let Some(before) = &self.before_id {
            let Some(end) = at(before) else {
                return (&[], false);
            };
            let start = end.saturating_sub(self.limit);
            return (&all[start..end], start > 0);
        }
        let start = match &self.after_id {
            Some(after) => match at(after) {
                Some(i) => i + 1,
                None => return (&[], false),
            },
            None => 0,
        };
        let end = (start + self.limit).min(all.len());
        (&all[start..end], end < all.len())
    }
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
    let body = if anthropic_client(req) {
        serde_json::to_vec(&AnthropicModel::from(&info))
    } else {
        serde_json::to_vec(&Model::from(&info))
    }
    .map_err(|e| GatewayError::internal(e.to_string()))?;
    Ok(json_response(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(n: usize) -> Vec<ModelInfo> {
        (0..n)
            .map(|i| ModelInfo {
                id: format!("m{i}"),
                owned_by: "p".to_owned(),
                created: 0,
            })
            .collect()
    }

    fn ids(page: &[&ModelInfo]) -> Vec<String> {
        page.iter().map(|m| m.id.clone()).collect()
    }

    #[test]
    fn anthropic_pages_go_forward_and_back_by_id() {
        let all = models(5);
        let all: Vec<&ModelInfo> = all.iter().collect();
        let page = |q: &str| {
            let (s, more) = Paging::of(q).unwrap().select(&all);
            (ids(s), more)
        };
        assert_eq!(page("").0.len(), 5);
        assert!(!page("").1);
        assert_eq!(page("limit=2"), (vec!["m0".into(), "m1".into()], true));
        assert_eq!(
            page("limit=2&after_id=m1"),
            (vec!["m2".into(), "m3".into()], true)
        );
        assert_eq!(page("limit=2&after_id=m3"), (vec!["m4".into()], false));
        assert_eq!(
            page("limit=2&before_id=m4"),
            (vec!["m2".into(), "m3".into()], true)
        );
        assert_eq!(
            page("limit=3&before_id=m2"),
            (vec!["m0".into(), "m1".into()], false)
        );
        assert_eq!(page("after_id=nope"), (vec![], false));
        assert_eq!(page("lifecycle=active&limit=1"), (vec!["m0".into()], true));
    }

    #[test]
    fn a_limit_out_of_range_is_a_bad_request_naming_it() {
        for q in ["limit=0", "limit=1001", "limit=x", "limit="] {
            let e = Paging::of(q).unwrap_err();
            assert_eq!(e.status, 400, "{q}");
            assert!(e.message.contains("limit"), "{q}: {}", e.message);
        }
        assert_eq!(Paging::of("limit=1000").unwrap().limit, 1000);
    }

    #[test]
    fn a_model_in_anthropics_shape_has_what_its_sdk_requires() {
        let m = ModelInfo {
            id: "claude-x".to_owned(),
            owned_by: "p".to_owned(),
            created: 1_686_935_002,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&AnthropicModel::from(&m)).unwrap())
                .unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "model",
                "id": "claude-x",
                "display_name": "claude-x",
                "created_at": "2023-06-16T17:03:22Z",
                "lifecycle": "active",
            })
        );
    }
}
