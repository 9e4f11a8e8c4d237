"""Fixtures every layer shares: an isolated home and a way to run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh CORTENSOR_HOME; nothing a test writes lands in the user's real folders."""
    folder = tmp_path / "home"
    monkeypatch.setenv("CORTENSOR_HOME", str(folder))
    for name in list(os.environ):
        if name.startswith("CORTENSOR_") and name != "CORTENSOR_HOME":
            monkeypatch.delenv(name)
    yield folder


def cli_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORTENSOR_")}
    env["CORTENSOR_HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run_cli(
    home: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    stdin: str | None = None,
) -> CliResult:
    """The real entry point in a fresh interpreter, as a user or a service manager runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "cortensor_desktop", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(home, env),
        input=stdin,
        cwd=REPO_ROOT,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(home: Path):  # type: ignore[no-untyped-def]
    def _run(
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        stdin: str | None = None,
    ) -> CliResult:
        return run_cli(home, *args, env=env, timeout=timeout, stdin=stdin)

    return _run
