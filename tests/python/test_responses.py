"""The official OpenAI SDK's Responses API, and the OpenAI Agents SDK with its default
model settings (which speak `/v1/responses`), against the real `modelway` binary.

The gateway keeps no conversation state: each call is decoded into the canonical model,
served by any provider (here the mock's OpenAI-compatible chat route and its Anthropic
Messages route) and encoded back as a `response` object or its event sequence."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from conftest import Gateway, MockUpstream

# `fast` → the OpenAI-compatible mock; the slug → the Anthropic mock.
CHAT_UPSTREAM = "fast"
ANTHROPIC = "anthropic/claude-sonnet-4-20250514"
BOTH = [CHAT_UPSTREAM, ANTHROPIC]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def messages_requests(upstream: MockUpstream) -> list[dict[str, Any]]:
    return [r for r in upstream.requests() if r.get("method") == "POST" and r.get("path") == "/v1/messages"]


@pytest.mark.parametrize("model", BOTH)
def test_create_plain(client: openai.OpenAI, model: str):
    r = client.responses.create(model=model, input="hello responses", instructions="be brief", max_output_tokens=100)
    assert r.object == "response"
    assert r.status == "completed"
    assert r.id.startswith("resp_")
    assert r.output_text == "Echo: hello responses"
    assert r.output[0].type == "message"
    assert r.usage is not None and r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.instructions == "be brief"


def test_instructions_and_input_items_reach_the_upstream(client: openai.OpenAI, upstream: MockUpstream):
    client.responses.create(
        model=CHAT_UPSTREAM,
        instructions="sys",
        input=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
        ],
        temperature=0.3,
    )
    body = upstream.chat_requests()[-1]["body"]
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["temperature"] == 0.3


@pytest.mark.parametrize("model", BOTH)
def test_stream_with_the_sdk_accumulator(client: openai.OpenAI, model: str):
    types: list[str] = []
    with client.responses.stream(model=model, input="stream responses") as s:
        for event in s:
            types.append(event.type)
        final = s.get_final_response()
    assert final.output_text == "Echo: stream responses"
    assert final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens > 0
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    for t in ["response.output_item.added", "response.content_part.added", "response.output_text.delta",
              "response.output_text.done", "response.content_part.done", "response.output_item.done"]:
        assert t in types, types


def test_raw_stream_events_have_increasing_sequence_numbers(client: openai.OpenAI):
    events = list(client.responses.create(model=CHAT_UPSTREAM, input="raw", stream=True))
    seqs = [e.sequence_number for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


@pytest.mark.parametrize("model", BOTH)
@pytest.mark.parametrize("stream", [False, True])
def test_function_tool_round_trip(client: openai.OpenAI, model: str, stream: bool):
    items: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        with client.responses.stream(model=model, input=items, tools=[WEATHER]) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(model=model, input=items, tools=[WEATHER])
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    assert calls[0].call_id
    items += [o.model_dump(exclude_none=True) for o in first.output]
    items.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C and sunny"})
    second = client.responses.create(model=model, input=items, tools=[WEATHER])
    if model == ANTHROPIC:
        assert second.output_text.endswith("Tool result: 18C and sunny")
    else:
        assert second.output_text == "Echo: What is the weather in Paris?"


class Weather(BaseModel):
    city: str
    temperature_c: int


def test_parse_with_text_format_via_a_chat_upstream(client: openai.OpenAI, upstream: MockUpstream):
    upstream.script({"body": {
        "id": "chatcmpl-parse", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": '{"city":"Paris","temperature_c":18}'}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }})
    r = client.responses.parse(model=CHAT_UPSTREAM, input="weather as JSON", text_format=Weather)
    assert r.output_parsed == Weather(city="Paris", temperature_c=18)
    sent = upstream.chat_requests()[-1]["body"]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["strict"] is True


def test_parse_with_text_format_via_anthropic(client: openai.OpenAI, upstream: MockUpstream):
    r = client.responses.parse(model=ANTHROPIC, input="weather as JSON", text_format=Weather)
    assert isinstance(r.output_parsed, Weather)
    [sent] = messages_requests(upstream)
    assert "output_config" in sent["body"] or "tools" in sent["body"]


def test_stateful_features_are_a_400_naming_them(client: openai.OpenAI, upstream: MockUpstream):
    for kwargs, param in [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"tools": [{"type": "web_search"}]}, "web_search"),
    ]:
        with pytest.raises(openai.BadRequestError) as e:
            client.responses.create(model=CHAT_UPSTREAM, input="x", **kwargs)
        assert param in str(e.value.response.json()["error"]), (kwargs, e.value.response.text)
    assert upstream.chat_requests() == []


def test_bad_bodies_are_openai_400s(gateway: Gateway):
    r = httpx.post(f"{gateway.v1}/responses", json={"model": CHAT_UPSTREAM}, timeout=10)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.get(f"{gateway.v1}/responses", timeout=10)
    assert r.status_code == 405


def test_fallback_behaves_as_on_chat(client: openai.OpenAI, upstream: MockUpstream):
    upstream.script({"status": 500, "body": {"error": {"message": "boom", "type": "server_error"}}})
    with client.responses.stream(model="failover-openai", input="fall back") as s:
        final = s.get_final_response()
    assert final.output_text == "Echo: fall back"
    assert len(upstream.chat_requests()) == 2


def test_upstream_rate_limit_is_a_429(client: openai.OpenAI, upstream: MockUpstream):
    upstream.script({"status": 429, "body": {"error": {"message": "slow down", "type": "rate_limit_error"}},
                     "headers": {"retry-after": "3"}})
    with pytest.raises(openai.RateLimitError) as e:
        client.responses.create(model=CHAT_UPSTREAM, input="x")
    assert e.value.response.headers["retry-after"] == "3"


def requests_counted(gateway: Gateway, provider: str, model: str) -> float:
    want = f'provider="{provider}",model="{model}",status="200"}}'
    for line in httpx.get(f"{gateway.base_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("modelway_requests_total{") and want in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_telemetry_counts_the_responses_front_door(client: openai.OpenAI, gateway: Gateway):
    before = requests_counted(gateway, "up", "gpt-4o-mini")
    client.responses.create(model=CHAT_UPSTREAM, input="count me")
    assert requests_counted(gateway, "up", "gpt-4o-mini") == before + 1


# --- the Agents SDK, default model settings (the Responses API) ------------------------


@pytest.mark.parametrize("model", BOTH)
def test_agents_sdk_runs_an_agent_with_a_function_tool(gateway: Gateway, upstream: MockUpstream, model: str):
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(city)
        return f"18C and sunny in {city}"

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=gateway.v1, api_key="sk-unused", max_retries=0, timeout=10.0)
        agent = Agent(
            name="weather",
            instructions="Answer with the weather.",
            tools=[get_weather],
            model=OpenAIResponsesModel(model=model, openai_client=client),
        )
        try:
            return await asyncio.wait_for(Runner.run(agent, "What is the weather in Paris?"), timeout=20)
        finally:
            await client.close()

    result = asyncio.run(run())
    assert calls == ["Paris"]
    if model == ANTHROPIC:
        assert "18C and sunny in Paris" in result.final_output
    else:
        assert result.final_output == "Echo: What is the weather in Paris?"
