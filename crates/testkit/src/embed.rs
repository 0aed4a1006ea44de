//! The mock's default embeddings, used when no scripted reply is queued: OpenAI's
//! `POST /v1/embeddings` and Gemini's `POST /v1beta/models/{model}:batchEmbedContents`,
//! with the real APIs' shapes and the refusals they make.
//!
//! Vectors are deterministic: the same text (or token array) always gets the same unit
//! vector, in either dialect, derived from a 64-bit FNV-1a hash of its bytes through
//! SplitMix64. They are [`DEFAULT_DIMENSIONS`] long unless the request sets
//! `dimensions` (OpenAI) or `outputDimensionality` (Gemini). OpenAI answers count a
//! token per whitespace-separated word (per id for token arrays); Gemini's carry no
//! usage, as its documented answers do not.

use base64::Engine as _;
use http::HeaderMap;
use serde_json::{json, Value};

use crate::script::{error_body, Reply};

/// Vector size when the request names none (small, to keep test bodies short).
pub const DEFAULT_DIMENSIONS: usize = 16;
/// The most dimensions the mock builds.
const MAX_DIMENSIONS: u64 = 16_384;
/// Gemini's limit of requests per `batchEmbedContents` call.
const MAX_BATCH: usize = 100;

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The mock's unit vector of `dims` values for `input` (a text's UTF-8 bytes, or token
/// ids little-endian). Public so tests can say what an answer must hold.
pub fn vector(input: &[u8], dims: usize) -> Vec<f32> {
    let mut state = fnv1a(input);
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Base64 of float32 little-endian values, as OpenAI writes `encoding_format: base64`.
pub fn base64_vector(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn bad_request(message: &str, param: Option<&str>) -> Reply {
    Reply::Json {
        status: 400,
        body: error_body(400, message, param),
        headers: Vec::new(),
    }
}

/// What OpenAI says about a bad `input`.
const INVALID_INPUT: &str =
    "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.";

/// One input's bytes and token count, from an element of `input`.
fn item(v: &Value) -> Option<(Vec<u8>, u64)> {
    match v {
        Value::String(s) if !s.is_empty() => {
            Some((s.as_bytes().to_vec(), s.split_whitespace().count() as u64))
        }
        Value::Array(ids) if !ids.is_empty() => {
            let mut bytes = Vec::with_capacity(ids.len() * 4);
            for id in ids {
                let id = u32::try_from(id.as_u64()?).ok()?;
                bytes.extend_from_slice(&id.to_le_bytes());
            }
            Some((bytes, ids.len() as u64))
        }
        _ => None,
    }
}

/// The default answer to `POST /v1/embeddings`.
pub(crate) fn openai(body: &[u8]) -> Reply {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
            None,
        );
    };
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return bad_request("you must provide a model parameter", Some("model"));
    };
    let inputs: Option<Vec<(Vec<u8>, u64)>> = match req.get("input") {
        None => return bad_request("Missing required parameter: 'input'.", Some("input")),
        Some(s @ Value::String(_)) => item(s).map(|i| vec![i]),
        // One token array, or a list of strings / token arrays.
        Some(Value::Array(a)) if a.first().is_some_and(Value::is_number) => {
            item(&Value::Array(a.clone())).map(|i| vec![i])
        }
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= 2048 => a.iter().map(item).collect(),
        Some(_) => None,
    };
    let Some(inputs) = inputs else {
        return bad_request(INVALID_INPUT, Some("input"));
    };
    let dims = match req.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(d) => match d.as_u64().filter(|d| (1..=MAX_DIMENSIONS).contains(d)) {
            Some(d) => d as usize,
            None => {
                return bad_request(
                    &format!("Invalid value for 'dimensions': {d}."),
                    Some("dimensions"),
                )
            }
        },
    };
    let base64 = match req.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => {
            return bad_request(
                "Invalid value for 'encoding_format': expected 'float' or 'base64'.",
                Some("encoding_format"),
            )
        }
    };
    let tokens: u64 = inputs.iter().map(|(_, n)| n).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, (bytes, _))| {
            let v = vector(bytes, dims);
            let embedding = if base64 {
                json!(base64_vector(&v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Reply::Json {
        status: 200,
        body: json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }),
        headers: Vec::new(),
    }
}

fn google_error(code: u16, status: &str, message: &str) -> Reply {
    Reply::Json {
        status: code,
        body: json!({"error": {"code": code, "message": message, "status": status}}),
        headers: Vec::new(),
    }
}

/// The default answer to `POST /v1beta/models/{model}:batchEmbedContents`.
pub(crate) fn gemini_batch(model: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
    if !headers.contains_key("x-goog-api-key") {
        return google_error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        );
    }
    let invalid = |m: &str| google_error(400, "INVALID_ARGUMENT", m);
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return invalid("Invalid JSON payload received. Unexpected token.");
    };
    let Some(requests) = req.get("requests").and_then(Value::as_array) else {
        return invalid("* BatchEmbedContentsRequest.requests: contents is not specified\n");
    };
    if requests.is_empty() {
        return invalid("* BatchEmbedContentsRequest.requests: contents is not specified\n");
    }
    if requests.len() > MAX_BATCH {
        return invalid(
            "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n",
        );
    }
    let want = format!("models/{model}");
    let mut embeddings = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        if r.get("model").and_then(Value::as_str) != Some(want.as_str()) {
            return invalid(&format!(
                "* BatchEmbedContentsRequest.requests[{i}].model: model must match the parent model {want}\n"
            ));
        }
        let text: String = r
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        if text.is_empty() {
            return invalid(&format!(
                "* BatchEmbedContentsRequest.requests[{i}].content.parts: contents is not specified\n"
            ));
        }
        let dims = match r.get("outputDimensionality") {
            None => DEFAULT_DIMENSIONS,
            Some(d) => match d.as_u64().filter(|d| (1..=MAX_DIMENSIONS).contains(d)) {
                Some(d) => d as usize,
                None => return invalid("outputDimensionality must be positive"),
            },
        };
        embeddings.push(json!({"values": vector(text.as_bytes(), dims)}));
    }
    Reply::Json {
        status: 200,
        body: json!({"embeddings": embeddings}),
        headers: Vec::new(),
    }
}
