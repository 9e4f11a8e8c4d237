"""The node's parts for one run: its plan, settings, threads and the router in front of it.

`run` (cli/commands/run_cmd.py) parses the arguments; the headless runs (hosting/headless_runs.py)
and the dashboard (cli/dashboard_run.py) build their node from these. Everything here reads this
home through `HostContext`, which the CLI's AppContext satisfies, so the hosts never import the CLI.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from chain.client import ChainClient
    from cortensor_desktop.config import Config
    from cortensor_desktop.hosting.node_plan import NodePlanner
    from cortensor_desktop.networks import NetworkProfile
    from cortensor_desktop.paths import AppPaths
    from engine.host.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings
    from engine.host.plan import NodePlan
    from engine.node.miner import MinerSettings
    from engine.state.database import Database

log = logging.getLogger(__name__)
DEVNET_FUNDING_WEI = 100 * 10**18


class HostContext(Protocol):
    """What building a node reads of this home (the CLI's AppContext has all of it)."""

    @property
    def paths(self) -> AppPaths: ...
    @property
    def config_path(self) -> Path: ...
    @property
    def config(self) -> Config: ...
    @property
    def network_name(self) -> str: ...
    @property
    def network(self) -> NetworkProfile: ...
    @property
    def models_dir(self) -> Path: ...
    @property
    def database(self) -> Database: ...
    def chain_options(self) -> dict[str, Any]: ...


def replan_embedded(
    ctx: HostContext, fresh: Config, n_ctx: int, network: EmbeddedNetwork
) -> NodePlan:
    """A changed [fit] on reload: this machine's tier and memory again, re-registered (the
    embedded network keeps its bundled model). The headless run and the dashboard share it."""
    from cortensor_desktop.hosting.node_plan import log_plan

    plan = planner(ctx, fresh).embedded(n_ctx)
    log_plan(plan)
    return network.replan(plan)


def router_front(ctx: HostContext) -> Any:
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


def rpc_info(urls: Sequence[str]) -> dict[str, Any]:
    """The summary's `rpc`: never the raw URL (a hosted RPC's path or query carries its API
    key, and the summary is readable by every local process), only scheme, host and port."""
    from chain.rpc import public_url

    return {"in_use": public_url(urls[0]), "endpoints": len(urls)}


def planner(ctx: HostContext, config: Config | None = None) -> NodePlanner:
    """The plan's inputs for this run: this machine (the cached probe), [fit], the benchmarks."""
    from cortensor_desktop.hosting.node_plan import NodePlanner
    from profiler.probe import probe

    hardware = probe(cache=ctx.database, models_dir=ctx.models_dir)
    return NodePlanner(config or ctx.config, ctx.database, ctx.models_dir, hardware)


def embedded_settings(ctx: HostContext, miners: int) -> EmbeddedNetworkSettings:
    """The embedded network's settings: the bundled model on every node, registering the tier
    and memory the plan computes for this machine (logged first, with the fit's reasons)."""
    from dataclasses import replace

    from cortensor_desktop.hosting.node_plan import log_plan
    from engine.host.embedded_network import EmbeddedNetworkSettings

    base = EmbeddedNetworkSettings(
        miners=miners, payout=ctx.config.wallet.payout or None, miner=miner_settings(ctx)
    )
    plan = planner(ctx).embedded(base.n_ctx)
    log_plan(plan)
    return replace(base, plan=plan)


def miner_settings(ctx: HostContext) -> MinerSettings:
    """The miners' settings from the config: the low-gas alert threshold, the price floor, and
    this build's version, which the miners register on chain."""
    import cortensor_desktop
    from engine.node.miner import MinerSettings

    return MinerSettings(
        low_gas_wei=ctx.config.alerts.low_gas_wei,
        app_version=cortensor_desktop.__version__,
        price_floor_wei_per_token=ctx.config.wallet.price_floor_wei_per_token,
    )


def threads(ctx: HostContext) -> tuple[int, str]:
    """[policy] nodes_on_host and thread_cap decide this node's llama.cpp threads."""
    import psutil

    from engine.host.policies import thread_decision

    policy = ctx.config.policy
    physical = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return thread_decision(physical, policy.nodes_on_host, policy.thread_cap or None)


def check_cpu_runs_this_build(ctx: HostContext) -> None:
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


def fund_on_devnet(client: ChainClient, address: str) -> None:
    """A devnet node pays its own gas: top it up from anvil when it runs low."""
    from chain.devnet import fund

    if client.balance(address) < DEVNET_FUNDING_WEI // 10:
        fund(client.web3, address, DEVNET_FUNDING_WEI)
        log.info("funded %s on the devnet", address)
