"""The miner: registers, pings, and plays its part in network tasks as the chain asks.

Driven by chain events, one step at a time (`step()`), so a test can drive it deterministically
and `run()` just repeats it. Roles in a network task (docs/NODE.md):
    creator   SessionRequested names it  -> ask the model for a topic   -> Cognitive.create
    preparer  TopicCreated for its session -> challenge prompts          -> Cognitive.prepare
    answerer  SessionStarted selects it  -> greedy answer, journal salt+answer, then precommit
              CommitOpened               -> reveal answer and salt from the journal -> commit
A reassignment (RoleReassigned) hands it the creator or preparer job late.

User tasks (SessionQueue): TaskAssigned names it -> answer, journal, precommit; TaskPhase
(commit) -> reveal.

Crash safety: the salt and answer are in the journal before the precommit is sent; on restart
`resume()` reveals what was precommitted and sends a precommit that was prepared but not sent,
after asking the chain whether it already went through, so nothing is sent twice.

This module decides; the pieces it drives are named for their job: answers
(engine/node/generation.py), the precommit and reveal of a journaled answer, one path for both
kinds of task (engine/node/commit_reveal.py over engine/node/task_contracts.py), and the
miner's transactions, pings and points (engine/node/miner_chain.py).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chain.client import ChainClient
from chain.errors import ChainError, RpcUnavailable
from chain.events import ChainEvent
from chain.wrappers import (
    ContractWrapper,
    NodeStatus,
    SessionState,
    TaskState,
    Tier,
    model_id,
)
from engine.errors import EngineError
from engine.inference.runtime import Prompt
from engine.inference.types import GenerationResult, SamplingParams
from engine.node import task_prompt
from engine.node.benchmarks import live_benchmark
from engine.node.chain_health import ChainHealth
from engine.node.chain_watch import ChainWaiter, ChainWatcher, Reorg
from engine.node.commit_reveal import CommitReveal
from engine.node.earnings import (
    DEFAULT_REFRESH_S,
    PAYMENT_EVENTS,
    EarningsTracker,
    eth,
)
from engine.node.generation import AnswerInterrupted, BenchableModel, ChatModel, Generator
from engine.node.miner_chain import MinerChain
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
from engine.node.task_contracts import NetworkTasks, UserTasks
from engine.node.user_session import VALIDATION_LEVEL_NONE
from engine.protocol import NetworkStage, NodeRole, TaskKind, TaskRole
from engine.state.events import (
    Event,
    EventBus,
    LogLine,
    NodeState,
    NodeStateChanged,
    PreflightStep,
    StepStatus,
)
from engine.state.journal import Journal, TaskRef
from engine.state.summary import DEFAULT_LOW_GAS_WEI

log = logging.getLogger(__name__)

QUEUE_EVENTS = ("TaskQueued", "TaskAssigned", "TaskPhase")
COGNITIVE_EVENTS = (
    "SessionRequested",
    "TopicCreated",
    "ChallengePrepared",
    "RoleReassigned",
    "SessionStarted",
    "CommitOpened",
)
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
        self.journal = journal
        self.bus = bus
        self.settings = settings or MinerSettings()
        self.payout = payout or self.address
        self._sessions: dict[int, _Session] = {}
        self._task_prompts: dict[int, str] = {}
        self._watcher: ChainWatcher | None = None
        self._backlog: deque[ChainEvent] = deque()  # read from the chain, not yet handled
        self._reorg_due = False  # the chain dropped blocks: reconcile the journal first
        self.paused = False
        self.tasks_done = 0
        self._benchmark_wanted = threading.Event()
        self._swap: _Swap | None = None  # a re-plan's model, taken between two steps
        self.health = ChainHealth(client.backend, self._publish)
        self._away_on_chain = False
        self._user = UserTasks(client, self.address)
        self._generator = Generator(chat, self._publish, self._user.session_model)
        self._chain = MinerChain(client, self.address, self._publish, self.health, clock)
        self._commit_reveal = CommitReveal(
            {TaskKind.NETWORK: NetworkTasks(client, self.address), TaskKind.USER: self._user},
            journal,
            self._chain,
            self.address,
            self._revealed,
        )
        self.earnings = EarningsTracker(
            client,
            journal,
            self._publish,
            low_gas_wei=self.settings.low_gas_wei,
            refresh_s=self.settings.earnings_refresh_s,
            clock=clock,
        )

    @property
    def chat(self) -> ChatModel:
        """The runtime answering now (a re-plan swaps it between two steps)."""
        return self._generator.chat

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
        head = self._chain.head()
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
        old = self.chat
        self._generator.use(swap.chat)
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
            except AnswerInterrupted as exc:
                # A stop cut the answer off: the operator asked for it, nothing to warn about.
                log.info("miner %s: stopped before answering: %s", self.address[:10], exc)
                self.health.step_ok()
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
            self._chain.ping_if_due(self.settings.ping_interval_s)
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
        if self._chain.set_away(away):
            self._away_on_chain = away

    def request_benchmark(self) -> tuple[bool, str]:
        """Benchmark the served model between tasks (the worker serves one request at a time)."""
        if not callable(getattr(self.chat, "bench", None)):
            return False, "this miner's runtime cannot benchmark itself"
        self._benchmark_wanted.set()
        return True, "benchmark queued: it runs between tasks"

    def _benchmark(self) -> None:
        chat: BenchableModel = self.chat  # type: ignore[assignment]  # request_benchmark checked
        tier = Tier.label_of(self.settings.tier)
        live_benchmark(chat, self.settings.model_name, tier, self.journal.db, self._publish)

    def resume(self) -> None:
        """After a restart: reveal what was precommitted, send what was prepared but not sent,
        and settle a withdrawal a crash left open (from the chain; it is never sent again)."""
        self.earnings.resume()
        self._commit_reveal.resume()

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
            self._commit_reveal.reveal(TaskRef(TaskKind.NETWORK, session_id))

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
        self._chain.send_network(
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
        self._chain.send_network(
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
        self._commit_reveal.precommit_selected(task)

    def _revealed(self, task: TaskRef) -> None:
        self.tasks_done += 1
        if task.kind is TaskKind.NETWORK:
            self._chain.publish_points()

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
                self._commit_reveal.reveal(task)

    def _user_task_ref(self, task_id: int) -> TaskRef | None:
        task = self._user.task(task_id)
        return task if self.journal.get(task) is not None else None

    def _user_ack(self, task_id: int, assigned_at: int) -> None:
        if self._user.state(task_id) != TaskState.ASSIGNED:
            return
        if task_id not in self._task_prompts:
            found = self._queued_prompt(task_id, assigned_at)
            if found is None:
                return
            self._task_prompts[task_id] = found
        task = self._user.task(task_id)
        session_id = task.session_id
        if self.journal.get(task) is not None:
            # Already answered (a replayed event after a restart): inference again would be
            # wasted, and another build or thread count could answer differently, which the
            # journal refuses. Send the bound answer's precommit if it is still due.
            self._task_prompts.pop(task_id, None)
            self._commit_reveal.precommit(task)
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
        self._commit_reveal.precommit(task)

    def _queued_prompt(self, task_id: int, assigned_at: int) -> str | None:
        """The prompt of a task assigned to this miner, read back from its TaskQueued event."""
        start = max(self.client.deployment.deploy_block, assigned_at - PROMPT_SEARCH_BLOCKS)
        for prompt in self._user.queued_prompts(task_id, start, assigned_at):
            return prompt if len(prompt) <= MAX_USER_PROMPT_CHARS else None
        log.warning("task %s was assigned to this miner but its prompt was not found", task_id)
        return None

    def _under_floor(self, session_id: int) -> bool:
        """A task paying less per token than this node's floor is refused (the contract keeps
        the leader from assigning one; this catches a floor raised after the assignment)."""
        floor = self.settings.price_floor_wei_per_token
        if floor == 0:
            return False
        per_token = self._user.price_per_token(session_id)
        if per_token >= floor:
            return False
        log.warning(
            "session %s pays %s wei per token, under this node's floor %s: refused",
            session_id,
            per_token,
            floor,
        )
        return True

    # -- helpers --------------------------------------------------------------------------
    def _chat(self, session_id: int, system: str, user: str, max_tokens: int) -> str:
        prompt = f"{system}\n\n{user}"
        return self._generate(session_id, prompt, max_tokens).text

    def _generate(
        self,
        session_id: int,
        prompt: Prompt,
        max_tokens: int,
        kind: TaskKind = TaskKind.NETWORK,
        task_id: int = 0,
        params: SamplingParams | None = None,
    ) -> GenerationResult:
        return self._generator.generate(session_id, prompt, max_tokens, kind, task_id, params)

    def _is_me(self, address: str) -> bool:
        return address.lower() == self.address.lower()

    def _step(self, step: str, status: StepStatus, detail: str) -> None:
        self._publish(PreflightStep(step=step, status=status, detail=detail))

    def _publish(self, event: Event) -> None:
        self.bus.publish(dataclasses.replace(event, node=self.address, role=NodeRole.MINER))


def _keep_newest(tracked: dict[int, Any], limit: int) -> None:
    """Drop the oldest entries (ids grow, and dicts keep insertion order) beyond `limit`."""
    while len(tracked) > limit:
        del tracked[next(iter(tracked))]
