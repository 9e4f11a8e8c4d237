"""RPC outages and failovers as alerts: one alert per outage, cleared when the chain answers again.

The miner and oracle loops report every step's outcome here. The first step that finds no RPC
answering raises an `rpc_down` alert (later failures of the same outage only log at debug), the
first step that works again clears it and tells the loop to pick up work the outage interrupted,
and a switch to another RPC URL of the profile raises an `rpc_failover` alert.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from chain.errors import RpcUnavailable
from chain.rpc import Backend
from engine.events import Alert, AlertKind, Event, Severity

log = logging.getLogger(__name__)


class RpcHealth:
    def __init__(
        self,
        backend: Backend,
        publish: Callable[[Event], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._publish = publish
        self._clock = clock
        self._generation = backend.generation
        self.down_since: float | None = None
        self.outages = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, exc: RpcUnavailable) -> None:
        """A step found no RPC answering."""
        if self.down_since is not None:
            log.debug("RPC still down: %s", exc)
            return
        self.down_since = self._clock()
        self.outages += 1
        log.debug("RPC down: %s", exc)  # the alert itself is logged by the readers
        self._publish(
            Alert(
                kind=AlertKind.RPC_DOWN,
                severity=Severity.ERROR,
                message=f"no RPC answers ({self._backend.description}): {exc}",
            )
        )

    def succeeded(self) -> bool:
        """A step reached the chain; True when this ends an outage (resume interrupted work)."""
        self._check_failover()
        if self.down_since is None:
            return False
        gone = self._clock() - self.down_since
        self.down_since = None
        self._publish(
            Alert(
                kind=AlertKind.RPC_DOWN,
                severity=Severity.INFO,
                message=f"RPC {self._backend.description} answers again after {gone:.0f} s",
                active=False,
            )
        )
        return True

    def _check_failover(self) -> None:
        generation = self._backend.generation
        if generation == self._generation:
            return
        self._generation = generation
        self._publish(
            Alert(
                kind=AlertKind.RPC_FAILOVER,
                severity=Severity.WARNING,
                message=f"failed over to RPC {self._backend.description}",
            )
        )
