"""Follow the chain: wait for it to move, then read several contract events at once, in order.

The miner and the oracle react to events (a session requested, a window opened) rather than
polling contract state, so they act as soon as the chain moves. They use the two halves here as
a pair, once per loop step:

- `ChainWaiter.wait` returns at once on a chain that announces blocks (the in-process chain's
  `wait_for_block`, so a node reacts to a transaction as soon as it lands), else after a poll
  interval (over HTTP: anvil, a testnet);
- `ChainWatcher.poll` reads every cursor over the blocks since its last poll, never from block 0
  (which grows quadratically on the in-process chain), all up to the same head, so events of
  different types interleave in the order they happened.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from chain.events import ChainEvent, EventCursor

# How far back a freshly started node looks, so a restart mid-session still sees the session.
DEFAULT_LOOKBACK_BLOCKS = 2_000


class _Watchable(Protocol):
    def cursor(self, event_name: str, from_block: int) -> EventCursor: ...


class ChainWatcher:
    def __init__(
        self,
        head: int,
        sources: Sequence[tuple[_Watchable, str]],
        lookback_blocks: int = DEFAULT_LOOKBACK_BLOCKS,
        floor_block: int = 0,
    ) -> None:
        # Never before the network's deploy block (the profile's): nothing of it is older, and
        # a public RPC caps how many blocks one log query may span.
        start = max(floor_block, head - lookback_blocks)
        self._cursors = [wrapper.cursor(name, start) for wrapper, name in sources]

    def poll(self, head: int) -> list[ChainEvent]:
        """All new events up to `head`, in chain order; all or nothing.

        Every cursor is read before any moves: when the RPC fails on the third cursor, the
        first two must not have skipped past events nobody handled.
        """
        reads = [cursor.read(head) for cursor in self._cursors]
        found: list[ChainEvent] = []
        for cursor, (events, next_block) in zip(self._cursors, reads, strict=True):
            found.extend(events)
            cursor.next_block = next_block
        return sorted(found, key=lambda e: (e.block_number, e.log_index))


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
