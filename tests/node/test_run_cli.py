"""`run` on the embedded network as a user or a service manager runs it: real process, signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.recording import read_events
from tests.conftest import REPO_ROOT, cli_env


def test_run_until_one_network_task_ends_exits_0_and_records(cli, home: Path) -> None:
    record = home / "events.jsonl"
    result = cli(
        "run",
        "--headless",
        "--miners",
        "2",
        "--sessions",
        "1",
        "--record",
        str(record),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "session 1 end" in result.stderr
    assert "1 network tasks ended" in result.stderr
    types = [event.type for event in read_events(record)]
    assert "validation" in types and "network_task" in types


def test_sigterm_stops_cleanly_with_exit_0(home: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cortensor_desktop", "run", "--headless", "--miners", "1"],
        cwd=REPO_ROOT,
        env=cli_env(home),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        for line in proc.stderr:
            if "embedded network up" in line:
                break
            assert time.monotonic() < deadline, "the node did not come up"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        rest = proc.stderr.read()
        assert "stopping (SIGTERM)" in rest
        assert "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_refuses_a_network_it_cannot_drive(cli, home: Path) -> None:
    profiles = home / "config" / "networks"
    profiles.mkdir(parents=True)
    (profiles / "testnet.toml").write_text('chain_id = 5\nrpc_urls = ["http://127.0.0.1:9"]\n')
    result = cli("run", "--network", "testnet")
    assert result.returncode == 2
    assert "embedded network only" in result.stderr
