"""Reorganise anvil's chain under running nodes: after a precommit, a commit, an end; and behind.

One oracle and two miners (real models: one chat worker shared by every node, one embedding
worker) run their loops in threads against their own anvil. For each stage the test lets the
oracle open one network task, waits for the stage on chain, then replaces the blocks from that
stage on with empty ones (`anvil_reorg`: same height, other hashes, the transactions gone), or,
for the last one, reverts to a snapshot so the chain comes back *behind* what the nodes saw
(anvil restored from an older save); then user tasks lose their precommits, their reveals,
their validation. The nodes must notice, re-send what was dropped and finish the task: on the
chain that stays, every miner has exactly one precommit and one reveal (never twice, never
lost, the journal's bound answer) and the session ends (the task is validated) once with both
miners scored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from chain.client import ChainClient, Deployment, connect
from chain.devnet import AnvilProcess, LocalDevnet, deploy_on_anvil, new_funded_account, rpc
from chain.events import ChainEvent, EventCursor
from chain.rpc import HttpBackend, RetryPolicy
from chain.transactions import GasPolicy
from chain.wrappers import SessionState, SlotStatus, TaskState
from engine.host.embedded_network import DEVNET_PARAMS
from engine.inference.runtime import InferenceWorker
from engine.models.store import ModelStore
from engine.node.miner import Miner, MinerSettings
from engine.node.oracle import Oracle, OracleSettings
from engine.node.user_session import submit_user_task
from engine.poi.validator import Validator
from engine.protocol import TaskKind
from engine.state.database import Database
from engine.state.events import EventBus
from engine.state.journal import ChainKey, CommitState, Journal, TaskRef
from profiler.load_settings import LoadSettings

pytestmark = [pytest.mark.slow, pytest.mark.chain]
TOKENS = 24  # short answers: the stages, not the model, are under test
FAST_RPC = RetryPolicy(rounds=2, backoff_s=0.05, request_timeout_s=10)
GAS = GasPolicy(recheck_s=0.5, receipt_timeout_s=90)
# Windows no busy 2-core machine misses: a deadline passing mid-test is another test's subject.
PARAMS = replace(DEVNET_PARAMS, step_window_s=900, answer_window_s=900, task_window_s=900)


@dataclass
class Network:
    anvil: AnvilProcess
    devnet: LocalDevnet
    web3: Web3
    oracle: Oracle
    miners: list[Miner]
    allowed_sessions: list[int]  # the oracle opens sessions up to this many

    @property
    def reader(self) -> ChainClient:
        return connect(self.devnet.chain_id, [self.devnet.rpc_url], self.devnet.contracts)

    def events(self, name: str) -> list[ChainEvent]:
        cognitive = self.reader.cognitive
        return EventCursor("Cognitive", cognitive.contract, name, 0).poll()

    def of_session(self, name: str, session: int) -> list[ChainEvent]:
        return [e for e in self.events(name) if int(e.args["id"]) == session]


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def network(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    store = ModelStore(models_dir)
    chat = InferenceWorker(store.pull(store.default_chat_model().id), LoadSettings(), kind="chat")
    embedding_id = store.catalogue.of_kind("embedding")[0].id
    embedder = InferenceWorker(store.pull(embedding_id), LoadSettings(n_ctx=512), kind="embedding")
    workers = [chat, embedder]
    stop = threading.Event()
    threads: list[threading.Thread] = []
    with AnvilProcess() as anvil:
        try:
            for worker in workers:
                worker.start()
            devnet = deploy_on_anvil(anvil, oracles=1, params=PARAMS)
            web3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
            db = Database(tmp_path_factory.mktemp("reorg") / "nodes.sqlite3")
            key = ChainKey(devnet.chain_id, devnet.genesis_hash)

            def client(account: Any) -> ChainClient:
                backend = HttpBackend([anvil.rpc_url], FAST_RPC)
                deployment = Deployment(devnet.chain_id, devnet.contracts)
                return ChainClient(backend, deployment, account, gas=GAS)

            bus = EventBus()
            settings = MinerSettings(
                answer_max_tokens=TOKENS,
                prompts_per_session=1,
                poll_interval_s=0.2,
                ping_interval_s=3600,
            )
            miners = []
            for _ in range(2):
                account = new_funded_account(web3)
                journal = Journal(db, key, account.address)
                miners.append(Miner(client(account), chat, journal, bus, settings))
            oracle_account = devnet.oracles[0]
            oracle = Oracle(
                client(oracle_account),
                Validator(chat, embedder),
                Journal(db, key, oracle_account.address),
                bus,
                OracleSettings(
                    task_interval_s=0.5,
                    miners_per_task=2,
                    answer_max_tokens=TOKENS,
                    poll_interval_s=0.2,
                    role_cooldown_s=0,
                ),
            )
            net = Network(anvil, devnet, web3, oracle, miners, [0])
            _gate_requests(net)
            for miner in miners:
                miner.preflight()
            oracle.start()
            for node in [*miners, oracle]:
                thread = threading.Thread(target=node.run, args=(stop,), daemon=True)
                thread.start()
                threads.append(thread)
            yield net
        finally:
            stop.set()
            for worker in workers:
                worker.cancel()
            for thread in threads:
                thread.join(timeout=30)
            for worker in workers:
                worker.close()


def _gate_requests(net: Network) -> None:
    """The oracle opens the next session only when the test allows it (one stage at a time)."""
    oracle = net.oracle
    original = oracle._request_if_due

    def gated() -> None:
        if int(oracle.client.cognitive.call("sessionCount")) < net.allowed_sessions[0]:
            original()

    oracle._request_if_due = gated  # type: ignore[method-assign]


def _reorg_from(net: Network, first_dropped_block: int) -> int:
    """Replace every block from `first_dropped_block` on with an empty one; the depth."""
    depth = int(net.web3.eth.block_number) - first_dropped_block + 1
    rpc(net.web3, "anvil_reorg", depth, [])
    return depth


def _open_session(net: Network) -> int:
    net.allowed_sessions[0] += 1
    session = net.allowed_sessions[0]
    _wait(lambda: net.of_session("SessionStarted", session), 120, f"session {session} started")
    return session


def _assert_finished_once(net: Network, session: int) -> None:
    _wait(lambda: net.of_session("SessionEnded", session), 180, f"session {session} ended")
    addresses = {m.address for m in net.miners}
    for name in ("Precommitted", "AnswerRevealed"):
        per_miner = [str(e.args["miner"]) for e in net.of_session(name, session)]
        assert sorted(per_miner) == sorted(addresses), f"{name} of session {session}: {per_miner}"
    assert len(net.of_session("SessionEnded", session)) == 1
    scored = {str(e.args["miner"]) for e in net.of_session("MinerScored", session)}
    assert scored == addresses
    task = TaskRef(TaskKind.NETWORK, session)
    for miner in net.miners:
        record = miner.journal.get(task)
        assert record is not None and record.state is CommitState.COMMITTED
        revealed = [
            str(e.args["answer"])
            for e in net.of_session("AnswerRevealed", session)
            if str(e.args["miner"]) == miner.address
        ]
        assert revealed == [record.answer]  # the journal's binding, the same answer


@pytest.mark.timeout(900)
def test_reorgs_at_every_stage_drop_nothing_and_double_nothing(network: Network) -> None:
    net = network
    cognitive = net.reader.cognitive

    # 1. After the precommits: they are gone, the commit window with them.
    session = _open_session(net)
    _wait(lambda: len(net.of_session("Precommitted", session)) == 2, 120, "both precommits")
    first = min(e.block_number for e in net.of_session("Precommitted", session))
    _reorg_from(net, first)
    assert cognitive.state(session) == SessionState.PRECOMMIT
    assert len(net.of_session("Precommitted", session)) == 0
    _assert_finished_once(net, session)

    # 2. After the reveals: the precommits stay, the reveals are gone.
    session = _open_session(net)
    _wait(lambda: len(net.of_session("AnswerRevealed", session)) == 2, 120, "both reveals")
    first = min(e.block_number for e in net.of_session("AnswerRevealed", session))
    _reorg_from(net, first)
    assert cognitive.state(session) == SessionState.COMMIT
    assert len(net.of_session("Precommitted", session)) == 2
    _assert_finished_once(net, session)

    # 3. After the end: the oracle must end it again (its view had closed it).
    session = _open_session(net)
    _wait(lambda: net.of_session("SessionEnded", session), 180, "the end")
    _reorg_from(net, net.of_session("SessionEnded", session)[0].block_number)
    assert cognitive.state(session) == SessionState.COMMITTED
    _assert_finished_once(net, session)

    # 4. The chain comes back behind (anvil restored from an older save): shorter than seen.
    net.allowed_sessions[0] += 1
    session = net.allowed_sessions[0]
    _wait(lambda: cognitive.state(session) == SessionState.PRECOMMIT, 120, "session 4 started")
    snapshot = rpc(net.web3, "evm_snapshot")  # the miners are still answering: no precommit
    assert len(net.of_session("Precommitted", session)) == 0
    _wait(lambda: len(net.of_session("Precommitted", session)) == 2, 120, "both precommits")
    seen_head = int(net.web3.eth.block_number)
    rpc(net.web3, "evm_revert", snapshot)
    assert int(net.web3.eth.block_number) < seen_head
    assert all(cognitive.slot_status(session, m.address) == SlotStatus.SELECTED for m in net.miners)
    _assert_finished_once(net, session)

    user = _user(net)  # the miners are in the user-task pool now
    _user_task_after_its_precommits(net, user)
    _user_task_after_its_reveals(net, user)
    _user_task_after_its_validation(net, user)

    # Each node saw a reorg, and one saw the chain come back behind. Not necessarily every time
    # each node: one that never read a dropped block has nothing to notice, and a sender still
    # waiting for a receipt puts its own dropped transaction back by itself (the same bytes).
    reorgs = {n.address: n._watcher.reorgs for n in [*net.miners, net.oracle]}  # type: ignore[union-attr]
    assert all(reorgs.values()), {a: len(r) for a, r in reorgs.items()}
    assert any(r.behind for seen in reorgs.values() for r in seen)


def _user(net: Network) -> ChainClient:
    return ChainClient(
        HttpBackend([net.devnet.rpc_url], FAST_RPC),
        Deployment(net.devnet.chain_id, net.devnet.contracts),
        new_funded_account(net.web3),
    )


def _submit(net: Network, user: ChainClient, prompt: str) -> int:
    return submit_user_task(user, net.miners[0].settings.model_name, prompt, 2).task_id


def _user_task_after_its_precommits(net: Network, user: ChainClient) -> None:
    """5. A user task loses its precommits: re-sent, revealed once, validated once."""
    task_id = _submit(net, user, "Name a colour.")
    _wait(lambda: len(_task_events(net, "TaskPrecommitted", task_id)) == 2, 120, "precommits")
    _reorg_from(net, min(e.block_number for e in _task_events(net, "TaskPrecommitted", task_id)))
    assert _task_events(net, "TaskPrecommitted", task_id) == []
    _assert_user_task_finished_once(net, task_id)


def _user_task_after_its_reveals(net: Network, user: ChainClient) -> None:
    """6. A user task loses its reveals (and the validation, if it came first): the miners
    reveal again from the journal, once, with the bound answer; the oracle validates once."""
    queue = net.reader.queue
    task_id = _submit(net, user, "Name a fruit.")
    _wait(lambda: len(_task_events(net, "TaskAnswer", task_id)) == 2, 120, "both reveals")
    _reorg_from(net, min(e.block_number for e in _task_events(net, "TaskAnswer", task_id)))
    assert queue.state(task_id) == TaskState.COMMIT
    assert _task_events(net, "TaskAnswer", task_id) == []
    assert len(_task_events(net, "TaskPrecommitted", task_id)) == 2
    _assert_user_task_finished_once(net, task_id)


def _user_task_after_its_validation(net: Network, user: ChainClient) -> None:
    """7. A user task loses its validation: the oracle (whose view had closed the task)
    validates it again; nothing of the miners' is sent again."""
    queue = net.reader.queue
    task_id = _submit(net, user, "Name an animal.")
    _wait(lambda: _task_events(net, "TaskValidated", task_id), 180, "the validation")
    _reorg_from(net, _task_events(net, "TaskValidated", task_id)[0].block_number)
    assert queue.state(task_id) == TaskState.COMMITTED
    assert len(_task_events(net, "TaskAnswer", task_id)) == 2
    _assert_user_task_finished_once(net, task_id)


def _assert_user_task_finished_once(net: Network, task_id: int) -> None:
    """On the chain that stays: one precommit and one reveal per miner, the reveal the
    journal's bound answer, one validation scoring both."""
    _wait(lambda: _task_events(net, "TaskValidated", task_id), 180, f"task {task_id} validated")
    addresses = sorted(m.address for m in net.miners)
    for name in ("TaskPrecommitted", "TaskAnswer"):
        per_miner = sorted(str(e.args["miner"]) for e in _task_events(net, name, task_id))
        assert per_miner == addresses, f"{name} of task {task_id}: {per_miner}"
    validated = _task_events(net, "TaskValidated", task_id)
    assert len(validated) == 1
    session_id = int(net.reader.queue.call("tasks", task_id)[0])
    for miner in net.miners:
        record = miner.journal.get(TaskRef(TaskKind.USER, session_id, task_id))
        assert record is not None and record.state is CommitState.COMMITTED
        mine = {
            name: [
                e for e in _task_events(net, name, task_id) if str(e.args["miner"]) == miner.address
            ]
            for name in ("TaskPrecommitted", "TaskAnswer")
        }
        assert [str(e.args["answer"]) for e in mine["TaskAnswer"]] == [record.answer]
        # The journal holds the transactions the chain kept (the re-sent ones after a reorg).
        assert (record.precommit_tx or "").lower() == mine["TaskPrecommitted"][0].tx_hash.lower()
        assert (record.commit_tx or "").lower() == mine["TaskAnswer"][0].tx_hash.lower()


def _task_events(net: Network, name: str, task_id: int) -> list[ChainEvent]:
    queue = net.reader.queue
    found = EventCursor("SessionQueue", queue.contract, name, 0).poll()
    return [e for e in found if int(e.args["taskId"]) == task_id]
