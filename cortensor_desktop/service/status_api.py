"""The local status API: a small HTTP server on 127.0.0.1 for operators' bots and dashboards.

    GET  /1/summary   the node's summary as JSON (XMRig's /1/summary, for LLM nodes)
    GET  /1/events    the event stream as server-sent events; `id:` is the event's seq, and a
                      reconnect with `Last-Event-ID` (or `?after=SEQ`) resumes from the history
    GET  /metrics     Prometheus text format, from this server's own registry
    POST /1/commands  one JSON command (engine/state/commands.py); needs `Authorization: Bearer
    TOKEN`
                      401 without or with a wrong token, 400 when malformed, 202 when queued,
                      403 for set_payout: the token alone never redirects earnings

Reading is open to local processes, as with XMRig; anything that changes state needs the token,
kept in the data folder in a file only the owner can read (`api-token`, mode 0600), compared in
constant time and never logged. The server's address is written to `api.json` in the data folder
so `cortensor-desktop status` (and `attach`) can find it; the file is removed on a clean stop.

Limits: a request must arrive within 30 s and every socket operation (an SSE write to a client
that stopped reading) times out after as long; at most 64 connections are served at once (more
are closed at once) and at most 16 event streams (more get 503).

Standard library only (`http.server.ThreadingHTTPServer`): a few endpoints do not need a framework,
and the headless path stays small. The summary and metrics both read one `SummaryHolder`, which
the run loop feeds with every event (Glances: one stats core, many outputs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cortensor_desktop import __version__
from cortensor_desktop.logs import register_secret
from cortensor_desktop.paths import private_dir
from cortensor_desktop.service.json_handler import JsonRequestHandler
from engine.state.commands import CommandQueue, CommandQueueFull, command_from_json
from engine.state.events import Event, EventBus
from engine.state.summary import SCORE_BUCKETS, Summary
from engine.state.wire import WireError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
API_FILE_NAME = "api.json"
TOKEN_FILE_NAME = "api-token"
MAX_BODY = 64 * 1024
SSE_KEEPALIVE_S = 15.0
SOCKET_TIMEOUT_S = 30.0  # a slow or stalled client holds a server thread at most this long
MAX_CONNECTIONS = 64
MAX_EVENT_STREAMS = 16
# What the token may not do: changing where earnings go needs the wallet passphrase (the
# dashboard on this machine, or `wallet` commands), so a leaked token cannot take them.
REFUSED_OVER_API = frozenset({"set_payout"})


# --- the token -----------------------------------------------------------------------------------


def load_or_create_token(data_dir: Path) -> str:
    """The bearer token for commands: kept across restarts so operators' scripts keep working.

    Created with mode 0600 atomically (never readable by others, not even for a moment). A
    file found readable by others may have been read: it is replaced by a new token, not just
    tightened. The data folder is made private too. Registered with the log redaction.
    """
    path = data_dir / TOKEN_FILE_NAME
    private_dir(data_dir)
    token = ""
    if path.exists():
        if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
            log.warning("%s was readable by others: replaced with a new token", path)
        else:
            token = path.read_text(encoding="utf-8").strip()
    if not token:
        token = secrets.token_urlsafe(32)
        tmp = path.with_name(f".{TOKEN_FILE_NAME}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        os.replace(tmp, path)
    register_secret(token)
    return token


# --- what the server reads -----------------------------------------------------------------------


class SummaryHolder:
    """The summary behind a lock: the run loop folds events in, server threads read it."""

    def __init__(self, summary: Summary, info: dict[str, Any] | None = None) -> None:
        self._summary = summary
        self._lock = threading.Lock()
        self.info: dict[str, Any] = dict(info or {})  # version, network, rpc: facts not events
        self.workers: Callable[[], list[dict[str, Any]]] = list

    def apply(self, event: Event) -> None:
        with self._lock:
            self._summary.apply(event)

    def read(self, fn: Callable[[Summary], Any]) -> Any:
        with self._lock:
            return fn(self._summary)

    def document(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        body = self.read(lambda s: s.to_dict(now))
        workers = self.workers()
        return {
            "version": __version__,
            **self.info,
            **body,
            "workers": workers,
            # deaths as the workers counted them; without that list, the crash alerts
            "worker_restarts": (
                sum(int(w.get("deaths", 0)) for w in workers)
                if workers
                else body["worker_restarts"]
            ),
        }


# --- metrics -------------------------------------------------------------------------------------


class SummaryCollector:
    """Prometheus metrics rendered from the summary at scrape time (no second bookkeeping)."""

    def __init__(self, holder: SummaryHolder) -> None:
        self.holder = holder

    def describe(self) -> list[Any]:
        return []  # no fixed set: label values come and go with the nodes

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        doc = self.holder.document()
        info = GaugeMetricFamily(
            "cortensor_node_info", "A node of this process (value 1)", labels=["node", "role"]
        )
        up = GaugeMetricFamily("cortensor_uptime_seconds", "Seconds since the node started")
        up.add_metric([], doc["uptime_s"])
        state = GaugeMetricFamily(
            "cortensor_node_state", "1 for the node's current state", labels=["node", "state"]
        )
        paused = GaugeMetricFamily(
            "cortensor_node_paused", "1 while the node is paused", labels=["node"]
        )
        tps = GaugeMetricFamily(
            "cortensor_tokens_per_second",
            "Generation speed over a window (tokens/s while generating)",
            labels=["node", "window"],
        )
        tasks = CounterMetricFamily(
            "cortensor_tasks",
            "Task steps by kind, stage and outcome",
            labels=["node", "kind", "stage", "status"],
        )
        sessions = CounterMetricFamily(
            "cortensor_sessions_ended", "Network tasks this oracle ended", labels=["node"]
        )
        failed = CounterMetricFamily(
            "cortensor_failed_transactions", "Transactions reverted or missed", labels=["node"]
        )
        points = GaugeMetricFamily("cortensor_points", "Points on chain", labels=["node"])
        level = GaugeMetricFamily("cortensor_level", "Node level on chain", labels=["node"])
        score = GaugeMetricFamily(
            "cortensor_precommit_score", "Precommit points / precommits (0..1)", labels=["node"]
        )
        gas = GaugeMetricFamily(
            "cortensor_gas_balance_wei", "Gas balance of the node account", labels=["node"]
        )
        alerts = GaugeMetricFamily(
            "cortensor_alert_active", "1 while an alert is active", labels=["node", "kind"]
        )
        rpc_errors = CounterMetricFamily(
            "cortensor_rpc_errors", "RPC endpoint failures", labels=["node"]
        )
        failovers = CounterMetricFamily(
            "cortensor_rpc_failovers", "Switches to another RPC endpoint", labels=["node"]
        )
        since_task = GaugeMetricFamily(
            "cortensor_pings_since_task",
            "Pings in a row without a task transaction (monitors call 25 a stall)",
            labels=["node"],
        )
        active = GaugeMetricFamily(
            "cortensor_last_active_timestamp_seconds",
            "Unix time of the node's last confirmed transaction",
            labels=["node"],
        )
        restarts = CounterMetricFamily(
            "cortensor_worker_restarts", "Inference worker deaths (each is restarted)"
        )
        restarts.add_metric([], doc["worker_restarts"])
        for node in doc["nodes"]:
            addr = node["address"]
            info.add_metric([addr, node["role"] or ""], 1)
            if node["state"]:
                state.add_metric([addr, node["state"]], 1)
            paused.add_metric([addr], 1 if node["state"] == "paused" else 0)
            for window in ("10s", "60s", "15m"):
                rate = node["tokens_per_s"][window]
                if rate is not None:  # unknown is absent, not zero
                    tps.add_metric([addr, window], rate)
            for kind, stages in node["tasks"].items():
                for stage, statuses in stages.items():
                    for status, n in statuses.items():
                        tasks.add_metric([addr, kind, stage, status], n)
            if node["role"] == "oracle":
                sessions.add_metric([addr], node["sessions_ended"])
            failed.add_metric([addr], node["failed_txs"])
            for family, value in (
                (points, node["points"]),
                (level, node["level"]),
                (score, node["precommit_score"]),
                (gas, node["gas_balance_wei"]),
            ):
                if value is not None:
                    family.add_metric([addr], value)
            for alert in node["alerts"]:
                alerts.add_metric([addr, alert["kind"]], 1)
            since_task.add_metric([addr], node["pings_since_task"])
            if node["last_active_ts"] is not None:
                active.add_metric([addr], node["last_active_ts"])
            rpc_errors.add_metric([addr], node["rpc"]["errors"])
            failovers.add_metric([addr], node["rpc"]["failovers"])
        yield from (info, up, state, paused, tps, tasks, sessions, failed, points, level, score)
        yield from (gas, alerts, rpc_errors, failovers, restarts, since_task, active)
        yield self._scores(HistogramMetricFamily)

    def _scores(self, family_cls: Any) -> Any:
        family = family_cls(
            "cortensor_validation_top1_agreement",
            "Top-1 agreement of judged answers (what the oracle scored)",
            labels=["node"],
        )

        def rows(summary: Summary) -> list[tuple[str, list[int], float]]:
            return [
                (v.address, list(v.scores.counts), v.scores.total)
                for v in summary.nodes.values()
                if v.scores.count
            ]

        for address, counts, total in self.holder.read(rows):
            cumulative, buckets = 0, []
            for bound, n in zip((*SCORE_BUCKETS, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            family.add_metric([address], buckets, total)
        return family


# --- the server ----------------------------------------------------------------------------------


class _Handler(JsonRequestHandler):
    server: _Server
    server_version = f"cortensor-desktop/{__version__}"
    timeout = SOCKET_TIMEOUT_S  # socketserver sets it on the connection: reads and writes

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only: headers (the token) are never logged.
        log.debug("api %s - %s", self.address_string(), format % args)

    # -- plumbing -------------------------------------------------------------------------

    def _error(self, status: HTTPStatus, message: str, **headers: str) -> None:
        self._json(status, {"error": message, "status": int(status)}, headers)

    def _foreign_host(self) -> bool:
        """A Host other than this loopback address: a web page using DNS rebinding. Refused."""
        host = self.headers.get("Host")
        if host is None:
            return False
        port = self.server.server_address[1]
        allowed = {HOST, "localhost", f"{HOST}:{port}", f"localhost:{port}"}
        if host.lower() in allowed:
            return False
        self._error(HTTPStatus.FORBIDDEN, "the status API answers only to 127.0.0.1")
        return True

    # -- GET ------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if self._foreign_host():
            return
        url = urlsplit(self.path)
        if url.path in ("/1/summary", "/1/summary/"):
            self._json(HTTPStatus.OK, self.server.api.holder.document())
        elif url.path == "/1/events":
            self._events(parse_qs(url.query))
        elif url.path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            body = generate_latest(self.server.api.registry)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif url.path == "/1/commands":
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "POST a command", Allow="POST")
        else:
            self._error(
                HTTPStatus.NOT_FOUND,
                "unknown path; try /1/summary, /1/events, /metrics, POST /1/commands",
            )

    def _events(self, query: dict[str, list[str]]) -> None:
        after = self.headers.get("Last-Event-ID") or (query.get("after") or [""])[0]
        try:
            after_seq = int(after) if after else None
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "Last-Event-ID / after must be an event seq")
            return
        api = self.server.api
        sub = api.bus.subscribe(maxsize=2000, name="sse", after_seq=after_seq)
        if not api.track(sub):
            sub.close()
            self._error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"at most {MAX_EVENT_STREAMS} event streams at once",
                **{"Retry-After": "5"},
            )
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"retry: 2000\n\n")
            self.wfile.flush()
            last_write = time.monotonic()
            while not api.stopping and not sub.closed:
                event = sub.get(timeout=1.0)
                if event is None:
                    if time.monotonic() - last_write >= SSE_KEEPALIVE_S:
                        self.wfile.write(b": keepalive\n\n")
                        self.wfile.flush()
                        last_write = time.monotonic()
                    continue
                lines = [f"event: {event.to_dict().get('type', 'unknown')}"]
                if event.seq:
                    lines.insert(0, f"id: {event.seq}")
                lines.append(f"data: {event.to_json()}")
                self.wfile.write(("\n".join(lines) + "\n\n").encode())
                self.wfile.flush()
                last_write = time.monotonic()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client went away
        finally:
            api.untrack(sub)
            sub.close()

    # -- POST -----------------------------------------------------------------------------
    def do_POST(self) -> None:
        if self._foreign_host():
            return
        if urlsplit(self.path).path != "/1/commands":
            self._error(HTTPStatus.NOT_FOUND, "POST commands to /1/commands")
            return
        api = self.server.api
        if not api.authorised(self.headers.get("Authorization", "")):
            self._error(
                HTTPStatus.UNAUTHORIZED,
                f"commands need 'Authorization: Bearer <token>'; the token is in {api.token_file}",
                **{"WWW-Authenticate": 'Bearer realm="cortensor"'},
            )
            return
        declared = self.headers.get("Content-Length")
        try:
            length = int(declared) if declared is not None else 0
        except ValueError:
            length = -1
        if length == 0:  # no body, or Content-Length: 0: say so, do not parse nothing as JSON
            self._error(
                HTTPStatus.BAD_REQUEST,
                "a command needs a JSON body with its Content-Length, e.g. "
                '{"type": "pause", "reason": "maintenance"}; this request had none',
            )
            return
        if length < 0 or length > MAX_BODY:
            self._error(HTTPStatus.BAD_REQUEST, f"a command body is 1 to {MAX_BODY} bytes")
            return
        text = self.rfile.read(length).decode("utf-8", errors="replace")
        try:
            command = dataclasses.replace(command_from_json(text), source="api")
        except (WireError, ValueError, TypeError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        if command.type in REFUSED_OVER_API:
            self._error(
                HTTPStatus.FORBIDDEN,
                f"{command.type} is not accepted over the status API: the token alone must not "
                "redirect earnings; set the payout in the dashboard or with `cortensor-desktop "
                "wallet` (they need the wallet passphrase)",
            )
            return
        try:
            api.commands.put(command)
        except CommandQueueFull as exc:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc), **{"Retry-After": "1"})
            return
        self._json(
            HTTPStatus.ACCEPTED,
            {
                "accepted": True,
                "id": command.id,
                "type": command.type,
                "note": "queued; the answer is a command_handled event with this id "
                "(GET /1/events, or `commands` in /1/summary)",
            },
        )

    def do_PUT(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "GET or POST", Allow="GET, POST")

    do_DELETE = do_PUT


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: StatusApi

    def __init__(self, address: tuple[str, int], handler: type[_Handler]) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, but never more than MAX_CONNECTIONS of them."""
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class StatusApi:
    """Owns the HTTP server thread, `api.json`, and the SSE readers it must close on stop."""

    def __init__(
        self,
        holder: SummaryHolder,
        bus: EventBus,
        commands: CommandQueue,
        data_dir: Path,
        port: int = -1,
    ) -> None:
        from prometheus_client import CollectorRegistry

        if port == 0:
            raise ValueError("port 0 means the API is off; do not build a server")
        self.holder = holder
        self.bus = bus
        self.commands = commands
        self.data_dir = data_dir
        self.requested_port = port
        self.token = load_or_create_token(data_dir)
        self.token_file = data_dir / TOKEN_FILE_NAME
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SummaryCollector(holder))
        self.stopping = False
        self._subs: set[Any] = set()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def api_file(self) -> Path:
        return self.data_dir / API_FILE_NAME

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def authorised(self, header: str) -> bool:
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), self.token.encode())

    def start(self) -> None:
        port = max(0, self.requested_port)  # -1: let the OS pick a free port
        try:
            self._server = _Server((HOST, port), _Handler)
        except OSError as exc:
            raise OSError(f"the status API cannot listen on {HOST}:{port}: {exc}") from None
        self._server.api = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.5}, name="status-api"
        )
        self._thread.daemon = True
        self._thread.start()
        self._write_api_file()
        log.info("status API on %s (summary /1/summary, events /1/events, /metrics)", self.url)

    def _write_api_file(self) -> None:
        document = {
            "host": HOST,
            "port": self.port,
            "pid": os.getpid(),
            "url": self.url,
            "version": __version__,
            "started_at": time.time(),
            "token_file": str(self.token_file),
        }
        tmp = self.api_file.with_name(f".{API_FILE_NAME}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(document, indent=2) + "\n")
        os.replace(tmp, self.api_file)

    def track(self, sub: Any) -> bool:
        """Count an event stream in; False when MAX_EVENT_STREAMS are open already."""
        with self._lock:
            if len(self._subs) >= MAX_EVENT_STREAMS:
                return False
            self._subs.add(sub)
            return True

    def untrack(self, sub: Any) -> None:
        with self._lock:
            self._subs.discard(sub)

    def stop(self) -> None:
        """Close the event streams, stop the server, remove api.json; safe to call twice."""
        if self.stopping:
            return
        self.stopping = True
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.close()  # wakes the SSE handlers so their threads end
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(self.api_file.read_text(encoding="utf-8")).get("pid") == os.getpid():
                self.api_file.unlink()
