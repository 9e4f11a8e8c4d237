"""`run --headless`: one node on this process's main thread until a signal, a duration or N tasks.

`serve(run, build)` starts what `build` makes (an embedded network or one standalone node, both a
`RunningNode`) on a fresh event bus, logs its events (the headless reader), folds them into the
summary the status API serves, and runs the control loop: commands from the queue, SIGHUP
reloads, and the node host's ticks (`engine.host.node_host`: the polite-mining policies,
worker-crash and oracle low-gas alerts, hardware readings). A signal stops it cleanly. The CLI
(`cli/commands/run_cmd.py`) only parses arguments and chooses what to build (`headless_runs.py`).
Never imports textual or rich: servers run this path.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chain.wrappers import Tier
from cortensor_desktop.config import Config
from cortensor_desktop.hosting.headless import StopSignals, log_event
from cortensor_desktop.hosting.reload import ConfigReloader, host_settings
from cortensor_desktop.paths import AppPaths
from cortensor_desktop.service.status_api import StatusApi, SummaryHolder
from engine.host.loop_threads import LoopDeath
from engine.host.node_host import NodeHost
from engine.host.plan import NodePlan
from engine.host.running import RunningNode
from engine.node.miner import MinerSettings
from engine.state.commands import CommandQueue, ReloadConfig
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
    # A changed [fit] on reload: the fresh config -> the plan the node now runs (it finishes its
    # open task, swaps the model, re-registers); None: [fit] changes need a restart.
    replan: Callable[[Config], NodePlan] | None = None
    # Something served in front of the started node (the router on embedded): given the node
    # and the status service, it returns what stops it, or None when it did not start.
    front: Callable[[RunningNode, StatusService], Callable[[], None] | None] | None = None


def serve(run: HeadlessRun, build: Callable[[EventBus], RunningNode]) -> LoopDeath | None:
    """Start what `build` makes on a fresh bus; log its events, serve the status API, apply
    commands and policies; stop cleanly on a signal, the duration, the session count, or a
    loop thread that died: that one is returned, and the process must exit non-zero for it (a
    node with a dead loop would otherwise keep serving a summary that looks alive)."""
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
    stop_front: Callable[[], None] | None = None
    try:
        status.start()
        node.start()
        status.holder.info.update(model_and_tier(run.registered_as, node.plan))
        stop_front = run.front(node, status) if run.front is not None else None
        control = RunControl(
            run.config, run.config_path, bus, node, signals, status.holder, _replan(run, status)
        )
        log.info("%s; Ctrl-C stops", run.banner)
        wait_until_done(run, node, signals, started, commands, control)
    finally:
        log.info("stopping (%s)", signals.received or "done")
        if stop_front is not None:
            stop_front()
        node.stop()
        reader.close()
        pump.join(timeout=5)
        status.stop()
        if recorder is not None:
            recorder.close()
    log_run_summary(node, time.monotonic() - started)
    signals.finished.set()
    death = node.loop_death
    if death is not None:
        log.error("exiting: %s", death.describe())
    return death


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


def model_and_tier(settings: MinerSettings, plan: NodePlan | None = None) -> dict[str, Any]:
    """What the miners registered with (the summary's model and tier) and the plan behind it:
    the plan that runs wins over the settings decided before start (an install fallback)."""
    if plan is not None:
        settings = plan.miner_settings(settings)
    tier = Tier.label_of(settings.tier) or str(settings.tier)
    return {
        "model": settings.model_name,
        "tier": tier,
        "plan": plan.to_json() if plan is not None else None,
    }


def worker_rows(node: RunningNode) -> list[dict[str, Any]]:
    # Read from server threads while workers restart or the node stops: a worker may drop
    # its process between two attribute reads, so a torn read gives no list rather than an error.
    try:
        return [{"name": name, "pid": w.pid, "deaths": len(w.deaths)} for name, w in node.workers]
    except (ValueError, AttributeError):
        return []


def _replan(run: HeadlessRun, status: StatusService) -> Callable[[Config], str] | None:
    """The reload's re-plan, keeping `status --json`'s model, tier and plan current."""
    replan = run.replan
    if replan is None:
        return None

    def apply(fresh: Config) -> str:
        plan = replan(fresh)
        status.holder.info.update(model_and_tier(run.registered_as, plan))
        return f"re-planned: {plan.headline()}"

    return apply


class RunControl:
    """The node host on the run loop: commands from the queue and SIGHUP reloads go to it, and
    it ticks its policies, alerts and hardware readings (`engine.host.node_host`)."""

    def __init__(
        self,
        config: Config,
        config_path: Path,
        bus: EventBus,
        node: RunningNode,
        signals: StopSignals,
        holder: SummaryHolder,
        replan: Callable[[Config], str] | None = None,
    ) -> None:
        self.reload = ConfigReloader(config, config_path, replan=replan)

        def gas_balance(address: str, wei: int) -> None:
            holder.read(functools.partial(Summary.set_gas_balance, address=address, wei=wei))

        self.host = NodeHost(
            bus,
            node,
            host_settings(config),
            reload=self.reload,
            stop=signals.stop,
            on_gas_balance=gas_balance,
        )
        self.reload.policy = self.host

    def tick(self, commands: CommandQueue, signals: StopSignals) -> None:
        if signals.take_reload():
            self.host.handle(ReloadConfig(source="signal"))
        for command in commands.drain():
            self.host.handle(command)
        self.host.tick(time.monotonic())


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
        if node.loop_death is not None:
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
