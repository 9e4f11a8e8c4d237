"""A fake `pynvml` answering with a recorded card's figures: this machine has no NVIDIA GPU, so
tests feed one through the real profiler/nvml.py code path (and say so in their names)."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"


def fake_pynvml(answers: str = "rtx3090_nvml_answers.json") -> types.ModuleType:
    """A module with the NVML functions profiler/nvml.py calls, each answering from the file."""
    raw = json.loads((DATA / answers).read_text(encoding="utf-8"))
    devices: list[dict[str, Any]] = raw["devices"]
    module = types.ModuleType("pynvml")
    ns = types.SimpleNamespace

    def device(handle: int) -> dict[str, Any]:
        return devices[handle]

    functions: dict[str, Any] = {
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: None,
        "nvmlDeviceGetCount": lambda: len(devices),
        "nvmlSystemGetDriverVersion": lambda: raw["driver"],
        "nvmlDeviceGetHandleByIndex": lambda index: index,
        "nvmlDeviceGetName": lambda h: device(h)["name"],
        "nvmlDeviceGetUUID": lambda h: device(h)["uuid"],
        "nvmlDeviceGetMemoryInfo": lambda h: ns(
            total=device(h)["memory_total"],
            free=device(h)["memory_free"],
            used=device(h)["memory_total"] - device(h)["memory_free"],
        ),
        "nvmlDeviceGetCudaComputeCapability": lambda h: tuple(device(h)["cuda_compute_capability"]),
        "nvmlDeviceGetTemperature": lambda h, _sensor: device(h)["temperature_c"],
        "nvmlDeviceGetPowerUsage": lambda h: device(h)["power_mw"],
        "nvmlDeviceGetUtilizationRates": lambda h: ns(gpu=device(h)["utilisation_gpu_pct"]),
        "nvmlDeviceGetMemoryBusWidth": lambda h: device(h)["memory_bus_width_bits"],
        "nvmlDeviceGetMaxClockInfo": lambda h, _clock: device(h)["max_memory_clock_mhz"],
    }
    for name, fn in functions.items():
        setattr(module, name, fn)
    return module
