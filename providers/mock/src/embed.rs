//! The mock's embeddings: a deterministic unit vector per input, derived from the
//! input alone, so the same text always gets the same vector (and different texts,
//! almost surely, different ones).
//!
//! The input's bytes (a text's UTF-8, or each token id little-endian) are hashed with
//! 64-bit FNV-1a; that seeds a SplitMix64 sequence whose draws, mapped to `[-1, 1)`,
//! are the vector's values before it is scaled to length 1 (as OpenAI's vectors are).

use modelway_core::embed::{EmbedInput, EmbedRequest, EmbedResponse};
use modelway_core::ProviderError;

/// Vector size when neither the request (`dimensions`) nor the config sets one.
pub(crate) const DEFAULT_DIMENSIONS: u64 = 64;

/// The largest `dimensions` the mock builds (OpenAI's largest model has 3072).
pub(crate) const MAX_DIMENSIONS: u64 = 16_384;

fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One deterministic unit vector of `dims` values for `seed`.
pub(crate) fn vector(seed: u64, dims: usize) -> Vec<f32> {
    let mut state = seed;
    let mut next = || {
        // SplitMix64.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    // The top 24 bits, exactly representable in an f32, scaled to [-1, 1).
    let mut v: Vec<f32> = (0..dims)
        .map(|_| (next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

/// The answer to `req` at `model`: one vector per input, tokens counted as the mock
/// counts them (a whitespace-separated word of a text, or one token id).
pub(crate) fn answer(
    req: &EmbedRequest,
    model: &str,
    default_dims: u64,
) -> Result<EmbedResponse, ProviderError> {
    let dims = req.dimensions.unwrap_or(default_dims);
    if !(1..=MAX_DIMENSIONS).contains(&dims) {
        return Err(ProviderError::InvalidRequest {
            message: format!("`dimensions` must be between 1 and {MAX_DIMENSIONS}, got {dims}"),
            param: Some("dimensions".to_owned()),
        });
    }
    let dims = dims as usize;
    let words = |t: &str| t.split_whitespace().count() as u64;
    let tokens_of = |t: &[u32]| {
        t.iter()
            .flat_map(|id| id.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let (vectors, tokens): (Vec<Vec<f32>>, u64) = match &req.input {
        EmbedInput::Text(t) => (vec![vector(fnv1a(t.bytes()), dims)], words(t)),
        EmbedInput::Texts(ts) => (
            ts.iter().map(|t| vector(fnv1a(t.bytes()), dims)).collect(),
            ts.iter().map(|t| words(t)).sum(),
        ),
        EmbedInput::Tokens(t) => (vec![vector(fnv1a(tokens_of(t)), dims)], t.len() as u64),
        EmbedInput::TokenLists(ts) => (
            ts.iter()
                .map(|t| vector(fnv1a(tokens_of(t)), dims))
                .collect(),
            ts.iter().map(|t| t.len() as u64).sum(),
        ),
    };
    Ok(EmbedResponse::new(model, vectors, req.encoding(), tokens))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use modelway_core::embed::{decode_vector, EncodingFormat, Vector};

    use super::*;

    fn req(input: EmbedInput, dims: Option<u64>, format: Option<EncodingFormat>) -> EmbedRequest {
        let mut r = EmbedRequest::new("client", input);
        r.dimensions = dims;
        r.encoding_format = format;
        r
    }

    fn floats(v: &Vector) -> Vec<f32> {
        match v {
            Vector::Float(f) => f.clone(),
            Vector::Base64(s) => decode_vector(s).unwrap(),
        }
    }

    #[test]
    fn vectors_are_deterministic_unit_vectors_that_honour_dimensions_and_base64() {
        let texts = EmbedInput::Texts(vec![
            "hello world".into(),
            "other".into(),
            "hello world".into(),
        ]);
        let a = answer(&req(texts.clone(), None, None), "up", DEFAULT_DIMENSIONS).unwrap();
        assert_eq!(a.model, "up");
        assert_eq!((a.usage.prompt_tokens, a.usage.total_tokens), (5, 5));
        let v: Vec<Vec<f32>> = a.data.iter().map(|e| floats(&e.embedding)).collect();
        assert_eq!(v[0].len(), 64);
        assert_eq!(v[0], v[2], "same text, same vector");
        assert_ne!(v[0], v[1]);
        let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert_eq!(
            a.data.iter().map(|e| e.index).collect::<Vec<_>>(),
            [0, 1, 2]
        );

        let b = answer(
            &req(texts, Some(3), Some(EncodingFormat::Base64)),
            "up",
            DEFAULT_DIMENSIONS,
        )
        .unwrap();
        assert!(matches!(b.data[0].embedding, Vector::Base64(_)));
        assert_eq!(floats(&b.data[0].embedding).len(), 3);
        let single = answer(
            &req(EmbedInput::Text("hello world".into()), Some(3), None),
            "up",
            DEFAULT_DIMENSIONS,
        )
        .unwrap();
        assert_eq!(
            floats(&b.data[0].embedding),
            floats(&single.data[0].embedding),
            "base64 decodes to the float answer"
        );

        let t = answer(
            &req(
                EmbedInput::TokenLists(vec![vec![1, 2], vec![3]]),
                None,
                None,
            ),
            "up",
            8,
        )
        .unwrap();
        assert_eq!((t.data.len(), t.usage.prompt_tokens), (2, 3));
        let e = answer(
            &req(EmbedInput::Text("x".into()), Some(MAX_DIMENSIONS + 1), None),
            "up",
            8,
        )
        .unwrap_err();
        assert!(matches!(e, ProviderError::InvalidRequest { .. }), "{e:?}");
    }
}
