"""The official Anthropic Python SDK against the real `modelway` binary's `/v1/messages`
front door (what Claude Code speaks).

Two ways through: to an Anthropic upstream (the mock's `/v1/messages`) the client's body
goes as it came and the answer and events come back byte for byte; to an OpenAI-compatible
upstream (the mock's `/v1/chat/completions`) the call is translated there and back."""

from __future__ import annotations

import json
import re
import os
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from conftest import ANTHROPIC_KEY, REPO, Gateway, MockUpstream

PASSTHROUGH = "anthropic/claude-sonnet-4-20250514"
UPSTREAM_MODEL = "claude-sonnet-4-20250514"
# `fast` routes to the OpenAI-compatible mock.
TRANSLATED = "fast"
FIXTURES = Path(os.environ.get("MODELWAY_FIXTURES") or REPO.parent / "shared" / "fixtures")

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
def claude(gateway: Gateway):
    with anthropic.Anthropic(
        base_url=gateway.base_url, api_key="sk-unused", max_retries=0, timeout=10.0
    ) as c:
        yield c


def messages_requests(upstream: MockUpstream) -> list[dict[str, Any]]:
    return [r for r in upstream.requests() if r.get("method") == "POST" and r.get("path") == "/v1/messages"]


def body_of(r: dict[str, Any]) -> Any:
    b = r.get("body")
    return json.loads(b) if isinstance(b, str) else b


def header(r: dict[str, Any], name: str) -> str | None:
    return (r.get("headers") or {}).get(name)


# --- passthrough to an Anthropic upstream -----------------------------------------------


def test_create_passes_the_body_through_and_names_the_upstream_model(claude: anthropic.Anthropic, upstream: MockUpstream):
    msg = claude.messages.create(
        model=PASSTHROUGH,
        max_tokens=100,
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hello there"}],
        metadata={"user_id": "u-1"},
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    assert msg.type == "message"
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "Echo: hello there"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    # Anthropic's SDKs read `request-id`.
    assert msg._request_id
    [sent] = messages_requests(upstream)
    body = body_of(sent)
    assert body["model"] == UPSTREAM_MODEL
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["metadata"] == {"user_id": "u-1"}
    assert header(sent, "x-api-key") == ANTHROPIC_KEY
    # The client's own version goes with its bytes (the SDK's, not the provider's default).
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", header(sent, "anthropic-version") or "")
    assert header(sent, "anthropic-beta") == "prompt-caching-2024-07-31"


def test_request_bytes_reach_the_upstream_unchanged_but_the_model(gateway: Gateway, upstream: MockUpstream):
    raw = (
        b'{"max_tokens": 50,  "model": "' + PASSTHROUGH.encode() + b'",\n'
        b' "messages": [{"role": "user", "content": [{"type": "text", "text": "hi \\u00e9"}]}],'
        b' "future_field": {"kept": [1, 2.50, null]}}'
    )
    r = httpx.post(
        f"{gateway.base_url}/v1/messages",
        content=raw,
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    [sent] = messages_requests(upstream)
    assert sent["raw_body"] == raw.decode().replace(PASSTHROUGH, UPSTREAM_MODEL)


def test_json_answer_is_the_upstreams_bytes(gateway: Gateway, upstream: MockUpstream):
    reply = {
        "id": "msg_01fixed",
        "type": "message",
        "role": "assistant",
        "model": UPSTREAM_MODEL,
        "content": [{"type": "text", "text": "fixed", "citations": None}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1, "service_tier": "standard"},
        "container": None,
    }
    body = {"model": PASSTHROUGH, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    headers = {"anthropic-version": "2023-06-01", "x-api-key": "k"}
    upstream.script({"body": reply})
    direct = httpx.post(f"{upstream.base_url}/v1/messages", json={**body, "model": UPSTREAM_MODEL}, headers=headers, timeout=10)
    upstream.script({"body": reply})
    via = httpx.post(f"{gateway.base_url}/v1/messages", json=body, headers=headers, timeout=10)
    assert via.status_code == 200
    assert via.content == direct.content
    assert via.headers["request-id"] == via.headers["x-request-id"]


@pytest.mark.parametrize("fixture", ["tool_use_response.sse", "basic_response.sse"])
def test_stream_is_the_upstreams_events_byte_for_byte(gateway: Gateway, upstream: MockUpstream, fixture: str):
    upstream.script({"fixture": f"anthropic/sdk-fixtures/{fixture}"})
    body = {"model": PASSTHROUGH, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "weather?"}]}
    with httpx.stream(
        "POST", f"{gateway.base_url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}, timeout=10
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        got = r.read()
    want = (FIXTURES / "anthropic" / "sdk-fixtures" / fixture).read_bytes()
    # The recording stops short of the blank line that ends its last event; the
    # gateway ends it, as Anthropic does.
    if not want.endswith(b"\n\n"):
        want += b"\n" if want.endswith(b"\n") else b"\n\n"
    assert got == want


def test_stream_with_the_sdk_text_and_final_message(claude: anthropic.Anthropic):
    with claude.messages.stream(
        model=PASSTHROUGH, max_tokens=100, messages=[{"role": "user", "content": "stream me please"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Echo: stream me please"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def tool_conversation(claude: anthropic.Anthropic, model: str, stream: bool) -> tuple[Any, Any]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        with claude.messages.stream(model=model, max_tokens=200, tools=[WEATHER], messages=messages) as s:
            first = s.get_final_message()
    else:
        first = claude.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=messages)
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather"
    assert use.input == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C and sunny"}]},
    ]
    second = claude.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=messages)
    return first, second


@pytest.mark.parametrize("stream", [False, True])
def test_multi_turn_tool_conversation_passthrough(claude: anthropic.Anthropic, stream: bool):
    _, second = tool_conversation(claude, PASSTHROUGH, stream)
    assert second.content[-1].text == "Tool result: 18C and sunny"


def test_thinking_blocks_and_signatures_survive(claude: anthropic.Anthropic, upstream: MockUpstream):
    thinking = {"type": "enabled", "budget_tokens": 1024}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    with claude.messages.stream(
        model=PASSTHROUGH, max_tokens=2000, thinking=thinking, tools=[WEATHER], messages=messages
    ) as s:
        first = s.get_final_message()
    kinds = [b.type for b in first.content]
    assert kinds[0] == "thinking" and "tool_use" in kinds
    assert first.content[0].signature
    use = next(b for b in first.content if b.type == "tool_use")
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    # The mock refuses a tool turn whose signed thinking block did not come back intact.
    second = claude.messages.create(
        model=PASSTHROUGH, max_tokens=2000, thinking=thinking, tools=[WEATHER], messages=messages
    )
    assert second.content[-1].text == "Tool result: sunny"


def test_server_tools_go_through_to_anthropic_and_are_a_400_elsewhere(claude: anthropic.Anthropic, upstream: MockUpstream):
    # Claude Code's web search is an Anthropic server tool: the canonical model cannot
    # carry it, so the call goes only where the body goes as it came.
    web = {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}
    upstream.script({"body": {
        "id": "msg_01web", "type": "message", "role": "assistant", "model": UPSTREAM_MODEL,
        "content": [{"type": "text", "text": "searched"}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1},
    }})
    msg = claude.messages.create(
        model=PASSTHROUGH, max_tokens=50, tools=[web], messages=[{"role": "user", "content": "news?"}]
    )
    assert msg.content[0].text == "searched"
    [sent] = messages_requests(upstream)
    assert sent["body"]["tools"] == [web]
    raw = claude.messages.with_raw_response.count_tokens(
        model=PASSTHROUGH, tools=[web], messages=[{"role": "user", "content": "news?"}]
    )
    assert raw.headers["x-modelway-token-count"] == "upstream"
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(
            model=TRANSLATED, max_tokens=50, tools=[web], messages=[{"role": "user", "content": "news?"}]
        )
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "tools[0].type" in e.value.body["error"]["message"]
    assert upstream.chat_requests() == []


# --- translated to an OpenAI-compatible upstream ----------------------------------------


def test_translated_create(claude: anthropic.Anthropic, upstream: MockUpstream):
    msg = claude.messages.create(
        model=TRANSLATED,
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "hello translated"}],
        stop_sequences=["END"],
        # This SDK no longer types sampling parameters; the API still takes them.
        extra_body={"temperature": 0.5},
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id.startswith("msg_")
    assert msg.content[0].text == "Echo: hello translated"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    [sent] = upstream.chat_requests()
    body = sent["body"]
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 100
    assert body["stop"] == ["END"]
    assert body["temperature"] == 0.5


def test_translated_stream(claude: anthropic.Anthropic):
    seen: list[str] = []
    with claude.messages.stream(
        model=TRANSLATED, max_tokens=100, messages=[{"role": "user", "content": "stream translated"}]
    ) as s:
        for event in s:
            seen.append(event.type)
        final = s.get_final_message()
    assert final.content[0].text == "Echo: stream translated"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert seen[0] == "message_start" and seen[-1] == "message_stop"
    assert "content_block_delta" in seen and "message_delta" in seen


@pytest.mark.parametrize("stream", [False, True])
def test_translated_multi_turn_tool_conversation(claude: anthropic.Anthropic, upstream: MockUpstream, stream: bool):
    first, second = tool_conversation(claude, TRANSLATED, stream)
    assert second.content[-1].text == "Echo: What is the weather in Paris?"
    chat = upstream.chat_requests()[-1]["body"]
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["user", "assistant", "tool"]
    assert chat["messages"][2]["content"] in ("18C and sunny", [{"type": "text", "text": "18C and sunny"}])
    assert chat["tools"][0]["function"]["name"] == "get_weather"


def test_translated_thinking(claude: anthropic.Anthropic, upstream: MockUpstream):
    # A chat upstream's reasoning comes back as a thinking block; Anthropic's own
    # `thinking` request field never reaches it.
    reply = {
        "id": "chatcmpl-think", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "42", "reasoning_content": "six times seven"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
    }
    upstream.script({"body": reply})
    msg = claude.messages.create(
        model=TRANSLATED, max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "6*7?"}],
    )
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == "six times seven"
    assert msg.content[1].text == "42"
    sent = upstream.chat_requests()[-1]["body"]
    assert "thinking" not in sent


def test_images_are_translated(claude: anthropic.Anthropic, upstream: MockUpstream):
    png = "iVBORw0KGgo="
    claude.messages.create(
        model=TRANSLATED,
        max_tokens=10,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
            {"type": "text", "text": "what is this?"},
        ]}],
    )
    parts = upstream.chat_requests()[-1]["body"]["messages"][0]["content"]
    assert parts[0]["type"] == "image_url"
    assert parts[0]["image_url"]["url"] == f"data:image/png;base64,{png}"


# --- errors, fallback, count_tokens ------------------------------------------------------


def test_errors_are_anthropic_errors(claude: anthropic.Anthropic, gateway: Gateway, upstream: MockUpstream):
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model=PASSTHROUGH, max_tokens=10, messages=[])  # type: ignore[arg-type]
    assert e.value.body["type"] == "error"
    r = httpx.post(f"{gateway.base_url}/v1/messages", json={"model": TRANSLATED, "messages": []}, timeout=10)
    assert r.status_code == 400
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError) as e:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "not_found_error"


def test_upstream_rate_limit_is_a_rate_limit_error_with_retry_after(claude: anthropic.Anthropic, upstream: MockUpstream):
    upstream.script(
        {"status": 429, "body": {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
         "headers": {"retry-after": "7"}}
    )
    with pytest.raises(anthropic.RateLimitError) as e:
        claude.messages.create(model=PASSTHROUGH, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "rate_limit_error"
    assert e.value.response.headers["retry-after"] == "7"


def test_fallback_from_a_failing_anthropic_to_a_translated_backup(claude: anthropic.Anthropic, upstream: MockUpstream):
    upstream.script(
        {"status": 529, "body": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}}
    )
    with claude.messages.stream(
        model="failover-anthropic", max_tokens=50, messages=[{"role": "user", "content": "fall over"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Echo: fall over"
    assert final.stop_reason == "end_turn"
    assert len(messages_requests(upstream)) == 1
    assert len(upstream.chat_requests()) == 1


def test_count_tokens_is_anthropics_count_else_an_estimate(claude: anthropic.Anthropic, upstream: MockUpstream):
    # An Anthropic target counts (the mock: 1 word + 3 per message), given the body as sent.
    raw = claude.messages.with_raw_response.count_tokens(
        model=PASSTHROUGH, system="be brief", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-modelway-token-count"] == "upstream"
    assert raw.parse().input_tokens == 2 + 1 + 3
    [sent] = [r for r in upstream.requests() if r.get("path") == "/v1/messages/count_tokens"]
    assert sent["body"]["model"] == UPSTREAM_MODEL
    assert "max_tokens" not in sent["body"]
    # Any other upstream: the gateway's estimate, which grows with the request.
    short = claude.messages.with_raw_response.count_tokens(
        model=TRANSLATED, messages=[{"role": "user", "content": "hi"}]
    )
    assert short.headers["x-modelway-token-count"] == "estimate"
    long = claude.messages.count_tokens(
        model=TRANSLATED, messages=[{"role": "user", "content": "hello " * 200}], tools=[WEATHER]
    )
    assert 0 < short.parse().input_tokens < long.input_tokens
    assert upstream.chat_requests() == []


def test_unknown_path_names_the_endpoints(gateway: Gateway):
    r = httpx.post(f"{gateway.base_url}/v1/nope", json={}, timeout=10)
    assert r.status_code == 404
    assert "/v1/messages" in r.json()["error"]["message"]


def requests_counted(gateway: Gateway, provider: str, model: str) -> float:
    want = f'provider="{provider}",model="{model}",status="200"}}'
    for line in httpx.get(f"{gateway.base_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("modelway_requests_total{") and want in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_telemetry_counts_the_messages_front_door(claude: anthropic.Anthropic, gateway: Gateway):
    before = requests_counted(gateway, "anthropic", UPSTREAM_MODEL)
    claude.messages.create(model=PASSTHROUGH, max_tokens=10, messages=[{"role": "user", "content": "count me"}])
    with claude.messages.stream(model=PASSTHROUGH, max_tokens=10, messages=[{"role": "user", "content": "me too"}]) as s:
        s.get_final_message()
    assert requests_counted(gateway, "anthropic", UPSTREAM_MODEL) == before + 2
