"""Follow the chain: wait for it to move, then read several contract events at once, in order.

The miner and the oracle react to events (a session requested, a window opened) rather than
polling contract state, so they act as soon as the chain moves. They use the two halves here as
a pair, once per loop step:

- `ChainWaiter.wait` returns at once on a chain that announces blocks (the in-process chain's
  `wait_for_block`, so a node reacts to a transaction as soon as it lands), else after a poll
  interval (over HTTP: anvil, a testnet);
- `ChainWatcher.poll` reads every cursor over the blocks since its last poll, never from block 0
  (which grows quadratically on the in-process chain) and never from before the network's
  deploy block, all up to the same head, so events of different types interleave in the order
  they happened.

Reorganisations: the watcher remembers the hash of every head it polled (the last
`REMEMBERED_HEADS`). When the block it saw last is no longer on chain (another hash at that
height, or the chain is now shorter: a reorg, or a chain that came back *behind*, e.g. anvil
restarted from an older save) it finds the newest remembered block that still is, tells the node
(`on_reorg`, which may ask to re-read from an earlier block) and moves every cursor back, so the
events of the new history are read (again). Handlers must be idempotent; the node's journal and
the chain state decide what is sent again.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chain.events import ChainEvent, EventCursor

log = logging.getLogger(__name__)

# How far back a freshly started node looks, so a restart mid-session still sees the session.
DEFAULT_LOOKBACK_BLOCKS = 2_000
REMEMBERED_HEADS = 256


class _Watchable(Protocol):
    def cursor(self, event_name: str, from_block: int) -> EventCursor: ...


@dataclass(frozen=True)
class Reorg:
    """The chain no longer holds a block the watcher saw: history after `fork_block` changed."""

    seen_number: int  # the last block the watcher had read
    seen_hash: str
    head: int  # the chain's head when it noticed
    fork_block: int  # the newest block of the old history still on chain (-1: none remembered)

    @property
    def behind(self) -> bool:
        """The chain came back shorter than what the node saw (e.g. restarted from a save)."""
        return self.head < self.seen_number

    def describe(self) -> str:
        what = "came back behind" if self.behind else "reorganised"
        return (
            f"the chain {what}: block {self.seen_number} ({self.seen_hash[:10]}) is gone, "
            f"head {self.head}; re-reading from block {self.fork_block + 1}"
        )


OnReorg = Callable[[Reorg], int | None]  # returns the block to re-read from (None: fork + 1)


class ChainWatcher:
    def __init__(
        self,
        head: int,
        sources: Sequence[tuple[_Watchable, str]],
        lookback_blocks: int = DEFAULT_LOOKBACK_BLOCKS,
        floor_block: int = 0,
        *,
        web3: Any | None = None,
        on_reorg: OnReorg | None = None,
        sent_in: Callable[[], tuple[int, str] | None] | None = None,
    ) -> None:
        """`web3` turns reorg detection on (it reads block hashes); `floor_block` is the
        network's deploy block (the profile's): nothing before it is ever read, and a public
        RPC caps how many blocks one log query may span. `sent_in` gives the newest
        block holding one of the node's own transactions: seen too, even before a poll reached
        it, so a reorg that drops it is noticed."""
        self.floor_block = max(0, floor_block)
        start = max(self.floor_block, head - lookback_blocks)
        self._cursors = [wrapper.cursor(name, start) for wrapper, name in sources]
        self._web3 = web3
        self._on_reorg = on_reorg
        self._sent_in = sent_in
        self._own_noted: tuple[int, str] | None = None
        self._heads: deque[tuple[int, str]] = deque(maxlen=REMEMBERED_HEADS)
        self.reorgs: list[Reorg] = []
        self.head: int | None = None  # the block the last poll read up to
        # The (number, hash) the last poll read up to. Not `_heads[-1]`: that may be the block of
        # our own receipt, noted for reorgs before any poll read its logs.
        self._polled: tuple[int, str] | None = None

    def poll(self, head: int | None = None) -> list[ChainEvent]:
        """All new events up to `head` (default: the latest block), in chain order; all or
        nothing.

        Every cursor is read before any moves: when the RPC fails on the third cursor, the
        first two must not have skipped past events nobody handled.
        """
        head_hash: str | None = None
        if self._web3 is not None:
            self._note_own_block()
            head, head_hash, parent = self._head_block(head)
            if self._polled == (head, head_hash):
                self.head = head
                return []  # nothing new: no eth_getLogs at all
            self._check_reorg(head, head_hash, parent)
        elif head is None:
            raise ValueError("a watcher without web3 needs the head to poll to")
        reads = [cursor.read(head) for cursor in self._cursors]
        found: list[ChainEvent] = []
        for cursor, (events, next_block) in zip(self._cursors, reads, strict=True):
            found.extend(events)
            cursor.next_block = next_block
        if head_hash is not None:
            if not self._heads or self._heads[-1] != (head, head_hash):
                self._heads.append((head, head_hash))
            self._polled = (head, head_hash)
        self.head = head
        return sorted(found, key=lambda e: (e.block_number, e.log_index))

    # -- reorgs ---------------------------------------------------------------------------
    def _note_own_block(self) -> None:
        own = self._sent_in() if self._sent_in is not None else None
        if own is None or own == self._own_noted:
            return  # each receipt's block once: after a reorg it may be the block that is gone
        self._own_noted = own
        if self._heads and own[0] > self._heads[-1][0]:
            self._heads.append(own)

    def _head_block(self, head: int | None) -> tuple[int, str, str]:
        block = self._web3.eth.get_block("latest" if head is None else head)  # type: ignore[union-attr]
        return int(block["number"]), _hex(block["hash"]), _hex(block["parentHash"])

    def _hash_at(self, number: int) -> str | None:
        try:
            block = self._web3.eth.get_block(number)  # type: ignore[union-attr]
        except Exception as exc:  # web3's BlockNotFound: the chain is shorter now
            if type(exc).__name__ != "BlockNotFound":
                raise
            return None
        return _hex(block["hash"]) if block is not None else None

    def _check_reorg(self, head: int, head_hash: str, parent: str) -> None:
        if not self._heads:
            return
        seen_number, seen_hash = self._heads[-1]
        if (head, head_hash) == (seen_number, seen_hash):
            return  # the head is the block we noted (our own receipt's): nothing lost
        if head == seen_number + 1 and parent == seen_hash:
            return  # one block on top of what we saw: no extra request
        if head > seen_number and self._hash_at(seen_number) == seen_hash:
            return  # the chain grew on top of what we saw
        fork = self._fork_point(head)
        reorg = Reorg(seen_number, seen_hash, head, fork)
        log.warning("%s", reorg.describe())
        self.reorgs.append(reorg)
        asked = self._on_reorg(reorg) if self._on_reorg is not None else None
        rewind = fork + 1 if asked is None else min(asked, fork + 1)
        rewind = max(self.floor_block, rewind)
        for cursor in self._cursors:
            cursor.next_block = min(cursor.next_block, rewind)

    def _fork_point(self, head: int) -> int:
        """The newest remembered block still on chain; forgets the ones that are not."""
        oldest = self._heads[0][0]
        while self._heads:
            number, known = self._heads[-1]
            if number <= head and self._hash_at(number) == known:
                return number
            self._heads.pop()
        # Deeper than REMEMBERED_HEADS polls: re-read from before the oldest block remembered.
        return oldest - 1


def _hex(value: Any) -> str:
    return value.to_0x_hex() if hasattr(value, "to_0x_hex") else str(value)


class ChainWaiter:
    """Waits for the next block, or a poll interval where the chain announces none."""

    def __init__(self, web3: Any, poll_interval_s: float) -> None:
        self._provider = web3.provider
        self._announces = callable(getattr(self._provider, "wait_for_block", None))
        self._seen = int(getattr(self._provider, "blocks_announced", 0))
        self.poll_interval_s = poll_interval_s

    def wait(self, stop: threading.Event) -> None:
        """Return when a new block is mined, the poll interval passed, or `stop` is set."""
        if not self._announces:
            stop.wait(self.poll_interval_s)
            return
        # A bounded wait keeps stop responsive even when no block comes.
        self._seen = self._provider.wait_for_block(self._seen, self.poll_interval_s)
