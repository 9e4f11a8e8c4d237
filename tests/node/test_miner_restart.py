"""A miner that dies between precommit and commit reveals after restart, and sends nothing twice.

The nodes are stepped by hand so the crash lands exactly after the precommit. The "crash" drops
the miner object and all its memory; only the journal (SQLite) and the chain survive, as after a
SIGKILL. (The multi-process SIGKILL on anvil belongs to the devnet tests.)
"""

from __future__ import annotations

from chain.events import EventCursor
from engine.journal import CommitState, TaskRef
from engine.miner import Miner
from engine.protocol import TaskKind
from tests.node.conftest import step_until

SLOT_COMMITTED = 3


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
    reborn = Miner(victim.client, victim.chat, victim.journal, victim.bus, victim.settings)
    reborn.preflight()
    reborn.resume()

    cognitive = reborn.client.cognitive
    step_until(
        lambda: cognitive.slot_status(1, reborn.address) == SLOT_COMMITTED, [oracle, other, reborn]
    )
    record = reborn.journal.get(task)
    assert record is not None and record.state is CommitState.COMMITTED
    assert record.answer == answer_before

    precommits = EventCursor("Cognitive", cognitive.contract, "Precommitted", 0).poll()
    mine = [e for e in precommits if str(e.args["miner"]) == reborn.address]
    assert len(mine) == 1, "the precommit was sent twice"
    reveals = EventCursor("Cognitive", cognitive.contract, "AnswerRevealed", 0).poll()
    assert [str(e.args["answer"]) for e in reveals if str(e.args["miner"]) == reborn.address] == [
        answer_before
    ]
