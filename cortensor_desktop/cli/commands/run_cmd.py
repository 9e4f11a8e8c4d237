"""`run`: the node in the foreground until Ctrl-C or SIGTERM.

On the `embedded` network it runs the chain, an oracle and k miners in this one process, so a
single machine sees the whole protocol. On any other network (a devnet on anvil, a testnet) one
process is one node, miner or oracle, signing with this home's wallet (created on first start
from the passphrase source). On a terminal the embedded network runs behind the dashboard;
otherwise, or with `--headless`, the run loop in `hosting/run_loop.py` logs the event stream and
serves the status API. This module parses the arguments, chooses the mode and builds the node.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.cli.exit_codes import ExitCode, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from chain.client import ChainClient
    from cortensor_desktop.config import Config
    from cortensor_desktop.hosting.dashboard_host import NetworkHost
    from cortensor_desktop.hosting.node_plan import NodePlanner
    from cortensor_desktop.hosting.run_loop import HeadlessRun
    from cortensor_desktop.tui.app import DashboardApp
    from cortensor_desktop.tui.backends.first_run import FirstRun
    from cortensor_desktop.tui.backends.models import ModelsBackend
    from cortensor_desktop.tui.backends.settings import SettingsBackend
    from cortensor_desktop.tui.backends.wallet import WalletBackend
    from cortensor_desktop.tui.screens.wizard import WizardResult
    from engine.host.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings
    from engine.host.loop_threads import LoopDeath
    from engine.host.plan import NodePlan
    from engine.host.running import RunningNode
    from engine.node.miner import MinerSettings
    from engine.state.events import EventBus

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
    from cortensor_desktop.tui.app import NodeInfo, create_app

    _quiet_stderr_logging()
    bus = EventBus(history=10_000)

    def feed() -> None:
        for event in replay(path, speed=args.speed):
            bus.publish(event, stamp=False)

    info = NodeInfo(network=f"replay of {path.name}")
    app = create_app(bus, None, info, handle_signals=True)
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
    from cortensor_desktop.hosting.reload import ConfigReloader, host_settings
    from cortensor_desktop.tui.app import NodeInfo, create_app
    from engine.state.events import EventBus
    from engine.state.recording import Recorder

    _quiet_stderr_logging()  # the dashboard owns the terminal; the log file keeps everything
    bus = EventBus(history=5000)
    recorder = Recorder(Path(args.record).expanduser()) if args.record else None
    if recorder is not None:
        recorder.attach(bus)
    settings = embedded_settings(ctx, args.miners)
    plan = settings.plan
    assert plan is not None  # embedded_settings always plans
    host = NetworkHost.embedded(
        ctx.database, ctx.models_dir, bus, settings, host=host_settings(ctx.config)
    )
    host.front = _router_front(ctx)
    info = NodeInfo(
        network=ctx.network.name,
        model=plan.model_id,
        tier=plan.tier.label,
        n_ctx=plan.n_ctx,
        n_threads=plan.n_threads,
        miners=args.miners,
        plan=plan.to_json(),
    )
    first_run = not ctx.config_path.exists()
    wizard = _first_run(ctx, info.model) if first_run else None
    elsewhere: list[str] = []  # the network the wizard chose, when it is not this one

    def accepted(result: WizardResult) -> None:
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
        models=_models_backend(ctx, _models_in_use({plan.model_id}, host)),
        wizard=wizard,
        on_accept=accepted,
        settings=_settings_backend(ctx),
        handle_signals=True,
        wallet=_wallet_backend(ctx),
    )

    def replan(fresh: Config) -> str:
        plan = _replan_embedded(ctx, fresh, settings.n_ctx, host.network)
        return f"re-planned: {plan.headline()}"

    host.reload = ConfigReloader(ctx.config, ctx.config_path, policy=host, replan=replan)
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


def _stop_when_done(app: DashboardApp, host: NetworkHost, args: argparse.Namespace) -> None:
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


def _settings_backend(ctx: AppContext) -> SettingsBackend:
    from cortensor_desktop.tui.backends.settings import SettingsBackend

    return SettingsBackend(ctx.config_path, ctx.paths.profiles_dir)


def _wallet_backend(ctx: AppContext) -> WalletBackend:
    from cortensor_desktop.cli.commands.wallet_cmd import balance_on_active_network
    from cortensor_desktop.tui.backends.wallet import WalletBackend

    return WalletBackend(
        ctx.paths.keystore_dir,
        ctx.config_path,
        balance=lambda address: balance_on_active_network(ctx, address),
    )


def _first_run(ctx: AppContext, running_model: str) -> FirstRun:
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


def _models_backend(ctx: AppContext, in_use: Callable[[], set[str]]) -> ModelsBackend:
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


def _models_in_use(chat: set[str], host: NetworkHost) -> Callable[[], set[str]]:
    """The embedded network's chat (its plan's) and embedding models: it loads them as the
    dashboard opens and keeps them mapped until it quits, so they are in use the whole time."""

    def in_use() -> set[str]:
        store = host.network.store
        return {*chat, store.catalogue.of_kind("embedding")[0].id}

    return in_use


def _quiet_stderr_logging() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            root.removeHandler(handler)


def _run_embedded(ctx: AppContext, args: argparse.Namespace) -> int:
    from cortensor_desktop.hosting.run_loop import serve
    from engine.host.embedded_network import EmbeddedNetwork

    settings = embedded_settings(ctx, args.miners)
    miner = settings.miner_settings()  # the plan's tier, memory and model
    built: list[EmbeddedNetwork] = []

    def build(bus: EventBus) -> RunningNode:
        network = EmbeddedNetwork(
            ctx.database,
            ctx.models_dir,
            bus,
            settings,
            progress=lambda message: log.info("%s", message),
        )
        built.append(network)
        return network

    def replan(fresh: Config) -> NodePlan:
        return _replan_embedded(ctx, fresh, settings.n_ctx, built[0])

    facts = {
        "rpc": {"in_use": "in-process chain (embedded)", "endpoints": 1},
        "threads": "1 llama.cpp thread per node: every node of the embedded network "
        "shares this machine",
    }
    banner = f"embedded network up: {args.miners} miners, 1 oracle"
    run = replace(
        _headless_run(ctx, args, miner, banner, facts), front=_router_front(ctx), replan=replan
    )
    return _exit_code(serve(run, build))


def _replan_embedded(
    ctx: AppContext, fresh: Config, n_ctx: int, network: EmbeddedNetwork
) -> NodePlan:
    """A changed [fit] on reload: this machine's tier and memory again, re-registered (the
    embedded network keeps its bundled model). The headless run and the dashboard share it."""
    from cortensor_desktop.hosting.node_plan import log_plan

    plan = _planner(ctx, fresh).embedded(n_ctx)
    log_plan(plan)
    return network.replan(plan)


def _router_front(ctx: AppContext) -> Any:
    """The OpenAI-compatible router in front of the embedded network ([router] port, 8787;
    docs/ROUTER.md); its metrics join the status API's /metrics."""
    from cortensor_desktop.hosting.router_host import RunRouter

    def start(node: Any, status: Any = None) -> Any:
        router = RunRouter(
            ctx.database, ctx.models_dir, ctx.config.router.port, ctx.config.router.redundancy
        )
        url = router.start(node)
        if url is None or router.server is None:
            return None
        if status is not None:  # headless: `status` shows the URL, /metrics the figures
            status.holder.info["router"] = url
            if status.api is not None:
                status.api.registry.register(router.server.front.metrics)
        else:  # the dashboard: its log panel shows where to point clients
            from engine.state.events import LogLine

            message = f"router: OpenAI base URL {url} (any API key)"
            node.bus.publish(LogLine(level="info", logger="router", message=message))
        return router.stop

    return start


def _run_node(ctx: AppContext, args: argparse.Namespace) -> int:
    from dataclasses import replace

    from chain.client import connect
    from cortensor_desktop.hosting.node_plan import log_plan
    from cortensor_desktop.hosting.node_wallet import node_account
    from cortensor_desktop.hosting.run_loop import serve
    from engine.host.standalone_node import NodeSettings, StandaloneNode

    profile = ctx.network
    devnet = profile.name == "local"
    key = node_account(ctx.paths.keystore_dir, args.passphrase_file, devnet)
    if profile.chain_id is None:
        raise UsageError(f"network profile '{profile.name}' has no chain id")
    client = connect(
        profile.chain_id,
        profile.rpc_urls,
        profile.contracts,
        key.account,
        deploy_block=profile.deploy_block,
        **ctx.chain_options(),
    )
    if devnet:
        _fund_on_devnet(client, key.account.address)

    threads, why = _threads(ctx)
    policy = ctx.config.policy
    if policy.nodes_on_host > 1 or policy.thread_cap:
        log.info("%s", why)  # the plan's threads respect this share
    planner = _planner(ctx)
    plan = planner.plan()  # a [fit] override that cannot fit: exit 7 before anything starts
    log_plan(plan)
    why = next((r for r in plan.reasons if r.startswith("threads ")), why)
    settings = NodeSettings(
        role=args.role,
        n_threads=threads,
        payout=ctx.config.wallet.payout or None,
        miner=miner_settings(ctx),
        plan=plan,
    )
    miner = settings.miner_settings()  # the plan's tier, memory and model
    built: list[StandaloneNode] = []

    def build(bus: EventBus) -> RunningNode:
        node = StandaloneNode(
            client,
            ctx.database,
            ctx.models_dir,
            bus,
            settings,
            progress=lambda message: log.info("%s", message),
            fallback=planner.fallback,
        )
        built.append(node)
        return node

    def replan(fresh: Config) -> NodePlan:
        """SIGHUP / reload_config with a changed [fit]: plan again, then swap and re-register."""
        plan = _planner(ctx, fresh).plan()
        log_plan(plan)
        return built[0].replan(plan)

    facts = {
        "rpc": rpc_info(profile.rpc_urls),
        "threads": why,
    }
    banner = f"{args.role} {client.address} up on network '{profile.name}'"
    run = _headless_run(ctx, args, miner, banner, facts)
    if args.role == "miner":
        run = replace(run, replan=replan)
    return _exit_code(serve(run, build))


def _exit_code(death: LoopDeath | None) -> int:
    """A node whose loop died exits 1, so the service manager restarts it (the journal resumes
    its work); one that stopped as asked exits 0."""
    return ExitCode.OK if death is None else ExitCode.UNEXPECTED


def rpc_info(urls: Sequence[str]) -> dict[str, Any]:
    """The summary's `rpc`: never the raw URL (a hosted RPC's path or query carries its API
    key, and the summary is readable by every local process), only scheme, host and port."""
    from chain.rpc import public_url

    return {"in_use": public_url(urls[0]), "endpoints": len(urls)}


def _headless_run(
    ctx: AppContext,
    args: argparse.Namespace,
    miner: MinerSettings,
    banner: str,
    facts: dict[str, Any],
) -> HeadlessRun:
    from cortensor_desktop.hosting.run_loop import HeadlessRun

    return HeadlessRun(
        config=ctx.config,
        config_path=ctx.config_path,
        paths=ctx.paths,
        network_name=ctx.network_name,
        registered_as=miner,
        banner=banner,
        facts=facts,
        duration_s=args.duration,
        sessions=args.sessions,
        record=Path(args.record).expanduser() if args.record else None,
    )


def _planner(ctx: AppContext, config: Config | None = None) -> NodePlanner:
    """The plan's inputs for this run: this machine (the cached probe), [fit], the benchmarks."""
    from cortensor_desktop.hosting.node_plan import NodePlanner
    from profiler.probe import probe

    hardware = probe(cache=ctx.database, models_dir=ctx.models_dir)
    return NodePlanner(config or ctx.config, ctx.database, ctx.models_dir, hardware)


def embedded_settings(ctx: AppContext, miners: int) -> EmbeddedNetworkSettings:
    """The embedded network's settings: the bundled model on every node, registering the tier
    and memory the plan computes for this machine (logged first, with the fit's reasons)."""
    from dataclasses import replace

    from cortensor_desktop.hosting.node_plan import log_plan
    from engine.host.embedded_network import EmbeddedNetworkSettings

    base = EmbeddedNetworkSettings(
        miners=miners, payout=ctx.config.wallet.payout or None, miner=miner_settings(ctx)
    )
    plan = _planner(ctx).embedded(base.n_ctx)
    log_plan(plan)
    return replace(base, plan=plan)


def miner_settings(ctx: AppContext) -> MinerSettings:
    """The miners' settings from the config: the low-gas alert threshold, the price floor, and
    this build's version, which the miners register on chain."""
    import cortensor_desktop
    from engine.node.miner import MinerSettings

    return MinerSettings(
        low_gas_wei=ctx.config.alerts.low_gas_wei,
        app_version=cortensor_desktop.__version__,
        price_floor_wei_per_token=ctx.config.wallet.price_floor_wei_per_token,
    )


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


def _fund_on_devnet(client: ChainClient, address: str) -> None:
    """A devnet node pays its own gas: top it up from anvil when it runs low."""
    from chain.devnet import fund

    if client.balance(address) < DEVNET_FUNDING_WEI // 10:
        fund(client.web3, address, DEVNET_FUNDING_WEI)
        log.info("funded %s on the devnet", address)
