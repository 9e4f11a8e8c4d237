"""The chain alerts operators asked for, raised once and cleared once, by every node loop.

- `rpc_down`: a step found no RPC URL answering (the client already retried every URL with
  backoff); later failures of the same outage only log at debug. The first step that reaches
  the chain again clears it and tells the loop to pick up work the outage interrupted.
- `rpc_failover`: the client moved to another URL of the profile (its `generation` went up).
- `tx_failed_repeatedly`: several transactions in a row failed (reverted, refused, underpriced);
  cleared by the next one that is confirmed.
A flapping condition must not flood the event stream, so each alert is published on the change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from chain.errors import RpcUnavailable
from chain.rpc import Backend
from engine.state.events import Alert, AlertKind, Event, Severity

log = logging.getLogger(__name__)
TX_FAILURES_TO_ALERT = 3


class ChainHealth:
    def __init__(
        self,
        backend: Backend,
        publish: Callable[[Event], object],
        tx_failures_to_alert: int = TX_FAILURES_TO_ALERT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._publish = publish
        self._tx_failures_to_alert = tx_failures_to_alert
        self._clock = clock
        self._generation = backend.generation
        self.down_since: float | None = None
        self.outages = 0
        self.tx_failure_streak = 0

    @property
    def rpc_down(self) -> bool:
        return self.down_since is not None

    # -- node loop steps ------------------------------------------------------------------
    def step_ok(self) -> bool:
        """A step reached the chain; True when this ends an outage (resume interrupted work)."""
        self._check_failover()
        if self.down_since is None:
            return False
        gone = self._clock() - self.down_since
        self.down_since = None
        message = f"the chain answers again ({self._where()}) after {gone:.0f} s"
        self._alert(AlertKind.RPC_DOWN, message, False)
        return True

    def step_failed(self, error: RpcUnavailable) -> None:
        """A step found no RPC answering."""
        self._check_failover()
        if self.down_since is not None:
            log.debug("RPC still down: %s", error)
            return
        self.down_since = self._clock()
        self.outages += 1
        message = f"no RPC URL answers ({self._where()}): {error}"
        self._alert(AlertKind.RPC_DOWN, message, True, Severity.ERROR)

    # -- transactions ---------------------------------------------------------------------
    def tx_confirmed(self) -> None:
        if self.tx_failure_streak >= self._tx_failures_to_alert:
            self._alert(AlertKind.TX_FAILED_REPEATEDLY, "a transaction went through again", False)
        self.tx_failure_streak = 0

    def tx_failed(self, detail: str) -> None:
        self.tx_failure_streak += 1
        if self.tx_failure_streak == self._tx_failures_to_alert:
            message = f"{self.tx_failure_streak} transactions in a row failed; last: {detail}"
            self._alert(AlertKind.TX_FAILED_REPEATEDLY, message, True)

    # -- internals ------------------------------------------------------------------------
    def _check_failover(self) -> None:
        generation = self._backend.generation
        if generation != self._generation:
            self._generation = generation
            self._alert(AlertKind.RPC_FAILOVER, f"RPC failed over to {self._where()}", True)

    def _where(self) -> str:
        return self._backend.description

    def _alert(
        self, kind: AlertKind, message: str, active: bool, severity: Severity = Severity.WARNING
    ) -> None:
        level = severity if active else Severity.INFO
        self._publish(Alert(kind=kind, severity=level, message=message, active=active))
