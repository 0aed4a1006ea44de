"""Virtualenvs for the client libraries of test_clients.py, one per requirements file
in tests/python/clients/, kept under target/client-venvs/<name>.

They are apart from the e2e venv because their pins disagree with it and with each
other (instructor 1.17.0 pins openai 3.3.0). A venv is created and installed once; a
stamp holds the requirements text it installed, so an unchanged file never touches
the network again. Every step is bounded in time. If pip itself cannot run here (no
`venv`/`ensurepip`), the tests that need it are skipped with that reason; any other
failure — pip running but not installing — fails them, with pip's output.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).resolve().parent / "clients"
VENVS = REPO / "target" / "client-venvs"
STAMP = ".modelway-requirements"

VENV_TIMEOUT = 120.0  # seconds to create a venv (with pip)
PIP_TIMEOUT = 900.0  # seconds for one `pip install -r`
# The longest a test that needs a venv may take: creating and installing it (the first
# time only) and then running its client.
SETUP_BUDGET = VENV_TIMEOUT + PIP_TIMEOUT + 120

_ready: dict[str, Path] = {}


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _run(argv: list[str], timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{what} took longer than {timeout:.0f}s: {argv}\n{e.stdout or ''}\n{e.stderr or ''}", pytrace=False)


def client_python(name: str) -> Path:
    """The python of the venv for tests/python/clients/<name>.txt, installed."""
    if name in _ready:
        return _ready[name]
    requirements = REQUIREMENTS / f"{name}.txt"
    wanted = requirements.read_text()
    venv = VENVS / name
    python = _python(venv)
    stamp = venv / STAMP
    if python.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        _ready[name] = python
        return python

    if not python.is_file():
        VENVS.mkdir(parents=True, exist_ok=True)
        made = _run([sys.executable, "-m", "venv", str(venv)], VENV_TIMEOUT, "creating a venv")
        if made.returncode != 0:
            pytest.skip(f"pip is unavailable here: `python -m venv` failed ({made.stderr.strip()[-300:]})")
    pip = _run([str(python), "-m", "pip", "--version"], 60, "pip --version")
    if pip.returncode != 0:
        pytest.skip(f"pip is unavailable here: {pip.stderr.strip()[-300:]}")

    installed = _run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(requirements)],
        PIP_TIMEOUT,
        f"installing {requirements.name}",
    )
    if installed.returncode != 0:
        pytest.fail(
            f"pip could not install {requirements} into {venv}:\n{installed.stdout}\n{installed.stderr}",
            pytrace=False,
        )
    stamp.write_text(wanted)
    _ready[name] = python
    return python
