"""The miner's own transactions and reads of its standing: sends, pings, points, the away flag.

Every transaction the miner sends goes through `transact`: it waits for the receipt (the chain
client's sends do), publishes how it went as the caller's event, and counts it in ChainHealth
(three failures in a row raise an alert). Nothing here decides what to send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chain.client import ChainClient
from chain.errors import ChainError, RpcUnavailable
from chain.wrappers import STAGE_COUNT, STAGE_PRECOMMIT
from engine.node.chain_health import ChainHealth
from engine.protocol import NetworkStage, TaskRole
from engine.state.events import Event, LogLine, NetworkTaskStage, PingSent, PointsUpdated, TxStatus

log = logging.getLogger(__name__)

Report = Callable[[TxStatus, str | None, str], Event]  # (status, tx hash, error) -> event


class MinerChain:
    def __init__(
        self,
        client: ChainClient,
        address: str,
        publish: Callable[[Event], None],
        health: ChainHealth,
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._address = address
        self._publish = publish
        self._health = health
        self._clock = clock
        self._last_ping: float | None = None

    def transact(
        self, send: Callable[[], str], report: Report, again_after_outage: bool = False
    ) -> str | None:
        """Send one transaction and publish how it went; the hash, or None when it failed.

        `again_after_outage`: an unreachable RPC is raised on (after the report), so the event
        that called for the send is handled again once the chain answers, for a duty nothing
        else would bring back."""
        try:
            tx_hash = send()
        except ChainError as exc:
            self._publish(report(TxStatus.FAILED, None, str(exc)))
            self._health.tx_failed(str(exc))
            if again_after_outage and isinstance(exc, RpcUnavailable):
                raise
            return None
        self._publish(report(TxStatus.CONFIRMED, tx_hash, ""))
        self._health.tx_confirmed()
        return tx_hash

    def send_network(
        self,
        session_id: int,
        stage: NetworkStage,
        role: TaskRole,
        send: Callable[[], str],
        detail: str = "",
    ) -> str | None:
        """A network task's transaction (create, prepare), reported as its stage.

        One lost to an RPC outage is sent again when the event is handled again after it
        (the state check before it skips one that did land): the journal keeps only
        commit-reveal work, and otherwise the role is lost and the miner recorded late."""

        def report(status: TxStatus, tx_hash: str | None, error: str) -> Event:
            return NetworkTaskStage(
                session_id=session_id,
                stage=stage,
                task_role=role,
                status=status,
                tx_hash=tx_hash,
                detail=error or detail,
            )

        return self.transact(send, report, again_after_outage=True)

    def set_away(self, away: bool) -> bool:
        """Out of selection and the pool on chain (paused), or back; whether it went through."""

        def report(status: TxStatus, tx_hash: str | None, error: str) -> Event:
            what = "away: out of selection and the pool" if away else "back in selection"
            ok = status is TxStatus.CONFIRMED
            return LogLine(
                level="info" if ok else "warning",
                logger="miner",
                message=f"{what} (tx {tx_hash})" if ok else f"could not mark {what}: {error}",
            )

        return bool(self.transact(lambda: self._client.registry.set_away(away).tx_hash, report))

    def ping_if_due(self, interval_s: float) -> None:
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < interval_s:
            return
        self._last_ping = now
        try:
            result = self._client.stats.ping()
        except ChainError as exc:
            log.info("ping refused: %s", exc)  # e.g. faster than the contract's minimum interval
            return
        self._publish(
            PingSent(
                tx_hash=result.tx_hash,
                status=TxStatus.CONFIRMED,
                gas_used=int(result.receipt["gasUsed"]),
            )
        )

    def publish_points(self) -> None:
        stats = self._client.stats.stats(self._address)
        stages = [self._client.stats.stage(self._address, s) for s in range(STAGE_COUNT)]
        counter, points = stages[STAGE_PRECOMMIT]
        self._publish(
            PointsUpdated(
                points=sum(p for _, p in stages),
                level=int(stats["level"]),
                precommit_points=points,
                precommit_counter=counter,
                precommit_score=points / counter if counter else None,
                ping_count=int(stats["pings"]),
            )
        )

    def head(self) -> int:
        return int(self._client.web3.eth.block_number)
