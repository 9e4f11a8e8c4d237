"""The plan `run` runs: this machine's probe, the config's `[fit]` and the stored benchmarks, fitted
once by engine/host/plan.py. `profile` recommends from the same three inputs, so with the same
config `run` loads exactly what `profile --json` recommended (docs/PROFILER.md, "From fit to node").
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `profile` imports this module for fit_settings: keep it light
    from cortensor_desktop.config import Config
    from engine.host.plan import NodePlan, PlanInputs
    from engine.state.database import Database
    from profiler.catalogue import Catalogue
    from profiler.fit import Benchmark, FitSettings
    from profiler.hardware import Hardware

log = logging.getLogger(__name__)


def stored_benchmarks(database: Database) -> tuple[Benchmark, ...]:
    """This machine's measured speeds, the latest per model and quant (what the fit prefers)."""
    from profiler.fit import benchmarks_from_rows

    rows = database.query("SELECT model_id, quant, result FROM benchmarks ORDER BY created_at, id")
    return benchmarks_from_rows((r["model_id"], r["quant"], r["result"]) for r in rows)


def fit_settings(config: Config, physical_cores: int) -> FitSettings:
    """`[fit]` as the profiler's settings; `[policy]` nodes_on_host / thread_cap, when set,
    cap the threads as they cap every node sharing this machine."""
    from engine.host.policies import thread_share

    settings = config.fit.to_fit_settings()
    policy = config.policy
    if policy.nodes_on_host <= 1 and not policy.thread_cap:
        return settings
    share = thread_share(physical_cores, policy.nodes_on_host, policy.thread_cap or None)
    budget = min(settings.thread_budget, share) if settings.thread_budget else share
    return replace(settings, thread_budget=budget)


class NodePlanner:
    """Plans for one run: the fitted plan, the embedded network's, and the install fallback."""

    def __init__(
        self,
        config: Config,
        database: Database,
        models_dir: Path,
        hardware: Hardware,
        catalogue: Catalogue | None = None,
    ) -> None:
        from engine.host.plan import PlanInputs
        from profiler.catalogue import load_catalogue

        self.models_dir = models_dir
        self.extra_models = tuple(config.fit.extra_models)
        self.inputs: PlanInputs = PlanInputs(
            hardware=hardware,
            catalogue=catalogue or load_catalogue(),
            settings=fit_settings(config, hardware.cpu.physical_cores),
            benchmarks=stored_benchmarks(database),
        )

    def plan(self) -> NodePlan:
        """This node's plan; DoesNotFitError (exit 7) when a `[fit]` override cannot fit."""
        from engine.host.plan import make_plan, with_extra_models

        plan = make_plan(self.inputs)
        return (
            with_extra_models(plan, self.inputs, self.extra_models) if self.extra_models else plan
        )

    def embedded(self, n_ctx: int) -> NodePlan:
        """The embedded network's: the bundled model everywhere, this machine's tier and memory."""
        from engine.host.plan import embedded_plan
        from engine.models.store import ModelStore

        store = ModelStore(self.models_dir, self.inputs.catalogue)
        return embedded_plan(self.plan(), store.default_chat_model(), n_ctx)

    def fallback(self, why: str) -> NodePlan | None:
        """The largest installed chat model that fits, when the plan's cannot be installed."""
        from engine.host.plan import fallback_plan
        from engine.models.store import ModelStore

        store = ModelStore(self.models_dir, self.inputs.catalogue)
        installed = [(m.model_id, m.quant) for m in store.installed()]
        return fallback_plan(self.inputs, installed, why)


def log_plan(plan: NodePlan, logger: logging.Logger = log) -> None:
    """The plan and why, as the first lines of a run; a load-anyway or CPU warning once."""
    logger.info("%s", plan.headline())
    warnings = set(plan.warnings())
    for reason in plan.reasons:
        if reason not in warnings:
            logger.info("  why: %s", reason)
    for warning in plan.warnings():
        logger.warning("%s", warning)
