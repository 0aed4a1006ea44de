"""The client libraries people use for structured output, in their JSON modes, through
the real `modelway` binary to an Anthropic and a Gemini route (issue 16): LangChain
`with_structured_output(method="json_mode")`, instructor `Mode.JSON` and pydantic-ai
`PromptedOutput`. None of them asks for JSON mode in the user's code — each sends
`response_format: json_object` on its own — and each parses the answer into a
pydantic model, so a success means the JSON came back as content, plain and streamed.

Each library runs in a pinned venv of its own (client_venvs.py, installed on first use)
as a subprocess of this test, against the session's gateway and mock; the assertions
are on what it printed and on what the mock's upstream received.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from client_venvs import SETUP_BUDGET, client_python
from conftest import CLIENT_KEY, Gateway, MockUpstream

CLIENTS = Path(__file__).resolve().parent / "clients"
RUN_TIMEOUT = 120.0  # seconds for one client script (several calls)

CITY = {"city": "Paris", "population": 30}

ROUTES = [
    pytest.param(("anthropic/claude-sonnet-4-20250514", "/v1/messages"), id="anthropic"),
    pytest.param(("google/gemini-2.5-flash", "/models/"), id="gemini"),
]


def run_client(venv: str, script: str, gateway: Gateway, model: str) -> dict[str, Any]:
    python = client_python(venv)
    argv = [str(python), str(CLIENTS / script), gateway.v1, CLIENT_KEY, model]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL, cwd=CLIENTS
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{script} did not finish within {RUN_TIMEOUT}s\n{e.stdout}\n{e.stderr}", pytrace=False)
    assert done.returncode == 0, f"{script} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def upstream_bodies(upstream: MockUpstream, path_part: str) -> list[dict[str, Any]]:
    out = []
    for r in upstream.requests():
        if r.get("method") == "POST" and path_part in r.get("path", ""):
            body = r.get("body")
            out.append(json.loads(body) if isinstance(body, str) else body)
    return out


def assert_json_mode_upstream(upstream: MockUpstream, model: str, path_part: str, calls: int) -> None:
    """Every upstream request went out in JSON mode: the client sent `json_object`."""
    bodies = upstream_bodies(upstream, path_part)
    assert len(bodies) == calls, f"{len(bodies)} upstream requests, want {calls}: {bodies}"
    for body in bodies:
        if model.startswith("anthropic/"):
            assert body["tool_choice"] == {"type": "tool", "name": "json_response"}, body
        else:
            assert body["generationConfig"]["responseMimeType"] == "application/json", body


@pytest.mark.timeout(SETUP_BUDGET + RUN_TIMEOUT)
@pytest.mark.parametrize("route", ROUTES)
def test_langchain_json_mode(gateway: Gateway, upstream: MockUpstream, route: tuple[str, str]):
    model, path_part = route
    got = run_client("frameworks", "langchain_json_mode.py", gateway, model)

    assert got == {"invoke": CITY, "stream": CITY}
    assert_json_mode_upstream(upstream, model, path_part, calls=2)


@pytest.mark.timeout(SETUP_BUDGET + RUN_TIMEOUT)
@pytest.mark.parametrize("route", ROUTES)
def test_instructor_json_mode(gateway: Gateway, upstream: MockUpstream, route: tuple[str, str]):
    model, path_part = route
    got = run_client("instructor", "instructor_json.py", gateway, model)

    assert got == {"create": CITY, "partial": CITY}
    assert_json_mode_upstream(upstream, model, path_part, calls=2)


@pytest.mark.timeout(SETUP_BUDGET + RUN_TIMEOUT)
@pytest.mark.parametrize("route", ROUTES)
def test_pydantic_ai_prompted_output(gateway: Gateway, upstream: MockUpstream, route: tuple[str, str]):
    model, path_part = route
    got = run_client("frameworks", "pydantic_ai_prompted.py", gateway, model)

    assert got == {"run": CITY, "stream": CITY}
    assert_json_mode_upstream(upstream, model, path_part, calls=2)
