"""`run`: the node in the foreground until Ctrl-C or SIGTERM.

On the `embedded` network it runs the chain, an oracle and k miners in this one process, so a
single machine sees the whole protocol. On any other network (a devnet on anvil, a testnet) one
process is one node, miner or oracle, signing with this home's wallet (created on first start
from the passphrase source). Until the dashboard lands, `run` logs the event stream (the headless
reader) whether or not `--headless` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.cli.exit_codes import ExitCode, UsageError

log = logging.getLogger(__name__)
DEVNET_FUNDING_WEI = 100 * 10**18


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "run",
        parents=[common],
        help="run the node in the foreground",
        description="Run the node until Ctrl-C or SIGTERM. On the embedded network (the "
        "default) this starts an in-process chain with the contracts, one oracle and --miners "
        "miners, each with its own llama.cpp worker, and logs every step of every network "
        "task: request, create, prepare, start, precommit, commit, end, with validation scores "
        "and points. On any other network this process is one node (--role miner or oracle) "
        "signing with this home's wallet.",
    )
    parser.add_argument(
        "--headless",
        action="store_true",
        help="no dashboard: log the event stream (the default when not on a terminal)",
    )
    parser.add_argument(
        "--role",
        choices=["miner", "oracle", "both"],
        default="both",
        help="which loops this node runs: the embedded network runs both; on any other "
        "network one process is one node, miner or oracle",
    )
    parser.add_argument(
        "--passphrase-file",
        metavar="PATH",
        help="read the wallet passphrase from PATH (else CORTENSOR_PASSPHRASE_FILE, "
        "CORTENSOR_PASSPHRASE, a secure keyring, or a prompt on a terminal)",
    )
    parser.add_argument(
        "--miners",
        type=int,
        default=3,
        metavar="N",
        help="miners on the embedded network (default 3)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop cleanly after this many seconds (default: run until stopped)",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        metavar="N",
        help="stop cleanly after the oracle has ended N network tasks",
    )
    parser.add_argument(
        "--record", metavar="FILE", help="also write every event as JSON lines to FILE (replayable)"
    )
    parser.add_argument(
        "--replay",
        metavar="FILE",
        help="show a recording (from --record) instead of running a node: in the dashboard on "
        "a terminal, as log lines otherwise",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        metavar="X",
        help="with --replay: 1 is the recorded pace, 10 ten times faster (default: at once)",
    )
    parser.set_defaults(handler=_run)


def _run(ctx: AppContext, args: argparse.Namespace) -> int:
    if getattr(args, "replay", None):
        return _run_replay(args)
    if args.miners < 1 or args.miners > 8:
        raise UsageError("--miners must be between 1 and 8 on the embedded network")
    _check_cpu_runs_this_build(ctx)
    if ctx.network.embedded:
        if not args.headless and wants_dashboard():
            return _run_dashboard(ctx, args)
        return _run_embedded(ctx, args)
    if args.role == "both":
        raise UsageError(
            f"on network '{ctx.network.name}' one process is one node: "
            "choose --role miner or --role oracle"
        )
    return _run_node(ctx, args)


def _run_replay(args: argparse.Namespace) -> int:
    """A recording played back through the same readers a live run has (Dolphie-style)."""
    from engine.state.events import EventBus
    from engine.state.recording import replay

    path = Path(args.replay).expanduser()
    if not path.is_file():
        raise UsageError(f"--replay: no such recording: {path}")
    if args.speed is not None and args.speed <= 0:
        raise UsageError("--speed must be positive (1 is the recorded pace)")
    if args.headless or not wants_dashboard():
        from cortensor_desktop.hosting.headless import log_event

        for event in replay(path, speed=args.speed):
            log_event(event)
        return ExitCode.OK
    from cortensor_desktop.tui.app import NodeInfo, create_app, psutil_sampler

    _quiet_stderr_logging()
    bus = EventBus(history=10_000)

    def feed() -> None:
        for event in replay(path, speed=args.speed):
            bus.publish(event, stamp=False)

    info = NodeInfo(network=f"replay of {path.name}")
    app = create_app(bus, None, info, sampler=psutil_sampler(), handle_signals=True)
    app.clock = lambda: app.summary.last_ts or time.time()  # uptimes as of the recording
    threading.Thread(target=feed, name="replay", daemon=True).start()
    app.run()
    return ExitCode.OK


def wants_dashboard() -> bool:
    """A person is watching: stdin and stdout are both a terminal."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _run_dashboard(ctx: AppContext, args: argparse.Namespace) -> int:
    """The dashboard in front of the embedded network; q quits at once and the node stops."""
    from cortensor_desktop.hosting.dashboard_host import NetworkHost
    from cortensor_desktop.tui.app import NodeInfo, create_app, psutil_sampler
    from engine.host.embedded_network import EmbeddedNetworkSettings
    from engine.state.events import EventBus
    from engine.state.recording import Recorder

    _quiet_stderr_logging()  # the dashboard owns the terminal; the log file keeps everything
    bus = EventBus(history=5000)
    recorder = Recorder(Path(args.record).expanduser()) if args.record else None
    if recorder is not None:
        recorder.attach(bus)
    settings = EmbeddedNetworkSettings(
        miners=args.miners, payout=ctx.config.wallet.payout or None, miner=miner_settings(ctx)
    )
    host = NetworkHost.embedded(ctx.database, ctx.models_dir, bus, settings)
    info = NodeInfo(
        network=ctx.network.name,
        model=_chat_model_id(ctx),
        n_ctx=settings.n_ctx,
        n_threads=1,
        miners=args.miners,
    )
    first_run = not ctx.config_path.exists()
    wizard = _first_run(ctx, info.model) if first_run else None
    elsewhere: list[str] = []  # the network the wizard chose, when it is not this one

    def accepted(result: Any) -> None:
        if result.embedded:
            host.start()
            app.notify(f"config written to {result.config_path}; starting the node")
            return
        elsewhere.append(result.choices.network)
        app.exit(0)

    app = create_app(
        bus,
        host.commands,
        info,
        sampler=psutil_sampler(),
        models=_models_backend(ctx, _models_in_use(ctx, host)),
        wizard=wizard,
        on_accept=accepted,
        settings=_settings_backend(ctx),
        handle_signals=True,
        wallet=_wallet_backend(ctx),
    )
    host.reload = _embedded_reload(ctx)
    # Textual swaps sys.stderr for an object without a real fd; multiprocessing's resource
    # tracker passes stderr's fd to its child, so start it first ("bad value(s) in fds_to_keep").
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    if wizard is None:
        host.start()
    if args.duration or args.sessions:
        threading.Thread(target=_stop_when_done, args=(app, host, args), daemon=True).start()
    try:
        app.run()
    finally:
        host.stop()
        if recorder is not None:
            recorder.close()
    # Interpreter teardown with the engine's daemon threads and spawn workers around takes about
    # a second; the node's state is in SQLite and the journal, so main() may leave at once.
    args.fast_exit = True
    if elsewhere:
        ctx.echo(
            f"config written: network '{elsewhere[0]}'. On that network one process is one "
            "node: start it with `cortensor-desktop run --role miner` (or --role oracle)."
        )
    return ExitCode.OK


def _stop_when_done(app: Any, host: Any, args: argparse.Namespace) -> None:
    """--duration and --sessions end a dashboard run as they end a headless one (exit 0)."""
    started = time.monotonic()
    while True:
        time.sleep(0.5)
        oracle = host.network.oracle
        timed_out = args.duration and time.monotonic() - started >= args.duration
        ended = args.sessions and oracle is not None and oracle.sessions_ended >= args.sessions
        if timed_out or ended:
            app.call_from_thread(app.exit, 0)
            return


def _settings_backend(ctx: AppContext) -> Any:
    from cortensor_desktop.tui.backends.settings import SettingsBackend

    return SettingsBackend(ctx.config_path, ctx.paths.profiles_dir)


def _wallet_backend(ctx: AppContext) -> Any:
    from cortensor_desktop.cli.commands.wallet_cmd import balance_on_active_network
    from cortensor_desktop.tui.backends.wallet import WalletBackend

    return WalletBackend(
        ctx.paths.keystore_dir,
        ctx.config_path,
        balance=lambda address: balance_on_active_network(ctx, address),
    )


def _embedded_reload(ctx: AppContext) -> Any:
    """The dashboard host's ReloadConfig: the embedded network applies only the log level live
    (it has no polite-mining monitor); everything else is named as needing a restart."""
    import dataclasses

    from cortensor_desktop.hosting.reload import config_changes, reread

    running = [ctx.config]

    def reload() -> tuple[bool, str]:
        fresh, why_not = reread(ctx.config_path)
        if fresh is None:
            return False, why_not
        changes = config_changes(running[0], fresh, frozenset(), frozenset({"logging.level"}))
        if "logging.level" in changes.live:
            logging.getLogger().setLevel(fresh.logging.level.upper())
            level = dataclasses.replace(running[0].logging, level=fresh.logging.level)
            running[0] = dataclasses.replace(running[0], logging=level)
        return True, changes.describe()

    return reload


def _first_run(ctx: AppContext, running_model: str) -> Any:
    """First run: this machine probed, and the wizard's services on this home's folders."""
    from cortensor_desktop.cli.commands.profile_cmd import stored_benchmarks
    from cortensor_desktop.tui.backends.first_run import FirstRun
    from profiler.catalogue import load_catalogue
    from profiler.probe import probe

    hardware = probe(cache=ctx.database, models_dir=ctx.models_dir)
    return FirstRun(
        hardware,
        load_catalogue(),
        ctx.paths,
        ctx.config_path,
        ctx.models_dir,
        ctx.config.fit.to_fit_settings(),
        stored_benchmarks(ctx),
        running_model=running_model,
    )


def _models_backend(ctx: AppContext, in_use: Any) -> Any:
    """The Models screen: this machine (probed when the screen first opens, no cache) against the
    catalogue, and the same store `models pull` / `models rm` use."""
    from cortensor_desktop.tui.backends.models import store_backend
    from engine.models.store import ModelStore
    from profiler.probe import probe

    store = ModelStore(ctx.models_dir)
    return store_backend(
        store,
        lambda: probe(None, ctx.models_dir, measure_bandwidth=False),
        in_use,
        ctx.config.fit.to_fit_settings(),
    )


def _models_in_use(ctx: AppContext, host: Any) -> Any:
    """The embedded network's chat and embedding models: it loads them as the dashboard opens
    and keeps them mapped until it quits, so they are in use the whole time."""

    def in_use() -> set[str]:
        store = host.network.store
        return {_chat_model_id(ctx), store.catalogue.of_kind("embedding")[0].id}

    return in_use


def _chat_model_id(ctx: AppContext) -> str:
    from engine.models.store import ModelStore

    try:
        return ModelStore(ctx.models_dir).default_chat_model().id
    except Exception:  # the network start reports the real problem on the dashboard
        return "-"


def _quiet_stderr_logging() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            root.removeHandler(handler)


def _run_embedded(ctx: AppContext, args: argparse.Namespace) -> int:
    from engine.host.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings

    def build(bus: Any) -> Any:
        return EmbeddedNetwork(
            ctx.database,
            ctx.models_dir,
            bus,
            EmbeddedNetworkSettings(
                miners=args.miners,
                payout=ctx.config.wallet.payout or None,
                miner=miner_settings(ctx),
            ),
            progress=lambda message: log.info("%s", message),
        )

    extra = {
        "rpc": {"in_use": "in-process chain (embedded)", "endpoints": 1},
        "threads": "1 llama.cpp thread per node: every node of the embedded network "
        "shares this machine",
    }
    return _serve(ctx, args, build, extra, f"embedded network up: {args.miners} miners, 1 oracle")


def _run_node(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.client import connect
    from cortensor_desktop.hosting.node_wallet import node_account
    from engine.host.standalone_node import NodeSettings, StandaloneNode

    profile = ctx.network
    devnet = profile.name == "local"
    key = node_account(ctx.paths.keystore_dir, args.passphrase_file, devnet)
    if profile.chain_id is None:
        raise UsageError(f"network profile '{profile.name}' has no chain id")
    client = connect(
        profile.chain_id, profile.rpc_urls, profile.contracts, key.account, **ctx.chain_options()
    )
    if devnet:
        _fund_on_devnet(client)

    threads, why = _threads(ctx)
    log.info("%s", why)

    def build(bus: Any) -> Any:
        return StandaloneNode(
            client,
            ctx.database,
            ctx.models_dir,
            bus,
            NodeSettings(
                role=args.role,
                n_threads=threads,
                payout=ctx.config.wallet.payout or None,
                miner=miner_settings(ctx),
            ),
            progress=lambda message: log.info("%s", message),
        )

    extra = {
        "rpc": {"in_use": profile.rpc_urls[0], "endpoints": len(profile.rpc_urls)},
        "threads": why,
    }
    banner = f"{args.role} {client.address} up on network '{profile.name}'"
    return _serve(ctx, args, build, extra, banner)


def miner_settings(ctx: AppContext) -> Any:
    """The miners' settings from the config: the low-gas alert threshold."""
    from engine.node.miner import MinerSettings

    return MinerSettings(low_gas_wei=ctx.config.alerts.low_gas_wei)


def _threads(ctx: AppContext) -> tuple[int, str]:
    """[policy] nodes_on_host and thread_cap decide this node's llama.cpp threads."""
    import psutil

    from engine.host.policies import thread_decision

    policy = ctx.config.policy
    physical = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return thread_decision(physical, policy.nodes_on_host, policy.thread_cap or None)


def _check_cpu_runs_this_build(ctx: AppContext) -> None:
    """Say "this CPU lacks AVX2" (exit 7) before a worker dies of an illegal instruction."""
    from profiler.errors import DoesNotFitError
    from profiler.hardware import missing_build_simd
    from profiler.probe import probe

    missing = missing_build_simd(probe(cache=ctx.database, models_dir=ctx.models_dir))
    if missing:
        raise DoesNotFitError(
            f"this CPU lacks {', '.join(m.upper() for m in missing)}, which this llama.cpp build "
            "needs: install a build for older CPUs (docs/INSTALL.md, 'CPU baseline')"
        )


def _fund_on_devnet(client: Any) -> None:
    """A devnet node pays its own gas: top it up from anvil when it runs low."""
    from chain.devnet import fund

    if client.balance(client.address) < DEVNET_FUNDING_WEI // 10:
        fund(client.web3, client.address, DEVNET_FUNDING_WEI)
        log.info("funded %s on the devnet", client.address)


def _serve(
    ctx: AppContext,
    args: argparse.Namespace,
    build: Callable[[Any], Any],
    extra: dict[str, Any],
    banner: str,
) -> int:
    """Start what `build` makes on a fresh bus; log its events, serve the status API, apply
    commands and policies; stop cleanly on a signal."""
    from cortensor_desktop.hosting.headless import StopSignals, log_event
    from engine.state.commands import CommandQueue
    from engine.state.events import EventBus
    from engine.state.recording import Recorder

    signals = StopSignals()
    signals.install()
    bus = EventBus()
    reader = bus.subscribe(name="headless-log", maxsize=10_000)
    recorder = Recorder(Path(args.record).expanduser()) if args.record else None
    if recorder is not None:
        recorder.attach(bus)
    node = build(bus)
    commands = CommandQueue()
    status = _Status(ctx, bus, commands, node, extra)
    pump = threading.Thread(target=_pump, args=(reader, log_event), daemon=True)
    pump.start()
    started = time.monotonic()
    try:
        status.start()
        node.start()
        status.holder.info.update(_model_and_tier(node))
        control = _Control(ctx, bus, node, signals, status.holder)
        log.info("%s; Ctrl-C stops", banner)
        _wait(node, signals, args, started, commands, control)
    finally:
        log.info("stopping (%s)", signals.received or "done")
        node.stop()
        reader.close()
        pump.join(timeout=5)
        status.stop()
        if recorder is not None:
            recorder.close()
    _summary(node, time.monotonic() - started)
    signals.finished.set()
    return ExitCode.OK


class _Status:
    """The summary fold and the status API (when `[api] port` is not 0), up before the network."""

    def __init__(
        self, ctx: AppContext, bus: Any, commands: Any, network: Any, extra: dict[str, Any]
    ) -> None:
        from cortensor_desktop.service.status_api import SummaryHolder
        from engine.state.summary import Summary

        self.ctx = ctx
        self.bus = bus
        self.commands = commands
        info = {
            "network": ctx.network_name,
            **extra,  # rpc in use, threads and why
            "home": str(ctx.paths.home) if ctx.paths.home else None,
            "pid": os.getpid(),
        }
        self.holder = SummaryHolder(Summary(started_at=time.time()), info)
        self.holder.workers = lambda: _workers(network)
        self.reader = bus.subscribe(name="summary", maxsize=10_000)
        self.pump = threading.Thread(
            target=_pump, args=(self.reader, self.holder.apply), daemon=True
        )
        self.api: Any = None

    def start(self) -> None:
        from cortensor_desktop.service.status_api import StatusApi

        self.pump.start()
        port = self.ctx.config.api.port
        if port == 0:
            log.info("status API off ([api] port = 0)")
            return
        self.ctx.paths.ensure()
        self.api = StatusApi(self.holder, self.bus, self.commands, self.ctx.paths.data_dir, port)
        self.api.start()

    def stop(self) -> None:
        self.reader.close()
        self.pump.join(timeout=5)
        if self.api is not None:
            self.api.stop()


def _model_and_tier(network: Any) -> dict[str, Any]:
    """What the miners registered with (the summary's model and tier)."""
    settings = network.settings.miner
    from chain.wrappers import Tier

    tier = Tier.label_of(settings.tier) or str(settings.tier)
    return {"model": settings.model_name, "tier": tier}


def _workers(network: Any) -> list[dict[str, Any]]:
    # Read from server threads while workers restart or the network stops: a worker may drop
    # its process between two attribute reads, so a torn read gives no list rather than an error.
    try:
        return [
            {"name": name, "pid": w.pid, "deaths": len(w.deaths)} for name, w in network.workers
        ]
    except (ValueError, AttributeError):
        return []


class _Control:
    """Commands from the queue, SIGHUP reloads and the polite-mining policies, on the run loop."""

    GAS_EVERY_S = 30.0

    def __init__(self, ctx: AppContext, bus: Any, network: Any, signals: Any, holder: Any) -> None:
        from engine.host.node_control import (
            NodeController,
            PolicyMonitor,
            WorkerWatch,
            psutil_sampler,
        )
        from engine.node.earnings import GasAlarm

        self.ctx = ctx
        self.bus = bus
        self.holder = holder
        # Miners read and publish their own gas balance (EarningsUpdated, engine/node/earnings.py);
        # the oracles' is read here, with the same low-gas alarm.
        self.accounts = [(node.address, node.client) for node in network.oracles]
        low_gas_wei = ctx.config.alerts.low_gas_wei
        self.alarms = {address: GasAlarm(low_gas_wei) for address, _ in self.accounts}
        self._gas_at = 0.0
        self.network = network
        owners = dict(network.worker_owners)
        self.workers = WorkerWatch(bus, owners)
        self.config = ctx.config
        self.controller = NodeController(
            bus, network.miners, reload=self.reload, stop=signals.stop, withdraw=self.withdraw
        )
        policy = self.config.policy
        self.monitor = PolicyMonitor(
            self.controller,
            policy.to_policy_settings(),
            psutil_sampler(gpu_temp=self._gpu_temp),
            interval_s=policy.sample_interval_s,
        )

    def _gpu_temp(self) -> float | None:
        """NVML is asked only when a GPU temperature limit is set."""
        from engine.host.node_control import hottest_nvidia_gpu

        if self.monitor.settings.gpu_pause_above_c is None:
            return None
        return hottest_nvidia_gpu()

    def withdraw(self, command: Any) -> tuple[bool, str]:
        from engine.node.earnings import withdraw_from

        return withdraw_from(self.network.miners, command.amount_wei, command.node)

    def reload(self) -> tuple[bool, str]:
        from cortensor_desktop.hosting.reload import config_changes, reread

        fresh, why_not = reread(self.ctx.config_path)
        if fresh is None:
            return False, why_not
        changes = config_changes(self.config, fresh)
        if "logging.level" in changes.live:
            logging.getLogger().setLevel(fresh.logging.level.upper())
        if any(key.startswith("policy.") for key in changes.live):
            self.monitor.interval_s = fresh.policy.sample_interval_s
            self.monitor.update(fresh.policy.to_policy_settings())
        self.config = fresh
        return True, changes.describe()

    def tick(self, commands: Any, signals: Any) -> None:
        from engine.state.commands import ReloadConfig

        if signals.take_reload():
            self.controller.handle(ReloadConfig(source="signal"))
        for command in commands.drain():
            self.controller.handle(command)
        self.monitor.tick(time.monotonic())
        with contextlib.suppress(ValueError):  # the list changes while the network stops
            self.workers.check(self.network.workers)
        if time.monotonic() >= self._gas_at:
            self._gas_at = time.monotonic() + self.GAS_EVERY_S
            self.sample_gas()

    def sample_gas(self) -> None:
        from dataclasses import replace

        from chain.errors import ChainError
        from engine.protocol import NodeRole

        for address, client in self.accounts:
            try:
                wei = int(client.web3.eth.get_balance(address))
            except (ChainError, OSError, ValueError) as exc:
                log.debug("gas balance of %s not read: %s", address, exc)
                continue
            self.holder.read(lambda summary, a=address, w=wei: summary.set_gas_balance(a, w))
            alert = self.alarms[address].check(wei, address)
            if alert is not None:
                self.bus.publish(replace(alert, node=address, role=NodeRole.ORACLE))


def _wait(
    node: Any,
    signals: Any,
    args: argparse.Namespace,
    started: float,
    commands: Any,
    control: _Control,
) -> None:
    deadline = started + args.duration if args.duration else None
    while not signals.stop.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            return
        ended = sum(o.sessions_ended for o in node.oracles)
        if args.sessions and ended >= args.sessions:
            return
        control.tick(commands, signals)
        signals.stop.wait(0.2)


def _pump(reader: Any, sink: Any) -> None:
    for event in reader:
        sink(event)


def _summary(node: Any, elapsed: float) -> None:
    ended = sum(o.sessions_ended for o in node.oracles)
    done = ", ".join(f"{m.address[:10]}…: {m.tasks_done}" for m in node.miners)
    log.info(
        "ran %.0f s: %d network tasks ended; tasks answered per miner: %s",
        elapsed,
        ended,
        done or "-",
    )
