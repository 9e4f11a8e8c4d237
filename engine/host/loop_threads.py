"""The node's loop threads (miners, oracles), watched: one that dies is reported, not hidden.

A loop catches what belongs to one task or one step (RPC outages, reverts, a task's own
failure). Anything that still escapes is a bug or a broken machine (disk full, a corrupt
database), and a node that keeps serving its status API with a dead loop looks healthy to its
service manager while doing nothing. So a dead loop is recorded here, logged with its traceback
and published as an alert; the headless runner then exits non-zero, and systemd restarts it
(`Restart=on-failure`), resuming from the journal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from engine import failpoints
from engine.state.events import Alert, AlertKind, EventBus, Severity

log = logging.getLogger(__name__)

Loop = Callable[[threading.Event], None]


@dataclass(frozen=True)
class LoopDeath:
    name: str
    error: str

    def describe(self) -> str:
        return f"the {self.name} loop died: {self.error}"


class LoopThreads:
    """Start loops on daemon threads; `death` holds the first one that ended by an exception."""

    def __init__(self, stop: threading.Event, bus: EventBus) -> None:
        self._stop = stop
        self._bus = bus
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.death: LoopDeath | None = None

    def start(self, name: str, role: str, loop: Loop) -> None:
        """`role` ("miner", "oracle") names the failpoint `ROLE-loop` crash tests inject."""

        def guarded() -> None:
            try:
                failpoints.fail(f"{role}-loop")
                loop(self._stop)
            except BaseException as exc:
                self._died(name, exc)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _died(self, name: str, exc: BaseException) -> None:
        death = LoopDeath(name, f"{type(exc).__name__}: {exc}")
        log.critical("%s", death.describe(), exc_info=exc)
        with self._lock:
            if self.death is None:
                self.death = death
        self._bus.publish(
            Alert(kind=AlertKind.STALL, severity=Severity.ERROR, message=death.describe())
        )

    def join(self, timeout_s: float) -> None:
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self._threads.clear()
