"""After a reorg: make a miner's journal say what the chain now holds, so resume() re-sends.

A reorg (or a chain restored from an older save) can drop a precommit or a reveal the journal
already calls confirmed. The chain decides, per recent record:
- my slot is back to "selected" while the precommit window is open: the precommit is gone ->
  rewind to PREPARED; `resume()` sends the same binding again (same salt, same answer);
- my slot says "precommitted" but the journal says revealed: the reveal is gone -> rewind to
  PRECOMMITTED; the reveal goes again when (or as soon as) the commit window is open;
- the session itself is gone: nothing can be sent for it -> abandoned.
Anything the chain still has is left alone, and every send is still guarded by the chain state,
so a reveal is never on chain twice and a binding never changes.
"""

from __future__ import annotations

import logging

from chain.client import ChainClient
from chain.wrappers import AssignmentStatus, SessionState, SlotStatus, TaskState
from engine.protocol import TaskKind
from engine.state.journal import CommitRecord, CommitState, Journal

log = logging.getLogger(__name__)

RECENT_RECORDS = 32  # records a reorg may have undone: far more than one node has open
_PAST_PRECOMMIT = (
    CommitState.PRECOMMIT_SENT,
    CommitState.PRECOMMITTED,
    CommitState.COMMIT_SENT,
    CommitState.COMMITTED,
    CommitState.ABANDONED,
)
_PAST_REVEAL = (CommitState.COMMIT_SENT, CommitState.COMMITTED, CommitState.ABANDONED)


def reconcile_after_reorg(client: ChainClient, journal: Journal, miner: str) -> list[str]:
    """Rewind the journal where the chain lost a transaction; a line per record changed."""
    changed: list[str] = []
    for record in journal.recent_commits(RECENT_RECORDS):
        if record.task.kind is TaskKind.NETWORK:
            line = _network(client, journal, miner, record)
        else:
            line = _user(client, journal, miner, record)
        if line:
            log.warning("%s %s", record.task.key, line)
            changed.append(f"{record.task.key}: {line}")
    return changed


def _network(client: ChainClient, journal: Journal, miner: str, record: CommitRecord) -> str:
    cognitive = client.cognitive
    session = record.task.session_id
    state, slot = cognitive.state(session), cognitive.slot_status(session, miner)
    if state == SessionState.NONE:
        if record.state in (CommitState.COMMITTED, CommitState.ABANDONED):
            return ""
        journal.abandon(record.task, "a reorg dropped the session")
        return "session dropped by the reorg: abandoned"
    precommit_open = state == SessionState.PRECOMMIT
    if slot == SlotStatus.SELECTED and precommit_open and record.state in _PAST_PRECOMMIT:
        journal.rewind(record.task, CommitState.PREPARED, "a reorg dropped the precommit")
        return "precommit dropped by the reorg: sending it again"
    revealing = state in (SessionState.PRECOMMIT, SessionState.COMMIT)
    if slot == SlotStatus.PRECOMMITTED and revealing and record.state in _PAST_REVEAL:
        journal.rewind(record.task, CommitState.PRECOMMITTED, "a reorg dropped the reveal")
        return "reveal dropped by the reorg: revealing again"
    return ""


def _user(client: ChainClient, journal: Journal, miner: str, record: CommitRecord) -> str:
    queue = client.queue
    task_id = record.task.task_id
    state = queue.state(task_id)
    assigned_task, status = queue.assignment(miner)
    if assigned_task != task_id:
        return ""  # the assignment itself is gone (or moved on): the oracle assigns again
    waiting = status in (AssignmentStatus.ASSIGNED, AssignmentStatus.ACKED)
    if waiting and state == TaskState.ASSIGNED and record.state in _PAST_PRECOMMIT:
        journal.rewind(record.task, CommitState.PREPARED, "a reorg dropped the precommit")
        return "precommit dropped by the reorg: sending it again"
    revealing = state in (TaskState.ASSIGNED, TaskState.COMMIT)
    if status == AssignmentStatus.PRECOMMITTED and revealing and record.state in _PAST_REVEAL:
        journal.rewind(record.task, CommitState.PRECOMMITTED, "a reorg dropped the reveal")
        return "reveal dropped by the reorg: revealing again"
    return ""
