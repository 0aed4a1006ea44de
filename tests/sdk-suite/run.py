#!/usr/bin/env python3
"""Runs the official SDKs' own generated API tests against the real `modelway` binary.

    python3 tests/sdk-suite/run.py [--suite openai|anthropic|openai,anthropic] [PYTEST ARGS...]

Called by `cargo xtask e2e` after tests/python. Steps (WIRE.md section 7.3, items 1-2),
for each suite (openai-python, then anthropic-sdk-python; both by default):

1. `pip download --no-deps --no-binary :all: <package>==<version>` into
   target/sdk-suite/ (skipped when the sdist is already there) and unpack it.
2. A venv per suite (target/sdk-suite-venv, target/sdk-suite-anthropic-venv) with the
   sdist (`[aiohttp]` extra) and the suite's pinned requirements file; skipped when a
   stamp says that exact set is in. After the first run nothing here touches the network.
3. Starts `modelway-mock-upstream` (MOCK_UPSTREAM_BIN) once and, per leg of a suite, a
   `modelway` (MODELWAY_BIN) on 127.0.0.1 port 0 whose `default_provider` points at the
   mock, so every model name the SDK's tests send goes there. openai's tests run through
   an openai-compatible provider; anthropic's twice: through an anthropic provider
   (native passthrough) and through an openai-compatible one (translated both ways).
4. From the unpacked sdist runs the selected test files with TEST_API_BASE_URL set to
   that gateway, and exits non-zero when any leg fails.

Every wait is bounded and every server is stopped on every path out. Only the
standard library is used, so any python3 >= 3.10 can run this file.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PINS = REPO / "tests" / "python" / "requirements.txt"


@dataclass(frozen=True)
class Leg:
    """One gateway configuration the suite's tests run through."""

    name: str
    config: str  # a template; `{mock}` is the mock upstream's root URL


@dataclass(frozen=True)
class Suite:
    """One SDK's generated API tests: which sdist, what it needs, what runs."""

    package: str  # the PyPI name, pinned in tests/python/requirements.txt
    version: str
    requirements: Path  # the test stack, pinned to the sdist's own uv.lock
    test_files: tuple[str, ...]
    selection: str  # pytest -k
    base_suffix: str  # appended to the gateway's root for TEST_API_BASE_URL
    env_prefix: str  # the SDK's environment variables, removed from the tests' env
    legs: tuple[Leg, ...]

    @property
    def sdk_name(self) -> str:
        return f"{self.package}-{self.version}"

    @property
    def work(self) -> Path:
        return REPO / "target" / "sdk-suite"

    @property
    def sdist(self) -> Path:
        return self.work / f"{self.sdk_name}.tar.gz"

    @property
    def sdist_dir(self) -> Path:
        return self.work / self.sdk_name

    @property
    def venv(self) -> Path:
        # openai's venv keeps its old name, so a warm CI cache stays warm.
        name = "sdk-suite-venv" if self.package == "openai" else f"sdk-suite-{self.package}-venv"
        return REPO / "target" / name


LOG_DIR = REPO / "target" / "sdk-suite" / "logs"

OPENAI = Suite(
    package="openai",
    version="3.51.0",
    requirements=HERE / "requirements.txt",
    # Only what we serve: chat `create` (plain, all params, raw, streaming-response;
    # each `stream` overload; sync and async; loose/strict validation; httpx2 and
    # aiohttp), embeddings `create` (the same variants, `dimensions`/`encoding_format`/
    # `user` among the params), Responses `create` and models `list`/`retrieve`.
    # Stored-completion retrieve/update/list/delete and `models.delete` are deselected.
    test_files=(
        "tests/api_resources/chat/test_completions.py",
        "tests/api_resources/test_embeddings.py",
        "tests/api_resources/test_models.py",
        "tests/api_resources/test_responses.py",
    ),
    # Deselected too: the embeddings tests that leave `encoding_format` to the SDK under
    # strict response validation (`strict`, and `aiohttp`, which is strict). The SDK then
    # asks for base64 — and validates the answer against the spec's `Embedding`, which
    # models only the float array, before its own base64 decoding runs — so they fail
    # against OpenAI itself as against any server that honours `encoding_format` (the
    # generated tests expect a spec-driven mock that ignores it). The gateway answers in
    # the encoding asked for. Responses: `create` with all params (each `stream`
    # overload, sync and async, every client variant) — they go through as they came to
    # the `responses_api` upstream, with `previous_response_id`, `store` and the built-in
    # tools. The `create()` calls with no `model` are deselected (the gateway routes by
    # model and answers 400 naming it), as are stored-response retrieve/delete/cancel/
    # compact and `input_tokens`.
    selection=(
        "((create and (not responses or all_params)) or (models and (list or retrieve)))"
        " and not (embeddings and (strict or aiohttp) and not all_params)"
    ),
    base_suffix="/v1",
    env_prefix="OPENAI_",
    legs=(
        Leg(
            "openai-compatible",
            """\
# Generated by tests/sdk-suite/run.py.
[providers.up]
kind = "openai-compatible"
base_url = "{mock}/v1"
api_key = "sk-sdk-suite-upstream"
# The mock serves /v1/responses: Responses clients' bodies go to it as they came.
responses_api = true

[routing]
default_provider = "up"
timeout = "10s"
""",
        ),
    ),
)

ANTHROPIC = Suite(
    package="anthropic",
    version="2.15.0",
    requirements=HERE / "requirements-anthropic.txt",
    # Messages `create` (each `stream` overload) and `count_tokens`, plain and beta (the
    # beta ones are what Claude Code sends), with every parameter; models `list` and
    # `retrieve`, plain and beta. Message batches, files, skills and the rest of the
    # beta surface are not served by a gateway and are not run.
    test_files=(
        "tests/api_resources/test_messages.py",
        "tests/api_resources/beta/test_messages.py",
        "tests/api_resources/test_models.py",
        "tests/api_resources/beta/test_models.py",
    ),
    selection="",
    base_suffix="",  # this SDK's base URL has no /v1
    env_prefix="ANTHROPIC_",
    legs=(
        # Native passthrough: the Anthropic upstream's bodies reach the SDK as sent.
        Leg(
            "anthropic",
            """\
# Generated by tests/sdk-suite/run.py.
[providers.up]
kind = "anthropic"
base_url = "{mock}"
api_key = "sk-ant-sdk-suite-upstream"

[routing]
default_provider = "up"
timeout = "10s"
""",
        ),
        # Translated both ways: Messages in, Chat Completions upstream, Messages out.
        Leg(
            "openai-compatible",
            """\
# Generated by tests/sdk-suite/run.py.
[providers.up]
kind = "openai-compatible"
base_url = "{mock}/v1"
api_key = "sk-sdk-suite-upstream"

[routing]
default_provider = "up"
timeout = "10s"
""",
        ),
    ),
)

SUITES = {s.package: s for s in (OPENAI, ANTHROPIC)}

PIP_TIMEOUT = 900.0  # seconds for one pip download / install
STARTUP_TIMEOUT = 20.0  # seconds for a server to print its address / become ready
PYTEST_TIMEOUT = 600.0  # seconds for one pytest run
PER_TEST_TIMEOUT = 60  # seconds for one test (pytest-timeout)


def log(msg: str) -> None:
    print(f"sdk-suite: {msg}", file=sys.stderr, flush=True)


def die(msg: str, code: int = 2) -> NoReturn:
    log(f"error: {msg}")
    sys.exit(code)


def run_checked(argv: list[str], what: str, timeout: float, **kw) -> None:
    line = " ".join(str(a) for a in argv)
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        die(f"{what}: `{line}` did not finish within {timeout:.0f}s")
    except OSError as e:
        die(f"{what}: could not start `{line}`: {e}")
    if result.returncode != 0:
        die(f"{what}: `{line}` exited with {result.returncode}")


def check_pin(suite: Suite) -> None:
    try:
        text = PINS.read_text("utf-8")
    except OSError:
        return
    m = re.search(rf"^{re.escape(suite.package)}==(\S+)", text, re.M)
    if m and m.group(1) != suite.version:
        die(
            f"{PINS} pins {suite.package}=={m.group(1)} but {Path(__file__).name} runs the "
            f"tests of {suite.sdk_name}; update its version here"
        )


def venv_python(suite: Suite) -> Path:
    if os.name == "nt":
        return suite.venv / "Scripts" / "python.exe"
    return suite.venv / "bin" / "python"


def pip(suite: Suite, *args: str) -> list[str]:
    return [str(venv_python(suite)), "-m", "pip", "--disable-pip-version-check", *args]


def ensure_venv(suite: Suite) -> Path:
    python = venv_python(suite)
    if not python.is_file():
        log(f"creating {suite.venv.relative_to(REPO)}")
        run_checked([sys.executable, "-m", "venv", str(suite.venv)], "creating the venv", 120)
    return python


def ensure_sdist(suite: Suite) -> Path:
    """The unpacked sdist; downloads and unpacks only what is missing."""
    suite.work.mkdir(parents=True, exist_ok=True)
    if not suite.sdist.is_file():
        log(f"downloading the {suite.sdk_name} sdist from PyPI")
        with tempfile.TemporaryDirectory(dir=suite.work) as tmp:
            run_checked(
                pip(suite, "download", "-q", "--no-deps", "--no-binary", ":all:",
                    f"{suite.package}=={suite.version}", "-d", tmp),
                "pip download",
                PIP_TIMEOUT,
            )
            got = Path(tmp) / suite.sdist.name
            if not got.is_file():
                die(f"pip download left {sorted(p.name for p in Path(tmp).iterdir())}, "
                    f"not {suite.sdist.name}")
            os.replace(got, suite.sdist)
    markers = [suite.sdist_dir / f for f in suite.test_files]
    if not all(m.is_file() for m in markers):
        log(f"unpacking {suite.sdist.name}")
        shutil.rmtree(suite.sdist_dir, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=suite.work) as tmp:
            with tarfile.open(suite.sdist) as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:  # Python without PEP 706; the archive comes from PyPI via pip
                    tar.extractall(tmp)
            os.replace(Path(tmp) / suite.sdk_name, suite.sdist_dir)
        missing = [str(m.relative_to(suite.sdist_dir)) for m in markers if not m.is_file()]
        if missing:
            die(f"{suite.sdist.name} has no {', '.join(missing)}")
    return suite.sdist_dir


def ensure_installed(suite: Suite, sdist_dir: Path) -> None:
    stamp = suite.venv / ".modelway-sdk-suite"
    wanted = f"{suite.sdk_name}[aiohttp]\n{suite.requirements.read_text('utf-8')}"
    try:
        if stamp.read_text("utf-8") == wanted:
            return
    except OSError:
        pass
    log(f"installing {suite.sdk_name}[aiohttp] and {suite.requirements.relative_to(REPO)}")
    run_checked(
        pip(suite, "install", "-q", f"{sdist_dir}[aiohttp]", "-r", str(suite.requirements)),
        "pip install",
        PIP_TIMEOUT,
    )
    stamp.write_text(wanted, "utf-8")


def binary(env_name: str, default_name: str) -> Path:
    configured = os.environ.get(env_name)
    suffix = ".exe" if os.name == "nt" else ""
    path = Path(configured) if configured else REPO / "target" / "debug" / (default_name + suffix)
    if not path.is_file():
        die(f"{path} does not exist: build it (`cargo xtask e2e` does) or set {env_name}")
    return path


class Server:
    """A child process whose stdout is read on a thread (so waits can time out) and
    whose stderr goes to a log file that a failure quotes."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.argv = argv
        self.log_path = LOG_DIR / f"{name}.stderr.log"
        self._log: IO[bytes] = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, "RUST_BACKTRACE": "1"},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self._lines.put(None)

    def wait_for_line(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        seen: list[str] = []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(
                    f"{self.name} closed stdout before printing {pattern!r}; stdout: {seen!r}"
                )
            seen.append(line)
            if m := re.search(pattern, line):
                return m
        raise RuntimeError(f"{self.name}: no line matching {pattern!r} within "
                           f"{STARTUP_TIMEOUT}s; stdout: {seen!r}")

    def wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        raise RuntimeError(f"{url} not ready within {STARTUP_TIMEOUT}s (last: {last})")

    def stderr_tail(self, lines: int = 40) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError as e:
            return f"({e})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- {self.name} stderr, last {lines} lines ({self.log_path}) ---\n{tail}"

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


def run_pytest(suite: Suite, python: Path, sdist_dir: Path, base: str, extra: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(suite.env_prefix)}
    env.update(
        TEST_API_BASE_URL=base,
        PYTHONDONTWRITEBYTECODE="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    # The sdists' addopts say `-n auto`; `-n 0` after them runs serially in-process.
    argv = [
        str(python), "-m", "pytest", "-n", "0", "-p", "no:cacheprovider",
        f"--timeout={PER_TEST_TIMEOUT}", "-rfE", *suite.test_files,
        *(["-k", suite.selection] if suite.selection else []), *extra,
    ]
    log(f"TEST_API_BASE_URL={base} {' '.join(argv[1:])}  (in {sdist_dir})")
    proc = subprocess.Popen(argv, cwd=sdist_dir, env=env, stdin=subprocess.DEVNULL)
    try:
        return proc.wait(timeout=PYTEST_TIMEOUT)
    except subprocess.TimeoutExpired:
        log(f"pytest did not finish within {PYTEST_TIMEOUT:.0f}s; killing it")
        proc.kill()
        proc.wait(timeout=10)
        return 124
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def run_leg(suite: Suite, leg: Leg, python: Path, sdist_dir: Path, mock_url: str,
            gateway_bin: Path, extra: list[str], servers: list[Server]) -> int:
    tag = f"{suite.package}-via-{leg.name}"
    config = LOG_DIR / tag / "modelway.toml"
    # Its own directory: the gateway watches the directory of its config file.
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(leg.config.format(mock=mock_url), "utf-8")
    gateway = Server(
        f"modelway-{tag}",
        [str(gateway_bin), "--config", str(config), "--listen", "127.0.0.1:0"],
    )
    servers.append(gateway)
    try:
        gw_url = gateway.wait_for_line(r"modelway listening on (http://[^\s/]+)").group(1)
        gateway.wait_ready(f"{gw_url}/readyz")
        log(f"{tag}: gateway {gw_url} (config {config})")
        code = run_pytest(suite, python, sdist_dir, f"{gw_url}{suite.base_suffix}", extra)
        if code != 0:
            print(gateway.stderr_tail(), file=sys.stderr)
        return code
    finally:
        gateway.stop()
        servers.remove(gateway)


def main(argv: list[str]) -> int:
    chosen = list(SUITES.values())
    if argv[:1] == ["--suite"] and len(argv) > 1:
        names = argv[1].split(",")
        unknown = [n for n in names if n not in SUITES]
        if unknown:
            die(f"unknown suite {unknown}; known: {', '.join(SUITES)}")
        chosen = [SUITES[n] for n in names]
        argv = argv[2:]
    extra = argv
    for suite in chosen:
        check_pin(suite)
    gateway_bin = binary("MODELWAY_BIN", "modelway")
    mock_bin = binary("MOCK_UPSTREAM_BIN", "modelway-mock-upstream")
    prepared = []
    for suite in chosen:
        python = ensure_venv(suite)
        sdist_dir = ensure_sdist(suite)
        ensure_installed(suite, sdist_dir)
        prepared.append((suite, python, sdist_dir))

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    servers: list[Server] = []
    # SIGTERM (e.g. from a CI timeout) unwinds through the `finally` below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    failed: list[str] = []
    try:
        mock = Server("mock-upstream", [str(mock_bin), "--port", "0"])
        servers.append(mock)
        mock_url = mock.wait_for_line(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
        mock.wait_ready(f"{mock_url}/v1/models")
        log(f"mock upstream {mock_url}")
        for suite, python, sdist_dir in prepared:
            for leg in suite.legs:
                code = run_leg(suite, leg, python, sdist_dir, mock_url, gateway_bin, extra,
                               servers)
                if code != 0:
                    failed.append(f"{suite.package} via {leg.name} (pytest exit {code})")
        if failed:
            print(mock.stderr_tail(), file=sys.stderr)
            log(f"failed: {'; '.join(failed)}")
            return 1
        return 0
    except RuntimeError as e:
        log(f"error: {e}")
        for s in servers:
            print(s.stderr_tail(), file=sys.stderr)
        return 2
    finally:
        for s in reversed(servers):
            s.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
