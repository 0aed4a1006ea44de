//! What the mock models answer when asked for JSON: a value that fills a JSON Schema,
//! and the schema a prompt asks for when the request itself carries none.
//!
//! A real model asked for "any JSON object" (Anthropic's forced tool with an
//! any-object input schema, Gemini's `responseMimeType: application/json` without a
//! schema) answers what the prompt describes. Clients in JSON mode put the schema
//! there themselves — instructor `Mode.JSON` ("…match the following json_schema: {…}"),
//! pydantic-ai `PromptedOutput` ("…compatible with this schema: {…}"), or the user's
//! own words for LangChain `json_mode` — so the mock fills the first schema it finds
//! in the prompt, and answers `{}` when there is none.

use serde_json::{json, Map, Value};

/// How deep `$ref`s and nested schemas are followed (a recursive model stops there).
const MAX_DEPTH: usize = 8;

/// A value matching `schema`: every property of an object (required or not) filled,
/// `city`/`location` with `"Paris"`; `$ref`s into `$defs`/`definitions` followed;
/// the first non-null branch of `anyOf`/`oneOf`. Types may be JSON Schema's
/// (`"object"`) or Google's (`"OBJECT"`).
pub(crate) fn sample(schema: &Value) -> Value {
    fill(schema, schema, MAX_DEPTH)
}

fn fill(schema: &Value, root: &Value, depth: usize) -> Value {
    if depth == 0 {
        return Value::Null;
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer));
        return target.map_or(Value::Null, |t| fill(t, root, depth - 1));
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let branch = branches
                .iter()
                .find(|b| !type_is(b, "null"))
                .or(branches.first());
            if let Some(b) = branch {
                return fill(b, root, depth - 1);
            }
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.to_ascii_lowercase(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| !t.eq_ignore_ascii_case("null"))
            .unwrap_or("null")
            .to_ascii_lowercase(),
        _ if schema.get("properties").is_some() => "object".to_owned(),
        _ => "string".to_owned(),
    };
    match kind.as_str() {
        "object" => {
            let mut o = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    let value = match k.as_str() {
                        "city" | "location" if type_is(v, "string") => json!("Paris"),
                        _ => fill(v, root, depth - 1),
                    };
                    o.insert(k.clone(), value);
                }
            }
            Value::Object(o)
        }
        "array" => match schema.get("items") {
            Some(items) => json!([fill(items, root, depth - 1)]),
            None => json!([]),
        },
        "integer" => json!(30),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => json!("mock"),
    }
}

fn type_is(schema: &Value, kind: &str) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t.eq_ignore_ascii_case(kind),
        Some(Value::Array(ts)) => ts
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.eq_ignore_ascii_case(kind))),
        _ => false,
    }
}

/// Whether `schema` says something about the object's shape (names properties).
pub(crate) fn has_properties(schema: &Value) -> bool {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty())
}

/// The first JSON Schema of an object (one with `properties`) written in `text`.
pub(crate) fn schema_in(text: &str) -> Option<Value> {
    text.match_indices('{').find_map(|(at, _)| {
        let mut values = serde_json::Deserializer::from_str(&text[at..]).into_iter::<Value>();
        match values.next() {
            Some(Ok(v)) if has_properties(&v) => Some(v),
            _ => None,
        }
    })
}

/// The JSON object a model asked for any object answers: `schema` filled when it
/// names properties, else the first schema in `prompt` filled, else `{}`.
pub(crate) fn any_object(schema: Option<&Value>, prompt: &str) -> Value {
    match schema.filter(|s| has_properties(s)) {
        Some(s) => sample(s),
        None => schema_in(prompt).map_or_else(|| json!({}), |s| sample(&s)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn samples_fill_every_property_the_way_the_schema_says() {
        // (schema, sample)
        let rows = [
            (
                json!({"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"},
                        "tags": {"type": "array", "items": {"type": "string"}}, "ok": {"type": ["boolean", "null"]}}}),
                json!({"city": "Paris", "n": 30, "tags": ["mock"], "ok": true}),
            ),
            // pydantic: a nested model through $defs, an Optional through anyOf.
            (
                json!({"$defs": {"Joke": {"properties": {"setup": {"title": "Setup", "type": "string"}}, "type": "object"}},
                       "properties": {"joke": {"$ref": "#/$defs/Joke"}, "rating": {"anyOf": [{"type": "null"}, {"type": "number"}]}},
                       "required": ["joke"], "type": "object"}),
                json!({"joke": {"setup": "mock"}, "rating": 1.5}),
            ),
            // Google's OpenAPI subset.
            (
                json!({"type": "OBJECT", "properties": {"mood": {"type": "STRING", "enum": ["happy", "sad"]}}}),
                json!({"mood": "happy"}),
            ),
            (json!({"type": "object"}), json!({})),
        ];
        for (schema, want) in rows {
            assert_eq!(sample(&schema), want, "{schema}");
        }
        let recursive = json!({"$ref": "#"});
        assert_eq!(sample(&recursive), Value::Null);
    }

    #[test]
    fn an_any_object_answer_fills_the_schema_the_prompt_names() {
        let prompt = r#"Answer in JSON matching the following json_schema:

{
  "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
  "required": ["name", "age"],
  "title": "User",
  "type": "object"
}

Make sure to return an instance of the JSON, not the schema itself. {"not": "a schema"}"#;
        assert_eq!(
            any_object(Some(&json!({"type": "object"})), prompt),
            json!({"name": "mock", "age": 30})
        );
        assert_eq!(any_object(None, "just say {hi}"), json!({}));
        let own = json!({"type": "object", "properties": {"x": {"type": "boolean"}}});
        assert_eq!(any_object(Some(&own), prompt), json!({"x": true}));
    }
}
