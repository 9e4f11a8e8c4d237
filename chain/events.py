"""Reading contract events without scanning from block 0, in pages a public RPC accepts.

`get_logs` from block 0 grows quadratically on the in-process chain, and public RPCs refuse an
`eth_getLogs` over more than some number of blocks (1,000 or fewer on many hosted endpoints), so
reads are always over a bounded range: an EventCursor remembers where it stopped and reads forward
in pages of a `LogPager`. The pager's span comes from the config (`[chain] log_range_blocks`); an
RPC that refuses a page as too large halves the span (shared by every cursor of the client, so the
next reads fit at once) and the same page is read again in smaller pieces: no event is skipped.
`events_in_receipt` decodes a transaction's own logs without any scan.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from web3.contract import Contract
from web3.types import TxReceipt

from chain.errors import ChainError

log = logging.getLogger(__name__)
DEFAULT_LOG_SPAN = 1000
# What RPCs answer when an eth_getLogs covers too many blocks or results (geth, erigon, alchemy,
# infura, quicknode, ankr, publicnode, anvil's --max-logs-range... phrase it differently).
_TOO_LARGE = (
    "block range",
    "range is too",
    "range too",
    "too large",
    "too wide",
    "too many",
    "more than",
    "exceed",
    "limited to",
    "max range",
    "query timeout",
)


@dataclass(frozen=True)
class ChainEvent:
    contract: str
    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str
    log_index: int


def _to_event(contract_name: str, raw: Any) -> ChainEvent:
    return ChainEvent(
        contract=contract_name,
        name=str(raw["event"]),
        args=dict(raw["args"]),
        block_number=int(raw["blockNumber"]),
        tx_hash=raw["transactionHash"].to_0x_hex(),
        log_index=int(raw["logIndex"]),
    )


def events_in_receipt(
    contract_name: str, contract: Contract, receipt: TxReceipt
) -> list[ChainEvent]:
    """Every event of `contract` in one receipt, in log order."""
    address = contract.address.lower()
    found: list[ChainEvent] = []
    for entry in receipt["logs"]:
        if entry["address"].lower() != address:
            continue
        for event in list(contract.events):  # type: ignore[call-overload]
            try:
                decoded = event().process_log(entry)
            except Exception:  # a log of another event type of this contract
                continue
            found.append(_to_event(contract_name, decoded))
            break
    return found


def is_range_refusal(exc: BaseException) -> bool:
    """Whether an RPC refused an eth_getLogs because the range (or its result) was too large."""
    text = str(exc).lower()
    if "rate limit" in text or "429" in text:
        return False  # too many requests, not too many blocks: backing off is the RPC's job
    return any(marker in text for marker in _TOO_LARGE)


def is_beyond_head(exc: BaseException) -> bool:
    """Whether an RPC refused logs because the range ends past its head: the chain got shorter
    between reading the head and reading the logs (anvil: "block height is 50 but requested was
    51"; geth: "invalid block range", erigon: "block not found")."""
    text = str(exc).lower()
    markers = ("block height is", "blockoutofrange", "beyond", "invalid block range", "not found")
    return any(marker in text for marker in markers)


class LogPager:
    """Reads logs over a block range in pages of at most `span` blocks; shared by cursors.

    `span` shrinks (halves, down to one block) when the RPC refuses a page as too large, and
    stays small: every later read of this client fits the RPC's cap without another refusal.
    """

    def __init__(self, span: int = DEFAULT_LOG_SPAN) -> None:
        if span < 1:
            raise ValueError("a log page spans at least one block")
        self.span = span
        self.requests = 0  # eth_getLogs calls made, refused ones included (the bench counts them)
        self._lock = threading.Lock()

    def read(
        self, fetch: Callable[[int, int], list[Any]], from_block: int, to_block: int
    ) -> list[Any]:
        """Every log `fetch(from, to)` returns over [from_block, to_block], page by page."""
        found: list[Any] = []
        start = from_block
        while start <= to_block:
            span = self.span
            end = min(to_block, start + span - 1)
            self.requests += 1
            try:
                found.extend(fetch(start, end))
            except Exception as exc:
                if end == start or not is_range_refusal(exc):
                    raise
                self._shrink(end - start + 1, exc)
                continue  # the same page again, smaller
            start = end + 1
        return found

    def _shrink(self, refused: int, exc: BaseException) -> None:
        with self._lock:
            smaller = max(1, refused // 2)
            if smaller < self.span:
                log.warning(
                    "the RPC refused logs over %d blocks (%s); reading %d blocks per request",
                    refused,
                    str(exc)[:120],
                    smaller,
                )
                self.span = smaller


class EventCursor:
    """Reads one event type forward from a block, in the pages of a LogPager."""

    def __init__(
        self,
        contract_name: str,
        contract: Contract,
        event_name: str,
        from_block: int,
        *,
        max_span: int = DEFAULT_LOG_SPAN,
        argument_filters: dict[str, Any] | None = None,
        pager: LogPager | None = None,
    ) -> None:
        self.contract_name = contract_name
        self.contract = contract
        self.event_name = event_name
        self.next_block = from_block
        self.pager = pager or LogPager(max_span)
        self.argument_filters = argument_filters

    @property
    def max_span(self) -> int:
        return self.pager.span

    @max_span.setter
    def max_span(self, span: int) -> None:
        self.pager = LogPager(span)  # this cursor alone, not the client's shared pager

    def poll(self, to_block: int | None = None) -> list[ChainEvent]:
        """Events since the last poll up to `to_block` (default: the latest block)."""
        found, self.next_block = self.read(to_block)
        return found

    def read(self, to_block: int | None = None) -> tuple[list[ChainEvent], int]:
        """The events `poll` would return and where it would stop, without moving the cursor.

        A read that fails part-way (the RPC went down between two chunks) raises and moves
        nothing, so the next poll reads the same blocks again instead of skipping them.
        """
        head = int(self.contract.w3.eth.block_number) if to_block is None else to_block
        event = getattr(self.contract.events, self.event_name)

        def fetch(start: int, end: int) -> list[Any]:
            return list(
                event.get_logs(
                    from_block=start, to_block=end, argument_filters=self.argument_filters
                )
            )

        try:
            raws = self.pager.read(fetch, self.next_block, head)
        except Exception as exc:
            if is_beyond_head(exc):  # the chain got shorter since `head` was read (a reorg)
                raise ChainError(f"{self.event_name} logs up to block {head}: {exc}") from None
            raise
        found = [_to_event(self.contract_name, r) for r in raws]
        return found, max(self.next_block, head + 1)
