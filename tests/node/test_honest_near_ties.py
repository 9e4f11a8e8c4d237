"""The README run's failure as a regression: honest miners of the validator's own build, unpaid.

In the README's run, all three honest miners of one network task failed the opening check
together, with text byte-identical to the validator's own greedy answer: the miner decodes token
by token, the validator scores the same tokens in one batched prefill, and where two tokens are
nearly tied the prefill's top-1 can differ from the token the decode picked. Here three miners
of the validator's build answer many tasks (greedy on one build: the same text, so one
generation per task stands for all three), each task is judged by the oracle's validator as the
oracle judges it, and no honest miner may go unpaid; the prompts include the bench's least
decided openings ("Give one tip about ...", docs/VALIDATION.md). Each test runs twice: scored
over the registered file, and over the float16 copy an oracle on a CPU scores with.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest

from chain.wrappers import PASS_SCORE
from engine.inference.runtime import InferenceWorker
from engine.inference.scoring_copy import scoring_model
from engine.inference.types import SamplingParams
from engine.node import task_prompt
from engine.poi.validator import Validator
from profiler.load_settings import LoadSettings

TOPICS = ["paper", "the heart", "bees", "tea", "owls", "bridges"]
TEMPLATES = ["Give one tip about {}.", "Why does {} matter?", "What is interesting about {}?"]
MAX_TOKENS = 96
MINERS = 3
# The validator scores over the registered file, or over the float16 copy a CPU node makes.
SCORING = ["registered", "copy"]


def scorer_for(
    scoring: str, chat_model: Path, load: LoadSettings, more: contextlib.ExitStack
) -> InferenceWorker | None:
    if scoring == "registered":
        return None
    copy = scoring_model(chat_model, load)
    assert copy is not None, "this machine should make the copy (CPU, memory free)"
    return more.enter_context(InferenceWorker(copy, load))


@pytest.mark.timeout(900)  # about 50 s on a quiet machine; minutes when the cores are shared
@pytest.mark.parametrize("scoring", SCORING)
def test_three_honest_miners_of_the_validator_s_build_are_paid_for_every_task(
    models_dir: Path, scoring: str
) -> None:
    prompts = [t.format(topic) for topic in TOPICS for t in TEMPLATES]
    load = LoadSettings(n_ctx=1024, n_threads=1)
    chat_model = models_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"
    embedding = models_dir / "all-MiniLM-L6-v2.F16.gguf"
    with (
        InferenceWorker(chat_model, load) as miner,
        InferenceWorker(chat_model, load) as chat,
        InferenceWorker(embedding, LoadSettings(n_ctx=512, n_threads=1), kind="embedding") as embed,
        contextlib.ExitStack() as more,
    ):
        validator = Validator(chat, embed, scorer=scorer_for(scoring, chat_model, load, more))
        unpaid: list[str] = []
        near_ties = 0
        for prompt in prompts:
            answer = miner.generate(prompt, SamplingParams(max_tokens=MAX_TOKENS)).text
            task = [(f"miner-{m}", answer) for m in range(MINERS)]
            judgement = validator.judge(prompt, task, MAX_TOKENS)
            for judged in judgement.answers:
                if judged.score < PASS_SCORE:
                    unpaid.append(f"{prompt!r} {judged.miner}: {judged.verdict.failed_checks}")
            # Every answer passed the likelihood layer: the validator needed no answer of its own.
            assert not judgement.reference_generated, prompt
            likelihood = judgement.answers[0].likelihood
            assert likelihood is not None
            near_ties += sum(1 for gap in likelihood.gaps() if 0 < gap < math.inf)
    assert not unpaid, unpaid
    # The effect is there to be survived: prefill and decode disagreed on some near-tied tokens.
    assert near_ties > 0


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scoring", SCORING)
def test_an_honest_user_task_answer_passes_on_the_likelihood_layer_alone(
    models_dir: Path, scoring: str
) -> None:
    """`ask "What is the capital of Italy?"` once passed only through the checksum level: the
    miner's decode split its answer " Cor" "io" "b" "ella", the validator's tokenizer split the
    same text " Cor" "i" "ob" "ella", and the prefill scored that split 6 and 12 nats below its
    top token (strict top-1 0.375). Scored on the split the decode produced, the answer is the
    validator's own path: it passes without the validator generating an answer of its own."""
    load = LoadSettings(n_ctx=1024, n_threads=1)
    chat_model = models_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"
    embedding = models_dir / "all-MiniLM-L6-v2.F16.gguf"
    with (
        InferenceWorker(chat_model, load) as miner,
        InferenceWorker(chat_model, load) as chat,
        InferenceWorker(embedding, LoadSettings(n_ctx=512, n_threads=1), kind="embedding") as embed,
        contextlib.ExitStack() as more,
    ):
        scorer = scorer_for(scoring, chat_model, load, more)
        # The user task's path: the prompt on chain, decoded by miner and oracle alike.
        prompt = task_prompt.decode(task_prompt.encode_text("What is the capital of Italy?", None))
        limit = prompt.answer_limit(128)
        answer = miner.generate(prompt.model_input, SamplingParams(max_tokens=limit))
        task = [("miner", answer.text)]
        judgement = Validator(chat, embed, scorer=scorer).judge(prompt.model_input, task, limit)
    judged = judgement.answers[0]
    assert judged.verdict.passed, judged.verdict.failed_checks
    assert not judgement.reference_generated  # the exact-match level was never consulted
    assert judged.verdict.greedy_path is None
    assert judged.verdict.agreement == 1.0
    assert judged.verdict.top1_agreement >= 0.85  # near-ties within the margin may remain
    assert judged.verdict.tokens == len(answer.token_ids)
