"""A changed `[fit]` on reload re-plans: the miner finishes its open task, swaps the model,
re-registers its tier and memory, and says how long the swap took. The GPU machine of the new
plan is a recorded RTX 4090 (this machine has none; its CPU build ignores the GPU layers)."""

from __future__ import annotations

import time
from pathlib import Path

from chain.devnet import start_embedded
from chain.wrappers import Tier
from cortensor_desktop.config import Config
from cortensor_desktop.hosting.reload import ConfigReloader
from engine.host.plan import PlanInputs, make_plan
from engine.host.standalone_node import NodeSettings, StandaloneNode
from engine.state.database import Database
from engine.state.events import EventBus, LogLine
from profiler.catalogue import load_catalogue
from profiler.errors import DoesNotFitError
from profiler.fit import FitSettings
from profiler.hardware import load_hardware_file

BUNDLED = "smollm2-135m-instruct"
RECORDED = Path(__file__).resolve().parents[1] / "profiler" / "recorded"


def _plan(machine: str, ctx: int):  # type: ignore[no-untyped-def]
    hardware = load_hardware_file(RECORDED / f"{machine}_recorded.json")
    settings = FitSettings(model=BUNDLED, n_ctx=ctx, n_threads=1)
    return make_plan(PlanInputs(hardware, load_catalogue(), settings))


def test_replan_swaps_the_model_between_tasks_and_re_registers_tier_and_memory(
    tmp_path: Path, models_dir: Path
) -> None:
    chain = start_embedded(oracles=1)
    client = chain.client(chain.accounts[0])
    bus = EventBus()
    events = bus.subscribe()
    before, after = _plan("vps_4gb_2core", 2048), _plan("workstation_64gb_rtx4090", 1024)
    assert (before.tier, after.tier) == (Tier.CPU_LOW, Tier.GPU_QUANTIZED)
    node = StandaloneNode(
        client,
        Database(tmp_path / "node.sqlite3"),
        models_dir,
        bus,
        NodeSettings(role="miner", plan=before),
    )
    node.start()
    try:
        old_worker = node.workers[0][1]
        info = client.registry.node_info(client.address)  # type: ignore[arg-type]
        assert (info.tier, info.memory_mb) == (before.tier, before.memory_mb)
        assert node.replan(after) == after
        deadline = time.monotonic() + 120
        swapped = None
        while swapped is None:
            assert time.monotonic() < deadline, "the miner did not take the new plan"
            event = events.get(timeout=1.0)
            if isinstance(event, LogLine) and event.message.startswith("model swapped"):
                swapped = event
        assert f"model swapped to {BUNDLED} in " in swapped.message
        info = client.registry.node_info(client.address)  # type: ignore[arg-type]
        assert (info.tier, info.memory_mb) == (after.tier, after.memory_mb)
        assert [w.settings.n_ctx for _, w in node.workers] == [1024]
        assert old_worker.pid is None  # closed once the miner let go of it
        assert node.plan == after
    finally:
        node.stop()


def test_reload_with_a_changed_fit_re_plans_and_a_plan_that_cannot_fit_keeps_the_running_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[fit]\nctx = 4096\n[logging]\nlevel = "debug"\n')
    asked: list[Config] = []

    def replan(fresh: Config) -> str:
        asked.append(fresh)
        if fresh.fit.ctx > 8192:
            raise DoesNotFitError("[fit] ctx 16384 is over the model's context limit of 8192")
        return f"re-planned at ctx {fresh.fit.ctx}"

    reload = ConfigReloader(Config(), path, replan=replan)
    ok, message = reload()
    assert ok and "applied live: logging.level, fit.ctx" in message
    assert message.endswith("; re-planned at ctx 4096") and reload.running.fit.ctx == 4096
    path.write_text('[fit]\nctx = 16384\n[logging]\nlevel = "debug"\n')
    ok, message = reload()
    assert not ok and "the running plan stays: [fit] ctx 16384" in message
    assert reload.running.fit.ctx == 4096 and len(asked) == 2
    without = ConfigReloader(Config(), path)  # a node that cannot re-plan names it for a restart
    ok, message = without()
    assert ok and "needs a restart: fit.ctx" in message
