"""Gateway keys and their limits, seen through the official OpenAI Python SDK and raw
HTTP, against a `modelway` of this module's own (its `[auth]` has keys, which the
session gateway of conftest.py must not have) in front of the real mock upstream.

Under test: who may call (401 for a missing or unknown key, in any of the three
headers SDKs send it in; 403 for a model outside the key's globs), each key's `rpm`,
`tpm` and `max_concurrent` (429 with `Retry-After`, `retry-after-ms` and an error code
saying which limit), the `x-ratelimit-*` headers on every answer of a limited key, the
admin endpoints, a client's own provider key, and the refusal to serve an open relay.

Every limit test has a key of its own, so no test spends another's budget. The
in-process mock provider (`fast`, and `slow` with an 800 ms delay) answers without the
network; the `up` and `byok` routes go to the scripted mock upstream. Every call has a
client timeout and every wait a deadline; `max_retries=0` everywhere, so the SDK never
hides a 429 by honouring its `retry-after-ms`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import HTTP_TIMEOUT, Gateway, MockUpstream, ServerProcess, _wait_ready

ADMIN_KEY = "sk-admin-keys-test-must-not-leak"
# Gateway keys by name. `hashed` is configured by its digest only.
SECRETS = {
    "plain": "sk-keys-plain-must-not-leak",
    "hashed": "sk-keys-hashed-must-not-leak",
    "narrow": "sk-keys-narrow-must-not-leak",
    "globbed": "sk-keys-globbed-must-not-leak",
    "rpm": "sk-keys-rpm-must-not-leak",
    "tpm": "sk-keys-tpm-must-not-leak",
    "tpm-max": "sk-keys-tpm-max-must-not-leak",
    "tpm-stream": "sk-keys-tpm-stream-must-not-leak",
    "metered": "sk-keys-metered-must-not-leak",
    "metered-burst": "sk-keys-metered-burst-must-not-leak",
    "concurrent": "sk-keys-concurrent-must-not-leak",
    "abandon": "sk-keys-abandon-must-not-leak",
    "tpm-leave": "sk-keys-tpm-leave-must-not-leak",
}
HASHED_SHA256 = hashlib.sha256(SECRETS["hashed"].encode()).hexdigest()
UP_KEY = "sk-up"
OPERATOR_KEY = "sk-operator"
CLIENT_PROVIDER_KEY = "sk-client-own"

SLOW_DELAY = 0.8  # seconds, the `slow` provider's `delay`
CALL_TIMEOUT = 5.0  # any one SDK or HTTP call here

CONFIG = """\
[auth]
admin_key = "{admin}"
keys = [
  {{ name = "plain", key = "{plain}" }},
  {{ name = "hashed", key_sha256 = "{hashed_sha256}" }},
  {{ name = "narrow", key = "{narrow}", models = ["fast"] }},
  {{ name = "globbed", key = "{globbed}", models = ["mock/*", "fa*"] }},
  {{ name = "rpm", key = "{rpm}", rpm = 60 }},
  {{ name = "tpm", key = "{tpm}", tpm = 1000 }},
  {{ name = "tpm-max", key = "{tpm_max}", tpm = 1000 }},
  {{ name = "tpm-stream", key = "{tpm_stream}", tpm = 1000 }},
  {{ name = "metered", key = "{metered}", rpm = 1000, tpm = 100000 }},
  {{ name = "metered-burst", key = "{metered_burst}", rpm = 2, tpm = 100000 }},
  {{ name = "concurrent", key = "{concurrent}", max_concurrent = 2 }},
  {{ name = "abandon", key = "{abandon}", max_concurrent = 2 }},
  {{ name = "tpm-leave", key = "{tpm_leave}", tpm = 300 }},
]

[providers.mock]
kind = "mock"

[providers.slow]
kind = "mock"
delay = "{slow_delay_ms}ms"

[providers.up]
kind = "openai-compatible"
base_url = "{upstream}"
api_key = "{up_key}"

[providers.byok]
kind = "openai-compatible"
base_url = "{upstream}"
api_key = "{operator_key}"
allow_client_key = true

[routing]
timeout = "5s"

[[routes]]
name = "fast"
targets = ["mock/mock-fast"]

[[routes]]
name = "slow"
targets = ["slow/mock-fast"]

[[routes]]
name = "up"
targets = ["up/gpt-4o-mini"]

[[routes]]
name = "byok"
targets = ["byok/gpt-4o-mini"]
"""

# The gateway's own crates log at debug, so the leak checks read everything they say.
GATEWAY_LOG = "info,modelway=debug,modelway_core=debug,modelway_openai=debug,modelway_mock=debug"

RATE_HEADERS = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
]
# OpenAI's (Go's) durations: `20ms`, `1.5s`, `6m0s`, `1h2m5s`.
RESET = re.compile(r"^(?:(\d+)ms|(\d+(?:\.\d{1,3})?)s|(?:(\d+)h)?(\d+)m(\d+)s)$")


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def reset_seconds(value: str) -> float:
    """A reset header as seconds; fails on anything not in OpenAI's format."""
    m = RESET.match(value)
    assert m, f"reset {value!r} is not in OpenAI's duration format"
    ms, secs, hours, minutes, rest = m.groups()
    if ms is not None:
        return int(ms) / 1000
    if secs is not None:
        return float(secs)
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(rest)


def rate_headers(headers: httpx.Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower().startswith("x-ratelimit")}


def completion_body(content: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """A scripted upstream answer with this usage."""
    return {
        "id": "chatcmpl-keys",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error_code(e: openai.APIStatusError) -> str | None:
    """The `error.code` of the response as sent (not as the SDK parsed it)."""
    return e.response.json()["error"]["code"]


def start(binary: Path, name: str, config_text: str, workdir: Path, listen: str = "127.0.0.1:0") -> ServerProcess:
    config_path = workdir / f"{name}.toml"
    config_path.write_text(config_text)
    saved = os.environ.get("RUST_LOG")
    os.environ["RUST_LOG"] = GATEWAY_LOG
    try:
        return ServerProcess(name, [str(binary), "--config", str(config_path), "--listen", listen], workdir)
    finally:
        if saved is None:
            del os.environ["RUST_LOG"]
        else:
            os.environ["RUST_LOG"] = saved


@pytest.fixture(scope="module")
def gw(upstream: MockUpstream, gateway_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("keys-gateway")
    text = CONFIG.format(
        admin=ADMIN_KEY,
        plain=SECRETS["plain"],
        hashed_sha256=HASHED_SHA256,
        narrow=SECRETS["narrow"],
        globbed=SECRETS["globbed"],
        rpm=SECRETS["rpm"],
        tpm=SECRETS["tpm"],
        tpm_max=SECRETS["tpm-max"],
        tpm_stream=SECRETS["tpm-stream"],
        metered=SECRETS["metered"],
        metered_burst=SECRETS["metered-burst"],
        concurrent=SECRETS["concurrent"],
        abandon=SECRETS["abandon"],
        tpm_leave=SECRETS["tpm-leave"],
        slow_delay_ms=int(SLOW_DELAY * 1000),
        upstream=upstream.v1,
        up_key=UP_KEY,
        operator_key=OPERATOR_KEY,
    )
    process = start(gateway_bin, "modelway-keys", text, workdir)
    try:
        match = process.wait_for_line(r"modelway listening on (http://[^\s/]+)")
        g = Gateway(process, match.group(1), workdir / "modelway-keys.toml")
        _wait_ready(f"{g.base_url}/readyz", process)
        yield g
        g.close()
    finally:
        process.stop()


def sdk(gw: Gateway, key: str, **overrides: Any) -> openai.OpenAI:
    return gw.client(**{"api_key": key, "timeout": CALL_TIMEOUT, "max_retries": 0, **overrides})


def chat_body(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": user(text), **extra}


def gateway_log(gw: Gateway) -> str:
    gw.process._log.flush()
    return gw.process.log_path.read_text("utf-8", "replace")


# --- who may call -----------------------------------------------------------------------


def test_missing_and_wrong_keys_are_401(gw: Gateway, upstream: MockUpstream):
    # No Authorization header at all (the SDK drops an explicitly omitted one).
    with sdk(gw, "unused") as c:
        with pytest.raises(openai.AuthenticationError) as missing:
            c.chat.completions.create(
                model="fast", messages=user("no key"), extra_headers={"Authorization": openai.Omit()}
            )
    assert "authorization" not in missing.value.response.request.headers
    assert missing.value.status_code == 401
    assert error_code(missing.value) == "invalid_api_key"
    assert "Missing gateway key" in missing.value.response.json()["error"]["message"]

    with sdk(gw, "sk-not-a-gateway-key") as c:
        with pytest.raises(openai.AuthenticationError) as wrong:
            c.chat.completions.create(model="fast", messages=user("wrong key"))
    assert wrong.value.status_code == 401
    assert error_code(wrong.value) == "invalid_api_key"
    assert "Incorrect gateway key" in wrong.value.response.json()["error"]["message"]

    # The digest of a key is not the key.
    with sdk(gw, HASHED_SHA256) as c:
        with pytest.raises(openai.AuthenticationError):
            c.chat.completions.create(model="fast", messages=user("digest as key"))
    # Nor is the admin key a gateway key.
    with sdk(gw, ADMIN_KEY) as c:
        with pytest.raises(openai.AuthenticationError):
            c.chat.completions.create(model="fast", messages=user("admin as key"))
    assert upstream.chat_requests() == []


def test_key_sha256_key_works_as_bearer_and_x_api_key(gw: Gateway):
    with sdk(gw, SECRETS["hashed"]) as c:
        answer = c.chat.completions.create(model="fast", messages=user("hello by digest"))
    assert answer.choices[0].message.content == "hello by digest"

    # Anthropic's SDKs send `x-api-key` (and no Authorization).
    r = gw.http.post(
        "/v1/chat/completions",
        json=chat_body("fast", "hello by x-api-key"),
        headers={"x-api-key": SECRETS["hashed"]},
        timeout=CALL_TIMEOUT,
    )
    assert "authorization" not in r.request.headers
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "hello by x-api-key"

    r = gw.http.post(
        "/v1/chat/completions",
        json=chat_body("fast", "wrong x-api-key"),
        headers={"x-api-key": "sk-not-a-gateway-key"},
        timeout=CALL_TIMEOUT,
    )
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "invalid_api_key"


def test_x_goog_api_key_works(gw: Gateway):
    # Google's SDKs send `x-goog-api-key`.
    r = gw.http.post(
        "/v1/chat/completions",
        json=chat_body("fast", "hello by x-goog-api-key"),
        headers={"x-goog-api-key": SECRETS["plain"]},
        timeout=CALL_TIMEOUT,
    )
    assert "authorization" not in r.request.headers
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "hello by x-goog-api-key"

    r = gw.http.post(
        "/v1/chat/completions",
        json=chat_body("fast", "wrong x-goog-api-key"),
        headers={"x-goog-api-key": "sk-not-a-gateway-key"},
        timeout=CALL_TIMEOUT,
    )
    assert r.status_code == 401, r.text


def test_model_outside_the_keys_models_is_403(gw: Gateway, upstream: MockUpstream):
    with sdk(gw, SECRETS["narrow"]) as c:
        assert c.chat.completions.create(model="fast", messages=user("allowed")).choices[0].message.content == "allowed"
        with pytest.raises(openai.PermissionDeniedError) as denied:
            c.chat.completions.create(model="slow", messages=user("not allowed"))
        assert denied.value.status_code == 403
        assert error_code(denied.value) == "model_not_allowed"
        assert "`slow`" in denied.value.response.json()["error"]["message"]
        # The upstream route is refused before anything reaches the upstream.
        with pytest.raises(openai.PermissionDeniedError):
            c.chat.completions.create(model="up", messages=user("not allowed either"))
        # OpenRouter's `models` list is checked too, not only `model`.
        with pytest.raises(openai.PermissionDeniedError) as listed:
            c.chat.completions.create(model="fast", messages=user("sneak"), extra_body={"models": ["fast", "slow"]})
        assert error_code(listed.value) == "model_not_allowed"
    assert upstream.chat_requests() == []


def test_model_globs_allow_matching_models(gw: Gateway):
    with sdk(gw, SECRETS["globbed"]) as c:
        raw = c.chat.completions.with_raw_response.create(model="mock/anything", messages=user("by mock/*"))
        assert raw.parse().choices[0].message.content == "by mock/*"
        assert raw.headers.get("x-modelway-provider") == "mock"
        assert c.chat.completions.create(model="fast", messages=user("by fa*")).choices[0].message.content == "by fa*"
        for model in ["slow", "xfast", "mock", "up"]:
            with pytest.raises(openai.PermissionDeniedError) as denied:
                c.chat.completions.create(model=model, messages=user("no glob matches"))
            assert error_code(denied.value) == "model_not_allowed", model


# --- rpm ----------------------------------------------------------------------------------


def test_rpm_lets_a_minute_through_then_one_per_second(gw: Gateway):
    with sdk(gw, SECRETS["rpm"]) as c:
        c.models.list()  # warm the connection; /v1/models takes nothing from the rpm
        started = time.monotonic()
        remaining: list[str] = []
        for i in range(60):
            raw = c.chat.completions.with_raw_response.create(model="fast", messages=user(f"call {i}"))
            assert raw.parse().choices[0].message.content == f"call {i}"
            assert raw.headers.get("x-ratelimit-limit-requests") == "60"
            remaining.append(raw.headers.get("x-ratelimit-remaining-requests"))
        with pytest.raises(openai.RateLimitError) as refused:
            c.chat.completions.create(model="fast", messages=user("call 61"))
        burst = time.monotonic() - started
        # The exact counts below need the whole burst inside the second one unit refills in.
        assert burst < 1.0, f"60 calls took {burst:.2f}s: too slow to test rpm = 60 exactly"
        assert remaining[0] == "59" and remaining[29] == "30" and remaining[59] == "0", remaining
        assert remaining == [str(59 - i) for i in range(60)]

        e = refused.value
        assert e.status_code == 429
        assert error_code(e) == "rate_limit_exceeded"
        assert e.response.json()["error"]["type"] == "rate_limit_error"
        h = e.response.headers
        assert h.get("retry-after") == "1"
        wait_ms = int(h["retry-after-ms"])
        # One unit comes back a second after the first call was taken.
        assert 1000 - burst * 1000 - 1 <= wait_ms <= 1000, (wait_ms, burst)
        assert h.get("x-ratelimit-limit-requests") == "60"
        assert h.get("x-ratelimit-remaining-requests") == "0"
        assert "x-ratelimit-limit-tokens" not in h  # no tpm on this key

        # retry-after-ms is truncated to the millisecond: a hair more than it says.
        time.sleep(min(wait_ms, 1000) / 1000 + 0.005)
        raw = c.chat.completions.with_raw_response.create(model="fast", messages=user("after the wait"))
        assert raw.parse().choices[0].message.content == "after the wait"
        assert raw.headers.get("x-ratelimit-remaining-requests") == "0"
        # And that was the one unit the second gave back.
        with pytest.raises(openai.RateLimitError) as again:
            c.chat.completions.create(model="fast", messages=user("too soon"))
        assert again.value.response.headers.get("retry-after") == "1"


# --- tpm ----------------------------------------------------------------------------------


def test_tpm_is_charged_with_the_answers_real_usage(gw: Gateway, upstream: MockUpstream):
    upstream.script({"status": 200, "body": completion_body("a long answer", 900, 300)})
    with sdk(gw, SECRETS["tpm"]) as c:
        # The charge happens between these two instants.
        charged_at = time.monotonic()
        # The estimate (a few dozen tokens) fits a full bucket; the usage is 1200.
        raw = c.chat.completions.with_raw_response.create(model="up", messages=user("spend a lot"))
        answer = raw.parse()
    assert answer.choices[0].message.content == "a long answer"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (900, 300)
    assert raw.headers.get("x-ratelimit-limit-tokens") == "1000"
    assert raw.headers.get("x-ratelimit-remaining-tokens") == "1000"
    assert "x-ratelimit-limit-requests" not in raw.headers  # no rpm on this key
    assert len(upstream.chat_requests()) == 1

    # 1200 of 1000 per minute: the bucket is 200 tokens in debt, so even a small
    # request waits (200 + its estimate) tokens' worth of refill, 60 ms each.
    body = json.dumps(chat_body("up", "small")).encode()
    estimate = math.ceil(len(body) / 4)
    r = gw.http.post(
        "/v1/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {SECRETS['tpm']}", "content-type": "application/json"},
        timeout=CALL_TIMEOUT,
    )
    elapsed_ms = (time.monotonic() - charged_at) * 1000  # at least the refill since the charge
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "tokens_rate_limit_exceeded"
    assert r.json()["error"]["type"] == "rate_limit_error"
    expected_ms = (1200 + estimate - 1000) * 60
    wait_ms = int(r.headers["retry-after-ms"])
    assert expected_ms - elapsed_ms - 1 <= wait_ms <= expected_ms, (wait_ms, expected_ms, elapsed_ms)
    retry_after = int(r.headers["retry-after"])
    assert 10 <= retry_after <= 30, retry_after
    assert retry_after == math.ceil(wait_ms / 1000) or retry_after == math.ceil((wait_ms + 1) / 1000)
    assert r.headers.get("x-ratelimit-limit-tokens") == "1000"
    assert r.headers.get("x-ratelimit-remaining-tokens") == "0"
    # Until the 1200 tokens have drained: 72 s from the charge.
    assert 70 <= reset_seconds(r.headers["x-ratelimit-reset-tokens"]) <= 72, r.headers["x-ratelimit-reset-tokens"]
    assert len(upstream.chat_requests()) == 1, "a refused request must not reach the upstream"

    # The SDK sees the same refusal as a RateLimitError.
    with sdk(gw, SECRETS["tpm"]) as c:
        with pytest.raises(openai.RateLimitError) as refused:
            c.chat.completions.create(model="up", messages=user("small"))
    assert error_code(refused.value) == "tokens_rate_limit_exceeded"
    assert len(upstream.chat_requests()) == 1


def test_tpm_refuses_a_max_tokens_that_does_not_fit_before_the_upstream(gw: Gateway, upstream: MockUpstream):
    upstream.script({"status": 200, "body": completion_body("half the budget", 400, 100)})
    with sdk(gw, SECRETS["tpm-max"]) as c:
        c.chat.completions.create(model="up", messages=user("spend half"))
        assert len(upstream.chat_requests()) == 1
        # About 500 tokens are left: 800 more for the answer alone do not fit.
        for limit in [{"max_tokens": 800}, {"max_completion_tokens": 800}]:
            with pytest.raises(openai.RateLimitError) as refused:
                c.chat.completions.create(model="up", messages=user("small"), **limit)
            e = refused.value
            assert error_code(e) == "tokens_rate_limit_exceeded", limit
            remaining = int(e.response.headers["x-ratelimit-remaining-tokens"])
            assert 500 <= remaining < 600, (limit, remaining)
            assert 1 <= int(e.response.headers["retry-after"]) <= 30, limit
        assert len(upstream.chat_requests()) == 1, "the refusals must not reach the upstream"
        # Without the big max_tokens the same request fits.
        raw = c.chat.completions.with_raw_response.create(model="up", messages=user("small"), max_tokens=100)
        raw.parse()
        remaining = int(raw.headers["x-ratelimit-remaining-tokens"])
        assert 500 <= remaining < 600, remaining
    assert len(upstream.chat_requests()) == 2
    assert upstream.chat_requests()[1]["body"]["max_tokens"] == 100


def stream_chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {
        "id": "chatcmpl-keys-stream",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def test_tpm_is_charged_with_a_streamed_answers_usage(gw: Gateway, upstream: MockUpstream):
    usage = {"prompt_tokens": 900, "completion_tokens": 300, "total_tokens": 1200}
    upstream.script(
        {
            "sse": [
                {"data": stream_chunk("streamed")},
                {"data": stream_chunk(" long", finish="stop")},
                {"data": {**stream_chunk(), "choices": [], "usage": usage}},
            ]
        }
    )
    with sdk(gw, SECRETS["tpm-stream"]) as c:
        # The client does not ask for usage; the gateway still reads it to charge it.
        raw = c.chat.completions.with_raw_response.create(model="up", messages=user("stream a lot"), stream=True)
        assert raw.headers.get("x-ratelimit-limit-tokens") == "1000"
        assert raw.headers.get("x-ratelimit-remaining-tokens") == "1000"
        chunks = list(raw.parse())
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "streamed long"
        assert all(ch.usage is None for ch in chunks), "a usage chunk the client did not ask for"
        assert upstream.only_chat_request()["body"]["stream_options"]["include_usage"] is True

        with pytest.raises(openai.RateLimitError) as refused:
            c.chat.completions.create(model="up", messages=user("small"))
    e = refused.value
    assert error_code(e) == "tokens_rate_limit_exceeded"
    assert 10 <= int(e.response.headers["retry-after"]) <= 30
    assert e.response.headers.get("x-ratelimit-remaining-tokens") == "0"
    assert len(upstream.chat_requests()) == 1


def test_a_client_that_leaves_mid_stream_is_charged_its_estimate(gw: Gateway, upstream: MockUpstream):
    # The usage would come last, after a pause; the client leaves after the first chunk.
    usage = {"prompt_tokens": 900, "completion_tokens": 300, "total_tokens": 1200}
    upstream.script(
        {
            "sse": [
                {"data": stream_chunk("first")},
                {"data": stream_chunk(" rest", finish="stop"), "delay_ms": 1000},
                {"data": {**stream_chunk(), "choices": [], "usage": usage}},
            ]
        }
    )
    body = chat_body("up", "leave early", stream=True, max_tokens=400)
    headers = {"authorization": f"Bearer {SECRETS['tpm-leave']}"}
    with httpx.Client(timeout=CALL_TIMEOUT) as h:
        with h.stream("POST", f"{gw.base_url}/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status_code == 200
            assert r.headers["x-ratelimit-remaining-tokens"] == "300"
            next(r.iter_lines())
        # Gone. The gateway notices when it next writes (after the 1 s pause).
        time.sleep(1.6)
        # The estimate (~430 tokens: body bytes / 4 + max_tokens 400) was charged: a small
        # call no longer fits for a while.
        r = h.post(f"{gw.base_url}/v1/chat/completions", json=chat_body("up", "small"), headers=headers)
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "tokens_rate_limit_exceeded"
    assert len(upstream.chat_requests()) == 1


# --- x-ratelimit-* headers ----------------------------------------------------------------


def test_limited_key_answers_carry_rate_headers_json_stream_and_429(gw: Gateway):
    with sdk(gw, SECRETS["metered"]) as c:
        # A fresh key: one request taken (a unit is 60 ms at 1000/min), no tokens yet.
        raw = c.chat.completions.with_raw_response.create(model="fast", messages=user("json"))
        assert raw.parse().choices[0].message.content == "json"
        h = rate_headers(raw.headers)
        assert h == {
            "x-ratelimit-limit-requests": "1000",
            "x-ratelimit-remaining-requests": "999",
            "x-ratelimit-reset-requests": "60ms",
            "x-ratelimit-limit-tokens": "100000",
            "x-ratelimit-remaining-tokens": "100000",
            "x-ratelimit-reset-tokens": "0ms",
        }, h

        # A stream: the headers are on the SSE response's head.
        raw = c.chat.completions.with_raw_response.create(
            model="fast", messages=user("streamed answer"), stream=True
        )
        assert raw.headers["content-type"].startswith("text/event-stream")
        h = rate_headers(raw.headers)
        assert sorted(h) == sorted(RATE_HEADERS), h
        assert h["x-ratelimit-limit-requests"] == "1000"
        assert h["x-ratelimit-limit-tokens"] == "100000"
        assert 990 <= int(h["x-ratelimit-remaining-requests"]) <= 998, h
        # The first answer's usage (two tokens, 1.2 ms of refill) is already back.
        assert 99_990 <= int(h["x-ratelimit-remaining-tokens"]) <= 100_000, h
        assert 0 < reset_seconds(h["x-ratelimit-reset-requests"]) <= 0.12, h
        assert 0 <= reset_seconds(h["x-ratelimit-reset-tokens"]) < 1, h
        text = "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)
        assert text == "streamed answer"

    with sdk(gw, SECRETS["metered-burst"]) as c:
        for i in range(2):
            c.chat.completions.create(model="fast", messages=user(f"burst {i}"))
        with pytest.raises(openai.RateLimitError) as refused:
            c.chat.completions.create(model="fast", messages=user("burst 3"))
    h = rate_headers(refused.value.response.headers)
    assert sorted(h) == sorted(RATE_HEADERS), h
    assert h["x-ratelimit-limit-requests"] == "2"
    assert h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-limit-tokens"] == "100000"
    # Two requests at 2/min: full again a minute after the first.
    assert 55 < reset_seconds(h["x-ratelimit-reset-requests"]) <= 60, h
    assert refused.value.response.headers.get("retry-after") is not None


def test_unlimited_key_answers_carry_no_rate_headers(gw: Gateway):
    with sdk(gw, SECRETS["plain"]) as c:
        raw = c.chat.completions.with_raw_response.create(model="fast", messages=user("json"))
        raw.parse()
        assert rate_headers(raw.headers) == {}
        raw = c.chat.completions.with_raw_response.create(model="fast", messages=user("stream"), stream=True)
        assert rate_headers(raw.headers) == {}
        assert "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices) == "stream"
        with pytest.raises(openai.NotFoundError) as missing:
            c.chat.completions.create(model="nope/x", messages=user("unknown model"))
        assert rate_headers(missing.value.response.headers) == {}


# --- max_concurrent -----------------------------------------------------------------------


def concurrent_calls(gw: Gateway, n: int, stream: bool = False) -> list[Any]:
    """`n` calls to `slow` started together; each result is the answer's text or the
    APIStatusError raised."""
    barrier = threading.Barrier(n, timeout=CALL_TIMEOUT)
    with sdk(gw, SECRETS["concurrent"]) as c:

        def one(i: int) -> Any:
            barrier.wait()
            try:
                if stream:
                    chunks = c.chat.completions.create(model="slow", messages=user(f"slow {i}"), stream=True)
                    return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
                return c.chat.completions.create(model="slow", messages=user(f"slow {i}")).choices[0].message.content
            except openai.APIStatusError as e:
                return e

        with ThreadPoolExecutor(max_workers=n) as pool:
            futures = [pool.submit(one, i) for i in range(n)]
            return [f.result(timeout=CALL_TIMEOUT * 2) for f in futures]


def test_max_concurrent_refuses_the_third_in_flight_and_gives_slots_back(gw: Gateway):
    started = time.monotonic()
    results = concurrent_calls(gw, 4)
    ok = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if not isinstance(r, str)]
    assert len(ok) == 2 and len(refused) == 2, results
    assert all(re.fullmatch(r"slow [0-3]", r) for r in ok), ok
    for e in refused:
        assert isinstance(e, openai.RateLimitError), e
        assert e.status_code == 429
        assert error_code(e) == "concurrency_limit_exceeded"
        assert e.response.headers.get("retry-after") == "1"
        assert int(e.response.headers["retry-after-ms"]) == 1000
    # The refusals came at once, not after the slow answers.
    assert time.monotonic() - started < SLOW_DELAY * 3

    # Both slots are free again once the answers are in.
    with sdk(gw, SECRETS["concurrent"]) as c:
        assert c.chat.completions.create(model="slow", messages=user("after")).choices[0].message.content == "after"
        # A stream holds its slot to its last byte, then gives it back.
        chunks = c.chat.completions.create(model="slow", messages=user("streamed slow"), stream=True)
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "streamed slow"
    assert concurrent_calls(gw, 2) == ["slow 0", "slow 1"]
    # Two streams at once fit too, and leave nothing held.
    assert concurrent_calls(gw, 2, stream=True) == ["slow 0", "slow 1"]
    assert concurrent_calls(gw, 2) == ["slow 0", "slow 1"]


def test_a_call_the_client_gives_up_on_gives_its_slot_back(gw: Gateway):
    started = time.monotonic()
    with sdk(gw, SECRETS["abandon"], timeout=0.2) as impatient:

        def give_up(i: int) -> None:
            with pytest.raises(openai.APITimeoutError):
                impatient.chat.completions.create(model="slow", messages=user(f"abandoned {i}"))

        with ThreadPoolExecutor(max_workers=2) as pool:
            for f in [pool.submit(give_up, i) for i in range(2)]:
                f.result(timeout=CALL_TIMEOUT)
    # The connections are closed; give the gateway a moment to see it.
    time.sleep(0.05)
    barrier = threading.Barrier(2, timeout=CALL_TIMEOUT)
    with sdk(gw, SECRETS["abandon"]) as c:

        def one(i: int) -> Any:
            barrier.wait()
            try:
                return c.chat.completions.create(model="slow", messages=user(f"after {i}")).choices[0].message.content
            except openai.APIStatusError as e:
                return e

        with ThreadPoolExecutor(max_workers=2) as pool:
            sent_at = time.monotonic()
            results = [f.result(timeout=CALL_TIMEOUT * 2) for f in [pool.submit(one, i) for i in range(2)]]
    # Had the abandoned calls kept their slots until their answers (800 ms after they
    # started), these two would have been refused.
    assert sent_at - started < SLOW_DELAY, "too slow to tell a release on abandon from one on completion"
    assert results == ["after 0", "after 1"], results


# --- a client's own provider key ----------------------------------------------------------


def test_client_provider_key_goes_upstream_only_where_allowed(gw: Gateway, upstream: MockUpstream):
    own = {"x-modelway-provider-key": CLIENT_PROVIDER_KEY}
    with sdk(gw, SECRETS["plain"]) as c:
        # Without the header, the operator's key.
        assert c.chat.completions.create(model="byok", messages=user("operator")).choices[0].message.content
        # With it, on a provider that allows it: the client's.
        answer = c.chat.completions.create(model="byok", messages=user("client"), extra_headers=own)
        assert answer.choices[0].message.content
        sent = upstream.chat_requests()
        assert len(sent) == 2, sent
        assert sent[0]["headers"].get("authorization") == f"Bearer {OPERATOR_KEY}"
        assert sent[1]["headers"].get("authorization") == f"Bearer {CLIENT_PROVIDER_KEY}"
        # The gateway's own header is not forwarded.
        assert "x-modelway-provider-key" not in sent[1]["headers"]
        # And no gateway key travels upstream.
        assert SECRETS["plain"] not in json.dumps(sent)

        # On a provider that does not allow it: 400, and nothing goes upstream.
        with pytest.raises(openai.BadRequestError) as refused:
            c.chat.completions.create(model="up", messages=user("client elsewhere"), extra_headers=own)
    assert refused.value.status_code == 400
    assert error_code(refused.value) == "client_key_not_allowed"
    assert CLIENT_PROVIDER_KEY not in refused.value.response.text
    assert len(upstream.chat_requests()) == 2
    assert CLIENT_PROVIDER_KEY not in gateway_log(gw)


# --- admin ----------------------------------------------------------------------------------


def test_admin_endpoints_need_the_admin_key_and_show_no_secret(gw: Gateway):
    for path in ["/admin/config", "/admin/health"]:
        r = gw.http.get(path)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"]["code"] == "invalid_api_key"
        for key in [SECRETS["plain"], HASHED_SHA256, "sk-wrong-admin"]:
            r = gw.http.get(path, headers={"authorization": f"Bearer {key}"})
            assert r.status_code == 401, (path, key, r.text)
        # Any of the key headers does, as for gateway keys.
        r = gw.http.get(path, headers={"x-api-key": ADMIN_KEY})
        assert r.status_code == 200, (path, r.text)

    config = gw.http.get("/admin/config", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert config.status_code == 200, config.text
    health = gw.http.get("/admin/health", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert health.status_code == 200, health.text

    cfg = config.json()
    assert cfg["auth"]["admin"] is True
    names = [k["name"] for k in cfg["auth"]["keys"]]
    assert names == list(SECRETS), names
    by_name = {k["name"]: k for k in cfg["auth"]["keys"]}
    assert by_name["rpm"]["rpm"] == 60 and by_name["tpm"]["tpm"] == 1000
    assert by_name["concurrent"]["max_concurrent"] == 2
    assert by_name["globbed"]["models"] == ["mock/*", "fa*"]
    assert cfg["limits"]["store"] == "memory"

    h = health.json()
    assert h["limit_store"]["healthy"] is True
    assert h["limit_store"]["kind"] == "memory"

    # Run last in this module: by now the log has every call the tests above made.
    log = gateway_log(gw)
    secrets = [*SECRETS.values(), HASHED_SHA256, ADMIN_KEY, UP_KEY, OPERATOR_KEY, CLIENT_PROVIDER_KEY]
    for where, text in [("/admin/config", config.text), ("/admin/health", health.text), ("stderr", log)]:
        for secret in secrets:
            assert secret not in text, f"{secret!r} appears in {where}"


# --- the open relay -----------------------------------------------------------------------


def test_no_keys_on_a_public_address_refuses_to_start(gateway_bin: Path, tmp_path: Path):
    config = '[providers.mock]\nkind = "mock"\n'
    process = start(gateway_bin, "modelway-open-relay", config, tmp_path, listen="0.0.0.0:0")
    try:
        try:
            code = process.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("a gateway with no keys on 0.0.0.0 was still running after 10 s")
    finally:
        process.stop()
    stderr = process.log_path.read_text("utf-8", "replace")
    assert code != 0, stderr
    assert "allow_unauthenticated" in stderr, stderr


def test_allow_unauthenticated_serves_on_a_public_address(gateway_bin: Path, tmp_path: Path):
    config = '[auth]\nallow_unauthenticated = true\n\n[providers.mock]\nkind = "mock"\n'
    process = start(gateway_bin, "modelway-unauthenticated", config, tmp_path, listen="0.0.0.0:0")
    try:
        port = process.wait_for_line(r"modelway listening on http://0\.0\.0\.0:(\d+)").group(1)
        base = f"http://127.0.0.1:{port}"
        _wait_ready(f"{base}/readyz", process)
        r = httpx.post(f"{base}/v1/chat/completions", json=chat_body("mock/x", "open"), timeout=HTTP_TIMEOUT)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "open"
    finally:
        process.stop()
    assert process.proc.returncode is not None


# --- the other front doors: the same keys, the same limits ------------------------------


def test_messages_front_door_checks_keys_in_anthropics_shape(gw: Gateway, upstream: MockUpstream):
    import anthropic

    def claude(key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0, timeout=CALL_TIMEOUT)

    body = {"max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    # Claude Code sends its key as `x-api-key`.
    with claude(SECRETS["narrow"]) as c:
        assert c.messages.create(model="fast", **body).content[0].text == "hi"
        with pytest.raises(anthropic.PermissionDeniedError) as denied:
            c.messages.create(model="slow", **body)
        assert denied.value.body["error"]["type"] == "permission_error"
    with claude("sk-wrong") as c:
        with pytest.raises(anthropic.AuthenticationError) as wrong:
            c.messages.create(model="fast", **body)
        assert wrong.value.body["type"] == "error"
    # A limited key's headers come in Anthropic's names (what its SDKs and Claude Code read).
    with claude(SECRETS["rpm"]) as c:
        raw = c.messages.with_raw_response.create(model="fast", **body)
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "60"
    assert int(raw.headers["anthropic-ratelimit-requests-remaining"]) < 60
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", raw.headers["anthropic-ratelimit-requests-reset"])
    assert upstream.chat_requests() == []


def test_responses_front_door_checks_keys(gw: Gateway, upstream: MockUpstream):
    with sdk(gw, SECRETS["narrow"]) as c:
        assert c.responses.create(model="fast", input="allowed").output_text == "allowed"
        with pytest.raises(openai.PermissionDeniedError) as denied:
            c.responses.create(model="slow", input="not allowed")
        assert error_code(denied.value) == "model_not_allowed"
    with sdk(gw, SECRETS["rpm"]) as c:
        raw = c.responses.with_raw_response.create(model="fast", input="limited")
    assert raw.headers["x-ratelimit-limit-requests"] == "60"
    assert upstream.chat_requests() == []
