"""Property: whatever the hardware, the recommendation's peak estimate fits the memory given."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from profiler.catalogue import Catalogue, load_catalogue
from profiler.errors import DoesNotFitError
from profiler.fit import FitSettings, recommend
from profiler.hardware import CPU, GIB, GPU, Hardware, LlamaBuild, Memory

CATALOGUE: Catalogue = load_catalogue()
MIB = 1024**2
SHARE = st.one_of(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9, 1.0]), st.floats(0, 1))
# Memory sizes spread over what machines have (hypothesis favours small integers otherwise),
# plus odd values around the thresholds.
SIZES = st.one_of(
    st.sampled_from([gib * GIB for gib in (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 80, 512)]),
    st.integers(min_value=256 * MIB, max_value=128 * GIB),
)


@st.composite
def gpus(draw: st.DrawFn) -> GPU:
    vendor = draw(st.sampled_from(["nvidia", "nvidia", "nvidia", "amd", "apple"]))
    total = draw(SIZES)
    free = int(total * draw(SHARE))
    return GPU(
        vendor=vendor,
        name=f"{vendor} test GPU",
        memory_total_bytes=total,
        memory_free_bytes=draw(st.sampled_from([free, free, free, None])),
        integrated=vendor == "apple",
        unified_memory=vendor == "apple",
        memory_bandwidth_bytes_per_s=draw(st.one_of(st.none(), st.floats(50e9, 3e12))),
    )


@st.composite
def machines(draw: st.DrawFn) -> Hardware:
    physical = draw(st.integers(min_value=1, max_value=128))
    total = draw(SIZES)
    available = int(total * draw(SHARE))
    return Hardware(
        os=draw(st.sampled_from(["linux", "darwin", "windows"])),
        arch=draw(st.sampled_from(["x86_64", "arm64"])),
        cpu=CPU(
            brand="test CPU",
            physical_cores=physical,
            logical_cores=physical * draw(st.sampled_from([1, 2])),
            flags=("avx", "avx2", "fma", "f16c", "neon"),
        ),
        memory=Memory(
            total_bytes=total,
            available_bytes=available,
            read_bandwidth_bytes_per_s=draw(st.one_of(st.none(), st.floats(1e9, 500e9))),
        ),
        gpus=tuple(
            replace(g, index=i)
            for i, g in enumerate(draw(st.lists(gpus(), min_size=0, max_size=3)))
        ),
        gpu_offload_supported=draw(st.sampled_from([True, True, True, False])),
        llama_build=LlamaBuild(available=True),
    )


fit_settings = st.builds(
    FitSettings,
    ram_buffer_pct=st.floats(0, 60),
    gpu_margin_bytes=st.integers(0, 2 * GIB),
    speed_floor_tps=st.sampled_from([0.0, 5.0, 20.0]),
    ram_cap_bytes=st.one_of(st.none(), st.integers(0, 64 * GIB)),
    vram_cap_bytes=st.one_of(st.none(), st.integers(0, 64 * GIB)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hw=machines(), s=fit_settings)
def test_peak_estimate_never_exceeds_the_memory_given(hw: Hardware, s: FitSettings) -> None:
    try:
        rec = recommend(hw, CATALOGUE, s)
    except DoesNotFitError:
        event("nothing fits")
        return
    event(f"tier {rec.tier}")
    est = rec.estimate
    assert est is not None
    assert rec.estimated_ram_bytes == est.ram_peak_bytes >= est.ram_bytes
    given_ram = hw.memory.available_bytes - rec.embedding_ram_bytes
    assert rec.embedding_ram_bytes > 0
    if s.ram_cap_bytes is not None:  # the cap is on the chat model's own RAM
        given_ram = min(given_ram, s.ram_cap_bytes)
    assert rec.estimated_ram_bytes <= given_ram
    if rec.n_gpu_layers > 0:
        gpu = next(g for g in hw.gpus if g.index == rec.gpu_index)
        assert gpu.memory_free_bytes is not None
        given_vram = gpu.memory_free_bytes - s.gpu_margin_bytes
        if s.vram_cap_bytes is not None:
            given_vram = min(given_vram, s.vram_cap_bytes)
        assert rec.estimated_vram_bytes <= given_vram
        if gpu.unified_memory:
            assert rec.estimated_ram_bytes + rec.estimated_vram_bytes <= given_ram
    else:
        assert rec.estimated_vram_bytes == 0
    assert rec.tier in ("gpu-full", "gpu-quantized", "cpu-high", "cpu-low")
    assert rec.reasons and rec.n_threads >= 1
