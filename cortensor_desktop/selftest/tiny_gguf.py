"""Write a tiny random-weight llama GGUF that llama.cpp loads: the self-test's model.

The self-test must not depend on a download or on the bundled models being installed, so it
writes its own model: a few layers, F32 weights, and a SentencePiece ("llama") vocabulary of the
control tokens, the 256 byte-fallback tokens and a few word pieces, which is all llama.cpp's
tokenizer needs to turn any text into tokens. Written in a few milliseconds, under 1 MB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# SentencePiece token types, as llama.cpp reads them.
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6
_WORDS = ["▁", "▁the", "▁a", "e", "t", "▁hello", "▁world", "▁node"]


@dataclass(frozen=True)
class TinyModelShape:
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_ff: int = 128
    n_ctx_train: int = 256

    @property
    def n_vocab(self) -> int:
        return 3 + 256 + len(_WORDS)


def write_tiny_llama(path: Path, shape: TinyModelShape | None = None, seed: int = 0) -> Path:
    """Write the model to `path` and return it. Same seed, same bytes."""
    import gguf
    import numpy as np

    shape = shape or TinyModelShape()
    rng = np.random.default_rng(seed)
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{i:02X}>" for i in range(256)), *_WORDS]
    types = [_UNKNOWN, _CONTROL, _CONTROL, *([_BYTE] * 256), *([_NORMAL] * len(_WORDS))]
    scores = [0.0] * 259 + [-float(i + 1) for i in range(len(_WORDS))]

    def weights(*dims: int) -> np.ndarray:
        return (rng.standard_normal(dims) * 0.02).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("cortensor-selftest-tiny")
    writer.add_context_length(shape.n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(shape.n_embd // shape.n_head)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)

    writer.add_tensor("token_embd.weight", weights(shape.n_vocab, shape.n_embd))
    writer.add_tensor("output_norm.weight", ones(shape.n_embd))
    writer.add_tensor("output.weight", weights(shape.n_vocab, shape.n_embd))
    for layer in range(shape.n_layer):
        prefix = f"blk.{layer}."
        writer.add_tensor(prefix + "attn_norm.weight", ones(shape.n_embd))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{prefix}{name}.weight", weights(shape.n_embd, shape.n_embd))
        writer.add_tensor(prefix + "ffn_norm.weight", ones(shape.n_embd))
        writer.add_tensor(prefix + "ffn_gate.weight", weights(shape.n_ff, shape.n_embd))
        writer.add_tensor(prefix + "ffn_up.weight", weights(shape.n_ff, shape.n_embd))
        writer.add_tensor(prefix + "ffn_down.weight", weights(shape.n_embd, shape.n_ff))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
