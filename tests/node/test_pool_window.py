"""The per-node window rule on a real chain: failures among recent answers take a node out."""

from __future__ import annotations

from pathlib import Path

import pytest

from chain.devnet import start_embedded
from chain.errors import ContractRevert
from chain.wrappers import NodeStatus
from engine.node.oracle import Oracle
from engine.poi.validation import Check, ValidationThresholds, Verdict
from engine.protocol import TaskKind
from engine.state.database import Database
from engine.state.events import EventBus, LogLine
from engine.state.journal import ChainKey, Journal, TaskRef, VerdictRecord
from tests.chain.test_contracts import _pool


def _verdict(passed: bool) -> Verdict:
    return Verdict(
        top1_agreement=0.95 if passed else 0.2,
        mean_logprob=None,
        ended_properly=True,
        cosine=0.9,
        checksum_match=None,
        tokens=40,
        thresholds=ValidationThresholds(),
        failed_checks=() if passed else (Check.TOP1,),
    )


def test_the_fourth_failure_in_ten_removes_a_pool_node_and_only_the_leader_may(
    tmp_path: Path,
) -> None:
    chain = start_embedded(oracles=1)
    leader, miners = _pool(chain, 3)
    cheat, honest = miners[0].address, miners[1].address
    journal = Journal(
        Database(tmp_path / "oracle.sqlite3"),
        ChainKey(chain.chain_id, chain.genesis_hash),
        leader.address,
    )
    bus = EventBus()
    sub = bus.subscribe()
    oracle = Oracle(leader, validator=None, journal=journal, bus=bus)  # type: ignore[arg-type]
    for session, passed in enumerate([True] * 7 + [False] * 2, start=100):
        task = TaskRef(TaskKind.NETWORK, session)
        journal.record_verdict(
            VerdictRecord.from_verdict(_verdict(passed), miner=cheat, task=task, at=session)
        )
    oracle._record(200, cheat, _verdict(False), TaskKind.NETWORK)  # 3 of 10: bad luck
    oracle._record(200, honest, _verdict(False), TaskKind.NETWORK)  # 1 of 1
    assert leader.registry.node_info(cheat).status == NodeStatus.EPHEMERAL
    assert leader.registry.node_info(honest).status == NodeStatus.EPHEMERAL
    oracle._record(201, cheat, _verdict(False), TaskKind.NETWORK)  # 4 of 10
    assert leader.registry.node_info(cheat).status == NodeStatus.REGISTERED
    assert leader.registry.node_info(honest).status == NodeStatus.EPHEMERAL
    notes = [e.message for e in sub.drain() if isinstance(e, LogLine)]
    assert any("removed from the pool: 4 of its last 10" in n for n in notes), notes
    with pytest.raises(ContractRevert, match="NotLeader"):
        miners[2].stats.remove_from_pool(honest)
