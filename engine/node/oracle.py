"""The oracle: schedules network tasks and drives them through the PoUW state machine.

Each `step()` (1) opens a new session when the interval has passed and this oracle leads,
(2) reads new chain events, and (3) advances every open session: a session moves on as soon as
every selected miner has acted (the contract opens the next window itself) and at the latest at
its deadline (reassign a late creator or preparer, close a late window). Once all answers are
in, it validates them with the real models (engine.poi.validator), writes per-miner scores and ends
the session. Verdicts go to the journal, where the per-node window decides pool removal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from chain.client import ChainClient
from chain.errors import ChainError, ContractRevert, RpcUnavailable
from chain.events import ChainEvent
from chain.wrappers import (
    NO_CONSENSUS,
    PASS_SCORE,
    AssignmentStatus,
    ContractWrapper,
    NodeStatus,
    Precision,
    SessionState,
    SlotStatus,
    TaskState,
)
from engine.errors import ModelError
from engine.node import task_prompt
from engine.node.chain_health import ChainHealth
from engine.node.chain_watch import DEFAULT_LOOKBACK_BLOCKS, ChainWaiter, ChainWatcher, Reorg
from engine.node.network_tasks import decode_prompts, prompt_for_miner
from engine.node.pool_index import PoolIndex
from engine.node.user_session import VALIDATION_LEVEL_NONE
from engine.poi.validation import Verdict, WindowPolicy, select_miners, should_remove
from engine.poi.validator import Judgement, Validator
from engine.protocol import NetworkStage, NodeRole, TaskKind, TaskRole, UserStage
from engine.state.events import (
    Alert,
    AlertKind,
    Event,
    EventBus,
    LogLine,
    NetworkTaskStage,
    Severity,
    TxStatus,
    UserTaskStage,
    ValidationResult,
)
from engine.state.journal import Journal, TaskRef, VerdictRecord

log = logging.getLogger(__name__)

ORACLE_EVENTS = ("SessionRequested", "ChallengePrepared", "AnswerRevealed", "SessionEnded")
# A user task that cannot be assigned (too few eligible miners, or one became busy) is tried
# again only after this long, so unassignable tasks cost no RPC every poll (its owner may
# refund it after the contract's task timeout).
ASSIGN_RETRY_S = 5.0
QUEUE_EVENTS = ("TaskQueued", "TaskAssigned", "TaskAnswer", "TaskValidated", "TaskRefunded")
RECENTLY_CLOSED = 8  # ended sessions and validated tasks whose end a reorg could still undo
# Free miners looked for per assignment step: a few tasks' worth (k each), probing at most this
# many candidates per k, so a step's work is bounded by k, not by the pool.
FREE_WANTED, FREE_PROBES = 4, 16
ROLE_CANDIDATES = 32  # present miners a session's creator and preparer are picked among
MAX_USER_RESULTS = 256
# A task that fails this often (a worker crash, a bug) is ended with zero scores rather than
# retried: no single task may hold the network, or its escrow, for good.
MAX_TASK_FAILURES = 3


@dataclass(frozen=True)
class OracleSettings:
    task_interval_s: float = 5.0
    miners_per_task: int = 3
    answer_max_tokens: int = 128
    poll_interval_s: float = 0.5
    max_open_sessions: int = 1
    role_cooldown_s: float = 30.0
    # Removal from the pool: too many failed answers among a node's recent ones.
    window: WindowPolicy = field(default_factory=WindowPolicy)


@dataclass
class _UserTask:
    session_id: int
    prompt: str
    since_block: int = 0  # where its first event is: a restart (or a reorg) reads from there
    miners: list[str] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    tx_hashes: list[str] = field(default_factory=list)
    gas_used: int = 0
    judgement: Judgement | None = None


@dataclass
class _Open:
    since_block: int = 0  # where its request is: a restart (or a reorg) reads from there
    prompts: list[str] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)


class Oracle:
    def __init__(
        self,
        client: ChainClient,
        validator: Validator,
        journal: Journal,
        bus: EventBus,
        settings: OracleSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if client.address is None:
            raise ValueError("an oracle needs a signing account")
        self.client = client
        self.address: str = client.address
        self.validator = validator
        self.journal = journal
        self.bus = bus
        self.settings = settings or OracleSettings()
        self._clock = clock
        self._open: dict[int, _Open] = {}
        self._last_request: float | None = None
        self._last_picked: dict[str, float] = {}
        self._watcher: ChainWatcher | None = None
        self.sessions_ended = 0
        self.health = ChainHealth(client.backend, self._publish)
        self._user_open: dict[int, _UserTask] = {}
        # The last user tasks validated, for benches and tests that read an outcome in process;
        # bounded so a long run does not keep every prompt and answer.
        self.user_results: OrderedDict[int, _UserTask] = OrderedDict()
        # First blocks of the views closed last: a reorg may undo their end or validation.
        self._closed: deque[int] = deque(maxlen=RECENTLY_CLOSED)
        self._failures: dict[tuple[TaskKind, int], int] = {}
        self._head = 0
        self._saved_watch_from: int | None = None
        self._assign_retry_at: dict[int, float] = {}
        self._eligible_now: dict[
            tuple[bytes, Precision, int], list[str]
        ] = {}  # this step's pool reads
        self._answer_tokens: int | None = None
        self._levels: OrderedDict[int, int] = OrderedDict()  # user session -> validation level

    def start(self) -> None:
        """Read the chain from where the oldest open task began (journaled), so a restart
        rebuilds every open task and session from its events; a first start looks back."""
        head = int(self.client.web3.eth.block_number)
        sources: list[tuple[ContractWrapper, str]] = [
            (self.client.cognitive, name) for name in ORACLE_EVENTS
        ]
        sources += [(self.client.queue, name) for name in QUEUE_EVENTS]
        since = self.journal.watch_from()
        lookback = DEFAULT_LOOKBACK_BLOCKS if since is None else max(0, head - since)
        self._saved_watch_from = since
        self._head = head
        self._pool = PoolIndex(self.client)
        self._watcher = ChainWatcher(
            head,
            sources,
            lookback_blocks=lookback,
            floor_block=self.client.deployment.deploy_block,
            web3=self.client.web3,
            on_reorg=self._on_reorg,
            sent_in=lambda: self.client.sender.last_receipt_block if self.client.sender else None,
        )

    def run(self, stop: threading.Event) -> None:
        if self._watcher is None:
            self.start()
        waiter = ChainWaiter(self.client.web3, self.settings.poll_interval_s)
        while not stop.is_set():
            try:
                self.step()
            except RpcUnavailable as exc:
                self.health.step_failed(
                    exc
                )  # every step re-reads the chain: nothing else to resume
            except ChainError as exc:
                log.warning("oracle: chain error: %s", exc)
                self.health.step_ok()
            else:
                self.health.step_ok()
            waiter.wait(stop)

    def step(self) -> None:
        if self._watcher is None:
            raise RuntimeError("call start() first")
        for event in self._watcher.poll():
            self._note(event)
        head = self._watcher.head
        assert head is not None  # a watcher with web3 always knows where it read to
        self._head = head
        self._save_watch_from()
        if not self._leading():
            return  # a standby follows every session, so it can finish them if it takes over
        self._request_if_due()
        for session_id in list(self._open):
            self._per_task(TaskKind.NETWORK, session_id, self._advance)
        self._eligible_now.clear()
        for task_id in list(self._user_open):
            self._per_task(TaskKind.USER, task_id, self._advance_user)

    # -- one task's failure is that task's, never the loop's ------------------------------
    def _per_task(self, kind: TaskKind, task_id: int, advance: Callable[[int], None]) -> None:
        """Advance one task. A chain error ends the step as before (the chain is read again
        next step); anything else (the validator's worker crashed, a bug) counts against
        this task alone, which is judged again next step and ended with zeros at the limit."""
        try:
            advance(task_id)
        except ChainError:
            raise
        except Exception as exc:
            self._task_failed(kind, task_id, exc)

    def _task_failed(self, kind: TaskKind, task_id: int, exc: Exception) -> None:
        key = (kind, task_id)
        self._failures[key] = count = self._failures.get(key, 0) + 1
        what = f"{kind.value} task {task_id}"
        if isinstance(exc, ModelError):
            log.warning(
                "oracle: %s: the validator failed (%d of %d): %s",
                what,
                count,
                MAX_TASK_FAILURES,
                exc,
            )
            self._publish(
                Alert(
                    kind=AlertKind.WORKER_CRASH,
                    severity=Severity.WARNING,
                    message=f"validating {what} failed ({exc}); "
                    f"attempt {count} of {MAX_TASK_FAILURES}",
                )
            )
        else:
            log.error("oracle: %s failed (%d of %d)", what, count, MAX_TASK_FAILURES, exc_info=exc)
        if count > MAX_TASK_FAILURES:
            # Even ending it with zeros failed: forget it rather than retry it for ever.
            log.error("oracle: giving up on %s", what)
            (self._open if kind is TaskKind.NETWORK else self._user_open).pop(task_id, None)
            self._failures.pop(key, None)

    def _unjudgeable(self, kind: TaskKind, task_id: int) -> bool:
        """Failed too often: ended with zero scores (failed shares go back to the user)."""
        return self._failures.get((kind, task_id), 0) >= MAX_TASK_FAILURES

    def _save_watch_from(self) -> None:
        starts = [v.since_block for v in self._open.values()]
        starts += [t.since_block for t in self._user_open.values()]
        watch_from = min(starts, default=self._head + 1)
        if watch_from != self._saved_watch_from:
            self.journal.save_watch_from(watch_from)
            self._saved_watch_from = watch_from

    def _on_reorg(self, reorg: Reorg) -> int:
        """The chain dropped blocks: forget every open view (answers and prompts may be gone)
        and re-read the events of each from its first block, so the views hold only what the
        chain now has; the nonce is re-read. Each step re-reads state, so a dropped end or
        assignment is simply done again."""
        self._publish(LogLine(level="warning", logger="oracle", message=reorg.describe()))
        with self.client.nonces.lock_for(self.address):
            self.client.nonces.forget(self.address)
        firsts = [v.since_block for v in self._open.values()]
        firsts += [t.since_block for t in self._user_open.values()]
        firsts += list(self._closed)
        self._open.clear()
        self._user_open.clear()
        self._pool.rebuild()
        return min([reorg.fork_block + 1, *firsts])

    @property
    def pool(self) -> PoolIndex | None:
        """The registry's pool as this oracle follows it (None before `start`); thread-safe,
        so a router in the same process can share it."""
        return getattr(self, "_pool", None)

    def _pool_now(self) -> PoolIndex:
        """The pool as of the block this step read: only the registry events since the last
        time it was asked (read when needed, not every step)."""
        assert self._watcher is not None
        self._pool.refresh(self._watcher.head)
        return self._pool

    def _close_view(self, session_id: int) -> None:
        view = self._open.pop(session_id, None)
        self._failures.pop((TaskKind.NETWORK, session_id), None)
        if view is not None:
            self._closed.append(view.since_block)

    def _close_user_view(self, task_id: int) -> None:
        task = self._user_open.pop(task_id, None)
        self._failures.pop((TaskKind.USER, task_id), None)
        if task is not None:
            self._closed.append(task.since_block)

    def _leading(self) -> bool:
        registry = self.client.registry
        if registry.leader().lower() == self.address.lower():
            return True
        silent_since = int(registry.call("lastLeaderActivity"))
        grace = int(registry.call("leaderGrace"))
        if self._chain_time() <= silent_since + grace:
            return False
        previous = registry.leader()
        try:
            registry.takeover()
        except ChainError as exc:  # another standby was faster, or the leader woke up
            log.info("takeover refused: %s", exc)
            return False
        self._publish(
            Alert(
                kind=AlertKind.STALL,
                severity=Severity.WARNING,
                message=f"leader {previous} was silent for over {grace} s; this oracle took over",
            )
        )
        return True

    # -- scheduling -----------------------------------------------------------------------
    def _request_if_due(self) -> None:
        now = self._clock()
        due = (
            self._last_request is None or now - self._last_request >= self.settings.task_interval_s
        )
        if not due or len(self._open) >= self.settings.max_open_sessions:
            return
        miners = self._role_candidates(f"{self.address}:{now}")
        if not miners:
            return
        self._last_request = now
        seed = hashlib.sha256(f"{self.address}:{now}".encode()).digest()
        creator, preparer = self._pick_roles(miners, seed, now)
        session_id, result = self.client.cognitive.request(seed, creator, preparer)
        self._open[session_id] = _Open(since_block=int(result.receipt["blockNumber"]))
        self._stage(
            session_id,
            NetworkStage.REQUEST,
            result.tx_hash,
            f"creator {creator[:10]}, preparer {preparer[:10]}",
        )

    def _role_candidates(self, seed: str) -> list[str]:
        """A seeded sample of the present miners to pick a creator and a preparer from: ranking
        every present miner (a hash each) would make each request cost O(pool)."""
        present = self._pool_now().present()
        return random.Random(seed).sample(present, min(len(present), ROLE_CANDIDATES))

    def _pick_roles(self, miners: list[str], seed: bytes, now: float) -> tuple[str, str]:
        picked = select_miners(
            miners,
            min(2, len(miners)),
            seed=seed.hex(),
            now=now,
            last_picked=self._last_picked,
            cooldown=self.settings.role_cooldown_s,
        )
        for miner in picked:
            self._last_picked[miner] = now
        return picked[0], picked[-1]

    # -- events ---------------------------------------------------------------------------
    def _note(self, event: ChainEvent) -> None:
        if event.contract == "SessionQueue":
            self._note_user(event)
            return
        session_id = int(event.args.get("id", 0))
        if event.name == "SessionRequested":
            self._open.setdefault(session_id, _Open(since_block=event.block_number))
        view = self._open.get(session_id)
        if view is None:
            return
        if event.name == "ChallengePrepared":
            view.prompts = decode_prompts(str(event.args["prompts"]))
        elif event.name == "AnswerRevealed":
            view.answers[str(event.args["miner"])] = str(event.args["answer"])
        elif event.name == "SessionEnded":
            self._close_view(session_id)

    # -- advancing ------------------------------------------------------------------------
    def _advance(self, session_id: int) -> None:
        cognitive = self.client.cognitive
        state = cognitive.state(session_id)
        late = self._chain_time() > cognitive.deadline(session_id)
        if state == SessionState.PREPARED:
            self._start(session_id)
        elif state in (SessionState.REQUESTED, SessionState.CREATED) and late:
            self._reassign(session_id, state)
        elif state in (SessionState.PRECOMMIT, SessionState.COMMIT) and late:
            result = cognitive.close_window(session_id)
            self._stage(
                session_id,
                NetworkStage.PRECOMMIT if state == SessionState.PRECOMMIT else NetworkStage.COMMIT,
                result.tx_hash,
                "window closed at its deadline",
            )
        elif state == SessionState.COMMITTED:
            self._validate_and_end(session_id)
        elif state == SessionState.ENDED:
            self._close_view(session_id)

    def _start(self, session_id: int) -> None:
        present = self._pool_now().present_count()
        count = min(self.settings.miners_per_task, present)
        if count == 0:
            return  # every miner is away (paused): the session waits until one is back
        result = self.client.cognitive.start(session_id, count)
        self._stage(session_id, NetworkStage.START, result.tx_hash, f"{count} miners selected")

    def _reassign(self, session_id: int, state: int) -> None:
        now = self._clock()
        miners = self._role_candidates(f"reassign:{session_id}:{now}")
        if not miners:
            return
        seed = hashlib.sha256(f"reassign:{session_id}:{now}".encode()).digest()
        nxt, _ = self._pick_roles(miners, seed, now)
        result = self.client.cognitive.reassign(session_id, nxt)
        stage = NetworkStage.CREATE if state == SessionState.REQUESTED else NetworkStage.PREPARE
        self._stage(session_id, stage, result.tx_hash, f"late; reassigned to {nxt[:10]}")

    def _validate_and_end(self, session_id: int) -> None:
        view = self._open[session_id]
        cognitive = self.client.cognitive
        selected = cognitive.selected(session_id)
        # State is read at the newest block, events only up to the head this step polled: a
        # reveal in between shows as "committed" before its answer event is read. Wait a step.
        unread = [
            m
            for m in selected
            if m not in view.answers
            and cognitive.slot_status(session_id, m) == SlotStatus.COMMITTED
        ]
        if unread:
            return
        answers = [(m, view.answers[m]) for m in selected if m in view.answers]
        scores = dict.fromkeys(selected, 0)
        if answers and view.prompts and not self._unjudgeable(TaskKind.NETWORK, session_id):
            prompt = prompt_for_miner(view.prompts, session_id, 0)
            judgement = self.validator.judge(prompt, answers, self.settings.answer_max_tokens)
            for judged in judgement.answers:
                scores[judged.miner] = judged.score
                self._record(session_id, judged.miner, judged.verdict, TaskKind.NETWORK)
        result = self.client.cognitive.end(session_id, [scores[m] for m in selected])
        passed = sum(1 for s in scores.values() if s >= PASS_SCORE)
        self._stage(
            session_id,
            NetworkStage.END,
            result.tx_hash,
            f"{passed} of {len(selected)} miners passed",
        )
        self._close_view(session_id)
        self.sessions_ended += 1

    def _record(
        self, session_id: int, miner: str, verdict: Verdict, kind: TaskKind, task_id: int = 0
    ) -> None:
        task = TaskRef(kind, session_id, task_id)
        self.journal.record_verdict(
            VerdictRecord.from_verdict(verdict, miner=miner, task=task, at=self._clock())
        )
        self._publish(
            ValidationResult.from_verdict(
                verdict, miner=miner, task_kind=kind, session_id=session_id, task_id=task_id
            )
        )
        if not verdict.passed:
            self._remove_if_the_window_says_so(miner)

    def _remove_if_the_window_says_so(self, miner: str) -> None:
        """The per-node rule: failures improbable for an honest node take it out of the pool."""
        policy = self.settings.window
        window = [record.passed for record in self.journal.recent_verdicts(miner, policy.size)]
        if not should_remove(window, policy):
            return
        if self.client.registry.node_info(miner).status != NodeStatus.EPHEMERAL:
            return  # not in the pool (never was, or already out)
        result = self.client.stats.remove_from_pool(miner)
        failed = window.count(False)
        self._publish(
            LogLine(
                level="warning",
                logger="oracle",
                message=f"{miner} removed from the pool: {failed} of its last {len(window)} "
                f"answers failed validation (tx {result.tx_hash})",
            )
        )

    # -- user tasks (SessionQueue) --------------------------------------------------------
    def _note_user(self, event: ChainEvent) -> None:
        task_id = int(event.args["taskId"])
        if event.name == "TaskQueued":
            self._user_open[task_id] = _UserTask(
                session_id=int(event.args["sessionId"]),
                prompt=str(event.args["prompt"]),
                since_block=event.block_number,
            )
        elif event.name == "TaskAssigned" and task_id in self._user_open:
            # Also this oracle's own assignment; after a restart (or a reorg that rebuilt the
            # view) it is the only record of it.
            self._user_open[task_id].miners = [str(m) for m in event.args["miners"]]
        elif event.name in ("TaskValidated", "TaskRefunded"):
            # Finished (validated by the leader, or refunded to its owner after the timeout):
            # nothing left to do, and a standby that kept it would hold its read position
            # there for good. Its miners are free again: a task waiting for miners is tried
            # at once, not after its retry delay (a router keeps tasks queued behind busy
            # miners).
            self._close_user_view(task_id)
            self._assign_retry_at.clear()
        elif event.name == "TaskAnswer" and task_id in self._user_open:
            self._user_open[task_id].answers[str(event.args["miner"])] = str(event.args["answer"])

    def _advance_user(self, task_id: int) -> None:
        task = self._user_open[task_id]
        queue = self.client.queue
        state = queue.state(task_id)
        if state == TaskState.QUEUED:
            self._assign(task_id, task)
        elif state in (TaskState.ASSIGNED, TaskState.COMMIT):
            deadline = int(queue.call("tasks", task_id)[2])
            if self._chain_time() > deadline:
                result = queue.close_window(task_id, task.miners)
                task.tx_hashes.append(result.tx_hash)
        elif state == TaskState.COMMITTED:
            self._validate_user(task_id, task)
        elif TaskState(state).finished:  # validated, or refunded by its owner after a timeout
            self._close_user_view(task_id)
            self._assign_retry_at.pop(task_id, None)

    def _assign(self, task_id: int, task: _UserTask) -> None:
        now = self._clock()
        if now < self._assign_retry_at.get(task_id, 0.0):
            return
        session = self.client.queue.call("sessions", task.session_id)
        precision, k, model = Precision(int(session[1])), int(session[3]), bytes(session[5])
        per_token = int(session[6]) // k // self._tokens_per_answer()
        eligible = self._eligible(model, precision, per_token, k)
        if len(eligible) < k:
            self._assign_retry_at[task_id] = now + ASSIGN_RETRY_S
            return  # not enough free eligible miners yet; the task waits in the queue
        picked = select_miners(
            eligible, k, seed=f"task:{task_id}", now=now, last_picked={}, cooldown=0
        )
        try:
            result = self.client.queue.assign(task_id, list(picked))
        except ContractRevert as exc:  # e.g. a picked miner is busy with another task
            log.info("task %s not assigned yet: %s", task_id, exc)
            self._assign_retry_at[task_id] = now + ASSIGN_RETRY_S
            return
        self._assign_retry_at.pop(task_id, None)
        for cached in self._eligible_now.values():  # busy now: not for another task this step
            cached[:] = [m for m in cached if m not in picked]
        task.miners = list(picked)
        task.tx_hashes.append(result.tx_hash)
        self._user_stage(task, task_id, UserStage.ASSIGNED, result.tx_hash, f"{k} miners")

    def _eligible(self, model: bytes, precision: Precision, per_token: int, k: int) -> list[str]:
        """Free pool miners serving `model` at `precision` whose price floor the task meets;
        read once a step however many tasks wait. Who is in the pool, serving what at which
        floor, comes from the pool index without a call; only candidates are asked whether
        they are free, in an order seeded by the block, until a few tasks' worth are found:
        bounded work however large the pool."""
        key = (model, precision, per_token)
        if key not in self._eligible_now:
            serving = self._pool_now().serving(
                model, full_precision=precision is Precision.FULL, max_floor=per_token
            )
            # A seeded sample in the order to probe, of no more than the probes below can
            # use: ranking every serving miner (a hash each) would cost O(pool) per step.
            probes = min(len(serving), FREE_PROBES * k)
            ranked = random.Random(f"pool:{self._head}").sample(serving, probes)
            free: list[str] = []
            for probed, miner in enumerate(ranked, start=1):
                if self.client.queue.assignment(miner)[1] == AssignmentStatus.NONE:
                    free.append(miner)
                if len(free) >= FREE_WANTED * k or probed >= FREE_PROBES * k:
                    break
            self._eligible_now[key] = free
        return self._eligible_now[key]

    def _validated(self, session_id: int) -> bool:
        """Whether a user session's tasks are judged (PoI) or accepted as answered (level 0).
        A session's level never changes: read once per session."""
        if session_id not in self._levels:
            level = int(self.client.queue.call("sessions", session_id)[2])
            self._levels[session_id] = level
            while len(self._levels) > MAX_USER_RESULTS:
                self._levels.popitem(last=False)
        return self._levels[session_id] != VALIDATION_LEVEL_NONE

    def _tokens_per_answer(self) -> int:
        if self._answer_tokens is None:
            self._answer_tokens = int(self.client.queue.call("answerTokens"))
        return self._answer_tokens

    def _validate_user(self, task_id: int, task: _UserTask) -> None:
        queue = self.client.queue
        unread = [
            m
            for m in task.miners
            if m not in task.answers
            and queue.assignment(m) == (task_id, AssignmentStatus.COMMITTED)
        ]
        if unread:
            return  # its answer event is in a block this step did not read yet
        answers = [(m, task.answers[m]) for m in task.miners if m in task.answers]
        scores = dict.fromkeys(task.miners, 0)
        consensus = NO_CONSENSUS
        if not self._validated(task.session_id):
            scores, consensus = _accept_unvalidated(task)
        elif answers and not self._unjudgeable(TaskKind.USER, task_id):
            # The miners answered the decoded prompt under the same limit (task_prompt).
            prompt = task_prompt.decode(task.prompt)
            limit = prompt.answer_limit(self.settings.answer_max_tokens)
            judgement = self.validator.judge(prompt.model_input, answers, limit)
            task.judgement = judgement
            for judged in judgement.answers:
                scores[judged.miner] = judged.score
                self._record(task.session_id, judged.miner, judged.verdict, TaskKind.USER, task_id)
            if judgement.consensus_index is not None:
                winner = judgement.answers[judgement.consensus_index].miner
                consensus = task.miners.index(winner)
        result = self.client.queue.validate(
            task_id, task.miners, [scores[m] for m in task.miners], consensus
        )
        task.tx_hashes.append(result.tx_hash)
        task.gas_used += int(result.receipt["gasUsed"])
        self.user_results[task_id] = task
        while len(self.user_results) > MAX_USER_RESULTS:
            self.user_results.popitem(last=False)
        passed = sum(1 for s in scores.values() if s >= PASS_SCORE)
        self._user_stage(
            task,
            task_id,
            UserStage.VALIDATED,
            result.tx_hash,
            f"{passed} of {len(task.miners)} miners passed"
            + ("" if self._validated(task.session_id) else " (unvalidated: answered, not judged)"),
        )
        self._close_user_view(task_id)

    def _user_stage(
        self, task: _UserTask, task_id: int, stage: UserStage, tx_hash: str, detail: str
    ) -> None:
        self._publish(
            UserTaskStage(
                session_id=task.session_id,
                task_id=task_id,
                stage=stage,
                status=TxStatus.CONFIRMED,
                tx_hash=tx_hash,
                detail=detail,
            )
        )

    # -- helpers --------------------------------------------------------------------------
    def _chain_time(self) -> float:
        # A quiet in-process chain mines no blocks, so its latest timestamp can lag the clock.
        latest = int(self.client.web3.eth.get_block("latest")["timestamp"])
        return max(float(latest), self._clock())

    def _stage(self, session_id: int, stage: NetworkStage, tx_hash: str, detail: str) -> None:
        self._publish(
            NetworkTaskStage(
                session_id=session_id,
                stage=stage,
                task_role=TaskRole.ORACLE,
                status=TxStatus.CONFIRMED,
                tx_hash=tx_hash,
                detail=detail,
            )
        )

    def _publish(self, event: Event) -> None:
        self.bus.publish(dataclasses.replace(event, node=self.address, role=NodeRole.ORACLE))


def _accept_unvalidated(task: _UserTask) -> tuple[dict[str, int], int]:
    """An unvalidated task's scores and consensus, with no model run: a sampled answer has no
    reference to be judged against. Every miner that revealed a non-empty answer passes (and
    is paid its share by the contract, once); the consensus is the first such answer revealed
    (answers are kept in the order the chain holds them). No verdict is recorded, so these
    tasks never count towards a miner's removal from the pool."""
    scores = dict.fromkeys(task.miners, 0)
    first: str | None = None
    for miner, answer in task.answers.items():  # reveal order
        if miner in scores and answer.strip():
            scores[miner] = 100
            first = first or miner
    return scores, task.miners.index(first) if first is not None else NO_CONSENSUS
