"""Invisible stream failover, hedging and stream keep-alive, seen through the official
OpenAI Python SDK (sync and async) and raw HTTP, against the real `modelway` binary in
front of the real mock upstream.

The rule under test is the stream commit point: nothing of a streamed answer reaches
the client before its first content, so a target that fails before it (an error event
inside a 200 stream in any provider's dialect, a stall past `first_token_timeout`) is
replaced by the next one without the client noticing; after it, a failure ends the
stream with one error event and nothing from another target follows.

Every route here falls back to `fo-backup/second-choice`, which the mock answers with
its default echo (`Echo: <last user text>`); each group's first targets are providers
of their own (see conftest.py), so health state cannot leak between tests. Every call
has a client timeout of a few seconds and every poll a deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from conftest import CLIENT_KEY, Gateway, MockUpstream

# A bound for any one SDK or HTTP call here: far above what a passing test needs, far
# below the mock's stalls, so a gateway that waits on a stalled target fails fast.
CALL_TIMEOUT = 3.0

BACKUP_PROVIDER = "fo-backup"
BACKUP_MODEL = "second-choice"


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
        "id": "chatcmpl-first-target",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "first-choice",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


OPENAI_ERROR_EVENT = {
    "error": {
        "message": "The server had an error while processing your request.",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}

# OpenRouter's mid-stream error (openrouter.ai/docs "Errors": "Mid-stream errors"): a
# normal chunk carrying a top-level `error` and `finish_reason: "error"`.
OPENROUTER_ERROR_CHUNK = {
    "id": "gen-first-target",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "vendor/first-choice",
    "provider": "SomeProvider",
    "error": {"code": 502, "message": "Provider disconnected unexpectedly"},
    "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "error"}],
}

ANTHROPIC_ERROR_EVENT = (
    "event: error\n"
    'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)

GEMINI_ERROR_OBJECT = {
    "error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}
}


@dataclass
class Streamed:
    """What the SDK made of one streamed answer."""

    headers: httpx.Headers
    chunks: list[Any]
    elapsed: float

    @property
    def text(self) -> str:
        return "".join(c.choices[0].delta.content or "" for c in self.chunks if c.choices)

    @property
    def roles(self) -> list[str]:
        return [c.choices[0].delta.role for c in self.chunks if c.choices and c.choices[0].delta.role]

    @property
    def finishes(self) -> list[str]:
        return [c.choices[0].finish_reason for c in self.chunks if c.choices and c.choices[0].finish_reason]


def stream_sync(gateway: Gateway, model: str, text: str) -> Streamed:
    with gateway.client(timeout=CALL_TIMEOUT) as client:
        started = time.monotonic()
        raw = client.chat.completions.with_raw_response.create(model=model, messages=user(text), stream=True)
        chunks = list(raw.parse())
        return Streamed(raw.headers, chunks, time.monotonic() - started)


def stream_async(gateway: Gateway, model: str, text: str) -> Streamed:
    async def run() -> Streamed:
        async with gateway.async_client(timeout=CALL_TIMEOUT) as client:
            started = time.monotonic()
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=user(text), stream=True
            )
            chunks = [c async for c in raw.parse()]
            return Streamed(raw.headers, chunks, time.monotonic() - started)

    return asyncio.run(asyncio.wait_for(run(), timeout=2 * CALL_TIMEOUT))


STREAMERS = {"sync": stream_sync, "async": stream_async}


def posts(upstream: MockUpstream) -> list[dict[str, Any]]:
    """Every model request the mock received since the reset, whatever its dialect."""
    out = []
    for r in upstream.requests():
        if r.get("method") == "POST":
            body = r.get("body")
            if isinstance(body, str):
                try:
                    body = json.loads(body)
                except ValueError:
                    pass
            out.append({**r, "body": body})
    return out


def wait_for_cancelled(upstream: MockUpstream, n: int = 1, timeout: float = 3.0) -> dict[str, Any]:
    """The mock's stats once `n` replies were abandoned by the gateway, or at the deadline."""
    deadline = time.monotonic() + timeout
    stats = upstream.stats()
    while stats.get("cancelled", 0) < n and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = upstream.stats()
    return stats


def raw_stream(gateway: Gateway, model: str, text: str) -> tuple[httpx.Response, float, bytes]:
    """POSTs a streamed chat request with plain httpx: the response, the seconds until its
    head arrived, and the undecoded body bytes."""
    body = {"model": model, "messages": user(text), "stream": True}
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    with httpx.Client(timeout=CALL_TIMEOUT) as http:
        started = time.monotonic()
        with http.stream("POST", f"{gateway.v1}/chat/completions", json=body, headers=headers) as response:
            head_after = time.monotonic() - started
            data = b"".join(response.iter_raw())
    return response, head_after, data


def sse_data(body: bytes) -> list[str]:
    """The `data:` payloads of an SSE body, in order (comments and other fields dropped)."""
    out = []
    for line in body.decode("utf-8").splitlines():
        if line.startswith("data:"):
            out.append(line[len("data:") :].strip())
    return out


# --- 1. an error inside a 200 stream, before any content, fails over invisibly ---------

# route -> (first target's path fragment, its scripted 200 stream)
IN_BAND_ERRORS: dict[str, tuple[str, dict[str, Any]]] = {
    "openai-error-event": (
        "/v1/chat/completions",
        {"sse": [{"data": chunk(role="assistant")}, {"data": OPENAI_ERROR_EVENT}], "end": "close"},
    ),
    "openrouter-finish-reason-error": (
        "/v1/chat/completions",
        {"sse": [{"data": chunk(role="assistant")}, {"data": OPENROUTER_ERROR_CHUNK}], "end": "done"},
    ),
    "anthropic-event-error": (
        "/v1/messages",
        {"sse": [{"data": ANTHROPIC_ERROR_EVENT}], "end": "close"},
    ),
    "gemini-error-object": (
        ":streamGenerateContent",
        {"sse": [{"data": GEMINI_ERROR_OBJECT}], "end": "close"},
    ),
}
ROUTE_OF = {
    "openai-error-event": "failover-openai",
    "openrouter-finish-reason-error": "failover-openrouter",
    "anthropic-event-error": "failover-anthropic",
    "gemini-error-object": "failover-gemini",
}


@pytest.mark.parametrize("mode", list(STREAMERS))
@pytest.mark.parametrize("kind", list(IN_BAND_ERRORS))
def test_in_band_error_before_content_fails_over_invisibly(
    gateway: Gateway, upstream: MockUpstream, kind: str, mode: str
):
    first_path, reply = IN_BAND_ERRORS[kind]
    upstream.script(reply)

    got = STREAMERS[mode](gateway, ROUTE_OF[kind], f"survive {kind}")

    assert got.text == f"Echo: survive {kind}", got.chunks
    assert got.roles == ["assistant"], f"exactly one chunk may carry the role, got {got.roles}"
    assert got.finishes == ["stop"], got.finishes
    assert got.headers.get("x-modelway-provider") == BACKUP_PROVIDER
    assert got.headers.get("x-modelway-model") == BACKUP_MODEL
    assert got.headers.get("x-modelway-attempts") == "2"
    sent = posts(upstream)
    assert len(sent) == 2, [r["path"] for r in sent]
    assert first_path in sent[0]["path"], sent[0]["path"]
    assert sent[1]["path"] == "/v1/chat/completions"
    assert sent[1]["body"]["model"] == BACKUP_MODEL


# --- 2. after the commit, a failure is the client's error, never a spliced answer -----

COMMITTED_THEN_ERROR = {
    "sse": [
        {"data": chunk("Partial", role="assistant")},
        {"data": chunk(" answer")},
        {"data": OPENAI_ERROR_EVENT, "delay_ms": 50},
    ],
    "end": "close",
}


def test_error_after_content_raises_in_the_sdk(client: openai.OpenAI, upstream: MockUpstream):
    upstream.script(COMMITTED_THEN_ERROR)

    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        stream = client.chat.completions.create(
            model="failover-committed", messages=user("fail after commit"), stream=True, timeout=CALL_TIMEOUT
        )
        for c in stream:
            if c.choices:
                received.append(c.choices[0].delta.content or "")

    err = caught.value
    assert not isinstance(err, openai.APIStatusError), "the 200 was already sent; this is a stream error"
    assert isinstance(err.body, dict) and err.body.get("message"), f"no OpenAI error object: {err.body!r}"
    assert "".join(received) == "Partial answer", "what the first target sent must reach the client"
    assert len(upstream.chat_requests()) == 1, "no second target may be tried after the commit"
    assert len(posts(upstream)) == 1


def test_error_after_content_is_the_last_event_on_the_wire(gateway: Gateway, upstream: MockUpstream):
    upstream.script(COMMITTED_THEN_ERROR)

    response, _, body = raw_stream(gateway, "failover-committed", "fail after commit, raw")

    assert response.status_code == 200
    assert response.headers.get("x-modelway-provider") == "fo-committed"
    events = [e for e in sse_data(body) if e != "[DONE]"]
    parsed = [json.loads(e) for e in events]
    errors = [i for i, e in enumerate(parsed) if e.get("error")]
    assert errors == [len(parsed) - 1], f"exactly one error event, and last: {events}"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in parsed[:-1] if e.get("choices"))
    assert text == "Partial answer", events
    assert len(posts(upstream)) == 1, "no second target may be tried after the commit"


# --- 3. a stall before the first token moves on at first_token_timeout ----------------


def test_stall_before_first_token_moves_on_at_first_token_timeout(gateway: Gateway, upstream: MockUpstream):
    upstream.script(
        {
            "sse": [{"data": chunk(role="assistant")}, {"data": chunk("too late"), "delay_ms": 5000}],
            "end": "done",
        }
    )

    got = stream_sync(gateway, "failover-stall", "stalled first target")

    assert got.text == "Echo: stalled first target", got.chunks
    assert got.roles == ["assistant"], got.roles
    assert got.elapsed < 2.0, f"first_token_timeout is 300ms, the answer took {got.elapsed:.2f}s"
    assert got.elapsed >= 0.25, f"answered in {got.elapsed:.2f}s: before the 300ms timeout could fire?"
    assert got.headers.get("x-modelway-provider") == BACKUP_PROVIDER
    assert got.headers.get("x-modelway-attempts") == "2"
    assert [r["body"]["model"] for r in upstream.chat_requests()] == ["first-choice", BACKUP_MODEL]
    stats = wait_for_cancelled(upstream)
    assert stats.get("cancelled", 0) >= 1, f"the stalled upstream stream was left open: {stats}"


# --- 4. keep-alive while waiting for the first token ----------------------------------

ROLE_THEN_LATE_ERROR = {
    "sse": [{"data": chunk(role="assistant")}, {"data": OPENAI_ERROR_EVENT, "delay_ms": 600}],
    "end": "close",
}


@pytest.mark.parametrize("mode", list(STREAMERS))
def test_keepalive_then_failover_is_one_clean_stream_in_the_sdk(gateway: Gateway, upstream: MockUpstream, mode: str):
    upstream.script(ROLE_THEN_LATE_ERROR)

    got = STREAMERS[mode](gateway, "failover-keepalive", "keep me alive")

    assert got.text == "Echo: keep me alive", got.chunks
    assert got.roles == ["assistant"], got.roles
    assert got.finishes == ["stop"], got.finishes
    assert [r["body"]["model"] for r in upstream.chat_requests()] == ["first-choice", BACKUP_MODEL]


def test_keepalive_comments_come_first_on_the_wire(gateway: Gateway, upstream: MockUpstream):
    upstream.script(ROLE_THEN_LATE_ERROR)

    response, head_after, body = raw_stream(gateway, "failover-keepalive", "raw keep-alive")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert head_after < 0.45, (
        f"stream_keepalive is 200ms but the head took {head_after:.2f}s (the first target fails at 600ms)"
    )
    assert body.startswith(b": keep-alive"), body[:200]
    data = sse_data(body)
    assert data[-1] == "[DONE]", data
    events = [json.loads(e) for e in data[:-1]]
    assert not [e for e in events if e.get("error")], f"the first target's error leaked: {data}"
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices")) == (
        "Echo: raw keep-alive"
    )
    roles = [e["choices"][0]["delta"]["role"] for e in events if e.get("choices") and e["choices"][0]["delta"].get("role")]
    assert roles == ["assistant"], data
    assert len(upstream.chat_requests()) == 2


def test_keepalive_is_not_sent_when_the_first_token_is_quick(gateway: Gateway, upstream: MockUpstream):
    response, _, body = raw_stream(gateway, "failover-keepalive", "quick answer")

    assert response.status_code == 200
    assert body.startswith(b"data: "), body[:200]
    assert b": keep-alive" not in body
    assert response.headers.get("x-modelway-provider") == "fo-keepalive"
    assert response.headers.get("x-modelway-attempts") == "1"


# --- 5. hedging: a slow first target is raced by the next one --------------------------


def test_hedge_answers_a_hung_json_call(client: openai.OpenAI, upstream: MockUpstream):
    upstream.script({"hang": True})

    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model="hedge-json", messages=user("hedge me"), timeout=CALL_TIMEOUT
    )
    elapsed = time.monotonic() - started

    assert raw.parse().choices[0].message.content == "Echo: hedge me"
    assert elapsed < 1.5, f"hedge_after is 200ms, the answer took {elapsed:.2f}s"
    assert raw.headers.get("x-modelway-hedged") == "true"
    assert raw.headers.get("x-modelway-attempts") == "2"
    assert raw.headers.get("x-modelway-provider") == BACKUP_PROVIDER
    assert raw.headers.get("x-modelway-model") == BACKUP_MODEL
    assert [r["body"]["model"] for r in upstream.chat_requests()] == ["first-choice", BACKUP_MODEL]
    stats = wait_for_cancelled(upstream)
    assert stats.get("cancelled", 0) >= 1, f"the losing attempt's connection was not closed: {stats}"


@pytest.mark.parametrize("mode", list(STREAMERS))
def test_hedge_answers_a_slow_stream(gateway: Gateway, upstream: MockUpstream, mode: str):
    upstream.script(
        {
            "sse": [
                {"data": chunk(role="assistant")},
                {"data": chunk("slow first target"), "delay_ms": 3000},
                {"data": chunk(finish="stop")},
            ],
            "end": "done",
        }
    )

    got = STREAMERS[mode](gateway, "hedge-stream", "hedge my stream")

    assert got.text == "Echo: hedge my stream", got.chunks
    assert got.roles == ["assistant"], got.roles
    assert got.finishes == ["stop"], got.finishes
    assert got.elapsed < 1.5, f"hedge_after is 200ms, the stream took {got.elapsed:.2f}s"
    assert got.headers.get("x-modelway-hedged") == "true"
    assert got.headers.get("x-modelway-attempts") == "2"
    assert got.headers.get("x-modelway-provider") == BACKUP_PROVIDER
    assert [r["body"]["model"] for r in upstream.chat_requests()] == ["first-choice", BACKUP_MODEL]
    stats = wait_for_cancelled(upstream)
    assert stats.get("cancelled", 0) >= 1, f"the losing stream's connection was not closed: {stats}"
