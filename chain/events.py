"""Reading contract events without scanning from block 0.

`get_logs` from block 0 grows quadratically on the in-process chain, so reads are always over a
bounded range: an EventCursor remembers where it stopped and reads forward in chunks of at most
`max_span` blocks; `events_in_receipt` decodes a transaction's own logs without any scan.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from web3.contract import Contract
from web3.types import TxReceipt

log = logging.getLogger(__name__)


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


class EventCursor:
    """Reads one event type forward from a block, at most `max_span` blocks per request."""

    def __init__(
        self,
        contract_name: str,
        contract: Contract,
        event_name: str,
        from_block: int,
        *,
        max_span: int = 1000,
        argument_filters: dict[str, Any] | None = None,
    ) -> None:
        self.contract_name = contract_name
        self.contract = contract
        self.event_name = event_name
        self.next_block = from_block
        self.max_span = max_span
        self.argument_filters = argument_filters

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
        found: list[ChainEvent] = []
        next_block = self.next_block
        while next_block <= head:
            end = min(head, next_block + self.max_span - 1)
            raws = event.get_logs(
                from_block=next_block, to_block=end, argument_filters=self.argument_filters
            )
            found.extend(_to_event(self.contract_name, r) for r in raws)
            next_block = end + 1
        return found, next_block
