"""The official OpenAI Python SDK against the real `modelway` binary, which routes to
the real mock upstream (see conftest.py for the config). Each test asserts on what
the client got and, where it matters, on what the upstream received."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any, Literal

import httpx
import openai
import pytest
from pydantic import BaseModel

from conftest import (
    CLIENT_KEY,
    FLAKY_KEY,
    HTTP_TIMEOUT,
    OPENROUTER_KEY,
    OPENROUTER_TITLE,
    UPSTREAM_KEY,
    Gateway,
    MockUpstream,
    render_config,
)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def chunk(content: str | None = None, *, role: str | None = None, finish: str | None = None) -> dict[str, Any]:
    """One OpenAI stream chunk for scripted SSE replies."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def completion(content: str) -> dict[str, Any]:
    """A whole non-streamed OpenAI answer for scripted JSON replies."""
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42},
    }


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
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}


# --- plain answers --------------------------------------------------------------------


def test_route_alias_answers_with_upstream_echo(client: openai.OpenAI, upstream: MockUpstream):
    answer = client.chat.completions.create(model="fast", messages=user("hello through a route"))

    assert answer.choices[0].message.content == "Echo: hello through a route"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason == "stop"
    assert upstream.only_chat_request()["body"]["model"] == "gpt-4o-mini"


def test_provider_slug_sends_the_upstream_model_name(client: openai.OpenAI, upstream: MockUpstream):
    answer = client.chat.completions.create(model="up/some-model", messages=user("hello by slug"))

    assert answer.choices[0].message.content == "Echo: hello by slug"
    sent = upstream.only_chat_request()
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["model"] == "some-model"
    assert sent["body"]["messages"] == user("hello by slug")


def test_mock_provider_answers_in_process(client: openai.OpenAI, upstream: MockUpstream):
    raw = client.chat.completions.with_raw_response.create(
        model="mock/anything", messages=user("hello mock")
    )
    answer = raw.parse()

    assert answer.choices[0].message.content == "hello mock"
    assert answer.model == "anything"
    assert raw.headers.get("x-modelway-provider") == "mock"
    assert upstream.chat_requests() == [], "the in-process mock provider must not call the upstream"


# --- streaming ------------------------------------------------------------------------


def test_stream_reassembles_to_the_echo_and_ends_with_usage(client: openai.OpenAI, upstream: MockUpstream):
    stream = client.chat.completions.create(
        model="fast",
        messages=user("stream me please"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert len(chunks) >= 2, chunks
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream me please"
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"], f"role must be sent exactly once, got {roles}"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]

    last = chunks[-1]
    assert last.choices == [], f"the final chunk must be the usage chunk, got {last}"
    assert last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert last.usage.total_tokens > 0
    assert all(c.choices for c in chunks[:-1]), "only the usage chunk may have empty choices"
    assert len({c.id for c in chunks}) == 1, "every chunk must carry the same id"

    sent = upstream.only_chat_request()["body"]
    assert sent["stream"] is True
    assert sent.get("stream_options", {}).get("include_usage") is True


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI):
    chunks = list(client.chat.completions.create(model="fast", messages=user("no usage"), stream=True))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: no usage"
    assert all(c.choices for c in chunks), "no empty-choices chunk without include_usage"
    assert all(c.usage is None for c in chunks)


def test_stream_is_server_sent_events_ending_with_done(gateway: Gateway):
    body = {"model": "fast", "messages": user("raw sse"), "stream": True}
    with httpx.Client(timeout=HTTP_TIMEOUT) as http:
        with http.stream("POST", f"{gateway.v1}/chat/completions", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            # Blank lines separate events; `:` lines are SSE comments (keep-alives).
            lines = [line for line in response.iter_lines() if line.strip() and not line.startswith(":")]

    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines), lines
    events = [json.loads(line[len("data: ") :]) for line in lines[:-1]]
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == "Echo: raw sse"


def test_async_client_streams(gateway: Gateway, upstream: MockUpstream):
    async def run() -> tuple[str, list[str]]:
        async with gateway.async_client() as client:
            stream = await client.chat.completions.create(
                model="up/async-model", messages=user("async hello"), stream=True
            )
            parts: list[str] = []
            finishes: list[str] = []
            async for c in stream:
                if c.choices:
                    parts.append(c.choices[0].delta.content or "")
                    if c.choices[0].finish_reason:
                        finishes.append(c.choices[0].finish_reason)
            return "".join(parts), finishes

    text, finishes = asyncio.run(asyncio.wait_for(run(), timeout=30))

    assert text == "Echo: async hello"
    assert finishes == ["stop"]
    assert upstream.only_chat_request()["body"]["model"] == "async-model"


def test_async_stream_helper_final_completion(gateway: Gateway):
    async def run() -> openai.types.chat.ParsedChatCompletion[Any]:
        async with gateway.async_client() as client:
            async with client.chat.completions.stream(
                model="fast", messages=user("async helper")
            ) as stream:
                async for _ in stream:
                    pass
                return await stream.get_final_completion()

    final = asyncio.run(asyncio.wait_for(run(), timeout=30))

    assert final.choices[0].message.content == "Echo: async helper"
    assert final.choices[0].message.role == "assistant"


# --- tools ----------------------------------------------------------------------------


class GetWeatherArgs(BaseModel):
    city: str
    country: str
    units: Literal["c", "f"]


def test_streamed_tool_call_accumulates_with_stream_helper(client: openai.OpenAI, upstream: MockUpstream):
    upstream.script({"fixture": "openai/sdk-recordings/stream-tool-call.sse"})

    event_types: list[str] = []
    with client.chat.completions.stream(
        model="fast",
        messages=user("What's the weather like in Edinburgh?"),
        tools=[openai.pydantic_function_tool(GetWeatherArgs)],
    ) as stream:
        for event in stream:
            event_types.append(event.type)
        final = stream.get_final_completion()

    message = final.choices[0].message
    assert message.role == "assistant", f"role must not be repeated across deltas: {message.role!r}"
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call.id == "call_c91SqDXlYFuETYv8mUHzz6pp"
    assert call.type == "function"
    assert call.function.name == "GetWeatherArgs"
    assert json.loads(call.function.arguments) == {"city": "Edinburgh", "country": "UK", "units": "c"}
    assert call.function.parsed_arguments == GetWeatherArgs(city="Edinburgh", country="UK", units="c")
    assert "tool_calls.function.arguments.done" in event_types

    sent = upstream.only_chat_request()["body"]
    assert [t["function"]["name"] for t in sent["tools"]] == ["GetWeatherArgs"]
    assert sent["tools"][0]["function"]["strict"] is True


def test_non_streamed_default_tool_call(client: openai.OpenAI, upstream: MockUpstream):
    answer = client.chat.completions.create(
        model="fast", messages=user("weather in Oslo?"), tools=[WEATHER_TOOL, TIME_TOOL]
    )

    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)

    sent = upstream.only_chat_request()["body"]
    assert sent["tools"] == [WEATHER_TOOL, TIME_TOOL]


def test_forced_tool_choice_reaches_upstream(client: openai.OpenAI, upstream: MockUpstream):
    forced = {"type": "function", "function": {"name": "get_time"}}
    answer = client.chat.completions.create(
        model="fast", messages=user("what time is it?"), tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=forced
    )

    calls = answer.choices[0].message.tool_calls
    assert calls is not None and [c.function.name for c in calls] == ["get_time"]
    assert upstream.only_chat_request()["body"]["tool_choice"] == forced


def test_streamed_default_tool_call_accumulates(client: openai.OpenAI):
    with client.chat.completions.stream(
        model="fast", messages=user("weather in Lima?"), tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()

    message = final.choices[0].message
    assert message.role == "assistant"
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    assert message.tool_calls[0].function.name == "get_weather"
    assert isinstance(json.loads(message.tool_calls[0].function.arguments), dict)
    assert final.choices[0].finish_reason == "tool_calls"


# --- structured output ----------------------------------------------------------------


class CalendarEvent(BaseModel):
    name: str
    date: str
    participants: list[str]


def test_parse_returns_the_pydantic_model(client: openai.OpenAI, upstream: MockUpstream):
    event = CalendarEvent(name="Science fair", date="Friday", participants=["Alice", "Bob"])
    upstream.script({"status": 200, "body": completion(event.model_dump_json())})

    answer = client.chat.completions.parse(
        model="fast",
        messages=user("Alice and Bob are going to a science fair on Friday."),
        response_format=CalendarEvent,
    )

    parsed = answer.choices[0].message.parsed
    assert isinstance(parsed, CalendarEvent)
    assert parsed == event

    sent = upstream.only_chat_request()["body"]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "CalendarEvent"
    assert sent["response_format"]["json_schema"]["strict"] is True
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["name", "date", "participants"]


# --- response headers, models ---------------------------------------------------------


def test_raw_response_headers_say_who_served(client: openai.OpenAI):
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=user("headers"))

    assert raw.status_code == 200
    assert raw.headers.get("x-modelway-provider") == "up"
    assert raw.headers.get("x-modelway-model") == "gpt-4o-mini"
    assert raw.headers.get("x-modelway-attempts") == "1"
    request_id = raw.headers.get("x-request-id")
    assert request_id, "every response needs an x-request-id"
    assert raw.parse().choices[0].message.content == "Echo: headers"

    again = client.chat.completions.with_raw_response.create(model="fast", messages=user("headers"))
    assert again.headers.get("x-request-id") not in (None, "", request_id), "request ids must be fresh"


def test_client_request_id_is_echoed(client: openai.OpenAI):
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=user("my id"), extra_headers={"x-request-id": "e2e-client-id-42"}
    )

    assert raw.headers.get("x-request-id") == "e2e-client-id-42"
    assert raw.parse()._request_id == "e2e-client-id-42"


def test_models_list_includes_routes(client: openai.OpenAI):
    ids = [m.id for m in client.models.list()]

    assert "fast" in ids
    assert "retrying" in ids
    assert len(ids) == len(set(ids)), f"duplicate model ids: {ids}"


def test_models_retrieve_a_route(client: openai.OpenAI):
    model = client.models.retrieve("fast")

    assert model.id == "fast"
    assert model.object == "model"


# --- errors ---------------------------------------------------------------------------


def test_unknown_model_is_not_found(client: openai.OpenAI, upstream: MockUpstream):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=user("hi"))

    err = caught.value
    assert err.status_code == 404
    assert err.code == "model_not_found"
    assert isinstance(err.body, dict) and "no-such-model" in err.body.get("message", "")
    assert err.response.headers.get("x-request-id"), "error responses carry x-request-id too"
    assert upstream.chat_requests() == []


def test_upstream_500_becomes_502_without_retries(client: openai.OpenAI, upstream: MockUpstream):
    upstream.script(
        {"status": 500, "body": {"error": {"message": "upstream exploded", "type": "server_error", "param": None, "code": None}}}
    )

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="flaky/any-model", messages=user("boom"))

    err = caught.value
    assert isinstance(err, openai.InternalServerError)
    assert err.status_code == 502
    assert isinstance(err.body, dict) and isinstance(err.body.get("message"), str) and err.body["message"]
    assert set(err.body) >= {"message", "type", "param", "code"}, f"not the OpenAI error shape: {err.body}"
    assert len(upstream.chat_requests()) == 1, "retries default to 0"


def test_route_retries_a_500_then_answers(client: openai.OpenAI, upstream: MockUpstream):
    upstream.script({"status": 500, "body": {"error": {"message": "transient", "type": "server_error"}}})

    raw = client.chat.completions.with_raw_response.create(model="retrying", messages=user("second time lucky"))

    assert raw.parse().choices[0].message.content == "Echo: second time lucky"
    assert raw.headers.get("x-modelway-attempts") == "2"
    assert raw.headers.get("x-modelway-provider") == "flaky"
    assert len(upstream.chat_requests()) == 2


def test_route_falls_back_to_the_next_target(client: openai.OpenAI, upstream: MockUpstream):
    upstream.script({"status": 503, "body": {"error": {"message": "overloaded", "type": "server_error"}}})

    raw = client.chat.completions.with_raw_response.create(model="fallback", messages=user("fall back"))

    assert raw.parse().choices[0].message.content == "Echo: fall back"
    assert raw.headers.get("x-modelway-provider") == "up"
    assert raw.headers.get("x-modelway-model") == "second-choice"
    assert raw.headers.get("x-modelway-attempts") == "2"
    sent = upstream.chat_requests()
    assert [r["body"]["model"] for r in sent] == ["first-choice", "second-choice"]
    assert [r["headers"].get("authorization") for r in sent] == [f"Bearer {FLAKY_KEY}", f"Bearer {UPSTREAM_KEY}"]


def test_upstream_timeout_is_504(client: openai.OpenAI, upstream: MockUpstream):
    upstream.script({"hang": True})

    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="flaky/slow-model", messages=user("are you there?"))

    assert caught.value.status_code == 504
    assert time.monotonic() - started < 5, "the provider's 1s timeout should end the wait, not the route's 5s"


def test_mid_stream_drop_raises_instead_of_ending_silently(client: openai.OpenAI, upstream: MockUpstream):
    upstream.script(
        {
            "sse": [
                {"data": chunk("Hel", role="assistant")},
                {"data": chunk("lo"), "delay_ms": 50},
                # hyper discards response bytes still buffered when a body errors, so
                # give it time to flush the head and both chunks before the drop (an
                # SSE comment, which every SSE parser ignores).
                {"data": ": about to drop\n\n", "delay_ms": 200},
            ],
            "end": "drop",
        }
    )

    received: list[str] = []
    stream = client.chat.completions.create(model="flaky/drop-model", messages=user("cut me off"), stream=True)
    with pytest.raises(openai.APIError) as caught:
        for c in stream:
            if c.choices:
                received.append(c.choices[0].delta.content or "")

    err = caught.value
    assert not isinstance(err, openai.APIStatusError), "the 200 was already sent; this is a stream error"
    assert isinstance(err.body, dict) and err.body.get("message"), f"no OpenAI error object: {err.body!r}"
    assert "".join(received) == "Hello", "chunks before the cut must reach the client"


def test_client_disconnect_cancels_the_upstream_stream(gateway: Gateway, upstream: MockUpstream):
    assert upstream.stats().get("cancelled") == 0, "reset must zero the counter"
    upstream.script(
        {
            "sse": [{"data": chunk("first", role="assistant")}]
            + [{"data": chunk(" more"), "delay_ms": 500} for _ in range(20)],
            "end": "done",
        }
    )

    body = {"model": "flaky/long-model", "messages": user("long story"), "stream": True}
    with httpx.Client(timeout=HTTP_TIMEOUT) as http:
        with http.stream("POST", f"{gateway.v1}/chat/completions", json=body) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: "):
                    assert "first" in line
                    break
    # Leaving the `with` closed the connection mid-stream.

    deadline = time.monotonic() + 5
    stats = upstream.stats()
    while stats.get("cancelled", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
        stats = upstream.stats()
    assert stats.get("cancelled", 0) >= 1, f"the upstream stream kept running after the client left: {stats}"


def _post_raw(gateway: Gateway, content: bytes) -> httpx.Response:
    return gateway.http.post(
        "/v1/chat/completions",
        content=content,
        headers={"content-type": "application/json", "authorization": f"Bearer {CLIENT_KEY}"},
    )


def test_malformed_json_is_400(gateway: Gateway, upstream: MockUpstream):
    response = _post_raw(gateway, b'{"model": "fast", "messages": [')

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert upstream.chat_requests() == []


def test_missing_messages_is_400(gateway: Gateway, upstream: MockUpstream):
    response = _post_raw(gateway, json.dumps({"model": "fast"}).encode())

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "messages" in f"{error.get('param')} {error['message']}", error
    assert upstream.chat_requests() == []


def test_missing_messages_via_sdk_is_bad_request(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fast", messages=[])  # ≥1 message required

    assert caught.value.status_code == 400
    assert caught.value.type == "invalid_request_error"


# --- what reaches the upstream --------------------------------------------------------


def test_unknown_request_fields_reach_the_upstream_verbatim(client: openai.OpenAI, upstream: MockUpstream):
    extra = {"foo_unknown": {"a": 1}, "bar_unknown": [1, "two", None, 2.5, {"nested": True}]}
    client.chat.completions.create(model="fast", messages=user("extras"), extra_body=extra)

    sent = upstream.only_chat_request()["body"]
    assert sent["foo_unknown"] == {"a": 1}
    assert sent["bar_unknown"] == [1, "two", None, 2.5, {"nested": True}]


def test_upstream_gets_the_provider_key_not_the_clients(client: openai.OpenAI, upstream: MockUpstream):
    client.chat.completions.create(model="fast", messages=user("whose key?"))

    headers = upstream.only_chat_request()["headers"]
    assert headers.get("authorization") == f"Bearer {UPSTREAM_KEY}"
    leaked = {k: v for k, v in headers.items() if CLIENT_KEY in str(v)}
    assert leaked == {}, f"client credentials forwarded upstream: {leaked}"


def test_openrouter_gets_attribution_headers(client: openai.OpenAI, upstream: MockUpstream):
    answer = client.chat.completions.create(
        model="openrouter/meta-llama/llama-3.3-70b-instruct",
        messages=user("attribution"),
        extra_headers={"HTTP-Referer": "https://client.example/app", "X-Title": "Client Title"},
    )

    assert answer.choices[0].message.content == "Echo: attribution"
    sent = upstream.only_chat_request()
    assert sent["body"]["model"] == "meta-llama/llama-3.3-70b-instruct"
    headers = sent["headers"]
    assert headers.get("authorization") == f"Bearer {OPENROUTER_KEY}"
    assert headers.get("http-referer") == "https://client.example/app"
    assert headers.get("x-title") == OPENROUTER_TITLE, "configured headers win over the client's"


def test_other_providers_do_not_get_attribution_headers(client: openai.OpenAI, upstream: MockUpstream):
    client.chat.completions.create(
        model="fast",
        messages=user("no attribution"),
        extra_headers={"HTTP-Referer": "https://client.example/app", "X-Title": "Client Title"},
    )

    headers = upstream.only_chat_request()["headers"]
    assert "http-referer" not in headers
    assert "x-title" not in headers


# --- the `check` subcommand -----------------------------------------------------------


def test_check_accepts_the_test_config(gateway_bin, tmp_path, upstream: MockUpstream):
    config = tmp_path / "ok.toml"
    config.write_text(render_config(upstream.v1))

    result = subprocess.run(
        [str(gateway_bin), "check", "--config", str(config)], capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 0, result.stderr
    assert "up/gpt-4o-mini" in result.stdout, "check prints the resolved routes"
    assert UPSTREAM_KEY not in result.stdout + result.stderr, "check must redact secrets"


def test_check_rejects_an_unknown_key(gateway_bin, tmp_path, upstream: MockUpstream):
    config = tmp_path / "bad.toml"
    config.write_text(render_config(upstream.v1).replace('timeout = "5s"', 'timeout = "5s"\nbogus_setting = 1'))

    result = subprocess.run(
        [str(gateway_bin), "check", "--config", str(config)], capture_output=True, text=True, timeout=30
    )

    assert result.returncode != 0
    assert "bogus_setting" in result.stderr
