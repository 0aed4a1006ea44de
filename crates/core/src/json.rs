//! Allocation-free JSON checks for the passthrough path.
//!
//! When an upstream already speaks the client's format, the gateway forwards bytes
//! instead of parsing into typed values and encoding them again. It must still know
//! that what it forwards is well-formed JSON (so a broken upstream answer becomes a
//! clean 502, or a fallback, rather than garbage handed to the client) and read a few
//! top-level members. [`object_members`] does both in one pass: it validates the whole
//! document strictly (RFC 8259: UTF-8, no control characters in strings, valid escapes
//! and numbers, nothing after the value, nesting bounded by [`MAX_DEPTH`]) and reports
//! each top-level member's key and value span, building nothing.
//!
//! Strings are skipped eight bytes at a time, and only their non-ASCII runs are checked
//! as UTF-8 (outside strings JSON is ASCII, which the grammar checks), so the cost is
//! close to one pass over the bytes.

use std::ops::Range;

/// Deepest nesting accepted; deeper documents are rejected (as serde_json does at 128).
pub const MAX_DEPTH: usize = 128;

/// Whether `b` is one well-formed JSON value (with optional surrounding whitespace).
pub fn is_valid(b: &[u8]) -> bool {
    let mut p = Parser { b, i: 0 };
    p.ws();
    p.value(0).is_some() && {
        p.ws();
        p.i == b.len()
    }
}

/// Validates `b` as a JSON document whose value is an object and calls `f` with each
/// top-level member's key (its raw bytes between the quotes, escapes not decoded) and
/// the byte range of its value. Returns `false`, after possibly some calls, when `b` is
/// not well-formed or not an object.
pub fn object_members<'a>(b: &'a [u8], mut f: impl FnMut(&'a [u8], Range<usize>)) -> bool {
    let mut p = Parser { b, i: 0 };
    p.ws();
    if p.peek() != Some(b'{') {
        return false;
    }
    let ok = p
        .object(0, &mut |key: Range<usize>, value: Range<usize>| {
            f(&b[key], value)
        })
        .is_some();
    p.ws();
    ok && p.i == b.len()
}

/// The index of the first `"`, `\\` or control character at or after `i`, eight bytes
/// at a time (SWAR): strings are most of a chat body, and most are short, where a
/// `memchr` call costs more than it saves. With `non_ascii`, bytes from 0x80 up stop
/// it too (so their run can be checked as UTF-8).
#[inline(always)]
fn special_byte_in(b: &[u8], mut i: usize, non_ascii: bool) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while let Some(word) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        let quote = w ^ (LO * u64::from(b'"'));
        let backslash = w ^ (LO * u64::from(b'\\'));
        // The lowest flagged byte of each of these is exact (no false positive below
        // the first true match), which is all the caller uses.
        let found = (quote.wrapping_sub(LO) & !quote
            | backslash.wrapping_sub(LO) & !backslash
            | w.wrapping_sub(LO * 0x20) & !w
            | if non_ascii { w } else { 0 })
            & HI;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20 || (non_ascii && c >= 0x80))
        .map(|n| i + n)
}

/// [`special_byte_in`] without stopping at non-ASCII bytes.
pub(crate) fn special_byte(b: &[u8], i: usize) -> Option<usize> {
    special_byte_in(b, i, false)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth, &mut |_, _| {}),
            b'[' => self.array(depth),
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, lit: &[u8]) -> Option<()> {
        let end = self.i + lit.len();
        (self.b.get(self.i..end)? == lit).then(|| self.i = end)
    }

    /// At `{`. `member` gets each key's inner range and value range.
    fn object(
        &mut self,
        depth: usize,
        member: &mut dyn FnMut(Range<usize>, Range<usize>),
    ) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            let start = self.i;
            self.value(depth + 1)?;
            member(key, start..self.i);
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// At `[`.
    fn array(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.value(depth + 1)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// At `"`; returns the range between the quotes.
    fn string(&mut self) -> Option<Range<usize>> {
        let start = self.i + 1;
        let mut j = start;
        loop {
            j = special_byte_in(self.b, j, true)?;
            match self.b[j] {
                b'"' => {
                    self.i = j + 1;
                    return Some(start..j);
                }
                b'\\' => match *self.b.get(j + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 2,
                    b'u' => {
                        let hex = self.b.get(j + 2..j + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        j += 6;
                    }
                    _ => return None,
                },
                // A run of non-ASCII bytes must be UTF-8. A multi-byte character never
                // contains a quote, a backslash or a control byte, so the run ends
                // only between characters, or inside a broken one.
                0x80.. => {
                    let end = special_byte(self.b, j).unwrap_or(self.b.len());
                    std::str::from_utf8(&self.b[j..end]).ok()?;
                    j = end;
                }
                // A control character, which must be escaped.
                _ => return None,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Documents serde_json accepts and rejects; the validator must agree on each.
    const CASES: &[&str] = &[
        "{}",
        "[]",
        " \n{ \"a\" : [1, -2.5e+3, 0, 0.0, 1E9, true, false, null, \"x\"] }\t",
        r#"{"a":"\" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00"}"#,
        r#""just a string""#,
        "12",
        "-0",
        "{\"é\":\"ü 漢字 😀\"}",
        r#"{"a":{"b":{"c":[[[]]]}}}"#,
        // Invalid:
        "",
        " ",
        "{",
        "}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "[1,]",
        "[1 2]",
        "{\"a\":1 \"b\":2}",
        "{a:1}",
        "{'a':1}",
        "01",
        "1.",
        ".5",
        "-",
        "1e",
        "1e+",
        "+1",
        "tru",
        "nul",
        "True",
        "\"unterminated",
        "\"bad escape \\x\"",
        "\"bad unicode \\u12G4\"",
        "\"short unicode \\u12\"",
        "\"raw\nnewline\"",
        "\"tab\there\"",
        "{} {}",
        "{}x",
        "[\"a\"]]",
        "NaN",
    ];

    #[test]
    fn agrees_with_serde_json() {
        for case in CASES {
            let expected = serde_json::from_str::<serde_json::Value>(case).is_ok();
            assert_eq!(is_valid(case.as_bytes()), expected, "{case:?}");
        }
    }

    /// Seeded random edits of real documents (bytes deleted, inserted, replaced,
    /// truncated): the validator agrees with serde_json on each, and on a valid object
    /// reports exactly its top-level members.
    #[test]
    fn agrees_with_serde_json_on_random_edits() {
        let docs: [&[u8]; 4] = [
            br#"{"id":"chatcmpl-1","object":"chat.completion","created":1735689600,"choices":[{"index":0,"message":{"role":"assistant","content":"Yes \"quoted\" \u00e9 \n","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":62,"completion_tokens":31,"cost":1.5e-3}}"#,
            r#"{"é": ["ü 漢字 😀", -0.5, true, false, null, {}, [], [[{"a":[1]}]]], "x" : { "y" : "z" } }"#.as_bytes(),
            br#"[1, 2.0e+10, "a\\b\/c", {"k": [true]}]"#,
            br#"  "a string"  "#,
        ];
        let noise = b"{}[]:,\\\" \t\n0123456789-+.eEtrufalsn\x00\x1f\x7f\x80\xc3\xa9\xe6\xff";
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut checked = 0;
        for doc in docs {
            for _ in 0..12_000 {
                let mut d = doc.to_vec();
                for _ in 0..1 + next(3) {
                    let at = next(d.len() + 1);
                    match next(4) {
                        0 if at < d.len() => {
                            d.remove(at);
                        }
                        1 => d.insert(at, noise[next(noise.len())]),
                        2 if at < d.len() => d[at] = noise[next(noise.len())],
                        _ => d.truncate(at),
                    }
                }
                // serde_json also rejects lone surrogate escapes, which this check
                // leaves to the client's decoder; the edits rarely make one.
                if d.windows(3)
                    .any(|w| w[0] == b'u' && matches!(w[1], b'd' | b'D'))
                {
                    continue;
                }
                let want = serde_json::from_slice::<serde_json::Value>(&d);
                // And numbers beyond f64 (`1e400`), which RFC 8259 allows.
                if want
                    .as_ref()
                    .is_err_and(|e| e.to_string().contains("out of range"))
                {
                    continue;
                }
                assert_eq!(
                    is_valid(&d),
                    want.is_ok(),
                    "{:?}",
                    String::from_utf8_lossy(&d)
                );
                let mut keys = Vec::new();
                let members = object_members(&d, |k, v| keys.push((k.to_vec(), v)));
                match want {
                    Ok(serde_json::Value::Object(m)) => {
                        assert!(members);
                        for (k, v) in &keys {
                            let parsed: serde_json::Value =
                                serde_json::from_slice(&d[v.clone()]).unwrap();
                            let k = std::str::from_utf8(k).unwrap();
                            if !k.contains('\\') {
                                assert_eq!(m.get(k), Some(&parsed), "{k}");
                            }
                        }
                        assert!(keys.len() >= m.len());
                    }
                    _ => assert!(!members),
                }
                checked += 1;
            }
        }
        assert!(checked > 40_000, "{checked}");
    }

    #[test]
    fn special_byte_finds_the_first_quote_backslash_or_control_character() {
        // Every position and every kind of special byte, after every kind of ordinary
        // byte (including ones whose bit patterns are near the special ones).
        let fillers = [
            b'a',
            b' ',
            b'!',
            b'#',
            b'[',
            b']',
            0x7f,
            0x80,
            0xc3,
            0xff,
            0x21,
            0x1f + 1,
        ];
        for special in [b'"', b'\\', 0x00, 0x0a, 0x1f] {
            for filler in fillers {
                for len in 0..20 {
                    for pos in 0..len {
                        let mut buf = vec![filler; len];
                        buf[pos] = special;
                        for start in 0..=pos {
                            assert_eq!(
                                special_byte(&buf, start),
                                Some(pos),
                                "{buf:?} from {start}"
                            );
                        }
                        // Later specials never hide an earlier one.
                        buf.extend_from_slice(b"\"\\\x01");
                        assert_eq!(special_byte(&buf, 0), Some(pos));
                    }
                    assert_eq!(special_byte(&vec![filler; len], 0), None);
                }
            }
        }
    }

    #[test]
    fn special_byte_in_strings_also_stops_at_non_ascii() {
        for special in [0x80, 0xc3, 0xff, b'"', 0x05] {
            for len in 1..20 {
                for pos in 0..len {
                    let mut buf = vec![b'a'; len];
                    buf[pos] = special;
                    assert_eq!(special_byte_in(&buf, 0, true), Some(pos), "{buf:?}");
                }
            }
        }
        assert_eq!(special_byte_in(b"abcdefghij\x7f", 0, true), None);
    }

    #[test]
    fn rejects_invalid_utf8_and_deep_nesting() {
        assert!(!is_valid(b"\"\xff\""));
        assert!(!is_valid(b"{\"a\":\"\xc3\"}"));
        // Non-ASCII outside strings, a broken character cut by a quote or an escape,
        // overlong and surrogate encodings, each after valid text.
        for bad in [
            &b"{\"a\":1\xc3\xa9}"[..],
            b"\xef\xbb\xbf{}",
            b"\"ab\xc3\"",
            b"\"\xe6\xbc\\n\"",
            b"\"ok \xc0\xaf\"",
            b"\"ok \xed\xa0\x80\"",
            b"\"\xf0\x9f\x98\"",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
        assert!(is_valid("\"é\\n漢字\\\"😀 x\"".as_bytes()));
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(!is_valid(deep.as_bytes()));
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(is_valid(ok.as_bytes()));
    }

    #[test]
    fn every_prefix_of_a_document_is_rejected() {
        let doc = br#"{"id":"x","choices":[{"message":{"content":"a \"b\" \u00e9"}}],"n":-1.5e3}"#;
        assert!(is_valid(doc));
        for end in 0..doc.len() {
            assert!(
                !is_valid(&doc[..end]),
                "{:?}",
                std::str::from_utf8(&doc[..end])
            );
        }
    }

    #[test]
    fn reports_top_level_members_only() {
        let doc = br#" {"model":"m","nested":{"model":"no"},"list":[1,{"a":2}],"s":"x\"y"} "#;
        let mut seen = Vec::new();
        assert!(object_members(doc, |k, v| seen.push((
            std::str::from_utf8(k).unwrap().to_owned(),
            std::str::from_utf8(&doc[v]).unwrap().to_owned()
        ))));
        assert_eq!(
            seen,
            [
                ("model", "\"m\""),
                ("nested", r#"{"model":"no"}"#),
                ("list", r#"[1,{"a":2}]"#),
                ("s", r#""x\"y""#),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert!(!object_members(b"[1]", |_, _| {}));
        assert!(!object_members(b"{\"a\":1", |_, _| {}));
        assert!(!object_members(b"{\"a\":1}}", |_, _| {}));
    }

    #[test]
    fn agrees_with_serde_json_on_every_recorded_fixture() {
        // Each recorded OpenAI answer and chunk, and corrupted copies of them.
        let mut checked = 0;
        for (path, text) in modelway_testkit::fixture_files("openai") {
            for line in text.lines() {
                let data = line.strip_prefix("data: ").unwrap_or(line).trim();
                if !data.starts_with('{') {
                    continue;
                }
                for doc in [
                    data.to_owned(),
                    data[..data.len() / 2].to_owned(),
                    data.replacen(':', "", 1),
                    data.replacen('"', "'", 1),
                ] {
                    let expected = serde_json::from_str::<serde_json::Value>(&doc).is_ok();
                    assert_eq!(
                        is_valid(doc.as_bytes()),
                        expected,
                        "{}: {doc}",
                        path.display()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "only {checked} documents checked");
    }
}

/// `text` (valid JSON) without the whitespace outside strings, keys in their order and
/// escapes as sent: a byte-stable encoding of tool arguments keeps a provider's prompt
/// cache warm across turns. Copies only what it must (already compact: one copy).
pub fn compact(text: &str) -> String {
    if !text.bytes().any(|b| b.is_ascii_whitespace()) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod compact_tests {
    #[test]
    fn strips_whitespace_outside_strings_only() {
        assert_eq!(
            super::compact("{ \"a b\" : [1, 2],\n\"c\":\"x\\\" y\" }"),
            "{\"a b\":[1,2],\"c\":\"x\\\" y\"}"
        );
        assert_eq!(super::compact("{}"), "{}");
    }
}
