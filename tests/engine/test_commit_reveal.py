"""The one commit-reveal path, the same for both kinds of task, against a contract stand-in.

A real journal (SQLite) and a scripted contract: what the chain says decides whether the
journaled binding is sent, adopted, abandoned or revealed, and nothing is ever sent twice. The
end-to-end runs on a chain are tests/node/test_miner_restart.py and tests/node/test_reorg.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from chain.errors import ChainError
from engine.node.chain_health import ChainHealth
from engine.node.commit_reveal import CommitReveal
from engine.node.miner_chain import MinerChain
from engine.node.task_contracts import NetworkTasks, UserTasks
from engine.protocol import TaskKind, TaskRole
from engine.state.database import Database
from engine.state.events import Event, LogLine, TxStatus
from engine.state.journal import ChainKey, CommitStage, CommitState, Journal, TaskRef

MINER = "0x" + "11" * 20
USER = TaskRef(TaskKind.USER, session_id=3, task_id=7)
NET = TaskRef(TaskKind.NETWORK, session_id=12)


@dataclass
class FakeBackend:
    generation: int = 0
    description: str = "http://127.0.0.1:8545"


@dataclass
class ScriptedContract:
    """What the chain says about this miner's task, and what was sent to it."""

    kind: ClassVar[TaskKind] = TaskKind.USER
    precommitted_event: ClassVar[str] = "Fake.Precommitted"
    closed_note: ClassVar[str] = "closed meanwhile"
    after_precommit_failpoint: ClassVar[str | None] = None

    awaiting: bool = True
    landed: bool = False
    open: bool = True
    revealable: bool = False
    refuse: bool = False
    sent: list[str] = field(default_factory=list)

    def commitment_id(self, task: TaskRef) -> int:
        return task.task_id

    def awaits_precommit(self, task: TaskRef) -> bool:
        return self.awaiting

    def precommit_landed(self, task: TaskRef) -> bool:
        return self.landed

    def precommit_open(self, task: TaskRef) -> bool:
        return self.open

    def may_reveal(self, task: TaskRef) -> bool:
        return self.revealable

    def precommit(self, task: TaskRef, digest: bytes) -> str:
        return self._send(f"precommit {len(digest)}")

    def commit(self, task: TaskRef, answer: str, salt: bytes) -> str:
        return self._send(f"commit {answer}")

    def stage_event(
        self, task: TaskRef, stage: CommitStage, status: TxStatus, tx_hash: str | None, detail: str
    ) -> Event:
        return LogLine(level="info", logger="test", message=f"{stage} {status} {detail}")

    def _send(self, what: str) -> str:
        if self.refuse:
            raise ChainError("reverted: NotSelected")
        self.sent.append(what)
        return f"0x{len(self.sent):064x}"


@dataclass
class Harness:
    journal: Journal
    contract: ScriptedContract
    flow: CommitReveal
    events: list[Event]
    revealed: list[TaskRef]


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    journal = Journal(Database(tmp_path / "db"), ChainKey(31337, "0x" + "ab" * 32), MINER)
    events: list[Event] = []
    revealed: list[TaskRef] = []
    health = ChainHealth(FakeBackend(), events.append)
    chain = MinerChain(None, MINER, events.append, health, lambda: 0.0)  # type: ignore[arg-type]
    contract = ScriptedContract()
    flow = CommitReveal({TaskKind.USER: contract}, journal, chain, MINER, revealed.append)
    return Harness(journal, contract, flow, events, revealed)


def _state(h: Harness) -> CommitState:
    record = h.journal.get(USER)
    assert record is not None
    return record.state


def test_a_prepared_answer_is_precommitted_then_revealed_once(harness: Harness) -> None:
    h = harness
    h.journal.prepare_commit(USER, TaskRole.ANSWERER, "blue")
    h.flow.precommit(USER)
    assert (h.contract.sent, _state(h)) == (["precommit 23"], CommitState.PRECOMMITTED)
    h.flow.precommit(USER)  # a replayed event: the journal says it is sent
    h.flow.reveal(USER)  # the commit window is not open yet
    assert h.contract.sent == ["precommit 23"]
    h.contract.revealable = True
    h.flow.reveal(USER)
    h.flow.reveal(USER)
    assert h.contract.sent == ["precommit 23", "commit blue"]
    assert (_state(h), h.revealed) == (CommitState.COMMITTED, [USER])


def test_a_precommit_is_sent_only_while_the_chain_waits_for_it(harness: Harness) -> None:
    h = harness
    h.journal.prepare_commit(USER, TaskRole.ANSWERER, "blue")
    h.contract.awaiting = False
    h.flow.precommit(USER)
    assert (h.contract.sent, _state(h)) == ([], CommitState.PREPARED)
    h.flow.precommit_selected(USER)  # the selecting event was just seen: the chain is not asked
    assert (h.contract.sent, _state(h)) == (["precommit 23"], CommitState.PRECOMMITTED)


def test_resume_adopts_a_precommit_that_landed_and_reveals_it(harness: Harness) -> None:
    h = harness
    h.journal.prepare_commit(USER, TaskRole.ANSWERER, "blue")  # killed before the receipt came
    h.contract.landed = h.contract.revealable = True
    h.flow.resume()
    assert h.contract.sent == ["commit blue"]  # the precommit is never sent again
    record = h.journal.get(USER)
    assert record is not None and (record.state, record.precommit_tx) == (
        CommitState.COMMITTED,
        "",
    )


def test_resume_abandons_a_closed_window_and_sends_an_open_one(harness: Harness) -> None:
    h = harness
    h.journal.prepare_commit(USER, TaskRole.ANSWERER, "blue")
    h.contract.open = False
    h.flow.resume()
    assert (h.contract.sent, _state(h)) == ([], CommitState.ABANDONED)
    other = TaskRef(TaskKind.USER, 3, 8)
    h.journal.prepare_commit(other, TaskRole.ANSWERER, "red")
    h.contract.open = True
    h.flow.resume()
    assert h.contract.sent == ["precommit 23"]


def test_a_refused_send_leaves_the_journal_as_it_was_and_is_reported(harness: Harness) -> None:
    h = harness
    h.journal.prepare_commit(USER, TaskRole.ANSWERER, "blue")
    h.contract.refuse = True
    h.flow.precommit(USER)
    assert _state(h) is CommitState.PREPARED  # resume() tries again
    [line] = [e for e in h.events if isinstance(e, LogLine)]
    assert "failed" in line.message and "NotSelected" in line.message


def test_the_two_contracts_bind_their_own_id_and_report_their_own_stage() -> None:
    network, user = NetworkTasks(None, MINER), UserTasks(None, MINER)  # type: ignore[arg-type]
    assert (network.commitment_id(NET), user.commitment_id(USER)) == (12, 7)
    net_event = network.stage_event(NET, CommitStage.COMMIT, TxStatus.CONFIRMED, "0x1", "")
    user_event = user.stage_event(USER, CommitStage.PRECOMMIT, TxStatus.FAILED, None, "why")
    assert (net_event.type, net_event.stage, net_event.session_id) == ("network_task", "commit", 12)  # type: ignore[attr-defined]
    assert (user_event.type, user_event.stage, user_event.task_id) == ("user_task", "precommit", 7)  # type: ignore[attr-defined]
    assert network.after_precommit_failpoint == "miner-after-precommit"  # the SIGKILL test's
    assert user.after_precommit_failpoint is None
