"""The headless reader of the engine's event stream: one log line per event that matters.

The TUI and this are two readers of the same stream. Lines go through logging, so they reach
the log file and stderr in the configured format (text or JSON lines) and pass the redaction
filter. Full transaction hashes are 64 hex digits, the shape of a private key, which the filter
masks; log lines therefore show them abbreviated, and `--record FILE` keeps the full events.
Never imports textual or rich: servers run this path.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from types import FrameType
from typing import ClassVar

from cortensor_desktop.logs import EVENT_FIELDS
from engine.state.events import (
    Alert,
    CommandHandled,
    Event,
    EventsDropped,
    InferenceFinished,
    NetworkTaskStage,
    NodeStateChanged,
    PingSent,
    PointsUpdated,
    PreflightStep,
    ValidationResult,
)

log = logging.getLogger("cortensor_desktop.node")


def short(value: str | None, keep: int = 10) -> str:
    if not value:
        return "-"
    return value if len(value) <= keep + 2 else f"{value[:keep]}…"


def _network_task(e: NetworkTaskStage) -> str:
    detail = f" ({e.detail})" if e.detail else ""
    return (
        f"session {e.session_id} {e.stage.value:<9} {e.task_role.value:<8} "
        f"{short(e.node)} {e.status.value} tx {short(e.tx_hash)}{detail}"
    )


def _validation(e: ValidationResult) -> str:
    cosine = f"{e.cosine:.2f}" if e.cosine is not None else "-"
    verdict = "PASS" if e.passed else f"FAIL ({', '.join(e.failed_checks)})"
    return (
        f"session {e.session_id} validate  miner {short(e.miner)} top1 "
        f"{e.top1_agreement:.2f} (min {e.top1_min:.2f}) cosine {cosine} "
        f"ending {'ok' if e.ended_properly else 'bad'}: {verdict}"
    )


def _points(e: PointsUpdated) -> str:
    score = f"{e.precommit_score:.0%}" if e.precommit_score is not None else "-"
    return (
        f"points {short(e.node)}: {e.points} points, level {e.level}, "
        f"precommit score {score}, pings {e.ping_count}"
    )


def format_event(event: Event) -> str | None:
    """One human line for the events an operator watches; None for the rest."""
    match event:
        case Alert():
            if not event.active:
                return f"alert {event.kind.value} cleared: {event.message}"
            return f"ALERT {event.kind.value} ({event.severity.value}): {event.message}"
        case NetworkTaskStage():
            return _network_task(event)
        case ValidationResult():
            return _validation(event)
        case PointsUpdated():
            return _points(event)
        case PreflightStep():
            return f"preflight {short(event.node)}: {event.step} {event.status.value}"
        case NodeStateChanged():
            why = f" ({event.detail})" if event.detail else ""
            return f"node {short(event.node)} is {event.state.value}{why}"
        case CommandHandled():
            verdict = "done" if event.accepted else "refused"
            note = f": {event.message}" if event.message else ""
            return f"command {event.command} {short(event.command_id, 8)} {verdict}{note}"
        case PingSent():
            return f"ping {short(event.node)} tx {short(event.tx_hash)}"
        case InferenceFinished():
            return (
                f"inference {short(event.node)}: {event.generated_tokens} tokens at "
                f"{event.tokens_per_s:.1f} tok/s (first token {event.ttft_s * 1000:.0f} ms)"
            )
        case EventsDropped():
            return f"the log reader fell behind and skipped {event.count} events"
    return None


def log_event(event: Event) -> None:
    line = format_event(event)
    if line is None:
        return
    level = logging.WARNING if isinstance(event, Alert) and event.active else logging.INFO
    log.log(level, "%s", line, extra={EVENT_FIELDS: event.to_dict()})


class StopSignals:
    """SIGTERM and SIGINT (and SIGBREAK on Windows) set one event; the main loop stops cleanly.

    SIGHUP (where the OS has it) asks for a config reload: the handler only raises a flag, which
    the run loop takes with `take_reload()` (a signal handler must not take locks the loop holds).
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.received: str | None = None
        self._reload_pending = False
        self.finished = threading.Event()  # set by the run loop once it has stopped cleanly
        self._console_handler: object = None

    def install(self) -> None:
        names = ["SIGTERM", "SIGINT", "SIGBREAK"]
        for name in names:
            sig = getattr(signal, name, None)
            if sig is not None:
                signal.signal(sig, self._handle)
        hup = getattr(signal, "SIGHUP", None)
        if hup is not None:
            signal.signal(hup, self._reload)
        if sys.platform == "win32":
            self._install_console_close()

    # Windows: closing the console window, logging off or shutting down are not signals; the
    # console control handler gets them, on its own thread, and the process dies when it returns.
    _CONSOLE_EVENTS: ClassVar[dict[int, str]] = {
        2: "CTRL_CLOSE_EVENT",
        5: "CTRL_LOGOFF_EVENT",
        6: "CTRL_SHUTDOWN_EVENT",
    }

    def _install_console_close(self) -> None:  # pragma: no cover - Windows only, untested here
        if sys.platform != "win32":
            return
        import ctypes

        handler_type = ctypes.WINFUNCTYPE(ctypes.c_bool, ctypes.c_uint)

        def on_console_event(event: int) -> bool:
            name = self._CONSOLE_EVENTS.get(event)
            if name is None:
                return False  # Ctrl+C and Ctrl+Break arrive as SIGINT and SIGBREAK
            self.received = name
            self.stop.set()
            # Windows allows about 5 s before it ends the process: give the run loop its stop.
            self.finished.wait(4.5)
            return True

        self._console_handler = handler_type(on_console_event)  # kept alive: ctypes callback
        ctypes.windll.kernel32.SetConsoleCtrlHandler(self._console_handler, True)

    def _reload(self, _signum: int, _frame: FrameType | None) -> None:
        self._reload_pending = True

    def take_reload(self) -> bool:
        """True once per SIGHUP received since the last call."""
        pending, self._reload_pending = self._reload_pending, False
        return pending

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name
        self.stop.set()

    def wait(self, deadline: float | None) -> None:
        while not self.stop.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            self.stop.wait(0.5 if remaining is None else min(0.5, remaining))
