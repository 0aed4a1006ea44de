"""The official OpenAI Python SDK against the real `modelway` binary, routed to the
Gemini provider (`[providers.gemini]` in conftest.py), whose upstream is the mock's
Gemini API (`POST /v1beta/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse`). Each test asserts on what the client got and, where
it matters, on what the Gemini upstream received."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from conftest import CLIENT_KEY, GEMINI_KEY, MockUpstream

MODEL = "google/gemini-2.5-flash"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def generate_requests(upstream: MockUpstream) -> list[dict[str, Any]]:
    """Gemini generate requests since the last reset, bodies as JSON."""
    out = []
    for r in upstream.requests():
        path = r.get("path", "")
        if r.get("method") == "POST" and ("generateContent" in path or "GenerateContent" in path):
            body = r.get("body")
            out.append({**r, "body": json.loads(body) if isinstance(body, str) else body})
    return out


def only_generate_request(upstream: MockUpstream) -> dict[str, Any]:
    reqs = generate_requests(upstream)
    assert len(reqs) == 1, f"expected one upstream Gemini request, got {len(reqs)}: {reqs}"
    return reqs[0]


def test_plain_completion(client: openai.OpenAI, upstream: MockUpstream):
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "be brief"}, *user("hello gemini")],
        max_completion_tokens=100,
        temperature=0.2,
    )

    assert resp.choices[0].message.content == "Echo: hello gemini"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    sent = only_generate_request(upstream)
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    headers = sent["headers"]
    assert headers.get("x-goog-api-key") == GEMINI_KEY
    assert GEMINI_KEY not in sent["path"]
    assert CLIENT_KEY not in json.dumps(headers)
    body = sent["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hello gemini"}]}]
    assert body["generationConfig"] == {"maxOutputTokens": 100, "temperature": 0.2}


def test_bare_gemini_names_route_to_gemini(client: openai.OpenAI, upstream: MockUpstream):
    raw = client.chat.completions.with_raw_response.create(model="gemini-2.5-pro", messages=user("hi"))

    assert raw.headers.get("x-modelway-provider") == "gemini"
    assert raw.parse().choices[0].message.content == "Echo: hi"
    assert only_generate_request(upstream)["path"] == "/v1beta/models/gemini-2.5-pro:generateContent"


def test_streaming_text_one_finish_and_usage(client: openai.OpenAI, upstream: MockUpstream):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=user("stream this answer please"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream this answer please"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1, "streamed in pieces"
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finishes == ["stop"]
    roles = [ch.delta.role for c in chunks for ch in c.choices if ch.delta.role]
    assert roles == ["assistant"]
    assert len({c.id for c in chunks}) == 1
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert only_generate_request(upstream)["path"].endswith(":streamGenerateContent?alt=sse")


def test_tool_call_not_streamed(client: openai.OpenAI, upstream: MockUpstream):
    resp = client.chat.completions.create(model=MODEL, messages=user("weather in Paris?"), tools=[WEATHER_TOOL])

    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id.startswith("call_")
    body = only_generate_request(upstream)["body"]
    decl = body["tools"][0]["functionDeclarations"][0]
    assert decl["name"] == "get_weather"
    assert decl["parametersJsonSchema"] == WEATHER_TOOL["function"]["parameters"]


def test_tool_call_streamed_through_the_sdk_accumulator(client: openai.OpenAI):
    with client.chat.completions.stream(
        model=MODEL, messages=user("weather in Paris?"), tools=[WEATHER_TOOL]
    ) as stream:
        events = list(stream)
        final = stream.get_final_completion()

    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.role == "assistant"
    assert len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id.startswith("call_")
    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert len(done) == 1 and done[0].name == "get_weather"


def test_tool_result_round_trip(client: openai.OpenAI, upstream: MockUpstream):
    first = client.chat.completions.create(
        model=MODEL, messages=user("weather in Paris?"), tools=[WEATHER_TOOL], tool_choice="required"
    )
    message = first.choices[0].message
    call = message.tool_calls[0]
    upstream.reset()

    second = client.chat.completions.create(
        model=MODEL,
        tools=[WEATHER_TOOL],
        messages=[
            *user("weather in Paris?"),
            message,
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 24})},
        ],
    )

    assert second.choices[0].message.content == 'Function get_weather returned {"temp_c":24}'
    assert second.choices[0].finish_reason == "stop"
    contents = only_generate_request(upstream)["body"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"][0]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}, "id": call.id}
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 24}, "id": call.id}}
    ]


def test_thought_signatures_survive_the_sdk_round_trip(client: openai.OpenAI, upstream: MockUpstream):
    part = {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}, "thoughtSignature": "c2lnbmVk"}
    upstream.script(
        {
            "body": {
                "candidates": [
                    {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
                ],
                "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 5, "totalTokenCount": 9},
                "modelVersion": "gemini-3-pro-preview",
            }
        }
    )
    first = client.chat.completions.create(model="google/gemini-3-pro-preview", messages=user("Rome?"), tools=[WEATHER_TOOL])
    message = first.choices[0].message
    upstream.reset()

    client.chat.completions.create(
        model="google/gemini-3-pro-preview",
        tools=[WEATHER_TOOL],
        messages=[*user("Rome?"), message, {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny"}],
    )

    sent = only_generate_request(upstream)["body"]["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == "c2lnbmVk"


def test_upstream_error_is_mapped(client: openai.OpenAI, upstream: MockUpstream):
    upstream.script(
        {
            "status": 400,
            "body": {"error": {"code": 400, "message": "Invalid value at 'contents'", "status": "INVALID_ARGUMENT"}},
        }
    )
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert "Invalid value at 'contents'" in str(err.value)
    assert err.value.body["code"] == "INVALID_ARGUMENT"


def test_untranslatable_parameter_is_a_400_naming_it(client: openai.OpenAI, upstream: MockUpstream):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=user("hi"), logit_bias={"1": 5})
    assert err.value.body["param"] == "logit_bias"
    assert generate_requests(upstream) == []
