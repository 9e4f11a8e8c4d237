"""`run` on the embedded network as a user or a service manager runs it: real process, signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.state.recording import read_events
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


def _testnet(home: Path, port: int = 9) -> None:
    profiles = home / "config" / "networks"
    profiles.mkdir(parents=True, exist_ok=True)
    (profiles / "testnet.toml").write_text(
        f'chain_id = 5\nrpc_urls = ["http://127.0.0.1:{port}"]\n'
        'contracts = { NodeRegistry = "0x0000000000000000000000000000000000000001", '
        'NodeStats = "0x0000000000000000000000000000000000000002", '
        'Cognitive = "0x0000000000000000000000000000000000000003", '
        'SessionQueue = "0x0000000000000000000000000000000000000004", '
        'SessionPayment = "0x0000000000000000000000000000000000000005" }\n'
    )


def test_run_on_a_network_needs_one_role(cli, home: Path) -> None:
    _testnet(home)
    result = cli("run", "--network", "testnet")
    assert result.returncode == 2
    assert "--role miner or --role oracle" in result.stderr


def test_run_headless_without_a_passphrase_source_is_exit_4(cli, home: Path) -> None:
    _testnet(home)
    result = cli("run", "--network", "testnet", "--role", "miner", stdin="")
    assert result.returncode == 4
    assert "CORTENSOR_PASSPHRASE_FILE" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_with_an_unreachable_rpc_is_exit_5_and_keeps_the_new_wallet(cli, home: Path) -> None:
    _testnet(home, port=9)  # nothing listens on 127.0.0.1:9
    passphrase = home / "pass"
    passphrase.write_text("correct horse battery staple")
    result = cli(
        "run",
        "--network",
        "testnet",
        "--role",
        "miner",
        "--passphrase-file",
        str(passphrase),
        timeout=180,
        env={"CORTENSOR_POLICY__NODES_ON_HOST": "64"},  # many nodes here: one thread each
    )
    assert result.returncode == 5, result.stderr[-2000:]
    assert "1 llama.cpp thread(s): " in result.stderr and "shared by 64 node(s)" in result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) < 400
    assert "Traceback" not in result.stderr
    assert "correct horse" not in result.stderr
    keystores = list((home / "data" / "keystore").glob("*"))
    assert keystores and oct(keystores[0].stat().st_mode & 0o777) == "0o600"


def test_a_loop_thread_that_dies_makes_run_exit_1_for_the_service_manager(cli, home: Path) -> None:
    # The failpoint raises inside the oracle's loop thread, as an unforeseen bug would.
    result = cli(
        "run",
        "--headless",
        "--miners",
        "1",
        env={"CORTENSOR_FAILPOINTS": "oracle-loop"},
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "loop died: FailpointError: failpoint oracle-loop" in result.stderr
    assert "exiting: the oracle-" in result.stderr
