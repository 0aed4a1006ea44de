"""`POST /v1/embeddings` through the official OpenAI Python SDK, against a `modelway` of
this module's own (its `[auth]` has keys and prices) in front of the real mock upstream.

Under test: `embeddings.create` with floats, with base64 (decoded here and compared with
the floats) and with the SDK's default (it asks for base64 and decodes it itself), with
`dimensions` and list inputs; an OpenAI-compatible upstream (the client's bytes go
through with only the model changed) and Gemini (translated to `:batchEmbedContents`,
base64 written by the gateway); fallback from a failing target; a model Anthropic serves
(it cannot embed: 400); a key whose `models` refuse; the request's metric and its usage
record. Every call has a client timeout and `max_retries=0`.
"""

from __future__ import annotations

import array
import base64
import struct
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import HTTP_TIMEOUT, Gateway, MockUpstream, ServerProcess, _wait_ready

ADMIN_KEY = "sk-admin-embeddings-must-not-leak"
KEY = "sk-embed-all-must-not-leak"
NARROW_KEY = "sk-embed-narrow-must-not-leak"
UP_KEY = "sk-embed-upstream-secret"
GEMINI_KEY = "AIza-embed-upstream-secret"
CALL_TIMEOUT = 5.0

CONFIG = """\
[auth]
admin_key = "{admin}"
keys = [
  {{ name = "all", key = "{key}" }},
  {{ name = "narrow", key = "{narrow}", models = ["embed-*"] }},
]

[[usage.prices]]
model = "up/text-embedding-3-small"
input = 0.02
output = 0.0

[providers.up]
kind = "openai-compatible"
base_url = "{upstream}"
api_key = "{up_key}"

# Same mock as `up`; the fallback test scripts its failure, which it meets first.
[providers.first]
kind = "openai-compatible"
base_url = "{upstream}"
api_key = "sk-embed-first"

[providers.gem]
kind = "gemini"
base_url = "{root}"
api_key = "{gemini_key}"
list_models = false

[providers.claude]
kind = "anthropic"
base_url = "{root}"
api_key = "sk-ant-embed"
list_models = false

[providers.mock]
kind = "mock"

[routing]
retries = 0
timeout = "5s"

[[routes]]
name = "embed-fallback"
targets = ["first/text-embedding-3-small", "up/text-embedding-3-small"]

[[routes]]
name = "embed-claude"
targets = ["claude/claude-haiku-4-5"]
"""


@pytest.fixture(scope="module")
def gw(upstream: MockUpstream, gateway_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("embeddings-gateway")
    config_path = workdir / "modelway-embeddings.toml"
    config_path.write_text(
        CONFIG.format(
            admin=ADMIN_KEY,
            key=KEY,
            narrow=NARROW_KEY,
            upstream=upstream.v1,
            root=upstream.base_url,
            up_key=UP_KEY,
            gemini_key=GEMINI_KEY,
        )
    )
    process = ServerProcess(
        "modelway-embeddings",
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
    with gw.client(api_key=KEY, timeout=CALL_TIMEOUT, max_retries=0) as c:
        yield c


def decode(b64: str) -> list[float]:
    """OpenAI's base64 vector: float32 values, little-endian."""
    raw = base64.b64decode(b64)
    assert len(raw) % 4 == 0, f"{len(raw)} bytes is not a float32 vector"
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def as_float32(values: list[float]) -> list[float]:
    """The float32 values a float answer's numbers stand for."""
    return array.array("f", values).tolist()


def upstream_bodies(upstream: MockUpstream, suffix: str) -> list[Any]:
    return [r["body"] for r in upstream.requests() if r["method"] == "POST" and r["path"].endswith(suffix)]


@pytest.mark.parametrize("model", ["up/text-embedding-3-small", "gem/gemini-embedding-001"])
def test_float_base64_and_the_sdk_default_give_the_same_vectors(
    sdk: openai.OpenAI, upstream: MockUpstream, model: str
):
    text = "The quick brown fox jumped over the lazy dog"
    floats = sdk.embeddings.create(model=model, input=text, encoding_format="float")
    b64 = sdk.embeddings.create(model=model, input=text, encoding_format="base64")
    default = sdk.embeddings.create(model=model, input=text)

    assert floats.object == "list" and len(floats.data) == 1
    assert floats.data[0].object == "embedding" and floats.data[0].index == 0
    vector = floats.data[0].embedding
    assert isinstance(vector, list) and len(vector) > 0
    raw = b64.data[0].embedding
    assert isinstance(raw, str), f"an explicit base64 answer is left to the caller: {raw!r}"
    assert decode(raw) == as_float32(vector)
    # The SDK asked for base64 on its own and decoded it.
    assert default.data[0].embedding == as_float32(vector)
    assert floats.usage.prompt_tokens > 0
    assert floats.usage.total_tokens == floats.usage.prompt_tokens
    # What went upstream.
    if model.startswith("up/"):
        sent = upstream_bodies(upstream, "/v1/embeddings")
        assert [b["encoding_format"] for b in sent] == ["float", "base64", "base64"]
        assert all(b["model"] == "text-embedding-3-small" for b in sent), sent
        assert floats.model == "text-embedding-3-small"
    else:
        sent = upstream_bodies(upstream, ":batchEmbedContents")
        assert len(sent) == 3
        assert sent[0] == {
            "requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": text}]}}
            ]
        }
        assert floats.model == "gemini-embedding-001"


@pytest.mark.parametrize("model", ["up/text-embedding-3-small", "gem/gemini-embedding-001", "mock/mock-embed"])
def test_dimensions_and_list_inputs(sdk: openai.OpenAI, upstream: MockUpstream, model: str):
    inputs = ["first input", "second", "third one here"]
    r = sdk.embeddings.create(model=model, input=inputs, dimensions=5)
    assert [d.index for d in r.data] == [0, 1, 2]
    assert all(len(d.embedding) == 5 for d in r.data)
    assert r.data[0].embedding != r.data[1].embedding
    # The same input always gets the same vector.
    again = sdk.embeddings.create(model=model, input=inputs[1], dimensions=5)
    assert again.data[0].embedding == r.data[1].embedding
    if model.startswith("gem/"):
        sent = upstream_bodies(upstream, ":batchEmbedContents")
        assert all(q["outputDimensionality"] == 5 for q in sent[0]["requests"]), sent[0]
    if model.startswith("up/"):
        assert r.usage.prompt_tokens == 2 + 1 + 3


def test_token_inputs_pass_through_and_gemini_refuses_them(sdk: openai.OpenAI):
    r = sdk.embeddings.create(model="up/text-embedding-3-small", input=[[1, 2, 3], [4]])
    assert len(r.data) == 2 and r.usage.prompt_tokens == 4
    with pytest.raises(openai.BadRequestError) as e:
        sdk.embeddings.create(model="gem/gemini-embedding-001", input=[1, 2, 3])
    assert e.value.response.json()["error"]["param"] == "input"


def test_a_failing_target_falls_back(sdk: openai.OpenAI, upstream: MockUpstream):
    upstream.script({"status": 503, "body": {"error": {"message": "overloaded", "type": "server_error"}}})
    raw = sdk.embeddings.with_raw_response.create(model="embed-fallback", input="fall back", encoding_format="float")
    assert raw.headers["x-modelway-provider"] == "up"
    assert raw.headers["x-modelway-attempts"] == "2"
    r = raw.parse()
    assert len(r.data) == 1 and r.data[0].embedding
    sent = upstream.requests()
    assert [q["headers"]["authorization"] for q in sent] == ["Bearer sk-embed-first", f"Bearer {UP_KEY}"]


def test_a_model_that_cannot_embed_is_a_400_naming_it(sdk: openai.OpenAI, upstream: MockUpstream):
    for model in ["embed-claude", "claude-haiku-4-5"]:
        with pytest.raises(openai.BadRequestError) as e:
            sdk.embeddings.create(model=model, input="x")
        err = e.value.response.json()["error"]
        assert err["code"] == "model_not_supported", err
        assert f"`{model}`" in err["message"], err
    assert upstream.requests() == [], "nothing was sent to Anthropic"


def test_keys_and_their_models_apply(gw: Gateway, upstream: MockUpstream):
    with gw.client(api_key=NARROW_KEY, timeout=CALL_TIMEOUT, max_retries=0) as c:
        with pytest.raises(openai.PermissionDeniedError) as e:
            c.embeddings.create(model="up/text-embedding-3-small", input="x")
        assert e.value.response.json()["error"]["code"] == "model_not_allowed"
        assert upstream.requests() == []
        assert c.embeddings.create(model="embed-fallback", input="allowed").data
    with gw.client(api_key="sk-not-a-key", timeout=CALL_TIMEOUT, max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            c.embeddings.create(model="up/text-embedding-3-small", input="x")


def metric(gw: Gateway, family: str, sample: str, **labels: str) -> float:
    text = gw.http.get("/metrics").text
    total = 0.0
    for f in text_string_to_metric_families(text):
        if f.name != family:
            continue
        for s in f.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_a_call_is_counted_and_recorded_with_its_cost(gw: Gateway, sdk: openai.OpenAI):
    labels = dict(operation="embeddings", provider="up", model="text-embedding-3-small", status="200")
    before = metric(gw, "modelway_requests", "modelway_requests_total", **labels)
    r = sdk.embeddings.with_raw_response.create(model="up/text-embedding-3-small", input="count these four words")
    assert r.headers["x-modelway-cost"] == "0.00000008"  # 4 tokens at $0.02 per 1M
    assert metric(gw, "modelway_requests", "modelway_requests_total", **labels) == before + 1
    tokens = metric(
        gw, "modelway_tokens", "modelway_tokens_total", operation="embeddings", model="text-embedding-3-small", kind="input"
    )
    assert tokens >= 4

    # The ledger's totals (in memory here), read through the admin API; the writer
    # takes records off the request path, so wait for it (bounded).
    deadline = time.monotonic() + HTTP_TIMEOUT
    while True:
        usage = gw.http.get("/admin/usage", headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()
        group = [t for t in usage["totals"] if t["key"] == "all" and t["model"] == "text-embedding-3-small"]
        if group and group[0]["cost_usd"] > 0:
            break
        assert time.monotonic() < deadline, f"no priced record in {usage}"
        time.sleep(0.05)
    g = group[0]
    assert g["provider"] == "up" and g["input_tokens"] >= 4 and g["output_tokens"] == 0
    assert g["unpriced_requests"] == 0
    # No secret reaches the exposition or the usage.
    text = gw.http.get("/metrics").text + str(usage)
    for secret in (KEY, NARROW_KEY, UP_KEY, GEMINI_KEY, ADMIN_KEY):
        assert secret not in text

