"""The probe on this machine (no GPU, no NVIDIA driver), its parsers, cache and NVML helper."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from profiler.errors import HardwareFileError
from profiler.hardware import Hardware, hardware_warnings, load_hardware_file, normalise_flags
from profiler.nvml import nvml_query, probe_nvidia
from profiler.probe import (
    LAST_KEY,
    STATIC_KEY,
    last_probe,
    parse_proc_cpuinfo,
    parse_system_info,
    probe,
)

from .conftest import RECORDED

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz
physical id\t: 0
core id\t\t: 0
cpu MHz\t\t: 1800.000
cache size\t: 6144 KB
flags\t\t: fpu sse sse2 pni ssse3 fma avx f16c avx2 avx512vnni

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse sse2 pni ssse3 fma avx f16c avx2 avx512vnni

processor\t: 2
physical id\t: 0
core id\t\t: 1

processor\t: 3
physical id\t: 0
core id\t\t: 1
"""

PI5_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b

processor\t: 1
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimddp

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""


class MemoryCache:
    """A stand-in for the home database's cache table (the same two methods)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.puts = 0

    def cache_get(self, key: str, max_age_s: float | None = None) -> Any | None:
        value = self.data.get(key)
        return None if value is None else json.loads(value)

    def cache_put(self, key: str, value: Any) -> None:
        self.puts += 1
        self.data[key] = json.dumps(value)


def test_x86_cpuinfo_counts_physical_cores_and_normalises_flags() -> None:
    cpu = parse_proc_cpuinfo(X86_CPUINFO)
    assert cpu is not None
    assert (cpu.physical_cores, cpu.logical_cores) == (2, 4)
    assert cpu.brand.startswith("Intel(R) Core(TM) i5-8250U") and cpu.vendor == "intel"
    assert {"avx2", "fma", "f16c", "sse3", "avx512_vnni"} <= set(cpu.flags)
    assert "avx512vnni" not in cpu.flags and "pni" not in cpu.flags
    assert cpu.cache_l3_bytes == 6144 * 1024


def test_arm_cpuinfo_reads_features_as_neon() -> None:
    cpu = parse_proc_cpuinfo(PI5_CPUINFO)
    assert cpu is not None and cpu.logical_cores == 2
    assert {"neon", "dotprod", "neon_fp16"} <= set(cpu.flags)


def test_flag_spellings_are_one() -> None:
    assert normalise_flags(["AVX512VNNI", "avx512_vnni", "asimd", "sse4.2"]) == (
        "avx512_vnni",
        "neon",
        "sse4_2",
    )


def test_system_info_gives_the_simd_the_build_needs() -> None:
    info = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 0 |"
    assert parse_system_info(info) == ("avx", "avx2", "f16c", "fma", "sse3", "ssse3")


def test_probe_this_machine_is_complete_and_gpu_less(tmp_path: Path) -> None:
    hw = probe(models_dir=tmp_path / "models")
    assert hw.os == "linux" and hw.arch in ("x86_64", "arm64")
    assert 1 <= hw.cpu.physical_cores <= hw.cpu.logical_cores
    assert 0 < hw.memory.available_bytes <= hw.memory.total_bytes
    assert hw.memory.read_bandwidth_bytes_per_s and hw.memory.read_bandwidth_bytes_per_s > 1e8
    assert hw.disk_free_bytes and hw.disk_free_bytes > 0
    assert hw.gpus == () and hw.gpu_offload_supported is False  # no driver: a normal result
    assert hw.llama_build is not None and hw.llama_build.available
    assert "avx2" in hw.llama_build.simd_required
    # Round trip through JSON: the same path a recorded file takes.
    again = Hardware.from_json(json.loads(json.dumps(hw.to_json())))
    assert again.cpu == hw.cpu and again.memory == hw.memory


def test_warm_probe_reuses_the_cache_and_is_fast() -> None:
    cache = MemoryCache()
    cold = probe(cache)
    assert cold.source == "probe" and STATIC_KEY in cache.data and LAST_KEY in cache.data
    start = time.perf_counter()
    warm = probe(cache)
    elapsed = time.perf_counter() - start
    assert warm.source == "cache" and warm.cpu == cold.cpu
    assert elapsed < 0.3
    assert last_probe(cache) is not None


def test_a_changed_fingerprint_reprobes() -> None:
    cache = MemoryCache()
    probe(cache, measure_bandwidth=False)
    static = cache.cache_get(STATIC_KEY)
    static["fingerprint"]["boot"] = "another-boot"
    cache.cache_put(STATIC_KEY, static)
    assert probe(cache, measure_bandwidth=False).source == "probe"


def test_nvml_helper_turns_every_failure_into_none() -> None:
    def unsupported() -> int:
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

    assert nvml_query(unsupported) is None
    assert nvml_query(lambda: b"NVIDIA A100") == "NVIDIA A100"
    assert nvml_query(lambda x: x * 2, 21) == 42


def test_no_nvidia_driver_is_an_empty_list_not_an_error() -> None:
    assert probe_nvidia() == []


def test_every_recorded_file_loads_and_says_recorded() -> None:
    files = sorted(RECORDED.glob("*_recorded.json"))
    assert len(files) >= 8
    for path in files:
        hw = load_hardware_file(path)
        assert hw.source == f"recorded:{path.name}"
        assert hw.cpu.physical_cores >= 1 and hw.memory.total_bytes > 0
        for gpu in hw.gpus:
            if gpu.vendor == "nvidia":
                assert gpu.compute_capability and gpu.memory_free_bytes is not None
        hardware_warnings(hw)  # never raises


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "hardware file not found"),
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"os": "linux"}', "'gpus' missing or not a list"),
        (
            '{"os": "plan9", "arch": "x86_64", "cpu": {}, "memory": {}, "gpus": [],'
            ' "gpu_offload_supported": false}',
            "'os' must be one of",
        ),
    ],
    ids=["missing", "not-json", "array", "no-gpus", "bad-os"],
)
def test_bad_hardware_files_raise_one_typed_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "hw.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(HardwareFileError, match=message):
        load_hardware_file(path)


def test_gpu_free_above_total_is_refused(tmp_path: Path) -> None:
    doc = json.loads((RECORDED / "desktop_16gb_rtx3060_recorded.json").read_text())
    doc["gpus"][0]["memory_free_bytes"] = doc["gpus"][0]["memory_total_bytes"] + 1
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(HardwareFileError, match=r"gpus\[0\].*larger than"):
        load_hardware_file(path)


def test_py_cpuinfo_path_agrees_with_proc_cpuinfo_on_simd() -> None:
    """macOS and Windows use py-cpuinfo; its flags must normalise to the same spelling."""
    from profiler.hardware import SIMD_FEATURES
    from profiler.probe import _cpu_from_py_cpuinfo, probe_cpu

    proc, other = probe_cpu(), _cpu_from_py_cpuinfo()
    simd = set(SIMD_FEATURES)
    assert set(proc.flags) & simd == set(other.flags) & simd
    assert other.logical_cores == proc.logical_cores


def test_apple_gpu_memory_is_metals_working_set_of_unified_ram() -> None:
    from profiler.hardware import GPU, Memory
    from profiler.probe import _refresh_static_gpu

    gpu = GPU("apple", "Apple M2 GPU (Metal)", None, None, integrated=True, unified_memory=True)
    m2 = _refresh_static_gpu(gpu, Memory(total_bytes=16 * 2**30, available_bytes=9 * 2**30))
    # Metal reports recommendedMaxWorkingSetSize = 11453.25 MB on a 16 GB M2.
    assert m2.memory_total_bytes is not None
    assert abs(m2.memory_total_bytes - 11_453_251_584) < 16 * 2**20
    assert m2.memory_free_bytes == 9 * 2**30  # bounded by what RAM has available
    big = _refresh_static_gpu(gpu, Memory(total_bytes=64 * 2**30, available_bytes=60 * 2**30))
    assert big.memory_total_bytes == 48 * 2**30
