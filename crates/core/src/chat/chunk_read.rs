//! A direct reader for the common shape of an OpenAI stream chunk.
//!
//! Every event of a Chat Completions stream is parsed into a [`ChatChunk`] for the
//! normaliser's checks, hundreds per answer, and through serde that was the largest
//! cost of forwarding one (its visitor, a call per key and per string). Nearly all
//! events have the same few keys: `id`, `object`, `created`, `model`,
//! `system_fingerprint`, one or more `choices` with `index`, a `delta` of `role`,
//! `content` or `refusal`, `logprobs: null` and `finish_reason`, and scalar extras
//! such as `service_tier` or `obfuscation`. [`read`] parses exactly that shape in one
//! pass over the bytes and gives up (`None`) on anything else — a key or value it does
//! not handle, an escaped key, a number that is not a plain unsigned integer, any
//! syntax it would have to judge — leaving the event to serde, which decides. So
//! whatever it returns is what serde would have returned for the same text; the tests
//! hold it to that.

use std::borrow::Cow;

use bytestring::ByteString;

use super::{ChatChunk, ChunkChoice, Delta, Extra, FinishReason, Role};
use crate::json::special_byte;

/// What every chunk of a stream repeats — its `id`, `model` and `system_fingerprint` —
/// as the previous chunk said it: a chunk that says the same shares that text (a
/// reference count) instead of allocating its own copy. Kept by whoever reads a stream's
/// chunks one after another ([`ChatChunk::from_event`]).
#[derive(Debug, Default)]
pub struct ChunkNames {
    id: ByteString,
    model: ByteString,
    fingerprint: ByteString,
}

/// `text` as a `ByteString`: the one in `slot` when it says the same, else a new one,
/// kept in `slot` for the next chunk. Without a slot, a new one.
fn name(slot: Option<&mut ByteString>, text: Text<'_>) -> ByteString {
    let Some(slot) = slot else {
        return owned(text);
    };
    if **slot != *text {
        *slot = owned(text);
    }
    slot.clone()
}

fn owned(text: Text<'_>) -> ByteString {
    match text {
        Cow::Borrowed(s) => ByteString::from(s),
        Cow::Owned(s) => ByteString::from(s),
    }
}

/// The chunk `text` says, when it has the common shape; `None` to leave it to serde.
pub(super) fn read(text: &str) -> Option<ChatChunk> {
    run(text, None, None)
}

/// [`read`] of the next event of a stream, held in `src`: its content strings share
/// `src`'s bytes (a reference count) instead of being copied, and its `id`, `model` and
/// `system_fingerprint` share the previous chunk's text in `names` when they repeat it.
pub(super) fn read_shared(src: &ByteString, names: &mut ChunkNames) -> Option<ChatChunk> {
    run(src, Some(src), Some(names))
}

fn run(text: &str, src: Option<&ByteString>, names: Option<&mut ChunkNames>) -> Option<ChatChunk> {
    let mut r = Reader {
        b: text.as_bytes(),
        s: text,
        src,
        i: 0,
    };
    r.ws();
    let chunk = r.chunk(names)?;
    r.ws();
    (r.i == r.b.len()).then_some(chunk)
}

struct Reader<'a> {
    b: &'a [u8],
    /// The same bytes as text, to slice strings from without a UTF-8 check.
    s: &'a str,
    /// The bytes `s` is, when they are shared: strings read without escapes are
    /// slices of them.
    src: Option<&'a ByteString>,
    i: usize,
}

/// A string value: borrowed when it has no escapes, decoded by serde when it has.
type Text<'a> = Cow<'a, str>;

impl<'a> Reader<'a> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// Calls `member` with each key of the object that starts here; the key must have
    /// no escapes, and `member` must read its value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.plain_string()?;
            self.eat(b':')?;
            self.ws();
            member(self, key)?;
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

    /// A string without escapes, borrowed.
    #[inline(always)]
    fn plain_string(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i + 1;
        let end = special_byte(self.b, start)?;
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        self.s.get(start..end)
    }

    /// A string, its escapes decoded by serde_json (which judges them).
    #[inline(always)]
    fn string(&mut self) -> Option<Text<'a>> {
        if self.peek()? != b'"' {
            return None;
        }
        let open = self.i;
        let mut j = open + 1;
        let mut escaped = false;
        loop {
            j = special_byte(self.b, j)?;
            match self.b[j] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                // A control character, which must be escaped: serde's to reject.
                _ => return None,
            }
        }
        self.i = j + 1;
        if escaped {
            serde_json::from_str::<String>(self.s.get(open..=j)?)
                .ok()
                .map(Cow::Owned)
        } else {
            self.s.get(open + 1..j).map(Cow::Borrowed)
        }
    }

    /// `null`, else nothing read.
    #[inline(always)]
    fn null(&mut self) -> bool {
        let is = self.b.get(self.i..self.i + 4) == Some(b"null");
        if is {
            self.i += 4;
        }
        is
    }

    /// `null` for a member this reader only takes when absent or null (which leave
    /// its field `None`); anything else is serde's.
    #[inline(always)]
    fn only_null(&mut self) -> Option<()> {
        self.null().then_some(())
    }

    /// `null` as `None`, else a string.
    #[inline(always)]
    fn opt_string(&mut self) -> Option<Option<Text<'a>>> {
        if self.null() {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A plain unsigned integer (no sign, fraction or exponent) that fits in a `u64`.
    #[inline(always)]
    fn unsigned(&mut self) -> Option<u64> {
        let digits = self.b.get(self.i..)?;
        let len = digits.iter().take_while(|d| d.is_ascii_digit()).count();
        let digits = &digits[..len];
        // No leading zero; and a fraction or exponent is serde's to read.
        if len == 0 || (len > 1 && digits[0] == b'0') {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.b.get(self.i + len) {
            return None;
        }
        let n = if len < 20 {
            // At most 19 digits cannot overflow a u64: no check per digit.
            digits
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
        } else {
            digits.iter().try_fold(0u64, |n, d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })?
        };
        self.i += len;
        Some(n)
    }

    /// A scalar kept in `extra`: a string, `null`, `true`, `false` or a plain
    /// unsigned integer. Anything else is serde's to read.
    fn scalar(&mut self) -> Option<serde_json::Value> {
        use serde_json::Value;
        match self.peek()? {
            b'"' => self.string().map(|s| Value::String(s.into_owned())),
            b'n' => self.null().then_some(Value::Null),
            b't' => self.literal(b"true").then_some(Value::Bool(true)),
            b'f' => self.literal(b"false").then_some(Value::Bool(false)),
            b'0'..=b'9' => self.unsigned().map(Value::from),
            _ => None,
        }
    }

    fn literal(&mut self, lit: &[u8]) -> bool {
        let is = self.b.get(self.i..self.i + lit.len()) == Some(lit);
        if is {
            self.i += lit.len();
        }
        is
    }

    /// A string read from the text as a `ByteString`: a slice of [`Self::src`] when
    /// it is shared and the string was borrowed from it, else its own copy.
    fn shared(&self, text: Text<'a>) -> ByteString {
        match (text, self.src) {
            (Cow::Borrowed(s), Some(src)) => src.slice_ref(s),
            (text, _) => owned(text),
        }
    }

    fn extra(&mut self, extra: &mut Extra, key: &str) -> Option<()> {
        let value = self.scalar()?;
        extra.insert(key.to_owned(), value);
        Some(())
    }

    fn chunk(&mut self, mut names: Option<&mut ChunkNames>) -> Option<ChatChunk> {
        let mut c = ChatChunk::new(ByteString::new(), 0, ByteString::new());
        self.object(|r, key| {
            match key {
                "id" => c.id = name(names.as_mut().map(|n| &mut n.id), r.string()?),
                "object" => {
                    let s = r.string()?;
                    c.object = if s == super::chunk::CHUNK_OBJECT {
                        super::chunk::chunk_object()
                    } else {
                        Cow::Owned(s.into_owned())
                    };
                }
                "created" => c.created = r.unsigned()?,
                "model" => c.model = name(names.as_mut().map(|n| &mut n.model), r.string()?),
                "system_fingerprint" => {
                    let fp = r.opt_string()?;
                    c.system_fingerprint =
                        Some(fp.map(|fp| name(names.as_mut().map(|n| &mut n.fingerprint), fp)));
                }
                "choices" => c.choices = r.choices()?,
                // `usage` is in one chunk of a stream: serde reads it.
                "usage" => r.only_null()?,
                _ => r.extra(&mut c.extra, key)?,
            }
            Some(())
        })?;
        Some(c)
    }

    fn choices(&mut self) -> Option<Vec<ChunkChoice>> {
        self.eat(b'[')?;
        self.ws();
        let mut out = Vec::with_capacity(1);
        if self.peek()? == b']' {
            self.i += 1;
            return Some(out);
        }
        loop {
            // Read in place: a choice is large, and moving it costs a copy.
            out.push(ChunkChoice::new(0, Delta::default()));
            let last = out.last_mut()?;
            self.choice(last)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(out);
                }
                _ => return None,
            }
        }
    }

    /// Reads a choice into `c`, a new one.
    fn choice(&mut self, c: &mut ChunkChoice) -> Option<()> {
        let mut seen_delta = false;
        self.object(|r, key| {
            match key {
                "index" => c.index = u32::try_from(r.unsigned()?).ok()?,
                "delta" => {
                    // A second `delta` replaces the first, as serde's reading does.
                    if std::mem::replace(&mut seen_delta, true) {
                        c.delta = Delta::default();
                    }
                    r.delta(&mut c.delta)?;
                }
                // Log probabilities, when asked for, are serde's to read.
                "logprobs" => r.only_null()?,
                "finish_reason" => {
                    c.finish_reason = r.opt_string()?.map(|s| FinishReason::from(s.as_ref()));
                }
                _ => r.extra(&mut c.extra, key)?,
            }
            Some(())
        })
    }

    /// Reads a delta into `d`, a new one.
    fn delta(&mut self, d: &mut Delta) -> Option<()> {
        self.object(|r, key| {
            match key {
                "role" => d.role = r.opt_string()?.map(|s| Role::from(s.as_ref())),
                "content" => d.content = r.opt_string()?.map(|s| r.shared(s)),
                "refusal" => d.refusal = r.opt_string()?.map(Cow::into_owned),
                // Tool calls are serde's to read.
                "tool_calls" => r.only_null()?,
                _ => r.extra(&mut d.extra, key)?,
            }
            Some(())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// What serde reads from `text`, for comparison; `raw` and `native` are never read.
    fn by_serde(text: &str) -> Option<ChatChunk> {
        serde_json::from_str::<ChatChunk>(text).ok()
    }

    /// Chunks in the shape the reader handles, as OpenAI, OpenRouter, Groq, vLLM and
    /// Ollama write them.
    const READ: &[&str] = &[
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"service_tier":"default","obfuscation":"aZ1"}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":"Hel\"lo\n \u00e9\ud83d\ude00"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"x","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}"#,
        r#" { "id" : "x" , "choices" : [ { "index" : 1 , "delta" : { "content" : "ü 漢字" , "reasoning_content" : null } , "finish_reason" : "weird" , "native_finish_reason" : "STOP" } , {"index":2,"delta":{"role":"tool"}} ] , "x_flag" : true , "n" : 42 } "#,
        r#"{"object":"other","choices":[{"delta":{"role":"something","reasoning":"thinking…"},"finish_reason":null}],"provider":"groq","flag":false}"#,
        r#"{}"#,
        r#"{"id":"a","id":"b","choices":[{"index":0}],"choices":[{"index":3}]}"#,
        r#"{"choices":[{"delta":{"content":"a","role":"assistant"},"delta":{"content":"b"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":null,"content":null}}]}"#,
        // The largest numbers each field holds, and the longest that skip the
        // overflow check.
        r#"{"id":"x","created":18446744073709551615,"choices":[{"index":4294967295}]}"#,
        r#"{"id":"x","created":9999999999999999999,"choices":[],"n":10000000000000000000}"#,
    ];

    /// Texts the reader leaves to serde: valid chunks of another shape, and invalid ones.
    const LEFT: &[&str] = &[
        // usage, logprobs, tool calls, nested or signed or fractional extras
        r#"{"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        r#"{"id":"x","choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[]}}]}"#,
        r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
        r#"{"id":"x","choices":[],"x_groq":{"id":"req_1"}}"#,
        r#"{"id":"x","choices":[],"temp":-1}"#,
        r#"{"id":"x","choices":[],"temp":0.5}"#,
        r#"{"id":"x","choices":[],"big":1e3}"#,
        r#"{"id":"x","created":18446744073709551616,"choices":[]}"#,
        r#"{"id":"x","choices":[{"index":4294967296}]}"#,
        r#"{"\u0069d":"x"}"#,
        // invalid JSON or wrong types
        r#"{"id":"x","choices":[],}"#,
        r#"{"id":"x" "choices":[]}"#,
        r#"{"id":"x","created":01}"#,
        r#"{"id":"x","created":-1}"#,
        r#"{"id":null}"#,
        r#"{"id":1}"#,
        r#"{"choices":null}"#,
        r#"{"choices":{}}"#,
        r#"{"choices":[1]}"#,
        r#"{"id":"a	b"}"#,
        r#"{"id":"\x"}"#,
        r#"{"id":"\ud800"}"#,
        r#"{"id":"x"} extra"#,
        r#"{"id":"x""#,
        r#"{"id":"x"#,
        r#"{"id""#,
        r#"{"#,
        r#""#,
        r#"[]"#,
        r#"{"choices":[{"index":0,"delta":{"content":"a"}}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"a"}},]}"#,
        r#"{"id":"x","n":nul}"#,
        r#"{"id":"x","n":tru}"#,
    ];

    #[test]
    fn reads_the_common_shapes_as_serde_does() {
        for text in READ {
            let fast = read(text).unwrap_or_else(|| panic!("left to serde: {text}"));
            let slow = by_serde(text).unwrap();
            assert_eq!(fast, slow, "{text}");
            // What equality does not compare, and the extras' order.
            assert_eq!(
                serde_json::to_string(&fast).unwrap(),
                serde_json::to_string(&slow).unwrap(),
                "{text}"
            );
        }
    }

    /// Read one after another with the stream's names, chunks read the same, and the
    /// ones that repeat a name share its text.
    #[test]
    fn chunks_read_in_turn_share_the_names_they_repeat() {
        let mut names = ChunkNames::default();
        let mut read_in_turn = Vec::new();
        for text in READ.iter().chain(READ) {
            let shared = read_shared(&ByteString::from(*text), &mut names).unwrap();
            assert_eq!(Some(&shared), read(text).as_ref(), "{text}");
            read_in_turn.push(shared);
        }
        let (a, b) = (&read_in_turn[0], &read_in_turn[1]);
        assert_eq!((&*a.id, &*a.model), (&*b.id, &*b.model));
        assert_eq!(
            a.id.as_ptr(),
            b.id.as_ptr(),
            "the second chunk shares the id"
        );
        assert_eq!(a.model.as_ptr(), b.model.as_ptr());
        // A different name is not mistaken for the one before.
        assert_eq!(&*read_in_turn[2].id, "x");
        assert_eq!(&*read_in_turn[2].model, "m");
        // Escaped names are decoded, not shared as written.
        let mut names = ChunkNames::default();
        let src = ByteString::from(r#"{"id":"a\u0062","model":"\u006d"}"#);
        let c = read_shared(&src, &mut names).unwrap();
        assert_eq!((&*c.id, &*c.model), ("ab", "m"));
    }

    /// Read from shared bytes, a chunk's content is a slice of them unless it had
    /// escapes to decode; the chunk reads the same either way.
    #[test]
    fn content_read_from_shared_bytes_is_a_slice_of_them() {
        for text in READ {
            let src = ByteString::from(*text);
            let shared = read_shared(&src, &mut ChunkNames::default()).unwrap();
            assert_eq!(Some(&shared), read(text).as_ref(), "{text}");
        }
        let src = ByteString::from(
            r#"{"choices":[{"delta":{"content":"Hello"}},{"delta":{"content":"a\nb"}}]}"#,
        );
        let c = read_shared(&src, &mut ChunkNames::default()).unwrap();
        let (plain, escaped) = (
            c.choices[0].delta.content.as_ref().unwrap(),
            c.choices[1].delta.content.as_ref().unwrap(),
        );
        let within = |p: *const u8| src.as_ptr() <= p && p < src.as_ptr().wrapping_add(src.len());
        assert!(
            within(plain.as_ptr()),
            "plain content shares the event's bytes"
        );
        assert!(!within(escaped.as_ptr()), "decoded content is its own");
        assert_eq!(&**escaped, "a\nb");
    }

    #[test]
    fn leaves_every_other_text_to_serde() {
        for text in LEFT {
            assert!(read(text).is_none(), "read: {text}");
        }
    }

    /// Every edit of every chunk above (each byte replaced by each of a set of JSON
    /// syntax characters, deleted, or the text cut there) is either left to serde or
    /// read exactly as serde reads it.
    #[test]
    fn agrees_with_serde_on_every_edit() {
        let subs: &[&str] = &[
            "", "\"", "\\", "{", "}", "[", "]", ",", ":", " ", "0", "9", "-", ".", "e", "n", "t",
            "\u{1}", "é",
        ];
        let mut read_some = 0;
        for text in READ.iter().chain(LEFT) {
            for (i, _) in text.char_indices() {
                for sub in subs {
                    let next = text[i..].chars().next().map_or(0, char::len_utf8);
                    for edited in [
                        format!("{}{sub}{}", &text[..i], &text[i + next..]),
                        format!("{}{sub}{}", &text[..i], &text[i..]),
                        text[..i].to_owned(),
                    ] {
                        if let Some(fast) = read(&edited) {
                            read_some += 1;
                            let slow = by_serde(&edited)
                                .unwrap_or_else(|| panic!("serde rejects: {edited}"));
                            assert_eq!(fast, slow, "{edited}");
                            assert_eq!(
                                serde_json::to_string(&fast).unwrap(),
                                serde_json::to_string(&slow).unwrap(),
                                "{edited}"
                            );
                        }
                    }
                }
            }
        }
        // The edits must also leave many texts readable, or this proves nothing.
        assert!(read_some > 10_000, "{read_some}");
    }

    /// The recorded OpenAI-format streams: every event the reader takes, it reads as
    /// serde does, and it takes the plain content events (most of them).
    #[test]
    fn agrees_with_serde_on_the_recorded_streams() {
        let (mut events, mut read_some) = (0, 0);
        let files = modelway_testkit::fixture_files("openai")
            .into_iter()
            .chain(modelway_testkit::fixture_files("openai-compatible"));
        for (path, text) in files {
            for line in text.lines() {
                let Some(data) = line.trim().strip_prefix("data: ") else {
                    continue;
                };
                if !data.contains("chat.completion.chunk") {
                    continue;
                }
                events += 1;
                if let Some(fast) = read(data) {
                    read_some += 1;
                    assert_eq!(Some(fast), by_serde(data), "{}: {data}", path.display());
                }
            }
        }
        assert!(events > 100, "only {events} recorded events");
        assert!(
            read_some * 2 > events,
            "{read_some} of {events} events read"
        );
    }
}
