"""Loopback never goes through a proxy: `http_proxy` set, `no_proxy` unset, the proxy port closed.

Before the fix each of these asked the (dead) proxy for 127.0.0.1 and failed.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from web3 import Web3

from chain.rpc import FailoverProvider, is_loopback
from cortensor_desktop.service.attach import NodeApi
from cortensor_desktop.service.status_api import StatusApi, SummaryHolder
from engine.state.commands import CommandQueue
from engine.state.events import EventBus
from engine.state.summary import Summary
from tests.conftest import run_cli


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dead_proxy(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    proxy = f"http://127.0.0.1:{_closed_port()}"
    env = {"http_proxy": proxy, "HTTP_PROXY": proxy, "https_proxy": proxy, "HTTPS_PROXY": proxy}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return env


@pytest.fixture
def status_api(tmp_path: Path) -> Iterator[StatusApi]:
    holder = SummaryHolder(Summary(started_at=1.0), {})
    api = StatusApi(holder, EventBus(), CommandQueue(), tmp_path)
    api.start()
    yield api
    api.stop()


class _ChainIdHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "0x539"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_loopback_addresses_are_recognised() -> None:
    assert is_loopback("http://127.0.0.1:8545") and is_loopback("http://localhost/x")
    assert is_loopback("http://[::1]:9") and is_loopback("http://127.3.4.5")
    assert not is_loopback("https://arb-sepolia.example.org/v2/KEY")


def test_status_cli_reaches_the_local_node_past_a_dead_proxy(
    dead_proxy: dict[str, str], status_api: StatusApi, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "api.json").write_text(
        json.dumps({"host": "127.0.0.1", "port": status_api.port, "pid": 1})
    )
    result = run_cli(home, "status", "--json", env=dead_proxy)
    assert result.returncode == 0, result.stderr
    assert "state" in json.loads(result.stdout)


def test_attach_client_reaches_the_local_node_past_a_dead_proxy(
    dead_proxy: dict[str, str], status_api: StatusApi
) -> None:
    api = NodeApi(url=f"http://127.0.0.1:{status_api.port}", token=None, pid=None)
    assert "state" in api.summary()


def test_chain_rpc_to_loopback_skips_a_dead_proxy(dead_proxy: dict[str, str]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChainIdHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert Web3(FailoverProvider([url])).eth.chain_id == 1337
    finally:
        server.shutdown()
        server.server_close()
