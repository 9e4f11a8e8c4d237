"""The current state of every node, folded from the event stream: what every view shows.

One stats core, many outputs: the status API's `/1/summary`, `cortensor-desktop status`, the
Prometheus endpoint and the dashboard all read a `Summary` fed with every event of the bus. It is
pure: `apply(event)` folds one event in, `to_dict(now)` renders it; no I/O, no clock of its own (the
caller passes `now`), so tests feed it plain events and compare plain dicts. A recording replayed
into a fresh `Summary` gives exactly what a live run showed. Besides the per-node counters it keeps
a bounded window of recent activity for the dashboard's panels (task rows, verdicts, the tokens/s
sparkline, earnings history, withdrawals).

Tokens/s windows (10 s, 60 s, 15 min) are generation speed while generating: the tokens generated
by inferences that finished inside the window divided by the time spent generating them, so a node
that idles between tasks still shows how fast it generates (XMRig's hashrate windows, for LLMs).
`None` means no inference finished in that window. A `TokenProgress` in flight shows as `current`.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from engine.protocol import NetworkStage, NodeRole
from engine.state.events import (
    Alert,
    AlertKind,
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
    PreflightStep,
    Severity,
    StepStatus,
    TokenProgress,
    TxStatus,
    UnknownEvent,
    UserTaskStage,
    ValidationResult,
    Withdrawal,
)

WINDOWS_S = {"10s": 10.0, "60s": 60.0, "15m": 900.0}
# Community monitors call a node stalled after this many pings with no task transaction between.
STALL_PINGS = 25
# Upper bounds of the validation score histogram (top-1 agreement, 0..1).
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
# 0.01 ETH: a few hundred task transactions at devnet gas prices. The engine raises a low_gas
# alert at the configured `[alerts] low_gas_eth`; for a stream without alerts (an older recording)
# views fall back to this default.
DEFAULT_LOW_GAS_WEI = 10**16


@dataclass
class ScoreHistogram:
    """Cumulative-free bucket counts; renderers (Prometheus) accumulate them."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(SCORE_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        for index, bound in enumerate(SCORE_BUCKETS):
            if value <= bound:
                self.counts[index] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value
        self.count += 1


@dataclass
class NodeView:
    """Everything known about one node (one address on the bus)."""

    address: str
    role: str | None = None
    state: str | None = None  # None until the node reports one (an oracle may never)
    first_seen: float = 0.0
    state_since: float = 0.0
    tier: str | None = None
    model: str | None = None
    # (finished at, generated tokens, seconds spent generating), oldest first, 15 min kept
    _inferences: deque[tuple[float, int, float]] = field(default_factory=deque)
    current_tokens_per_s: float | None = None
    last_tokens_per_s: float | None = None  # the latest rate seen, in flight or finished
    tasks: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # kind, stage, status
    sessions_ended: int = 0
    points: int | None = None
    level: int | None = None
    precommit_score: float | None = None
    precommit_points: int | None = None
    precommit_counter: int | None = None
    ping_count: int | None = None
    pings_sent: int = 0
    pings_since_task: int = 0  # reset by any confirmed task transaction of this node
    last_active_ts: float | None = None  # the last confirmed transaction of any kind
    earned_wei: int | None = None
    withdrawable_wei: int | None = None
    gas_balance_wei: int | None = None
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> alert
    alert_counts: Counter[str] = field(default_factory=Counter)
    pause_reasons: tuple[PauseReason, ...] = ()
    last_error: dict[str, Any] | None = None
    failed_txs: int = 0
    validations_passed: int = 0
    validations_failed: int = 0
    scores: ScoreHistogram = field(default_factory=ScoreHistogram)  # as the oracle judged
    scores_received: ScoreHistogram = field(default_factory=ScoreHistogram)  # as a miner
    last_event_ts: float = 0.0

    def tokens_per_s(self, now: float) -> dict[str, float | None]:
        rates: dict[str, float | None] = {}
        for name, span in WINDOWS_S.items():
            tokens = seconds = 0.0
            for finished, generated, spent in self._inferences:
                if finished >= now - span:
                    tokens += generated
                    seconds += spent
            rates[name] = round(tokens / seconds, 2) if seconds > 0 else None
        rates["current"] = self.current_tokens_per_s
        return rates

    def tasks_by_stage(self) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (kind, stage, status), n in sorted(self.tasks.items()):
            out.setdefault(kind, {}).setdefault(stage, {})[status] = n
        return out

    @property
    def stalled(self) -> bool:
        return self.role == "miner" and self.pings_since_task >= STALL_PINGS

    def active_alerts(self) -> list[dict[str, Any]]:
        """The engine's active alerts, plus a stall the summary sees itself (pings only)."""
        alerts = list(self.alerts.values())
        if self.stalled and AlertKind.STALL.value not in self.alerts:
            alerts.append(
                {
                    "kind": AlertKind.STALL.value,
                    "severity": Severity.WARNING.value,
                    "message": f"{self.pings_since_task} pings in a row without a task transaction",
                    "since": None,
                }
            )
        return alerts

    def worker_restarts(self) -> int:
        return self.alert_counts[AlertKind.WORKER_CRASH.value]

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "address": self.address,
            "role": self.role,
            "state": self.state,
            "tier": self.tier,
            "model": self.model,
            "uptime_s": round(max(0.0, now - self.first_seen), 1) if self.first_seen else 0.0,
            "tokens_per_s": self.tokens_per_s(now),
            "tasks": self.tasks_by_stage(),
            "sessions_ended": self.sessions_ended,
            "failed_txs": self.failed_txs,
            "pings_sent": self.pings_sent,
            "pings_since_task": self.pings_since_task,
            "stalled": self.stalled,
            "last_active_ts": self.last_active_ts,
            "ping_count": self.ping_count,
            "points": self.points,
            "level": self.level,
            "precommit_score": self.precommit_score,
            "precommit_points": self.precommit_points,
            "precommit_counter": self.precommit_counter,
            "validations": {
                "passed": self.validations_passed,
                "failed": self.validations_failed,
            },
            "earnings": {"earned_wei": self.earned_wei, "withdrawable_wei": self.withdrawable_wei},
            "gas_balance_wei": self.gas_balance_wei,
            "alerts": self.active_alerts(),
            "pause_reasons": [{"code": r.code, "message": r.message} for r in self.pause_reasons],
            "last_error": self.last_error,
            "rpc": {
                "failovers": self.alert_counts[AlertKind.RPC_FAILOVER.value],
                "errors": self.alert_counts[AlertKind.RPC_DOWN.value],
            },
            "worker_crashes": self.worker_restarts(),  # worker_crash alerts raised
        }


_ERROR_LEVELS = {"error", "critical"}


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


@dataclass(frozen=True)
class Earnings:
    earned_wei: int
    withdrawable_wei: int
    gas_balance_wei: int


class Summary:
    """Fold events in with `apply`; read with `to_dict(now)`, the `nodes` mapping, or the
    recent-activity window (`tasks`, `validations`, `rates`, `earnings_history`, ...)."""

    def __init__(
        self,
        started_at: float = 0.0,
        *,
        max_tasks: int = 50,
        max_validations: int = 50,
        max_rate_points: int = 120,
    ) -> None:
        self.started_at = started_at
        self.nodes: dict[str, NodeView] = {}
        self.last_seq = 0
        self.last_ts = 0.0
        self.events_seen = 0
        self.events_dropped = 0
        self.commands: deque[dict[str, Any]] = deque(maxlen=20)
        self.last_error: dict[str, Any] | None = None
        self.max_tasks = max_tasks
        # The recent-activity window, bounded: what the dashboard's panels list.
        self.tasks: dict[tuple[str, int, int, str], TaskView] = {}
        self.validations: deque[ValidationResult] = deque(maxlen=max_validations)
        self.rates: deque[float] = deque(maxlen=max_rate_points)  # tokens/s, oldest first
        self.alerts: dict[str, Alert] = {}  # active alerts by kind, any node
        self.hardware: HardwareSample | None = None
        self.earnings: Earnings | None = None
        self.earnings_history: list[tuple[float, str, Earnings]] = []
        self.withdrawals: list[Withdrawal] = []
        self.last_withdrawal: Withdrawal | None = None
        self.benchmark: BenchmarkResult | None = None
        self.last_command: CommandHandled | None = None
        self.node_stopped = False  # the engine accepted a stop and no start since
        self.errors: list[str] = []  # the last error log lines (a start that failed)

    # -- folding --------------------------------------------------------------------------
    def node(self, address: str, ts: float = 0.0) -> NodeView:
        view = self.nodes.get(address)
        if view is None:
            view = self.nodes[address] = NodeView(address=address, first_seen=ts, state_since=ts)
        return view

    def set_gas_balance(self, address: str, wei: int) -> None:
        """A balance read from the chain by the run loop (no event carries it on its own)."""
        self.node(address).gas_balance_wei = wei

    def apply_all(self, events: list[Event]) -> None:
        for event in events:
            self.apply(event)

    def apply(self, event: Event) -> None:
        if isinstance(event, UnknownEvent):  # from a newer engine: nothing here understands it
            return
        self.events_seen += 1
        if event.ts:
            self.last_ts = max(self.last_ts, event.ts)
        if isinstance(event, EventsDropped):
            self.events_dropped += event.count
            return
        self.last_seq = max(self.last_seq, event.seq)
        self._apply_recent(event)
        if isinstance(event, CommandHandled):
            self.commands.append(
                {
                    "id": event.command_id,
                    "command": event.command,
                    "accepted": event.accepted,
                    "message": event.message,
                    "ts": event.ts,
                }
            )
            return
        if not event.node:
            if isinstance(event, LogLine) and event.level.lower() in _ERROR_LEVELS:
                self.last_error = {"ts": event.ts, "message": event.message}
            return
        view = self.node(event.node, event.ts)
        view.last_event_ts = max(view.last_event_ts, event.ts)
        if event.role is not None:
            view.role = event.role.value
        self._apply_to(view, event)

    def _apply_recent(self, event: Event) -> None:  # noqa: PLR0912 (one branch per event type)
        """The recent-activity window, whichever node (if any) the event names."""
        match event:
            case NetworkTaskStage():
                self._task_row(event, "network", 0, event.task_role.value, event.stage.value)
            case UserTaskStage():
                self._task_row(event, "user", event.task_id, "answerer", event.stage.value)
            case InferenceFinished() | TokenProgress():
                self.rates.append(event.tokens_per_s)
            case ValidationResult():
                self.validations.append(event)
            case EarningsUpdated():
                self.earnings = Earnings(
                    event.earned_wei, event.withdrawable_wei, event.gas_balance_wei
                )
                self.earnings_history.append((event.ts, event.node, self.earnings))
                del self.earnings_history[: -self.max_tasks]
            case Alert() if event.active:
                self.alerts[event.kind.value] = event
            case Alert():
                self.alerts.pop(event.kind.value, None)
            case HardwareSample():
                self.hardware = event
            case BenchmarkResult():
                self.benchmark = event
            case CommandHandled():
                self.last_command = event
                if event.accepted and event.command in ("stop", "start"):
                    self.node_stopped = event.command == "stop"
            case LogLine() if event.level == "error":
                self.errors.append(event.message)
                del self.errors[:-10]
            case Withdrawal():
                self.last_withdrawal = event
                self.withdrawals.append(event)

    def _task_row(
        self,
        event: NetworkTaskStage | UserTaskStage,
        kind: str,
        task_id: int,
        task_role: str,
        stage: str,
    ) -> None:
        key = (kind, event.session_id, task_id, event.node)
        task = self.tasks.get(key)
        if task is None:
            task = TaskView(kind, event.session_id, task_id, event.node, started=event.ts)
            self.tasks[key] = task
            while len(self.tasks) > self.max_tasks:
                del self.tasks[next(iter(self.tasks))]
        if task_role not in task.roles:
            task.roles.append(task_role)
        task.stages[stage] = event.status.value
        task.updated = event.ts
        if event.tx_hash:
            task.last_tx = event.tx_hash
        if event.detail:
            task.detail = event.detail
        if event.status is TxStatus.FAILED or event.status is TxStatus.MISSED:
            task.detail = event.detail or event.status.value

    def _apply_to(self, view: NodeView, event: Event) -> None:
        if not self._apply_work(view, event):
            self._apply_account(view, event)

    def _apply_work(self, view: NodeView, event: Event) -> bool:
        """Inference and task progress; False when the event is not one of these."""
        match event:
            case InferenceFinished():
                spent = event.generated_tokens / event.tokens_per_s if event.tokens_per_s else 0.0
                view._inferences.append((event.ts, event.generated_tokens, spent))
                while view._inferences and view._inferences[0][0] < event.ts - WINDOWS_S["15m"]:
                    view._inferences.popleft()
                view.current_tokens_per_s = None
                view.last_tokens_per_s = event.tokens_per_s
            case TokenProgress():
                view.current_tokens_per_s = event.tokens_per_s
                view.last_tokens_per_s = event.tokens_per_s
            case NetworkTaskStage():
                view.tasks["network", event.stage.value, event.status.value] += 1
                if event.stage is NetworkStage.END and event.status is TxStatus.CONFIRMED:
                    view.sessions_ended += 1
                self._tx(view, event.ts, event.status, f"{event.stage.value}", event.detail)
            case UserTaskStage():
                view.tasks["user", event.stage.value, event.status.value] += 1
                self._tx(view, event.ts, event.status, f"user {event.stage.value}", event.detail)
            case PingSent():
                view.pings_sent += 1
                view.pings_since_task += 1
                if event.ping_count is not None:
                    view.ping_count = event.ping_count
                self._tx(view, event.ts, event.status, "ping", "")
            case ValidationResult():
                view.scores.observe(event.top1_agreement)
                if event.passed:
                    view.validations_passed += 1
                else:
                    view.validations_failed += 1
                judged = self.node(event.miner, event.ts)
                judged.scores_received.observe(event.top1_agreement)
            case _:
                return False
        return True

    def _apply_account(self, view: NodeView, event: Event) -> None:
        """State, points, money, alerts, errors."""
        match event:
            case NodeStateChanged():
                view.state = event.state.value
                view.state_since = event.ts
                view.pause_reasons = event.reasons if event.state is NodeState.PAUSED else ()
            case PreflightStep() if event.status is StepStatus.FAILED:
                self._error(view, event.ts, f"preflight {event.step} failed: {event.detail}")
            case PointsUpdated():
                view.points, view.level = event.points, event.level
                view.precommit_score = event.precommit_score
                view.precommit_points = event.precommit_points
                view.precommit_counter = event.precommit_counter
                if event.ping_count is not None:
                    view.ping_count = event.ping_count
            case EarningsUpdated():
                view.earned_wei = event.earned_wei
                view.withdrawable_wei = event.withdrawable_wei
                view.gas_balance_wei = event.gas_balance_wei
            case Withdrawal():
                self._tx(view, event.ts, event.status, "withdrawal", event.detail)
            case Alert():
                self._alert(view, event)
            case BenchmarkResult():
                view.model = event.model_id
                if event.tier is not None:
                    view.tier = event.tier
            case LogLine() if event.level.lower() in _ERROR_LEVELS:
                self._error(view, event.ts, event.message)

    def _alert(self, view: NodeView, event: Alert) -> None:
        kind = event.kind.value
        if event.active:
            view.alert_counts[kind] += 1
            view.alerts[kind] = {
                "kind": kind,
                "severity": event.severity.value,
                "message": event.message,
                "since": view.alerts.get(kind, {}).get("since", event.ts),
            }
            if event.severity is Severity.ERROR:
                self._error(view, event.ts, event.message)
        else:
            view.alerts.pop(kind, None)

    def _tx(self, view: NodeView, ts: float, status: TxStatus, what: str, detail: str) -> None:
        if status is TxStatus.CONFIRMED:
            view.last_active_ts = ts
            if what != "ping":
                view.pings_since_task = 0
        if status in (TxStatus.FAILED, TxStatus.MISSED):
            view.failed_txs += 1
            self._error(view, ts, f"{what} {status.value}" + (f": {detail}" if detail else ""))

    def _error(self, view: NodeView, ts: float, message: str) -> None:
        error = {"ts": ts, "node": view.address, "message": message}
        view.last_error = error
        if self.last_error is None or ts >= self.last_error["ts"]:
            self.last_error = error

    # -- reading --------------------------------------------------------------------------
    def miners(self) -> list[NodeView]:
        return [n for n in self.nodes.values() if n.role == NodeRole.MINER.value]

    @property
    def dropped(self) -> int:
        return self.events_dropped

    @property
    def total_points(self) -> int:
        return sum(n.points or 0 for n in self.nodes.values())

    @property
    def paused(self) -> bool:
        miners = self.miners()
        return bool(miners) and all(n.state == NodeState.PAUSED.value for n in miners)

    @property
    def low_gas(self) -> bool:
        if AlertKind.LOW_GAS.value in self.alerts:
            return True
        return self.earnings is not None and self.earnings.gas_balance_wei < DEFAULT_LOW_GAS_WEI

    def passed_ratio(self) -> tuple[int, int]:
        passed = sum(1 for v in self.validations if v.passed)
        return passed, len(self.validations)

    def state(self) -> str:
        """One word for the whole process: starting, running, paused, stopped or partly_paused."""
        states = [v.state for v in self.nodes.values() if v.role is not None and v.state]
        if not states:
            return NodeState.STARTING.value
        if all(s == NodeState.STOPPED.value for s in states):
            return NodeState.STOPPED.value
        if any(s in (NodeState.STARTING.value, NodeState.PREFLIGHT.value) for s in states):
            return NodeState.STARTING.value
        miners = [v.state for v in self.nodes.values() if v.role == "miner" and v.state]
        if miners and all(s == NodeState.PAUSED.value for s in miners):
            return NodeState.PAUSED.value
        if any(s == NodeState.PAUSED.value for s in miners):
            return "partly_paused"
        return "running"

    def to_dict(self, now: float) -> dict[str, Any]:
        nodes = [v.to_dict(now) for v in self.nodes.values() if v.role is not None]
        total: dict[str, float | None] = {}
        for name in (*WINDOWS_S, "current"):
            rates = [n["tokens_per_s"][name] for n in nodes if n["tokens_per_s"][name] is not None]
            total[name] = round(sum(rates), 2) if rates else None
        tasks: Counter[tuple[str, str, str]] = Counter()
        for view in self.nodes.values():
            tasks.update(view.tasks)
        by_stage: dict[str, dict[str, dict[str, int]]] = {}
        for (kind, stage, status), n in sorted(tasks.items()):
            by_stage.setdefault(kind, {}).setdefault(stage, {})[status] = n
        pause_reasons = sorted(
            {(r["code"], r["message"]) for n in nodes for r in n["pause_reasons"]}
        )
        alerts = [{**a, "node": n["address"]} for n in nodes for a in n["alerts"]]
        miners = [n for n in nodes if n["role"] == "miner"]
        return {
            "state": self.state(),
            "uptime_s": round(max(0.0, now - self.started_at), 1) if self.started_at else 0.0,
            "addresses": [n["address"] for n in nodes],
            "role": "+".join(sorted({n["role"] for n in nodes if n["role"]})) or None,
            "roles": sorted({n["role"] for n in nodes if n["role"]}),
            "tokens_per_s": total,
            "tasks": by_stage,
            "sessions_ended": sum(n["sessions_ended"] for n in nodes),
            "failed_txs": sum(n["failed_txs"] for n in nodes),
            "points": _sum_known(n["points"] for n in miners),
            "gas_balance_wei": _sum_known(n["gas_balance_wei"] for n in nodes),
            "alerts": alerts,
            "pause_reasons": [{"code": c, "message": m} for c, m in pause_reasons],
            "last_error": self.last_error,
            "worker_restarts": sum(n["worker_crashes"] for n in nodes),
            "events": {
                "last_seq": self.last_seq,
                "seen": self.events_seen,
                "dropped": self.events_dropped,
            },
            "commands": list(self.commands),
            "nodes": nodes,
        }


def _sum_known(values: Any) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
