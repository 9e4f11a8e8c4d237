"""Adapter: read this machine into a `Hardware` (procfs, psutil, NVML, sysfs, llama.cpp).

Slow facts that do not change while the machine is up (CPU model and flags, memory read
bandwidth, what the llama.cpp build can do) are measured once and kept in a cache (the home
database, through the small `ProbeCache` protocol); fast, changing facts (available memory,
free VRAM, disk, battery, temperatures) are read every time. Every source may be missing: an
absent fact is None, never an exception.
"""

from __future__ import annotations

import contextlib
import platform
import re
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

from profiler.hardware import (
    CPU,
    GIB,
    GPU,
    SIMD_FEATURES,
    Hardware,
    LlamaBuild,
    Memory,
    normalise_arch,
    normalise_flags,
)
from profiler.nvml import probe_nvidia

STATIC_KEY = "profiler.static.v1"
LAST_KEY = "profiler.hardware.last"
BANDWIDTH_BUFFER_BYTES = 64 * 1024**2


class ProbeCache(Protocol):
    """What the probe needs from a cache; `engine.state.database.Database` provides it."""

    def cache_get(self, key: str, max_age_s: float | None = None) -> Any | None: ...

    def cache_put(self, key: str, value: Any) -> None: ...


def probe(
    cache: ProbeCache | None = None,
    models_dir: Path | None = None,
    *,
    refresh: bool = False,
    measure_bandwidth: bool = True,
) -> Hardware:
    """Probe the machine. With a cache, the slow static part is reused (warm: well under 300 ms)."""
    static, source = None, "probe"
    fingerprint = _fingerprint()
    if cache is not None and not refresh:
        cached = cache.cache_get(STATIC_KEY)
        if isinstance(cached, dict) and cached.get("fingerprint") == fingerprint:
            static, source = cached, "cache"
    if static is None:
        static = _static_facts(measure_bandwidth)
        static["fingerprint"] = fingerprint
        if cache is not None:
            cache.cache_put(STATIC_KEY, static)
    hardware = _assemble(static, models_dir, source)
    if cache is not None:
        with contextlib.suppress(Exception):
            cache.cache_put(LAST_KEY, hardware.to_json())
    return hardware


def last_probe(cache: ProbeCache) -> Hardware | None:
    """The last probe's result without probing (for a UI that must show something at once)."""
    raw = cache.cache_get(LAST_KEY)
    if not isinstance(raw, dict):
        return None
    try:
        return Hardware.from_json(raw, "cached probe")
    except Exception:
        return None


# --- static facts (cached) ------------------------------------------------------------------


def _fingerprint() -> dict[str, Any]:
    """What invalidates the static cache: a reboot (hardware may change), another build."""
    boot_id = _read_text("/proc/sys/kernel/random/boot_id")
    if boot_id is None:
        with contextlib.suppress(Exception):
            import psutil

            boot_id = str(int(psutil.boot_time()))
    return {
        "boot": (boot_id or "").strip(),
        "python": sys.executable,
        "llama_cpp": _dist_version("llama-cpp-python"),
    }


def _static_facts(measure_bandwidth: bool) -> dict[str, Any]:
    cpu = probe_cpu()
    return {
        "cpu": asdict(cpu),
        "bandwidth": measure_read_bandwidth() if measure_bandwidth else None,
        "llama_build": asdict(probe_llama_build()),
        "gpus_static": [asdict(g) for g in _static_gpus(cpu)],
    }


def probe_cpu() -> CPU:
    if sys.platform.startswith("linux"):
        text = _read_text("/proc/cpuinfo")
        if text:
            parsed = parse_proc_cpuinfo(text)
            if parsed is not None:
                return _with_freq_and_cache(parsed)
    return _cpu_from_py_cpuinfo()


def parse_proc_cpuinfo(text: str) -> CPU | None:
    """Pure: /proc/cpuinfo text -> CPU (x86 and ARM spellings)."""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    entries: list[dict[str, str]] = []
    for block in blocks:
        entry: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip().lower()] = value.strip()
        if "processor" in entry:
            entries.append(entry)
    if not entries:
        return None
    first = entries[0]
    flags = (first.get("flags") or first.get("features") or "").split()
    cores = {(e.get("physical id", "0"), e.get("core id", e["processor"])) for e in entries}
    logical = len(entries)
    physical = len(cores) if any("core id" in e for e in entries) else logical
    brand = (
        first.get("model name")
        or first.get("hardware")
        or first.get("model")
        or _arm_brand(first)
        or platform.processor()
        or "unknown CPU"
    )
    vendor = first.get("vendor_id") or first.get("cpu implementer")
    mhz = first.get("cpu mhz")
    cache = first.get("cache size", "")
    cache_match = re.match(r"(\d+)\s*KB", cache, re.IGNORECASE)
    return CPU(
        brand=brand,
        physical_cores=max(1, physical),
        logical_cores=max(1, logical, physical),
        flags=normalise_flags(flags),
        vendor=_vendor_name(vendor),
        freq_mhz_current=float(mhz) if mhz and _is_number(mhz) else None,
        cache_l3_bytes=int(cache_match.group(1)) * 1024 if cache_match else None,
    )


def _arm_brand(entry: dict[str, str]) -> str | None:
    part = entry.get("cpu part")
    return f"ARM CPU (part {part})" if part else None


def _vendor_name(raw: str | None) -> str | None:
    names = {"GenuineIntel": "intel", "AuthenticAMD": "amd", "0x41": "arm", "0x61": "apple"}
    return names.get(raw or "", raw.lower() if raw else None)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _with_freq_and_cache(cpu: CPU) -> CPU:
    max_mhz = None
    raw = _read_text("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if raw and raw.strip().isdigit():
        max_mhz = int(raw.strip()) / 1000
    l2 = _sysfs_cache_bytes(2)
    l3 = _sysfs_cache_bytes(3) or cpu.cache_l3_bytes
    return replace(cpu, freq_mhz_max=max_mhz, cache_l2_bytes=l2, cache_l3_bytes=l3)


def _sysfs_cache_bytes(level: int) -> int | None:
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    with contextlib.suppress(OSError):
        for index in sorted(base.glob("index*")):
            if (index / "level").read_text().strip() == str(level):
                size = (index / "size").read_text().strip()
                match = re.match(r"(\d+)([KMG]?)", size)
                if match:
                    mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[match.group(2)]
                    return int(match.group(1)) * mult
    return None


def _cpu_from_py_cpuinfo() -> CPU:
    """Elsewhere (macOS, Windows): py-cpuinfo, about a second (cached afterwards)."""
    import psutil

    info: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        import cpuinfo

        info = cpuinfo.get_cpu_info()
    logical = psutil.cpu_count(logical=True) or 1
    physical = psutil.cpu_count(logical=False) or logical
    flags = list(info.get("flags") or [])
    arch = normalise_arch(platform.machine())
    if arch == "arm64" and sys.platform == "darwin":
        flags += ["neon", "dotprod", "fma"]  # every Apple Silicon core has them
    hz = info.get("hz_advertised")
    return CPU(
        brand=str(info.get("brand_raw") or platform.processor() or "unknown CPU"),
        physical_cores=physical,
        logical_cores=max(logical, physical),
        flags=normalise_flags(flags),
        vendor=_vendor_name(info.get("vendor_id_raw")),
        freq_mhz_max=hz[0] / 1e6 if isinstance(hz, list | tuple) and hz else None,
        cache_l2_bytes=_int_or_none(info.get("l2_cache_size")),
        cache_l3_bytes=_int_or_none(info.get("l3_cache_size")),
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def measure_read_bandwidth(budget_s: float = 0.25) -> float | None:
    """Single-stream memory read bandwidth (bytes/s): sums a 64 MiB buffer a few times.

    A lower bound of what llama.cpp's threads reach together; the fit's speed estimate uses it
    with that in mind. Takes a fraction of a second; cached with the static facts.
    """
    try:
        import numpy as np
    except ImportError:
        return None
    buffer = np.ones(BANDWIDTH_BUFFER_BYTES // 8, dtype=np.float64)
    buffer.sum()  # fault the pages in
    best = 0.0
    deadline = time.perf_counter() + budget_s
    for _ in range(8):
        start = time.perf_counter()
        buffer.sum()
        elapsed = time.perf_counter() - start
        if elapsed > 0:
            best = max(best, BANDWIDTH_BUFFER_BYTES / elapsed)
        if time.perf_counter() > deadline:
            break
    return best or None


SIMD_NAMES = {
    "sse3": "sse3",
    "ssse3": "ssse3",
    "avx": "avx",
    "avx2": "avx2",
    "f16c": "f16c",
    "fma": "fma",
    "bmi2": "bmi2",
    "avx512": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16",
    "avx_vnni": "avx_vnni",
    "neon": "neon",
    "dotprod": "dotprod",
    "sve": "sve",
    "matmul_int8": "i8mm",
}


def parse_system_info(text: str) -> tuple[str, ...]:
    """Pure: llama_print_system_info() text -> the SIMD features the CPU backend was built for."""
    found = []
    for name, value in re.findall(r"([A-Za-z0-9_]+)\s*=\s*(\d+)", text):
        feature = SIMD_NAMES.get(name.lower())
        if feature and value != "0":
            found.append(feature)
    return tuple(sorted(f for f in set(found) if f in SIMD_FEATURES))


def probe_llama_build() -> LlamaBuild:
    """Import llama_cpp lazily; its absence (or a broken build) is 'unknown', not an error."""
    try:
        import llama_cpp
    except Exception:
        return LlamaBuild(available=False)
    info = None
    with contextlib.suppress(Exception):
        raw = llama_cpp.llama_print_system_info()
        info = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    offload = None
    with contextlib.suppress(Exception):
        offload = bool(llama_cpp.llama_supports_gpu_offload())
    return LlamaBuild(
        available=True,
        version=getattr(llama_cpp, "__version__", None),
        gpu_offload=offload,
        system_info=info.strip() if info else None,
        simd_required=parse_system_info(info or ""),
    )


def _static_gpus(cpu: CPU) -> list[GPU]:
    """GPUs whose identity is slow or fixed: Apple Silicon, and AMD/Intel through sysfs."""
    gpus: list[GPU] = []
    if sys.platform == "darwin" and normalise_arch(platform.machine()) == "arm64":
        gpus.append(
            GPU(
                vendor="apple",
                name=f"{cpu.brand} GPU (Metal)",
                memory_total_bytes=None,  # filled from RAM at assembly
                memory_free_bytes=None,
                integrated=True,
                unified_memory=True,
            )
        )
    gpus.extend(_sysfs_gpus())
    return gpus


def _sysfs_gpus() -> list[GPU]:
    """AMD and Intel through /sys/class/drm, best effort (amdgpu exposes VRAM figures)."""
    out: list[GPU] = []
    base = Path("/sys/class/drm")
    if not base.is_dir():
        return out
    for card in sorted(base.glob("card[0-9]")):
        device = card / "device"
        vendor_id = (_read_text(str(device / "vendor")) or "").strip()
        vendor = {"0x1002": "amd", "0x8086": "intel"}.get(vendor_id)
        if vendor is None:
            continue
        product = (_read_text(str(device / "device")) or "").strip()
        total = _read_int(device / "mem_info_vram_total")
        used = _read_int(device / "mem_info_vram_used")
        integrated = (vendor == "intel" and total is None) or (total is not None and total < GIB)
        out.append(
            GPU(
                vendor=vendor,
                name=f"{vendor.upper()} GPU {product}".strip(),
                memory_total_bytes=total,
                memory_free_bytes=total - used if total is not None and used is not None else None,
                integrated=bool(integrated),
                index=len(out),
            )
        )
    return out


# --- dynamic facts (every probe) -------------------------------------------------------------


def _assemble(static: dict[str, Any], models_dir: Path | None, source: str) -> Hardware:
    import psutil

    cpu_raw = dict(static["cpu"])
    cpu_raw["flags"] = tuple(cpu_raw.get("flags") or ())
    cpu = CPU(**cpu_raw)
    memory = probe_memory(static.get("bandwidth"))
    build_raw = dict(static["llama_build"])
    build_raw["simd_required"] = tuple(build_raw.get("simd_required") or ())
    build = LlamaBuild(**build_raw)
    gpus: list[GPU] = [_refresh_static_gpu(GPU(**g), memory) for g in static["gpus_static"]]
    gpus = probe_nvidia() + gpus
    gpus = [replace(g, index=i) for i, g in enumerate(gpus)]
    offload = bool(build.gpu_offload)
    battery = None
    with contextlib.suppress(Exception):
        info = psutil.sensors_battery()
        battery = None if info is None else not info.power_plugged
    temps: dict[str, float] = {}
    with contextlib.suppress(Exception):
        for chip, readings in (psutil.sensors_temperatures() or {}).items():
            if readings:
                temps[chip] = float(max(r.current for r in readings))
    return Hardware(
        os=_os_name(),
        arch=normalise_arch(platform.machine()),
        cpu=cpu,
        memory=memory,
        gpus=tuple(gpus),
        gpu_offload_supported=offload,
        disk_free_bytes=_disk_free(models_dir),
        models_dir=str(models_dir) if models_dir else None,
        on_battery=battery,
        temperatures_c=tuple(sorted(temps.items())),
        llama_build=build,
        source=source,
    )


def _refresh_static_gpu(gpu: GPU, memory: Memory) -> GPU:
    if gpu.vendor != "apple":
        return gpu
    # Metal's recommendedMaxWorkingSetSize: about 2/3 of RAM up to 36 GiB, 3/4 above.
    share = 0.75 if memory.total_bytes > 36 * GIB else 2 / 3
    working_set = int(memory.total_bytes * share)
    return replace(
        gpu,
        memory_total_bytes=working_set,
        memory_free_bytes=min(working_set, memory.available_bytes),
    )


def probe_memory(bandwidth: float | None) -> Memory:
    import psutil

    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    limit, usage = _cgroup_memory()
    available = int(vm.available)
    if limit is not None and limit < vm.total:
        room = limit - (usage or 0)
        available = max(0, min(available, room))
    return Memory(
        total_bytes=int(vm.total),
        available_bytes=available,
        swap_total_bytes=int(swap.total),
        swap_free_bytes=int(swap.free),
        cgroup_limit_bytes=limit if limit is not None and limit < vm.total else None,
        read_bandwidth_bytes_per_s=bandwidth,
    )


def _cgroup_memory() -> tuple[int | None, int | None]:
    """(limit, usage) of this process's cgroup, v2 then v1; None where unlimited or unknown."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit = _read_int(Path(limit_file))
        if limit is not None:
            if limit >= 2**60:  # v1 "unlimited"
                return None, None
            return limit, _read_int(Path(usage_file))
    return None, None


def _disk_free(models_dir: Path | None) -> int | None:
    target = models_dir or Path.home()
    while not target.exists() and target != target.parent:
        target = target.parent
    try:
        return int(shutil.disk_usage(target).free)
    except OSError:
        return None


def _os_name() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform.startswith("win"):
        return "windows"
    return sys.platform


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(str(path))
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() else None


def _dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None
