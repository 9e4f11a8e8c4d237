"""The app starts itself the right way from source and from a PyInstaller build.

The frozen case for real: the one-file build's `--self-test` (tests/packaging/test_build.py) runs
the `spawn` step, which starts the binary as its own child through `app_command`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from cortensor_desktop import __version__
from cortensor_desktop.launch import app_command


def test_from_source_the_child_is_python_dash_m() -> None:
    command = app_command("devnet", "up")
    assert command == [sys.executable, "-m", "cortensor_desktop", "devnet", "up"]
    version = subprocess.run(app_command("--version"), capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith(f"cortensor-desktop {__version__}")


def test_a_frozen_build_starts_its_own_executable_without_dash_m(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/cortensor-desktop/cortensor-desktop")
    assert app_command("run", "--headless") == [
        "/opt/cortensor-desktop/cortensor-desktop",
        "run",
        "--headless",
    ]
