"""The chain alerts operators asked for, raised once and cleared once, by every node loop.

- `rpc_down`: no RPC URL answered (the client already retried every URL with backoff); cleared
  by the next step that reaches the chain.
- `rpc_failover`: the client moved to another URL of the profile (its `generation` went up).
- `tx_failed_repeatedly`: several transactions in a row failed (reverted, refused, underpriced);
  cleared by the next one that is confirmed.
A flapping condition must not flood the event stream, so each alert is published on the change.
"""

from __future__ import annotations

from collections.abc import Callable

from chain.errors import ChainError, RpcUnavailable
from chain.rpc import Backend
from engine.events import Alert, AlertKind, Event, Severity

TX_FAILURES_TO_ALERT = 3


class ChainHealth:
    def __init__(
        self,
        backend: Backend,
        publish: Callable[[Event], object],
        tx_failures_to_alert: int = TX_FAILURES_TO_ALERT,
    ) -> None:
        self._backend = backend
        self._publish = publish
        self._tx_failures_to_alert = tx_failures_to_alert
        self._generation = backend.generation
        self.rpc_down = False
        self.tx_failure_streak = 0

    # -- node loop steps ------------------------------------------------------------------
    def step_ok(self) -> None:
        if self.rpc_down:
            self.rpc_down = False
            self._alert(AlertKind.RPC_DOWN, f"the chain answers again ({self._where()})", False)
        self._check_failover()

    def step_failed(self, error: ChainError) -> None:
        self._check_failover()
        if isinstance(error, RpcUnavailable) and not self.rpc_down:
            self.rpc_down = True
            self._alert(AlertKind.RPC_DOWN, f"no RPC URL answers: {error}", True, Severity.ERROR)

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
