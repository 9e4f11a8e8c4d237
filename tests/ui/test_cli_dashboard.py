"""Which path the CLI takes: the dashboard on a terminal, the headless log otherwise."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from cortensor_desktop.cli.commands import run_cmd
from tests.conftest import REPO_ROOT, cli_env


def test_no_args_without_a_terminal_prints_help_and_never_loads_textual(home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cortensor_desktop"],
        capture_output=True,
        text=True,
        env=cli_env(home),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "usage:" in proc.stderr
    imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert "cortensor_desktop.cli.main" in imported  # -X importtime did report
    assert not [m for m in imported if m.split(".")[0] in {"textual", "rich"}]


class _Ctx:
    class network:
        embedded = True
        name = "embedded"


@pytest.mark.parametrize(
    ("headless", "terminal", "expected"),
    [(False, True, "dashboard"), (True, True, "headless"), (False, False, "headless")],
)
def test_run_opens_the_dashboard_only_on_a_terminal_without_headless(
    monkeypatch: pytest.MonkeyPatch, headless: bool, terminal: bool, expected: str
) -> None:
    monkeypatch.setattr(run_cmd, "wants_dashboard", lambda: terminal)
    monkeypatch.setattr(run_cmd, "check_cpu_runs_this_build", lambda ctx: None)
    monkeypatch.setattr(run_cmd, "_run_dashboard", lambda ctx, args: "dashboard")
    monkeypatch.setattr(run_cmd, "_run_embedded", lambda ctx, args: "headless")
    args = argparse.Namespace(miners=2, headless=headless)
    assert run_cmd._run(_Ctx(), args) == expected  # type: ignore[arg-type]


def test_replay_without_a_terminal_logs_the_recording(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", "--replay", str(REPO_ROOT / "tests/ui/data/recorded_run.jsonl"))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert sum("validate" in line and "PASS" in line for line in lines) == 6
    assert any("session 2 end" in line for line in lines)


def test_replay_of_a_missing_file_is_a_usage_error(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", "--replay", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2
    assert "no such recording" in result.stderr
