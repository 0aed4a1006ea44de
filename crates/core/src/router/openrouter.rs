//! The OpenRouter request dialect, served on the operator's own keys: clients written
//! for OpenRouter send `models` (a fallback list), `provider.{order, only, ignore,
//! allow_fallbacks, sort}` and the `:nitro` / `:floor` model suffixes. modelway applies
//! them to its own plan; the fields themselves reach only OpenRouter upstreams (the
//! other providers leave them out), untouched.

use serde_json::Value;

use crate::chat::ChatRequest;
use crate::error::GatewayError;

use crate::policy::StrategyKind;

/// How the client asked its targets to be sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// `provider.sort = "latency"`, `:nitro`: the latency strategy.
    Latency,
    /// `provider.sort = "price"`, `:floor`: cheapest first when prices are known.
    Price,
    /// `provider.sort = "throughput"`: served like latency (time to first token is
    /// what modelway measures).
    Throughput,
}

impl Sort {
    /// The strategy this sort selects, when it selects one.
    pub fn strategy(self) -> Option<StrategyKind> {
        match self {
            Sort::Latency | Sort::Throughput => Some(StrategyKind::Latency),
            // No prices are known to the engine yet: the configured order stands.
            Sort::Price => None,
        }
    }
}

/// What the OpenRouter fields of one request ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// `models`: more models to fall back to, in order, after `model`.
    pub models: Vec<String>,
    /// `provider.order`: these providers first, in this order.
    pub order: Vec<String>,
    /// `provider.only`: only these providers.
    pub only: Option<Vec<String>>,
    /// `provider.ignore`: never these providers.
    pub ignore: Vec<String>,
    /// `provider.allow_fallbacks = false`: the first target only.
    pub allow_fallbacks: bool,
    pub sort: Option<Sort>,
}

/// The most fallbacks a `models` list may name (each can cost an upstream attempt).
pub const MAX_MODELS: usize = 16;

fn strings(v: &Value, param: &str) -> Result<Vec<String>, GatewayError> {
    let bad = || {
        GatewayError::bad_request(format!("`{param}` must be an array of strings."))
            .with_param(param)
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        _ => Err(bad()),
    }
}

impl Hints {
    /// The hints of `req`, or `None` when it uses none of the fields (the common case
    /// costs two map lookups).
    pub fn of(req: &ChatRequest) -> Result<Option<Self>, GatewayError> {
        let models = req.extra.get("models");
        let provider = req.extra.get("provider");
        if models.is_none() && provider.is_none() {
            return Ok(None);
        }
        let mut h = Hints {
            allow_fallbacks: true,
            ..Hints::default()
        };
        if let Some(m) = models {
            h.models = strings(m, "models")?;
            if h.models.len() > MAX_MODELS {
                return Err(GatewayError::bad_request(format!(
                    "`models` may list at most {MAX_MODELS} models."
                ))
                .with_param("models"));
            }
        }
        match provider {
            None | Some(Value::Null) => {}
            Some(Value::Object(p)) => {
                if let Some(v) = p.get("order") {
                    h.order = strings(v, "provider.order")?;
                }
                if let Some(v) = p.get("only").filter(|v| !v.is_null()) {
                    h.only = Some(strings(v, "provider.only")?);
                }
                if let Some(v) = p.get("ignore") {
                    h.ignore = strings(v, "provider.ignore")?;
                }
                match p.get("allow_fallbacks") {
                    None | Some(Value::Null) => {}
                    Some(Value::Bool(b)) => h.allow_fallbacks = *b,
                    Some(_) => {
                        return Err(GatewayError::bad_request(
                            "`provider.allow_fallbacks` must be true or false.",
                        )
                        .with_param("provider.allow_fallbacks"))
                    }
                }
                h.sort = match p.get("sort") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => match s.as_str() {
                        "latency" => Some(Sort::Latency),
                        "price" => Some(Sort::Price),
                        "throughput" => Some(Sort::Throughput),
                        other => {
                            return Err(GatewayError::bad_request(format!(
                                "`provider.sort` must be \"price\", \"throughput\" or \"latency\", got \"{other}\"."
                            ))
                            .with_param("provider.sort"))
                        }
                    },
                    // OpenRouter also takes `{by, partition}`; the `by` is what counts.
                    Some(Value::Object(o)) => match o.get("by").and_then(Value::as_str) {
                        Some("latency") => Some(Sort::Latency),
                        Some("price") => Some(Sort::Price),
                        Some("throughput") => Some(Sort::Throughput),
                        _ => None,
                    },
                    Some(_) => None,
                };
                // Every other `provider` field (data_collection, quantizations, …) is
                // accepted and left to an OpenRouter upstream.
            }
            Some(_) => {
                return Err(GatewayError::bad_request("`provider` must be an object.")
                    .with_param("provider"))
            }
        }
        Ok(Some(h))
    }

    /// Whether a provider named `name` of kind `kind` matches an entry of a provider
    /// list. OpenRouter's lists name upstream vendors (`"OpenAI"`, `"groq"`), so an
    /// entry matches the configured name or the kind, case-insensitively.
    pub fn matches(list: &[String], name: &str, kind: &str) -> bool {
        list.iter()
            .any(|e| e.eq_ignore_ascii_case(name) || e.eq_ignore_ascii_case(kind))
    }
}

/// Splits a `:nitro` / `:floor` suffix off a model name.
pub fn split_suffix(model: &str) -> Option<(&str, Sort)> {
    if let Some(base) = model.strip_suffix(":nitro") {
        return Some((base, Sort::Latency));
    }
    model.strip_suffix(":floor").map(|b| (b, Sort::Price))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(extra: Value) -> ChatRequest {
        let mut r = ChatRequest::new("m", vec![]);
        for (k, v) in extra.as_object().unwrap() {
            r.extra.insert(k.clone(), v.clone());
        }
        r
    }

    #[test]
    fn fields_parse_and_bad_shapes_are_400s() {
        assert_eq!(Hints::of(&req(json!({}))).unwrap(), None);
        let h = Hints::of(&req(json!({
            "models": ["a", "b"],
            "provider": {"order": ["groq"], "only": ["groq", "openai"], "ignore": ["x"],
                          "allow_fallbacks": false, "sort": "latency", "data_collection": "deny"},
            "transforms": ["middle-out"]
        })))
        .unwrap()
        .unwrap();
        assert_eq!(h.models, vec!["a", "b"]);
        assert_eq!(h.order, vec!["groq"]);
        assert_eq!(
            h.only.as_deref(),
            Some(&["groq".to_owned(), "openai".to_owned()][..])
        );
        assert!(!h.allow_fallbacks);
        assert_eq!(h.sort, Some(Sort::Latency));
        for (bad, param) in [
            (json!({"models": "a"}), "models"),
            (json!({"models": [1]}), "models"),
            (json!({"models": vec!["a"; MAX_MODELS + 1]}), "models"),
            (json!({"provider": "groq"}), "provider"),
            (json!({"provider": {"order": "groq"}}), "provider.order"),
            (
                json!({"provider": {"allow_fallbacks": "no"}}),
                "provider.allow_fallbacks",
            ),
            (json!({"provider": {"sort": "fastest"}}), "provider.sort"),
        ] {
            let e = Hints::of(&req(bad.clone())).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(param)), "{bad}");
        }
        assert_eq!(split_suffix("fast:nitro"), Some(("fast", Sort::Latency)));
        assert_eq!(split_suffix("fast:floor"), Some(("fast", Sort::Price)));
        assert_eq!(split_suffix("fast"), None);
    }
}
