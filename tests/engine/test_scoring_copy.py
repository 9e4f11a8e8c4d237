"""The validator's float16 scoring copy: made once, only where it pays, and it judges as the
registered file does (honest answers pass, another text fails)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from gguf import GGMLQuantizationType, GGUFReader

from engine.inference.runtime import InferenceWorker
from engine.inference.scoring_copy import make_scoring_copy, scoring_model
from engine.inference.types import SamplingParams
from engine.models.store import scoring_copy_path
from engine.poi.validation import ValidationThresholds
from engine.poi.validator import Validator
from profiler.load_settings import LoadSettings

LOAD = LoadSettings(n_ctx=1024, n_threads=1)
GIB = 1 << 30
PROMPTS = ("Name three colours of the rainbow.", "Give one tip about sleep.", "What is a comet?")


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory: pytest.TempPathFactory, smollm_path: Path) -> Path:
    """The registered file in a folder of its own: the copy is written next to the model."""
    model = tmp_path_factory.mktemp("scoring") / smollm_path.name
    shutil.copyfile(smollm_path, model)
    return model


@pytest.fixture(scope="module")
def scorer(model_copy: Path) -> Iterator[InferenceWorker]:
    copy = scoring_model(model_copy, LOAD, available_bytes=8 * GIB)
    assert copy == scoring_copy_path(model_copy)
    with InferenceWorker(copy, LOAD) as worker:
        yield worker


def test_the_copy_is_float16_made_once_and_remade_for_a_newer_model(
    model_copy: Path, scorer: InferenceWorker
) -> None:
    copy = scoring_copy_path(model_copy)
    matrices = [t for t in GGUFReader(str(copy)).tensors if len(t.shape) > 1]
    assert matrices and {t.tensor_type for t in matrices} == {GGMLQuantizationType.F16}
    made_at = copy.stat().st_mtime_ns
    assert make_scoring_copy(model_copy) == copy
    assert copy.stat().st_mtime_ns == made_at  # kept, not converted again
    newer = copy.stat().st_mtime + 10
    os.utime(model_copy, (newer, newer))  # the model file was replaced after the copy
    make_scoring_copy(model_copy)
    assert copy.stat().st_mtime_ns != made_at
    assert not list(model_copy.parent.glob("*.part"))


def test_no_copy_on_a_gpu_without_the_memory_or_for_a_float16_file(
    model_copy: Path, scorer: InferenceWorker, tmp_path: Path
) -> None:
    assert scoring_model(model_copy, LoadSettings(n_gpu_layers=99), available_bytes=8 * GIB) is None
    # 135M parameters: a 270 MB copy does not get half of 300 MB.
    assert scoring_model(model_copy, LOAD, available_bytes=300 << 20) is None
    copy = scoring_copy_path(model_copy)
    assert scoring_model(copy, LOAD, available_bytes=8 * GIB) is None
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))
    assert scoring_model(broken, LOAD, available_bytes=8 * GIB) is None  # said in the log


def test_scoring_over_the_copy_passes_the_models_own_answers_and_fails_another_text(
    chat_worker: InferenceWorker, embed_worker: InferenceWorker, scorer: InferenceWorker
) -> None:
    validator = Validator(chat_worker, embed_worker, scorer=scorer)
    margin = ValidationThresholds().near_tie_margin
    for prompt in PROMPTS:
        own = chat_worker.generate(prompt, SamplingParams(max_tokens=48)).text
        canned = "I am a helpful assistant and I am happy to help you with anything today."
        judgement = validator.judge(prompt, [("a", own), ("b", own), ("canned", canned)], 48)
        honest, _, other = judgement.answers
        assert honest.verdict.passed, (prompt, honest.verdict)
        assert not other.verdict.passed
        # Near the registered file's own scores: a rounding apart, not another model.
        assert honest.likelihood is not None
        within = [t for t in scorer.score_likelihood(prompt, own).tokens if t.gap <= margin]
        assert len(within) >= 0.95 * len(honest.likelihood.top1)
