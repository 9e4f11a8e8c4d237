"""Check that a file is a complete GGUF before llama.cpp sees it, and say what is wrong if not.

llama.cpp's own failure on a bad file is a bare "failed to load model" (or, for some truncations,
a crash); this check reads only the header (magic, version, metadata, tensor table) and compares
the end of the last tensor's data with the file size, so the user gets "truncated: 41 MB of
98 MB" instead.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import CorruptModelError, ModelNotFoundError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GGUFSummary:
    architecture: str
    tensor_count: int
    data_end: int
    file_size: int
    metadata: dict[str, object]


def check_gguf(path: Path) -> GGUFSummary:
    """Raise CorruptModelError unless `path` is a complete GGUF file; return its summary."""
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: no such model file")
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise CorruptModelError(
            f"{path}: not a GGUF model file (it does not start with the GGUF signature)"
        )
    (version,) = struct.unpack("<I", head[4:8])
    if version not in (2, 3):
        raise CorruptModelError(f"{path}: GGUF version {version} is not supported (2 or 3)")
    try:
        metadata, tensors, data_start = _read_header(path)
    except Exception as exc:  # a crafted header may fail any way: it is a bad file, never a crash
        raise CorruptModelError(
            f"{path}: damaged or truncated GGUF header ({type(exc).__name__}: {exc})"
        ) from None
    data_end = data_start + max((offset + nbytes for offset, nbytes in tensors), default=0)
    if data_end > size:
        raise CorruptModelError(
            f"{path}: truncated: the tensors need {data_end:,} bytes, the file has {size:,} "
            "(an interrupted download? pull the model again)"
        )
    architecture = str(metadata.get("general.architecture", ""))
    if not architecture:
        raise CorruptModelError(f"{path}: GGUF without general.architecture")
    return GGUFSummary(
        architecture=architecture,
        tensor_count=len(tensors),
        data_end=data_end,
        file_size=size,
        metadata=metadata,
    )


# GGUF value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array,
# 10 u64, 11 i64, 12 f64.
_SCALAR = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_KEEP = ("general.architecture", "general.name", "general.alignment", "tokenizer.chat_template")
MAX_ARRAY_NESTING = 2  # real models nest arrays once at most (none today); crafted ones 1000 deep
MAX_ALIGNMENT = 1 << 16


class _Cursor:
    def __init__(self, buf: mmap.mmap) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.take("<Q")
        if self.pos + length > len(self.buf):
            raise ValueError("string runs past the end of the file")
        raw = self.buf[self.pos : self.pos + length]
        self.pos += length
        return raw.decode("utf-8")

    def skip_string(self) -> None:
        length = self.take("<Q")
        self.pos += length
        if self.pos > len(self.buf):
            raise ValueError("string runs past the end of the file")

    def value(self, vtype: int, keep: bool, depth: int = 0) -> Any:
        if vtype in _SCALAR:
            return self.take(_SCALAR[vtype])
        if vtype == 8:
            if keep:
                return self.string()
            self.skip_string()
            return None
        if vtype == 9:
            if depth >= MAX_ARRAY_NESTING:
                raise ValueError("arrays nested too deep")
            item_type = self.take("<I")
            count = self.take("<Q")
            if item_type in _SCALAR:
                self.pos += count * struct.calcsize(_SCALAR[item_type])
            else:
                # every item takes at least 8 bytes, so a huge count meets the end of the file
                for _ in range(count):
                    self.value(item_type, False, depth + 1)
                    if self.pos > len(self.buf):
                        break
            if self.pos > len(self.buf):
                raise ValueError("array runs past the end of the file")
            return None
        raise ValueError(f"unknown GGUF value type {vtype}")


def _read_header(path: Path) -> tuple[dict[str, object], list[tuple[int, int]], int]:
    """Metadata worth keeping, (offset, size) of each tensor's data, and where the data begins."""
    import gguf

    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        cur = _Cursor(buf)
        cur.pos = 8
        n_tensors = cur.take("<Q")
        n_kv = cur.take("<Q")
        metadata: dict[str, object] = {}
        for _ in range(n_kv):
            key = cur.string()
            vtype = cur.take("<I")
            value = cur.value(vtype, key in _KEEP)
            if key in _KEEP:
                metadata[key] = value
        tensors: list[tuple[int, int]] = []
        for _ in range(n_tensors):
            cur.skip_string()
            n_dims = cur.take("<I")
            if n_dims > 8:
                raise ValueError(f"tensor with {n_dims} dimensions")
            elements = 1
            for _ in range(n_dims):
                elements *= cur.take("<Q")
            ggml_type = cur.take("<I")
            offset = cur.take("<Q")
            block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
            tensors.append((offset, elements // block * type_size))
        alignment = _alignment(metadata.get("general.alignment", 32))
        data_start = (cur.pos + alignment - 1) // alignment * alignment
    return metadata, tensors, data_start


def _alignment(value: object) -> int:
    """general.alignment as llama.cpp accepts it: an integer power of two (here up to 64 KiB)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"general.alignment is {value!r}, not an integer")
    if not 1 <= value <= MAX_ALIGNMENT or value & (value - 1):
        raise ValueError(f"general.alignment {value} is not a power of two up to {MAX_ALIGNMENT}")
    return value
