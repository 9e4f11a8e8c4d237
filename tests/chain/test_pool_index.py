"""The pool index follows NodeRegistry's events and agrees with the registry's own state."""

from __future__ import annotations

import pytest

from chain.client import ChainClient
from chain.devnet import EmbeddedChain
from chain.wrappers import NodeStatus, Tier, commitment, model_id
from engine.node.pool_index import PoolIndex

pytestmark = pytest.mark.chain
MODEL, OTHER = model_id("m"), model_id("other")


def _pass_a_network_task(chain: EmbeddedChain, miners: list[ChainClient]) -> None:
    """Every miner passes one network task: into the user-task pool (threshold 1)."""
    oracle = chain.client(chain.oracles[0])
    first, second = miners[0], miners[1]
    sid, _ = oracle.cognitive.request(b"\x01" * 32, first.address, second.address)
    first.cognitive.create(sid, "geography")
    second.cognitive.prepare(sid, '["capital of France?"]')
    oracle.cognitive.start(sid, len(miners))
    by_address = {m.address: m for m in miners}
    chosen = oracle.cognitive.selected(sid)
    for a in chosen:
        by_address[a].cognitive.precommit(sid, commitment(sid, a, b"\x02" * 32, "Paris"))
    for a in chosen:
        by_address[a].cognitive.commit(sid, "Paris", b"\x02" * 32)
    oracle.cognitive.end(sid, [100] * len(chosen))


def test_the_index_agrees_with_the_registry(embedded: EmbeddedChain) -> None:
    start = int(embedded.web3.eth.block_number) + 1
    miners = [embedded.client(a) for a in embedded.accounts[:4]]
    for i, m in enumerate(miners[:3]):
        tier = Tier.GPU_FULL if i == 0 else Tier.CPU_LOW
        m.registry.register(tier, 1024, "0.1.0", [MODEL], m.address)
    index = PoolIndex(embedded.client(), from_block=start)
    index.refresh()
    assert index.present() == [m.address for m in miners[:3]]
    assert index.serving(MODEL) == []  # registered, not yet in the pool

    _pass_a_network_task(embedded, miners[:3])
    miners[3].registry.register(Tier.CPU_LOW, 1024, "0.1.0", [OTHER], miners[3].address)
    miners[1].registry.set_away(True)
    miners[2].registry.update_spec(Tier.CPU_LOW, 1024, "0.1.1", [OTHER])
    index.refresh()
    registry = embedded.client().registry
    assert sorted(index.present()) == sorted(registry.present_miners())  # order: swap-removes
    assert index.serving(MODEL) == [miners[0].address]  # 1 is away, 2 changed its model
    assert index.serving(MODEL, full_precision=True) == [miners[0].address]
    assert index.serving(OTHER) == [miners[2].address]  # 3 registered but never passed a task

    embedded.client(embedded.oracles[0]).stats.remove_from_pool(miners[0].address)
    index.refresh()
    assert registry.node_info(miners[0].address).status == NodeStatus.REGISTERED
    assert index.serving(MODEL) == []


def test_a_rebuild_reads_the_history_again(embedded: EmbeddedChain) -> None:
    start = int(embedded.web3.eth.block_number) + 1
    miner = embedded.client(embedded.accounts[0])
    miner.registry.register(Tier.CPU_LOW, 1024, "0.1.0", [MODEL], miner.address)
    index = PoolIndex(embedded.client(), from_block=start)
    index.refresh()
    snapshot = embedded.snapshot()
    miner.registry.set_away(True)
    index.refresh()
    assert index.present() == []
    embedded.revert(snapshot)  # the away flag is gone from the chain, as after a reorg
    index.rebuild()
    index.refresh()
    assert index.present() == [miner.address]
