"""What the probe found: plain frozen data, readable from and writable to JSON.

A recorded file (`profile --hardware FILE`) goes through `Hardware.from_json`, the same path a
live probe's cached result takes, so recorded machines exercise the real fit. Required fields
are listed in docs/PROFILER.md; everything else is optional and an absent value is None
(unknown), never a guess.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from profiler.errors import HardwareFileError

GIB = 1024**3
OS_NAMES = ("linux", "darwin", "windows")
GPU_VENDORS = ("nvidia", "amd", "intel", "apple")
ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64", "armv8": "arm64"}

# One spelling per SIMD feature, whatever /proc/cpuinfo, py-cpuinfo or macOS call it.
FLAG_ALIASES = {
    "avx512vnni": "avx512_vnni",
    "avx512bf16": "avx512_bf16",
    "avx512vbmi": "avx512_vbmi",
    "avx512_vbmi": "avx512_vbmi",
    "avxvnni": "avx_vnni",
    "asimd": "neon",
    "asimdhp": "neon_fp16",
    "fphp": "neon_fp16",
    "asimddp": "dotprod",
    "pni": "sse3",
    "fma3": "fma",
    "sse4.1": "sse4_1",
    "sse4.2": "sse4_2",
}
# The features that matter for llama.cpp's CPU kernels (others are kept, but these are checked).
SIMD_FEATURES = (
    "sse3",
    "ssse3",
    "avx",
    "avx2",
    "f16c",
    "fma",
    "bmi2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "neon",
    "dotprod",
    "sve",
    "i8mm",
)


def normalise_flags(flags: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    out = set()
    for flag in flags:
        name = flag.strip().lower().replace("-", "_")
        if name:
            out.add(FLAG_ALIASES.get(name, name))
    return tuple(sorted(out))


def normalise_arch(arch: str) -> str:
    name = arch.strip().lower()
    return ARCH_ALIASES.get(name, name)


@dataclass(frozen=True)
class CPU:
    brand: str
    physical_cores: int
    logical_cores: int
    flags: tuple[str, ...]
    vendor: str | None = None
    freq_mhz_max: float | None = None
    freq_mhz_current: float | None = None
    cache_l2_bytes: int | None = None
    cache_l3_bytes: int | None = None

    def has(self, flag: str) -> bool:
        return flag in self.flags


@dataclass(frozen=True)
class Memory:
    total_bytes: int
    available_bytes: int  # already capped by the cgroup limit when there is one
    swap_total_bytes: int | None = None
    swap_free_bytes: int | None = None
    cgroup_limit_bytes: int | None = None
    read_bandwidth_bytes_per_s: float | None = None


@dataclass(frozen=True)
class GPU:
    vendor: str
    name: str
    memory_total_bytes: int | None
    memory_free_bytes: int | None
    integrated: bool
    compute_capability: str | None = None
    index: int = 0
    uuid: str | None = None
    driver: str | None = None
    unified_memory: bool = False
    memory_bandwidth_bytes_per_s: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    utilisation_pct: float | None = None


@dataclass(frozen=True)
class LlamaBuild:
    """What the installed llama.cpp build can do; None fields are unknown (no llama_cpp)."""

    available: bool
    version: str | None = None
    gpu_offload: bool | None = None  # llama_supports_gpu_offload()
    system_info: str | None = None
    simd_required: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hardware:
    os: str
    arch: str
    cpu: CPU
    memory: Memory
    gpus: tuple[GPU, ...]
    gpu_offload_supported: bool
    disk_free_bytes: int | None = None
    models_dir: str | None = None
    on_battery: bool | None = None
    temperatures_c: tuple[tuple[str, float], ...] = ()
    llama_build: LlamaBuild | None = None
    source: str = "probe"  # "probe", "cache" or "recorded:<file>"
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["cpu"]["flags"] = list(self.cpu.flags)
        doc["gpus"] = [asdict(g) for g in self.gpus]
        doc["temperatures_c"] = dict(self.temperatures_c)
        if self.llama_build is not None:
            doc["llama_build"]["simd_required"] = list(self.llama_build.simd_required)
        doc["warnings"] = list(hardware_warnings(self))
        return doc

    @classmethod
    def from_json(cls, raw: Any, where: str = "hardware") -> Hardware:
        return _hardware(raw, where)


def load_hardware_file(path: Path) -> Hardware:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HardwareFileError(f"{path}: hardware file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HardwareFileError(f"{path}: cannot read the hardware file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise HardwareFileError(f"{path}: not valid JSON ({exc})") from None
    hw = Hardware.from_json(raw, str(path))
    return _replace_source(hw, f"recorded:{path.name}")


def _replace_source(hw: Hardware, source: str) -> Hardware:
    from dataclasses import replace

    return replace(hw, source=source)


def missing_build_simd(hw: Hardware) -> tuple[str, ...]:
    """SIMD features the llama.cpp build was compiled for that this CPU lacks (SIGILL ahead)."""
    build = hw.llama_build
    if build is None or not build.simd_required or not hw.cpu.flags:
        return ()
    return tuple(f for f in build.simd_required if f not in hw.cpu.flags)


def hardware_warnings(hw: Hardware) -> tuple[str, ...]:
    """Facts the user must hear before a crash tells them: pure, from the probe's data."""
    out: list[str] = []
    discrete = [g for g in hw.gpus if g.vendor != "apple"]
    if hw.gpus and not hw.gpu_offload_supported:
        names = ", ".join(g.name for g in (discrete or list(hw.gpus)))
        out.append(
            f"GPU found ({names}) but this llama.cpp build cannot use it (CPU-only build); "
            "install a CUDA/Metal/Vulkan build of llama-cpp-python to offload"
        )
    missing = missing_build_simd(hw)
    if missing:
        out.append(
            f"this CPU lacks {', '.join(m.upper() for m in missing)} that this llama.cpp "
            "build needs: loading a model would crash (SIGILL); install a build made "
            "for this CPU (GGML_NATIVE=OFF with a lower baseline, or GGML_CPU_ALL_VARIANTS=ON)"
        )
    mem = hw.memory
    if mem.cgroup_limit_bytes is not None and mem.cgroup_limit_bytes < mem.total_bytes:
        out.append(
            f"running in a container limited to {mem.cgroup_limit_bytes / GIB:.1f} GiB "
            f"of the host's {mem.total_bytes / GIB:.1f} GiB; the fit uses the limit"
        )
    if hw.on_battery:
        out.append("on battery: generation speed may drop and the node may be suspended")
    for g in hw.gpus:
        if g.vendor in ("amd", "intel") and g.memory_free_bytes is None:
            out.append(f"{g.name}: free memory unknown (no vendor tool); not used for the fit")
    return (*hw.warnings, *(w for w in out if w not in hw.warnings))


# --- parsing -------------------------------------------------------------------------------


def _bad(where: str, message: str) -> HardwareFileError:
    return HardwareFileError(f"{where}: {message}")


def _obj(raw: Any, key: str, where: str) -> dict[str, Any]:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise _bad(where, f"'{key}' missing or not an object")
    return value


def _int(raw: dict[str, Any], key: str, where: str, required: bool = True) -> int | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(where, f"'{key}' must be a non-negative integer")
    return value


def _req_int(raw: dict[str, Any], key: str, where: str) -> int:
    value = _int(raw, key, where)
    assert value is not None
    return value


def _float(raw: dict[str, Any], key: str, where: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _bad(where, f"'{key}' must be a number or null")
    return float(value)


def _str(raw: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _bad(where, f"'{key}' must be a non-empty string")
    return value


def _req_str(raw: dict[str, Any], key: str, where: str) -> str:
    value = _str(raw, key, where)
    assert value is not None
    return value


def _bool(raw: dict[str, Any], key: str, where: str, required: bool = True) -> bool | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, bool):
        raise _bad(where, f"'{key}' must be true or false")
    return value


def _hardware(raw: Any, where: str) -> Hardware:
    if not isinstance(raw, dict):
        raise _bad(where, "expected a JSON object")
    if "hardware" in raw and isinstance(raw["hardware"], dict) and "cpu" not in raw:
        raw = raw["hardware"]  # accept `profile --json` output as a recorded file
    os_name = _req_str(raw, "os", where).lower()
    if os_name not in OS_NAMES:
        raise _bad(where, f"'os' must be one of {', '.join(OS_NAMES)}")
    gpus_raw = raw.get("gpus")
    if not isinstance(gpus_raw, list):
        raise _bad(where, "'gpus' missing or not a list")
    temps = raw.get("temperatures_c") or {}
    if not isinstance(temps, dict):
        raise _bad(where, "'temperatures_c' must be an object")
    warnings = raw.get("recorded_warnings") or []
    offload = _bool(raw, "gpu_offload_supported", where)
    assert offload is not None
    return Hardware(
        os=os_name,
        arch=normalise_arch(_req_str(raw, "arch", where)),
        cpu=_cpu(_obj(raw, "cpu", where), f"{where}: cpu"),
        memory=_memory(_obj(raw, "memory", where), f"{where}: memory"),
        gpus=tuple(_gpu(g, f"{where}: gpus[{i}]", i) for i, g in enumerate(gpus_raw)),
        gpu_offload_supported=offload,
        disk_free_bytes=_int(raw, "disk_free_bytes", where, required=False),
        models_dir=_str(raw, "models_dir", where, required=False),
        on_battery=_bool(raw, "on_battery", where, required=False),
        temperatures_c=tuple(sorted((str(k), float(v)) for k, v in temps.items())),
        llama_build=_build(raw.get("llama_build"), f"{where}: llama_build"),
        source=str(raw.get("source") or "recorded"),
        warnings=tuple(str(w) for w in warnings),
    )


def _cpu(raw: dict[str, Any], where: str) -> CPU:
    flags = raw.get("flags")
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise _bad(where, "'flags' must be a list of strings")
    physical = _req_int(raw, "physical_cores", where)
    logical = _req_int(raw, "logical_cores", where)
    if physical < 1 or logical < physical:
        raise _bad(where, "need 1 <= physical_cores <= logical_cores")
    return CPU(
        brand=_req_str(raw, "brand", where),
        physical_cores=physical,
        logical_cores=logical,
        flags=normalise_flags(flags),
        vendor=_str(raw, "vendor", where, required=False),
        freq_mhz_max=_float(raw, "freq_mhz_max", where),
        freq_mhz_current=_float(raw, "freq_mhz_current", where),
        cache_l2_bytes=_int(raw, "cache_l2_bytes", where, required=False),
        cache_l3_bytes=_int(raw, "cache_l3_bytes", where, required=False),
    )


def _memory(raw: dict[str, Any], where: str) -> Memory:
    total = _req_int(raw, "total_bytes", where)
    available = _req_int(raw, "available_bytes", where)
    if available > total:
        raise _bad(where, "available_bytes is larger than total_bytes")
    return Memory(
        total_bytes=total,
        available_bytes=available,
        swap_total_bytes=_int(raw, "swap_total_bytes", where, required=False),
        swap_free_bytes=_int(raw, "swap_free_bytes", where, required=False),
        cgroup_limit_bytes=_int(raw, "cgroup_limit_bytes", where, required=False),
        read_bandwidth_bytes_per_s=_float(raw, "read_bandwidth_bytes_per_s", where),
    )


def _gpu(raw: Any, where: str, position: int) -> GPU:
    if not isinstance(raw, dict):
        raise _bad(where, "expected an object")
    vendor = _req_str(raw, "vendor", where).lower()
    if vendor not in GPU_VENDORS:
        raise _bad(where, f"'vendor' must be one of {', '.join(GPU_VENDORS)}")
    total = _int(raw, "memory_total_bytes", where, required=False)
    free = _int(raw, "memory_free_bytes", where, required=False)
    if total is not None and free is not None and free > total:
        raise _bad(where, "memory_free_bytes is larger than memory_total_bytes")
    integrated = _bool(raw, "integrated", where)
    assert integrated is not None
    cc = raw.get("compute_capability")
    if cc is not None and not isinstance(cc, str):
        raise _bad(where, "'compute_capability' must be a string like \"8.6\"")
    index = raw.get("index", position)
    return GPU(
        vendor=vendor,
        name=_req_str(raw, "name", where),
        memory_total_bytes=total,
        memory_free_bytes=free,
        integrated=integrated,
        compute_capability=cc,
        index=index if isinstance(index, int) and not isinstance(index, bool) else position,
        uuid=_str(raw, "uuid", where, required=False),
        driver=_str(raw, "driver", where, required=False),
        unified_memory=bool(raw.get("unified_memory", vendor == "apple")),
        memory_bandwidth_bytes_per_s=_float(raw, "memory_bandwidth_bytes_per_s", where),
        temperature_c=_float(raw, "temperature_c", where),
        power_w=_float(raw, "power_w", where),
        utilisation_pct=_float(raw, "utilisation_pct", where),
    )


def _build(raw: Any, where: str) -> LlamaBuild | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _bad(where, "expected an object")
    required = raw.get("simd_required") or []
    if not isinstance(required, list):
        raise _bad(where, "'simd_required' must be a list")
    return LlamaBuild(
        available=bool(raw.get("available", True)),
        version=raw.get("version"),
        gpu_offload=raw.get("gpu_offload") if isinstance(raw.get("gpu_offload"), bool) else None,
        system_info=raw.get("system_info"),
        simd_required=normalise_flags([str(f) for f in required]),
    )
