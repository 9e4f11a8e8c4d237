"""The hardware profile and the fit's recommendation as text, for `profile` and the wizard."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from profiler.fit import Recommendation
    from profiler.hardware import Hardware, LlamaBuild

GIB = 1024**3
# llama_print_system_info() names the compiled-in GPU backend; the first match wins.
GPU_BACKENDS = (("CUDA", "CUDA"), ("METAL", "Metal"), ("VULKAN", "Vulkan"), ("HIP", "ROCm"))


def llama_backend(build: LlamaBuild) -> str:
    """The llama.cpp build in a few words: version and backend (`0.3.36, CPU AVX2`)."""
    if not build.available:
        return "llama.cpp not installed"
    info = (build.system_info or "").upper()
    backend = next((name for key, name in GPU_BACKENDS if f"{key} :" in info), None)
    if backend is None:
        backend = "GPU offload" if build.gpu_offload else "CPU"
        if build.simd_required:
            backend += " " + " ".join(build.simd_required)
    return f"llama-cpp-python {build.version or '?'}, {backend}"


def _gib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / GIB:.1f} GiB"


def render_hardware(hw: Hardware) -> str:
    from cortensor_desktop.table import format_pairs, format_table
    from profiler.hardware import SIMD_FEATURES, hardware_warnings

    cpu, mem = hw.cpu, hw.memory
    freq = cpu.freq_mhz_max or cpu.freq_mhz_current
    simd = " ".join(f for f in SIMD_FEATURES if f in cpu.flags) or "none known"
    memory = f"{_gib(mem.total_bytes)} total, {_gib(mem.available_bytes)} available"
    if mem.swap_total_bytes is not None:
        memory += f", swap {_gib(mem.swap_total_bytes)}"
    if mem.cgroup_limit_bytes is not None:
        memory += f", container limit {_gib(mem.cgroup_limit_bytes)}"
    bandwidth = mem.read_bandwidth_bytes_per_s
    build = hw.llama_build
    if build is None or not build.available:
        llama = "not installed (unknown)"
    else:
        llama = f"{build.version or '?'}, " + (
            "GPU offload" if hw.gpu_offload_supported else "CPU only"
        )
        if build.simd_required:
            llama += f", built for {' '.join(build.simd_required)}"
    pairs: list[tuple[str, object]] = [
        ("OS / arch", f"{hw.os} {hw.arch}"),
        ("CPU", cpu.brand),
        ("cores", f"{cpu.physical_cores} physical, {cpu.logical_cores} logical"),
        ("frequency", f"{freq:.0f} MHz" if freq else "unknown"),
        ("caches", f"L2 {_kib(cpu.cache_l2_bytes)}, L3 {_kib(cpu.cache_l3_bytes)}"),
        ("SIMD", simd),
        ("memory", memory),
        ("read bandwidth", f"{bandwidth / 1e9:.1f} GB/s" if bandwidth else "unknown"),
        ("disk free", _gib(hw.disk_free_bytes) + (f" at {hw.models_dir}" if hw.models_dir else "")),
        (
            "battery",
            {None: "none or unknown", True: "on battery", False: "plugged in"}[hw.on_battery],
        ),
        ("temperatures", ", ".join(f"{k} {v:.0f} C" for k, v in hw.temperatures_c) or "unknown"),
        ("llama.cpp", llama),
        ("source", hw.source),
    ]
    out = ["Hardware", format_pairs(pairs), "", "GPUs"]
    if hw.gpus:
        rows = [
            [
                g.index,
                g.vendor,
                g.name,
                _gib(g.memory_total_bytes),
                _gib(g.memory_free_bytes),
                g.compute_capability or "",
                "yes" if g.integrated else "no",
            ]
            for g in hw.gpus
        ]
        headers = ["#", "vendor", "name", "total", "free", "cc", "integrated"]
        out.append(format_table(headers, rows, indent="  "))
    else:
        out.append("  none found (CPU only)")
    warnings = hardware_warnings(hw)
    if warnings:
        out += ["", "Warnings", *(f"  ! {w}" for w in warnings)]
    return "\n".join(out)


def _kib(value: int | None) -> str:
    if value is None:
        return "?"
    return f"{value // 1024**2} MiB" if value >= 1024**2 else f"{value // 1024} KiB"


def render_recommendation(rec: Recommendation) -> str:
    from cortensor_desktop.table import format_pairs

    speed = (
        f"{rec.expected_tokens_per_s:.1f} tokens/s ({rec.speed_source})"
        if rec.expected_tokens_per_s is not None
        else "unknown"
    )
    pairs: list[tuple[str, object]] = [
        ("model", rec.model_id),
        ("quant", rec.quant + (f" ({rec.file_name})" if rec.file_name else "")),
        ("context", rec.n_ctx),
        ("GPU layers", rec.n_gpu_layers),
        ("threads", rec.n_threads),
        ("tier", rec.tier),
        ("peak RAM", _gib(rec.estimated_ram_bytes)),
        ("peak VRAM", _gib(rec.estimated_vram_bytes)),
        ("speed", speed),
    ]
    if rec.load_anyway:
        pairs.append(("load anyway", "yes: the estimate says it does not fit"))
    return "\n".join(
        ["Recommendation", format_pairs(pairs), "", "Reasons", *(f"  - {r}" for r in rec.reasons)]
    )
