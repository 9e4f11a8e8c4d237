"""`run` on the embedded network serves the router too: a real process, found by its log line."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, cli_env

pytestmark = [pytest.mark.llama, pytest.mark.timeout(180)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def test_run_serves_the_router_and_its_metrics_on_the_status_api(home: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cortensor_desktop", "run", "--headless", "--miners", "1"],
        cwd=REPO_ROOT,
        env=cli_env(home, {"CORTENSOR_ROUTER__PORT": str(port)}),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 150
        for line in proc.stderr:
            if "point OpenAI clients at" in line:
                break
            assert time.monotonic() < deadline, "the router did not come up"
        assert f"http://127.0.0.1:{port}/v1" in line
        status, body = _get(f"http://127.0.0.1:{port}/health")
        health = json.loads(body)
        assert status == 200 and health["network"] == "embedded" and health["rpc"] == "ok"
        status, body = _get(f"http://127.0.0.1:{port}/v1/models")
        assert status == 200 and json.loads(body)["object"] == "list"
        api = json.loads(next(home.rglob("api.json")).read_text())
        _, summary = _get(api["url"] + "/1/summary")
        assert json.loads(summary)["router"] == f"http://127.0.0.1:{port}/v1"
        _, metrics = _get(api["url"] + "/metrics")
        assert "cortensor_router_in_flight" in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
