"""The llama.cpp settings the memory estimate assumes; the runtime loads models with them.

One definition, so the estimate and the real load cannot drift apart: if the runtime changed
the batch size or the KV cache type, the estimate would silently be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

KV_TYPE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


@dataclass(frozen=True)
class LoadSettings:
    n_ctx: int = 2048
    n_gpu_layers: int = 0
    n_threads: int = 1
    n_batch: int = 512
    n_ubatch: int = 512
    kv_type: str = "f16"
    use_mmap: bool = True
    flash_attn: bool = False
    # llama.cpp's own default (llama_context_default_params) and what llama-cpp-python does
    # when the argument is not passed: sliding-window layers get a full-size cache. Pass
    # `swa_full=False` to llama_cpp.Llama together with this set to False to keep only the
    # window (Gemma 3 4B at ctx 8192: 0.33 GiB of f16 KV instead of 1.06 GiB).
    swa_full: bool = True

    @property
    def kv_bytes_per_element(self) -> float:
        return KV_TYPE_BYTES[self.kv_type]
