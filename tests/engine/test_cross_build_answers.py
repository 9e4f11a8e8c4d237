"""The validation bench's cross-build answers: the file the other interpreter writes, read back."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "cross_build.py"

# llama.cpp 0.3.36's system info, as the two builds print it on this AVX-512 machine.
PORTABLE = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
NATIVE = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)


@pytest.fixture(scope="module")
def cross_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_cross_build", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def payload(**overrides: object) -> str:
    data: dict[str, object] = {
        "answers": ["Paris.", "Bees make honey."],
        "llama_cpp_version": "0.3.36",
        "system_info": NATIVE,
    }
    data.update(overrides)
    return json.dumps(data)


def test_answers_come_back_in_prompt_order(cross_build: ModuleType) -> None:
    parsed = cross_build.parse_answers(payload(), expected=2)
    assert parsed.answers == ["Paris.", "Bees make honey."]
    assert parsed.llama_cpp_version == "0.3.36"
    assert "AVX512" in parsed.cpu_flags()


@pytest.mark.parametrize(
    ("text", "expected", "message"),
    [
        ("not json", 2, "not JSON"),
        ("[1, 2]", 2, "JSON object"),
        (payload(answers="Paris."), 2, "list of strings"),
        (payload(answers=["Paris.", 3]), 2, "list of strings"),
        (payload(), 3, "2 answers for 3 prompts"),
        (payload(system_info=7), 2, "must be strings"),
    ],
)
def test_bad_answer_files_are_one_line_errors(
    cross_build: ModuleType, text: str, expected: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        cross_build.parse_answers(text, expected)
    assert "\n" not in str(caught.value)


def test_cpu_flags_are_the_features_set_to_one(cross_build: ModuleType) -> None:
    assert cross_build.cpu_flags(PORTABLE)[:7] == [
        "SSE3",
        "SSSE3",
        "AVX",
        "AVX2",
        "F16C",
        "FMA",
        "BMI2",
    ]
    assert "AVX512" not in cross_build.cpu_flags(PORTABLE)
    assert cross_build.cpu_flags("CPU : AVX = 0 | AVX2 = 1 |") == ["AVX2"]
    assert cross_build.cpu_flags("") == []
    only_native = [
        f for f in cross_build.cpu_flags(NATIVE) if f not in cross_build.cpu_flags(PORTABLE)
    ]
    assert only_native == ["AVX512", "AVX512_VBMI", "AVX512_VNNI"]
