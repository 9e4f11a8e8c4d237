"""`profile`: what this machine is and what it should run; `estimate`: a GGUF's memory needs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.reports import render_hardware, render_recommendation

if TYPE_CHECKING:
    from profiler.fit import Benchmark


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from cortensor_desktop.cli.main import add_json_flag

    profile = subparsers.add_parser(
        "profile",
        parents=[common],
        help="probe the hardware and recommend model, quant, context, offload and threads",
        description="Probe CPU, memory, GPUs and the llama.cpp build (cached in the database; "
        "fast after the first run), then fit the catalogue to it: the largest model that "
        "fits, with a reason for every choice. [fit] in the config sets the rules and "
        "overrides (docs/PROFILER.md). Exit 7 when nothing fits.",
    )
    add_json_flag(profile)
    profile.add_argument(
        "--hardware",
        metavar="FILE",
        type=Path,
        help="read a recorded probe (JSON) instead of probing this machine",
    )
    profile.add_argument(
        "--refresh", action="store_true", help="re-measure the cached facts (CPU, bandwidth)"
    )
    profile.set_defaults(handler=_profile)

    estimate = subparsers.add_parser(
        "estimate",
        parents=[common],
        help="estimate the memory a GGUF model needs, from its header (no load)",
        description="Read MODEL.gguf's header and print the memory llama.cpp will take with "
        "the app's load settings (batch 512, f16 KV cache, mmap). Exit 6 when the file is not "
        "a readable GGUF.",
    )
    add_json_flag(estimate)
    estimate.add_argument("model", type=Path, metavar="MODEL.gguf")
    estimate.add_argument(
        "--ctx", type=_positive_int, default=2048, help="context size (default 2048)"
    )
    estimate.add_argument(
        "--gpu-layers",
        type=int,
        default=0,
        help="layers offloaded to the GPU; n_layer+1 or -1 puts the output there too",
    )
    estimate.add_argument(
        "--gpu-vendor",
        choices=["nvidia", "amd", "intel", "apple"],
        default="nvidia",
        help="GPU backend whose device overhead to count when --gpu-layers > 0",
    )
    estimate.set_defaults(handler=_estimate, needs_config=False)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _profile(ctx: AppContext, args: argparse.Namespace) -> int:
    from cortensor_desktop.hosting.node_plan import fit_settings
    from profiler.catalogue import load_catalogue
    from profiler.errors import DoesNotFitError
    from profiler.fit import recommend
    from profiler.hardware import load_hardware_file
    from profiler.probe import probe

    benchmarks: tuple[Benchmark, ...] = ()
    if args.hardware is not None:
        hardware = load_hardware_file(args.hardware)
    else:
        hardware = probe(cache=ctx.database, models_dir=ctx.models_dir, refresh=args.refresh)
        benchmarks = stored_benchmarks(ctx)
    catalogue = load_catalogue()
    # The settings `run` plans with ([fit], and [policy]'s thread share when set): run loads
    # what this recommends (cortensor_desktop/hosting/node_plan.py).
    settings = fit_settings(ctx.config, hardware.cpu.physical_cores)
    try:
        recommendation = recommend(hardware, catalogue, settings, benchmarks)
    except DoesNotFitError as exc:
        if ctx.json_output:
            ctx.emit_json(
                {"hardware": hardware.to_json(), "recommendation": None, "error": str(exc)}
            )
        else:
            ctx.echo(render_hardware(hardware))
        raise
    if ctx.json_output:
        ctx.emit_json({"hardware": hardware.to_json(), "recommendation": recommendation.to_json()})
        return 0
    ctx.echo(render_hardware(hardware))
    ctx.echo()
    ctx.echo(render_recommendation(recommendation))
    return 0


def stored_benchmarks(ctx: AppContext) -> tuple[Benchmark, ...]:
    from cortensor_desktop.hosting import node_plan

    return node_plan.stored_benchmarks(ctx.database)


def _estimate(ctx: AppContext, args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cortensor_desktop.table import format_pairs
    from profiler.estimate import estimate
    from profiler.gguf_shape import read_shape
    from profiler.load_settings import LoadSettings

    shape = read_shape(args.model)
    settings = replace(LoadSettings(), n_ctx=args.ctx, n_gpu_layers=args.gpu_layers)
    vendor = args.gpu_vendor if args.gpu_layers != 0 else None
    est = estimate(shape, settings, vendor)
    doc: dict[str, Any] = {
        "model": str(args.model),
        "architecture": shape.architecture,
        "n_layer": shape.n_layer,
        "quant": shape.quant,
        "n_ctx": est.n_ctx,
        "n_gpu_layers": est.n_gpu_layers,
        "weights_bytes": est.weights_bytes,
        "kv_bytes": est.kv_bytes,
        "compute_bytes": est.compute_bytes,
        "overhead_bytes": est.overhead_bytes,
        "ram_bytes": est.ram_bytes,
        "ram_peak_bytes": est.ram_peak_bytes,
        "vram_bytes": est.vram_bytes,
        "vram_peak_bytes": est.vram_peak_bytes,
        "assumed": {
            "n_batch": settings.n_batch,
            "n_ubatch": settings.n_ubatch,
            "kv_type": settings.kv_type,
            "use_mmap": settings.use_mmap,
            "flash_attn": settings.flash_attn,
        },
    }
    if ctx.json_output:
        ctx.emit_json(doc)
        return 0
    mib = 1024**2
    pairs: list[tuple[str, object]] = [
        ("model", f"{args.model} ({shape.architecture}, {shape.n_layer} layers, {shape.quant})"),
        ("context", est.n_ctx),
        ("GPU layers", est.n_gpu_layers),
    ]
    for key in (
        "weights_bytes",
        "kv_bytes",
        "compute_bytes",
        "overhead_bytes",
        "ram_bytes",
        "ram_peak_bytes",
        "vram_bytes",
        "vram_peak_bytes",
    ):
        pairs.append((key, f"{doc[key] / mib:,.1f} MiB"))
    ctx.echo(format_pairs(pairs, indent=""))
    ctx.echo("assumes batch 512, micro-batch 512, f16 KV cache, mmap, no flash attention")
    return 0
