"""The dashboard in front of the embedded network: the host, the screens' backends, the wizard.

It lives in the CLI layer, not in hosting/, because it wires the dashboard (tui/, above the
hosts) to the CLI's own helpers (wallet balances, stored benchmarks); the node it hosts is built
by hosting/assembly.py. `run` (cli/commands/run_cmd.py) parses the arguments and calls
`run_dashboard`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from cortensor_desktop.hosting.assembly import embedded_settings, replan_embedded, router_front

if TYPE_CHECKING:
    from collections.abc import Callable

    from cortensor_desktop.cli.context import AppContext
    from cortensor_desktop.config import Config
    from cortensor_desktop.hosting.dashboard_host import NetworkHost
    from cortensor_desktop.hosting.headless_runs import RunLimits
    from cortensor_desktop.tui.app import DashboardApp
    from cortensor_desktop.tui.backends.first_run import FirstRun
    from cortensor_desktop.tui.backends.models import ModelsBackend
    from cortensor_desktop.tui.backends.settings import SettingsBackend
    from cortensor_desktop.tui.backends.wallet import WalletBackend
    from cortensor_desktop.tui.screens.wizard import WizardResult


def run_dashboard(ctx: AppContext, miners: int, limits: RunLimits) -> list[str]:
    """Run the dashboard until q; the node stops with it. Returns the network the first-run
    wizard chose when it is not this one (empty otherwise)."""
    from cortensor_desktop.hosting.dashboard_host import NetworkHost
    from cortensor_desktop.hosting.reload import ConfigReloader, host_settings
    from cortensor_desktop.tui.app import NodeInfo, create_app
    from engine.state.events import EventBus
    from engine.state.recording import Recorder

    quiet_stderr_logging()  # the dashboard owns the terminal; the log file keeps everything
    bus = EventBus(history=5000)
    recorder = Recorder(limits.record) if limits.record else None
    if recorder is not None:
        recorder.attach(bus)
    settings = embedded_settings(ctx, miners)
    plan = settings.plan
    assert plan is not None  # embedded_settings always plans
    host = NetworkHost.embedded(
        ctx.database, ctx.models_dir, bus, settings, host=host_settings(ctx.config)
    )
    host.front = router_front(ctx)
    info = NodeInfo(
        network=ctx.network.name,
        model=plan.model_id,
        tier=plan.tier.label,
        n_ctx=plan.n_ctx,
        n_threads=plan.n_threads,
        miners=miners,
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
        plan = replan_embedded(ctx, fresh, settings.n_ctx, host.network)
        return f"re-planned: {plan.headline()}"

    host.reload = ConfigReloader(ctx.config, ctx.config_path, policy=host, replan=replan)
    # Textual swaps sys.stderr for an object without a real fd; multiprocessing's resource
    # tracker passes stderr's fd to its child, so start it first ("bad value(s) in fds_to_keep").
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    if wizard is None:
        host.start()
    if limits.duration_s or limits.sessions:
        threading.Thread(target=_stop_when_done, args=(app, host, limits), daemon=True).start()
    try:
        app.run()
    finally:
        host.stop()
        if recorder is not None:
            recorder.close()
    return elsewhere


def _stop_when_done(app: DashboardApp, host: NetworkHost, limits: RunLimits) -> None:
    """--duration and --sessions end a dashboard run as they end a headless one (exit 0)."""
    started = time.monotonic()
    while True:
        time.sleep(0.5)
        oracle = host.network.oracle
        timed_out = limits.duration_s and time.monotonic() - started >= limits.duration_s
        ended = limits.sessions and oracle is not None and oracle.sessions_ended >= limits.sessions
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


def quiet_stderr_logging() -> None:
    """Drop the stderr log handlers while a dashboard owns the terminal (the file keeps all)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            root.removeHandler(handler)
