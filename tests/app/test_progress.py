"""The CLI's progress bars: speed and time left on a terminal, nothing on a pipe or with --json."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from cortensor_desktop.cli.progress import TransferProgress, steps
from engine.models.store import PullProgress

ROOT = Path(__file__).resolve().parents[2]
MIB = 2**20


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_download_on_a_terminal_shows_speed_and_time_left() -> None:
    out, clock = io.StringIO(), Clock()
    with TransferProgress(stream=out, force_terminal=True, clock=clock) as bar:
        assert bar.enabled
        for done in range(0, 9 * MIB, MIB):  # 1 MiB a second for 8 s of a 32 MiB file
            bar(PullProgress("tiny", "download", "http://x", done, 32 * MIB))
            clock.now += 1.0
    text = out.getvalue()
    assert "tiny downloading" in text
    assert "1.0 MB/s" in text  # rich's decimal units: 1 MiB/s is 1.0 MB/s
    assert "0:00:24" in text  # 24 MiB left at 1 MiB/s


def test_no_bar_without_a_terminal_or_with_json() -> None:
    for bar in (
        TransferProgress(stream=io.StringIO(), force_terminal=False),
        TransferProgress(stream=io.StringIO(), force_terminal=True, json_output=True),
    ):
        bar(PullProgress("tiny", "download", "http://x", 1, 2))
        bar.close()
        assert not bar.enabled and bar._console.file.getvalue() == ""
    silent = io.StringIO()
    with steps("bench", 2, stream=silent, force_terminal=False) as advance:
        advance()
    assert silent.getvalue() == ""


def test_models_verify_draws_its_bar_on_a_terminal_and_none_on_a_pipe(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CORTENSOR_HOME": str(tmp_path / "home"),
        "CORTENSOR_MODELS__DIR": str(tmp_path / "models"),  # never the shared models folder
        "COLUMNS": "120",
    }
    cli = [sys.executable, "-m", "cortensor_desktop"]
    pulled = subprocess.run(
        [*cli, "models", "pull", "smollm2-135m-instruct", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pulled.returncode == 0, pulled.stderr
    json.loads(pulled.stdout)  # exactly one JSON document on stdout
    assert "\r" not in pulled.stderr and "\x1b[" not in pulled.stderr

    piped = subprocess.run(
        [*cli, "models", "verify"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert piped.returncode == 0, piped.stderr
    assert "checking sha256" not in piped.stdout + piped.stderr

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [*cli, "models", "verify"],
            env=env,
            cwd=ROOT,
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
        )
        os.close(follower)
        follower = -1
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    text = screen.decode("utf-8", "replace")
    assert "smollm2-135m-instruct checking sha256" in text
    # The speed, in whatever unit this disk reaches (MB/s under load, GB/s on an idle machine).
    assert re.search(r"\d [kMG]?B/s", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)), text
    assert b"ok " in proc.stdout and b"\x1b[" not in proc.stdout  # the bar never goes to stdout


def test_bench_steps_count_on_a_terminal() -> None:
    out = io.StringIO()
    with steps("bench: load, then 3 run(s)", 2, stream=out, force_terminal=True) as advance:
        advance()
        advance()
    text = out.getvalue()
    assert "bench: load, then 3 run(s)" in text and "2/2" in text
