"""Adapter: read a GGUF header into a `ModelShape` with the `gguf` package (no model load)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from profiler.errors import GGUFReadError
from profiler.estimate import ModelShape, TensorInfo, swa_pattern

_LAYER = re.compile(r"^blk\.(\d+)\.")
# Far above any real model (the largest have a few hundred layers); a crafted block_count of
# 2**40 would otherwise build per-layer tuples until memory runs out.
MAX_LAYERS = 4096
# general.file_type (llama_ftype) -> quant name, for the common ones.
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    25: "IQ4_NL",
    30: "IQ4_XS",
    32: "BF16",
}


def _is_gguf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"GGUF"


def read_shape(path: Path) -> ModelShape:
    """Raise GGUFReadError (exit 6) for anything that is not a readable GGUF model."""
    try:
        if not _is_gguf(path):
            raise GGUFReadError(f"{path}: not a GGUF file (no GGUF magic at the start)")
    except OSError as exc:
        raise GGUFReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path), "r")
        fields = {name: _value(field) for name, field in reader.fields.items()}
        vocab_field = reader.fields.get("tokenizer.ggml.tokens")
        n_tokens = len(vocab_field.data) if vocab_field is not None else 0
        tensors = tuple(
            TensorInfo(
                name=t.name,
                n_bytes=int(t.n_bytes),
                layer=int(m.group(1)) if (m := _LAYER.match(t.name)) else None,
            )
            for t in reader.tensors
        )
        n_params = sum(int(t.n_elements) for t in reader.tensors)
    except GGUFReadError:
        raise
    except Exception as exc:  # the gguf package raises ValueError, IndexError, struct errors
        raise GGUFReadError(f"{path}: corrupt or truncated GGUF header ({exc})") from None
    try:
        return shape_from_fields(fields, tensors, n_tokens, n_params, str(path))
    except GGUFReadError:
        raise
    except Exception as exc:  # values of the wrong type or shape in a crafted header
        raise GGUFReadError(f"{path}: GGUF metadata that makes no sense ({exc})") from None


def _value(field: Any) -> Any:
    try:
        return field.contents()
    except Exception:
        return None


def shape_from_fields(
    fields: dict[str, Any],
    tensors: tuple[TensorInfo, ...],
    n_tokens: int,
    n_params: int,
    where: str,
) -> ModelShape:
    """Pure: GGUF key/values and tensor list -> shape. Missing required keys -> GGUFReadError."""
    arch = fields.get("general.architecture")
    if not isinstance(arch, str):
        raise GGUFReadError(f"{where}: GGUF without general.architecture")

    def key(name: str) -> Any:
        return fields.get(f"{arch}.{name}")

    n_layer = key("block_count")
    n_embd = key("embedding_length")
    n_head_raw = key("attention.head_count")
    if not isinstance(n_layer, int) or not isinstance(n_embd, int) or n_head_raw is None:
        raise GGUFReadError(f"{where}: GGUF lacks {arch}.block_count/embedding_length/head_count")
    if not 1 <= n_layer <= MAX_LAYERS or n_embd < 1:
        raise GGUFReadError(
            f"{where}: GGUF with {n_layer} layers of width {n_embd} (1 to {MAX_LAYERS} layers)"
        )
    n_head = max(n_head_raw) if isinstance(n_head_raw, list) else int(n_head_raw)
    kv_raw = key("attention.head_count_kv")
    if kv_raw is None:
        kv_raw = n_head_raw
    n_head_kv = (
        tuple(int(v) for v in kv_raw) if isinstance(kv_raw, list) else (int(kv_raw),) * n_layer
    )
    head_dim = n_embd // max(1, n_head)
    head_k = key("attention.key_length") or head_dim
    head_v = key("attention.value_length") or head_dim
    n_vocab = key("vocab_size") or n_tokens
    n_ff_raw = key("feed_forward_length") or 4 * n_embd
    n_ff = max(n_ff_raw) if isinstance(n_ff_raw, list) else int(n_ff_raw)
    window = key("attention.sliding_window")
    window = int(window) if isinstance(window, int) and window > 0 else None
    pattern = key("attention.sliding_window_pattern")
    if isinstance(pattern, list):
        swa = tuple(bool(v) for v in pattern)
    else:
        swa = swa_pattern(arch, n_layer, pattern if isinstance(pattern, int) else None)
    if window is None:
        swa = tuple(False for _ in range(n_layer))
    names = {t.name for t in tensors}
    ftype = fields.get("general.file_type")
    return ModelShape(
        architecture=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=int(head_k),
        head_dim_v=int(head_v),
        n_vocab=int(n_vocab),
        n_ff=n_ff,
        context_length=key("context_length"),
        sliding_window=window,
        swa_layers=swa,
        tensors=tensors,
        tied_output="output.weight" not in names,
        quant=FILE_TYPES.get(ftype) if isinstance(ftype, int) else None,
        parameters=n_params,
        source=where,
    )
