//! The load generator's view of an SSE stream: a minimal incremental splitter (events
//! end at a blank line; only `data:` lines matter) and the classification of each
//! event's data, in OpenAI's chunks or Anthropic's Messages events.

use bytes::BytesMut;

use crate::wire::ClientDialect;

/// Splits bytes as they arrive into the `data` of complete events.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: BytesMut,
}

impl Splitter {
    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The joined `data:` lines of the next complete event, if any.
    pub fn next_data(&mut self) -> Option<String> {
        loop {
            let end = find_event_end(&self.buf)?;
            let event = self.buf.split_to(end.0 + end.1);
            let text = String::from_utf8_lossy(&event[..end.0]);
            let mut data = String::new();
            let mut any = false;
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if let Some(v) = line.strip_prefix("data:") {
                    if any {
                        data.push('\n');
                    }
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    any = true;
                }
            }
            if any {
                return Some(data);
            }
        }
    }
}

/// `(event length, separator length)` of the first complete event.
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' && buf[i + 1] == b'\n' {
            return Some((i, 2));
        }
        if buf[i] == b'\r' && buf[i + 1..].starts_with(b"\n\r\n") {
            return Some((i, 4));
        }
        i += 1;
    }
    None
}

/// What one event's data was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The end of a complete stream: `[DONE]`, or Anthropic's `message_stop`.
    Done,
    /// Non-empty text (`choices[0].delta.content`, or a `content_block_delta`'s
    /// `text_delta`); the stamp if it carried one.
    Content(Option<(u32, u64)>),
    /// A chunk with a `finish_reason`, or a `message_delta` with a `stop_reason`.
    Finish,
    /// An `{"error": …}` event.
    Error(String),
    /// Valid JSON of any other kind (role chunk, usage chunk, `message_start`,
    /// `content_block_start`, `content_block_stop`, `ping`).
    Other,
    /// Not JSON.
    Malformed(String),
}

/// Classifies one event's data, read as `dialect` streams it.
pub fn classify(dialect: ClientDialect, data: &str) -> Event {
    if dialect == ClientDialect::Openai && data.trim() == "[DONE]" {
        return Event::Done;
    }
    let v: serde_json::Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => return Event::Malformed(format!("{e}: {}", truncate(data, 120))),
    };
    if let Some(err) = v.get("error") {
        return Event::Error(truncate(&err.to_string(), 200));
    }
    match dialect {
        ClientDialect::Openai => chat_event(&v),
        ClientDialect::Anthropic => messages_event(&v),
    }
}

fn chat_event(v: &serde_json::Value) -> Event {
    let choice = &v["choices"][0];
    if let Some(content) = choice["delta"]["content"].as_str() {
        if !content.is_empty() {
            return Event::Content(crate::wire::parse_stamp(content));
        }
    }
    if choice["finish_reason"].is_string() {
        return Event::Finish;
    }
    Event::Other
}

/// An Anthropic event by its `type` (the `event:` line repeats it and is not read).
fn messages_event(v: &serde_json::Value) -> Event {
    match v["type"].as_str() {
        Some("content_block_delta") => match v["delta"]["text"].as_str() {
            Some(text) if !text.is_empty() => Event::Content(crate::wire::parse_stamp(text)),
            _ => Event::Other,
        },
        Some("message_delta") if v["delta"]["stop_reason"].is_string() => Event::Finish,
        Some("message_stop") => Event::Done,
        _ => Event::Other,
    }
}

/// At most `n` bytes of `s`, on a character boundary.
pub fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    #[test]
    fn splits_across_reads_and_classifies() {
        let mut all = Vec::new();
        all.extend_from_slice(&wire::role_chunk());
        all.extend_from_slice(&wire::content_chunk(0));
        all.extend_from_slice(b": comment\n\n");
        all.extend_from_slice(&wire::finish_chunk());
        all.extend_from_slice(&wire::usage_chunk());
        all.extend_from_slice(wire::DONE);
        let mut s = Splitter::default();
        let mut events = Vec::new();
        for piece in all.chunks(7) {
            s.push(piece);
            while let Some(d) = s.next_data() {
                events.push(classify(ClientDialect::Openai, &d));
            }
        }
        assert_eq!(events.len(), 5, "{events:?}");
        assert_eq!(events[0], Event::Other);
        assert!(matches!(events[1], Event::Content(Some((0, _)))));
        assert_eq!(events[2], Event::Finish);
        assert_eq!(events[3], Event::Other);
        assert_eq!(events[4], Event::Done);
        assert!(matches!(
            classify(ClientDialect::Openai, r#"{"error":{"message":"x"}}"#),
            Event::Error(_)
        ));
        assert!(matches!(
            classify(ClientDialect::Openai, "nope"),
            Event::Malformed(_)
        ));
    }

    #[test]
    fn messages_events_end_at_message_stop() {
        let mut all = Vec::new();
        all.extend_from_slice(&wire::anthropic::start());
        all.extend_from_slice(b"event: ping\ndata: {\"type\": \"ping\"}\n\n");
        all.extend_from_slice(&wire::anthropic::content_chunk(0));
        all.extend_from_slice(&wire::anthropic::content_chunk(1));
        all.extend_from_slice(&wire::anthropic::finish(2));
        let mut s = Splitter::default();
        let mut events = Vec::new();
        for piece in all.chunks(5) {
            s.push(piece);
            while let Some(d) = s.next_data() {
                events.push(classify(ClientDialect::Anthropic, &d));
            }
        }
        // message_start, content_block_start, ping, two deltas, content_block_stop,
        // message_delta, message_stop.
        assert_eq!(events.len(), 8, "{events:?}");
        assert_eq!(events[..3], [Event::Other, Event::Other, Event::Other]);
        assert!(
            matches!(events[3], Event::Content(Some((0, _)))),
            "{events:?}"
        );
        assert!(
            matches!(events[4], Event::Content(Some((1, _)))),
            "{events:?}"
        );
        assert_eq!(events[5..], [Event::Other, Event::Finish, Event::Done]);
        assert!(matches!(
            classify(
                ClientDialect::Anthropic,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#
            ),
            Event::Error(_)
        ));
        // An OpenAI reader does not mistake Anthropic's end for its own, nor the reverse.
        assert_eq!(
            classify(ClientDialect::Openai, r#"{"type":"message_stop"}"#),
            Event::Other
        );
        assert!(matches!(
            classify(ClientDialect::Anthropic, "[DONE]"),
            Event::Malformed(_)
        ));
    }

    #[test]
    fn crlf_events() {
        let mut s = Splitter::default();
        s.push(b"data: a\r\n\r\ndata: b\n\n");
        assert_eq!(s.next_data().as_deref(), Some("a"));
        assert_eq!(s.next_data().as_deref(), Some("b"));
        assert_eq!(s.next_data(), None);
        assert_eq!(truncate("héllo", 2), "h…");
    }
}
