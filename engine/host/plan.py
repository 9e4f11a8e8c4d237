"""The node plan: what this node loads, registers and serves, decided once by the fit.

probe + config `[fit]` + this machine's stored benchmarks -> `make_plan` -> `NodePlan`. The plan is
the only input the node's runtime (model file, context, threads, offload) and its registration
(tier, memory, the models it serves) take, so what `profile` recommends is what `run` runs.
Everything here is pure except `install_plan`, which puts the plan's model in the store (or falls
back to the largest installed model that fits) and verifies its file before anything registers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chain.wrappers import Tier
from engine.errors import DownloadError, HashMismatchError, InsufficientDiskError
from engine.models.store import ModelStore, PullProgress
from engine.node.miner import MinerSettings
from profiler.catalogue import Catalogue, CatalogueError, ModelEntry
from profiler.errors import DoesNotFitError
from profiler.estimate import UNQUANTIZED, ModelShape
from profiler.fit import Benchmark, FitSettings, Recommendation, check_model, gib, recommend
from profiler.hardware import Hardware
from profiler.load_settings import LoadSettings

MIB = 1024**2


@dataclass(frozen=True)
class ServedModel:
    """A model served besides the primary, loaded on demand (engine/host/model_pool.py)."""

    model_id: str
    quant: str
    file_name: str
    n_ctx: int
    n_gpu_layers: int
    bytes_needed: int  # the fit's peak estimate, RAM + VRAM

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "quant": self.quant,
            "file_name": self.file_name,
            "n_ctx": self.n_ctx,
            "n_gpu_layers": self.n_gpu_layers,
            "bytes_needed": self.bytes_needed,
        }


@dataclass(frozen=True)
class NodePlan:
    """One node's decision: model, how it loads, and what the node registers on chain."""

    model_id: str
    quant: str
    file_name: str
    n_ctx: int
    n_threads: int
    n_gpu_layers: int
    gpu_index: int | None
    tier: Tier
    memory_mb: int  # the memory budget the node offers the network (VRAM when on a GPU)
    reasons: tuple[str, ...]
    source: str = "fit"  # "fit", "embedded" (the bundled model) or "fallback"
    load_anyway: bool = False
    model_bytes: int = 0  # the primary's peak estimate, RAM + VRAM (the pool's accounting)
    extras: tuple[ServedModel, ...] = field(default=())  # served besides the primary

    @property
    def served_models(self) -> tuple[str, ...]:
        return (self.model_id, *(e.model_id for e in self.extras))

    @property
    def full_precision(self) -> bool:
        return self.quant.upper() in UNQUANTIZED

    def load_settings(self, base: LoadSettings | None = None) -> LoadSettings:
        """The settings the worker loads with: the ones the fit's estimate assumed."""
        return replace(
            base or LoadSettings(),
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_gpu_layers=self.n_gpu_layers,
        )

    def miner_settings(self, base: MinerSettings | None = None) -> MinerSettings:
        """The miner registers exactly the plan's tier, memory and models."""
        return replace(
            base or MinerSettings(),
            model_name=self.model_id,
            served_models=self.served_models,
            tier=int(self.tier),
            memory_mb=self.memory_mb,
        )

    def warnings(self) -> tuple[str, ...]:
        """Reasons a user must see as warnings (load anyway, a missing CPU feature)."""
        return tuple(r for r in self.reasons if r.startswith(("warning", "load anyway")))

    def headline(self) -> str:
        where = (
            f"{self.n_gpu_layers} layers on GPU {self.gpu_index}"
            if self.n_gpu_layers and self.gpu_index is not None
            else (f"{self.n_gpu_layers} GPU layers" if self.n_gpu_layers else "CPU")
        )
        return (
            f"plan ({self.source}): {self.model_id} {self.quant}, ctx {self.n_ctx}, "
            f"{self.n_threads} thread(s), {where}; registers tier {self.tier.label} with "
            f"{self.memory_mb} MiB, serving {', '.join(self.served_models)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "quant": self.quant,
            "file_name": self.file_name,
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "n_gpu_layers": self.n_gpu_layers,
            "gpu_index": self.gpu_index,
            "tier": self.tier.label,
            "tier_code": int(self.tier),
            "memory_mb": self.memory_mb,
            "served_models": list(self.served_models),
            "extra_models": [e.to_json() for e in self.extras],
            "source": self.source,
            "load_anyway": self.load_anyway,
            "reasons": list(self.reasons),
        }


def plan_from_recommendation(rec: Recommendation, source: str = "fit") -> NodePlan:
    """The fit's recommendation as a node plan: its tier code and the memory it worked within."""
    tier = Tier.from_label(rec.tier)
    reasons = list(rec.reasons)
    if tier is Tier.GPU_FULL and rec.quant.upper() not in UNQUANTIZED:
        tier = Tier.GPU_QUANTIZED  # full precision means an F16/BF16 file, whatever placed it
        reasons.append(f"tier gpu-quantized: {rec.quant} is quantized")
    on_gpu = rec.n_gpu_layers > 0 and rec.vram_budget_bytes > 0
    budget = rec.vram_budget_bytes if on_gpu else rec.ram_budget_bytes
    reasons.append(
        f"memory registered: {budget // MIB} MiB, the usable {'VRAM' if on_gpu else 'RAM'} "
        f"budget ({gib(budget)})"
    )
    return NodePlan(
        model_id=rec.model_id,
        quant=rec.quant,
        file_name=rec.file_name or "",
        n_ctx=rec.n_ctx,
        n_threads=rec.n_threads,
        n_gpu_layers=rec.n_gpu_layers,
        gpu_index=rec.gpu_index,
        tier=tier,
        memory_mb=budget // MIB,
        reasons=tuple(reasons),
        source=source,
        load_anyway=rec.load_anyway,
        model_bytes=rec.estimated_ram_bytes + rec.estimated_vram_bytes,
    )


@dataclass(frozen=True)
class PlanInputs:
    """What the fit reads: the probe, the catalogue, `[fit]` as settings, stored benchmarks."""

    hardware: Hardware
    catalogue: Catalogue
    settings: FitSettings = field(default_factory=FitSettings)
    benchmarks: tuple[Benchmark, ...] = ()
    shapes: Mapping[tuple[str, str], ModelShape] | None = None


def make_plan(inputs: PlanInputs) -> NodePlan:
    """The one place a node's plan is decided; raises DoesNotFitError (exit 7) with the reason."""
    rec = recommend(
        inputs.hardware, inputs.catalogue, inputs.settings, inputs.benchmarks, inputs.shapes
    )
    return plan_from_recommendation(rec)


def with_extra_models(plan: NodePlan, inputs: PlanInputs, model_ids: Iterable[str]) -> NodePlan:
    """Models to serve besides the primary, each fitted alone here; one that does not fit in
    the plan's memory budget is left out with the reason. At most the budget is loaded at once:
    the pool unloads the least recently used (engine/host/model_pool.py)."""
    extras: list[ServedModel] = []
    reasons: list[str] = []
    budget = plan.memory_mb * MIB
    for wanted in dict.fromkeys(model_ids):
        if wanted in plan.served_models or wanted in (e.model_id for e in extras):
            continue
        try:
            fit = check_model(
                inputs.hardware, inputs.catalogue, wanted, inputs.settings, inputs.benchmarks
            )
        except CatalogueError as exc:
            reasons.append(f"not serving {wanted}: {exc}")
            continue
        rec = fit.recommendation
        if rec is None:
            reasons.append(f"not serving {wanted}: {fit.detail}")
            continue
        need = rec.estimated_ram_bytes + rec.estimated_vram_bytes
        if need > budget:
            reasons.append(f"not serving {wanted}: it needs {gib(need)} of a {gib(budget)} budget")
            continue
        extras.append(
            ServedModel(
                rec.model_id, rec.quant, rec.file_name or "", rec.n_ctx, rec.n_gpu_layers, need
            )
        )
        reasons.append(
            f"also serving {rec.model_id} {rec.quant} ({fit.detail}), loaded on demand; least "
            f"recently used models unload when the {gib(budget)} budget needs the room"
        )
    return replace(plan, extras=tuple(extras), reasons=(*plan.reasons, *reasons))


def embedded_plan(machine: NodePlan, entry: ModelEntry, n_ctx: int) -> NodePlan:
    """The embedded network's plan: every node runs the bundled model with one thread (they
    share this machine), and registers the tier and memory the fit computed for it."""
    variant = entry.quants[0]
    quantized = variant.quant.upper() not in UNQUANTIZED
    tier = machine.tier
    reasons = [
        f"embedded network: every node runs the bundled {entry.id} {variant.quant} at ctx "
        f"{n_ctx} with 1 thread (the nodes share this machine)",
        f"tier and memory from the fit for this machine ({machine.model_id} {machine.quant}): "
        f"tier {machine.tier.label}, {machine.memory_mb} MiB",
    ]
    if tier is Tier.GPU_FULL and quantized:
        tier = Tier.GPU_QUANTIZED
        reasons.append(f"tier gpu-quantized: the bundled {variant.quant} is quantized")
    n_layer = entry.architecture.n_layer or 0
    on_gpu = machine.n_gpu_layers > 0 and n_layer > 0
    return NodePlan(
        model_id=entry.id,
        quant=variant.quant,
        file_name=variant.file_name,
        n_ctx=n_ctx,
        n_threads=1,
        n_gpu_layers=n_layer + 1 if on_gpu else 0,  # the small bundled model fits where it did
        gpu_index=machine.gpu_index if on_gpu else None,
        tier=tier,
        memory_mb=machine.memory_mb,
        reasons=(*reasons, *machine.reasons),
        source="embedded",
        load_anyway=machine.load_anyway,
    )


def fallback_plan(
    inputs: PlanInputs, installed: Iterable[tuple[str, str]], why: str
) -> NodePlan | None:
    """The largest installed chat model (by parameters) that fits, planned like any other."""
    chat = {m.id: m for m in inputs.catalogue.of_kind("chat")}
    found = sorted(
        ((model, quant) for model, quant in installed if model in chat),
        key=lambda mq: -(chat[mq[0]].parameters or 0),
    )
    for model, quant in found:
        settings = replace(inputs.settings, model=model, quant=quant)
        try:
            plan = make_plan(replace(inputs, settings=settings))
        except DoesNotFitError:
            continue
        fell_back = f"fallback: {why}; {model} {quant} is the largest installed model that fits"
        return replace(plan, source="fallback", reasons=(fell_back, *plan.reasons))
    return None


Progress = Callable[[str], None]


def install_plan(
    store: ModelStore,
    plan: NodePlan,
    progress: Progress,
    fallback: Callable[[str], NodePlan | None] | None = None,
) -> tuple[NodePlan, Path]:
    """Put the plan's model in the store (with progress), then verify its file: the plan
    that runs and its verified path.

    When it cannot be installed (no source reachable, disk full) the node says so in one line
    and runs `fallback(why)` instead, saying that too. A file that fails verification raises
    (exit 6) and nothing registers: `install_plan` runs before the miner's preflight.
    """
    try:
        store.pull(plan.model_id, plan.quant, progress=_progress_lines(progress))
    except HashMismatchError:
        raise
    except (DownloadError, InsufficientDiskError) as exc:
        other = fallback(str(exc)) if fallback is not None else None
        if other is None:
            raise
        progress(f"cannot install {plan.model_id} {plan.quant}: {exc}")
        progress(f"falling back to {other.model_id} {other.quant}: the largest installed model")
        plan = other
    return plan, store.check(plan.model_id, plan.quant)


def _progress_lines(say: Progress) -> Callable[[PullProgress], None]:
    """Pull progress as a line per phase and per tenth of the file, not one per block."""
    last: dict[str, int] = {}

    def report(p: PullProgress) -> None:
        tenth = (10 * p.done_bytes // p.total_bytes) if p.total_bytes else -1
        if last.get(p.phase) == tenth:
            return
        last[p.phase] = tenth
        done = f"{p.done_bytes / MIB:,.0f} MiB"
        total = f" of {p.total_bytes / MIB:,.0f} MiB" if p.total_bytes else ""
        say(f"installing {p.model_id}: {p.phase} {done}{total} from {p.source}")

    return report
