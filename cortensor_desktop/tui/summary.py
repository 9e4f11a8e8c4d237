"""The dashboard's model: events folded into the node's current summary. Pure, stdlib only.

`Summary.apply(event)` is the only way the summary changes, so a recording replayed into a fresh
`Summary` gives exactly the screen a live run showed. No textual here: the reducer is tested with
plain events, and the widgets only render what it holds. (The status API may grow its own
summary; the lead will unify them, see issue 8.)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from engine.node.earnings import DEFAULT_LOW_GAS_WEI
from engine.protocol import NodeRole
from engine.state.events import (
    Alert,
    BenchmarkResult,
    CommandHandled,
    EarningsUpdated,
    Event,
    EventsDropped,
    HardwareSample,
    InferenceFinished,
    LogLine,
    NetworkTaskStage,
    NodeState,
    NodeStateChanged,
    PauseReason,
    PingSent,
    PointsUpdated,
    TokenProgress,
    TxStatus,
    UnknownEvent,
    UserTaskStage,
    ValidationResult,
    Withdrawal,
)

# The engine raises a low_gas alert at the configured `[alerts] low_gas_eth`; for a stream
# without alerts (an older recording) the dashboard falls back to the engine's default.
LOW_GAS_WEI = DEFAULT_LOW_GAS_WEI
NETWORK_STAGES = ("request", "create", "prepare", "start", "precommit", "commit", "end")
USER_STAGES = ("assigned", "ack", "precommit", "commit", "validated", "paid")


@dataclass
class NodeView:
    address: str
    role: str = "-"
    state: str = "-"  # no node_state event yet (the oracle publishes none)
    state_since: float = 0.0
    first_seen: float = 0.0
    pause_reasons: tuple[PauseReason, ...] = ()
    points: int | None = None
    level: int | None = None
    precommit_points: int | None = None
    precommit_counter: int | None = None
    precommit_score: float | None = None
    ping_count: int | None = None
    last_tokens_per_s: float | None = None
    tasks_done: int = 0


@dataclass
class TaskView:
    """One task as one node saw it: the stages reached, with their status and timing."""

    kind: str
    session_id: int
    task_id: int
    node: str
    roles: list[str] = field(default_factory=list)  # creator, preparer, answerer, oracle
    stages: dict[str, str] = field(default_factory=dict)  # stage -> TxStatus value
    last_tx: str | None = None
    started: float = 0.0
    updated: float = 0.0
    detail: str = ""

    @property
    def current(self) -> str:
        return next(reversed(self.stages)) if self.stages else "-"

    @property
    def duration_s(self) -> float:
        return max(0.0, self.updated - self.started)


@dataclass
class Earnings:
    earned_wei: int
    withdrawable_wei: int
    gas_balance_wei: int


@dataclass
class Summary:
    """Everything the dashboard shows, as of the last event applied."""

    max_tasks: int = 50
    max_validations: int = 50
    max_rate_points: int = 120
    nodes: dict[str, NodeView] = field(default_factory=dict)
    tasks: dict[tuple[str, int, int, str], TaskView] = field(default_factory=dict)
    validations: deque[ValidationResult] = field(default_factory=deque)
    rates: deque[float] = field(default_factory=deque)  # recent tokens/s, oldest first
    alerts: dict[str, Alert] = field(default_factory=dict)  # active alerts by kind
    hardware: HardwareSample | None = None
    earnings: Earnings | None = None
    earnings_history: list[tuple[float, str, Earnings]] = field(default_factory=list)
    withdrawals: list[Withdrawal] = field(default_factory=list)
    benchmark: BenchmarkResult | None = None
    last_command: CommandHandled | None = None
    node_stopped: bool = False  # the engine accepted a stop and no start since
    last_withdrawal: Withdrawal | None = None
    errors: list[str] = field(default_factory=list)  # error log lines (a start that failed)
    dropped: int = 0
    events_seen: int = 0
    last_ts: float = 0.0

    # -- reading -----------------------------------------------------------------------------
    def miners(self) -> list[NodeView]:
        return [n for n in self.nodes.values() if n.role == NodeRole.MINER.value]

    @property
    def total_points(self) -> int:
        return sum(n.points or 0 for n in self.nodes.values())

    @property
    def paused(self) -> bool:
        miners = self.miners()
        return bool(miners) and all(n.state == NodeState.PAUSED.value for n in miners)

    @property
    def low_gas(self) -> bool:
        if "low_gas" in self.alerts:
            return True
        return self.earnings is not None and self.earnings.gas_balance_wei < LOW_GAS_WEI

    def passed_ratio(self) -> tuple[int, int]:
        passed = sum(1 for v in self.validations if v.passed)
        return passed, len(self.validations)

    # -- folding -----------------------------------------------------------------------------
    def apply_all(self, events: list[Event]) -> None:
        for event in events:
            self.apply(event)

    def apply(self, event: Event) -> None:  # noqa: PLR0912, PLR0915 (one branch per event type)
        if isinstance(event, UnknownEvent):
            return
        self.events_seen += 1
        if event.ts:
            self.last_ts = max(self.last_ts, event.ts)
        if isinstance(event, EventsDropped):
            self.dropped += event.count
            return
        node = self._node(event) if event.node else None
        if isinstance(event, NodeStateChanged) and node is not None:
            node.state = event.state.value
            node.state_since = event.ts
            node.pause_reasons = event.reasons if event.state is NodeState.PAUSED else ()
        elif isinstance(event, NetworkTaskStage):
            self._stage(
                event, "network", event.session_id, 0, event.task_role.value, event.stage.value
            )
        elif isinstance(event, UserTaskStage):
            self._stage(event, "user", event.session_id, event.task_id, "answerer", event.stage)
        elif isinstance(event, InferenceFinished):
            self._rate(event.tokens_per_s)
            if node is not None:
                node.last_tokens_per_s = event.tokens_per_s
                node.tasks_done += 1
        elif isinstance(event, TokenProgress):
            self._rate(event.tokens_per_s)
            if node is not None:
                node.last_tokens_per_s = event.tokens_per_s
        elif isinstance(event, ValidationResult):
            self.validations.append(event)
            while len(self.validations) > self.max_validations:
                self.validations.popleft()
        elif isinstance(event, PointsUpdated) and node is not None:
            node.points, node.level = event.points, event.level
            node.precommit_points = event.precommit_points
            node.precommit_counter = event.precommit_counter
            node.precommit_score = event.precommit_score
            if event.ping_count is not None:
                node.ping_count = event.ping_count
        elif isinstance(event, PingSent) and node is not None:
            if event.ping_count is not None:
                node.ping_count = event.ping_count
        elif isinstance(event, EarningsUpdated):
            self.earnings = Earnings(
                event.earned_wei, event.withdrawable_wei, event.gas_balance_wei
            )
            self.earnings_history.append((event.ts, event.node, self.earnings))
            del self.earnings_history[: -self.max_tasks]
        elif isinstance(event, Alert):
            if event.active:
                self.alerts[event.kind.value] = event
            else:
                self.alerts.pop(event.kind.value, None)
        elif isinstance(event, HardwareSample):
            self.hardware = event
        elif isinstance(event, BenchmarkResult):
            self.benchmark = event
        elif isinstance(event, CommandHandled):
            self.last_command = event
            if event.accepted and event.command in ("stop", "start"):
                self.node_stopped = event.command == "stop"
        elif isinstance(event, LogLine) and event.level == "error":
            self.errors.append(event.message)
            del self.errors[:-10]
        elif isinstance(event, Withdrawal):
            self.last_withdrawal = event
            self.withdrawals.append(event)

    def _node(self, event: Event) -> NodeView:
        view = self.nodes.get(event.node)
        if view is None:
            view = self.nodes[event.node] = NodeView(event.node, first_seen=event.ts)
            view.state_since = event.ts
        if event.role is not None:
            view.role = event.role.value
        return view

    def _rate(self, tokens_per_s: float) -> None:
        self.rates.append(tokens_per_s)
        while len(self.rates) > self.max_rate_points:
            self.rates.popleft()

    def _stage(
        self,
        event: NetworkTaskStage | UserTaskStage,
        kind: str,
        session_id: int,
        task_id: int,
        task_role: str,
        stage: str,
    ) -> None:
        key = (kind, session_id, task_id, event.node)
        task = self.tasks.get(key)
        if task is None:
            task = TaskView(kind, session_id, task_id, event.node, started=event.ts)
            self.tasks[key] = task
            while len(self.tasks) > self.max_tasks:
                del self.tasks[next(iter(self.tasks))]
        if task_role not in task.roles:
            task.roles.append(task_role)
        task.stages[str(stage)] = event.status.value
        task.updated = event.ts
        if event.tx_hash:
            task.last_tx = event.tx_hash
        if event.detail:
            task.detail = event.detail
        if event.status is TxStatus.FAILED or event.status is TxStatus.MISSED:
            task.detail = event.detail or event.status.value
