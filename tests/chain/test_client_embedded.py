"""Client behaviour on the in-process chain: chain-id guard, events over bounded ranges."""

from __future__ import annotations

import pytest

from chain.client import ChainClient, Deployment
from chain.devnet import EmbeddedChain
from chain.errors import ChainIdMismatch
from chain.wrappers import model_id

pytestmark = pytest.mark.chain


def test_chain_id_guard_on_the_embedded_chain(embedded: EmbeddedChain) -> None:
    wrong = Deployment(embedded.chain_id + 1, embedded.contracts)
    client = ChainClient(embedded.backend, wrong, embedded.accounts[0])
    with pytest.raises(ChainIdMismatch):
        client.stats.ping()


def test_event_cursor_reads_forward_in_bounded_chunks(embedded: EmbeddedChain) -> None:
    start = int(embedded.web3.eth.block_number) + 1
    cursor = embedded.client().registry.cursor("NodeRegistered", start)
    cursor.max_span = 2
    nodes = [embedded.client(a) for a in embedded.accounts[:3]]
    for n in nodes:
        n.registry.register(1, 1024, "0.1.0", [model_id("m")], n.address)
    found = cursor.poll()
    assert [e.args["node"] for e in found] == [n.address for n in nodes]
    assert cursor.next_block == int(embedded.web3.eth.block_number) + 1
    assert cursor.poll() == []  # nothing new, nothing re-read


def test_embedded_chain_identity_for_the_journal(embedded: EmbeddedChain) -> None:
    assert embedded.chain_id == int(embedded.web3.eth.chain_id)
    assert embedded.genesis_hash == embedded.web3.eth.get_block(0)["hash"].to_0x_hex()
    assert len(embedded.genesis_hash) == 66
