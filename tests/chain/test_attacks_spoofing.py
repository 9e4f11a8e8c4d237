"""Events from another contract (security review section 4, T-24): a second network deployed on
the same chain names our miner in TaskAssigned and SessionStarted; the miner, watching its own
deployment's addresses, must not react (no inference, no transaction)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chain.client import ChainClient, Deployment
from chain.deploy import deploy_network
from chain.devnet import EmbeddedChain
from chain.wrappers import TaskState, commitment
from engine.inference.types import GenerationResult, SamplingParams
from engine.node.miner import Miner
from engine.state.database import Database
from engine.state.events import EventBus
from engine.state.journal import ChainKey, Journal
from tests.chain.test_contracts import MODEL, SALT

pytestmark = pytest.mark.chain


class _MustNotRun:
    def generate(self, prompt: str, params: SamplingParams | None = None) -> GenerationResult:
        raise AssertionError(f"the miner reacted to a foreign event: {prompt!r}")


def test_t24_a_miner_ignores_events_of_a_contract_it_does_not_watch(
    embedded: EmbeddedChain, tmp_path: Path
) -> None:
    oracle_account = embedded.oracles[0]
    foreign = deploy_network(embedded.backend, embedded.admin, [oracle_account.address])
    assert set(foreign.values()).isdisjoint(embedded.contracts.values())

    def on_foreign(account: object) -> ChainClient:
        return ChainClient(
            embedded.backend,
            Deployment(embedded.chain_id, foreign),
            account,  # type: ignore[arg-type]
        )

    miner_account, helper_account = embedded.accounts[2], embedded.accounts[3]
    ours = embedded.client(miner_account)
    assert ours.address is not None
    journal = Journal(
        Database(tmp_path / "miner.sqlite3"),
        ChainKey(embedded.chain_id, embedded.genesis_hash),
        ours.address,
    )
    miner = Miner(ours, _MustNotRun(), journal, EventBus())
    miner.preflight()  # registers on our network and starts watching it
    miner.step()  # its first ping goes now, not in the step under test

    leader, node, helper = (on_foreign(a) for a in (oracle_account, miner_account, helper_account))
    for c in (node, helper):
        c.registry.register(1, 4096, "0.1.0", [MODEL], str(c.address))
    sid, _ = leader.cognitive.request(b"\x01" * 32, str(node.address), str(helper.address))
    node.cognitive.create(sid, "t")
    helper.cognitive.prepare(sid, '["q"]')
    leader.cognitive.start(sid, 2)  # SessionStarted names our miner
    for c in (node, helper):
        c.cognitive.precommit(sid, commitment(sid, str(c.address), SALT, "a"))
    for c in (node, helper):
        c.cognitive.commit(sid, "a", SALT)
    leader.cognitive.end(sid, [100, 100])
    user = on_foreign(embedded.accounts[0])
    user.payment.deposit(10_000)
    session, _ = user.queue.open_session(MODEL, 0, 1, 1, 1000)
    task, _ = user.queue.submit_task(session, "spoofed prompt")
    leader.queue.assign(task, [str(node.address)])  # TaskAssigned names our miner

    nonce = ours.web3.eth.get_transaction_count(miner_account.address)
    miner.step()  # would raise from _MustNotRun if it reacted
    assert ours.web3.eth.get_transaction_count(miner_account.address) == nonce
    assert journal.pending_precommits() == [] and journal.pending_reveals() == []
    assert leader.queue.state(task) == TaskState.ASSIGNED
