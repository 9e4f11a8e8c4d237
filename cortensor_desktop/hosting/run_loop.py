"""`run --headless`: one node on this process's main thread until a signal, a duration or N tasks.

`serve(run, build)` starts what `build` makes (an embedded network or one standalone node, both a
`RunningNode`) on a fresh event bus, logs its events (the headless reader), folds them into the
summary the status API serves, and runs the control loop: commands from the queue, SIGHUP
reloads, the polite-mining policies, worker-crash and oracle low-gas alerts. A signal stops it
cleanly. The CLI (`cli/commands/run_cmd.py`) only parses arguments and chooses what to build.
Never imports textual or rich: servers run this path.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chain.errors import ChainError
from chain.wrappers import Tier
from cortensor_desktop.config import Config, PolicySection
from cortensor_desktop.hosting.headless import StopSignals, log_event
from cortensor_desktop.hosting.reload import ConfigReloader
from cortensor_desktop.paths import AppPaths
from cortensor_desktop.service.status_api import StatusApi, SummaryHolder
from engine.host.node_control import (
    NodeController,
    PolicyMonitor,
    WorkerWatch,
    hottest_nvidia_gpu,
    psutil_sampler,
)
from engine.host.running import RunningNode
from engine.node.earnings import GasAlarm, withdraw_from
from engine.node.miner import MinerSettings
from engine.protocol import NodeRole
from engine.state.commands import CommandQueue, ReloadConfig, Withdraw
from engine.state.events import Event, EventBus
from engine.state.recording import Recorder
from engine.state.summary import Summary

log = logging.getLogger(__name__)
TICK_S = 0.2  # how often the control loop looks at commands, signals and the monitors


@dataclass(frozen=True)
class HeadlessRun:
    """What the CLI decided for one headless run."""

    config: Config
    config_path: Path
    paths: AppPaths
    network_name: str
    registered_as: MinerSettings  # what the miners register with: the summary's model and tier
    banner: str  # logged once the node is up
    facts: dict[str, Any] = field(default_factory=dict)  # rpc in use, threads and why (`status`)
    duration_s: float | None = None
    sessions: int | None = None  # stop once the oracles have ended this many network tasks
    record: Path | None = None


def serve(run: HeadlessRun, build: Callable[[EventBus], RunningNode]) -> None:
    """Start what `build` makes on a fresh bus; log its events, serve the status API, apply
    commands and policies; stop cleanly on a signal, the duration or the session count."""
    signals = StopSignals()
    signals.install()
    bus = EventBus()
    reader = bus.subscribe(name="headless-log", maxsize=10_000)
    recorder = Recorder(run.record) if run.record is not None else None
    if recorder is not None:
        recorder.attach(bus)
    node = build(bus)
    commands = CommandQueue()
    status = StatusService(run, bus, commands, node)
    pump = threading.Thread(target=pump_events, args=(reader, log_event), daemon=True)
    pump.start()
    started = time.monotonic()
    try:
        status.start()
        node.start()
        status.holder.info.update(model_and_tier(run.registered_as))
        control = RunControl(run.config, run.config_path, bus, node, signals, status.holder)
        log.info("%s; Ctrl-C stops", run.banner)
        wait_until_done(run, node, signals, started, commands, control)
    finally:
        log.info("stopping (%s)", signals.received or "done")
        node.stop()
        reader.close()
        pump.join(timeout=5)
        status.stop()
        if recorder is not None:
            recorder.close()
    log_run_summary(node, time.monotonic() - started)
    signals.finished.set()


class StatusService:
    """The summary fold and the status API (when `[api] port` is not 0), up before the node."""

    def __init__(
        self, run: HeadlessRun, bus: EventBus, commands: CommandQueue, node: RunningNode
    ) -> None:
        self.run = run
        self.bus = bus
        self.commands = commands
        info = {
            "network": run.network_name,
            **run.facts,  # rpc in use, threads and why
            "home": str(run.paths.home) if run.paths.home else None,
            "pid": os.getpid(),
        }
        self.holder = SummaryHolder(Summary(started_at=time.time()), info)
        self.holder.workers = lambda: worker_rows(node)
        self.reader = bus.subscribe(name="summary", maxsize=10_000)
        self.pump = threading.Thread(
            target=pump_events, args=(self.reader, self.holder.apply), daemon=True
        )
        self.api: StatusApi | None = None

    def start(self) -> None:
        self.pump.start()
        port = self.run.config.api.port
        if port == 0:
            log.info("status API off ([api] port = 0)")
            return
        self.run.paths.ensure()
        self.api = StatusApi(self.holder, self.bus, self.commands, self.run.paths.data_dir, port)
        self.api.start()

    def stop(self) -> None:
        self.reader.close()
        self.pump.join(timeout=5)
        if self.api is not None:
            self.api.stop()


def model_and_tier(settings: MinerSettings) -> dict[str, Any]:
    """What the miners registered with (the summary's model and tier)."""
    tier = Tier.label_of(settings.tier) or str(settings.tier)
    return {"model": settings.model_name, "tier": tier}


def worker_rows(node: RunningNode) -> list[dict[str, Any]]:
    # Read from server threads while workers restart or the node stops: a worker may drop
    # its process between two attribute reads, so a torn read gives no list rather than an error.
    try:
        return [{"name": name, "pid": w.pid, "deaths": len(w.deaths)} for name, w in node.workers]
    except (ValueError, AttributeError):
        return []


class RunControl:
    """Commands from the queue, SIGHUP reloads and the polite-mining policies, on the run loop."""

    GAS_EVERY_S = 30.0

    def __init__(
        self,
        config: Config,
        config_path: Path,
        bus: EventBus,
        node: RunningNode,
        signals: StopSignals,
        holder: SummaryHolder,
    ) -> None:
        self.bus = bus
        self.holder = holder
        # Miners read and publish their own gas balance (EarningsUpdated, engine/node/earnings.py);
        # the oracles' is read here, with the same low-gas alarm.
        self.oracles = list(node.oracles)
        low_gas_wei = config.alerts.low_gas_wei
        self.alarms = {oracle.address: GasAlarm(low_gas_wei) for oracle in self.oracles}
        self._gas_at = 0.0
        self.node = node
        self.workers = WorkerWatch(bus, dict(node.worker_owners))
        self.reload = ConfigReloader(config, config_path, apply_policy=self.apply_policy)
        self.controller = NodeController(
            bus, node.miners, reload=self.reload, stop=signals.stop, withdraw=self.withdraw
        )
        policy = config.policy
        self.monitor = PolicyMonitor(
            self.controller,
            policy.to_policy_settings(),
            psutil_sampler(gpu_temp=self._gpu_temp),
            interval_s=policy.sample_interval_s,
        )

    def _gpu_temp(self) -> float | None:
        """NVML is asked only when a GPU temperature limit is set."""
        if self.monitor.settings.gpu_pause_above_c is None:
            return None
        return hottest_nvidia_gpu()

    def apply_policy(self, policy: PolicySection) -> None:
        self.monitor.interval_s = policy.sample_interval_s
        self.monitor.update(policy.to_policy_settings())

    def withdraw(self, command: Withdraw) -> tuple[bool, str]:
        return withdraw_from(self.node.miners, command.amount_wei, command.node)

    def tick(self, commands: CommandQueue, signals: StopSignals) -> None:
        if signals.take_reload():
            self.controller.handle(ReloadConfig(source="signal"))
        for command in commands.drain():
            self.controller.handle(command)
        self.monitor.tick(time.monotonic())
        with contextlib.suppress(ValueError):  # the list changes while the node stops
            self.workers.check(self.node.workers)
        if time.monotonic() >= self._gas_at:
            self._gas_at = time.monotonic() + self.GAS_EVERY_S
            self.sample_gas()

    def sample_gas(self) -> None:
        for oracle in self.oracles:
            address = oracle.address
            try:
                wei = oracle.client.balance(address)
            except (ChainError, OSError, ValueError) as exc:
                log.debug("gas balance of %s not read: %s", address, exc)
                continue
            self.holder.read(functools.partial(Summary.set_gas_balance, address=address, wei=wei))
            alert = self.alarms[address].check(wei, address)
            if alert is not None:
                self.bus.publish(replace(alert, node=address, role=NodeRole.ORACLE))


def wait_until_done(
    run: HeadlessRun,
    node: RunningNode,
    signals: StopSignals,
    started: float,
    commands: CommandQueue,
    control: RunControl,
) -> None:
    deadline = started + run.duration_s if run.duration_s else None
    while not signals.stop.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            return
        ended = sum(o.sessions_ended for o in node.oracles)
        if run.sessions and ended >= run.sessions:
            return
        control.tick(commands, signals)
        signals.stop.wait(TICK_S)


def pump_events(reader: Iterable[Event], sink: Callable[[Event], None]) -> None:
    for event in reader:
        sink(event)


def log_run_summary(node: RunningNode, elapsed: float) -> None:
    ended = sum(o.sessions_ended for o in node.oracles)
    done = ", ".join(f"{m.address[:10]}…: {m.tasks_done}" for m in node.miners)
    log.info(
        "ran %.0f s: %d network tasks ended; tasks answered per miner: %s",
        elapsed,
        ended,
        done or "-",
    )
