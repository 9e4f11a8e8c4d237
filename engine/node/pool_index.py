"""Who is in the pool, from NodeRegistry's events: bounded work per task, whatever the pool size.

Scanning the registry (`present_miners()`: one call per registered miner, three with the model
and status checks) made every network and user task cost O(pool) RPC calls off chain. The
registry announces every change (registered, spec updated, away, into the user-task pool, out
of it, its price floor), so this index reads those events once from the network's deploy block
and then only the new ones: a task costs the same few calls with 8 miners or 10,000. The
contracts still check every assignment, so an index one block behind can only cost a rejected
transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from chain.client import ChainClient
from chain.events import ChainEvent
from chain.wrappers import Tier
from engine.node.chain_watch import ChainWatcher

REGISTRY_EVENTS = (
    "NodeRegistered",
    "NodeSpecUpdated",
    "NodeAwayChanged",
    "NodeEphemeral",
    "NodeRemovedFromPool",
    "PriceFloorSet",
)


@dataclass
class PoolMember:
    address: str
    tier: int
    models: frozenset[bytes]
    away: bool = False
    pooled: bool = False  # Ephemeral: in the user-task pool
    price_floor: int = 0  # wei per answer token it accepts at least

    def serves(
        self, model: bytes, full_precision: bool = False, max_floor: int | None = None
    ) -> bool:
        tier_ok = not full_precision or self.tier == Tier.GPU_FULL
        floor_ok = max_floor is None or self.price_floor <= max_floor
        return self.pooled and not self.away and model in self.models and tier_ok and floor_ok


class PoolIndex:
    """Thread-safe: a router keeps one for all its requests, refreshed by each of them."""

    def __init__(self, client: ChainClient, from_block: int | None = None) -> None:
        self._client = client
        self._from = client.deployment.deploy_block if from_block is None else from_block
        self._members: dict[str, PoolMember] = {}  # registration order, as the registry's list
        # Kept up to date by the events, so a query walks only the miners it could return,
        # never the away or never-pooled rest of the registry (most of it, in a large one).
        self._present: dict[str, PoolMember] = {}  # not away
        self._candidates: dict[str, PoolMember] = {}  # not away and in the user-task pool
        self._lock = threading.Lock()
        self._watcher = self._new_watcher()

    def _new_watcher(self) -> ChainWatcher:
        sources = [(self._client.registry, name) for name in REGISTRY_EVENTS]
        return ChainWatcher(0, sources, lookback_blocks=0, floor_block=self._from)

    def refresh(self, head: int | None = None) -> None:
        """Apply the registry events up to `head` (default: the latest block)."""
        if head is None:
            head = int(self._client.web3.eth.block_number)
        with self._lock:
            for event in self._watcher.poll(head):
                self._apply(event)

    def rebuild(self) -> None:
        """After a reorg: forget everything and read again from the deploy block."""
        with self._lock:
            self._members.clear()
            self._present.clear()
            self._candidates.clear()
            self._watcher = self._new_watcher()

    # -- queries --------------------------------------------------------------------------
    def present(self) -> list[str]:
        """Registered miners that are not away: the ones selection may pick."""
        with self._lock:
            return list(self._present)

    def present_count(self) -> int:
        with self._lock:
            return len(self._present)

    def serving(
        self, model: bytes, full_precision: bool = False, max_floor: int | None = None
    ) -> list[str]:
        """Miners in the user-task pool, not away, that serve `model` (at full precision),
        asking at most `max_floor` wei per answer token."""
        with self._lock:
            members = list(self._candidates.values())
        return [m.address for m in members if m.serves(model, full_precision, max_floor)]

    def members(self) -> Iterable[PoolMember]:
        with self._lock:
            return list(self._members.values())

    # -- events ---------------------------------------------------------------------------
    def _apply(self, event: ChainEvent) -> None:
        args = event.args
        node = str(args["node"])
        if event.name == "NodeRegistered":
            models = frozenset(bytes(m) for m in args["models"])
            self._members[node] = PoolMember(node, int(args["tier"]), models)
            self._place(self._members[node])
            return
        member = self._members.get(node)
        if member is None:
            return  # registered before the deploy block the profile names: not this network's
        self._update(member, event)
        self._place(member)

    def _place(self, member: PoolMember) -> None:
        """Keep the present and candidate sets in step with the member's flags."""
        for subset, belongs in (
            (self._present, not member.away),
            (self._candidates, member.pooled and not member.away),
        ):
            if belongs:
                subset[member.address] = member
            else:
                subset.pop(member.address, None)

    @staticmethod
    def _update(member: PoolMember, event: ChainEvent) -> None:
        args = event.args
        if event.name == "NodeSpecUpdated":
            member.tier = int(args["tier"])
            member.models = frozenset(bytes(m) for m in args["models"])
        elif event.name == "NodeAwayChanged":
            member.away = bool(args["away"])
        elif event.name == "NodeEphemeral":
            member.pooled = True
        elif event.name == "NodeRemovedFromPool":
            member.pooled = False
        elif event.name == "PriceFloorSet":
            member.price_floor = int(args["weiPerToken"])
