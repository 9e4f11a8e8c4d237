"""The two contracts a miner answers tasks on, behind one small interface.

A network task lives on Cognitive (one task per session, the miner's *slot* in it); a user task on
SessionQueue (the miner's *assignment*). Commit-reveal is the same on both (engine/node/
commit_reveal.py); what differs is only where the chain keeps the state, which these adapters
read, and which function sends, which they call. Nothing here writes the journal or decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Protocol

from chain.client import ChainClient
from chain.events import EventCursor
from chain.wrappers import AssignmentStatus, SessionState, SlotStatus, TaskState
from engine.protocol import NetworkStage, TaskKind, TaskRole, UserStage
from engine.state.events import Event, NetworkTaskStage, TxStatus, UserTaskStage
from engine.state.journal import CommitStage, TaskRef

_WAITING = (AssignmentStatus.ASSIGNED, AssignmentStatus.ACKED)  # a user task's precommit is due


class TaskContract(Protocol):
    """What the commit-reveal of one kind of task reads and sends (one miner's view)."""

    kind: ClassVar[TaskKind]
    precommitted_event: ClassVar[str]  # names a precommit found on chain, in the log
    closed_note: ClassVar[str]  # the journal's note when the precommit window closed meanwhile
    # A crash-test failpoint hit right after the precommit landed (engine/failpoints.py).
    after_precommit_failpoint: ClassVar[str | None]

    def commitment_id(self, task: TaskRef) -> int:
        """The id the commitment hash binds (the session, or the user task)."""
        ...

    def awaits_precommit(self, task: TaskRef) -> bool:
        """This miner is selected and has not precommitted yet."""
        ...

    def precommit_landed(self, task: TaskRef) -> bool: ...

    def precommit_open(self, task: TaskRef) -> bool:
        """The task still takes precommits."""
        ...

    def may_reveal(self, task: TaskRef) -> bool:
        """The commit window is open and the chain holds this miner's precommit."""
        ...

    def precommit(self, task: TaskRef, digest: bytes) -> str:
        """Send the precommit; the transaction hash once it landed."""
        ...

    def commit(self, task: TaskRef, answer: str, salt: bytes) -> str:
        """Send the reveal; the transaction hash once it landed."""
        ...

    def stage_event(
        self, task: TaskRef, stage: CommitStage, status: TxStatus, tx_hash: str | None, detail: str
    ) -> Event:
        """How a precommit or reveal went, as the views show it."""
        ...


class NetworkTasks:
    """Cognitive: network tasks, one per session; the miner answers in its slot."""

    kind: ClassVar[TaskKind] = TaskKind.NETWORK
    precommitted_event: ClassVar[str] = "Cognitive.Precommitted"
    closed_note: ClassVar[str] = "the precommit window closed while the node was down"
    after_precommit_failpoint: ClassVar[str | None] = "miner-after-precommit"
    _STAGES: ClassVar[dict[CommitStage, NetworkStage]] = {
        CommitStage.PRECOMMIT: NetworkStage.PRECOMMIT,
        CommitStage.COMMIT: NetworkStage.COMMIT,
    }

    def __init__(self, client: ChainClient, miner: str) -> None:
        self._client = client  # read on use: a test's stand-in client may have no contracts
        self._miner = miner

    def commitment_id(self, task: TaskRef) -> int:
        return task.session_id

    def awaits_precommit(self, task: TaskRef) -> bool:
        return self._slot(task) == SlotStatus.SELECTED

    def precommit_landed(self, task: TaskRef) -> bool:
        return self._slot(task) == SlotStatus.PRECOMMITTED

    def precommit_open(self, task: TaskRef) -> bool:
        return self._client.cognitive.state(task.session_id) == SessionState.PRECOMMIT

    def may_reveal(self, task: TaskRef) -> bool:
        if self._client.cognitive.state(task.session_id) != SessionState.COMMIT:
            return False
        return self._slot(task) == SlotStatus.PRECOMMITTED

    def precommit(self, task: TaskRef, digest: bytes) -> str:
        return self._client.cognitive.precommit(task.session_id, digest).tx_hash

    def commit(self, task: TaskRef, answer: str, salt: bytes) -> str:
        return self._client.cognitive.commit(task.session_id, answer, salt).tx_hash

    def stage_event(
        self, task: TaskRef, stage: CommitStage, status: TxStatus, tx_hash: str | None, detail: str
    ) -> Event:
        return NetworkTaskStage(
            session_id=task.session_id,
            stage=self._STAGES[stage],
            task_role=TaskRole.ANSWERER,
            status=status,
            tx_hash=tx_hash,
            detail=detail,
        )

    def _slot(self, task: TaskRef) -> int:
        return self._client.cognitive.slot_status(task.session_id, self._miner)


class UserTasks:
    """SessionQueue: user tasks in user sessions; the leader assigns each to some miners."""

    kind: ClassVar[TaskKind] = TaskKind.USER
    precommitted_event: ClassVar[str] = "SessionQueue.TaskPrecommitted"
    closed_note: ClassVar[str] = "the precommit window closed while the node was away"
    after_precommit_failpoint: ClassVar[str | None] = None
    _STAGES: ClassVar[dict[CommitStage, UserStage]] = {
        CommitStage.PRECOMMIT: UserStage.PRECOMMIT,
        CommitStage.COMMIT: UserStage.COMMIT,
    }

    def __init__(self, client: ChainClient, miner: str) -> None:
        self._client = client  # read on use: a test's stand-in client may have no contracts
        self._miner = miner

    def commitment_id(self, task: TaskRef) -> int:
        return task.task_id

    def awaits_precommit(self, task: TaskRef) -> bool:
        due = tuple((task.task_id, status) for status in _WAITING)
        return self._client.queue.assignment(self._miner) in due

    def precommit_landed(self, task: TaskRef) -> bool:
        return self._precommitted(task)

    def precommit_open(self, task: TaskRef) -> bool:
        return self.state(task.task_id) == TaskState.ASSIGNED

    def may_reveal(self, task: TaskRef) -> bool:
        if self.state(task.task_id) != TaskState.COMMIT:
            return False
        return self._precommitted(task)

    def precommit(self, task: TaskRef, digest: bytes) -> str:
        return self._client.queue.precommit(task.task_id, digest).tx_hash

    def commit(self, task: TaskRef, answer: str, salt: bytes) -> str:
        return self._client.queue.commit(task.task_id, answer, salt).tx_hash

    def stage_event(
        self, task: TaskRef, stage: CommitStage, status: TxStatus, tx_hash: str | None, detail: str
    ) -> Event:
        return UserTaskStage(
            session_id=task.session_id,
            task_id=task.task_id,
            stage=self._STAGES[stage],
            status=status,
            tx_hash=tx_hash,
            detail=detail,
        )

    # -- what the miner reads to decide on a user task ---------------------------------------
    def state(self, task_id: int) -> int:
        return self._client.queue.state(task_id)

    def task(self, task_id: int) -> TaskRef:
        """The task's journal reference (its session read from the chain)."""
        session_id = int(self._client.queue.call("tasks", task_id)[0])
        return TaskRef(TaskKind.USER, session_id, task_id)

    def session_model(self, session_id: int) -> bytes:
        """The model id a user session asks for."""
        return bytes(self._client.queue.call("sessions", session_id)[5])

    def price_per_token(self, session_id: int) -> int:
        """What a session pays each miner per answer token (wei)."""
        queue = self._client.queue
        session = queue.call("sessions", session_id)
        return int(session[6]) // int(session[3]) // int(queue.call("answerTokens"))

    def queued_prompts(self, task_id: int, start: int, end: int) -> Iterator[str]:
        """The prompt of a task's TaskQueued between two blocks (filtered by task id, so only
        that one log comes back)."""
        cursor = EventCursor(
            "SessionQueue",
            self._client.queue.contract,
            "TaskQueued",
            start,
            argument_filters={"taskId": task_id},
        )
        for event in cursor.poll(end):
            yield str(event.args["prompt"])

    def _precommitted(self, task: TaskRef) -> bool:
        return self._client.queue.assignment(self._miner) == (
            task.task_id,
            AssignmentStatus.PRECOMMITTED,
        )
