"""`wallet withdraw`: the node's balance to its payout address, through the node when one runs.

A running node (its `api.json` in the data folder answers) gets a `Withdraw` command through its
status API, so one process alone signs for the account and journals the withdrawal; the answer
is its `command_handled` event and the `withdrawal` events before it. With no node running, the
wallet is unlocked here and the same engine code (`engine/node/earnings.py`) withdraws, journaling
in
this home's database. The embedded network's chain exists only inside a running `run`, so there
it must go through the node.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cortensor_desktop.service.errors import NodeNotRunningError
from cortensor_desktop.service.local_http import urlopen
from engine.state.commands import Withdraw
from engine.state.events import CommandHandled, Event, TxStatus, Withdrawal, event_from_json
from engine.state.wire import WireError


@dataclass
class WithdrawReport:
    via: str  # "node" (its status API) or "wallet" (no node ran; signed here)
    accepted: bool
    message: str
    withdrawals: list[Withdrawal] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "via": self.via,
            "accepted": self.accepted,
            "message": self.message,
            "withdrawals": [
                {
                    "node": w.node,
                    "amount_wei": w.amount_wei,
                    "to": w.to,
                    "status": w.status.value,
                    "tx_hash": w.tx_hash,
                    "gas_used": w.gas_used,
                }
                for w in self.withdrawals
            ],
        }


def _settled(event: Event) -> bool:
    return isinstance(event, Withdrawal) and event.status is not TxStatus.STARTED


def through_node(api_file: Path, command: Withdraw, timeout_s: float) -> WithdrawReport:
    """Send the command to the running node and wait for its answer; NodeNotRunningError when
    no node answers through `api_file`."""
    from cortensor_desktop.service.attach import (
        CommandNotDelivered,
        NodeApi,
        RemoteCommands,
        _sse_data,
    )

    api = NodeApi.from_api_file(api_file)
    api.summary()  # raises NodeUnreachableError when the file is stale
    # Subscribe first (the server subscribes before it answers), then send: nothing is missed.
    request = urllib.request.Request(f"{api.url}/1/events")
    try:
        stream = urlopen(request, timeout=max(timeout_s, 20.0))
    except OSError as exc:
        raise NodeNotRunningError(f"the node at {api.url} does not stream events ({exc})") from None
    withdrawals: list[Withdrawal] = []
    deadline = time.monotonic() + timeout_s
    with stream:
        try:
            RemoteCommands(api, timeout_s=timeout_s).put(command)
        except CommandNotDelivered as exc:
            raise NodeNotRunningError(
                f"the withdraw command did not reach the node: {exc}"
            ) from None
        for data in _sse_data(stream):
            try:
                event = event_from_json(data)
            except WireError:
                continue
            if _settled(event):
                withdrawals.append(event)  # type: ignore[arg-type]
            if isinstance(event, CommandHandled) and event.command_id == command.id:
                return WithdrawReport("node", event.accepted, event.message, withdrawals)
            if time.monotonic() > deadline:
                break
    raise NodeNotRunningError(
        f"the node at {api.url} took the withdraw command but did not answer within "
        f"{timeout_s:.0f} s; check `cortensor-desktop status` before asking again"
    )


def with_wallet(
    keystore_dir: Path,
    passphrase_file: str | None,
    database: Any,
    chain_id: int,
    rpc_urls: list[str],
    contracts: dict[str, str],
) -> WithdrawReport:
    """No node runs: unlock the wallet here and withdraw with the engine's own code."""
    from chain.client import connect
    from chain.passphrase import resolve
    from chain.wallet import unlock, wallet_info
    from cortensor_desktop.logs import register_secret
    from engine.host.standalone_node import chain_key
    from engine.node.earnings import EarningsTracker
    from engine.state.journal import Journal

    address = wallet_info(keystore_dir).address  # WalletError when this home has none
    passphrase = resolve(passphrase_file, address=address)
    register_secret(passphrase.value)
    account = unlock(keystore_dir, passphrase.value)  # WalletError on a wrong passphrase
    client = connect(chain_id, rpc_urls, contracts, account)
    journal = Journal(database, chain_key(client), client.address or address)
    events: list[Event] = []
    tracker = EarningsTracker(client, journal, events.append)
    tracker.resume()
    outcome = tracker.withdraw()
    # Events made here have no bus to stamp them with the node.
    withdrawals = [replace(e, node=address) for e in events if isinstance(e, Withdrawal)]
    withdrawals = [w for w in withdrawals if _settled(w)]
    return WithdrawReport("wallet", outcome.accepted, outcome.message, withdrawals)
