"""The request handler both local HTTP servers (status API, router) build on: JSON answers."""

from __future__ import annotations

import contextlib
import json
from http.server import BaseHTTPRequestHandler
from typing import Any


class JsonRequestHandler(BaseHTTPRequestHandler):
    """A handler that answers with one JSON document; a client gone mid-write is not an error."""

    def _json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        body = (json.dumps(document, default=str) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)
