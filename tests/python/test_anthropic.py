"""The official OpenAI Python SDK against the real `modelway` binary, routed to the
Anthropic provider (`[providers.anthropic]` in conftest.py), whose upstream is the
mock's Anthropic Messages API (`POST /v1/messages`). Each test asserts on what the
client got and, where it matters, on what the Anthropic upstream received."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from conftest import ANTHROPIC_KEY, CLIENT_KEY, MockUpstream

MODEL = "anthropic/claude-sonnet-4-20250514"

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


def messages_requests(upstream: MockUpstream) -> list[dict[str, Any]]:
    """`POST /v1/messages` requests since the last reset, bodies as JSON."""
    out = []
    for r in upstream.requests():
        if r.get("method") == "POST" and r.get("path") == "/v1/messages":
            body = r.get("body")
            out.append({**r, "body": json.loads(body) if isinstance(body, str) else body})
    return out


def only_messages_request(upstream: MockUpstream) -> dict[str, Any]:
    reqs = messages_requests(upstream)
    assert len(reqs) == 1, f"expected one upstream /v1/messages request, got {len(reqs)}: {reqs}"
    return reqs[0]


def test_plain_completion(client: openai.OpenAI, upstream: MockUpstream):
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "be brief"}, *user("hello claude")],
        max_completion_tokens=100,
    )

    assert resp.choices[0].message.content == "Echo: hello claude"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    sent = only_messages_request(upstream)
    headers = sent["headers"]
    assert headers.get("x-api-key") == ANTHROPIC_KEY
    assert headers.get("anthropic-version") == "2023-06-01"
    assert CLIENT_KEY not in json.dumps(headers)
    assert sent["body"]["model"] == "claude-sonnet-4-20250514"
    assert sent["body"]["max_tokens"] == 100
    assert sent["body"]["system"] == [{"type": "text", "text": "be brief"}]


def test_bare_claude_names_route_to_anthropic(client: openai.OpenAI, upstream: MockUpstream):
    raw = client.chat.completions.with_raw_response.create(model="claude-3-5-haiku-latest", messages=user("hi"))

    assert raw.headers.get("x-modelway-provider") == "anthropic"
    assert raw.parse().choices[0].message.content == "Echo: hi"
    assert only_messages_request(upstream)["body"]["model"] == "claude-3-5-haiku-latest"


def test_streaming_text_one_finish_and_usage(client: openai.OpenAI):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=user("stream this answer please"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream this answer please"
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finishes == ["stop"]
    roles = [ch.delta.role for c in chunks for ch in c.choices if ch.delta.role]
    assert roles == ["assistant"]
    assert len({c.id for c in chunks}) == 1
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_tool_call_not_streamed(client: openai.OpenAI, upstream: MockUpstream):
    resp = client.chat.completions.create(
        model=MODEL, messages=user("weather in Paris?"), tools=[WEATHER_TOOL], parallel_tool_calls=False
    )

    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    body = only_messages_request(upstream)["body"]
    assert body["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


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
    assert call.id.startswith("toolu_")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert len(done) == 1 and done[0].index == 0


def test_tool_result_round_trip(client: openai.OpenAI, upstream: MockUpstream):
    first = client.chat.completions.create(model=MODEL, messages=user("weather in Paris?"), tools=[WEATHER_TOOL])
    assistant = first.choices[0].message
    call = assistant.tool_calls[0]
    upstream.reset()

    second = client.chat.completions.create(
        model=MODEL,
        tools=[WEATHER_TOOL],
        messages=[
            *user("weather in Paris?"),
            assistant.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
        ],
    )

    assert second.choices[0].message.content == "Tool result: sunny, 21 C"
    turns = only_messages_request(upstream)["body"]["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": call.id,
        "content": [{"type": "text", "text": "sunny, 21 C"}],
    }


class Person(BaseModel):
    name: str
    age: int


def test_parse_with_a_pydantic_model(client: openai.OpenAI, upstream: MockUpstream):
    completion = client.chat.completions.parse(
        model=MODEL, messages=user("Alice is 30"), response_format=Person
    )

    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Person)
    assert parsed.age == 30
    fmt = only_messages_request(upstream)["body"]["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    assert set(fmt["schema"]["properties"]) == {"name", "age"}


def test_unsupported_parameter_is_a_400_naming_it(client: openai.OpenAI, upstream: MockUpstream):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=user("hi"), n=2)

    assert caught.value.body["param"] == "n"
    assert messages_requests(upstream) == []


def test_upstream_errors_are_mapped(client: openai.OpenAI, upstream: MockUpstream):
    def anthropic_error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "status": status,
            "body": {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_e2e"},
            "headers": headers or {},
        }

    upstream.script(anthropic_error(429, "rate_limit_error", "Number of request tokens exceeded", {"retry-after": "3"}))
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert caught.value.response.headers.get("retry-after") == "3"
    assert "Number of request tokens exceeded" in caught.value.message

    upstream.script(anthropic_error(400, "invalid_request_error", "messages: roles must alternate"))
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert "roles must alternate" in caught.value.message

    # 529 overloaded → a gateway-side 502 (retryable, but this config retries nothing).
    upstream.script(anthropic_error(529, "overloaded_error", "Overloaded"))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert caught.value.status_code == 502
    assert "Overloaded" in caught.value.message


def test_mid_stream_error_raises_in_the_sdk(client: openai.OpenAI, upstream: MockUpstream):
    def ev(name: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"raw": f"event: {name}\ndata: {json.dumps(data)}\n\n"}

    upstream.script(
        {
            "sse": [
                ev(
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {"id": "msg_e2e", "type": "message", "role": "assistant", "model": "claude-x",
                                    "content": [], "usage": {"input_tokens": 3, "output_tokens": 1}},
                    },
                ),
                ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial"}}),
                ev("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ],
            "end": "close",
        }
    )
    got = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model=MODEL, messages=user("hi"), stream=True):
            got.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(got) == "partial"
