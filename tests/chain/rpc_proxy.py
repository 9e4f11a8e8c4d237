"""A small JSON-RPC proxy on 127.0.0.1 in front of anvil, to play a public RPC's habits.

`rule(request) -> Reply | None` sees every JSON-RPC request first: None forwards it to anvil
unchanged; a Reply answers instead (an HTTP status such as 429, a JSON-RPC error such as a
capped eth_getLogs, or "forward, then fail": the request reaches anvil but the client gets a
502, as when an RPC times out after passing a transaction on). The proxy records every request.
Use it as a context manager: the server thread stops on exit.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


@dataclass(frozen=True)
class Reply:
    status: int = 200
    error: dict[str, Any] | None = None  # a JSON-RPC error object
    forward_first: bool = False  # pass the request on to anvil, then answer with `status`
    headers: tuple[tuple[str, str], ...] = ()


Rule = Callable[[dict[str, Any]], Reply | None]


class RpcProxy:
    def __init__(self, upstream: str, rule: Rule | None = None) -> None:
        self.upstream = upstream
        self.rule: Rule = rule or (lambda _request: None)
        self.requests: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = json.loads(body)
                with proxy._lock:
                    proxy.requests.append(request)
                reply = proxy.rule(request)
                if reply is None or reply.forward_first:
                    upstream = requests.post(
                        proxy.upstream,
                        data=body,
                        headers={"Content-Type": "application/json"},
                        timeout=30,
                    )
                    if reply is None:
                        self._send(upstream.status_code, upstream.content)
                        return
                if reply.status != 200:
                    with proxy._lock:
                        proxy.refused.append(request)
                    self._send(reply.status, b"{}", reply.headers)
                    return
                with proxy._lock:
                    proxy.refused.append(request)
                answer = {"jsonrpc": "2.0", "id": request.get("id"), "error": reply.error}
                self._send(200, json.dumps(answer).encode())

            def _send(
                self, status: int, content: bytes, headers: tuple[tuple[str, str], ...] = ()
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: tests read `requests`

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def calls(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r.get("method") == method]

    def __enter__(self) -> RpcProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def block_span(request: dict[str, Any]) -> int:
    """How many blocks an eth_getLogs request covers."""
    query = request["params"][0]
    return int(query["toBlock"], 16) - int(query["fromBlock"], 16) + 1


def cap_log_range(max_blocks: int) -> Rule:
    """A public RPC's cap: eth_getLogs over more than `max_blocks` blocks is refused."""

    def rule(request: dict[str, Any]) -> Reply | None:
        if request.get("method") == "eth_getLogs" and block_span(request) > max_blocks:
            message = f"block range is too large: max {max_blocks} blocks per eth_getLogs"
            return Reply(error={"code": -32005, "message": message})
        return None

    return rule
