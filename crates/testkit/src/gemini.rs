//! The mock's default Gemini answers (`POST /v1beta/models/{model}:generateContent`
//! and `:streamGenerateContent?alt=sse`, also under `/v1/`), used when no scripted
//! reply is queued: an echo model whose bodies have the shapes of the real recordings
//! in `shared/fixtures/gemini/vcr-fantasy` (CRLF-framed SSE, `usageMetadata`,
//! `modelVersion` and `responseId` on every event, function calls without ids ending
//! with `STOP` and a `finishMessage`), and Google-shaped errors where the real API
//! rejects a request.
//!
//! - The last user text is echoed as `Echo: <text>` (streamed in a few events).
//! - With function declarations offered, a mode other than `NONE`, and a last turn of
//!   plain user text, the model calls a function (the first allowed one): `args` is
//!   `{"city":"Paris"}` when its schema has a `city` property, else `{}`.
//! - After a `functionResponse` turn it answers
//!   `Function <name> returned <response JSON>`.
//! - With `generationConfig.responseMimeType: application/json` it answers JSON text:
//!   the `responseJsonSchema` (or `responseSchema`) filled, else the schema the prompt
//!   names filled, else `{}` (see `schema.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;
use serde_json::{json, Value};

use crate::schema;
use crate::script::{SseStep, StreamEnd};
use crate::Reply;

/// Makes response ids unique within the process.
fn next_response_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("mockResp{:010}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A Google error body with its status.
fn google_error(code: u16, status: &str, message: &str) -> Reply {
    Reply::Json {
        status: code,
        body: json!({"error": {"code": code, "message": message, "status": status}}),
        headers: Vec::new(),
    }
}

fn invalid(message: &str) -> Reply {
    google_error(400, "INVALID_ARGUMENT", message)
}

/// What the echo model answers.
enum Answer {
    Text(String),
    Call { name: String, args: Value },
}

/// The default answer to `POST /v1beta/models/{model}:{method}`.
pub(crate) fn generate(
    model: &str,
    method: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        other => {
            return google_error(
                404,
                "NOT_FOUND",
                &format!("Method not found: models/{model}:{other}"),
            )
        }
    };
    if !headers.contains_key("x-goog-api-key")
        && !query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("key=")))
    {
        return google_error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return invalid("Invalid JSON payload received. Unexpected token.");
    };
    let Some(contents) = req.get("contents").and_then(Value::as_array) else {
        return invalid("* GenerateContentRequest.contents: contents is not specified\n");
    };
    if contents.is_empty() {
        return invalid("* GenerateContentRequest.contents: contents is not specified\n");
    }
    for (i, c) in contents.iter().enumerate() {
        match c.get("role").and_then(Value::as_str) {
            None | Some("user" | "model") => {}
            Some(other) => {
                return invalid(&format!(
                    "Please use a valid role: user, model. (got `{other}` in contents[{i}])"
                ))
            }
        }
        let parts = c.get("parts").and_then(Value::as_array);
        if parts.is_none_or(Vec::is_empty) {
            return invalid(&format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            ));
        }
        for p in parts.into_iter().flatten() {
            if p.get("text").is_some_and(|t| t == "") {
                return invalid(&format!(
                    "* GenerateContentRequest.contents[{i}].parts: text must not be empty.\n"
                ));
            }
            if let Some(args) = p.pointer("/functionCall/args") {
                if !args.is_object() {
                    return invalid(&format!(
                        "Invalid value at 'contents[{i}]' (functionCall.args): not an object"
                    ));
                }
            }
            if let Some(resp) = p.pointer("/functionResponse/response") {
                if !resp.is_object() {
                    return invalid(&format!(
                        "Invalid value at 'contents[{i}]' (functionResponse.response): not an object"
                    ));
                }
            }
        }
    }
    if stream && query.is_none_or(|q| !q.split('&').any(|kv| kv == "alt=sse")) {
        // Without `alt=sse` the real API streams one JSON array; nothing here asks
        // for that form, so say so loudly.
        return invalid("the modelway mock only streams with ?alt=sse");
    }

    let answer = answer(&req, contents);
    let prompt_tokens: u64 = contents.iter().map(|c| words(&text_of(c))).sum();
    let response_id = next_response_id();
    let usage = |completion: u64| {
        json!({
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": completion,
            "totalTokenCount": prompt_tokens + completion,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        })
    };
    let event = |parts: Value, finish: Option<&str>, completion: u64| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        if parts_have_call(&candidate) {
            candidate["finishMessage"] = json!("Model generated function call(s).");
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": usage(completion),
            "modelVersion": model,
            "responseId": response_id,
        })
    };
    match (answer, stream) {
        (Answer::Text(t), false) => Reply::Json {
            status: 200,
            body: event(json!([{"text": t}]), Some("STOP"), words(&t)),
            headers: Vec::new(),
        },
        (Answer::Call { name, args }, false) => Reply::Json {
            status: 200,
            body: event(
                json!([{"functionCall": {"name": name, "args": args}}]),
                Some("STOP"),
                3,
            ),
            headers: Vec::new(),
        },
        (Answer::Text(t), true) => {
            let pieces = pieces(&t);
            let mut so_far = String::new();
            let n = pieces.len();
            let events = pieces
                .into_iter()
                .enumerate()
                .map(|(i, piece)| {
                    so_far.push_str(piece);
                    let finish = (i + 1 == n).then_some("STOP");
                    sse(&event(json!([{"text": piece}]), finish, words(&so_far)))
                })
                .collect();
            Reply::Sse {
                events,
                end: StreamEnd::Close,
            }
        }
        (Answer::Call { name, args }, true) => Reply::Sse {
            events: vec![sse(&event(
                json!([{"functionCall": {"name": name, "args": args}}]),
                Some("STOP"),
                3,
            ))],
            end: StreamEnd::Close,
        },
    }
}

fn parts_have_call(candidate: &Value) -> bool {
    candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .is_some_and(|ps| ps.iter().any(|p| p.get("functionCall").is_some()))
}

/// One SSE event framed as Gemini frames it: `data: <json>` then CRLF CRLF.
fn sse(v: &Value) -> SseStep {
    SseStep::raw(&format!("data: {v}\r\n\r\n"))
}

fn answer(req: &Value, contents: &[Value]) -> Answer {
    let last = contents.last();
    let last_parts = last
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if let Some(fr) = last_parts.iter().find_map(|p| p.get("functionResponse")) {
        let name = fr.get("name").and_then(Value::as_str).unwrap_or_default();
        let response = fr.get("response").cloned().unwrap_or(Value::Null);
        return Answer::Text(format!("Function {name} returned {response}"));
    }
    let decls: Vec<&Value> = req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
        .flatten()
        .collect();
    let config = req.pointer("/toolConfig/functionCallingConfig");
    let mode = config
        .and_then(|c| c.get("mode"))
        .and_then(Value::as_str)
        .unwrap_or("AUTO");
    let last_is_user = last.and_then(|c| c.get("role")).and_then(Value::as_str) != Some("model");
    if !decls.is_empty() && mode != "NONE" && last_is_user {
        let allowed = config
            .and_then(|c| c.get("allowedFunctionNames"))
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str);
        let decl = allowed
            .and_then(|a| {
                decls
                    .iter()
                    .find(|d| d.get("name").and_then(Value::as_str) == Some(a))
            })
            .unwrap_or(&decls[0]);
        let name = decl.get("name").and_then(Value::as_str).unwrap_or("tool");
        let schema = decl
            .get("parametersJsonSchema")
            .or_else(|| decl.get("parameters"));
        let has_city = schema.and_then(|s| s.pointer("/properties/city")).is_some();
        return Answer::Call {
            name: name.to_owned(),
            args: if has_city {
                json!({"city": "Paris"})
            } else {
                json!({})
            },
        };
    }
    let config = req.get("generationConfig");
    if config.and_then(|g| g.get("responseMimeType")) == Some(&json!("application/json")) {
        let schema = config.and_then(|g| {
            g.get("responseJsonSchema")
                .or_else(|| g.get("responseSchema"))
        });
        let mut prompt = req
            .get("systemInstruction")
            .map(text_of)
            .unwrap_or_default();
        for c in contents {
            prompt.push('\n');
            prompt.push_str(&text_of(c));
        }
        return Answer::Text(schema::any_object(schema, &prompt).to_string());
    }
    let last_user = contents
        .iter()
        .rev()
        .find(|c| c.get("role").and_then(Value::as_str) != Some("model") && !text_of(c).is_empty())
        .map(text_of)
        .unwrap_or_default();
    Answer::Text(format!("Echo: {last_user}"))
}

/// A content's text parts, joined with a space.
fn text_of(content: &Value) -> String {
    content
        .get("parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("thought") != Some(&json!(true)))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Splits the answer into up to three pieces at spaces, each but the first carrying
/// its leading space, the way Gemini streams a few words per event.
fn pieces(text: &str) -> Vec<&str> {
    let spaces: Vec<usize> = text
        .match_indices(' ')
        .map(|(i, _)| i)
        .filter(|&i| i > 0)
        .collect();
    let mut cuts: Vec<usize> = Vec::new();
    for k in [1, 2] {
        if let Some(&c) = spaces.get(spaces.len() * k / 3) {
            if cuts.last() != Some(&c) {
                cuts.push(c);
            }
        }
    }
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts {
        if c > start {
            out.push(&text[start..c]);
            start = c;
        }
    }
    out.push(&text[start..]);
    out
}

/// The models the mock lists on `GET /v1beta/models`, in Google's shape
/// (`{models: [{name: "models/…", …}]}`).
pub(crate) fn models() -> Value {
    let models: Vec<Value> = ["gemini-2.5-flash", "gemini-2.5-pro"]
        .iter()
        .map(|id| {
            serde_json::json!({
                "name": format!("models/{id}"),
                "version": "001",
                "displayName": id,
                "inputTokenLimit": 1_048_576,
                "outputTokenLimit": 65_536,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            })
        })
        .collect();
    serde_json::json!({ "models": models })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn key() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-goog-api-key", http::HeaderValue::from_static("k"));
        h
    }

    fn json_of(r: Reply) -> (u16, Value) {
        match r {
            Reply::Json { status, body, .. } => (status, body),
            other => panic!("not json: {other:?}"),
        }
    }

    #[test]
    fn pieces_keep_every_byte() {
        for t in ["Echo: hello big wide world", "Echo: hi", "Echo: ", "x"] {
            assert_eq!(pieces(t).concat(), t);
            assert!(pieces(t).len() <= 3, "{t}");
        }
        assert_eq!(pieces("Echo: hello big wide world").len(), 3);
    }

    #[test]
    fn requests_the_real_api_rejects_get_google_errors() {
        let ok = br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
        let rows: &[(&[u8], u16, &str)] = &[
            (b"{nope", 400, "INVALID_ARGUMENT"),
            (b"{}", 400, "INVALID_ARGUMENT"),
            (br#"{"contents":[]}"#, 400, "INVALID_ARGUMENT"),
            (
                br#"{"contents":[{"role":"user","parts":[]}]}"#,
                400,
                "INVALID_ARGUMENT",
            ),
            (
                br#"{"contents":[{"role":"assistant","parts":[{"text":"x"}]}]}"#,
                400,
                "INVALID_ARGUMENT",
            ),
            (
                br#"{"contents":[{"role":"user","parts":[{"text":""}]}]}"#,
                400,
                "INVALID_ARGUMENT",
            ),
        ];
        for (body, status, google) in rows {
            let (s, b) = json_of(generate("m", "generateContent", None, &key(), body));
            assert_eq!(
                (s, b["error"]["status"].as_str()),
                (*status, Some(*google)),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(b["error"]["code"], *status);
        }
        let (s, b) = json_of(generate(
            "m",
            "generateContent",
            None,
            &HeaderMap::new(),
            ok,
        ));
        assert_eq!(
            (s, b["error"]["status"].as_str()),
            (403, Some("PERMISSION_DENIED"))
        );
        let (s, _) = json_of(generate("m", "countTokens2", None, &key(), ok));
        assert_eq!(s, 404);
    }

    #[test]
    fn json_mime_type_answers_json_filling_the_schema() {
        let ask = |config: Value, system: &str| {
            let body = json!({"contents": [{"role": "user", "parts": [{"text": "a user, please"}]}],
                "systemInstruction": {"parts": [{"text": system}]}, "generationConfig": config});
            let (_, b) = json_of(generate(
                "m",
                "generateContent",
                None,
                &key(),
                body.to_string().as_bytes(),
            ));
            let text = b["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned();
            serde_json::from_str::<Value>(&text).unwrap()
        };
        let named = r#"Reply with JSON like this schema: {"type": "object", "properties": {"name": {"type": "string"}}}"#;
        let rows = [
            (
                json!({"responseMimeType": "application/json"}),
                "",
                json!({}),
            ),
            (
                json!({"responseMimeType": "application/json"}),
                named,
                json!({"name": "mock"}),
            ),
            (
                json!({"responseMimeType": "application/json",
                       "responseJsonSchema": {"type": "object", "properties": {"n": {"type": "integer"}}}}),
                named,
                json!({"n": 30}),
            ),
            (
                json!({"responseMimeType": "application/json",
                       "responseSchema": {"type": "OBJECT", "properties": {"ok": {"type": "BOOLEAN"}}}}),
                "",
                json!({"ok": true}),
            ),
        ];
        for (config, system, want) in rows {
            assert_eq!(ask(config.clone(), system), want, "{config} {system}");
        }
    }

    #[test]
    fn function_responses_are_answered_and_none_means_text() {
        let body = json!({"contents": [
            {"role": "user", "parts": [{"text": "weather?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "weather", "response": {"result": "sunny"}}}]}],
            "tools": [{"functionDeclarations": [{"name": "weather"}]}]});
        let (_, b) = json_of(generate(
            "m",
            "generateContent",
            None,
            &key(),
            body.to_string().as_bytes(),
        ));
        assert_eq!(
            b["candidates"][0]["content"]["parts"][0]["text"],
            r#"Function weather returned {"result":"sunny"}"#
        );
        let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"functionDeclarations": [{"name": "weather"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}});
        let (_, b) = json_of(generate(
            "m",
            "generateContent",
            None,
            &key(),
            body.to_string().as_bytes(),
        ));
        assert_eq!(
            b["candidates"][0]["content"]["parts"][0]["text"],
            "Echo: hi"
        );
    }
}
