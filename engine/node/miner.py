"""The miner: registers, pings, and plays its part in network tasks as the chain asks.

Driven by chain events, one step at a time (`step()`), so a test can drive it deterministically
and `run()` just repeats it. Roles in a network task (docs/NODE.md):
    creator   SessionRequested names it  -> ask the model for a topic   -> Cognitive.create
    preparer  TopicCreated for its session -> challenge prompts          -> Cognitive.prepare
    answerer  SessionStarted selects it  -> greedy answer, journal salt+answer, then precommit
              CommitOpened               -> reveal answer and salt from the journal -> commit
A reassignment (RoleReassigned) hands it the creator or preparer job late.

Crash safety: the salt and answer are in the journal before the precommit is sent; on restart
`resume()` reveals what was precommitted and sends a precommit that was prepared but not sent,
after asking the chain whether it already went through, so nothing is sent twice.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chain.client import ChainClient
from chain.errors import ChainError, RpcUnavailable
from chain.events import ChainEvent, EventCursor
from chain.wrappers import (
    STAGE_COUNT,
    STAGE_PRECOMMIT,
    AssignmentStatus,
    ContractWrapper,
    NodeStatus,
    SessionState,
    SlotStatus,
    TaskState,
    Tier,
    commitment,
    model_id,
)
from engine import failpoints
from engine.errors import EngineError, ModelError, WorkerCrashedError
from engine.inference.runtime import Prompt
from engine.inference.types import BenchResult, GenerationResult, SamplingParams, TokenEvent
from engine.node import task_prompt
from engine.node.benchmarks import bench_document, benchmark_event, quant_of_file, store_benchmark
from engine.node.chain_health import ChainHealth
from engine.node.chain_watch import ChainWaiter, ChainWatcher, Reorg
from engine.node.earnings import (
    DEFAULT_REFRESH_S,
    PAYMENT_EVENTS,
    EarningsTracker,
    eth,
)
from engine.node.network_tasks import (
    decode_prompts,
    encode_prompts,
    parse_prompts,
    parse_topic,
    prompt_for_miner,
    prompts_request,
    topic_request,
)
from engine.node.reorg import reconcile_after_reorg
from engine.node.user_session import VALIDATION_LEVEL_NONE
from engine.protocol import NetworkStage, NodeRole, TaskKind, TaskRole, UserStage
from engine.state.events import (
    Alert,
    AlertKind,
    Event,
    EventBus,
    InferenceFinished,
    LogLine,
    NetworkTaskStage,
    NodeState,
    NodeStateChanged,
    PingSent,
    PointsUpdated,
    PreflightStep,
    Severity,
    StepStatus,
    TokenProgress,
    TxStatus,
    UserTaskStage,
)
from engine.state.journal import CommitStage, CommitState, Journal, TaskRef
from engine.state.summary import DEFAULT_LOW_GAS_WEI

log = logging.getLogger(__name__)

_REVEALABLE = (CommitState.PRECOMMIT_SENT, CommitState.PRECOMMITTED, CommitState.COMMIT_SENT)
QUEUE_EVENTS = ("TaskQueued", "TaskAssigned", "TaskPhase")
COGNITIVE_EVENTS = (
    "SessionRequested",
    "TopicCreated",
    "ChallengePrepared",
    "RoleReassigned",
    "SessionStarted",
    "CommitOpened",
)


class ChatModel(Protocol):
    """What the miner needs of the runtime (InferenceWorker satisfies it)."""

    def generate(
        self, prompt: Prompt, params: SamplingParams | None = None
    ) -> GenerationResult: ...


class BenchableModel(ChatModel, Protocol):
    """A runtime that can also benchmark itself (InferenceWorker); test doubles may not."""

    def bench(self, prompt: str = ..., runs: int = ..., gen_tokens: int = ...) -> BenchResult: ...


LIVE_BENCH_RUNS = 2
LIVE_BENCH_TOKENS = 32
TOKEN_EVENT_INTERVAL_S = 0.25
INTERRUPTED = frozenset({"cancelled", "killed"})  # finish reasons of a request cut off by a stop
# What the miner keeps of the chain's traffic, whatever anyone sends (calldata is cheap): the
# newest sessions and queued prompts, each prompt capped. A prompt longer than this cannot fit
# any context the catalogue's models run with, so it is never answered anyway.
MAX_TRACKED = 256
MAX_USER_PROMPT_CHARS = 64 * 1024
# A task assigned to this miner whose prompt was not kept (pushed out by traffic, or queued
# before this node's lookback) is read back from the chain: its TaskQueued, at most this many
# blocks before the assignment.
PROMPT_SEARCH_BLOCKS = 20_000


@dataclass(frozen=True)
class MinerSettings:
    model_name: str = "smollm2-135m-instruct"
    answer_max_tokens: int = 128
    prompts_per_session: int = 3
    ping_interval_s: float = 60.0
    poll_interval_s: float = 0.5
    tier: int = Tier.CPU_LOW
    memory_mb: int = 0
    served_models: tuple[str, ...] = ()  # registered on chain; empty: model_name alone
    app_version: str = "0.1.0"
    low_gas_wei: int = DEFAULT_LOW_GAS_WEI  # LOW_GAS alert below this gas balance; 0: never
    earnings_refresh_s: float = DEFAULT_REFRESH_S  # how often the gas balance is read
    # The least this node accepts per answer token of a user task (wei). Published on chain at
    # start (NodeRegistry.setPriceFloor), so the leader cannot assign it a cheaper task.
    price_floor_wei_per_token: int = 0


@dataclass(frozen=True)
class _Swap:
    chat: ChatModel
    settings: MinerSettings
    on_swapped: Callable[[ChatModel], None]
    requested_at: float


@dataclass
class _Session:
    seed: bytes = b""
    creator: str = ""
    preparer: str = ""
    topic: str = ""
    prompts: list[str] = field(default_factory=list)


class Miner:
    def __init__(
        self,
        client: ChainClient,
        chat: ChatModel,
        journal: Journal,
        bus: EventBus,
        settings: MinerSettings | None = None,
        payout: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client.address is None:
            raise ValueError("a miner needs a signing account")
        self.client = client
        self.address: str = client.address
        self.chat = chat
        self.journal = journal
        self.bus = bus
        self.settings = settings or MinerSettings()
        self.payout = payout or self.address
        self._clock = clock
        self._sessions: dict[int, _Session] = {}
        self._task_prompts: dict[int, str] = {}
        self._last_ping: float | None = None
        self._watcher: ChainWatcher | None = None
        self._backlog: deque[ChainEvent] = deque()  # read from the chain, not yet handled
        self._reorg_due = False  # the chain dropped blocks: reconcile the journal first
        self.paused = False
        self.tasks_done = 0
        self._benchmark_wanted = threading.Event()
        self._swap: _Swap | None = None  # a re-plan's model, taken between two steps
        self._chat_streams = _streams_tokens(chat)
        self.health = ChainHealth(client.backend, self._publish)
        self._away_on_chain = False
        self.earnings = EarningsTracker(
            client,
            journal,
            self._publish,
            low_gas_wei=self.settings.low_gas_wei,
            refresh_s=self.settings.earnings_refresh_s,
            clock=clock,
        )

    # -- lifecycle ------------------------------------------------------------------------
    def preflight(self) -> None:
        self._publish(NodeStateChanged(state=NodeState.PREFLIGHT))
        info = self.client.registry.node_info(self.address)
        self._away_on_chain = info.away
        s = self.settings
        models = [model_id(m) for m in s.served_models or (s.model_name,)]
        if info.status == NodeStatus.NONE:
            result = self.client.registry.register(
                s.tier, s.memory_mb, s.app_version, models, self.payout
            )
            self._step("registered", StepStatus.CREATED, f"registered in tx {result.tx_hash}")
        elif (info.tier, info.memory_mb) != (s.tier, s.memory_mb) or set(
            self.client.registry.models_of(self.address)
        ) != set(models):
            self.update_spec()
        else:
            self._step("registered", StepStatus.OK, "already registered")
        floor = self.settings.price_floor_wei_per_token
        if info.price_floor != floor:
            result = self.client.registry.set_price_floor(floor)
            self._step(
                "price floor", StepStatus.CREATED, f"{floor} wei per token ({result.tx_hash})"
            )
        head = self._head()
        sources: list[tuple[ContractWrapper, str]] = [
            (self.client.cognitive, name) for name in COGNITIVE_EVENTS
        ]
        sources += [(self.client.queue, name) for name in QUEUE_EVENTS]
        sources += [(self.client.payment, name) for name in PAYMENT_EVENTS]
        self._watcher = ChainWatcher(
            head,
            sources,
            floor_block=self.client.deployment.deploy_block,
            web3=self.client.web3,
            on_reorg=self._on_reorg,
            sent_in=lambda: self.client.sender.last_receipt_block if self.client.sender else None,
        )
        gas = self.earnings.refresh().gas_balance_wei
        low = " (below the low-gas alert threshold)" if self.earnings.alarm.active else ""
        self._step("gas", StepStatus.OK, f"gas balance {eth(gas)}{low}")
        self._publish(NodeStateChanged(state=NodeState.REGISTERED, previous=NodeState.PREFLIGHT))

    def swap_model(
        self,
        chat: ChatModel,
        settings: MinerSettings,
        on_swapped: Callable[[ChatModel], None] = lambda _old: None,
        requested_at: float | None = None,
    ) -> None:
        """A re-plan: serve `chat` with `settings` from the next step on. The task in hand
        finishes on the old model first (each step handles its events to the end); then the
        spec is re-registered and `on_swapped(old)` may close the old runtime."""
        self._swap = _Swap(chat, settings, on_swapped, requested_at or time.monotonic())

    def _apply_swap(self) -> None:
        swap, self._swap = self._swap, None
        if swap is None:
            return
        old, self.chat = self.chat, swap.chat
        self._chat_streams = _streams_tokens(swap.chat)
        self.update_spec(swap.settings)
        swap.on_swapped(old)
        took = time.monotonic() - swap.requested_at
        message = (
            f"model swapped to {swap.settings.model_name} in {took:.1f} s "
            "(re-plan: loaded, then taken between tasks, spec re-registered)"
        )
        if old is swap.chat:
            message = f"re-plan: same model, spec re-registered in {took:.1f} s"
        self._publish(LogLine(level="info", logger="miner", message=message))

    def update_spec(self, settings: MinerSettings | None = None) -> None:
        """Register a changed plan (tier, memory, served models) on chain: a re-plan or an
        earlier registration with other figures."""
        if settings is not None:
            self.settings = settings
        s = self.settings
        models = [model_id(m) for m in s.served_models or (s.model_name,)]
        result = self.client.registry.update_spec(s.tier, s.memory_mb, s.app_version, models)
        tier = Tier.label_of(s.tier) or str(s.tier)
        detail = f"spec updated: tier {tier}, {s.memory_mb} MiB (tx {result.tx_hash})"
        self._step("registered", StepStatus.OK, detail)

    def run(self, stop: threading.Event) -> None:
        if self._watcher is None:
            self.preflight()
        resume_due = True  # at start, and again after every RPC outage
        waiter = ChainWaiter(self.client.web3, self.settings.poll_interval_s)
        while not stop.is_set():
            try:
                if resume_due:
                    resume_due = False
                    self.resume()
                self.step()
            except RpcUnavailable as exc:
                self.health.step_failed(exc)
                resume_due = True  # a send may have failed or lost its receipt meanwhile
            except ChainError as exc:
                log.warning("miner %s: chain error: %s", self.address[:10], exc)
                self.health.step_ok()
            else:
                self.health.step_ok()
            waiter.wait(stop)
        self._publish(NodeStateChanged(state=NodeState.STOPPED))

    def step(self) -> None:
        """One pass: ping when due, then react to every new chain event in order."""
        if self._watcher is None:
            raise RuntimeError("call preflight() first")
        if self._swap is not None:
            self._apply_swap()
        if self._benchmark_wanted.is_set():
            self._benchmark_wanted.clear()
            self._benchmark()
        if self.paused != self._away_on_chain:
            self._set_away(self.paused)
        if not self.paused:
            self._ping_if_due()
        self._backlog.extend(self._watcher.poll())
        if self._reorg_due:
            reconcile_after_reorg(self.client, self.journal, self.address)
            self._reorg_due = False
            self.resume()  # sends again what the reorg dropped, guarded by the chain state
        while self._backlog:
            event = self._backlog.popleft()
            try:
                self._handle(event)
            except RpcUnavailable:
                self._backlog.appendleft(event)  # handled again once the chain answers
                raise
            except EngineError as exc:
                # This event's failure (the journal refused a second answer, a model error),
                # not the loop's: the next events still get their turn.
                log.warning(
                    "miner %s: %s %s: %s", self.address[:10], event.name, event.tx_hash, exc
                )
        self.earnings.tick()

    def _on_reorg(self, reorg: Reorg) -> int | None:
        """The chain dropped blocks: re-read the nonce, forget unhandled events of the old
        history, and reconcile the journal before handling the new history's events."""
        self._publish(LogLine(level="warning", logger="miner", message=reorg.describe()))
        with self.client.nonces.lock_for(self.address):
            self.client.nonces.forget(self.address)
        self._backlog = deque(e for e in self._backlog if e.block_number <= reorg.fork_block)
        self._reorg_due = True
        return None

    def _set_away(self, away: bool) -> None:
        """Paused: out of selection and the pool on chain, so no deadline is missed meanwhile."""

        def report(status: TxStatus, tx_hash: str | None, error: str) -> Event:
            what = "away: out of selection and the pool" if away else "back in selection"
            ok = status is TxStatus.CONFIRMED
            return LogLine(
                level="info" if ok else "warning",
                logger="miner",
                message=f"{what} (tx {tx_hash})" if ok else f"could not mark {what}: {error}",
            )

        if self._transact(lambda: self.client.registry.set_away(away).tx_hash, report):
            self._away_on_chain = away

    def request_benchmark(self) -> tuple[bool, str]:
        """Benchmark the served model between tasks (the worker serves one request at a time)."""
        if not callable(getattr(self.chat, "bench", None)):
            return False, "this miner's runtime cannot benchmark itself"
        self._benchmark_wanted.set()
        return True, "benchmark queued: it runs between tasks"

    def _benchmark(self) -> None:
        import llama_cpp

        chat: BenchableModel = self.chat  # type: ignore[assignment]  # request_benchmark checked
        started = time.monotonic()
        try:
            result = chat.bench(runs=LIVE_BENCH_RUNS, gen_tokens=LIVE_BENCH_TOKENS)
        except (ModelError, WorkerCrashedError) as exc:
            self._publish(
                Alert(
                    kind=AlertKind.WORKER_CRASH,
                    severity=Severity.WARNING,
                    message=f"benchmark failed: {exc}",
                )
            )
            return
        model = self.settings.model_name
        document = bench_document(
            result,
            model,
            quant_of_file(result.model),
            time.monotonic() - started,
            llama_cpp.__version__,
        )
        store_benchmark(self.journal.db, document)
        tier = Tier.label_of(self.settings.tier)
        self._publish(benchmark_event(result, document, tier))

    def resume(self) -> None:
        """After a restart: reveal what was precommitted, send what was prepared but not sent,
        and settle a withdrawal a crash left open (from the chain; it is never sent again)."""
        self.earnings.resume()
        for record in self.journal.pending_precommits():
            if record.task.kind is TaskKind.NETWORK:
                self._resume_precommit(record.task)
            else:
                self._resume_user_precommit(record.task)
        for record in self.journal.pending_reveals():
            if record.task.kind is TaskKind.NETWORK:
                self._reveal(record.task.session_id)
            else:
                self._user_reveal(record.task)

    # -- events ---------------------------------------------------------------------------
    def _handle(self, event: ChainEvent) -> None:
        if event.contract == "SessionQueue":
            self._handle_user_task(event)
            return
        if event.contract == "SessionPayment":
            self.earnings.note(event)
            return
        args = event.args
        session_id = int(args.get("id", 0))
        view = self._sessions.setdefault(session_id, _Session())
        _keep_newest(self._sessions, MAX_TRACKED)
        if event.name == "SessionRequested":
            view.seed, view.creator = bytes(args["seed"]), str(args["creator"])
            view.preparer = str(args["preparer"])
            if self._is_me(view.creator):
                self._create(session_id, view)
        elif event.name == "TopicCreated":
            view.topic = str(args["topic"])
            if self._is_me(view.preparer):
                self._prepare(session_id, view)
        elif event.name == "ChallengePrepared":
            view.prompts = decode_prompts(str(args["prompts"]))
        elif event.name == "RoleReassigned":
            self._reassigned(session_id, view, args)
        elif event.name == "SessionStarted":
            # Selected before the away flag reached the chain: finish it (pause finishes a task).
            if any(self._is_me(str(m)) for m in args["miners"]):
                self._answer(session_id, view)
        elif event.name == "CommitOpened":
            self._reveal(session_id)

    def _reassigned(self, session_id: int, view: _Session, args: dict[str, object]) -> None:
        creating = self.client.cognitive.state(session_id) == SessionState.REQUESTED
        nxt = str(args["next"])
        if creating:
            view.creator = nxt
        else:
            view.preparer = nxt
        if self._is_me(nxt):
            (self._create if creating else self._prepare)(session_id, view)

    # -- creator and preparer -------------------------------------------------------------
    def _create(self, session_id: int, view: _Session) -> None:
        if self.client.cognitive.state(session_id) != SessionState.REQUESTED:
            return
        request = topic_request(view.seed)
        text = self._chat(session_id, request.system, request.user, request.max_tokens)
        topic = parse_topic(text, view.seed)
        self._send(
            session_id,
            NetworkStage.CREATE,
            TaskRole.CREATOR,
            lambda: self.client.cognitive.create(session_id, topic).tx_hash,
            topic,
        )

    def _prepare(self, session_id: int, view: _Session) -> None:
        if self.client.cognitive.state(session_id) != SessionState.CREATED:
            return
        count = self.settings.prompts_per_session
        request = prompts_request(view.topic, count)
        text = self._chat(session_id, request.system, request.user, request.max_tokens)
        prompts = encode_prompts(parse_prompts(text, view.topic, count))
        self._send(
            session_id,
            NetworkStage.PREPARE,
            TaskRole.PREPARER,
            lambda: self.client.cognitive.prepare(session_id, prompts).tx_hash,
        )

    # -- answerer -------------------------------------------------------------------------
    def _answer(self, session_id: int, view: _Session) -> None:
        task = TaskRef(TaskKind.NETWORK, session_id)
        if self.journal.get(task) is not None:
            return  # already answered (a replayed event after a restart)
        if not view.prompts:
            log.warning("session %s started but its prompts were not seen", session_id)
            return
        prompt = prompt_for_miner(view.prompts, session_id, 0)
        result = self._generate(session_id, prompt, self.settings.answer_max_tokens)
        self.journal.prepare_commit(task, TaskRole.ANSWERER, result.text)
        self._precommit(task)

    def _precommit(self, task: TaskRef) -> None:
        record = self.journal.get(task)
        if record is None:
            return
        digest = commitment(task.session_id, self.address, _salt_bytes(record.salt), record.answer)
        tx_hash = self._send(
            task.session_id,
            NetworkStage.PRECOMMIT,
            TaskRole.ANSWERER,
            lambda: self.client.cognitive.precommit(task.session_id, digest).tx_hash,
        )
        if tx_hash:
            # Sends wait for the receipt, so "sent" and "confirmed" come together here.
            self.journal.mark_sent(task, CommitStage.PRECOMMIT, tx_hash)
            self.journal.mark_confirmed(task, CommitStage.PRECOMMIT)
            failpoints.hit("miner-after-precommit")

    def _resume_precommit(self, task: TaskRef) -> None:
        cognitive = self.client.cognitive
        if cognitive.slot_status(task.session_id, self.address) == SlotStatus.PRECOMMITTED:
            # It landed but its receipt was lost (RPC down, node killed): the chain holds the
            # journal's binding (only this journal knows the salt). Reveal it; never resend.
            self._adopt_precommit(task, "Cognitive.Precommitted")
            self._reveal(task.session_id)
            return
        if cognitive.state(task.session_id) != SessionState.PRECOMMIT:
            self.journal.abandon(task, "the precommit window closed while the node was down")
            return
        if cognitive.slot_status(task.session_id, self.address) == SlotStatus.SELECTED:
            self._precommit(task)

    def _resume_user_precommit(self, task: TaskRef) -> None:
        if self.client.queue.assignment(self.address) == (
            task.task_id,
            AssignmentStatus.PRECOMMITTED,
        ):
            self._adopt_precommit(task, "SessionQueue.TaskPrecommitted")
            self._user_reveal(task)
            return
        if self.client.queue.state(task.task_id) != TaskState.ASSIGNED:
            self.journal.abandon(task, "the precommit window closed while the node was away")
            return
        self._user_precommit(task)  # sends only while the assignment still waits for it

    def _adopt_precommit(self, task: TaskRef, found_as: str) -> None:
        """Journal a precommit the chain has but the journal did not see confirmed."""
        log.info("%s %s is on chain already; not sending it again", found_as, task.key)
        self.journal.mark_sent(task, CommitStage.PRECOMMIT, "")
        self.journal.mark_confirmed(task, CommitStage.PRECOMMIT)

    def _reveal(self, session_id: int) -> None:
        task = TaskRef(TaskKind.NETWORK, session_id)
        record = self.journal.get(task)
        if record is None or record.state not in _REVEALABLE:
            return
        cognitive = self.client.cognitive
        if cognitive.state(session_id) != SessionState.COMMIT:
            return
        if cognitive.slot_status(session_id, self.address) != SlotStatus.PRECOMMITTED:
            return
        answer, salt = record.answer, _salt_bytes(record.salt)
        tx_hash = self._send(
            session_id,
            NetworkStage.COMMIT,
            TaskRole.ANSWERER,
            lambda: cognitive.commit(session_id, answer, salt).tx_hash,
        )
        if tx_hash:
            self.journal.mark_sent(task, CommitStage.COMMIT, tx_hash)
            self.journal.mark_confirmed(task, CommitStage.COMMIT)
            self.tasks_done += 1
            self._publish_points()

    # -- user tasks (SessionQueue) --------------------------------------------------------
    def _handle_user_task(self, event: ChainEvent) -> None:
        args = event.args
        task_id = int(args["taskId"])
        if event.name == "TaskQueued":
            prompt = str(args["prompt"])
            if len(prompt) <= MAX_USER_PROMPT_CHARS:
                self._task_prompts[task_id] = prompt
                _keep_newest(self._task_prompts, MAX_TRACKED)
        elif event.name == "TaskAssigned":
            if any(self._is_me(str(m)) for m in args["miners"]):
                self._user_ack(task_id, event.block_number)
        elif event.name == "TaskPhase":
            state = int(args["state"])
            task = self._user_task_ref(task_id)
            if task is not None and state == TaskState.COMMIT:
                self._user_reveal(task)

    def _user_task_ref(self, task_id: int) -> TaskRef | None:
        session_id = int(self.client.queue.call("tasks", task_id)[0])
        task = TaskRef(TaskKind.USER, session_id, task_id)
        return task if self.journal.get(task) is not None else None

    def _user_ack(self, task_id: int, assigned_at: int) -> None:
        queue = self.client.queue
        if queue.state(task_id) != TaskState.ASSIGNED:
            return
        if task_id not in self._task_prompts:
            found = self._queued_prompt(task_id, assigned_at)
            if found is None:
                return
            self._task_prompts[task_id] = found
        session_id = int(queue.call("tasks", task_id)[0])
        task = TaskRef(TaskKind.USER, session_id, task_id)
        if self.journal.get(task) is not None:
            # Already answered (a replayed event after a restart): inference again would be
            # wasted, and another build or thread count could answer differently, which the
            # journal refuses. Send the bound answer's precommit if it is still due.
            self._task_prompts.pop(task_id, None)
            self._user_precommit(task)
            return
        if self._under_floor(session_id):
            self._task_prompts.pop(task_id, None)
            return
        # No separate ack: the precommit implies it (a transaction saved per miner and task).
        # The binding is journaled before the precommit is sent.
        # Plain text from `ask`, or the router's chat messages and token limit (task_prompt).
        prompt = task_prompt.decode(self._task_prompts[task_id])
        limit = prompt.answer_limit(self.settings.answer_max_tokens)
        # Sampling only in an unvalidated session (level 0 on chain): a validated one is greedy.
        session = self.client.queue.call("sessions", session_id) if prompt.sampling else None
        validated = session is None or int(session[2]) != VALIDATION_LEVEL_NONE
        params = prompt.sampling_params(self.settings.answer_max_tokens, validated)
        result = self._generate(
            session_id, prompt.model_input, limit, TaskKind.USER, task_id, params
        )
        self.journal.prepare_commit(task, TaskRole.ANSWERER, result.text)
        self._task_prompts.pop(task_id, None)  # the journal holds what is needed from here
        self._user_precommit(task)

    def _queued_prompt(self, task_id: int, assigned_at: int) -> str | None:
        """The prompt of a task assigned to this miner, read back from its TaskQueued event
        (filtered by task id, so only that one log comes back)."""
        start = max(self.client.deployment.deploy_block, assigned_at - PROMPT_SEARCH_BLOCKS)
        cursor = EventCursor(
            "SessionQueue",
            self.client.queue.contract,
            "TaskQueued",
            start,
            argument_filters={"taskId": task_id},
        )
        for event in cursor.poll(assigned_at):
            prompt = str(event.args["prompt"])
            return prompt if len(prompt) <= MAX_USER_PROMPT_CHARS else None
        log.warning("task %s was assigned to this miner but its prompt was not found", task_id)
        return None

    def _under_floor(self, session_id: int) -> bool:
        """A task paying less per token than this node's floor is refused (the contract keeps
        the leader from assigning one; this catches a floor raised after the assignment)."""
        floor = self.settings.price_floor_wei_per_token
        if floor == 0:
            return False
        session = self.client.queue.call("sessions", session_id)
        per_token = (
            int(session[6]) // int(session[3]) // int(self.client.queue.call("answerTokens"))
        )
        if per_token >= floor:
            return False
        log.warning(
            "session %s pays %s wei per token, under this node's floor %s: refused",
            session_id,
            per_token,
            floor,
        )
        return True

    def _user_precommit(self, task: TaskRef) -> None:
        record = self.journal.get(task)
        queue = self.client.queue
        if record is None or record.state is not CommitState.PREPARED:
            return
        if queue.assignment(self.address) not in (
            (task.task_id, AssignmentStatus.ASSIGNED),
            (task.task_id, AssignmentStatus.ACKED),
        ):
            return
        digest = commitment(task.task_id, self.address, _salt_bytes(record.salt), record.answer)
        tx_hash = self._user_send(
            task.session_id,
            task.task_id,
            UserStage.PRECOMMIT,
            lambda: queue.precommit(task.task_id, digest).tx_hash,
        )
        if tx_hash:
            self.journal.mark_sent(task, CommitStage.PRECOMMIT, tx_hash)
            self.journal.mark_confirmed(task, CommitStage.PRECOMMIT)

    def _user_reveal(self, task: TaskRef) -> None:
        record = self.journal.get(task)
        queue = self.client.queue
        if record is None or record.state not in _REVEALABLE:
            return
        if queue.state(task.task_id) != TaskState.COMMIT:
            return
        if queue.assignment(self.address) != (task.task_id, AssignmentStatus.PRECOMMITTED):
            return
        answer, salt = record.answer, _salt_bytes(record.salt)
        tx_hash = self._user_send(
            task.session_id,
            task.task_id,
            UserStage.COMMIT,
            lambda: queue.commit(task.task_id, answer, salt).tx_hash,
        )
        if tx_hash:
            self.journal.mark_sent(task, CommitStage.COMMIT, tx_hash)
            self.journal.mark_confirmed(task, CommitStage.COMMIT)
            self.tasks_done += 1

    def _user_send(
        self, session_id: int, task_id: int, stage: UserStage, send: Callable[[], str]
    ) -> str | None:
        def report(status: TxStatus, tx_hash: str | None, detail: str) -> Event:
            return UserTaskStage(
                session_id=session_id,
                task_id=task_id,
                stage=stage,
                status=status,
                tx_hash=tx_hash,
                detail=detail,
            )

        return self._transact(send, report)

    # -- helpers --------------------------------------------------------------------------
    def _chat(self, session_id: int, system: str, user: str, max_tokens: int) -> str:
        prompt = f"{system}\n\n{user}"
        return self._generate(session_id, prompt, max_tokens).text

    def _generate_once_more_after_a_crash(
        self, prompt: Prompt, params: SamplingParams, progress: TokenMeter
    ) -> GenerationResult:
        """A worker that dies mid-answer is restarted by the next request: ask once more, so
        the task is still answered in its window. Greedy decoding gives the same answer."""
        try:
            return self._generate_streaming(prompt, params, progress)
        except WorkerCrashedError as exc:
            log.warning("the inference worker died mid-answer (%s); asking again", exc)
            progress.restart()
            return self._generate_streaming(prompt, params, progress)

    def _select_model(self, user_session: int | None) -> None:
        """A runtime serving several models (engine/host/model_pool.py) loads the one a user
        session asks for; network tasks use the primary."""
        select = getattr(self.chat, "select", None)
        if select is None:
            return
        model = None
        if user_session is not None:
            model = bytes(self.client.queue.call("sessions", user_session)[5])
        select(model)

    def _generate_streaming(
        self, prompt: Prompt, params: SamplingParams, progress: TokenMeter
    ) -> GenerationResult:
        """Live tokens/s for the views while the answer streams, where the runtime streams."""
        if not self._chat_streams:
            return self.chat.generate(prompt, params)
        generate: Callable[..., GenerationResult] = self.chat.generate
        return generate(prompt, params, on_token=progress.on_token)

    def _generate(
        self,
        session_id: int,
        prompt: Prompt,
        max_tokens: int,
        kind: TaskKind = TaskKind.NETWORK,
        task_id: int = 0,
        params: SamplingParams | None = None,
    ) -> GenerationResult:
        self._select_model(session_id if kind is TaskKind.USER else None)
        params = params or SamplingParams(max_tokens=max_tokens)
        progress = TokenMeter(
            lambda tokens, rate: self._publish(
                TokenProgress(
                    task_kind=kind,
                    session_id=session_id,
                    task_id=task_id,
                    tokens=tokens,
                    tokens_per_s=rate,
                )
            )
        )
        try:
            result = self._generate_once_more_after_a_crash(prompt, params, progress)
        except ModelError as exc:
            self._publish(
                Alert(
                    kind=AlertKind.WORKER_CRASH,
                    severity=Severity.ERROR,
                    message=f"inference failed: {exc}",
                )
            )
            raise ChainError(f"no answer for session {session_id}: {exc}") from exc
        if result.finish_reason in INTERRUPTED:
            # The node is stopping: a cut-off answer must never reach the journal (it would be
            # revealed after a restart and fail validation as a truncated one).
            raise ChainError(
                f"no answer for session {session_id}: generation {result.finish_reason}"
            )
        f = result.figures
        self._publish(
            InferenceFinished(
                task_kind=kind,
                session_id=session_id,
                task_id=task_id,
                prompt_tokens=f.prompt_tokens,
                generated_tokens=f.generated_tokens,
                ttft_s=f.ttft_s,
                tokens_per_s=f.tokens_per_s,
                stop_reason="eos" if result.finish_reason == "stop" else result.finish_reason,
            )
        )
        return result

    def _send(
        self,
        session_id: int,
        stage: NetworkStage,
        role: TaskRole,
        send: Callable[[], str],
        detail: str = "",
    ) -> str | None:
        def report(status: TxStatus, tx_hash: str | None, error: str) -> Event:
            return NetworkTaskStage(
                session_id=session_id,
                stage=stage,
                task_role=role,
                status=status,
                tx_hash=tx_hash,
                detail=error or detail,
            )

        return self._transact(send, report)

    def _transact(
        self, send: Callable[[], str], report: Callable[[TxStatus, str | None, str], Event]
    ) -> str | None:
        """Send one transaction and publish how it went; the hash, or None when it failed."""
        try:
            tx_hash = send()
        except ChainError as exc:
            self._publish(report(TxStatus.FAILED, None, str(exc)))
            self.health.tx_failed(str(exc))
            return None
        self._publish(report(TxStatus.CONFIRMED, tx_hash, ""))
        self.health.tx_confirmed()
        return tx_hash

    def _ping_if_due(self) -> None:
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < self.settings.ping_interval_s:
            return
        self._last_ping = now
        try:
            result = self.client.stats.ping()
        except ChainError as exc:
            log.info("ping refused: %s", exc)  # e.g. faster than the contract's minimum interval
            return
        self._publish(
            PingSent(
                tx_hash=result.tx_hash,
                status=TxStatus.CONFIRMED,
                gas_used=int(result.receipt["gasUsed"]),
            )
        )

    def _publish_points(self) -> None:
        stats = self.client.stats.stats(self.address)
        stages = [self.client.stats.stage(self.address, s) for s in range(STAGE_COUNT)]
        counter, points = stages[STAGE_PRECOMMIT]
        self._publish(
            PointsUpdated(
                points=sum(p for _, p in stages),
                level=int(stats["level"]),
                precommit_points=points,
                precommit_counter=counter,
                precommit_score=points / counter if counter else None,
                ping_count=int(stats["pings"]),
            )
        )

    def _head(self) -> int:
        return int(self.client.web3.eth.block_number)

    def _is_me(self, address: str) -> bool:
        return address.lower() == self.address.lower()

    def _step(self, step: str, status: StepStatus, detail: str) -> None:
        self._publish(PreflightStep(step=step, status=status, detail=detail))

    def _publish(self, event: Event) -> None:
        self.bus.publish(dataclasses.replace(event, node=self.address, role=NodeRole.MINER))


def _streams_tokens(chat: object) -> bool:
    """Whether the runtime's generate takes `on_token` (InferenceWorker does; doubles may not)."""
    generate = getattr(chat, "generate", None)
    try:
        return generate is not None and "on_token" in inspect.signature(generate).parameters
    except (TypeError, ValueError):
        return False


class TokenMeter:
    """Turns streamed tokens into `tokens` events, a few a second (a view plots them)."""

    def __init__(
        self,
        publish: Callable[[int, float], None],
        every_s: float = TOKEN_EVENT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self._every_s = every_s
        self._clock = clock
        self.restart()

    def restart(self) -> None:
        self._first: float | None = None
        self._last_sent = 0.0

    def on_token(self, event: TokenEvent) -> None:
        now = self._clock()
        if self._first is None:
            self._first, self._last_sent = now, now  # rate counts from the first token
            return
        if now - self._last_sent < self._every_s:
            return
        self._last_sent = now
        self._publish(event.index + 1, event.index / (now - self._first))


def _keep_newest(tracked: dict[int, Any], limit: int) -> None:
    """Drop the oldest entries (ids grow, and dicts keep insertion order) beyond `limit`."""
    while len(tracked) > limit:
        del tracked[next(iter(tracked))]


def _salt_bytes(salt: str) -> bytes:
    return bytes.fromhex(salt.removeprefix("0x"))
