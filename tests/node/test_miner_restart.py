"""A miner that dies between precommit and commit reveals after restart, and sends nothing twice.

The nodes are stepped by hand so the crash lands exactly after the precommit. The "crash" drops
the miner object and all its memory; only the journal (SQLite) and the chain survive, as after a
SIGKILL. (The multi-process SIGKILL on anvil belongs to the devnet tests.)
"""

from __future__ import annotations

import os
import signal
from typing import Any

from chain.events import EventCursor
from chain.wrappers import SlotStatus
from engine.node.miner import Miner
from engine.protocol import TaskKind
from engine.state.journal import CommitState, TaskRef
from tests.node.conftest import step_until


def test_killed_after_precommit_reveals_after_restart(make_network) -> None:
    network = make_network(miners=2, threads=False)
    oracle, (victim, other) = network.oracle, network.miners
    task = TaskRef(TaskKind.NETWORK, 1)

    def precommitted() -> bool:
        record = victim.journal.get(task)
        return record is not None and record.state in (
            CommitState.PRECOMMIT_SENT,
            CommitState.PRECOMMITTED,
        )

    step_until(precommitted, [oracle, victim, other])
    answer_before = victim.journal.get(task).answer  # type: ignore[union-attr]

    # Crash: everything in memory is gone; a new process builds a new miner on the same journal.
    reborn, record = _restart_until_revealed(victim, oracle, other, task)
    cognitive = reborn.client.cognitive
    assert record.answer == answer_before

    precommits = EventCursor("Cognitive", cognitive.contract, "Precommitted", 0).poll()
    mine = [e for e in precommits if str(e.args["miner"]) == reborn.address]
    assert len(mine) == 1, "the precommit was sent twice"
    reveals = EventCursor("Cognitive", cognitive.contract, "AnswerRevealed", 0).poll()
    assert [str(e.args["answer"]) for e in reveals if str(e.args["miner"]) == reborn.address] == [
        answer_before
    ]


def test_worker_killed_before_an_answer_is_restarted_and_the_answer_still_made(
    make_network,  # type: ignore[no-untyped-def]
) -> None:
    network = make_network(miners=2, threads=False)
    oracle, (victim, other) = network.oracle, network.miners
    cognitive = victim.client.cognitive
    step_until(lambda: int(cognitive.call("sessionCount")) >= 1, [oracle, victim, other])
    # The victim may be creator or preparer: everyone steps until the prompts are prepared,
    # then only the oracle, which starts the session: answers are due, none is made yet.
    step_until(lambda: cognitive.state(1) >= 3, [oracle, victim, other])
    step_until(lambda: cognitive.state(1) >= 4, [oracle])
    worker = next(w for name, w in network.workers if name.endswith(victim.address[:10]))
    dead_pid = worker.pid
    assert dead_pid is not None
    os.kill(dead_pid, signal.SIGKILL)  # the worker dies before the miner answers

    task = TaskRef(TaskKind.NETWORK, 1)
    step_until(lambda: victim.journal.get(task) is not None, [victim], timeout_s=60)
    assert worker.pid not in (None, dead_pid)  # a fresh worker process answered
    step_until(lambda: oracle.sessions_ended >= 1, [oracle, victim, other])
    scored = EventCursor("Cognitive", cognitive.contract, "MinerScored", 0).poll()
    assert {str(e.args["miner"]): bool(e.args["passed"]) for e in scored}[victim.address]


def test_a_precommit_whose_receipt_was_lost_is_revealed_not_resent(make_network) -> None:  # type: ignore[no-untyped-def]
    """The precommit landed, but the node never saw its receipt (the RPC went away, or the node
    died while waiting): the journal still says 'prepared'. Resuming must find it on chain and
    reveal it; sending it again would fail, and abandoning it would miss the task."""
    network = make_network(miners=2, threads=False)
    oracle, (victim, other) = network.oracle, network.miners
    task = TaskRef(TaskKind.NETWORK, 1)
    step_until(
        lambda: victim.client.cognitive.slot_status(1, victim.address) == 2,  # precommitted
        [oracle, victim, other],
    )
    answer = victim.journal.get(task).answer  # type: ignore[union-attr]
    with victim.journal.db.transaction() as conn:  # what a lost receipt leaves behind
        conn.execute(
            "UPDATE journal_commits SET state = 'prepared', precommit_tx = NULL"
            " WHERE node = ? AND session_id = 1",
            (victim.address.lower(),),
        )

    reborn, _record = _restart_until_revealed(victim, oracle, other, task)
    cognitive = reborn.client.cognitive
    precommits = EventCursor("Cognitive", cognitive.contract, "Precommitted", 0).poll()
    assert [str(e.args["miner"]) for e in precommits].count(reborn.address) == 1
    reveals = EventCursor("Cognitive", cognitive.contract, "AnswerRevealed", 0).poll()
    assert [str(e.args["answer"]) for e in reveals if str(e.args["miner"]) == reborn.address] == [
        answer
    ]


def _restart_until_revealed(victim: Miner, oracle: Any, other: Miner, task: TaskRef) -> Any:
    """A new miner on the dead one's journal (a new process) runs until its answer is revealed."""
    reborn = Miner(victim.client, victim.chat, victim.journal, victim.bus, victim.settings)
    reborn.preflight()
    reborn.resume()
    step_until(
        lambda: reborn.client.cognitive.slot_status(1, reborn.address) == SlotStatus.COMMITTED,
        [oracle, other, reborn],
    )
    record = reborn.journal.get(task)
    assert record is not None and record.state is CommitState.COMMITTED
    return reborn, record
