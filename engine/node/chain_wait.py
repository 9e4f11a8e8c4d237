"""Wait for the chain to move: at once on a chain that announces blocks, else a poll interval.

The in-process chain announces every block it mines (`wait_for_block`), so a node reacts to a
transaction as soon as it lands; over HTTP (anvil, a testnet) a node polls.
"""

from __future__ import annotations

import threading
from typing import Any


class ChainWaiter:
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
