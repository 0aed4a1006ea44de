//! The streamed form of an answer: for each choice a role chunk, the answer in pieces
//! and a finish chunk; then one `choices: []` chunk carrying the usage.
//!
//! Chunks are made one at a time as the stream is polled, so a long answer is never
//! held twice.

use std::time::Duration;

use futures_util::stream;
use modelway_core::chat::{
    ChatChunk, ChunkChoice, Delta, FunctionCallDelta, Role, ToolCallDelta, Usage,
};
use modelway_core::ByteString;
use modelway_core::ChunkStream;

use crate::answer::Answer;

/// Where a [`Chunks`] iterator is in the current choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Body,
    Finish,
    Usage,
    Done,
}

/// The chunks of one answer, in order.
#[derive(Debug)]
pub(crate) struct Chunks {
    id: ByteString,
    created: u64,
    model: ByteString,
    answer: Answer,
    /// The tool call's id; empty for a text answer.
    call_id: String,
    n: u32,
    chunk_words: usize,
    usage: Option<Usage>,
    choice: u32,
    phase: Phase,
    /// Byte offset into the text or the arguments of the piece to send next.
    pos: usize,
}

impl Chunks {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: String,
        created: u64,
        model: String,
        answer: Answer,
        call_id: String,
        n: u32,
        chunk_words: usize,
        usage: Usage,
    ) -> Self {
        Self {
            id: id.into(),
            created,
            model: model.into(),
            answer,
            call_id,
            n,
            chunk_words,
            usage: Some(usage),
            choice: 0,
            phase: if n == 0 { Phase::Usage } else { Phase::Start },
            pos: 0,
        }
    }

    /// The iterator as a [`ChunkStream`], sleeping `delay` between chunks.
    pub(crate) fn into_stream(self, delay: Duration) -> ChunkStream {
        if delay.is_zero() {
            return Box::pin(stream::iter(self.map(Ok)));
        }
        Box::pin(stream::unfold(
            (self, true),
            move |(mut chunks, first)| async move {
                let chunk = chunks.next()?;
                if !first {
                    tokio::time::sleep(delay).await;
                }
                Some((Ok(chunk), (chunks, false)))
            },
        ))
    }

    fn chunk(&self, delta: Delta) -> ChatChunk {
        let mut c = ChatChunk::new(self.id.clone(), self.created, self.model.clone());
        c.choices.push(ChunkChoice::new(self.choice, delta));
        c
    }

    /// The role chunk; a tool call's first fragment (id, type, name) rides on it, as
    /// OpenAI sends it.
    fn start(&self) -> ChatChunk {
        let delta = match &self.answer {
            Answer::Text(_) => Delta {
                role: Some(Role::Assistant),
                content: Some(ByteString::new()),
                ..Delta::default()
            },
            Answer::ToolCall { name, .. } => Delta {
                role: Some(Role::Assistant),
                tool_calls: Some(vec![ToolCallDelta {
                    index: 0,
                    id: Some(self.call_id.clone()),
                    kind: Some("function".to_owned()),
                    function: Some(FunctionCallDelta {
                        name: Some(name.clone()),
                        arguments: Some(String::new()),
                    }),
                    extra: Default::default(),
                }]),
                ..Delta::default()
            },
        };
        self.chunk(delta)
    }

    /// The next piece of the answer, or `None` when it has all been sent.
    fn body(&mut self) -> Option<ChatChunk> {
        let delta = match &self.answer {
            Answer::Text(text) => {
                let text = text.as_str();
                if self.pos >= text.len() {
                    return None;
                }
                let end = piece_end(text, self.pos, self.chunk_words);
                let piece = &text[self.pos..end];
                self.pos = end;
                Delta {
                    content: Some(piece.into()),
                    ..Delta::default()
                }
            }
            Answer::ToolCall { arguments, .. } => {
                if self.pos >= arguments.len() {
                    return None;
                }
                // Two pieces, so a client must concatenate fragments to get the JSON.
                let half = floor_char_boundary(arguments, arguments.len() / 2);
                let end = if self.pos == 0 && half > 0 {
                    half
                } else {
                    arguments.len()
                };
                let piece = &arguments[self.pos..end];
                self.pos = end;
                Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: 0,
                        id: None,
                        kind: None,
                        function: Some(FunctionCallDelta {
                            name: None,
                            arguments: Some(piece.to_owned()),
                        }),
                        extra: Default::default(),
                    }]),
                    ..Delta::default()
                }
            }
        };
        Some(self.chunk(delta))
    }

    fn finish(&self) -> ChatChunk {
        let mut c = self.chunk(Delta::default());
        for choice in &mut c.choices {
            choice.finish_reason = Some(self.answer.finish_reason());
        }
        c
    }
}

impl Iterator for Chunks {
    type Item = ChatChunk;

    fn next(&mut self) -> Option<ChatChunk> {
        loop {
            match self.phase {
                Phase::Start => {
                    self.phase = Phase::Body;
                    self.pos = 0;
                    return Some(self.start());
                }
                Phase::Body => match self.body() {
                    Some(c) => return Some(c),
                    None => self.phase = Phase::Finish,
                },
                Phase::Finish => {
                    let c = self.finish();
                    self.choice += 1;
                    self.phase = if self.choice < self.n {
                        Phase::Start
                    } else {
                        Phase::Usage
                    };
                    return Some(c);
                }
                Phase::Usage => {
                    self.phase = Phase::Done;
                    let mut c = ChatChunk::new(self.id.clone(), self.created, self.model.clone());
                    c.usage = self.usage.take().map(Box::new);
                    return Some(c);
                }
                Phase::Done => return None,
            }
        }
    }
}

/// End (byte offset) of the piece starting at `from` that holds `words` words, each
/// with the whitespace before it, so the pieces concatenate to `text` exactly.
fn piece_end(text: &str, from: usize, words: usize) -> usize {
    let rest = &text[from..];
    let mut chars = rest.char_indices().peekable();
    for _ in 0..words {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        while chars.next_if(|(_, c)| !c.is_whitespace()).is_some() {}
    }
    from + chars.peek().map_or(rest.len(), |&(i, _)| i)
}

/// The largest char boundary of `s` at or below `i`.
fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str, words: usize) -> Vec<&str> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < text.len() {
            let end = piece_end(text, pos, words);
            out.push(&text[pos..end]);
            pos = end;
        }
        out
    }

    #[test]
    fn pieces_keep_the_whitespace_before_each_word() {
        let rows: &[(&str, usize, &[&str])] = &[
            ("", 1, &[]),
            ("one", 1, &["one"]),
            ("one two three", 1, &["one", " two", " three"]),
            ("one two three", 2, &["one two", " three"]),
            ("  lead and trail  ", 1, &["  lead", " and", " trail", "  "]),
            ("héllo wörld", 1, &["héllo", " wörld"]),
            ("a\n\nb", 5, &["a\n\nb"]),
        ];
        for (text, words, want) in rows {
            assert_eq!(pieces(text, *words), *want, "{text:?} by {words}");
        }
    }
}
