"""Adapter: NVIDIA GPUs through nvidia-ml-py. Every query goes through `nvml_query`.

Like nvitop's one helper: "not supported", "not found", "no driver" and any other NVML error
become None (unknown) there, so callers never see an exception. No driver is a normal result:
`probe_nvidia()` returns an empty list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from profiler.hardware import GPU


def nvml_query(fn: Callable[..., Any], *args: Any) -> Any | None:
    """Call one NVML function; any NVML failure (or a missing symbol) is None, never raised."""
    try:
        value = fn(*args)
    except Exception:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def probe_nvidia() -> list[GPU]:
    try:
        import pynvml  # provided by nvidia-ml-py
    except ImportError:
        return []
    if nvml_query(pynvml.nvmlInit) is None and not _initialised(pynvml):
        return []
    try:
        count = nvml_query(pynvml.nvmlDeviceGetCount) or 0
        driver = nvml_query(pynvml.nvmlSystemGetDriverVersion)
        return [g for i in range(count) if (g := _device(pynvml, i, driver)) is not None]
    finally:
        nvml_query(pynvml.nvmlShutdown)


def _initialised(pynvml: Any) -> bool:
    # nvmlInit returns None on success too; check that the library answers.
    return nvml_query(pynvml.nvmlDeviceGetCount) is not None


def _device(pynvml: Any, index: int, driver: str | None) -> GPU | None:
    handle = nvml_query(pynvml.nvmlDeviceGetHandleByIndex, index)
    if handle is None:
        return None
    memory = nvml_query(pynvml.nvmlDeviceGetMemoryInfo, handle)
    cc = nvml_query(pynvml.nvmlDeviceGetCudaComputeCapability, handle)
    temp = nvml_query(pynvml.nvmlDeviceGetTemperature, handle, 0)  # NVML_TEMPERATURE_GPU
    power_mw = nvml_query(pynvml.nvmlDeviceGetPowerUsage, handle)
    util = nvml_query(pynvml.nvmlDeviceGetUtilizationRates, handle)
    bus_bits = nvml_query(pynvml.nvmlDeviceGetMemoryBusWidth, handle)
    mem_clock = nvml_query(pynvml.nvmlDeviceGetMaxClockInfo, handle, 2)  # NVML_CLOCK_MEM, MHz
    bandwidth = None
    if bus_bits and mem_clock:
        # NVML reports the memory clock such that DDR transfers twice per clock.
        bandwidth = float(mem_clock) * 1e6 * 2 * int(bus_bits) / 8
    return GPU(
        vendor="nvidia",
        name=nvml_query(pynvml.nvmlDeviceGetName, handle) or f"NVIDIA GPU {index}",
        memory_total_bytes=int(memory.total) if memory is not None else None,
        memory_free_bytes=int(memory.free) if memory is not None else None,
        integrated=False,
        compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
        index=index,
        uuid=nvml_query(pynvml.nvmlDeviceGetUUID, handle),
        driver=driver,
        memory_bandwidth_bytes_per_s=bandwidth,
        temperature_c=float(temp) if temp is not None else None,
        power_w=power_mw / 1000 if power_mw is not None else None,
        utilisation_pct=float(util.gpu) if util is not None else None,
    )
