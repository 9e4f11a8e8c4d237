"""The fit: hardware + catalogue + settings (+ this machine's benchmarks) in, a decision out.

Pure: no I/O. Objective, in order: the largest catalogue chat model (by parameters) that fits
with a quant at or above the floor (Q4 class), a context of at least 2048 and an expected
generation speed at or above the floor; then the best quant; then full GPU offload, else
partial, else CPU; then the longest context up to 8192. Memory: *free* VRAM minus a margin;
RAM: a share of *available* memory kept as a buffer. Every choice carries a reason a user can
read. docs/PROFILER.md explains the rules and tiers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from profiler.catalogue import Catalogue, ModelEntry
from profiler.errors import DoesNotFitError
from profiler.estimate import (
    UNQUANTIZED,
    MemoryEstimate,
    ModelShape,
    ShapeUnknownError,
    estimate,
    quant_rank,
    shape_from_catalogue,
)
from profiler.hardware import GIB, GPU, Hardware, missing_build_simd
from profiler.load_settings import LoadSettings

TIERS = ("gpu-full", "gpu-quantized", "cpu-high", "cpu-low")
CANDIDATE_KINDS = ("chat",)
# Decoding streams every weight once per token; tokens/s ~ efficiency x bandwidth / bytes.
# GPU: kernels reach about 70% of the spec bandwidth. CPU: the probe measures one read stream,
# while llama.cpp's threads together reach about that to 1.5x of it on big models, so 1.0.
CPU_BANDWIDTH_EFFICIENCY = 1.0
GPU_BANDWIDTH_EFFICIENCY = 0.7
# What one thread decodes, in weight bytes per second: SmolLM2-135M Q4_1 (92 MiB) ran at
# 60-80 tokens/s on one 2.6 GHz EPYC core (docs/PROFILER.md); a few threads share one machine's
# bandwidth, so the CPU rate is min(bandwidth, threads x this).
THREAD_DECODE_BYTES_PER_S = 6.5e9
EMBEDDING_CTX = 512


@dataclass(frozen=True)
class FitSettings:
    ram_buffer_pct: float = 20.0
    gpu_margin_bytes: int = GIB
    speed_floor_tps: float = 5.0
    quant_floor: str = "Q4_0"
    min_ctx: int = 2048
    max_ctx: int = 8192
    thread_budget: int = 0  # total threads this node may use (several nodes per host); 0: none
    # Overrides: None means "choose".
    model: str | None = None
    quant: str | None = None
    n_ctx: int | None = None
    n_gpu_layers: int | None = None
    n_threads: int | None = None
    gpu_index: int | None = None
    ram_cap_bytes: int | None = None
    vram_cap_bytes: int | None = None
    load_anyway: bool = False
    load: LoadSettings = field(default_factory=LoadSettings)


@dataclass(frozen=True)
class Benchmark:
    """A measured figure of this machine (the inference runtime writes them to the database)."""

    model_id: str
    quant: str
    gen_tokens_per_s: float


def benchmarks_from_rows(rows: Iterable[tuple[str, str, Any]]) -> tuple[Benchmark, ...]:
    """(model_id, quant, result JSON text or dict) rows, oldest first -> the latest per model."""
    latest: dict[tuple[str, str], Benchmark] = {}
    for model_id, quant, result in rows:
        try:
            data = json.loads(result) if isinstance(result, str | bytes) else result
            tps = float(data["gen_tokens_per_s"])
        except (ValueError, TypeError, KeyError):
            continue
        if tps > 0:
            latest[(model_id, quant.upper())] = Benchmark(model_id, quant.upper(), tps)
    return tuple(latest.values())


@dataclass(frozen=True)
class Recommendation:
    model_id: str
    quant: str
    n_ctx: int
    n_gpu_layers: int
    n_threads: int
    tier: str
    estimated_ram_bytes: int  # peak (reserved) figures: the bound the fit respected
    estimated_vram_bytes: int
    reasons: tuple[str, ...]
    file_name: str | None = None
    gpu_index: int | None = None
    expected_tokens_per_s: float | None = None
    speed_source: str = "unknown"  # "benchmark", "estimate" or "unknown"
    estimate: MemoryEstimate | None = None
    embedding_model_id: str | None = None
    embedding_ram_bytes: int = 0
    load_anyway: bool = False
    # The usable memory the fit worked within (after buffers, margins and caps): what a node
    # offers the network for models (NodeRegistry's memory figure).
    ram_budget_bytes: int = 0
    vram_budget_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """Exactly the documented fields (docs/PROFILER.md)."""
        return {
            "model_id": self.model_id,
            "quant": self.quant,
            "n_ctx": self.n_ctx,
            "n_gpu_layers": self.n_gpu_layers,
            "n_threads": self.n_threads,
            "tier": self.tier,
            "estimated_ram_bytes": self.estimated_ram_bytes,
            "estimated_vram_bytes": self.estimated_vram_bytes,
            "reasons": list(self.reasons),
        }

    def load_settings(self, base: LoadSettings | None = None) -> LoadSettings:
        """The settings the runtime loads with: the same ones the estimate assumed."""
        return replace(
            base or LoadSettings(),
            n_ctx=self.n_ctx,
            n_gpu_layers=self.n_gpu_layers,
            n_threads=self.n_threads,
        )


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


@dataclass(frozen=True)
class _Budget:
    ram: int
    ram_text: str
    gpu: GPU | None
    vram: int
    unified: bool


@dataclass(frozen=True)
class _Search:
    hw: Hardware
    budget: _Budget
    s: FitSettings
    measured: Mapping[tuple[str, str], float]
    shapes: Mapping[tuple[str, str], ModelShape]
    emb_id: str | None
    emb_bytes: int


@dataclass(frozen=True)
class _Attempt:
    ok: bool
    est: MemoryEstimate
    placement: str  # "full", "partial", "cpu"
    miss: str = ""
    tps: float | None = None
    speed_source: str = "unknown"


def recommend(
    hardware: Hardware,
    catalogue: Catalogue,
    settings: FitSettings | None = None,
    benchmarks: Iterable[Benchmark] = (),
    shapes: Mapping[tuple[str, str], ModelShape] | None = None,
) -> Recommendation:
    """Choose model, quant, context, offload and threads; raise DoesNotFitError if nothing fits.

    `shapes` may give exact shapes (from GGUF headers) for downloaded files, keyed by
    (model_id, quant); otherwise the catalogue's figures are used.
    """
    s = settings or FitSettings()
    missing = missing_build_simd(hardware)
    simd_warning = (
        f"this CPU lacks {', '.join(m.upper() for m in missing)} that the installed llama.cpp "
        "build needs: loading any model would crash (SIGILL)"
    )
    if missing and not s.load_anyway:
        raise DoesNotFitError(
            f"{simd_warning}; install a llama-cpp-python build for this CPU "
            "(GGML_NATIVE=OFF with a lower baseline, or GGML_CPU_ALL_VARIANTS=ON)"
        )
    measured = {(b.model_id, b.quant.upper()): b.gen_tokens_per_s for b in benchmarks}
    reasons: list[str] = [f"warning: {simd_warning} (load anyway)"] if missing else []
    emb_id, emb_bytes = _embedding_reserve(catalogue, s)
    budget = _budget(hardware, s, emb_bytes, reasons)
    if emb_id:
        reasons.append(f"embedding model {emb_id} accounted separately: {gib(emb_bytes)} RAM")

    sx = _Search(hardware, budget, s, measured, shapes or {}, emb_id, emb_bytes)
    candidates = _candidates(catalogue, s)
    reasons.extend(_override_misses(candidates, s))
    rejected: list[str] = []
    for entry in candidates:
        found = _fit_model(sx, entry)
        if isinstance(found, str):
            rejected.append(found)
            continue
        attempt, quant, choice_reasons = found
        why = [*reasons, *_model_reasons(entry, rejected), *choice_reasons]
        return _decide(sx, entry, quant, attempt, why)

    if s.load_anyway and candidates:
        return _load_anyway(sx, candidates[-1], reasons, rejected)
    detail = "; ".join(rejected[-3:]) if rejected else "no candidate model"
    what = f"{s.model} does not fit" if s.model else "nothing in the catalogue fits"
    raise DoesNotFitError(
        f"{what} this machine ({budget.ram_text}): {detail}. "
        "Free memory, lower [fit] ram_buffer_pct, or set [fit] load_anyway = true"
    )


def _override_misses(candidates: list[ModelEntry], s: FitSettings) -> list[str]:
    """Overrides the named model cannot take: refused, or one warning under load_anyway."""
    if not s.model or not candidates:
        return []
    entry, misses = candidates[0], []
    limit, n_layer = entry.architecture.context_length, entry.architecture.n_layer
    if s.n_ctx and limit and s.n_ctx > limit:
        misses.append(f"[fit] ctx {s.n_ctx} is over {entry.id}'s context limit of {limit}")
    if s.n_gpu_layers and n_layer and s.n_gpu_layers > n_layer + 1:
        misses.append(
            f"[fit] gpu_layers {s.n_gpu_layers} is more than {entry.id} has "
            f"({n_layer} layers and the output: {n_layer + 1})"
        )
    if misses and not s.load_anyway:
        raise DoesNotFitError(f"{'; '.join(misses)}. Change [fit] or set [fit] load_anyway = true")
    return [f"warning: {m} (load anyway)" for m in misses]


# --- budget ----------------------------------------------------------------------------------


def _embedding_reserve(catalogue: Catalogue, s: FitSettings) -> tuple[str | None, int]:
    models = catalogue.of_kind("embedding")
    if not models:
        return None, 0
    entry = models[0]
    try:
        shape = shape_from_catalogue(entry, entry.quants[0].quant)
    except ShapeUnknownError:
        return entry.id, 0
    est = estimate(shape, replace(s.load, n_ctx=EMBEDDING_CTX, n_gpu_layers=0))
    return entry.id, est.ram_peak_bytes


def _budget(hw: Hardware, s: FitSettings, emb_bytes: int, reasons: list[str]) -> _Budget:
    available = hw.memory.available_bytes
    ram = int(available * (1 - s.ram_buffer_pct / 100)) - emb_bytes
    text = f"{gib(available)} RAM available - {s.ram_buffer_pct:g}% buffer"
    if emb_bytes:
        text += f" - {gib(emb_bytes)} embedding model"
    if s.ram_cap_bytes is not None and s.ram_cap_bytes < ram:
        ram = s.ram_cap_bytes
        text += f", capped at {gib(s.ram_cap_bytes)} by [fit] ram_cap"
    ram = max(0, ram)
    text += f" = {gib(ram)} usable"
    reasons.append(f"RAM budget: {text}")

    gpu = _pick_gpu(hw, s, reasons)
    vram = 0
    unified = False
    if gpu is not None:
        free = gpu.memory_free_bytes or 0
        vram = max(0, free - s.gpu_margin_bytes)
        gtext = f"{gpu.name} (GPU {gpu.index}): {gib(free)} free - {gib(s.gpu_margin_bytes)} margin"
        if s.vram_cap_bytes is not None and s.vram_cap_bytes < vram:
            vram = s.vram_cap_bytes
            gtext += f", capped at {gib(s.vram_cap_bytes)} by [fit] vram_cap"
        unified = gpu.unified_memory
        gtext += f" = {gib(vram)} usable"
        if unified:
            gtext += " (unified memory: shared with the RAM budget)"
        reasons.append(f"GPU: {gtext}")
    return _Budget(ram=ram, ram_text=text, gpu=gpu, vram=vram, unified=unified)


def _pick_gpu(hw: Hardware, s: FitSettings, reasons: list[str]) -> GPU | None:
    if not hw.gpus:
        reasons.append("no GPU found: CPU only")
        return None
    if not hw.gpu_offload_supported:
        names = ", ".join(g.name for g in hw.gpus)
        reasons.append(f"GPU found ({names}) but this llama.cpp build cannot use it: CPU only")
        return None
    if s.n_gpu_layers == 0:
        reasons.append("GPU layers set to 0 by [fit] gpu_layers: CPU only")
        return None
    usable = [g for g in hw.gpus if g.memory_free_bytes is not None]
    if s.gpu_index is not None:
        chosen = [g for g in hw.gpus if g.index == s.gpu_index]
        if not chosen:
            raise DoesNotFitError(
                f"[fit] gpu_index {s.gpu_index}: no such GPU "
                f"(found: {', '.join(f'{g.index} {g.name}' for g in hw.gpus)})"
            )
        if chosen[0].memory_free_bytes is None:
            raise DoesNotFitError(f"GPU {s.gpu_index} ({chosen[0].name}): free memory unknown")
        return chosen[0]
    if not usable:
        reasons.append("GPU free memory unknown: CPU only")
        return None
    best = max(usable, key=lambda g: (g.memory_free_bytes or 0, -g.index))
    if len(usable) > 1:
        reasons.append(
            f"{len(usable)} GPUs: using GPU {best.index}, the one with the most free memory "
            "(layers are not split across GPUs)"
        )
    return best


# --- search ----------------------------------------------------------------------------------


def _candidates(catalogue: Catalogue, s: FitSettings) -> list[ModelEntry]:
    if s.model:
        return [catalogue.require(s.model)]
    models = [m for m in catalogue.models if m.kind in CANDIDATE_KINDS and m.parameters]
    return sorted(models, key=lambda m: -(m.parameters or 0))


def _quants(entry: ModelEntry, s: FitSettings) -> list[str]:
    if s.quant:
        variant = entry.quant(s.quant)
        if variant is None:
            known = ", ".join(q.quant for q in entry.quants)
            raise DoesNotFitError(f"{entry.id} has no quant {s.quant} (it has: {known})")
        return [variant.quant]
    floor = quant_rank(s.quant_floor)
    names = [q.quant for q in entry.quants if quant_rank(q.quant) >= floor]
    return sorted(names, key=lambda q: -quant_rank(q))


def _contexts(entry: ModelEntry, s: FitSettings) -> list[int]:
    if s.n_ctx:
        return [s.n_ctx]
    limit = min(s.max_ctx, entry.architecture.context_length or s.max_ctx)
    out = []
    ctx = s.max_ctx
    while ctx >= s.min_ctx:
        if ctx <= limit:
            out.append(ctx)
        ctx //= 2
    return out


def _shape(
    entry: ModelEntry, quant: str, shapes: Mapping[tuple[str, str], ModelShape]
) -> ModelShape | None:
    known = shapes.get((entry.id, quant.upper())) or shapes.get((entry.id, quant))
    if known is not None:
        return known
    try:
        return shape_from_catalogue(entry, quant)
    except ShapeUnknownError:
        return None


def _fit_model(sx: _Search, entry: ModelEntry) -> tuple[_Attempt, str, list[str]] | str:
    """The best (placement, quant, ctx) of one model with the reasons, or why none fits.

    Placement outranks quant: decoding speed is bound by the slowest memory a token streams
    through, so a fully offloaded Q4 serves better than a partly offloaded Q8 (the speed floor
    alone would let the slow one through). Then the best quant, then the longest context.
    """
    s, budget = sx.s, sx.budget
    quants = _quants(entry, s)
    contexts = _contexts(entry, s)
    if not quants:
        return f"{entry.id}: no quant at or above the floor {s.quant_floor}"
    if not contexts:
        return f"{entry.id}: its context ({entry.architecture.context_length}) is below {s.min_ctx}"
    misses: dict[tuple[str, str], list[str]] = {}
    shapes = {q: _shape(entry, q, sx.shapes) for q in quants}
    placements = _placements(budget, s)
    for placement in placements:
        for qi, quant in enumerate(quants):
            shape = shapes[quant]
            tried = misses.setdefault((placement, quant), [])
            if shape is None:
                tried.append(f"{quant}: size unknown (catalogue figures are null)")
                continue
            for ctx in contexts:
                attempt = _try(sx, entry, quant, shape, placement=placement, ctx=ctx)
                if not attempt.ok:
                    tried.append(attempt.miss)
                    continue
                why = [
                    _quant_reason(quant, quants[qi - 1] if qi else None, misses, placement),
                    _ctx_reason(ctx, contexts, tried),
                ]
                if placement in ("partial", "cpu") and "full" in placements:
                    why.append(f"no full offload: {_last(misses.get(('full', quant), []))}")
                if placement == "cpu" and "partial" in placements:
                    why.append(f"no partial offload: {_last(misses.get(('partial', quant), []))}")
                return attempt, quant, why
    every = [m for tried in misses.values() for m in tried]
    return f"{entry.id} ({_params(entry)}) does not fit: {_summarise(every, 1)}"


def _last(misses: list[str]) -> str:
    return misses[-1] if misses else "not tried"


def _placements(budget: _Budget, s: FitSettings) -> list[str]:
    if budget.gpu is None or budget.vram <= 0:
        return ["cpu"]
    if s.n_gpu_layers is not None:
        return ["fixed"]
    return ["full", "partial", "cpu"]


def _try(
    sx: _Search,
    entry: ModelEntry,
    quant: str,
    shape: ModelShape,
    *,
    placement: str,
    ctx: int,
) -> _Attempt:
    s, budget = sx.s, sx.budget
    vendor = budget.gpu.vendor if budget.gpu else None
    load = replace(s.load, n_ctx=ctx)
    label = f"{quant} ctx {ctx}"
    if placement == "cpu":
        est = estimate(shape, replace(load, n_gpu_layers=0))
    elif placement == "full":
        est = estimate(shape, replace(load, n_gpu_layers=shape.n_layer + 1), vendor)
    elif placement == "fixed":
        est = estimate(shape, replace(load, n_gpu_layers=s.n_gpu_layers or 0), vendor)
    else:
        partial = _best_partial(shape, load, vendor, budget)
        if partial is None:
            miss = f"{label}: not one layer fits the GPU"
            return _Attempt(False, estimate(shape, load), placement, miss)
        est = partial
    miss = _memory_miss(est, budget, label, placement)
    if miss:
        return _Attempt(False, est, placement, miss)
    tps, source = _speed(sx, entry, quant, est)
    # A model the user named is not refused for speed: the floor steers the automatic choice.
    if tps is not None and s.speed_floor_tps > 0 and tps < s.speed_floor_tps and not s.model:
        where = {
            "cpu": "on CPU",
            "full": "fully offloaded",
            "partial": "partly offloaded",
            "fixed": f"with {s.n_gpu_layers} GPU layers",
        }
        return _Attempt(
            False,
            est,
            placement,
            f"{label} {where.get(placement, '')}: {tps:.1f} tokens/s ({source}) is below the "
            f"floor of {s.speed_floor_tps:g}",
            tps,
            source,
        )
    return _Attempt(True, est, placement, "", tps, source)


def _best_partial(
    shape: ModelShape, load: LoadSettings, vendor: str | None, budget: _Budget
) -> MemoryEstimate | None:
    best = None
    low, high = 1, shape.n_layer  # n_layer layers on the GPU, output on the CPU
    while low <= high:
        mid = (low + high) // 2
        est = estimate(shape, replace(load, n_gpu_layers=mid), vendor)
        if _vram_ok(est, budget):
            best, low = est, mid + 1
        else:
            high = mid - 1
    return best


def _vram_ok(est: MemoryEstimate, budget: _Budget) -> bool:
    return est.vram_peak_bytes <= budget.vram


def _memory_miss(est: MemoryEstimate, budget: _Budget, label: str, placement: str) -> str:
    if est.vram_peak_bytes > budget.vram:
        return f"{label} on the GPU needs {gib(est.vram_peak_bytes)} and {gib(budget.vram)} is free"
    ram_need = est.ram_peak_bytes + (est.vram_peak_bytes if budget.unified else 0)
    if ram_need > budget.ram:
        where = "RAM" if placement == "cpu" else "RAM besides the GPU"
        if budget.unified and placement != "cpu":
            where = "of unified memory (RAM and GPU together)"
        return f"{label} needs {gib(ram_need)} {where} and {gib(budget.ram)} is usable"
    return ""


def _speed(
    sx: _Search, entry: ModelEntry, quant: str, est: MemoryEstimate
) -> tuple[float | None, str]:
    hw, budget = sx.hw, sx.budget
    bench = sx.measured.get((entry.id, quant.upper()))
    if bench is not None:
        return bench, "benchmark"
    cpu_bw = hw.memory.read_bandwidth_bytes_per_s
    gpu_bw = budget.gpu.memory_bandwidth_bytes_per_s if budget.gpu else None
    seconds = 0.0
    if est.weights_vram_bytes:
        if not gpu_bw:
            return None, "unknown"
        seconds += est.weights_vram_bytes / (gpu_bw * GPU_BANDWIDTH_EFFICIENCY)
    # With full offload the token embedding stays in RAM but only one row is read per token.
    ram_read = est.weights_ram_bytes if est.n_gpu_layers <= 0 or est.kv_ram_bytes else 0
    if ram_read:
        if not cpu_bw:
            return None, "unknown"
        threads, _ = _threads(hw, sx.s, est, entry.architecture.n_layer or 0)
        rate = min(cpu_bw * CPU_BANDWIDTH_EFFICIENCY, threads * THREAD_DECODE_BYTES_PER_S)
        seconds += ram_read / rate
    if seconds <= 0:
        return None, "unknown"
    return 1 / seconds, "estimate"


# --- reasons and the decision ----------------------------------------------------------------


def _params(entry: ModelEntry) -> str:
    p = entry.parameters or 0
    return f"{p / 1e9:.2f}B parameters" if p >= 1e9 else f"{p / 1e6:.0f}M parameters"


def _summarise(misses: list[str], keep: int = 2) -> str:
    unique = list(dict.fromkeys(m for m in misses if m))
    if not unique:
        return "nothing tried"
    return "; ".join(unique[-keep:])


def _model_reasons(entry: ModelEntry, rejected: list[str]) -> list[str]:
    out = [f"model {entry.id}: the largest catalogue chat model that fits ({_params(entry)})"]
    out.extend(f"skipped {r}" for r in rejected)
    return out


def _quant_reason(
    quant: str, better: str | None, misses: dict[tuple[str, str], list[str]], placement: str
) -> str:
    if better is None:
        return f"quant {quant}: the best this model offers at or above the floor"
    return f"quant {quant}: {_last(misses.get((placement, better), []))}"


def _ctx_reason(ctx: int, contexts: list[int], tried: list[str]) -> str:
    if ctx == contexts[0]:
        return f"context {ctx}: the longest considered (up to {contexts[0]})"
    longer = [m for m in tried if f"ctx {contexts[0]}" in m]
    return f"context {ctx}: {_last(longer)}"


def cpu_threads(physical_cores: int) -> int:
    """A node's llama.cpp threads on the CPU: every physical core but one, left for the
    desktop (bench/validation.py times checking against answering at this setting)."""
    return max(1, physical_cores - 1)


def _threads(hw: Hardware, s: FitSettings, est: MemoryEstimate, n_layer: int) -> tuple[int, str]:
    if s.n_threads:
        return s.n_threads, f"threads {s.n_threads}: set by [fit] threads"
    physical = hw.cpu.physical_cores
    n = cpu_threads(physical)
    why = f"{physical} physical cores, one left for the desktop"
    if physical <= 1:
        why = "1 physical core"
    if est.n_gpu_layers > n_layer and n > 4:
        n, why = 4, "the GPU does the work; 4 threads feed it"
    if s.thread_budget and n > s.thread_budget:
        n, why = s.thread_budget, f"capped by [fit] thread_budget {s.thread_budget}"
    return n, f"threads {n}: {why}"


def _tier(hw: Hardware, quant: str, est: MemoryEstimate, n_layer: int) -> tuple[str, str]:
    on_gpu = min(est.n_gpu_layers, n_layer)
    if est.n_gpu_layers > n_layer and quant.upper() in UNQUANTIZED:
        return "gpu-full", f"tier gpu-full: unquantized {quant} runs fully on the GPU"
    if on_gpu > 0 and on_gpu * 2 >= n_layer:
        how = "fully" if est.n_gpu_layers > n_layer else f"mostly ({on_gpu}/{n_layer} layers)"
        return "gpu-quantized", f"tier gpu-quantized: {quant} runs {how} on the GPU"
    cores, avail = hw.cpu.physical_cores, hw.memory.available_bytes
    if cores >= 8 and avail >= 16 * GIB:
        return "cpu-high", f"tier cpu-high: {cores} physical cores and {gib(avail)} available"
    return "cpu-low", (
        f"tier cpu-low: {cores} physical cores and {gib(avail)} available "
        "(cpu-high needs 8 cores and 16 GiB)"
    )


def _placement_reason(est: MemoryEstimate, n_layer: int, budget: _Budget) -> str:
    if est.n_gpu_layers > n_layer:
        need = gib(est.vram_peak_bytes)
        return f"offload: all {n_layer} layers and the output on the GPU ({need})"
    if est.n_gpu_layers > 0:
        return (
            f"offload: {est.n_gpu_layers} of {n_layer} layers on the GPU; more need more "
            f"than the {gib(budget.vram)} usable"
        )
    if budget.gpu is not None:
        return "offload: none; CPU only (the GPU is too small or too slow for this model)"
    return "offload: none (CPU only)"


def _decide(
    sx: _Search,
    entry: ModelEntry,
    quant: str,
    attempt: _Attempt,
    reasons: list[str],
    *,
    load_anyway: bool = False,
) -> Recommendation:
    hw, budget, s = sx.hw, sx.budget, sx.s
    est = attempt.est
    n_layer = entry.architecture.n_layer or 0
    threads, threads_reason = _threads(hw, s, est, n_layer)
    tier, tier_reason = _tier(hw, quant, est, n_layer)
    if attempt.tps is None:
        speed = "speed: unknown (no benchmark, no bandwidth figure); no speed floor applied"
    else:
        speed = f"speed: {attempt.tps:.1f} tokens/s ({attempt.speed_source})"
        if s.speed_floor_tps > 0:
            speed += f", floor {s.speed_floor_tps:g}"
            if attempt.tps < s.speed_floor_tps:
                speed += " (below it; kept because [fit] model names this model)"
    memory = (
        f"estimate: peak {gib(est.ram_peak_bytes)} RAM of {gib(budget.ram)} usable"
        + (
            f", {gib(est.vram_peak_bytes)} VRAM of {gib(budget.vram)}"
            if est.vram_peak_bytes
            else ""
        )
        + f"; resident about {gib(est.ram_bytes)} RAM"
    )
    variant = entry.quant(quant)
    return Recommendation(
        model_id=entry.id,
        quant=quant,
        n_ctx=est.n_ctx,
        n_gpu_layers=est.n_gpu_layers,
        n_threads=threads,
        tier=tier,
        estimated_ram_bytes=est.ram_peak_bytes,
        estimated_vram_bytes=est.vram_peak_bytes,
        reasons=tuple(
            r
            for r in (
                *reasons,
                _placement_reason(est, n_layer, budget),
                speed,
                threads_reason,
                tier_reason,
                memory,
            )
            if r
        ),
        file_name=variant.file_name if variant else None,
        gpu_index=budget.gpu.index if budget.gpu and est.n_gpu_layers > 0 else None,
        expected_tokens_per_s=attempt.tps,
        speed_source=attempt.speed_source,
        estimate=est,
        embedding_model_id=sx.emb_id,
        embedding_ram_bytes=sx.emb_bytes,
        load_anyway=load_anyway,
        ram_budget_bytes=budget.ram,
        vram_budget_bytes=budget.vram,
    )


def _load_anyway(
    sx: _Search, entry: ModelEntry, reasons: list[str], rejected: list[str]
) -> Recommendation:
    s, budget = sx.s, sx.budget
    quants = _quants(entry, s) or sorted((q.quant for q in entry.quants), key=quant_rank)
    quant = quants[-1]
    shape = shape_from_catalogue(entry, quant)
    ctx = s.n_ctx or min(_contexts(entry, s) or [s.min_ctx])
    ngl = s.n_gpu_layers or 0
    vendor = budget.gpu.vendor if budget.gpu else None
    est = estimate(shape, replace(s.load, n_ctx=ctx, n_gpu_layers=ngl), vendor)
    warning = (
        f"load anyway ([fit] load_anyway): {entry.id} {quant} ctx {ctx} needs "
        f"{gib(est.ram_peak_bytes)} RAM and {gib(budget.ram)} is usable; "
        "it may swap, be slow or be killed"
    )
    attempt = _Attempt(True, est, "cpu" if ngl == 0 else "fixed")
    why = [*reasons, *(f"does not fit: {r}" for r in rejected), warning]
    return _decide(sx, entry, quant, attempt, why, load_anyway=True)


@dataclass(frozen=True)
class ModelFit:
    """Whether one catalogue model can run here, and how or why not (for model lists)."""

    model_id: str
    fits: bool
    detail: str
    recommendation: Recommendation | None = None


def check_model(
    hardware: Hardware,
    catalogue: Catalogue,
    model_id: str,
    settings: FitSettings | None = None,
    benchmarks: Iterable[Benchmark] = (),
) -> ModelFit:
    """The fit restricted to one model: its best quant, context and offload here, or why not.

    Chat models only get a speed floor when chosen automatically, so a model asked for by name
    is judged on memory alone; embedding models are checked at their own small context.
    """
    base = replace(settings or FitSettings(), model=model_id, load_anyway=False)
    entry = catalogue.require(model_id)
    if entry.kind == "embedding":
        base = replace(base, min_ctx=EMBEDDING_CTX, max_ctx=EMBEDDING_CTX)
    try:
        rec = recommend(hardware, catalogue, base, benchmarks)
    except DoesNotFitError as exc:
        return ModelFit(model_id, False, str(exc))
    where = "on the GPU" if rec.n_gpu_layers else "on the CPU"
    detail = f"{rec.quant}, ctx {rec.n_ctx}, {where}, peak {gib(rec.estimated_ram_bytes)} RAM"
    if rec.estimated_vram_bytes:
        detail += f" + {gib(rec.estimated_vram_bytes)} VRAM"
    return ModelFit(model_id, True, detail, rec)
