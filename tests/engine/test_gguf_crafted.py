"""Crafted GGUF headers: every one is a clear CorruptModelError / GGUFReadError, never a crash.

A download from a mutable URL or a file a user was sent reaches these checkers before llama.cpp
does; a ZeroDivisionError, RecursionError or an allocation of 2**40 entries there would be an
"unexpected error" or a hung process instead of "this file is damaged".
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from engine.errors import CorruptModelError
from engine.models.gguf_check import check_gguf
from profiler.errors import GGUFReadError
from profiler.gguf_shape import read_shape

U32, STRING, ARRAY, U64 = 4, 8, 9, 10


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    return _string(key) + struct.pack("<I", vtype) + payload


def _gguf(path: Path, *kvs: bytes, tensors: int = 0) -> Path:
    body = b"GGUF" + struct.pack("<IQQ", 3, tensors, len(kvs)) + b"".join(kvs)
    path.write_bytes(body + b"\0" * 64)
    return path


ARCH = _kv("general.architecture", STRING, _string("llama"))


@pytest.mark.parametrize(
    "alignment",
    [
        struct.pack("<I", 0),  # ZeroDivisionError before
        struct.pack("<I", 48),  # not a power of two
    ],
)
def test_a_bad_alignment_is_a_corrupt_model(tmp_path: Path, alignment: bytes) -> None:
    path = _gguf(tmp_path / "m.gguf", ARCH, _kv("general.alignment", U32, alignment))
    with pytest.raises(CorruptModelError, match="alignment"):
        check_gguf(path)


def test_an_alignment_typed_as_an_array_is_a_corrupt_model(tmp_path: Path) -> None:
    array = struct.pack("<IQ", U32, 1) + struct.pack("<I", 32)
    path = _gguf(tmp_path / "m.gguf", ARCH, _kv("general.alignment", ARRAY, array))
    with pytest.raises(CorruptModelError, match="alignment"):  # TypeError before
        check_gguf(path)


def test_arrays_nested_a_thousand_deep_are_a_corrupt_model(tmp_path: Path) -> None:
    nested = struct.pack("<IQ", ARRAY, 1) * 1000 + struct.pack("<IQ", U32, 0)
    path = _gguf(tmp_path / "m.gguf", ARCH, _kv("x.nested", ARRAY, nested))
    with pytest.raises(CorruptModelError, match="nested"):  # RecursionError before
        check_gguf(path)


def test_a_huge_string_array_count_ends_at_the_file_end(tmp_path: Path) -> None:
    strings = struct.pack("<IQ", STRING, 2**62)
    path = _gguf(tmp_path / "m.gguf", ARCH, _kv("tokenizer.ggml.tokens", ARRAY, strings))
    started = time.monotonic()
    with pytest.raises(CorruptModelError):
        check_gguf(path)
    assert time.monotonic() - started < 5


def test_a_block_count_of_2_to_the_40_is_refused_at_once(tmp_path: Path) -> None:
    path = _gguf(
        tmp_path / "m.gguf",
        ARCH,
        _kv("llama.block_count", U64, struct.pack("<Q", 2**40)),  # a tuple of 2**40 before
        _kv("llama.embedding_length", U32, struct.pack("<I", 64)),
        _kv("llama.attention.head_count", U32, struct.pack("<I", 4)),
    )
    started = time.monotonic()
    with pytest.raises(GGUFReadError, match="layers"):
        read_shape(path)
    assert time.monotonic() - started < 5


def test_an_empty_head_count_array_is_a_read_error(tmp_path: Path) -> None:
    path = _gguf(
        tmp_path / "m.gguf",
        ARCH,
        _kv("llama.block_count", U32, struct.pack("<I", 2)),
        _kv("llama.embedding_length", U32, struct.pack("<I", 64)),
        _kv("llama.attention.head_count", ARRAY, struct.pack("<IQ", U32, 0)),  # max([]) before
    )
    with pytest.raises(GGUFReadError):
        read_shape(path)
