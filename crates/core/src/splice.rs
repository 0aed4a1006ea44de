//! Forwarding the client's own request bytes with only the model replaced.
//!
//! When a preset needs no rewrite, re-encoding the parsed request would only
//! reproduce what the client sent. Instead the top-level `"model"` value is located
//! with a small scanner and replaced in a copy of the original bytes. Anything the
//! scanner is not sure about (escaped keys, a duplicate `model`, a non-string model)
//! makes it give up, and the caller serialises the parsed request as usual.

use std::ops::Range;

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `i` at an opening quote; returns the index after the closing one.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        // Message text is most of a request: jump to the next quote or backslash.
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j] == b'"' {
            return Some(j + 1);
        }
        j += 2;
    }
}

/// `i` at the first byte of a value; returns the index after it.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// Where the object opens and the byte range of the top-level `"model"` string value.
fn locate(b: &[u8]) -> Option<(usize, Range<usize>)> {
    let open = skip_ws(b, 0);
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut i = skip_ws(b, open + 1);
    let mut found = None;
    if b.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(b, i)?;
        let key = &b[i + 1..key_end - 1];
        if key.contains(&b'\\') {
            return None; // an escaped key could spell `model`
        }
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let end = skip_value(b, start)?;
        if key == b"model" {
            if found.is_some() || b[start] != b'"' {
                return None;
            }
            found = Some(start..end);
        }
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    if skip_ws(b, i + 1) != b.len() {
        return None;
    }
    Some((open, found?))
}

/// The client's bytes with the top-level model replaced by `model` and `insert`
/// (`"key":value,` text) placed first in the object; `None` when unsure.
pub fn with_model(raw: &[u8], model: &str, insert: &[u8]) -> Option<Vec<u8>> {
    let (open, span) = locate(raw)?;
    let mut out = Vec::with_capacity(raw.len() + model.len() + insert.len() + 2);
    out.extend_from_slice(&raw[..=open]);
    out.extend_from_slice(insert);
    out.extend_from_slice(&raw[open + 1..span.start]);
    serde_json::to_writer(&mut out, model).ok()?;
    out.extend_from_slice(&raw[span.end..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn spliced(raw: &str, insert: &str) -> Option<Value> {
        with_model(raw.as_bytes(), "up/m\"x", insert.as_bytes())
            .map(|b| serde_json::from_slice(&b).expect("valid JSON"))
    }

    #[test]
    fn splicing_rules() {
        let rows: &[(&str, &str, Option<&str>)] = &[
            (
                r#"{"model":"a","messages":[]}"#,
                "",
                Some(r#"{"model":"up/m\"x","messages":[]}"#),
            ),
            (
                r#" { "messages" : [{"role":"user","content":"{\"model\":\"no\"}"}] , "model" : "a" } "#,
                "",
                Some(
                    r#"{"messages":[{"role":"user","content":"{\"model\":\"no\"}"}],"model":"up/m\"x"}"#,
                ),
            ),
            (
                r#"{"n":1,"model":"a","x":{"model":"inner"},"t":true,"z":null,"f":-1.5e3}"#,
                r#""stream_options":{"include_usage":true},"#,
                Some(
                    r#"{"stream_options":{"include_usage":true},"n":1,"model":"up/m\"x","x":{"model":"inner"},"t":true,"z":null,"f":-1.5e3}"#,
                ),
            ),
            (r#"{"model":"a","model":"b"}"#, "", None),
            (r#"{"mod\u0065l":"a","model":"b"}"#, "", None),
            (r#"{"model":5}"#, "", None),
            (r#"{"messages":[]}"#, "", None),
            (r#"{"model":"a""#, "", None),
            (r#"{"model":"a"} trailing"#, "", None),
            (r#"[1]"#, "", None),
        ];
        for (raw, insert, want) in rows {
            let want: Option<Value> = want.map(|w| serde_json::from_str(w).expect("want"));
            assert_eq!(spliced(raw, insert), want, "{raw}");
        }
    }
}
