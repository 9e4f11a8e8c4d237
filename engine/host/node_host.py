"""The one node host: commands, polite mining, alerts and hardware readings for a running node.

Both front ends run a node through a `NodeHost`: the headless run loop
(`cortensor_desktop/hosting/run_loop.py`) and the dashboard's host
(`cortensor_desktop/hosting/dashboard_host.py`, which adds only Start/Stop rebuilding the embedded
network). Each calls `handle(command)` for the commands views send and `tick(now)` on its loop:

- `NodeController` applies commands and pause reasons to the miners (`node_control.py`);
- `PolicyMonitor` pauses them for temperature, battery or schedule (`[policy]`);
- `WorkerWatch` raises an alert when an inference worker dies and clears it once it runs again;
- `GasWatch` reads the oracles' gas balance with the miners' low-gas alarm (miners read their own,
  `engine/node/earnings.py`);
- `HardwareWatch` publishes `HardwareSample` (CPU, RAM, temperatures, GPUs), the only way views
  learn this machine's readings.

Everything it knows of the node goes through the `RunningNode` protocol, read at each use: a
network still starting has no miners yet.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from chain.errors import ChainError
from engine.host.node_control import NodeController, PolicyMonitor
from engine.host.policies import PolicySettings, Readings
from engine.host.running import RunningNode
from engine.host.sensors import hardware_reading, hottest_nvidia_gpu, policy_readings
from engine.node.earnings import GasAlarm, withdraw_from
from engine.protocol import NodeRole
from engine.state.commands import Command, Withdraw
from engine.state.events import Alert, AlertKind, CommandHandled, EventBus, HardwareSample, Severity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostSettings:
    """What the host runs with, from `[policy]` and `[alerts]`."""

    policy: PolicySettings = field(default_factory=PolicySettings)
    policy_interval_s: float = 30.0
    low_gas_wei: int = 0  # 0: no low-gas alert
    gas_every_s: float = 30.0
    hardware_every_s: float = 2.0


class NodeHost:
    """Commands, policies, alerts and hardware readings for one running node."""

    def __init__(
        self,
        bus: EventBus,
        node: RunningNode,
        settings: HostSettings | None = None,
        *,
        reload: Callable[[], tuple[bool, str]] | None = None,
        stop: threading.Event | None = None,
        readings: Callable[[], Readings] | None = None,
        hardware: Callable[[], HardwareSample] | None = None,
        on_gas_balance: Callable[[str, int], None] | None = None,
    ) -> None:
        settings = settings or HostSettings()
        self.bus = bus
        self.node = node
        self.controller = NodeController(
            bus, lambda: node.miners, reload=reload, stop=stop, withdraw=self._withdraw
        )
        self.monitor = PolicyMonitor(
            self.controller,
            settings.policy,
            readings or policy_readings(gpu_temp=self._gpu_temp),
            interval_s=settings.policy_interval_s,
        )
        self.workers = WorkerWatch(bus)
        self.gas = GasWatch(bus, settings.low_gas_wei, settings.gas_every_s, on_gas_balance)
        self.hardware = HardwareWatch(
            bus, hardware or hardware_reading(), settings.hardware_every_s
        )

    def handle(self, command: Command) -> CommandHandled:
        return self.controller.handle(command)

    def apply_policy(self, settings: PolicySettings, interval_s: float) -> None:
        """New `[policy]` (a config reload): evaluated at the next tick."""
        self.monitor.interval_s = interval_s
        self.monitor.update(settings)

    def tick(self, now: float | None = None, *, node_up: bool = True) -> None:
        """Everything due at `now` (monotonic). Before the node is up only the hardware is read:
        a policy decision must not land on miners that do not exist yet."""
        now = time.monotonic() if now is None else now
        self.hardware.tick(now)
        if not node_up:
            return
        self.monitor.tick(now)
        with contextlib.suppress(ValueError):  # the worker list changes while the node stops
            self.workers.owners = self.node.worker_owners
            self.workers.check(self.node.workers)
        self.gas.tick(now, self.node.oracles)

    def _gpu_temp(self) -> float | None:
        """NVML is asked only when a GPU temperature limit is set."""
        if self.monitor.settings.gpu_pause_above_c is None:
            return None
        return hottest_nvidia_gpu()

    def _withdraw(self, command: Withdraw) -> tuple[bool, str]:
        return withdraw_from(self.node.miners, command.amount_wei, command.node)


class WatchedWorker(Protocol):
    """What the watch needs of an inference worker (InferenceWorker satisfies it)."""

    @property
    def pid(self) -> int | None: ...

    deaths: list[Any]


class WorkerWatch:
    """Turns inference worker deaths into alerts: raised on a death, cleared once it runs again.

    A worker that dies is restarted by its next request (engine/inference/runtime.py); nothing else
    would tell the views, since a death between requests raises nowhere. `check` runs on the run
    loop.
    """

    def __init__(self, bus: EventBus, owners: dict[str, str] | None = None) -> None:
        self.bus = bus
        self.owners = dict(owners or {})  # worker name -> node address
        self._seen: dict[str, int] = {}
        self._last_pid: dict[str, int | None] = {}
        self._dead_pid: dict[str, int | None] = {}  # raised, waiting for a fresh process

    def check(self, workers: Sequence[tuple[str, WatchedWorker]]) -> None:
        for name, worker in workers:
            deaths, pid = len(worker.deaths), worker.pid
            known = self._seen.setdefault(name, deaths)
            if deaths > known:
                self._seen[name] = deaths
                self._dead_pid[name] = self._last_pid.get(name)
                death = worker.deaths[-1]
                text = death.describe() if hasattr(death, "describe") else str(death)
                self._alert(name, True, f"{name}: {text}; restarting it")
            elif name in self._dead_pid and pid is not None and pid != self._dead_pid[name]:
                del self._dead_pid[name]
                self._alert(name, False, f"{name}: the inference worker runs again (pid {pid})")
            if pid is not None:
                self._last_pid[name] = pid

    def _alert(self, name: str, active: bool, message: str) -> None:
        self.bus.publish(
            Alert(
                node=self.owners.get(name, ""),
                kind=AlertKind.WORKER_CRASH,
                severity=Severity.WARNING if active else Severity.INFO,
                message=message,
                active=active,
            )
        )


class GasAccount(Protocol):
    """An oracle as the gas watch reads it."""

    address: str

    @property
    def client(self) -> BalanceReader: ...


class BalanceReader(Protocol):
    def balance(self, address: str) -> int: ...


class GasWatch:
    """The oracles' gas balance at an interval, with the low-gas alarm the miners have."""

    def __init__(
        self,
        bus: EventBus,
        low_gas_wei: int,
        every_s: float = 30.0,
        on_balance: Callable[[str, int], None] | None = None,
    ) -> None:
        self.bus = bus
        self.low_gas_wei = low_gas_wei
        self.every_s = every_s
        self.on_balance = on_balance  # the status API's summary keeps the oracles' balances
        self.alarms: dict[str, GasAlarm] = {}
        self._next_at: float | None = None

    def tick(self, now: float, oracles: Sequence[GasAccount]) -> None:
        if self._next_at is not None and now < self._next_at:
            return
        self._next_at = now + self.every_s
        for oracle in oracles:
            self.check(oracle)

    def check(self, oracle: GasAccount) -> None:
        address = oracle.address
        try:
            wei = oracle.client.balance(address)
        except (ChainError, OSError, ValueError) as exc:
            log.debug("gas balance of %s not read: %s", address, exc)
            return
        if self.on_balance is not None:
            self.on_balance(address, wei)
        alarm = self.alarms.setdefault(address, GasAlarm(self.low_gas_wei))
        alert = alarm.check(wei, address)
        if alert is not None:
            self.bus.publish(replace(alert, node=address, role=NodeRole.ORACLE))


class HardwareWatch:
    """Publishes this machine's readings as `HardwareSample` at an interval."""

    def __init__(
        self, bus: EventBus, sample: Callable[[], HardwareSample], every_s: float = 2.0
    ) -> None:
        self.bus = bus
        self.sample = sample
        self.every_s = every_s
        self._next_at: float | None = None

    def tick(self, now: float) -> HardwareSample | None:
        if self._next_at is not None and now < self._next_at:
            return None
        self._next_at = now + self.every_s
        return self.bus.publish(self.sample())
