"""The official openai SDK's Responses API against the real `modelway` binary, routed to a
provider of kind `openai` (the mock's `/v1/responses`): the client's body goes as it came
and the answer and events come back byte for byte; `previous_response_id` reaches OpenAI,
and is a 400 naming it on a route to Anthropic, which cannot keep OpenAI's state.

This module runs its own gateway (the shared config has no provider of kind `openai`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest

from conftest import REPO, Gateway, MockUpstream, ServerProcess, _wait_ready

DATA = REPO / "providers" / "openai" / "tests" / "data" / "responses"
OAI_KEY = "sk-oai-upstream-secret"

CONFIG = """\
[routing]
timeout = "5s"
retries = 0

[providers.oai]
kind = "openai"
base_url = "{upstream}"
api_key = "{key}"
list_models = false

[providers.claude]
kind = "anthropic"
base_url = "{root}"
api_key = "sk-ant-unused"
list_models = false

[[routes]]
name = "gpt"
targets = ["oai/gpt-5.4"]

[[routes]]
name = "claude"
targets = ["claude/claude-x"]
"""

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


@pytest.fixture(scope="module")
def gw(upstream: MockUpstream, gateway_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("responses-gateway")
    config_path = workdir / "modelway-responses.toml"
    config_path.write_text(CONFIG.format(upstream=upstream.v1, root=upstream.base_url, key=OAI_KEY))
    process = ServerProcess(
        "modelway-responses",
        [str(gateway_bin), "--config", str(config_path), "--listen", "127.0.0.1:0"],
        workdir,
    )
    try:
        match = process.wait_for_line(r"modelway listening on (http://[^\s/]+)")
        g = Gateway(process, match.group(1), config_path)
        _wait_ready(f"{g.base_url}/readyz", process)
        yield g
        g.close()
    finally:
        process.stop()


@pytest.fixture
def sdk(gw: Gateway):
    with gw.client() as c:
        yield c


def posts(upstream: MockUpstream) -> list[dict[str, Any]]:
    return [r for r in upstream.requests() if r.get("method") == "POST"]


def only_post(upstream: MockUpstream) -> dict[str, Any]:
    got = posts(upstream)
    assert len(got) == 1, f"expected one upstream call, got {len(got)}: {got}"
    return got[0]


def sse_reply(text: str) -> dict[str, Any]:
    """A scripted stream sending `text` one event per frame, without `[DONE]`."""
    events = [e + "\n\n" for e in text.split("\n\n") if e]
    return {"sse": [{"raw": e} for e in events], "end": "close"}


# --- passthrough to OpenAI ---------------------------------------------------------------


def test_create_sends_the_body_as_it_came_and_returns_the_answer_as_sent(sdk: openai.OpenAI, upstream: MockUpstream):
    answer = (DATA / "function-call.json").read_text()
    upstream.script({"raw": answer, "status": 200, "content_type": "application/json"})
    raw = sdk.responses.with_raw_response.create(
        model="gpt",
        input="What is the weather like in Boston today?",
        tools=[WEATHER],
        store=False,
        include=["reasoning.encrypted_content"],
        metadata={"app": "e2e"},
    )
    assert raw.http_response.content.decode() == answer
    assert raw.headers.get("x-modelway-provider") == "oai"
    resp = raw.parse()
    assert resp.id == "resp_67ca09c5efe0819096d0511c92b8c890096610f474011cc0"
    [call] = resp.output
    assert call.type == "function_call" and call.call_id == "call_unLAR8MvFNptuiZK6K6HCy5k"
    sent = only_post(upstream)
    assert sent["path"] == "/v1/responses"
    assert sent["headers"]["authorization"] == f"Bearer {OAI_KEY}"
    # The SDK's bytes, only the model's value changed.
    client_bytes = raw.http_request.content.decode()
    want = re.sub(r'("model"\s*:\s*)"gpt"', r'\1"gpt-5.4"', client_bytes, count=1)
    assert want != client_bytes
    assert sent["raw_body"] == want, (sent["raw_body"], client_bytes)


def test_a_stream_reaches_the_sdk_byte_for_byte(sdk: openai.OpenAI, upstream: MockUpstream):
    text = (DATA / "stream-reasoning-then-text.sse").read_text()
    upstream.script(sse_reply(text))
    with sdk.responses.with_streaming_response.create(model="gpt", input="capital of France?", stream=True) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        got = b"".join(r.iter_bytes()).decode()
    assert got == text

    # The SDK's own accumulator takes the same bytes.
    upstream.script(sse_reply(text))
    with sdk.responses.stream(model="gpt", input="capital of France?") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Paris."
    assert final.output_text == "Paris."
    assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 64


def test_the_mock_openai_echoes_a_plain_and_a_streamed_call(sdk: openai.OpenAI, upstream: MockUpstream):
    resp = sdk.responses.create(model="gpt", input="hello there", instructions="be brief")
    assert resp.output_text == "Echo: hello there"
    assert resp.model == "gpt-5.4" and resp.status == "completed"
    body = json.loads(only_post(upstream)["raw_body"])
    assert body["instructions"] == "be brief" and body["model"] == "gpt-5.4"

    with sdk.responses.stream(model="gpt", input="hi you") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.output_text == "Echo: hi you"


def test_previous_response_id_reaches_openai(sdk: openai.OpenAI, upstream: MockUpstream):
    first = sdk.responses.create(model="gpt", input="weather in Paris?", tools=[WEATHER])
    [call] = [o for o in first.output if o.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    # The next turn names the previous response instead of resending it: only OpenAI
    # keeps it.
    second = sdk.responses.create(
        model="gpt",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],
    )
    assert second.previous_response_id == first.id
    assert second.output[0].type == "message"
    sent = [json.loads(r["raw_body"]) for r in posts(upstream)]
    assert [s.get("previous_response_id") for s in sent] == [None, first.id]

    with sdk.responses.stream(model="gpt", input="and now?", previous_response_id=first.id) as stream:
        final = stream.get_final_response()
    assert final.previous_response_id == first.id


@pytest.mark.parametrize("stream", [False, True])
def test_previous_response_id_is_refused_on_a_route_to_anthropic(sdk: openai.OpenAI, upstream: MockUpstream, stream: bool):
    with pytest.raises(openai.BadRequestError) as err:
        if stream:
            with sdk.responses.stream(model="claude", input="and then?", previous_response_id="resp_earlier") as s:
                for _ in s:
                    pass
        else:
            sdk.responses.create(model="claude", input="and then?", previous_response_id="resp_earlier")
    e = err.value
    assert e.status_code == 400
    body = e.response.json()["error"]
    assert body["param"] == "previous_response_id"
    assert body["code"] == "unsupported_parameter"
    assert "`previous_response_id`" in body["message"]
    assert posts(upstream) == []


def test_a_route_to_anthropic_still_serves_stateless_calls(sdk: openai.OpenAI, upstream: MockUpstream):
    resp = sdk.responses.create(model="claude", input="hello there", store=False)
    assert resp.output_text == "Echo: hello there"
    assert only_post(upstream)["path"] == "/v1/messages"
