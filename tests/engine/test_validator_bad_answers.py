"""The validator on real models: a bad answer is a failing verdict, a worker crash is an error.

An honest tiny model can stop at once (an empty answer); a miner can reveal an answer longer
than any token limit allows. Neither may raise out of `judge`: the oracle would stop for every
task on the network. A crash of the validator's own worker is not the answer's fault, so it is
raised for the oracle to judge again (tests/node/test_oracle_robustness.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import WorkerCrashedError
from engine.failpoints import ENV
from engine.inference.runtime import InferenceWorker
from engine.inference.types import SamplingParams
from engine.poi.validation import Check
from engine.poi.validator import MAX_CHARS_PER_TOKEN, Validator
from profiler.load_settings import LoadSettings

PROMPT = "Name three colours of the rainbow."
MAX_TOKENS = 32


def test_empty_oversized_and_unfitting_answers_fail_and_an_honest_one_passes(
    chat_worker: InferenceWorker, embed_worker: InferenceWorker
) -> None:
    validator = Validator(chat_worker, embed_worker)
    honest = chat_worker.generate(PROMPT, SamplingParams(max_tokens=MAX_TOKENS)).text
    # A real answer, generated under three times the task's limit: more tokens than allowed.
    overlong = chat_worker.generate(
        "Explain in detail how photosynthesis works.", SamplingParams(max_tokens=3 * MAX_TOKENS)
    )
    assert len(overlong.token_ids) > MAX_TOKENS + 16
    # Within the character bound (1,024), but more tokens than the worker's context (1,024)
    # holds: each emoji is several byte tokens.
    unfitting = "\N{SLIGHTLY SMILING FACE}" * (MAX_TOKENS * MAX_CHARS_PER_TOKEN - 24)
    answers = [
        ("empty", ""),
        ("huge", "x" * 20_000),
        ("unfitting", unfitting),
        ("overlong", overlong.text),
        ("honest", honest),
    ]
    judgement = validator.judge(PROMPT, answers, MAX_TOKENS)
    by_miner = {j.miner: j for j in judgement.answers}
    assert by_miner["empty"].verdict.failed_checks == (Check.EMPTY,)
    assert by_miner["huge"].verdict.failed_checks == (Check.LENGTH,)
    assert by_miner["unfitting"].verdict.failed_checks == (Check.LENGTH,)
    assert by_miner["overlong"].verdict.failed_checks == (Check.LENGTH,)
    assert {by_miner[m].score for m in ("empty", "huge", "unfitting", "overlong")} == {0}
    assert by_miner["honest"].verdict.passed, by_miner["honest"].verdict
    assert judgement.consensus_index == 4


def test_a_crash_of_the_validators_worker_is_raised_not_judged(
    smollm_path: Path, embed_worker: InferenceWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "worker-score")  # the worker SIGKILLs itself while scoring
    worker = InferenceWorker(smollm_path, LoadSettings(n_ctx=512, n_threads=1))
    try:
        worker.start()
        with pytest.raises(WorkerCrashedError):
            Validator(worker, embed_worker).judge(PROMPT, [("m", "Red, green and blue.")], 32)
        assert [death.signal_name for death in worker.deaths] == ["SIGKILL"]
    finally:
        worker.close()
