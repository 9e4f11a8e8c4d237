"""A standalone miner registers with the payout from the config ([wallet] payout)."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account

from chain.devnet import start_embedded
from engine.host.standalone_node import NodeSettings, StandaloneNode
from engine.state.database import Database
from engine.state.events import EventBus


def test_a_standalone_miner_registers_with_its_payout_address(
    tmp_path: Path, models_dir: Path
) -> None:
    chain = start_embedded()
    account = chain.accounts[0]
    payout = Account.create().address
    node = StandaloneNode(
        chain.client(account),
        Database(tmp_path / "node.sqlite3"),
        models_dir,
        EventBus(),
        NodeSettings(role="miner", payout=payout),
    )
    node.start()
    try:
        info = chain.client().registry.node_info(account.address)
        assert info.status != 0 and info.payout == payout  # not the signing address
        assert payout != account.address
    finally:
        node.stop()
