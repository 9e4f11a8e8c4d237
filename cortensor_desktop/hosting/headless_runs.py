"""The headless node runs `run` starts: the embedded network, or one node on a real chain.

Each builds its node from hosting/assembly.py and hands it to the run loop (hosting/run_loop.py),
which logs the events and serves the status API. `run` (cli/commands/run_cmd.py) has already
parsed and checked the arguments; what they limit arrives as `RunLimits`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortensor_desktop.hosting.assembly import (
    HostContext,
    embedded_settings,
    fund_on_devnet,
    miner_settings,
    planner,
    replan_embedded,
    router_front,
    rpc_info,
    threads,
)

if TYPE_CHECKING:
    from cortensor_desktop.config import Config
    from cortensor_desktop.hosting.node_wallet import NodeKey
    from cortensor_desktop.hosting.run_loop import HeadlessRun
    from engine.host.embedded_network import EmbeddedNetwork
    from engine.host.loop_threads import LoopDeath
    from engine.host.plan import NodePlan
    from engine.host.running import RunningNode
    from engine.host.standalone_node import StandaloneNode
    from engine.node.miner import MinerSettings
    from engine.state.events import EventBus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunLimits:
    """When a run stops on its own (--duration, --sessions) and where it records (--record)."""

    duration_s: float | None = None
    sessions: int | None = None
    record: Path | None = None


def serve_embedded(ctx: HostContext, miners: int, limits: RunLimits) -> LoopDeath | None:
    """The embedded network (chain, oracle, `miners` miners) in this process, headless."""
    from cortensor_desktop.hosting.run_loop import serve
    from engine.host.embedded_network import EmbeddedNetwork

    settings = embedded_settings(ctx, miners)
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
        return replan_embedded(ctx, fresh, settings.n_ctx, built[0])

    facts = {
        "rpc": {"in_use": "in-process chain (embedded)", "endpoints": 1},
        "threads": "1 llama.cpp thread per node: every node of the embedded network "
        "shares this machine",
    }
    banner = f"embedded network up: {miners} miners, 1 oracle"
    run = replace(
        headless_run(ctx, limits, miner, banner, facts), front=router_front(ctx), replan=replan
    )
    return serve(run, build)


def serve_node(ctx: HostContext, role: str, key: NodeKey, limits: RunLimits) -> LoopDeath | None:
    """One node (`role` miner or oracle) on this home's network, signing with `key`."""
    from chain.client import connect
    from cortensor_desktop.hosting.node_plan import log_plan
    from cortensor_desktop.hosting.run_loop import serve
    from engine.host.standalone_node import NodeSettings, StandaloneNode

    profile = ctx.network
    assert profile.chain_id is not None  # run_cmd refuses a profile without one
    client = connect(
        profile.chain_id,
        profile.rpc_urls,
        profile.contracts,
        key.account,
        deploy_block=profile.deploy_block,
        **ctx.chain_options(),
    )
    if profile.name == "local":
        fund_on_devnet(client, key.account.address)

    n_threads, why = threads(ctx)
    policy = ctx.config.policy
    if policy.nodes_on_host > 1 or policy.thread_cap:
        log.info("%s", why)  # the plan's threads respect this share
    node_planner = planner(ctx)
    plan = node_planner.plan()  # a [fit] override that cannot fit: exit 7 before anything starts
    log_plan(plan)
    why = next((r for r in plan.reasons if r.startswith("threads ")), why)
    settings = NodeSettings(
        role=role,
        n_threads=n_threads,
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
            fallback=node_planner.fallback,
        )
        built.append(node)
        return node

    def replan(fresh: Config) -> NodePlan:
        """SIGHUP / reload_config with a changed [fit]: plan again, then swap and re-register."""
        plan = planner(ctx, fresh).plan()
        log_plan(plan)
        return built[0].replan(plan)

    facts = {
        "rpc": rpc_info(profile.rpc_urls),
        "threads": why,
    }
    banner = f"{role} {client.address} up on network '{profile.name}'"
    run = headless_run(ctx, limits, miner, banner, facts)
    if role == "miner":
        run = replace(run, replan=replan)
    return serve(run, build)


def headless_run(
    ctx: HostContext,
    limits: RunLimits,
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
        duration_s=limits.duration_s,
        sessions=limits.sessions,
        record=limits.record,
    )
