"""The fit over recorded machines: each decision and the reasons behind it.

The hardware files under recorded/ are probes of real machine types (real GPU names, VRAM
figures and core counts) fed through the same `Hardware.from_json` path as a live probe.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from profiler.catalogue import Catalogue
from profiler.errors import DoesNotFitError
from profiler.fit import Benchmark, FitSettings, Recommendation, recommend
from profiler.hardware import GIB, hardware_warnings

from .conftest import recorded


def _fit(name: str, catalogue: Catalogue, **overrides: Any) -> Recommendation:
    return recommend(recorded(name), catalogue, FitSettings(**overrides))


def _has(rec: Recommendation, *fragments: str) -> None:
    text = "\n".join(rec.reasons)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in reasons:\n{text}"


def test_recorded_vps_4gb_2core_gets_a_1b_model_on_one_thread(catalogue: Catalogue) -> None:
    rec = _fit("vps_4gb_2core", catalogue)
    assert (rec.model_id, rec.quant, rec.n_ctx) == ("llama-3.2-1b-instruct", "Q6_K", 8192)
    assert rec.n_gpu_layers == 0 and rec.n_threads == 1 and rec.tier == "cpu-low"
    _has(
        rec,
        "no GPU found: CPU only",
        "skipped llama-3.2-3b-instruct",  # bigger models are named with why they do not fit
        "needs 2.5 GiB RAM and 2.4 GiB is usable",
        "quant Q6_K: Q8_0 ctx 2048 on CPU: 4.9 tokens/s (estimate) is below the floor of 5",
        "threads 1: 2 physical cores, one left for the desktop",
    )
    assert rec.estimated_ram_bytes <= recorded("vps_4gb_2core").memory.available_bytes * 0.8


def test_recorded_laptop_8gb_on_battery_runs_3b_on_cpu(catalogue: Catalogue) -> None:
    hw = recorded("laptop_8gb")
    rec = recommend(hw, catalogue)
    assert (rec.model_id, rec.quant, rec.n_ctx, rec.n_gpu_layers) == (
        "llama-3.2-3b-instruct",
        "Q4_K_M",
        8192,
        0,
    )
    assert rec.n_threads == 3 and rec.tier == "cpu-low"
    _has(rec, "GPU found (Intel UHD Graphics 620) but this llama.cpp build cannot use it")
    _has(rec, "skipped gemma-3-4b-it", "is below the floor of 5")
    assert any("on battery" in w for w in hardware_warnings(hw))


def test_recorded_desktop_rtx3060_offloads_8b_q8_fully(catalogue: Catalogue) -> None:
    rec = _fit("desktop_16gb_rtx3060", catalogue)
    assert (rec.model_id, rec.quant, rec.n_ctx) == ("llama-3.1-8b-instruct", "Q8_0", 8192)
    assert rec.n_gpu_layers == 33  # 32 layers + the output layer
    assert rec.tier == "gpu-quantized" and rec.n_threads == 4
    _has(
        rec,
        "NVIDIA GeForce RTX 3060 (GPU 0): 11.6 GiB free - 1.0 GiB margin = 10.6 GiB usable",
        "offload: all 32 layers and the output on the GPU",
    )
    assert rec.estimated_vram_bytes <= 11.6 * GIB - GIB


def test_recorded_desktop_rtx3060_shrinks_quant_when_vram_is_taken(catalogue: Catalogue) -> None:
    hw = recorded("desktop_16gb_rtx3060")
    busy = replace(hw, gpus=(replace(hw.gpus[0], memory_free_bytes=int(7.5 * GIB)),))
    rec = recommend(busy, catalogue)
    assert rec.model_id == "llama-3.1-8b-instruct" and rec.n_gpu_layers == 33
    assert rec.quant == "Q5_K_M"
    _has(rec, "quant Q5_K_M: Q6_K ctx 2048 on the GPU needs", "and 6.5 GiB is free")


def test_recorded_workstation_rtx4090(catalogue: Catalogue) -> None:
    rec = _fit("workstation_64gb_rtx4090", catalogue)
    assert (rec.model_id, rec.quant, rec.n_ctx, rec.n_gpu_layers) == (
        "llama-3.1-8b-instruct",
        "Q8_0",
        8192,
        33,
    )
    assert rec.tier == "gpu-quantized"
    _has(rec, "quant Q8_0: the best this model offers", "context 8192: the longest considered")


def test_recorded_apple_m2_uses_metal_and_counts_unified_memory_once(catalogue: Catalogue) -> None:
    hw = recorded("apple_m2_16gb")
    rec = recommend(hw, catalogue)
    assert (rec.model_id, rec.quant, rec.n_ctx, rec.n_gpu_layers) == (
        "llama-3.1-8b-instruct",
        "Q5_K_M",
        4096,
        33,
    )
    assert rec.tier == "gpu-quantized"
    _has(
        rec,
        "unified memory: shared with the RAM budget",
        "of unified memory (RAM and GPU together)",
    )
    # RAM and GPU share one pool: together they stay inside the RAM budget.
    budget = hw.memory.available_bytes * 0.8
    assert rec.estimated_ram_bytes + rec.estimated_vram_bytes <= budget


def test_recorded_raspberry_pi5_arm64(catalogue: Catalogue) -> None:
    hw = recorded("raspberry_pi5_8gb")
    assert hw.arch == "arm64" and "neon" in hw.cpu.flags and "dotprod" in hw.cpu.flags
    rec = recommend(hw, catalogue)
    assert (rec.model_id, rec.quant, rec.n_gpu_layers, rec.n_threads) == (
        "llama-3.2-1b-instruct",
        "Q6_K",
        0,
        3,
    )
    assert rec.tier == "cpu-low"
    _has(rec, "skipped llama-3.2-3b-instruct", "tokens/s (estimate) is below the floor of 5")


def test_recorded_server_two_a100_uses_the_freer_gpu(catalogue: Catalogue) -> None:
    rec = _fit("server_2x_a100_80gb", catalogue)
    assert (rec.model_id, rec.quant, rec.n_ctx, rec.n_gpu_layers) == (
        "llama-3.1-8b-instruct",
        "Q8_0",
        8192,
        33,
    )
    assert rec.gpu_index == 0 and rec.tier == "gpu-quantized" and rec.n_threads == 4
    _has(rec, "2 GPUs: using GPU 0, the one with the most free memory")


def test_recorded_server_unquantized_model_is_tier_gpu_full(catalogue: Catalogue) -> None:
    rec = _fit("server_2x_a100_80gb", catalogue, model="llama-3.2-3b-instruct", gpu_index=1)
    assert rec.quant == "F16" and rec.tier == "gpu-full" and rec.gpu_index == 1
    _has(rec, "tier gpu-full: unquantized F16 runs fully on the GPU", "(GPU 1)")


def test_recorded_nvidia_gpu_with_cpu_only_build_says_so_and_runs_on_cpu(
    catalogue: Catalogue,
) -> None:
    hw = recorded("nvidia_gpu_cpu_only_build")
    warnings = hardware_warnings(hw)
    assert any(
        "GPU found (NVIDIA GeForce RTX 3070)" in w and "cannot use it" in w for w in warnings
    )
    rec = recommend(hw, catalogue)
    assert rec.n_gpu_layers == 0 and rec.estimated_vram_bytes == 0
    assert rec.tier == "cpu-high"  # 12 physical cores, 23.5 GiB available
    assert (rec.model_id, rec.quant) == ("mistral-7b-instruct-v0.3", "Q4_K_M")
    assert rec.n_threads == 11
    _has(rec, "GPU found (NVIDIA GeForce RTX 3070) but this llama.cpp build cannot use it")


def test_recorded_cpu_without_avx2_refuses_an_avx2_build(catalogue: Catalogue) -> None:
    hw = recorded("xeon_e5_no_avx2")
    assert any("lacks AVX2" in w for w in hardware_warnings(hw))
    with pytest.raises(DoesNotFitError, match="lacks AVX2"):
        recommend(hw, catalogue)
    rec = recommend(hw, catalogue, FitSettings(load_anyway=True))
    assert rec.reasons[0].startswith("warning: this CPU lacks AVX2")


def test_benchmark_figures_beat_the_estimate(catalogue: Catalogue) -> None:
    hw = recorded("nvidia_gpu_cpu_only_build")
    measured = [Benchmark("llama-3.1-8b-instruct", "Q4_K_M", 7.5)]
    rec = recommend(hw, catalogue, benchmarks=measured)
    assert rec.model_id == "llama-3.1-8b-instruct" and rec.quant == "Q4_K_M"
    assert rec.speed_source == "benchmark" and rec.expected_tokens_per_s == 7.5
    _has(rec, "speed: 7.5 tokens/s (benchmark)")
    slow = [Benchmark("mistral-7b-instruct-v0.3", "Q4_K_M", 2.0)]
    assert recommend(hw, catalogue, benchmarks=slow).model_id != "mistral-7b-instruct-v0.3"


def test_overrides_are_obeyed(catalogue: Catalogue) -> None:
    rec = _fit(
        "desktop_16gb_rtx3060",
        catalogue,
        model="qwen2.5-7b-instruct",
        quant="Q4_K_M",
        n_ctx=2048,
        n_gpu_layers=10,
        n_threads=2,
    )
    assert (rec.model_id, rec.quant, rec.n_ctx, rec.n_gpu_layers, rec.n_threads) == (
        "qwen2.5-7b-instruct",
        "Q4_K_M",
        2048,
        10,
        2,
    )
    _has(rec, "threads 2: set by [fit] threads")
    cpu = _fit("desktop_16gb_rtx3060", catalogue, n_gpu_layers=0)
    assert cpu.n_gpu_layers == 0
    _has(cpu, "GPU layers set to 0 by [fit] gpu_layers: CPU only")


def test_vram_and_ram_caps_and_thread_budget(catalogue: Catalogue) -> None:
    rec = _fit("workstation_64gb_rtx4090", catalogue, vram_cap_bytes=4 * GIB, thread_budget=2)
    assert rec.estimated_vram_bytes <= 4 * GIB
    assert rec.n_threads == 2
    _has(rec, "capped at 4.0 GiB by [fit] vram_cap", "capped by [fit] thread_budget 2")
    small = _fit("vps_4gb_2core", catalogue, ram_cap_bytes=1 * GIB)
    assert small.estimated_ram_bytes <= 1 * GIB


def test_nothing_fits_raises_and_load_anyway_overrides(catalogue: Catalogue) -> None:
    hw = recorded("vps_4gb_2core")
    tiny = replace(hw, memory=replace(hw.memory, available_bytes=200 * 1024**2))
    with pytest.raises(DoesNotFitError, match="nothing in the catalogue fits"):
        recommend(tiny, catalogue)
    rec = recommend(tiny, catalogue, FitSettings(load_anyway=True))
    assert rec.load_anyway and rec.model_id == "smollm2-135m-instruct"
    assert any(r.startswith("load anyway") for r in rec.reasons)


def test_an_override_that_does_not_fit_is_refused_unless_load_anyway(catalogue: Catalogue) -> None:
    with pytest.raises(DoesNotFitError, match=r"llama-3\.1-8b-instruct"):
        _fit("vps_4gb_2core", catalogue, model="llama-3.1-8b-instruct")
    rec = _fit("vps_4gb_2core", catalogue, model="llama-3.1-8b-instruct", load_anyway=True)
    assert rec.model_id == "llama-3.1-8b-instruct" and rec.load_anyway


def test_only_chat_models_are_candidates_and_the_embedding_is_accounted(
    catalogue: Catalogue,
) -> None:
    for name in ("server_2x_a100_80gb", "vps_4gb_2core"):
        rec = _fit(name, catalogue)
        assert catalogue.require(rec.model_id).kind == "chat"
        assert rec.embedding_model_id == "all-minilm-l6-v2-22m"
        assert 0 < rec.embedding_ram_bytes < 256 * 1024**2
        _has(rec, "embedding model all-minilm-l6-v2-22m accounted separately")


def test_recommendation_json_has_exactly_the_documented_fields(catalogue: Catalogue) -> None:
    doc = _fit("desktop_16gb_rtx3060", catalogue).to_json()
    assert set(doc) == {
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
    assert all(isinstance(r, str) for r in doc["reasons"])


def test_check_model_for_model_lists(catalogue: Catalogue) -> None:
    from profiler.fit import check_model

    vps = recorded("vps_4gb_2core")
    small = check_model(vps, catalogue, "llama-3.2-1b-instruct")
    assert small.fits and small.recommendation is not None
    # Named models are judged on memory alone (no speed floor): Q8_0 fits in 2.4 GiB.
    assert small.detail == "Q8_0, ctx 8192, on the CPU, peak 2.1 GiB RAM"
    big = check_model(vps, catalogue, "llama-3.1-8b-instruct")
    assert not big.fits
    assert big.detail.startswith("llama-3.1-8b-instruct does not fit this machine")
    assert "Q4_K_M ctx 2048 needs 5.4 GiB RAM and 2.4 GiB is usable" in big.detail
    embedding = check_model(vps, catalogue, "all-minilm-l6-v2-22m")
    assert embedding.fits and embedding.recommendation is not None
    assert embedding.recommendation.n_ctx == 512
