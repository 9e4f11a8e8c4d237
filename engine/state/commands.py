"""Typed commands: the only way a view (TUI, status API, CLI, signal handler) acts on the engine.

Views put commands on a `CommandQueue`; the engine takes them on its own thread and answers each
with a `CommandHandled` event carrying the command's `id`. Commands cross HTTP as JSON, so decoding
is strict: an unknown command type or a malformed field is a `WireError` (the API answers 400),
never silently ignored, because a command that was not understood must not look obeyed.
"""

from __future__ import annotations

import json
import queue
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from engine.state.wire import WireError, from_plain, to_plain

C = TypeVar("C", bound="Command")

COMMAND_TYPES: dict[str, type[Command]] = {}


def _register(cls: type[C]) -> type[C]:
    COMMAND_TYPES[cls.type] = cls
    return cls


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class Command:
    """`source` says who asked (tui, api, cli, signal, policy) for the log and the audit trail."""

    type: ClassVar[str] = ""
    id: str = field(default_factory=_new_id)
    issued_at: float = field(default_factory=time.time)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **to_plain(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


@_register
@dataclass(frozen=True, kw_only=True)
class Start(Command):
    type: ClassVar[str] = "start"


@_register
@dataclass(frozen=True, kw_only=True)
class Stop(Command):
    """Stop the node cleanly: finish or journal the current step, then exit the loops."""

    type: ClassVar[str] = "stop"


@_register
@dataclass(frozen=True, kw_only=True)
class Pause(Command):
    """Finish the current task, then leave the pool on chain so deadlines are not penalised."""

    type: ClassVar[str] = "pause"
    reason: str = "user"


@_register
@dataclass(frozen=True, kw_only=True)
class Resume(Command):
    type: ClassVar[str] = "resume"
    # The pause reason this clears: several can hold at once (user, temperature, battery).
    reason: str = "user"


@_register
@dataclass(frozen=True, kw_only=True)
class Benchmark(Command):
    type: ClassVar[str] = "benchmark"
    model_id: str | None = None  # None: the model the node serves


@_register
@dataclass(frozen=True, kw_only=True)
class Withdraw(Command):
    """Withdraw `amount_wei`, or everything withdrawable when `all` is true; exactly one of them.

    SessionPayment pays out a node's whole balance, so an amount is accepted only when it is the
    whole balance. `node` names one miner where a process runs several (the embedded network);
    without it every miner of the process that has a balance withdraws.
    """

    type: ClassVar[str] = "withdraw"
    amount_wei: int | None = None
    all: bool = False
    node: str | None = None

    def __post_init__(self) -> None:
        if self.all == (self.amount_wei is not None):
            raise ValueError("withdraw needs either amount_wei or all=true, not both or neither")
        if self.amount_wei is not None and self.amount_wei <= 0:
            raise ValueError("withdraw amount must be positive")


@_register
@dataclass(frozen=True, kw_only=True)
class SetPayout(Command):
    """Pay this node's earnings to `address` (NodeRegistry.setPayout once registered)."""

    type: ClassVar[str] = "set_payout"
    address: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", self.address):
            raise ValueError(f"payout must be 0x and 40 hex digits, not {self.address!r}")


@_register
@dataclass(frozen=True, kw_only=True)
class ReloadConfig(Command):
    type: ClassVar[str] = "reload_config"


def command_from_dict(data: Any) -> Command:
    """Decode a command; unknown types and bad fields raise `WireError` with a user message."""
    if not isinstance(data, dict):
        raise WireError("a command is a JSON object")
    type_name = data.get("type")
    cls = COMMAND_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        known = ", ".join(sorted(COMMAND_TYPES))
        raise WireError(f"unknown command {type_name!r}; known: {known}")
    return from_plain(cls, data)


def command_from_json(text: str) -> Command:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WireError(f"not JSON: {exc}") from None
    return command_from_dict(data)


class CommandQueueFull(WireError):
    """Views are sending commands faster than the engine takes them; try again shortly."""


class CommandSink(Protocol):
    """Where views put commands: the engine's queue, or a remote node's API (`attach`)."""

    def put(self, command: Command) -> object: ...


class CommandQueue:
    """Thread-safe FIFO from views to the engine; bounded so a runaway client cannot grow it."""

    def __init__(self, maxsize: int = 100) -> None:
        self._queue: queue.Queue[Command] = queue.Queue(maxsize=maxsize)

    def put(self, command: Command) -> Command:
        try:
            self._queue.put_nowait(command)
        except queue.Full:
            raise CommandQueueFull("the engine is busy: too many commands waiting") from None
        return command

    def get(self, timeout: float | None = None) -> Command | None:
        """The next command, waiting up to `timeout` seconds (0: just look); None if none came."""
        try:
            if timeout == 0:
                return self._queue.get_nowait()
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> list[Command]:
        """Every command waiting now, in order (the engine loop takes them once per tick)."""
        commands = []
        while (command := self.get(timeout=0)) is not None:
            commands.append(command)
        return commands

    def __len__(self) -> int:
        return self._queue.qsize()
