"""Runs the real `modelway` binary in front of the real mock upstream, once per session.

Binaries come from MODELWAY_BIN / MOCK_UPSTREAM_BIN (set by `cargo xtask e2e`), else
from target/debug. Every server binds 127.0.0.1 port 0 and reports its address on
stdout; every wait here has a bound; every process is killed at teardown. When a test
fails, the tail of each server's stderr is attached to its report.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

REPO = Path(__file__).resolve().parents[2]

STARTUP_TIMEOUT = 20.0  # seconds for a server to print its address / become ready
HTTP_TIMEOUT = 10.0  # seconds for any single HTTP call made by the tests
SDK_TIMEOUT = 10.0

CLIENT_KEY = "sk-client-key-must-not-leak"
UPSTREAM_KEY = "sk-upstream-secret"
FLAKY_KEY = "sk-flaky-secret"
OPENROUTER_KEY = "sk-or-secret"
OPENROUTER_TITLE = "Configured Title"
ANTHROPIC_KEY = "sk-ant-upstream-secret"
GEMINI_KEY = "AIza-gemini-upstream-secret"

# `up` and `openrouter` serve the happy paths. `flaky` points at the same mock but the
# failure tests (500s, hangs, dropped streams) go through it only, so whatever health
# or cool-down state a failure leaves behind can never change another test's outcome.
CONFIG_TEMPLATE = """\
[providers.up]
kind = "openai-compatible"
base_url = "{upstream}"
api_key = "{upstream_key}"

[providers.flaky]
kind = "openai-compatible"
base_url = "{upstream}"
api_key = "{flaky_key}"
timeout = "1s"

[providers.openrouter]
kind = "openrouter"
base_url = "{upstream}"
api_key = "{openrouter_key}"
headers = {{ "X-Title" = "{openrouter_title}" }}

[providers.mock]
kind = "mock"

# Anthropic Messages API on the same mock (its `/v1/messages`); base_url is the root,
# as in Anthropic's SDKs. Reached by `anthropic/…` slugs and bare `claude-…` names.
[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic_upstream}"
api_key = "{anthropic_key}"

# Gemini generateContent on the same mock (its `/v1beta/models/{{model}}:…`); base_url is
# the root, as in Google's SDKs. Reached by `google/…` slugs and bare `gemini-…` names.
[providers.gemini]
kind = "gemini"
base_url = "{gemini_upstream}"
api_key = "{gemini_key}"
list_models = false

# test_failover.py: each test group's first targets are providers of its own (all on
# the same mock), so the health state their failures leave (ejection after consecutive
# failures) cannot change another test's outcome. `fo-backup` only ever answers.
[providers.fo-backup]
kind = "openai-compatible"
base_url = "{upstream}"
api_key = "{upstream_key}"

[providers.fo-openai]
kind = "openai-compatible"
base_url = "{upstream}"
api_key = "{flaky_key}"

[providers.fo-openrouter]
kind = "openrouter"
base_url = "{upstream}"
api_key = "{openrouter_key}"

[providers.fo-anthropic]
kind = "anthropic"
base_url = "{anthropic_upstream}"
api_key = "{anthropic_key}"
list_models = false

[providers.fo-gemini]
kind = "gemini"
base_url = "{gemini_upstream}"
api_key = "{gemini_key}"
list_models = false

[providers.fo-committed]
kind = "openai-compatible"
base_url = "{upstream}"
api_key = "{flaky_key}"

[providers.fo-stall]
kind = "openai-compatible"
base_url = "{upstream}"
api_key = "{flaky_key}"

[providers.fo-keepalive]
kind = "openai-compatible"
base_url = "{upstream}"
api_key = "{flaky_key}"

[providers.fo-hedge-json]
kind = "openai-compatible"
base_url = "{upstream}"
api_key = "{flaky_key}"

[providers.fo-hedge-stream]
kind = "openai-compatible"
base_url = "{upstream}"
api_key = "{flaky_key}"

[routing]
timeout = "5s"

[[routes]]
name = "fast"
targets = ["up/gpt-4o-mini"]

[[routes]]
name = "retrying"
targets = ["flaky/gpt-4o-mini"]
retries = 1

[[routes]]
name = "fallback"
targets = ["flaky/first-choice", "up/second-choice"]

# test_failover.py
[[routes]]
name = "failover-openai"
targets = ["fo-openai/first-choice", "fo-backup/second-choice"]

[[routes]]
name = "failover-openrouter"
targets = ["fo-openrouter/vendor/first-choice", "fo-backup/second-choice"]

[[routes]]
name = "failover-anthropic"
targets = ["fo-anthropic/claude-first-choice", "fo-backup/second-choice"]

[[routes]]
name = "failover-gemini"
targets = ["fo-gemini/gemini-first-choice", "fo-backup/second-choice"]

[[routes]]
name = "failover-committed"
targets = ["fo-committed/first-choice", "fo-backup/second-choice"]

[[routes]]
name = "failover-stall"
targets = ["fo-stall/first-choice", "fo-backup/second-choice"]
first_token_timeout = "300ms"

[[routes]]
name = "failover-keepalive"
targets = ["fo-keepalive/first-choice", "fo-backup/second-choice"]
stream_keepalive = "200ms"

[[routes]]
name = "hedge-json"
targets = ["fo-hedge-json/first-choice", "fo-backup/second-choice"]
hedge_after = "200ms"
hedge_budget = 1.0

[[routes]]
name = "hedge-stream"
targets = ["fo-hedge-stream/first-choice", "fo-backup/second-choice"]
hedge_after = "200ms"
hedge_budget = 1.0
"""

_PROCESSES: list["ServerProcess"] = []


def _binary(env_name: str, default_name: str) -> Path:
    configured = os.environ.get(env_name)
    path = Path(configured) if configured else REPO / "target" / "debug" / default_name
    if not path.is_file():
        pytest.fail(
            f"{path} does not exist: run `cargo xtask e2e` (or build it and set {env_name})",
            pytrace=False,
        )
    return path


class ServerProcess:
    """A child process. Its stdout is read on a thread so that waiting for a line can
    time out; its stderr goes to a log file that failure reports quote."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.stderr.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, "RUST_BACKTRACE": "1"},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, name=f"{name}-stdout", daemon=True).start()
        _PROCESSES.append(self)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self._lines.put(None)

    def wait_for_line(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> re.Match[str]:
        """The first stdout line matching `pattern`, or an error that shows what the
        process printed instead."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"{self.name}: no stdout line matching {pattern!r} within {timeout}s "
                    f"(argv {self.argv}); stdout so far: {seen!r}\n{self.stderr_tail()}"
                )
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                try:
                    code = self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    code = None
                raise RuntimeError(
                    f"{self.name} closed stdout (exit code {code}) before printing a line "
                    f"matching {pattern!r} (argv {self.argv}); stdout: {seen!r}\n"
                    f"{self.stderr_tail()}"
                )
            seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def stderr_tail(self, lines: int = 60) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError as e:
            return f"({self.name} stderr unreadable: {e})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- {self.name} stderr (last {lines} lines) ---\n{tail}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        if self in _PROCESSES:
            _PROCESSES.remove(self)


def _body_json(body: Any) -> Any:
    """A recorded request body as JSON, whether the mock logged it parsed or as text."""
    if isinstance(body, str):
        try:
            return json.loads(body)
        except ValueError:
            return body
    return body


class MockUpstream:
    """Handle on `modelway-mock-upstream`: its address and its control API."""

    def __init__(self, process: ServerProcess, base_url: str) -> None:
        self.process = process
        self.base_url = base_url
        self.v1 = f"{base_url}/v1"
        self.http = httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT)

    def _ok(self, response: httpx.Response) -> httpx.Response:
        assert response.status_code == 200, (
            f"mock upstream {response.request.method} {response.request.url.path} -> "
            f"{response.status_code}: {response.text}"
        )
        return response

    def reset(self) -> None:
        self._ok(self.http.post("/__mock/reset"))

    def script(self, *replies: dict[str, Any]) -> None:
        """Queues replies that the next chat requests consume, first in first out."""
        self._ok(self.http.post("/__mock/script", json={"replies": list(replies)}))

    def requests(self) -> list[dict[str, Any]]:
        return self._ok(self.http.get("/__mock/requests")).json()

    def chat_requests(self) -> list[dict[str, Any]]:
        """Chat requests received since the last reset, oldest first, bodies as JSON."""
        out = []
        for r in self.requests():
            if r.get("method") == "POST" and r.get("path", "").endswith("/chat/completions"):
                out.append({**r, "body": _body_json(r.get("body"))})
        return out

    def only_chat_request(self) -> dict[str, Any]:
        reqs = self.chat_requests()
        assert len(reqs) == 1, f"expected exactly one upstream chat request, got {len(reqs)}: {reqs}"
        return reqs[0]

    def stats(self) -> dict[str, Any]:
        return self._ok(self.http.get("/__mock/stats")).json()

    def close(self) -> None:
        self.http.close()


class Gateway:
    """Handle on a running `modelway`."""

    def __init__(self, process: ServerProcess, base_url: str, config_path: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.v1 = f"{base_url}/v1"
        self.config_path = config_path
        self.http = httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT)

    def client(self, **overrides: Any) -> openai.OpenAI:
        options: dict[str, Any] = {
            "base_url": self.v1,
            "api_key": CLIENT_KEY,
            "max_retries": 0,
            "timeout": SDK_TIMEOUT,
        }
        options.update(overrides)
        return openai.OpenAI(**options)

    def async_client(self, **overrides: Any) -> openai.AsyncOpenAI:
        options: dict[str, Any] = {
            "base_url": self.v1,
            "api_key": CLIENT_KEY,
            "max_retries": 0,
            "timeout": SDK_TIMEOUT,
        }
        options.update(overrides)
        return openai.AsyncOpenAI(**options)

    def close(self) -> None:
        self.http.close()


def _wait_ready(url: str, process: ServerProcess, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last = "no attempt"
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if process.proc.poll() is not None:
                raise RuntimeError(
                    f"{process.name} exited with {process.proc.returncode} before {url} was ready\n"
                    f"{process.stderr_tail()}"
                )
            try:
                response = http.get(url)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready within {timeout}s (last: {last})\n{process.stderr_tail()}")


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory):
    binary = _binary("MOCK_UPSTREAM_BIN", "modelway-mock-upstream")
    logs = tmp_path_factory.mktemp("mock-upstream")
    process = ServerProcess("mock-upstream", [str(binary), "--port", "0"], logs)
    try:
        match = process.wait_for_line(r"listening on (http://127\.0\.0\.1:\d+)")
        mock = MockUpstream(process, match.group(1))
        _wait_ready(f"{mock.base_url}/v1/models", process)
        yield mock
        mock.close()
    finally:
        process.stop()


def render_config(upstream_v1: str) -> str:
    return CONFIG_TEMPLATE.format(
        upstream=upstream_v1,
        upstream_key=UPSTREAM_KEY,
        flaky_key=FLAKY_KEY,
        openrouter_key=OPENROUTER_KEY,
        openrouter_title=OPENROUTER_TITLE,
        anthropic_upstream=upstream_v1.removesuffix("/v1"),
        anthropic_key=ANTHROPIC_KEY,
        gemini_upstream=upstream_v1.removesuffix("/v1"),
        gemini_key=GEMINI_KEY,
    )


@pytest.fixture(scope="session")
def gateway_bin() -> Path:
    return _binary("MODELWAY_BIN", "modelway")


@pytest.fixture(scope="session")
def gateway(upstream: MockUpstream, gateway_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("gateway")
    config_path = workdir / "modelway.toml"
    config_path.write_text(render_config(upstream.v1))
    process = ServerProcess(
        "modelway",
        [str(gateway_bin), "--config", str(config_path), "--listen", "127.0.0.1:0"],
        workdir,
    )
    try:
        match = process.wait_for_line(r"modelway listening on (http://[^\s/]+)")
        gw = Gateway(process, match.group(1), config_path)
        _wait_ready(f"{gw.base_url}/readyz", process)
        yield gw
        gw.close()
    finally:
        process.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: MockUpstream) -> None:
    """Every test starts with an empty script and request log."""
    upstream.reset()


@pytest.fixture
def client(gateway: Gateway):
    with gateway.client() as c:
        yield c


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for process in _PROCESSES:
            report.sections.append((f"{process.name} stderr", process.stderr_tail()))
