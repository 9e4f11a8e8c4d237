"""A float16 copy of a quantized chat model, for the validator's scoring on a CPU.

Why: the validator's check is one batched prefill of prompt + answer, and it is cheaper than
answering only as far as a batched pass is faster per token than decoding. On a CPU, llama.cpp's
batched matrix products over 4- and 5-bit blocks are its plain dot-product kernels, about 2x a
decode step per token (SmolLM2-135M Q4_1, one thread: 8.4 ms per scored token against 16.3 ms per
decoded one), so checking costs about 0.55 of answering however the work is shared. Over float16
weights the same batch runs on llamafile's matrix kernels: 5.1 ms per token, 40 % less.

The copy holds the registered weights (each quantized block expanded, then rounded to float16,
a rounding far below the 8-bit rounding of activations that the quantized kernels apply), so the
validator still scores with the registered model; only the arithmetic differs, as between two
builds. Measured on 60 prompts: honest tokens beyond the near-tie margin 0.33 % (this build) and
0.36 % (the AVX-512 build) against 0.23 % and 0.48 % scored over the quantized file, the largest
honest gap 0.74 nats (under the 1-nat opening margin), and every cheater row's misses unchanged
(docs/VALIDATION.md). The validator still generates its own greedy answer, when it needs one,
with the registered file: the checksum level compares an answer with what a miner would produce.

On a GPU a batched pass is already far cheaper than decoding and memory is scarcer: no copy. Nor
where the copy (2 bytes per parameter) does not fit in the memory available.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import psutil

from engine.errors import ModelError
from engine.models.store import SCORING_COPY_SUFFIX, scoring_copy_path
from profiler.errors import GGUFReadError
from profiler.gguf_shape import read_shape
from profiler.load_settings import LoadSettings

log = logging.getLogger(__name__)

F16_BYTES = 2
# The copy is loaded next to everything else: keep it to a part of what is free.
MEMORY_SHARE = 0.5
CONVERT_TIMEOUT_S = 1800.0


def scoring_model(
    model: Path,
    load: LoadSettings,
    progress: Callable[[str], None] | None = None,
    available_bytes: int | None = None,
) -> Path | None:
    """The float16 copy to score `model` with, made once next to it; None where scoring stays
    on the registered file: GPU layers, a model that is float16 or wider already, a copy that
    does not fit, or a conversion that failed (said in the log; the validator works either way)."""
    if load.n_gpu_layers != 0 or model.name.endswith(SCORING_COPY_SUFFIX):
        return None
    try:
        shape = read_shape(model)
    except GGUFReadError as exc:
        log.warning("scoring with %s itself: %s", model.name, exc)
        return None
    if not shape.parameters:
        return None  # a header without tensors: nothing to size the copy by
    copy_bytes = shape.parameters * F16_BYTES
    if model.stat().st_size >= copy_bytes * 0.9:
        return None  # float16 or wider already: nothing to gain
    free = psutil.virtual_memory().available if available_bytes is None else available_bytes
    if copy_bytes > free * MEMORY_SHARE:
        log.info(
            "scoring with %s itself: a float16 copy needs %d MiB, %d MiB free",
            model.name,
            copy_bytes >> 20,
            free >> 20,
        )
        return None
    if progress is not None and not _is_current(scoring_copy_path(model), model):
        progress(f"making a float16 copy of {model.name} for scoring answers (once)")
    try:
        return make_scoring_copy(model)
    except ModelError as exc:
        log.warning("scoring with %s itself: %s", model.name, exc)
        return None


def make_scoring_copy(model: Path, timeout_s: float = CONVERT_TIMEOUT_S) -> Path:
    """The float16 copy of `model`, converted once (a few seconds for a small model) and kept
    while it is newer than the model; written to a .part file first, so a crash leaves no
    half-written copy in its place."""
    target = scoring_copy_path(model)
    if _is_current(target, model):
        return target
    # A name of this process's own: two nodes sharing a models folder may convert at once.
    part = target.with_name(f"{target.name}.{os.getpid()}.part")
    # In a process of its own: llama.cpp's converter is C code that can crash on a bad file.
    process = multiprocessing.get_context("spawn").Process(
        target=_convert, args=(str(model), str(part)), name="cortensor-scoring-copy"
    )
    process.start()
    process.join(timeout_s)
    if process.is_alive():
        process.kill()
        process.join()
    if process.exitcode != 0 or not part.is_file():
        part.unlink(missing_ok=True)
        raise ModelError(f"{model.name}: the float16 scoring copy failed ({process.exitcode})")
    os.replace(part, target)
    return target


def _is_current(copy: Path, model: Path) -> bool:
    return copy.is_file() and copy.stat().st_mtime >= model.stat().st_mtime


def _convert(source: str, target: str) -> None:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True  # "requantizing" to float16 expands every block exactly
    params.nthread = 1
    # The converter prints each tensor on stderr: keep the parent's console readable.
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 2)
    rc = llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params))
    raise SystemExit(0 if rc == 0 else 1)
