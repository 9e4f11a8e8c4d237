"""Chain alerts through the real HTTP failover backend, against two tiny RPCs on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chain.errors import ChainError
from chain.rpc import HttpBackend, RetryPolicy, public_url
from engine.node.chain_health import ChainHealth
from engine.state.events import Alert, AlertKind, Event

FAST = RetryPolicy(rounds=1, backoff_s=0.0, request_timeout_s=2.0)


class _Rpc(BaseHTTPRequestHandler):
    """Answers eth_chainId while `up`, 503 (an overloaded provider) otherwise."""

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.server.up:  # type: ignore[attr-defined]
            self.send_response(503)
            self.end_headers()
            return
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "0x7a69"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rpcs() -> Iterator[list[ThreadingHTTPServer]]:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Rpc) for _ in range(2)]
    for server in servers:
        server.up = True  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def _step(backend: HttpBackend, health: ChainHealth) -> None:
    """What a node loop does: one chain call, then tell the health how it went."""
    try:
        backend.web3.eth.chain_id  # noqa: B018 (the call is the point)
    except ChainError as exc:
        health.step_failed(exc)
    else:
        health.step_ok()


def test_failover_down_and_back_each_alert_once(rpcs: list[ThreadingHTTPServer]) -> None:
    backend = HttpBackend([f"http://127.0.0.1:{s.server_port}" for s in rpcs], FAST)
    published: list[Event] = []
    health = ChainHealth(backend, published.append)
    _step(backend, health)
    assert published == []

    rpcs[0].up = False  # type: ignore[attr-defined]
    _step(backend, health)
    _step(backend, health)
    (failover,) = published
    assert isinstance(failover, Alert) and failover.kind is AlertKind.RPC_FAILOVER
    assert str(rpcs[1].server_port) in failover.message

    rpcs[1].up = False  # type: ignore[attr-defined]
    for _ in range(3):
        _step(backend, health)
    down = [e for e in published if isinstance(e, Alert) and e.kind is AlertKind.RPC_DOWN]
    assert [d.active for d in down] == [True]

    rpcs[1].up = True  # type: ignore[attr-defined]
    _step(backend, health)
    down = [e for e in published if isinstance(e, Alert) and e.kind is AlertKind.RPC_DOWN]
    assert [d.active for d in down] == [True, False]
    assert not health.rpc_down


def test_repeated_failed_transactions_alert_at_the_third_and_clear_on_success() -> None:
    backend = HttpBackend(["http://127.0.0.1:9"], FAST)
    published: list[Event] = []
    health = ChainHealth(backend, published.append, tx_failures_to_alert=3)
    health.tx_failed("nonce too low")
    health.tx_failed("nonce too low")
    assert published == []
    health.tx_failed("replacement underpriced")
    health.tx_failed("replacement underpriced")
    (alert,) = published
    assert isinstance(alert, Alert) and alert.kind is AlertKind.TX_FAILED_REPEATEDLY
    assert alert.active and "3 transactions" in alert.message and "underpriced" in alert.message
    health.tx_confirmed()
    health.tx_confirmed()
    assert [e.active for e in published if isinstance(e, Alert)] == [True, False]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("https://eth-sepolia.g.alchemy.com/v2/SECRETKEY", "https://eth-sepolia.g.alchemy.com/..."),
        ("https://user:pass@rpc.example.org:8443/?key=SECRET", "https://rpc.example.org:8443/..."),
    ],
)
def test_rpc_urls_in_alerts_and_logs_never_carry_their_keys(url: str, shown: str) -> None:
    assert public_url(url) == shown
    assert "SECRET" not in public_url(url) and "pass" not in public_url(url)
