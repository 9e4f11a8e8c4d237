"""Memory a llama.cpp load will take, from the model's shape alone: pure, no model is loaded.

The shape comes either from a GGUF header (`profiler.gguf_shape.read_shape`) or from the
catalogue's figures for a model that is not downloaded yet (`shape_from_catalogue`). The
llama.cpp settings assumed are `LoadSettings` (batch and micro-batch 512, f16 KV cache, mmap,
no flash attention); the runtime loads with the same object.

Formulas (docs/PROFILER.md has the derivation):
  weights   sum of tensor bytes; layer i is on the GPU when i >= n_layer - L; the output
            tensor (or the tied embedding's copy) when L > n_layer; the token embedding never
  kv        per layer 2-part (K and V): n_ctx_layer x n_head_kv x head_dim x bytes(kv type);
            n_ctx_layer = n_ctx, or for sliding-window layers min(n_ctx, pad256(window + ubatch))
            when the load asks for small SWA caches (LoadSettings.swa_full False)
  compute   llama.cpp's reserved graph buffer: max(attention phase, logits phase) for a
            micro-batch, f32 activations
  overhead  measured: 24 MiB of loader/vocab/context state + the output logits buffer
  ram_bytes       = CPU weights + CPU KV + overhead (resident after load and a first decode:
                    llama.cpp clears the KV buffer, reads every weight, barely touches compute)
  ram_peak_bytes  = ram_bytes + CPU compute buffer (everything reserved)
  vram_bytes      = vram_peak_bytes = GPU weights + GPU KV + GPU compute + backend context
                    (device allocations are committed when made)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from profiler.catalogue import ModelEntry
from profiler.load_settings import LoadSettings

MIB = 1024**2
GIB = 1024**3

# Measured with llama-cpp-python 0.3.36 on SmolLM2-135M (ctx 512/2048/8192): resident growth
# after load + one decode minus weights minus KV was 23.9-25.0 MiB, of which 0.19 MiB is the
# output buffer; the rest (vocab tables, ggml contexts, the sampler, Python-side objects) is
# taken as fixed.
OVERHEAD_RAM_BYTES = 24 * MIB
# Device-side context a GPU backend allocates before any tensor (CUDA context, cuBLAS
# workspace); Ollama reserves about 457 MiB per CUDA device for the same reason.
BACKEND_OVERHEAD_BYTES = {
    "nvidia": 450 * MIB,
    "amd": 450 * MIB,
    "intel": 450 * MIB,
    "apple": 256 * MIB,
}
CTX_PAD = 256
ENCODER_ARCHS = ("bert", "nomic-bert", "jina-bert-v2", "nomic-bert-moe", "modern-bert")

# Quant name -> (quality rank, bits per weight used for catalogue-only estimates). Bits are
# file size / parameter count of typical llama.cpp files, rounded up so an estimate made
# before download errs high; a GGUF header, once there, gives exact tensor sizes.
QUANTS: dict[str, tuple[int, float]] = {
    "F32": (95, 32.0),
    "BF16": (100, 16.1),
    "F16": (100, 16.1),
    "Q8_0": (90, 8.6),
    "Q6_K": (80, 6.8),
    "Q5_K_M": (72, 6.0),
    "Q5_K": (72, 6.0),
    "Q5_K_S": (70, 5.8),
    "Q5_1": (69, 6.1),
    "Q5_0": (68, 5.7),
    "Q4_K_M": (62, 5.2),
    "Q4_K": (62, 5.2),
    "Q4_K_S": (60, 4.9),
    "Q4_1": (58, 5.2),
    "IQ4_NL": (57, 4.8),
    "IQ4_XS": (56, 4.6),
    "Q4_0": (55, 4.8),
    "Q3_K_L": (45, 4.5),
    "Q3_K_M": (42, 4.1),
    "Q3_K_S": (40, 3.7),
    "IQ3_M": (38, 3.9),
    "Q2_K": (30, 3.5),
}
UNQUANTIZED = ("F32", "F16", "BF16")


def quant_rank(quant: str) -> int:
    return QUANTS.get(quant.upper(), (0, 0.0))[0]


def quant_bits(quant: str) -> float | None:
    entry = QUANTS.get(quant.upper())
    return entry[1] if entry else None


@dataclass(frozen=True)
class TensorInfo:
    name: str
    n_bytes: int
    layer: int | None  # blk.N.* -> N; None for token embedding, output, norms outside blocks

    @property
    def role(self) -> str:
        if self.layer is not None:
            return "layer"
        if self.name.startswith("output") or self.name.startswith("lm_head"):
            return "output"
        return "input"


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model; from GGUF or from the catalogue."""

    architecture: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: tuple[int, ...]  # per layer (most models: the same value repeated)
    head_dim_k: int
    head_dim_v: int
    n_vocab: int
    n_ff: int
    context_length: int | None
    sliding_window: int | None
    swa_layers: tuple[bool, ...]  # per layer: True where the layer uses the sliding window
    tensors: tuple[TensorInfo, ...]
    tied_output: bool
    quant: str | None = None
    parameters: int | None = None
    source: str = "gguf"

    @property
    def weights_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def is_encoder(self) -> bool:
        return self.architecture in ENCODER_ARCHS


@dataclass(frozen=True)
class MemoryEstimate:
    n_ctx: int
    n_gpu_layers: int
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    overhead_bytes: int
    ram_bytes: int
    ram_peak_bytes: int
    vram_bytes: int
    vram_peak_bytes: int
    weights_ram_bytes: int
    weights_vram_bytes: int
    kv_ram_bytes: int
    kv_vram_bytes: int
    compute_ram_bytes: int
    compute_vram_bytes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def bytes_read_per_token(self) -> int:
        """Weights are streamed once per generated token; the main cost of decoding."""
        return self.weights_bytes


def padded_ctx(n_ctx: int) -> int:
    return max(CTX_PAD, math.ceil(n_ctx / CTX_PAD) * CTX_PAD)


def layer_ctx(shape: ModelShape, layer: int, n_ctx: int, settings: LoadSettings) -> int:
    """Cells of one layer's KV cache; a sliding-window layer keeps window + ubatch unless
    llama.cpp is asked for full-size SWA caches (its default, `LoadSettings.swa_full`)."""
    ctx = padded_ctx(n_ctx)
    swa = shape.sliding_window and shape.swa_layers and shape.swa_layers[layer]
    if swa and shape.sliding_window and not settings.swa_full:
        return min(ctx, padded_ctx(shape.sliding_window + settings.n_ubatch))
    return ctx


def kv_layer_bytes(shape: ModelShape, layer: int, n_ctx: int, settings: LoadSettings) -> int:
    """K and V for one layer: n_ctx_layer x n_head_kv x (head_dim_k + head_dim_v) x bytes."""
    if shape.is_encoder:
        return 0
    ctx = layer_ctx(shape, layer, n_ctx, settings)
    per_token = shape.n_head_kv[layer] * (shape.head_dim_k + shape.head_dim_v)
    return math.ceil(ctx * per_token * settings.kv_bytes_per_element)


def kv_bytes(shape: ModelShape, n_ctx: int, settings: LoadSettings) -> int:
    return sum(kv_layer_bytes(shape, i, n_ctx, settings) for i in range(shape.n_layer))


def _compute_phases(shape: ModelShape, n_ctx: int, settings: LoadSettings) -> tuple[int, int]:
    """Attention-phase and logits-phase sizes of llama.cpp's reserved graph (f32 activations).

    Attention: the KQ scores (n_head x n_kv x ubatch), the mask (n_kv x ubatch) and a few
    hidden-state tensors; with flash attention the scores are not materialised. Logits:
    n_vocab x ubatch plus the hidden states feeding them. The allocator reuses memory between
    the phases, so the reserve is the larger one. Measured on SmolLM2 (98.3 MiB at ctx 512,
    99.4 at 2048, 166.4 at 8192) this gives 100.5 / 100.5 / 176.5 MiB: a little high, by design.
    """
    ub = settings.n_ubatch
    n_kv = padded_ctx(n_ctx)
    hidden = 4 * (shape.n_embd + shape.n_ff) * ub * 4
    scores = 0 if settings.flash_attn else shape.n_head * n_kv * ub * 4
    attention = scores + n_kv * ub * 4 + hidden
    logits = shape.n_vocab * ub * 4 + 4 * shape.n_embd * ub * 4
    if shape.is_encoder:
        attention = shape.n_head * ub * ub * 4 + hidden
        logits = 4 * shape.n_embd * ub * 4
    return attention, logits


def estimate(
    shape: ModelShape,
    settings: LoadSettings,
    gpu_vendor: str | None = None,
) -> MemoryEstimate:
    """Resident and reserved memory in RAM and VRAM for `settings` (n_ctx, n_gpu_layers).

    `gpu_vendor` selects the backend's device overhead when layers are offloaded; with no GPU
    (or n_gpu_layers 0) everything is on the CPU.
    """
    n_layer = shape.n_layer
    ngl = max(0, settings.n_gpu_layers) if gpu_vendor else 0
    if settings.n_gpu_layers < 0 and gpu_vendor:
        ngl = n_layer + 1
    ngl = min(ngl, n_layer + 1)
    first_gpu_layer = n_layer - min(ngl, n_layer)
    output_on_gpu = ngl > n_layer

    w_ram = w_vram = 0
    for t in shape.tensors:
        on_gpu = (t.layer is not None and t.layer >= first_gpu_layer and ngl > 0) or (
            t.role == "output" and output_on_gpu
        )
        if on_gpu:
            w_vram += t.n_bytes
        else:
            w_ram += t.n_bytes
    if shape.tied_output and output_on_gpu:
        # llama.cpp duplicates a tied embedding onto the output layer's device.
        w_vram += sum(t.n_bytes for t in shape.tensors if t.name.startswith("token_embd"))

    kv_ram = kv_vram = 0
    for i in range(n_layer):
        size = kv_layer_bytes(shape, i, settings.n_ctx, settings)
        if ngl > 0 and i >= first_gpu_layer:
            kv_vram += size
        else:
            kv_ram += size

    attention, logits = _compute_phases(shape, settings.n_ctx, settings)
    small = 2 * shape.n_embd * settings.n_ubatch * 4  # input embeddings kept on the host
    if ngl == 0:
        c_ram, c_vram = max(attention, logits), 0
    elif output_on_gpu:
        c_ram, c_vram = small, max(attention, logits)
    else:
        c_ram = max(attention, logits) if first_gpu_layer > 0 else logits + small
        c_vram = attention
    backend = BACKEND_OVERHEAD_BYTES.get(gpu_vendor or "", 0) if ngl > 0 else 0
    overhead_ram = OVERHEAD_RAM_BYTES + shape.n_vocab * 4

    ram = w_ram + kv_ram + overhead_ram
    vram = w_vram + kv_vram + c_vram + backend if ngl > 0 else 0
    return MemoryEstimate(
        n_ctx=settings.n_ctx,
        n_gpu_layers=ngl,
        weights_bytes=w_ram + w_vram,
        kv_bytes=kv_ram + kv_vram,
        compute_bytes=c_ram + c_vram,
        overhead_bytes=overhead_ram + backend,
        ram_bytes=ram,
        ram_peak_bytes=ram + c_ram,
        vram_bytes=vram,
        vram_peak_bytes=vram,
        weights_ram_bytes=w_ram,
        weights_vram_bytes=w_vram,
        kv_ram_bytes=kv_ram,
        kv_vram_bytes=kv_vram,
        compute_ram_bytes=c_ram,
        compute_vram_bytes=c_vram,
    )


def swa_pattern(architecture: str, n_layer: int, pattern: int | None) -> tuple[bool, ...]:
    """Which layers use the sliding window. Gemma 2: every other layer; Gemma 3: five of six."""
    if pattern is None:
        pattern = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4}.get(architecture)
    if not pattern or pattern < 2:
        return tuple(False for _ in range(n_layer))
    return tuple((i + 1) % pattern != 0 for i in range(n_layer))


class ShapeUnknownError(ValueError):
    """The catalogue lacks a figure the estimate needs (null, never guessed)."""


def shape_from_catalogue(entry: ModelEntry, quant: str) -> ModelShape:
    """A shape from catalogue figures alone, for a model that is not downloaded.

    Weights: the quant file's size when the catalogue knows it (an upper bound: the header is
    included), else parameters x nominal bits of the quant. The token embedding (and, unless
    known tied, an output matrix of the same size) is split off; the rest is spread evenly over
    the layers.
    """
    arch = entry.architecture
    variant = entry.quant(quant)
    needed = {
        "n_layer": arch.n_layer,
        "n_embd": arch.n_embd,
        "n_head": arch.n_head,
        "n_head_kv": arch.n_head_kv,
        "head_dim": arch.head_dim,
    }
    missing = [k for k, v in needed.items() if v is None]
    if missing:
        raise ShapeUnknownError(f"{entry.id}: catalogue lacks {', '.join(missing)}")
    n_layer, n_embd = int(arch.n_layer or 0), int(arch.n_embd or 0)
    n_head, n_head_kv = int(arch.n_head or 0), int(arch.n_head_kv or 0)
    head_dim = int(arch.head_dim or 0)
    bits = quant_bits(quant)
    if variant is not None and variant.size_bytes:
        total = variant.size_bytes
    elif entry.parameters and bits:
        total = math.ceil(entry.parameters * bits / 8)
    else:
        raise ShapeUnknownError(f"{entry.id} {quant}: neither file size nor parameter count known")
    n_vocab = arch.n_vocab or 0
    n_ff = arch.n_ff or 4 * n_embd
    tensors: list[TensorInfo] = []
    embd = math.ceil(n_vocab * n_embd * (bits or 16.0) / 8) if n_vocab else 0
    embd = min(embd, total // 4)
    tensors.append(TensorInfo("token_embd.weight", embd, None))
    tied = bool(arch.tied_embeddings)
    if not tied and embd:
        tensors.append(TensorInfo("output.weight", embd, None))
    per_layer = max(0, total - sum(t.n_bytes for t in tensors)) // n_layer
    tensors.extend(TensorInfo(f"blk.{i}.weights", per_layer, i) for i in range(n_layer))
    swa: tuple[bool, ...] = tuple(False for _ in range(n_layer))
    if arch.sliding_window:
        swa = swa_pattern(entry.family, n_layer, None)
        if arch.n_swa_layers is not None and sum(swa) != arch.n_swa_layers:
            swa = tuple(i < arch.n_swa_layers for i in range(n_layer))
    return ModelShape(
        architecture=entry.family,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=tuple(n_head_kv for _ in range(n_layer)),
        head_dim_k=head_dim,
        head_dim_v=head_dim,
        n_vocab=n_vocab or 262144,  # unknown vocabulary: the largest common one, errs high
        n_ff=n_ff,
        context_length=arch.context_length,
        sliding_window=arch.sliding_window,
        swa_layers=swa,
        tensors=tuple(tensors),
        tied_output=tied,
        quant=quant.upper(),
        parameters=entry.parameters,
        source="catalogue",
    )
