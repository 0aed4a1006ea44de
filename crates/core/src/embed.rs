//! The canonical OpenAI embeddings model (`POST /v1/embeddings`): the request a client
//! sends ([`EmbedRequest`]), the answer a provider returns ([`Embeddings`]: the
//! upstream's own bytes, or a typed [`EmbedResponse`]) and the two vector encodings.
//!
//! Field names and shapes are OpenAI's (`CreateEmbeddingRequest`,
//! `CreateEmbeddingResponse`). As in [`crate::chat`], fields modelway does not know are
//! kept in `extra`, so an OpenAI-compatible upstream receives what the client sent.
//!
//! `encoding_format: "base64"` is the standard, padded base64 of the vector's float32
//! values, little-endian, concatenated (4 bytes per dimension) — what OpenAI returns
//! and what the SDKs decode (`numpy.frombuffer(dtype="float32")`). The official Python
//! and Node SDKs ask for it whenever their caller names no format, so it is the common
//! case; a translating provider encodes it itself ([`encode_vector`]).

use std::ops::Range;

use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;

use crate::chat::de::{deserialize_with_extra, string_or};
use crate::chat::{Extra, TokenCounts};
use crate::error::GatewayError;

/// The most inputs one request may carry (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbedRequest {
    /// The route, `provider/model` slug or model name to resolve.
    pub model: String,
    /// The text (or texts, or tokens) to embed.
    pub input: EmbedInput,
    /// The vector size to return (text-embedding-3 and later; Gemini's
    /// `outputDimensionality`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u64>,
    /// `float` (the API's default) or `base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    /// An end-user id for the upstream's abuse monitoring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Fields modelway does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

deserialize_with_extra!(EmbedRequest {
    model: "model" => req,
    input: "input" => req,
    dimensions: "dimensions" => opt,
    encoding_format: "encoding_format" => opt,
    user: "user" => opt,
});

impl EmbedRequest {
    /// A request for `input` at `model`, nothing else set.
    pub fn new(model: impl Into<String>, input: EmbedInput) -> Self {
        Self {
            model: model.into(),
            input,
            dimensions: None,
            encoding_format: None,
            user: None,
            extra: Extra::new(),
        }
    }

    /// The encoding the client asked for (`float` when it named none, as the API's
    /// default is).
    pub fn encoding(&self) -> EncodingFormat {
        self.encoding_format.unwrap_or(EncodingFormat::Float)
    }

    /// The checks every upstream would make, as 400s naming the field: a model, at
    /// least one input and at most [`MAX_INPUTS`], no empty input, `dimensions` ≥ 1.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let bad = |msg: String, param: &str| Err(GatewayError::bad_request(msg).with_param(param));
        if self.model.trim().is_empty() {
            return bad("`model` must not be empty.".into(), "model");
        }
        let n = self.input.len();
        if n == 0 {
            return bad("`input` must not be empty.".into(), "input");
        }
        if n > MAX_INPUTS {
            return bad(
                format!("`input` may hold at most {MAX_INPUTS} items, got {n}."),
                "input",
            );
        }
        let empty = match &self.input {
            EmbedInput::Text(t) => t.is_empty(),
            EmbedInput::Texts(t) => t.iter().any(String::is_empty),
            EmbedInput::Tokens(_) => false,
            EmbedInput::TokenLists(t) => t.iter().any(Vec::is_empty),
        };
        if empty {
            return bad("`input` must not contain an empty item.".into(), "input");
        }
        if self.dimensions == Some(0) {
            return bad("`dimensions` must be at least 1.".into(), "dimensions");
        }
        Ok(())
    }
}

/// What to embed: one text, several, one token array or several.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EmbedInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One input given as token ids.
    Tokens(Vec<u32>),
    /// Several inputs given as token ids.
    TokenLists(Vec<Vec<u32>>),
}

impl EmbedInput {
    /// How many inputs (so how many vectors the answer holds).
    pub fn len(&self) -> usize {
        match self {
            EmbedInput::Text(_) | EmbedInput::Tokens(_) => 1,
            EmbedInput::Texts(t) => t.len(),
            EmbedInput::TokenLists(t) => t.len(),
        }
    }

    /// Whether there is nothing to embed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inputs as texts; `None` when they are token ids.
    pub fn texts(&self) -> Option<Vec<&str>> {
        match self {
            EmbedInput::Text(t) => Some(vec![t.as_str()]),
            EmbedInput::Texts(t) => Some(t.iter().map(String::as_str).collect()),
            EmbedInput::Tokens(_) | EmbedInput::TokenLists(_) => None,
        }
    }
}

/// One element of an `input` array, before the array's shape is known.
enum Item {
    Text(String),
    Token(u32),
    Tokens(Vec<u32>),
}

const INPUT_SHAPES: &str =
    "a string, an array of strings, an array of token ids or an array of token-id arrays";

impl<'de> serde::Deserialize<'de> for Item {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Item;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, a token id or an array of token ids")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Item, E> {
                Ok(Item::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Item, E> {
                Ok(Item::Text(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Item, E> {
                u32::try_from(v)
                    .map(Item::Token)
                    .map_err(|_| E::custom(format!("token id {v} is out of range")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Item, E> {
                u32::try_from(v)
                    .map(Item::Token)
                    .map_err(|_| E::custom(format!("token id {v} is out of range")))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Item, A::Error> {
                let v = serde::Deserialize::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(seq),
                )?;
                Ok(Item::Tokens(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> serde::Deserialize<'de> for EmbedInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = EmbedInput;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(INPUT_SHAPES)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EmbedInput, E> {
                Ok(EmbedInput::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<EmbedInput, E> {
                Ok(EmbedInput::Text(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<EmbedInput, A::Error> {
                // The first element decides the shape; every other must have it too.
                let mixed = || {
                    <A::Error as serde::de::Error>::custom(format!(
                        "`input` mixes kinds of items: it must be {INPUT_SHAPES}"
                    ))
                };
                let cap = seq.size_hint().unwrap_or(0).min(MAX_INPUTS);
                let mut out = match seq.next_element::<Item>()? {
                    None => return Ok(EmbedInput::Texts(Vec::new())),
                    Some(Item::Text(t)) => {
                        let mut v = Vec::with_capacity(cap.max(1));
                        v.push(t);
                        EmbedInput::Texts(v)
                    }
                    Some(Item::Token(t)) => {
                        let mut v = Vec::with_capacity(cap.max(1));
                        v.push(t);
                        EmbedInput::Tokens(v)
                    }
                    Some(Item::Tokens(t)) => {
                        let mut v = Vec::with_capacity(cap.max(1));
                        v.push(t);
                        EmbedInput::TokenLists(v)
                    }
                };
                while let Some(item) = seq.next_element::<Item>()? {
                    match (&mut out, item) {
                        (EmbedInput::Texts(v), Item::Text(t)) => v.push(t),
                        (EmbedInput::Tokens(v), Item::Token(t)) => v.push(t),
                        (EmbedInput::TokenLists(v), Item::Tokens(t)) => v.push(t),
                        _ => return Err(mixed()),
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// How vectors are written in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// A JSON array of numbers.
    Float,
    /// Base64 of the float32 values, little-endian.
    Base64,
}

impl EncodingFormat {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            EncodingFormat::Float => "float",
            EncodingFormat::Base64 => "base64",
        }
    }
}

/// `CreateEmbeddingResponse`: one vector per input, in input order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbedResponse {
    /// Always `"list"`.
    pub object: String,
    /// One vector per input, by `index`.
    pub data: Vec<Embedding>,
    /// The model that answered, as the upstream names it.
    pub model: String,
    /// Token counts.
    pub usage: EmbedUsage,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

deserialize_with_extra!(EmbedResponse {
    object: "object" => (with "list".to_owned()),
    data: "data" => req,
    model: "model" => default,
    usage: "usage" => default,
});

impl EmbedResponse {
    /// An answer holding `vectors` in input order, written as `format` asks.
    pub fn new(
        model: impl Into<String>,
        vectors: Vec<Vec<f32>>,
        format: EncodingFormat,
        prompt_tokens: u64,
    ) -> Self {
        let data = vectors
            .into_iter()
            .enumerate()
            .map(|(i, v)| Embedding {
                object: "embedding".to_owned(),
                index: i as u64,
                embedding: Vector::Float(v).into_format(format),
                extra: Extra::new(),
            })
            .collect();
        Self {
            object: "list".to_owned(),
            data,
            model: model.into(),
            usage: EmbedUsage {
                prompt_tokens,
                total_tokens: prompt_tokens,
                extra: Extra::new(),
            },
            extra: Extra::new(),
        }
    }

    /// Rewrites every vector in `format`. `Err` names a base64 vector that does not
    /// decode to float32 values.
    pub fn encode_as(&mut self, format: EncodingFormat) -> Result<(), String> {
        for e in &mut self.data {
            let v = std::mem::replace(&mut e.embedding, Vector::Float(Vec::new()));
            e.embedding = v
                .try_into_format(format)
                .map_err(|_| format!("the vector at index {} is not float32 base64", e.index))?;
        }
        Ok(())
    }
}

/// One vector of an answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Embedding {
    /// Always `"embedding"`.
    pub object: String,
    /// The input's position in the request.
    pub index: u64,
    /// The vector.
    pub embedding: Vector,
    /// Unknown fields (`index`, `object`), kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

deserialize_with_extra!(Embedding {
    object: "object" => (with "embedding".to_owned()),
    index: "index" => default,
    embedding: "embedding" => req,
});

/// A vector as the answer writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Vector {
    /// Floats (`encoding_format: float`).
    Float(Vec<f32>),
    /// See [`encode_vector`].
    Base64(String),
}

string_or!(Vector, "an array of numbers or a base64 string", str => Vector::Base64, seq => Vector::Float);

impl Vector {
    /// The same vector written as `format` asks. A base64 vector that does not decode
    /// is kept as it is.
    pub fn into_format(self, format: EncodingFormat) -> Vector {
        match self.try_into_format(format) {
            Ok(v) | Err(v) => v,
        }
    }

    fn try_into_format(self, format: EncodingFormat) -> Result<Vector, Vector> {
        match (self, format) {
            (Vector::Float(v), EncodingFormat::Base64) => Ok(Vector::Base64(encode_vector(&v))),
            (Vector::Base64(s), EncodingFormat::Float) => match decode_vector(&s) {
                Some(v) => Ok(Vector::Float(v)),
                None => Err(Vector::Base64(s)),
            },
            (v, _) => Ok(v),
        }
    }
}

/// `usage` of an embeddings answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EmbedUsage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Input tokens (embeddings generate none).
    pub total_tokens: u64,
    /// Provider extras (OpenRouter's `cost`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

deserialize_with_extra!(EmbedUsage {
    prompt_tokens: "prompt_tokens" => default,
    total_tokens: "total_tokens" => default,
});

impl From<&EmbedUsage> for TokenCounts {
    fn from(u: &EmbedUsage) -> Self {
        TokenCounts {
            input: u.prompt_tokens,
            reported_cost: u
                .extra
                .get("cost")
                .and_then(serde_json::Value::as_f64)
                .filter(|c| c.is_finite() && *c >= 0.0),
            ..TokenCounts::default()
        }
    }
}

/// Base64 (standard alphabet, padded) of `values` as float32, little-endian.
///
/// ```
/// use modelway_core::embed::{decode_vector, encode_vector};
/// let b64 = encode_vector(&[1.0, -2.5]);
/// assert_eq!(b64, "AACAPwAAIMA=");
/// assert_eq!(decode_vector(&b64), Some(vec![1.0, -2.5]));
/// ```
pub fn encode_vector(values: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The float32 values of a base64 vector; `None` when it is not base64 or its length
/// is not a multiple of 4 bytes.
pub fn decode_vector(b64: &str) -> Option<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// What a provider answers: the upstream's own `CreateEmbeddingResponse` bytes, or a
/// typed answer a translating provider built.
#[derive(Debug, Clone, PartialEq)]
pub enum Embeddings {
    /// A typed answer.
    Parsed(Box<EmbedResponse>),
    /// An OpenAI-compatible upstream's body, forwarded as it came.
    Raw(RawEmbeddings),
}

impl Embeddings {
    /// The JSON body to send a client.
    pub fn to_json(&self) -> Result<Bytes, serde_json::Error> {
        match self {
            Embeddings::Parsed(r) => serde_json::to_vec(r.as_ref()).map(Bytes::from),
            Embeddings::Raw(r) => Ok(r.body.clone()),
        }
    }

    /// The typed answer (parses a `Raw` body).
    pub fn into_response(self) -> Result<EmbedResponse, serde_json::Error> {
        match self {
            Embeddings::Parsed(r) => Ok(*r),
            Embeddings::Raw(r) => serde_json::from_slice(&r.body),
        }
    }

    /// The tokens the answer reports (`usage.prompt_tokens`, as input).
    pub fn tokens(&self) -> Option<TokenCounts> {
        match self {
            Embeddings::Parsed(r) => Some(TokenCounts::from(&r.usage)),
            Embeddings::Raw(r) => r.tokens,
        }
    }

    /// The model the answer names.
    pub fn model(&self) -> Option<&str> {
        match self {
            Embeddings::Parsed(r) => Some(&r.model),
            Embeddings::Raw(r) => r.model(),
        }
    }
}

impl From<EmbedResponse> for Embeddings {
    fn from(r: EmbedResponse) -> Self {
        Embeddings::Parsed(Box::new(r))
    }
}

/// An upstream's embeddings body, checked in one pass to be a JSON object with `data`
/// and no `error`, with its `model` and usage read once (the usage object is small).
#[derive(Debug, Clone, PartialEq)]
pub struct RawEmbeddings {
    body: Bytes,
    model: Option<Range<usize>>,
    data: Range<usize>,
    tokens: Option<TokenCounts>,
}

impl RawEmbeddings {
    /// `Some` when `body` is one well-formed JSON object with a `data` array and no
    /// non-null `error`.
    pub fn scan(body: Bytes) -> Option<Self> {
        let (mut model, mut usage, mut data) = (None, None, None);
        let mut error = false;
        let valid = crate::json::object_members(&body, |key, value| match key {
            b"data" => data = Some(value),
            b"error" => error |= &body[value] != b"null",
            b"model" => model = Some(value),
            b"usage" => usage = Some(value),
            _ => {}
        });
        let data = data.filter(|d| valid && !error && body[d.clone()].starts_with(b"["))?;
        let tokens = usage
            .and_then(|u| serde_json::from_slice::<EmbedUsage>(&body[u]).ok())
            .map(|u| TokenCounts::from(&u));
        Some(Self {
            body,
            model,
            data,
            tokens,
        })
    }

    /// The body as the upstream sent it.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The top-level `model` string (escapes left as sent; model names have none).
    pub fn model(&self) -> Option<&str> {
        let v = self.body.get(self.model.clone()?)?;
        let v = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\""))?;
        std::str::from_utf8(v).ok()
    }

    /// How the vectors are written, read from the first one; `None` when `data` is
    /// empty. Found in place: `"embedding"` followed by `:` is a key (the quotes of a
    /// string value are escaped; `"object":"embedding"` is followed by `,` or `}`),
    /// and its value opens with `[` (floats) or `"` (base64).
    pub fn encoding(&self) -> Option<EncodingFormat> {
        const KEY: &[u8] = b"embedding\"";
        let data = self.body.get(self.data.clone())?;
        for q in memchr::memchr_iter(b'"', data) {
            let Some(after) = data[q + 1..].strip_prefix(KEY) else {
                continue;
            };
            let Some(v) = after.trim_ascii_start().strip_prefix(b":") else {
                continue;
            };
            return match v.trim_ascii_start().first() {
                Some(b'[') => Some(EncodingFormat::Float),
                Some(b'"') => Some(EncodingFormat::Base64),
                _ => None,
            };
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn input_shapes_parse_and_serialise_back_unchanged() {
        let rows = [
            (json!("hello"), 1),
            (json!(["a", "b", "c"]), 3),
            (json!([1, 2, 3]), 1),
            (json!([[1, 2], [3]]), 2),
        ];
        for (input, n) in rows {
            let body = json!({"model": "m", "input": input, "dimensions": 8,
                "encoding_format": "base64", "user": "u", "x_extra": {"k": [1]}});
            let req: EmbedRequest = serde_json::from_value(body.clone()).unwrap();
            assert_eq!(req.input.len(), n, "{input}");
            assert_eq!(serde_json::to_value(&req).unwrap(), body);
            assert!(req.validate().is_ok(), "{input}");
        }
    }

    #[test]
    fn bad_requests_are_400s_naming_the_field() {
        // (body, error at parse time, param of the validation error)
        let rows: &[(serde_json::Value, bool, Option<&str>)] = &[
            (json!({"input": "x"}), true, None),
            (json!({"model": "m"}), true, None),
            (json!({"model": "m", "input": ["a", 1]}), true, None),
            (json!({"model": "m", "input": [-1]}), true, None),
            (json!({"model": "m", "input": {"a": 1}}), true, None),
            (
                json!({"model": "m", "input": "x", "encoding_format": "int8"}),
                true,
                None,
            ),
            (json!({"model": "", "input": "x"}), false, Some("model")),
            (json!({"model": "m", "input": ""}), false, Some("input")),
            (json!({"model": "m", "input": []}), false, Some("input")),
            (
                json!({"model": "m", "input": ["a", ""]}),
                false,
                Some("input"),
            ),
            (
                json!({"model": "m", "input": [[1], []]}),
                false,
                Some("input"),
            ),
            (
                json!({"model": "m", "input": "x", "dimensions": 0}),
                false,
                Some("dimensions"),
            ),
        ];
        for (body, at_parse, param) in rows {
            let parsed = serde_json::from_value::<EmbedRequest>(body.clone());
            if *at_parse {
                assert!(parsed.is_err(), "{body} parsed");
                continue;
            }
            let err = parsed.unwrap().validate().unwrap_err();
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.param.as_deref(), *param, "{body}: {}", err.message);
        }
        let many = json!({"model": "m", "input": vec!["a"; MAX_INPUTS + 1]});
        let req: EmbedRequest = serde_json::from_value(many).unwrap();
        assert_eq!(req.validate().unwrap_err().param.as_deref(), Some("input"));
    }

    #[test]
    fn base64_is_float32_little_endian() {
        let values = [0.125f32, -2.5, 3.75, f32::MIN_POSITIVE];
        let b64 = encode_vector(&values);
        // What Python's `base64.b64encode(array.array("f", values).tobytes())` gives.
        let mut bytes = Vec::new();
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            b64,
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        );
        assert_eq!(decode_vector(&b64).unwrap(), values);
        assert_eq!(encode_vector(&[0.125, -2.5, 3.75]), "AAAAPgAAIMAAAHBA");
        assert_eq!(decode_vector("not base64!"), None);
        assert_eq!(
            decode_vector("AAAAAP8="),
            None,
            "5 bytes is no float32 vector"
        );
    }

    #[test]
    fn a_response_converts_between_encodings() {
        let mut r = EmbedResponse::new(
            "m",
            vec![vec![1.0, 2.0], vec![0.5]],
            EncodingFormat::Float,
            3,
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"object": "list", "model": "m",
                "data": [{"object": "embedding", "index": 0, "embedding": [1.0, 2.0]},
                         {"object": "embedding", "index": 1, "embedding": [0.5]}],
                "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        );
        r.encode_as(EncodingFormat::Base64).unwrap();
        assert_eq!(r.data[1].embedding, Vector::Base64(encode_vector(&[0.5])));
        let back: EmbedResponse = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        r.encode_as(EncodingFormat::Float).unwrap();
        assert_eq!(r.data[0].embedding, Vector::Float(vec![1.0, 2.0]));
    }

    #[test]
    fn a_raw_body_is_scanned_once_for_model_usage_and_encoding() {
        let body = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2]}],
            "model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5,"cost":0.001}}"#;
        let raw = RawEmbeddings::scan(Bytes::from_static(body)).unwrap();
        assert_eq!(raw.model(), Some("text-embedding-3-small"));
        assert_eq!(raw.encoding(), Some(EncodingFormat::Float));
        let t = Embeddings::Raw(raw.clone()).tokens().unwrap();
        assert_eq!((t.input, t.output, t.reported_cost), (5, 0, Some(0.001)));
        assert_eq!(
            Embeddings::Raw(raw).to_json().unwrap(),
            Bytes::from_static(body)
        );

        let b64 =
            br#"{"data":[{"embedding" : "AAAAPg==","object":"embedding","index":0}],"model":"m"}"#;
        let raw = RawEmbeddings::scan(Bytes::from_static(b64)).unwrap();
        assert_eq!(raw.encoding(), Some(EncodingFormat::Base64));
        assert_eq!(Embeddings::Raw(raw).tokens(), None);

        for bad in [
            &br#"{"error":{"message":"x"},"data":[]}"#[..],
            br#"{"data":{}}"#,
            br#"{"object":"list"}"#,
            br#"{"data":[1,]}"#,
            br#"[]"#,
        ] {
            assert!(
                RawEmbeddings::scan(Bytes::copy_from_slice(bad)).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
