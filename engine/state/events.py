"""The engine's one event stream: typed, versioned, JSON-serialisable; the only way views learn.

Every event is a frozen dataclass with a stable `type` name, a sequence number (`seq`, monotonic
per bus), a wall-clock timestamp (`ts`), and the node address and role it concerns. The TUI, the
headless logger, the status API's SSE stream and the metrics endpoint each subscribe to the same
`EventBus` with their own bounded queue: a slow reader loses its oldest events and is told how many
(`EventsDropped`), and the engine never blocks on a view.

Versioning (docs/EVENTS.md): `SCHEMA_VERSION` changes only on a breaking change (a field removed,
renamed or given a new meaning). Adding an event type, or a field with a default, keeps the version;
readers ignore fields they do not know. A document this version cannot represent faithfully (an
unknown type, a newer schema, an enum value it does not know) becomes an `UnknownEvent` that keeps
the original payload, so recorders pass it through and views skip it; nothing crashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from engine.poi.validation import ValidationThresholds, Verdict, explain
from engine.protocol import NetworkStage, NodeRole, TaskKind, TaskRole, UserStage
from engine.state.wire import WireError, from_plain, to_plain

SCHEMA_VERSION = 1
MAX_GAP = 1e6  # nats; stands in for "not top-1" (an infinite gap) where JSON needs a number

E = TypeVar("E", bound="Event")

EVENT_TYPES: dict[str, type[Event]] = {}


def _register(cls: type[E]) -> type[E]:
    if cls.type in EVENT_TYPES:
        raise RuntimeError(f"event type {cls.type!r} registered twice")
    EVENT_TYPES[cls.type] = cls
    return cls


@dataclass(frozen=True, kw_only=True)
class Event:
    """Fields every event carries. The bus stamps `seq` and `ts` when it publishes."""

    type: ClassVar[str] = ""
    seq: int = 0
    ts: float = 0.0
    node: str = ""
    role: NodeRole | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"v": SCHEMA_VERSION, "type": self.type, **to_plain(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


# --- vocabulary of the events ---------------------------------------------------------------------


class NodeState(StrEnum):
    STARTING = "starting"
    PREFLIGHT = "preflight"
    REGISTERED = "registered"
    EPHEMERAL = "ephemeral"  # eligible for user tasks
    RESERVED = "reserved"  # serving a user task
    RELEASED = "released"  # back from a user task, being re-checked
    PAUSED = "paused"
    STOPPED = "stopped"


class StepStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    CREATED = "created"  # the step made what was missing (keystore, funding, model)
    SKIPPED = "skipped"
    FAILED = "failed"


class TxStatus(StrEnum):
    """Where one step's transaction stands."""

    STARTED = "started"  # the node is working on it (generating, signing)
    SENT = "sent"
    CONFIRMED = "confirmed"
    FAILED = "failed"  # reverted or refused
    MISSED = "missed"  # the deadline passed


class AlertKind(StrEnum):
    LOW_GAS = "low_gas"
    STALL = "stall"
    RPC_DOWN = "rpc_down"
    RPC_FAILOVER = "rpc_failover"
    WORKER_CRASH = "worker_crash"
    TX_FAILED_REPEATEDLY = "tx_failed_repeatedly"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class PauseReason:
    """Why a node is paused: a `code` for machines (user, temperature, battery, schedule)."""

    code: str
    message: str = ""


@dataclass(frozen=True)
class GpuSample:
    """One GPU's reading; None is "unknown" (not supported, no driver), never an error."""

    index: int
    name: str = ""
    util_percent: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    temp_c: float | None = None


# --- the events ----------------------------------------------------------------------------------


@_register
@dataclass(frozen=True, kw_only=True)
class NodeStateChanged(Event):
    """Resumed is a change from `paused` to another state; `reasons` explain a pause."""

    type: ClassVar[str] = "node_state"
    state: NodeState
    previous: NodeState | None = None
    reasons: tuple[PauseReason, ...] = ()
    detail: str = ""


@_register
@dataclass(frozen=True, kw_only=True)
class PreflightStep(Event):
    type: ClassVar[str] = "preflight_step"
    step: str  # profile, model, wallet, gas, registered
    status: StepStatus
    detail: str = ""


@_register
@dataclass(frozen=True, kw_only=True)
class HardwareSample(Event):
    type: ClassVar[str] = "hardware"
    cpu_percent: float | None = None
    ram_used_bytes: int | None = None
    ram_total_bytes: int | None = None
    cpu_temp_c: float | None = None
    gpus: tuple[GpuSample, ...] = ()


@_register
@dataclass(frozen=True, kw_only=True)
class PingSent(Event):
    type: ClassVar[str] = "ping"
    tx_hash: str
    status: TxStatus = TxStatus.SENT
    gas_used: int | None = None
    ping_count: int | None = None


@_register
@dataclass(frozen=True, kw_only=True)
class NetworkTaskStage(Event):
    """A step of the PoUW state machine as this node saw or made it."""

    type: ClassVar[str] = "network_task"
    session_id: int
    stage: NetworkStage
    task_role: TaskRole
    status: TxStatus
    tx_hash: str | None = None
    gas_used: int | None = None
    detail: str = ""


@_register
@dataclass(frozen=True, kw_only=True)
class UserTaskStage(Event):
    type: ClassVar[str] = "user_task"
    session_id: int
    task_id: int
    stage: UserStage
    status: TxStatus
    tx_hash: str | None = None
    gas_used: int | None = None
    detail: str = ""


@_register
@dataclass(frozen=True, kw_only=True)
class TokenProgress(Event):
    """Emitted while generating, at most a few times a second (views plot tokens/s)."""

    type: ClassVar[str] = "tokens"
    task_kind: TaskKind
    session_id: int
    task_id: int = 0
    tokens: int
    tokens_per_s: float


@_register
@dataclass(frozen=True, kw_only=True)
class InferenceFinished(Event):
    type: ClassVar[str] = "inference_finished"
    task_kind: TaskKind
    session_id: int
    task_id: int = 0
    prompt_tokens: int
    generated_tokens: int
    ttft_s: float
    tokens_per_s: float
    stop_reason: str = "eos"  # eos, length, cancelled


@_register
@dataclass(frozen=True, kw_only=True)
class ValidationResult(Event):
    """One miner's answer judged by an oracle, with the thresholds it was judged against.

    `agreement` is the share of tokens within the near-tie margin of the validator's top token
    (what the top1 check compares with `top1_min`); `opening_gaps` the gaps (nats) of the
    opening's misses, `end_gap` the ending's; `greedy_path` whether the answer was the
    validator's own greedy answer (checksum level); `misses` the tokens beyond the margin and
    `misses_p` how probable that many are for an honest answer (the misses check); `reasons` one
    line per failed check with its figure against its threshold.
    """

    type: ClassVar[str] = "validation"
    task_kind: TaskKind
    session_id: int
    task_id: int = 0
    miner: str
    top1_agreement: float
    cosine: float | None
    ended_properly: bool
    checksum_match: bool | None
    passed: bool
    failed_checks: tuple[str, ...] = ()
    top1_min: float
    cosine_min: float | None
    require_proper_ending: bool
    require_checksum: bool
    agreement: float | None = None
    near_tie_margin: float | None = None
    opening_tokens: int | None = None
    opening_misses_max: int | None = None
    opening_gaps: tuple[float, ...] = ()
    end_gap: float | None = None
    greedy_path: bool | None = None
    reasons: tuple[str, ...] = ()
    misses: int | None = None
    misses_p: float | None = None
    honest_miss_rate: float | None = None
    misses_alpha: float | None = None
    opening_margin: float | None = None

    @classmethod
    def from_verdict(
        cls, verdict: Verdict, *, miner: str, task_kind: TaskKind, session_id: int, task_id: int = 0
    ) -> ValidationResult:
        t: ValidationThresholds = verdict.thresholds
        return cls(
            task_kind=task_kind,
            session_id=session_id,
            task_id=task_id,
            miner=miner,
            top1_agreement=verdict.top1_agreement,
            cosine=verdict.cosine,
            ended_properly=verdict.ended_properly,
            checksum_match=verdict.checksum_match,
            passed=verdict.passed,
            failed_checks=tuple(c.value for c in verdict.failed_checks),
            top1_min=t.top1_min,
            cosine_min=t.cosine_min,
            require_proper_ending=t.require_proper_ending,
            require_checksum=t.require_checksum,
            agreement=verdict.agreement,
            near_tie_margin=t.near_tie_margin,
            opening_tokens=t.opening_tokens,
            opening_misses_max=t.opening_misses_max,
            # JSON has no infinity; a gap that large only comes from the strict rule's "not top-1".
            opening_gaps=tuple(min(g, MAX_GAP) for g in verdict.opening_gaps),
            end_gap=None if verdict.end_gap is None else min(verdict.end_gap, MAX_GAP),
            greedy_path=verdict.greedy_path,
            reasons=explain(verdict),
            misses=verdict.misses,
            misses_p=verdict.misses_p,
            honest_miss_rate=t.honest_miss_rate,
            misses_alpha=t.misses_alpha,
            opening_margin=max(t.near_tie_margin, t.opening_margin),
        )

    def figures(self) -> str:
        """The failed checks with their figures against their thresholds, short enough for a
        table cell, e.g. "opening 2>1 (gaps 2.50,1.90 > 0.50); top1 0.72<0.80"."""
        margin = self.near_tie_margin
        if margin is None:  # written before the near-tie margin: the check names only
            return ", ".join(self.failed_checks)
        parts: list[str] = []
        for check in self.failed_checks:
            if check == "opening":
                gaps = ",".join(f"{g:.2f}" if g < MAX_GAP else "inf" for g in self.opening_gaps)
                opening = margin if self.opening_margin is None else self.opening_margin
                parts.append(
                    f"opening {len(self.opening_gaps)}>{self.opening_misses_max} "
                    f"(gaps {gaps} > {opening:.2f})"
                )
            elif check == "top1":
                parts.append(f"top1 {self.agreement or 0.0:.2f}<{self.top1_min:.2f}")
            elif check == "misses":
                p = "-" if self.misses_p is None else f"{self.misses_p:.1e}"
                parts.append(f"misses {self.misses} (p {p}<{self.misses_alpha})")
            elif check == "ending":
                gap = "-" if self.end_gap is None else f"{self.end_gap:.2f}"
                parts.append(f"ending gap {gap}>{margin:.2f}")
            elif check == "cosine":
                cosine = "-" if self.cosine is None else f"{self.cosine:.2f}"
                parts.append(f"cosine {cosine}<{self.cosine_min}")
            else:
                parts.append(check)
        return "; ".join(parts)


@_register
@dataclass(frozen=True, kw_only=True)
class PointsUpdated(Event):
    type: ClassVar[str] = "points"
    points: int
    level: int
    precommit_points: int
    precommit_counter: int
    precommit_score: float | None = None  # points / counter; None before any precommit
    ping_count: int | None = None


@_register
@dataclass(frozen=True, kw_only=True)
class EarningsUpdated(Event):
    """Amounts in wei as JSON integers (Python reads them exactly; JS readers should use BigInt)."""

    type: ClassVar[str] = "earnings"
    earned_wei: int
    withdrawable_wei: int
    gas_balance_wei: int


@_register
@dataclass(frozen=True, kw_only=True)
class Withdrawal(Event):
    type: ClassVar[str] = "withdrawal"
    amount_wei: int
    to: str
    status: TxStatus
    tx_hash: str | None = None
    gas_used: int | None = None
    detail: str = ""


@_register
@dataclass(frozen=True, kw_only=True)
class Alert(Event):
    """`active=False` clears an alert of the same kind (the gas was topped up, the RPC is back)."""

    type: ClassVar[str] = "alert"
    kind: AlertKind
    severity: Severity
    message: str
    active: bool = True


@_register
@dataclass(frozen=True, kw_only=True)
class LogLine(Event):
    type: ClassVar[str] = "log"
    level: str
    logger: str
    message: str


@_register
@dataclass(frozen=True, kw_only=True)
class BenchmarkResult(Event):
    type: ClassVar[str] = "benchmark"
    model_id: str
    quant: str
    prompt_tokens_per_s: float
    gen_tokens_per_s: float
    ttft_s: float
    checksum: str | None = None  # proves the hardware computed correctly (same build, same text)
    tier: str | None = None


@_register
@dataclass(frozen=True, kw_only=True)
class CommandHandled(Event):
    """The engine's answer to a command a view sent (commands.py), matched by `command_id`."""

    type: ClassVar[str] = "command_handled"
    command_id: str
    command: str
    accepted: bool
    message: str = ""


@_register
@dataclass(frozen=True, kw_only=True)
class EventsDropped(Event):
    """Made by a subscription, not the engine: this reader fell behind and lost `count` events."""

    type: ClassVar[str] = "events_dropped"
    count: int


@dataclass(frozen=True, kw_only=True)
class UnknownEvent(Event):
    """A document this version cannot represent; `payload` is kept verbatim for pass-through."""

    type: ClassVar[str] = "unknown"
    type_name: str
    payload: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.payload)


# --- decoding ------------------------------------------------------------------------------------


def event_from_dict(data: dict[str, Any]) -> Event:
    """Decode one event; anything this version cannot represent becomes an `UnknownEvent`."""
    type_name = str(data.get("type", ""))
    version = data.get("v", SCHEMA_VERSION)
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        return _unknown(type_name, data, "unknown type")
    if version != SCHEMA_VERSION:
        return _unknown(type_name, data, f"schema version {version}")
    try:
        return from_plain(cls, data)
    except WireError as exc:
        return _unknown(type_name, data, str(exc))


def _unknown(type_name: str, data: dict[str, Any], reason: str) -> UnknownEvent:
    # Keep what ordering and filtering need (seq, ts, node) when the document has them right.
    seq, ts, node = data.get("seq"), data.get("ts"), data.get("node")
    return UnknownEvent(
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else 0,
        ts=float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else 0.0,
        node=node if isinstance(node, str) else "",
        type_name=type_name,
        payload=dict(data),
        reason=reason,
    )


def event_from_json(text: str) -> Event:
    """Decode one JSON document; raises `WireError` only when it is not a JSON object at all."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WireError("an event is a JSON object")
    return event_from_dict(data)


# --- the bus -------------------------------------------------------------------------------------


class Subscription:
    """One reader's bounded queue. Blocking `get`, `drain`, and `async for` all read from it."""

    def __init__(self, bus: EventBus, maxsize: int, name: str) -> None:
        if maxsize < 1:
            raise ValueError("a subscription needs room for at least one event")
        self.name = name
        self._bus = bus
        self._queue: deque[Event] = deque()
        self._maxsize = maxsize
        self._missed = 0
        self.missed_total = 0
        self._closed = False
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, event: Event) -> None:
        """Called by the bus on the publisher's thread: never blocks beyond a short lock."""
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self._maxsize:
                self._queue.popleft()
                self._missed += 1
                self.missed_total += 1
            self._queue.append(event)
            self._cond.notify()
            self._wake_async()

    def note_missed(self, count: int) -> None:
        """Events this reader will never see (history too short); reported before the next one."""
        with self._cond:
            self._missed += count
            self.missed_total += count

    def _wake_async(self) -> None:
        for loop, future in self._waiters:
            # A reader whose loop has closed is gone; that must not hurt the publisher.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)
        self._waiters.clear()

    def _pop(self) -> Event | None:
        if self._missed:
            count, self._missed = self._missed, 0
            return EventsDropped(count=count, ts=time.time(), node="", role=None)
        return self._queue.popleft() if self._queue else None

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting up to `timeout` seconds; None on timeout or when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._missed or self._closed, timeout)
            return self._pop()

    def drain(self) -> list[Event]:
        """Everything queued now, without waiting (a TUI batches a frame's worth this way)."""
        with self._cond:
            events = []
            while (event := self._pop()) is not None:
                events.append(event)
            return events

    async def next(self) -> Event | None:
        """The next event without blocking the event loop; None once the subscription closes."""
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                event = self._pop()
                if event is not None or self._closed:
                    return event
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, future))
            await future

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[Event]:
        while (event := await self.next()) is not None:
            yield event

    def __iter__(self) -> Iterator[Event]:
        """Blocking iteration until the subscription is closed (for a logger thread)."""
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def close(self) -> None:
        self._bus.unsubscribe(self)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._wake_async()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class EventBus:
    """Thread-safe fan-out of events to independent subscribers; publishing never blocks on them."""

    def __init__(
        self,
        *,
        node: str = "",
        role: NodeRole | None = None,
        clock: Callable[[], float] = time.time,
        history: int = 1000,
    ) -> None:
        self.node = node
        self.role = role
        self._clock = clock
        self._seq = 0
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        # Recent events, so a reader that (re)connects late (SSE Last-Event-ID, attach) catches up.
        self._history: deque[Event] = deque(maxlen=history)

    @property
    def last_seq(self) -> int:
        return self._seq

    def subscribe(
        self, *, maxsize: int = 1000, name: str = "", after_seq: int | None = None
    ) -> Subscription:
        """A new reader; with `after_seq` it first gets the kept history after that number.

        If the history no longer reaches back to `after_seq + 1`, the reader is told how many it
        missed (`EventsDropped`) before the events that are still there.
        """
        sub = Subscription(self, maxsize, name)
        with self._lock:
            if after_seq is not None:
                backlog = [e for e in self._history if e.seq > after_seq]
                oldest = backlog[0].seq if backlog else self._seq + 1
                sub.note_missed(max(0, oldest - after_seq - 1))
                for event in backlog:
                    sub.offer(event)
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def publish(self, event: E, *, stamp: bool = True) -> E:
        """Stamp `seq`, `ts` (and node/role when empty) and hand the event to every subscriber.

        `stamp=False` keeps a recorded event's own `seq` and `ts` (replaying into a live bus).
        """
        with self._lock:
            if stamp:
                self._seq += 1
                event = dataclasses.replace(
                    event,
                    seq=self._seq,
                    ts=self._clock(),
                    node=event.node or self.node,
                    role=event.role or self.role,
                )
            else:
                self._seq = max(self._seq, event.seq)
            self._history.append(event)
            # Offer under the bus lock so every subscriber sees events in `seq` order.
            for sub in self._subscribers:
                sub.offer(event)
        return event
