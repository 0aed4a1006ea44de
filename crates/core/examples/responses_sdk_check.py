#!/usr/bin/env python3
"""Checks modelway's Responses codec against the official Python SDKs, without network.

Every `POST /v1/responses` the SDKs make is answered by `httpx.MockTransport`: the body
goes through the codec's `decode_request` (the `responses_codec` example), a scripted
canonical answer (a chat.completion, or chat.completion.chunk list) through
`encode_response` / `StreamEncoder`, and what comes out is
  - validated strictly with pydantic against the SDK's own `Response` and
    `ResponseStreamEvent` types (the SDK itself only `construct`s them), then
  - handed to the SDK as the HTTP answer: `responses.create`, `responses.parse`,
    `responses.stream` (openai-python's `ResponseStreamState` accumulator, which raises on
    unknown or inconsistent events), and the Agents SDK's `Runner.run` /
    `Runner.run_streamed` through a two-turn function-tool conversation, whose second
    request (the replayed items) is checked as decoded.

Run (versions as the e2e suite pins them, plus the Agents SDK):
    python3 -m venv /tmp/oai && /tmp/oai/bin/pip install openai==3.51.0 openai-agents
    cargo build -p modelway-core --example responses_codec
    /tmp/oai/bin/python crates/core/examples/responses_sdk_check.py
`CODEC` names the example binary if it is not under `$CARGO_TARGET_DIR` (or `target/`).
"""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

try:  # openai-python 3.x speaks httpx2; older releases httpx.
    import httpx2 as httpx
except ImportError:
    import httpx
import pydantic
from openai import AsyncOpenAI, OpenAI
from openai.types.responses import Response, ResponseStreamEvent

ROOT = Path(__file__).resolve().parents[3]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
CODEC = os.environ.get("CODEC", str(TARGET / "debug" / "examples" / "responses_codec"))

STRICT_RESPONSE = pydantic.TypeAdapter(Response)
STRICT_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
USAGE = {
    "prompt_tokens": 11,
    "completion_tokens": 7,
    "total_tokens": 18,
    "prompt_tokens_details": {"cached_tokens": 3},
    "completion_tokens_details": {"reasoning_tokens": 2},
}


def codec(request: dict, **rest) -> dict:
    run = subprocess.run(
        [CODEC],
        input=json.dumps({"request": request, **rest}),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(run.stdout)


def strict_validate(body: str, stream: bool) -> int:
    """Validates the encoder's output with the SDK's types; returns the events' count."""
    if not stream:
        STRICT_RESPONSE.validate_python(json.loads(body))
        return 1
    assert body.endswith("\n\n"), "the stream must end with a complete event"
    n = 0
    for block in body[:-2].split("\n\n"):
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: "), block
        data = json.loads(data_line[len("data: ") :])
        assert event_line[len("event: ") :] == data["type"], block
        assert data["sequence_number"] == n, block
        STRICT_EVENT.validate_python(data)
        n += 1
    return n


class Gateway:
    """Answers each request with the next scripted canonical answer, through the codec."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.decoded = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/responses", request.url
        body = json.loads(request.content)
        answer = self.answers.pop(0)
        out = codec(body, **answer)
        if "body" not in out:
            return httpx.Response(out["status"], json={"error": {"message": out["error"], "param": out["param"]}})
        self.decoded.append(out)
        assert out["stateful"] == [], f"the SDK sent something stateful: {out['stateful']}"
        stream = bool(body.get("stream"))
        strict_validate(out["body"], stream)
        kind = "text/event-stream" if stream else "application/json"
        return httpx.Response(200, headers={"content-type": kind}, content=out["body"].encode())

    def client(self) -> OpenAI:
        return OpenAI(api_key="k", base_url="http://gw.test/v1", http_client=httpx.Client(transport=httpx.MockTransport(self)))

    def async_client(self) -> AsyncOpenAI:
        return AsyncOpenAI(
            api_key="k", base_url="http://gw.test/v1", http_client=httpx.AsyncClient(transport=httpx.MockTransport(self))
        )


def answer(finish="stop", usage=USAGE, **message) -> dict:
    return {
        "answer": {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "up-model",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": usage,
        }
    }


def chunk(delta: dict, finish=None, usage=None) -> dict:
    c = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "up-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        c["choices"] = []
        c["usage"] = usage
    return c


def stream(*deltas, finish="stop", usage=True, error=None) -> dict:
    chunks = [chunk({"role": "assistant", **deltas[0]})] + [chunk(d) for d in deltas[1:]]
    if error:
        return {"chunks": chunks, "error": error}
    chunks.append(chunk({}, finish))
    if usage:
        chunks.append(chunk({}, usage=USAGE))
    return {"chunks": chunks}


def call(i, id=None, name=None, args=""):
    c = {"index": i, "function": {"arguments": args}}
    if id:
        c.update(id=id, type="function")
        c["function"]["name"] = name
    return {"tool_calls": [c]}


WEATHER_TOOL = {
    "type": "function",
    "name": "weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
    "strict": True,
}

passed = []


def check(name):
    def wrap(f):
        f()
        passed.append(name)
        print(f"ok   {name}")
        return f

    return wrap


class Weather(pydantic.BaseModel):
    city: str
    celsius: int


# ---- non-streaming ----------------------------------------------------------------------


@check("create: text, output_text, usage")
def _():
    gw = Gateway(answer(content="Hello there"))
    r = gw.client().responses.create(model="m", input="hi", instructions="be brief", temperature=0.3)
    assert r.output_text == "Hello there", r
    assert r.status == "completed" and r.usage.input_tokens == 11 and r.usage.output_tokens_details.reasoning_tokens == 2
    assert r.instructions == "be brief" and r.temperature == 0.3
    msgs = gw.decoded[0]["request"]["messages"]
    assert msgs == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], msgs


@check("parse(text_format=Model): strict json_schema out, output_parsed back")
def _():
    gw = Gateway(answer(content='{"city":"Paris","celsius":21}'))
    r = gw.client().responses.parse(model="m", input="weather?", text_format=Weather)
    assert r.output_parsed == Weather(city="Paris", celsius=21), r
    rf = gw.decoded[0]["request"]["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["name"] == "Weather" and rf["json_schema"]["strict"] is True, rf


@check("create with tools: function_call items, parse with a strict tool")
def _():
    gw = Gateway(
        answer(
            finish="tool_calls",
            content=None,
            tool_calls=[
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
            ],
        )
    )
    r = gw.client().responses.parse(model="m", input="weather in Paris and Rome", tools=[WEATHER_TOOL], tool_choice="required")
    calls = [o for o in r.output if o.type == "function_call"]
    assert [(c.call_id, c.name, c.parsed_arguments) for c in calls] == [
        ("call_1", "weather", {"city": "Paris"}),
        ("call_2", "weather", {"city": "Rome"}),
    ], r.output
    req = gw.decoded[0]["request"]
    assert req["tools"][0]["function"]["name"] == "weather" and req["tool_choice"] == "required", req


@check("create: length is incomplete with max_output_tokens")
def _():
    gw = Gateway(answer(finish="length", content="Once upon"))
    r = gw.client().responses.create(model="m", input="story", max_output_tokens=16)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens", r
    assert r.output_text == "Once upon" and r.max_output_tokens == 16
    assert gw.decoded[0]["request"]["max_completion_tokens"] == 16


@check("create: reasoning item and refusal part")
def _():
    gw = Gateway(answer(content=None, refusal="I can't help.", reasoning_content="policy"))
    r = gw.client().responses.create(model="m", input="x")
    assert r.output[0].type == "reasoning" and r.output[0].summary[0].text == "policy", r.output
    assert r.output[1].content[0].type == "refusal" and r.output[1].content[0].refusal == "I can't help."


# ---- streaming through the SDK's accumulator ---------------------------------------------


def run_stream(answer_, **kw):
    gw = Gateway(answer_)
    kw.setdefault("input", "hi")
    with gw.client().responses.stream(model="m", **kw) as s:
        events = list(s)
        try:
            final = s.get_final_response()
        except RuntimeError:
            final = None
    return gw, events, final


@check("stream: text deltas accumulate, get_final_response")
def _():
    gw, events, final = run_stream(stream({"content": "Hel"}, {"content": "lo"}))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert [d.snapshot for d in deltas] == ["Hel", "Hello"], deltas
    assert final.output_text == "Hello" and final.usage.total_tokens == 18, final
    assert gw.decoded[0]["request"]["stream_options"] == {"include_usage": True}


@check("stream: parallel tool calls in fragments")
def _():
    gw, events, final = run_stream(
        stream(
            call(0, "call_a", "weather"),
            call(0, args='{"city":'),
            call(0, args='"Paris"}'),
            call(1, "call_b", "weather", '{"city"'),
            call(1, args=':"Rome"}'),
            finish="tool_calls",
        ),
        tools=[WEATHER_TOOL],
    )
    snaps = [e.snapshot for e in events if e.type == "response.function_call_arguments.delta"]
    assert snaps == ['{"city":', '{"city":"Paris"}', '{"city"', '{"city":"Rome"}'], snaps
    calls = [(o.call_id, o.arguments, o.parsed_arguments) for o in final.output]
    assert calls == [("call_a", '{"city":"Paris"}', {"city": "Paris"}), ("call_b", '{"city":"Rome"}', {"city": "Rome"})], calls


@check("stream: text then a tool call")
def _():
    _, events, final = run_stream(stream({"content": "Checking."}, call(0, "call_a", "weather", '{"city":"Oslo"}'), finish="tool_calls"))
    assert [o.type for o in final.output] == ["message", "function_call"], final.output
    assert final.output_text == "Checking." and final.output[1].call_id == "call_a"


@check("stream: reasoning summary then text")
def _():
    _, events, final = run_stream(stream({"reasoning_content": "Let me"}, {"reasoning_content": " think"}, {"content": "42"}))
    kinds = [e.type for e in events]
    assert "response.reasoning_summary_text.delta" in kinds, kinds
    assert final.output[0].type == "reasoning" and final.output[0].summary[0].text == "Let me think"
    assert final.output_text == "42"


@check("stream: refusal")
def _():
    _, events, final = run_stream(stream({"refusal": "I can't"}, {"refusal": " help."}))
    assert final.output[0].content[0].refusal == "I can't help.", final.output


@check("stream: no usage chunk")
def _():
    _, _, final = run_stream(stream({"content": "x"}, usage=False))
    assert final.output_text == "x" and final.usage is None


@check("stream: length ends with response.incomplete")
def _():
    _, events, final = run_stream(stream({"content": "Once"}, finish="length"))
    assert final is None, "no response.completed for an incomplete answer"
    last = events[-1]
    assert last.type == "response.incomplete" and last.response.incomplete_details.reason == "max_output_tokens", last
    assert last.response.output[0].content[0].text == "Once"


@check("stream: a failure mid-stream is response.failed")
def _():
    _, events, final = run_stream(stream({"content": "Hel"}, error="rate_limited"))
    last = events[-1]
    assert final is None and last.type == "response.failed", last
    assert last.response.error.code == "rate_limit_exceeded" and last.response.error.message == "slow down", last


@check("stream(text_format=Model): parsed on text done and at the end")
def _():
    _, events, final = run_stream(stream({"content": '{"city":"Oslo",'}, {"content": '"celsius":-3}'}), text_format=Weather)
    done = [e for e in events if e.type == "response.output_text.done"]
    assert done[0].parsed == Weather(city="Oslo", celsius=-3), done
    assert final.output_parsed == Weather(city="Oslo", celsius=-3)


@check("create(stream=True): raw events")
def _():
    gw = Gateway(stream({"content": "raw"}))
    events = list(gw.client().responses.create(model="m", input="hi", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed", events
    assert events[-1].response.output_text == "raw"


@check("stream: every recorded OpenAI chat stream in shared/fixtures, through the accumulator")
def _():
    recordings = sorted((ROOT.parent / "shared" / "fixtures" / "openai" / "sdk-recordings").glob("*.sse"))
    assert len(recordings) >= 12, recordings
    for path in recordings:
        chunks = [json.loads(line[6:]) for line in path.read_text().splitlines() if line.startswith("data: {")]
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"] and c["choices"][0]["index"] == 0
        )
        gw = Gateway({"chunks": chunks})
        with gw.client().responses.stream(model="m", input="hi") as s:
            events = list(s)
        last = events[-1]
        assert last.type in ("response.completed", "response.incomplete"), (path.name, last.type)
        assert last.response.output_text == text, (path.name, last.response.output_text, text)


# ---- the Agents SDK -----------------------------------------------------------------------


def agent_run(streamed: bool, first: dict, second: dict):
    from agents import Agent, Runner, function_tool, set_tracing_disabled
    from agents.models.openai_responses import OpenAIResponsesModel

    set_tracing_disabled(True)
    seen = []

    @function_tool
    def weather(city: str) -> str:
        """Weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    gw = Gateway(first, second)
    agent = Agent(
        name="a",
        instructions="Answer with the weather.",
        tools=[weather],
        model=OpenAIResponsesModel(model="m", openai_client=gw.async_client()),
    )

    async def go():
        if streamed:
            r = Runner.run_streamed(agent, "Weather in Paris?")
            async for _ in r.stream_events():
                pass
            return r
        return await Runner.run(agent, "Weather in Paris?")

    result = asyncio.run(go())
    assert seen == ["Paris"], seen
    assert result.final_output == "It is sunny in Paris.", result.final_output
    return gw


def replayed_turn(gw) -> list:
    """The second request as decoded: the replayed call and its output."""
    msgs = gw.decoded[1]["request"]["messages"]
    assert msgs[0] == {"role": "system", "content": "Answer with the weather."}, msgs
    assert msgs[1]["role"] == "user", msgs
    assert msgs[2]["role"] == "assistant" and msgs[2]["tool_calls"][0]["id"] == "call_w", msgs
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_w", "content": "sunny in Paris"}, msgs
    return msgs


@check("agents: Runner.run, a function tool over two turns")
def _():
    gw = agent_run(
        False,
        answer(finish="tool_calls", content=None, tool_calls=[{"id": "call_w", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]),
        answer(content="It is sunny in Paris."),
    )
    replayed_turn(gw)


@check("agents: Runner.run_streamed, a function tool over two turns")
def _():
    gw = agent_run(
        True,
        stream(call(0, "call_w", "weather", '{"city":'), call(0, args='"Paris"}'), finish="tool_calls"),
        stream({"content": "It is sunny "}, {"content": "in Paris."}),
    )
    replayed_turn(gw)


@check("agents: signed thinking comes back on the replayed assistant turn")
def _():
    block = {"type": "thinking", "thinking": "Need the tool.", "signature": "sig=="}
    gw = agent_run(
        True,
        stream(
            {"reasoning_content": "Need the tool."},
            {"thinking_blocks": [{"index": 0, **block}]},
            call(0, "call_w", "weather", '{"city":"Paris"}'),
            finish="tool_calls",
        ),
        stream({"content": "It is sunny in Paris."}),
    )
    msgs = replayed_turn(gw)
    assert msgs[2]["thinking_blocks"] == [{"index": 0, **block}], msgs[2]


print(f"\n{len(passed)} checks passed (openai {__import__('openai').__version__}, agents {__import__('agents').__version__})")
sys.exit(0)
