//! Server-sent events: an incremental decoder that accepts bytes as they arrive from
//! the network (events split across reads, `\n`, `\r\n` or `\r` line ends, comments,
//! multi-line `data:`, a missing final newline) and the encoder for what modelway
//! sends.

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if the event had one.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`. For the usual one-line event, a slice of
    /// the bytes read from the network (no copy, no allocation), so a passthrough
    /// stream can send it on as it came.
    pub data: ByteString,
    /// The `id:` field, if any.
    pub id: Option<String>,
}

impl SseEvent {
    /// Appends the event as it is written on the wire: `event:` (when it has one), its
    /// `id:`, one `data: ` line per line of data, then a blank line. For an event an
    /// upstream wrote that way (OpenAI's and Anthropic's do: `\n` line ends, one space
    /// after the colon, no comments) these are its bytes exactly, which is how a
    /// passthrough stream hands them on.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if let Some(name) = &self.event {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(name.as_bytes());
            out.push(b'\n');
        }
        if let Some(id) = &self.id {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(id.as_bytes());
            out.push(b'\n');
        }
        for line in self.data.split('\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
    }
}

/// The `data:` of the event being decoded.
#[derive(Debug, Default)]
enum Data {
    #[default]
    None,
    /// One valid line: its value, shared with the decoder's buffer.
    Shared(ByteString),
    /// Several lines joined with `\n`, or a line that needed repair.
    Owned(String),
}

/// Incremental SSE decoder: feed it bytes with [`SseDecoder::push`], take events with
/// [`SseDecoder::next_event`], and call [`SseDecoder::finish`] at end of input.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: BytesMut,
    /// Bytes of `buf` already scanned for a line end (avoids rescanning on every push).
    scanned: usize,
    event: Option<String>,
    id: Option<String>,
    data: Data,
    has_field: bool,
}

impl SseDecoder {
    /// A new, empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if the bytes pushed so far hold one.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        while let Some((len, skip)) = self.next_line(false) {
            if let Some(ev) = self.take_line(len, skip) {
                return Some(ev);
            }
        }
        None
    }

    /// Ends the input: returns the last event if it was not followed by a blank line
    /// (or a newline at all).
    pub fn finish(&mut self) -> Option<SseEvent> {
        if let Some(ev) = self.next_event() {
            return Some(ev);
        }
        while let Some((len, skip)) = self.next_line(true) {
            if let Some(ev) = self.take_line(len, skip) {
                return Some(ev);
            }
        }
        self.dispatch()
    }

    /// Decodes a complete body at once (tests, tools, recorded transcripts).
    pub fn decode_all(body: &[u8]) -> Vec<SseEvent> {
        let mut d = Self::new();
        d.push(body);
        let mut out = Vec::new();
        while let Some(e) = d.next_event() {
            out.push(e);
        }
        while let Some(e) = d.finish() {
            out.push(e);
        }
        out
    }

    /// Whether a partial line or event is still pending.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && !self.has_field
    }

    /// The next complete line at the start of `buf`: its length and the length of its
    /// line end. Nothing is copied; [`Self::take_line`] consumes it.
    fn next_line(&mut self, at_eof: bool) -> Option<(usize, usize)> {
        let start = self.scanned;
        match memchr::memchr2(b'\n', b'\r', &self.buf[start..]).map(|p| p + start) {
            Some(p) => {
                let (skip, ok) = if self.buf[p] == b'\r' {
                    match self.buf.get(p + 1) {
                        Some(b'\n') => (2, true),
                        Some(_) => (1, true),
                        // A lone `\r` at the end may be the first half of `\r\n`.
                        None => (1, at_eof),
                    }
                } else {
                    (1, true)
                };
                if !ok {
                    self.scanned = p;
                    return None;
                }
                self.scanned = 0;
                Some((p, skip))
            }
            None => {
                self.scanned = self.buf.len();
                if at_eof && !self.buf.is_empty() {
                    self.scanned = 0;
                    Some((self.buf.len(), 0))
                } else {
                    None
                }
            }
        }
    }

    /// Applies the line of `len` bytes at the start of `buf`, then drops it and its
    /// `skip`-byte line end.
    fn take_line(&mut self, len: usize, skip: usize) -> Option<SseEvent> {
        let line = &self.buf[..len];
        if line.is_empty() {
            self.buf.advance(skip);
            return self.dispatch();
        }
        // A comment, e.g. ": OPENROUTER PROCESSING".
        if line[0] != b':' {
            let (field_len, value_at) = match memchr::memchr(b':', line) {
                Some(i) => (
                    i,
                    if line.get(i + 1) == Some(&b' ') {
                        i + 2
                    } else {
                        i + 1
                    },
                ),
                None => (len, len),
            };
            match &line[..field_len] {
                b"data" => {
                    self.has_field = true;
                    let value = &line[value_at..];
                    let mut all = match std::mem::take(&mut self.data) {
                        Data::None => {
                            // The line itself, split off the buffer: shared, not copied.
                            let line = self.buf.split_to(len).freeze();
                            self.buf.advance(skip);
                            self.data = match ByteString::try_from(line.slice(value_at..)) {
                                Ok(text) => Data::Shared(text),
                                Err(_) => Data::Owned(text(&line[value_at..])),
                            };
                            return None;
                        }
                        Data::Shared(first) => {
                            let mut all = String::with_capacity(first.len() + 1 + value.len());
                            all.push_str(&first);
                            all
                        }
                        Data::Owned(all) => all,
                    };
                    all.push('\n');
                    all.push_str(&String::from_utf8_lossy(value));
                    self.data = Data::Owned(all);
                }
                b"event" => {
                    self.event = Some(text(&line[value_at..]));
                    self.has_field = true;
                }
                b"id" => {
                    self.id = Some(text(&line[value_at..]));
                    self.has_field = true;
                }
                _ => {} // `retry:` and unknown fields are ignored, per the spec
            }
        }
        self.buf.advance(len + skip);
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        self.has_field = false;
        let event = self.event.take();
        let id = self.id.take();
        // An event with no data is not dispatched (HTML spec); ids/names reset.
        let data = match std::mem::take(&mut self.data) {
            Data::None => return None,
            Data::Shared(text) => text,
            Data::Owned(text) => ByteString::from(text),
        };
        Some(SseEvent { event, data, id })
    }
}

/// A field's value as text: valid UTF-8 (the norm) as it is, anything else repaired.
fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

/// Encodes one `data:` event (`data: <payload>\n\n`). The payload must not contain
/// line breaks; JSON from serde_json never does.
pub fn encode_data(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// Encodes `value` as JSON straight into one `data:` event: one allocation, sized for a
/// typical chunk, and no second copy of the payload.
pub fn encode_json_data<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<Bytes> {
    let mut out = Vec::with_capacity(384);
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut out, value)?;
    out.extend_from_slice(b"\n\n");
    Ok(Bytes::from(out))
}

/// The stream terminator OpenAI sends.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c);
            while let Some(e) = d.next_event() {
                out.push(e);
            }
        }
        while let Some(e) = d.finish() {
            out.push(e);
        }
        out
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| &*e.data).collect()
    }

    #[test]
    fn decoding_rules() {
        // (name, reads as they arrive, expected data payloads)
        type Row<'a> = (&'a str, &'a [&'a [u8]], &'a [&'a str]);
        let rows: &[Row<'_>] = &[
            ("simple", &[b"data: a\n\ndata: b\n\n"], &["a", "b"]),
            (
                "split across reads",
                &[b"da", b"ta: hel", b"lo\n", b"\n"],
                &["hello"],
            ),
            ("crlf", &[b"data: a\r\n\r\ndata: b\r\n\r\n"], &["a", "b"]),
            (
                "crlf split between cr and lf",
                &[b"data: a\r", b"\n\r", b"\n"],
                &["a"],
            ),
            ("lone cr", &[b"data: a\r\rdata: b\r\r"], &["a", "b"]),
            (
                "comment skipped",
                &[b": OPENROUTER PROCESSING\n\ndata: x\n\n"],
                &["x"],
            ),
            ("multi-line data", &[b"data: a\ndata: b\n\n"], &["a\nb"]),
            (
                "missing final newline",
                &[b"data: a\n\ndata: [DONE]"],
                &["a", "[DONE]"],
            ),
            ("missing final blank line", &[b"data: a\n"], &["a"]),
            ("no space after colon", &[b"data:a\n\n"], &["a"]),
            ("event without data dropped", &[b"event: ping\n\n"], &[]),
        ];
        for (name, input, want) in rows {
            let got = decode_all(input);
            assert_eq!(data(&got), *want, "{name}");
        }
    }

    #[test]
    fn invalid_utf8_is_repaired_in_one_line_and_joined_data() {
        let got =
            decode_all(&[b"data: a\xffb\n\ndata: \xc3\ndata: \xa9x\n\nid: \xff\ndata: ok\n\n"]);
        assert_eq!(data(&got), ["a\u{fffd}b", "\u{fffd}\n\u{fffd}x", "ok"]);
        assert_eq!(got[2].id.as_deref(), Some("\u{fffd}"));
    }

    #[test]
    fn one_line_data_shares_the_bytes_it_was_read_from() {
        let mut d = SseDecoder::new();
        d.push(b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\n");
        let (a, b) = (d.next_event().unwrap(), d.next_event().unwrap());
        assert_eq!((&*a.data, &*b.data), (r#"{"a":1}"#, r#"{"b":2}"#));
        // Both are slices of the one buffer the read was pushed into, not copies.
        let gap = b.data.as_ptr() as usize - a.data.as_ptr() as usize;
        assert_eq!(gap, "{\"a\":1}\n\ndata: ".len());
    }

    #[test]
    fn event_names_are_kept() {
        let got = decode_all(&[b"event: message_start\ndata: {}\n\n"]);
        assert_eq!(got[0].event.as_deref(), Some("message_start"));
    }

    #[test]
    fn byte_by_byte_matches_whole() {
        let input = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/openai/sdk-recordings/stream-tool-call.sse"
        ))
        .expect("fixture");
        let whole = decode_all(&[&input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let split = decode_all(&bytes);
        assert_eq!(whole, split);
        assert_eq!(whole.last().map(|e| &*e.data), Some("[DONE]"));
        assert!(whole.len() > 5);
    }

    #[test]
    fn encode_round_trips() {
        assert_eq!(
            encode_json_data(&serde_json::json!({"a": 1})).unwrap(),
            encode_data(br#"{"a":1}"#)
        );
        let enc = encode_data(br#"{"a":1}"#);
        assert_eq!(decode_all(&[&enc])[0].data, r#"{"a":1}"#);
    }

    #[test]
    fn events_written_back_are_the_bytes_they_were_read_from() {
        let input: &[u8] = b"event: response.created\ndata: {\"a\":1}\n\nid: 7\ndata: x\ndata: y\n\ndata: [DONE]\n\n";
        let mut out = Vec::new();
        for ev in decode_all(&[input]) {
            ev.write_to(&mut out);
        }
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(input)
        );
    }
}
