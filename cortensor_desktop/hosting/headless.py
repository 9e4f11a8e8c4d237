"""The headless reader of the engine's event stream, and the signals that stop a headless run.

`log_event` writes one log line per event that matters, in the words of
`cortensor_desktop/event_text.py` (the dashboard's log uses the same words). Lines go through
logging, so they reach the log file and stderr in the configured format (text or JSON lines,
where the event rides along as fields) and pass the redaction filter. `StopSignals` turns
SIGTERM/SIGINT into a clean stop and SIGHUP into a config reload. Never imports textual or rich:
servers run this path.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from types import FrameType
from typing import ClassVar

from cortensor_desktop.event_text import format_event
from cortensor_desktop.logs import EVENT_FIELDS
from engine.state.events import Alert, Event

log = logging.getLogger("cortensor_desktop.node")


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
