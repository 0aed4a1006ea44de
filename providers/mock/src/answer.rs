//! What the mock answers: the text or tool call a request gets, its token counts, and
//! the non-streaming response built from them.

use std::sync::Arc;

use modelway_core::chat::{
    ChatRequest, ChatResponse, Choice, Extra, FinishReason, FunctionCall, Message, MessageContent,
    ResponseMessage, Role, ToolCall, ToolChoice, ToolChoiceMode, Usage,
};
use serde_json::{Map, Value};

/// The answer to one request, the same for each of its `n` choices.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// Plain text.
    Text(Text),
    /// One call to a function tool; `arguments` is a JSON object's text.
    ToolCall { name: String, arguments: String },
}

/// Answer text: the configured reply (shared, not copied per request) or text built
/// for this request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Text {
    Shared(Arc<str>),
    Owned(String),
}

impl Text {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Text::Shared(s) => s,
            Text::Owned(s) => s,
        }
    }

    fn into_string(self) -> String {
        match self {
            Text::Shared(s) => s.as_ref().to_owned(),
            Text::Owned(s) => s,
        }
    }
}

impl Answer {
    /// Decides the answer. With `tool_calls` on, a tool result is acknowledged and a
    /// user turn offered tools gets a tool call; otherwise the answer is `reply`, or
    /// an echo of the last user message when there is none.
    pub(crate) fn for_request(
        req: &ChatRequest,
        reply: Option<&Arc<str>>,
        tool_calls: bool,
    ) -> Self {
        if tool_calls {
            match req.messages.last() {
                Some(m) if matches!(m.role, Role::Tool | Role::Function) => {
                    return Answer::Text(Text::Owned(format!("Tool result: {}", m.text_content())));
                }
                Some(m) if m.role == Role::User => {
                    if let Some(call) = tool_call(req) {
                        return call;
                    }
                }
                _ => {}
            }
        }
        Answer::Text(match reply {
            Some(r) => Text::Shared(Arc::clone(r)),
            None => Text::Owned(
                req.messages
                    .iter()
                    .rev()
                    .find(|m| m.role == Role::User)
                    .map(Message::text_content)
                    .unwrap_or_default(),
            ),
        })
    }

    pub(crate) fn finish_reason(&self) -> FinishReason {
        match self {
            Answer::Text(_) => FinishReason::Stop,
            Answer::ToolCall { .. } => FinishReason::ToolCalls,
        }
    }

    /// Deterministic token accounting: a token is a whitespace-separated word. The
    /// prompt counts the text of every message; the completion counts the answer once
    /// per choice.
    pub(crate) fn usage(&self, req: &ChatRequest, n: u32) -> Usage {
        let prompt_tokens = req.messages.iter().map(message_words).sum();
        let answer_words = match self {
            Answer::Text(t) => count_words([t.as_str()]),
            Answer::ToolCall { arguments, .. } => count_words([arguments.as_str()]),
        };
        let completion_tokens = answer_words * u64::from(n);
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            ..Usage::default()
        }
    }

    /// The non-streaming response: `n` identical choices.
    pub(crate) fn into_response(
        self,
        id: String,
        created: u64,
        model: String,
        call_id: impl FnOnce() -> String,
        n: u32,
        usage: Usage,
    ) -> ChatResponse {
        let finish_reason = self.finish_reason();
        let message = match self {
            Answer::Text(t) => ResponseMessage::text(t.into_string()),
            Answer::ToolCall { name, arguments } => ResponseMessage {
                role: Role::Assistant,
                content: None,
                refusal: None,
                tool_calls: Some(vec![ToolCall {
                    id: call_id(),
                    kind: "function".to_owned(),
                    function: FunctionCall { name, arguments },
                    extra: Extra::new(),
                }]),
                extra: Extra::new(),
            },
        };
        let choice = |index, message| Choice {
            index,
            message,
            logprobs: None,
            finish_reason: Some(finish_reason.clone()),
            extra: Extra::new(),
        };
        // Clone for all but the last choice, so the usual n = 1 clones nothing.
        let mut choices = Vec::with_capacity(n as usize);
        for index in 0..n.saturating_sub(1) {
            choices.push(choice(index, message.clone()));
        }
        choices.push(choice(n.saturating_sub(1), message));
        ChatResponse {
            id,
            object: "chat.completion".to_owned(),
            created,
            model,
            choices,
            usage: Some(usage),
            extra: Extra::new(),
        }
    }
}

/// A call to the forced function, else the first function tool; `None` when the
/// request offers no function tool or sets `tool_choice: "none"`.
fn tool_call(req: &ChatRequest) -> Option<Answer> {
    let tools = req.tools.as_deref().filter(|t| !t.is_empty())?;
    let forced = match &req.tool_choice {
        Some(ToolChoice::Mode(ToolChoiceMode::None)) => return None,
        Some(choice) => choice.forced_function(),
        None => None,
    };
    let mut functions = tools.iter().filter_map(|t| t.function.as_ref());
    let (name, parameters) = match forced {
        // A forced name the tools do not define still gets its call, with `{}`.
        Some(name) => (
            name,
            functions
                .find(|f| f.name == name)
                .and_then(|f| f.parameters.as_ref()),
        ),
        None => {
            let f = functions.next()?;
            (f.name.as_str(), f.parameters.as_ref())
        }
    };
    Some(Answer::ToolCall {
        name: name.to_owned(),
        arguments: placeholder_arguments(parameters),
    })
}

/// A JSON object with a placeholder for each `required` property of `schema`.
fn placeholder_arguments(schema: Option<&Value>) -> String {
    let mut args = Map::new();
    if let Some(schema) = schema {
        let properties = schema.get("properties");
        let required = schema.get("required").and_then(Value::as_array);
        for name in required.into_iter().flatten().filter_map(Value::as_str) {
            let kind = properties
                .and_then(|p| p.get(name))
                .and_then(|p| p.get("type"));
            args.insert(name.to_owned(), placeholder(kind));
        }
    }
    Value::Object(args).to_string()
}

/// A value of the JSON Schema `type` (a name, or a list whose first non-`null` name
/// counts).
fn placeholder(kind: Option<&Value>) -> Value {
    let name = match kind {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .find(|&s| s != "null"),
        _ => None,
    };
    match name {
        Some("string") => Value::from("mock"),
        Some("number" | "integer") => Value::from(0),
        Some("boolean") => Value::Bool(false),
        _ => Value::Null,
    }
}

/// Words of a message's text, counted as `text_content()` would join it but without
/// building that string.
fn message_words(m: &Message) -> u64 {
    match &m.content {
        None => 0,
        Some(MessageContent::Text(s)) => count_words([s.as_str()]),
        Some(MessageContent::Parts(parts)) => {
            count_words(parts.iter().filter_map(|p| p.text.as_deref()))
        }
    }
}

/// Whitespace-separated words of the concatenation of `texts`.
fn count_words<'a>(texts: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut words = 0;
    let mut in_word = false;
    for c in texts.into_iter().flat_map(str::chars) {
        let word_char = !c.is_whitespace();
        if word_char && !in_word {
            words += 1;
        }
        in_word = word_char;
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_follow_the_schema_type() {
        let schema = json!({
            "type": "object",
            "properties": {
                "s": {"type": "string"},
                "n": {"type": "number"},
                "i": {"type": "integer"},
                "b": {"type": "boolean"},
                "o": {"type": "object"},
                "opt": {"type": ["null", "string"]},
                "unused": {"type": "string"}
            },
            "required": ["s", "n", "i", "b", "o", "opt", "untyped"]
        });
        let args: Value = serde_json::from_str(&placeholder_arguments(Some(&schema)))
            .unwrap_or_else(|e| panic!("arguments are JSON: {e}"));
        assert_eq!(
            args,
            json!({"s": "mock", "n": 0, "i": 0, "b": false, "o": null, "opt": "mock", "untyped": null})
        );
        assert_eq!(placeholder_arguments(None), "{}");
        assert_eq!(
            placeholder_arguments(Some(&json!({"type": "object"}))),
            "{}"
        );
    }

    #[test]
    fn words_are_counted_across_parts_as_text_content_joins_them() {
        let rows: &[(&[&str], u64)] = &[
            (&[], 0),
            (&[""], 0),
            (&["  one  two\tthree\n"], 3),
            (&["hel", "lo world"], 2),
            (&["hello ", "world"], 2),
        ];
        for (texts, want) in rows {
            assert_eq!(count_words(texts.iter().copied()), *want, "{texts:?}");
        }
    }
}
