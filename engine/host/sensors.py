"""This machine read at run time: the one path from psutil and NVML to the hosts.

Two readers share it. `policy_readings()` gives the polite-mining policies their inputs
(temperatures, battery, local time); `hardware_reading()` gives views the `HardwareSample` event
(CPU, RAM, CPU temperature, GPUs), which the node host publishes on its run loop. Tests pass
functions returning psutil's own shapes (its named tuples), so the conversion here and in
`engine.host.policies.readings_from_psutil` is the path they exercise. A sensor that is missing
or fails reads as unknown, never as an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from engine.host.policies import Readings, cpu_temperature, readings_from_psutil
from engine.state.events import GpuSample, HardwareSample
from profiler.hardware import GPU

# psutil-shaped inputs of `readings_from_psutil`
Temperatures = dict[str, list[tuple[str, float | None, float | None, float | None]]]
Battery = tuple[float, float, bool] | None


def _psutil_temperatures() -> Any:
    import psutil

    return getattr(psutil, "sensors_temperatures", dict)()


def _psutil_battery() -> Any:
    import psutil

    return getattr(psutil, "sensors_battery", lambda: None)()


def read_temperatures(read: Callable[[], Any] = _psutil_temperatures) -> Temperatures:
    """psutil's `sensors_temperatures()` as plain tuples; {} where the OS has no sensors."""
    try:
        return {
            chip: [(e.label, e.current, e.high, e.critical) for e in entries]
            for chip, entries in (read() or {}).items()
        }
    except (OSError, AttributeError, RuntimeError):
        return {}


def read_battery(read: Callable[[], Any] = _psutil_battery) -> Battery:
    """psutil's `sensors_battery()` as (percent, seconds left, plugged); None without one."""
    try:
        info = read()
        if info is not None and info.power_plugged is not None:
            return (info.percent, info.secsleft, bool(info.power_plugged))
    except (OSError, AttributeError, RuntimeError):
        pass
    return None


def policy_readings(
    temperatures: Callable[[], Any] | None = None,
    battery: Callable[[], Any] | None = None,
    clock: Callable[[], datetime] = datetime.now,
    gpu_temp: Callable[[], float | None] | None = None,
) -> Callable[[], Readings]:
    """What the polite-mining policies decide on: psutil's sensors and battery by default."""

    def sample() -> Readings:
        temps = read_temperatures(temperatures or _psutil_temperatures)
        plugged = read_battery(battery or _psutil_battery)
        gpu = gpu_temp() if gpu_temp is not None else None
        return readings_from_psutil(clock().time(), temps, plugged, gpu)

    return sample


def nvidia_gpus() -> list[GPU]:
    from profiler.nvml import probe_nvidia

    return probe_nvidia()


def hottest_nvidia_gpu() -> float | None:
    """The highest NVIDIA GPU temperature in °C through NVML; None without a driver or sensor."""
    temps = [g.temperature_c for g in nvidia_gpus() if g.temperature_c is not None]
    return max(temps) if temps else None


def gpu_samples(gpus: Sequence[GPU]) -> tuple[GpuSample, ...]:
    return tuple(
        GpuSample(
            index=gpu.index,
            name=gpu.name,
            util_percent=gpu.utilisation_pct,
            mem_used_bytes=(
                gpu.memory_total_bytes - gpu.memory_free_bytes
                if gpu.memory_total_bytes is not None and gpu.memory_free_bytes is not None
                else None
            ),
            mem_total_bytes=gpu.memory_total_bytes,
            temp_c=gpu.temperature_c,
        )
        for gpu in gpus
    )


def hardware_reading(
    temperatures: Callable[[], Any] | None = None,
    gpus: Callable[[], Sequence[GPU]] = nvidia_gpus,
) -> Callable[[], HardwareSample]:
    """What the hardware panel shows: CPU load since the last call, RAM, CPU temperature, GPUs."""
    import psutil

    psutil.cpu_percent(interval=None)  # the first call only primes the counter

    def sample() -> HardwareSample:
        mem = psutil.virtual_memory()
        return HardwareSample(
            cpu_percent=psutil.cpu_percent(interval=None),
            ram_used_bytes=int(mem.used),
            ram_total_bytes=int(mem.total),
            cpu_temp_c=cpu_temperature(read_temperatures(temperatures or _psutil_temperatures)),
            gpus=gpu_samples(gpus()),
        )

    return sample
