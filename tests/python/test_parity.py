"""What works on an OpenAI route works on an Anthropic or Gemini route (issue 16), with
the official OpenAI Python SDK against the real `modelway` binary and the mock's
Anthropic and Gemini upstreams: JSON mode (`response_format: json_object`, plain and
streamed), hint parameters dropped and listed instead of refused, the role chunk of a
streamed tool-call-only turn, and in-band upstream errors named for what they were."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from conftest import CLIENT_KEY, Gateway, MockUpstream


@dataclass(frozen=True)
class Route:
    """A translated route and how its upstream requests look in the mock's log."""

    name: str
    model: str
    path_part: str
    # A parameter whose loss would change what the client gets, refused there.
    refused: tuple[str, Any]
    # What `hints()` below lists as dropped there (the rest is mapped).
    dropped: frozenset[str]

    def requests(self, upstream: MockUpstream) -> list[dict[str, Any]]:
        out = []
        for r in upstream.requests():
            if r.get("method") == "POST" and self.path_part in r.get("path", ""):
                body = r.get("body")
                out.append({**r, "body": json.loads(body) if isinstance(body, str) else body})
        return out

    def only_request(self, upstream: MockUpstream) -> dict[str, Any]:
        reqs = self.requests(upstream)
        assert len(reqs) == 1, f"expected one upstream request on {self.name}, got {len(reqs)}: {reqs}"
        return reqs[0]


# What an OpenAI client may send that only tunes how the model answers.
def hints() -> dict[str, Any]:
    return {
        "verbosity": "low",
        "service_tier": "flex",
        "store": True,
        "metadata": {"purpose": "parity-test"},
        "prediction": {"type": "content", "content": "Echo: hi"},
        "prompt_cache_key": "parity",
        "safety_identifier": "user-1234",
        "user": "legacy-user-id",
    }


ANTHROPIC = Route(
    name="anthropic",
    model="anthropic/claude-sonnet-4-20250514",
    path_part="/v1/messages",
    refused=("n", 2),
    # `user` becomes `metadata.user_id`; the rest has no Anthropic equivalent.
    dropped=frozenset(hints()) - {"user"},
)
GEMINI = Route(
    name="gemini",
    model="google/gemini-2.5-flash",
    path_part=":generateContent",
    # Gemini has `candidateCount`, so `n` maps; log probabilities are not translated.
    refused=("logprobs", True),
    dropped=frozenset(hints()),
)
ROUTES = [pytest.param(ANTHROPIC, id="anthropic"), pytest.param(GEMINI, id="gemini")]


def stream_requests(route: Route, upstream: MockUpstream) -> list[dict[str, Any]]:
    part = ":streamGenerateContent" if route is GEMINI else route.path_part
    return Route(route.name, route.model, part, route.refused, route.dropped).requests(upstream)


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
}
JSON_PROMPT = [
    {"role": "system", "content": f"Reply with a JSON object matching this schema: {json.dumps(SCHEMA)}"},
    {"role": "user", "content": "The biggest city of France?"},
]


def assert_json_mode_reached_the_upstream(route: Route, body: dict[str, Any]) -> None:
    if route is ANTHROPIC:
        assert body["tool_choice"] == {"type": "tool", "name": "json_response"}, body
        assert body["tools"][0]["input_schema"] == {"type": "object", "additionalProperties": True}
        assert "output_config" not in body
    else:
        assert body["generationConfig"]["responseMimeType"] == "application/json", body


# --- JSON mode -----------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_json_object_answer_parses_as_json(client: openai.OpenAI, upstream: MockUpstream, route: Route):
    resp = client.chat.completions.create(
        model=route.model, messages=JSON_PROMPT, response_format={"type": "json_object"}
    )

    choice = resp.choices[0]
    assert json.loads(choice.message.content) == {"city": "Paris", "population": 30}
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    assert_json_mode_reached_the_upstream(route, route.only_request(upstream)["body"])


@pytest.mark.parametrize("route", ROUTES)
def test_json_object_stream_parses_as_json(client: openai.OpenAI, upstream: MockUpstream, route: Route):
    chunks = list(
        client.chat.completions.create(
            model=route.model, messages=JSON_PROMPT, response_format={"type": "json_object"}, stream=True
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == {"city": "Paris", "population": 30}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    if route is ANTHROPIC:
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1, "streamed as it arrives"
    (sent,) = stream_requests(route, upstream)
    assert_json_mode_reached_the_upstream(route, sent["body"])


@pytest.mark.parametrize("route", ROUTES)
def test_json_object_without_a_schema_in_the_prompt_is_still_json(client: openai.OpenAI, route: Route):
    resp = client.chat.completions.create(
        model=route.model, messages=[{"role": "user", "content": "any JSON"}], response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(resp.choices[0].message.content), dict)


# --- hint parameters ------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_hint_parameters_succeed_and_are_listed_as_dropped(
    client: openai.OpenAI, upstream: MockUpstream, route: Route
):
    raw = client.chat.completions.with_raw_response.create(
        model=route.model, messages=[{"role": "user", "content": "hi"}], **hints()
    )

    assert raw.parse().choices[0].message.content == "Echo: hi"
    listed = {p.strip() for p in raw.headers["x-modelway-dropped-params"].split(",")}
    assert listed == route.dropped
    body = route.only_request(upstream)["body"]
    for name in route.dropped - {"metadata"}:
        assert name not in body, f"{name} reached the upstream: {body}"
    if route is ANTHROPIC:
        # `user` is mapped; the client's own metadata has no place next to it.
        assert body["metadata"] == {"user_id": "legacy-user-id"}
    else:
        assert "metadata" not in body


@pytest.mark.parametrize("route", ROUTES)
def test_the_agents_sdk_default_verbosity_streams_too(client: openai.OpenAI, route: Route):
    raw = client.chat.completions.with_raw_response.create(
        model=route.model, messages=[{"role": "user", "content": "hi"}], verbosity="medium", stream=True
    )
    assert raw.headers["x-modelway-dropped-params"] == "verbosity"
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "Echo: hi"


@pytest.mark.parametrize("route", ROUTES)
def test_a_parameter_whose_loss_changes_the_answer_is_still_a_400(
    client: openai.OpenAI, upstream: MockUpstream, route: Route
):
    name, value = route.refused
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=route.model, messages=[{"role": "user", "content": "hi"}], **{name: value})
    assert caught.value.body["param"] == name
    assert route.requests(upstream) == []


def test_n_2_is_still_a_400_on_anthropic(client: openai.OpenAI, upstream: MockUpstream):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=ANTHROPIC.model, messages=[{"role": "user", "content": "hi"}], n=2, verbosity="low"
        )
    assert caught.value.body["param"] == "n"
    assert ANTHROPIC.requests(upstream) == []


# --- stream fidelity -----------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def raw_chunks(gateway: Gateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `data:` JSON of a chat stream, as sent (not as an SDK rebuilds it)."""
    out = []
    with gateway.http.stream(
        "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {CLIENT_KEY}"}
    ) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line.removeprefix("data: ")))
    return out


@pytest.mark.parametrize("route", ROUTES)
def test_a_streamed_tool_call_only_turn_opens_with_content_null(gateway: Gateway, route: Route):
    chunks = raw_chunks(
        gateway,
        {
            "model": route.model,
            "messages": [{"role": "user", "content": "weather in Paris?"}],
            "tools": [WEATHER_TOOL],
            "tool_choice": "required",
            "stream": True,
        },
    )

    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    assert "content" in first and first["content"] is None, f"OpenAI sends content: null here, got {first}"
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert all(d.get("content") in (None,) for d in deltas), deltas
    assert any(d.get("tool_calls") for d in deltas)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("route", ROUTES)
def test_a_streamed_text_turn_still_opens_with_text(gateway: Gateway, route: Route):
    chunks = raw_chunks(
        gateway, {"model": route.model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    )
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and isinstance(first["content"], str), first


def sse(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"raw": f"event: {name}\ndata: {json.dumps(data)}\n\n"}


MESSAGE_START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {"id": "msg_parity", "type": "message", "role": "assistant", "model": "claude-x",
                    "content": [], "usage": {"input_tokens": 3, "output_tokens": 1}},
    },
)
OVERLOADED = sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})

# The failure tests use models of their own: health is kept per provider and model, so
# the failures they leave behind cannot eject a target another test uses.


def test_an_in_band_anthropic_error_mid_stream_names_its_type(client: openai.OpenAI, upstream: MockUpstream):
    upstream.script(
        {
            "sse": [
                MESSAGE_START,
                sse("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}}),
                sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": "partial"}}),
                OVERLOADED,
            ],
            "end": "close",
        }
    )
    got = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(
            model="anthropic/claude-parity-mid-stream", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            got.extend(c.delta.content or "" for c in chunk.choices)

    assert "".join(got) == "partial"
    assert "upstream stream error: overloaded_error: Overloaded" in caught.value.message
    assert "HTTP" not in caught.value.message, caught.value.message


def test_an_in_band_anthropic_error_before_any_content_is_a_retryable_overload(
    client: openai.OpenAI, upstream: MockUpstream
):
    upstream.script({"sse": [MESSAGE_START, OVERLOADED], "end": "close"})
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="anthropic/claude-parity-before-content", messages=[{"role": "user", "content": "hi"}], stream=True
        )

    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "overloaded"
    assert "upstream stream error: overloaded_error: Overloaded" in caught.value.message
    assert "529" not in caught.value.message


def test_an_in_band_gemini_error_names_its_status(client: openai.OpenAI, upstream: MockUpstream):
    text = {"candidates": [{"content": {"role": "model", "parts": [{"text": "partial"}]}, "index": 0}]}
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    upstream.script(
        {"sse": [{"raw": f"data: {json.dumps(text)}\r\n\r\n"}, {"raw": f"data: {json.dumps(error)}\r\n\r\n"}],
         "end": "close"}
    )
    got = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(
            model="google/gemini-parity-mid-stream", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            got.extend(c.delta.content or "" for c in chunk.choices)

    assert "".join(got) == "partial"
    assert "upstream stream error: UNAVAILABLE: The model is overloaded." in caught.value.message
    assert "HTTP" not in caught.value.message


# --- the Agents SDK's defaults on a Chat Completions model ----------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_the_agents_sdk_with_its_default_settings_runs_on_chat_completions(
    gateway: Gateway, upstream: MockUpstream, route: Route
):
    """The Agents SDK's default settings for its default (GPT-5) model carry
    `verbosity: "low"`; an agent whose model name an operator routes to Claude or Gemini
    sends it, and it must not fail the run. (Their reasoning effort is left out: Claude
    thinking across a tool loop needs the signed thinking the Chat Completions
    converter does not replay.)"""
    import asyncio

    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
    from agents.models import get_default_model, get_default_model_settings

    verbosity = get_default_model_settings(get_default_model()).verbosity
    assert verbosity == "low", "the SDK's GPT-5 defaults changed"

    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(city)
        return f"18C and sunny in {city}"

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=gateway.v1, api_key=CLIENT_KEY, max_retries=0, timeout=10.0)
        agent = Agent(
            name="weather",
            instructions="Answer with the weather.",
            tools=[get_weather],
            model=OpenAIChatCompletionsModel(model=route.model, openai_client=client),
            model_settings=ModelSettings(verbosity=verbosity),
        )
        try:
            return await asyncio.wait_for(Runner.run(agent, "What is the weather in Paris?"), timeout=20)
        finally:
            await client.close()

    result = asyncio.run(run())
    assert calls == ["Paris"]
    assert result.final_output
    bodies = [r["body"] for r in route.requests(upstream)]
    assert len(bodies) == 2 and all("verbosity" not in json.dumps(b) for b in bodies), bodies
