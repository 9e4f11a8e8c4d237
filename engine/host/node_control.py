"""The engine's side of commands and policies: who may pause the miners, and why they are paused.

`NodeController.handle(command)` is called on the run loop's thread for every command a view put
on the `CommandQueue` (the status API, a signal handler, the TUI). Every command is answered with a
`CommandHandled` event carrying its id, so a command that could not be obeyed never looks obeyed.

A miner is paused while at least one *reason* holds: `user` (a Pause command), or `temperature`,
`battery`, `schedule` (the polite-mining policies, `engine.host.policies`). A Resume clears one
reason;
the miner works again when none is left. Every change publishes `NodeStateChanged` with the
reasons, which is how the summary, the log and the dashboard learn of it.

`PolicyMonitor.tick(now)` samples readings at its interval (`engine.host.sensors.policy_readings`
on a real host; tests pass psutil-shaped samples through the same `readings_from_psutil` adapter)
and hands the decision to the controller. `engine.host.node_host.NodeHost` puts the two together
with the alerts, for both front ends.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from chain.errors import ChainError
from chain.wrappers import NodeStatus
from engine.host.policies import PolicyDecision, PolicySettings, PolicyState, Readings, evaluate
from engine.protocol import NodeRole
from engine.state.commands import (
    Benchmark,
    Command,
    Pause,
    ReloadConfig,
    Resume,
    SetPayout,
    Start,
    Stop,
    Withdraw,
)
from engine.state.events import (
    CommandHandled,
    EventBus,
    NodeState,
    NodeStateChanged,
    PauseReason,
)

log = logging.getLogger(__name__)

POLICY_CODES = ("temperature", "battery", "schedule")


class Pausable(Protocol):
    address: str
    paused: bool


def policy_reason_code(reason: str) -> str:
    """The machine code of one of `engine.host.policies.evaluate`'s human reasons."""
    if "temperature" in reason:
        return "temperature"
    if "battery" in reason:
        return "battery"
    if "active hours" in reason:
        return "schedule"
    return "policy"


class NodeController:
    """Applies commands and policy decisions to the miners; answers on the bus."""

    def __init__(
        self,
        bus: EventBus,
        miners: Sequence[Pausable] | Callable[[], Sequence[Pausable]],
        *,
        reload: Callable[[], tuple[bool, str]] | None = None,
        stop: threading.Event | None = None,
        withdraw: Callable[[Withdraw], tuple[bool, str]] | None = None,
    ) -> None:
        self.bus = bus
        # A callable reads the node's miners at each use: a network still starting has none yet.
        self._miners = miners if callable(miners) else list(miners)
        self._reload = reload
        self._withdraw = withdraw
        self._stop = stop
        self._lock = threading.Lock()
        # reason code -> message, shared by every miner of this process (one host, one policy)
        self.reasons: dict[str, str] = {}

    @property
    def miners(self) -> list[Pausable]:
        return list(self._miners()) if callable(self._miners) else list(self._miners)

    @miners.setter
    def miners(self, miners: Sequence[Pausable]) -> None:
        self._miners = list(miners)

    # -- commands -------------------------------------------------------------------------
    def handle(self, command: Command) -> CommandHandled:
        accepted, message = self._dispatch(command)
        log.debug(
            "command %s from %s: %s%s",
            command.type,
            command.source or "?",
            "done" if accepted else "refused",
            f" ({message})" if message else "",
        )
        return self.bus.publish(
            CommandHandled(
                command_id=command.id, command=command.type, accepted=accepted, message=message
            )
        )

    def _dispatch(self, command: Command) -> tuple[bool, str]:
        match command:
            case Pause():
                return self._pause(command)
            case Resume():
                return self._resume(command)
            case Benchmark():
                return request_benchmarks(self.miners)
            case SetPayout():
                return set_payout_for(self.miners, command.address)
            case ReloadConfig():
                if self._reload is None:
                    return False, "this node cannot reload its config"
                return self._reload()
            case Withdraw():
                if self._withdraw is None:
                    return False, (
                        "withdraw is not available on this node: it runs no miner; nothing was sent"
                    )
                return self._withdraw(command)
            case Start():
                return (
                    False,
                    "this node is running (a stopped headless node is started by its service)",
                )
            case Stop():
                if self._stop is None:
                    return False, "this node cannot be stopped by command"
                self._stop.set()
                return True, "stopping"
        return False, f"'{command.type}' is not available on this node in this version"

    def _pause(self, command: Pause) -> tuple[bool, str]:
        source = f" by {command.source}" if command.source else ""
        text = f"paused{source}" + (
            f": {command.reason}" if command.reason not in ("", "user") else ""
        )
        added = self.set_reasons({**self.reasons, "user": text})
        return True, "paused" if added else "already paused by the user"

    def _resume(self, command: Resume) -> tuple[bool, str]:
        code = command.reason or "user"
        if code not in self.reasons:
            held = ", ".join(sorted(self.reasons)) or "none"
            return False, f"no '{code}' pause to clear (holding: {held})"
        if code in POLICY_CODES:
            return False, f"'{code}' is held by a policy; it clears when its condition does"
        rest = {k: v for k, v in self.reasons.items() if k != code}
        self.set_reasons(rest)
        return True, "resumed" if not rest else f"still paused: {', '.join(sorted(rest))}"

    # -- pause reasons --------------------------------------------------------------------
    def apply_policy(self, decision: PolicyDecision) -> bool:
        """Replace the policy-held reasons with this decision's; True when anything changed."""
        kept = {k: v for k, v in self.reasons.items() if k not in POLICY_CODES and k != "policy"}
        for reason in decision.reasons:
            code = policy_reason_code(reason)
            kept[code] = f"{kept[code]}; {reason}" if code in kept else reason
        return self.set_reasons(kept)

    def set_reasons(self, reasons: dict[str, str]) -> bool:
        with self._lock:
            if set(reasons) == set(self.reasons):
                # Same reasons, fresher wording (a new temperature): no new state to announce.
                self.reasons = dict(reasons)
                return False
            was_paused = bool(self.reasons)
            self.reasons = dict(reasons)
            paused = bool(reasons)
            listed = tuple(PauseReason(code, message) for code, message in sorted(reasons.items()))
            for miner in self.miners:
                miner.paused = paused
                if paused:
                    state, previous = (
                        NodeState.PAUSED,
                        (NodeState.PAUSED if was_paused else NodeState.REGISTERED),
                    )
                else:
                    state, previous = NodeState.REGISTERED, NodeState.PAUSED
                self.bus.publish(
                    NodeStateChanged(
                        node=miner.address,
                        role=NodeRole.MINER,
                        state=state,
                        previous=previous,
                        reasons=listed,
                        detail="; ".join(m for _, m in sorted(reasons.items())),
                    )
                )
            return True


class PolicyMonitor:
    """Samples at an interval, evaluates the policies, and tells the controller."""

    def __init__(
        self,
        controller: NodeController,
        settings: PolicySettings,
        sample: Callable[[], Readings],
        interval_s: float = 30.0,
    ) -> None:
        self.controller = controller
        self.settings = settings
        self.sample = sample
        self.interval_s = interval_s
        self.state = PolicyState()
        self.last: PolicyDecision | None = None
        self._next_at: float | None = None

    @property
    def active(self) -> bool:
        s = self.settings
        return bool(
            s.cpu_pause_above_c is not None
            or s.gpu_pause_above_c is not None
            or s.pause_on_battery
            or s.active_hours
        )

    def update(self, settings: PolicySettings) -> None:
        """New settings (a config reload): evaluate at the next tick."""
        self.settings = settings
        self._next_at = None
        if not self.active:
            self.controller.apply_policy(PolicyDecision(paused=False, reasons=()))

    def tick(self, now: float) -> PolicyDecision | None:
        """Sample and evaluate when due; the decision, or None when not due or no policy is set."""
        if not self.active or (self._next_at is not None and now < self._next_at):
            return None
        self._next_at = now + self.interval_s
        decision = evaluate(self.settings, self.sample(), self.state)
        self.state = decision.state
        self.last = decision
        self.controller.apply_policy(decision)
        return decision


def request_benchmarks(miners: Sequence[object]) -> tuple[bool, str]:
    """Ask every miner that can to benchmark its model between tasks (`BenchmarkResult` follows)."""
    answers = [
        request()
        for request in (getattr(m, "request_benchmark", None) for m in miners)
        if callable(request)
    ]
    queued = sum(1 for accepted, _ in answers if accepted)
    if not queued:
        reasons = sorted({message for _, message in answers}) or ["no miner here can benchmark"]
        return False, "; ".join(reasons)
    return True, f"benchmark queued on {queued} miner(s): it runs between tasks"


def set_payout_for(miners: Sequence[Any], address: str) -> tuple[bool, str]:
    """Registered miners call NodeRegistry.setPayout; the rest register with it later."""
    if not miners:
        return False, "this node runs no miner: there is no payout to set"
    sent: list[str] = []
    for miner in miners:
        miner.payout = address
        try:
            if miner.client.registry.node_info(miner.address).status == NodeStatus.NONE:
                continue  # not registered yet: preflight registers with miner.payout
            sent.append(miner.client.registry.set_payout(address).tx_hash)
        except ChainError as exc:
            return False, f"setPayout failed for {miner.address}: {exc}"
    return True, f"payout {address} set on chain for {len(sent)} miners ({', '.join(sent)})"


def with_source(command: Command, source: str) -> Command:
    """The same command, saying who sent it (frozen dataclasses)."""
    return dataclasses.replace(command, source=source)
