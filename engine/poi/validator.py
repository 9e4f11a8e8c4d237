"""The oracle's Proof-of-Inference check on real models: likelihood, then semantic similarity.

The validator holds the same chat model as the miners and an embedding model. For one prompt it
computes its own greedy answer once, then for each miner's answer: prefill prompt + answer and
count how often each answer token is the model's own top-1 choice and whether the answer ends
where the model would end (the likelihood check), and the cosine between the answer's embedding
and the validator's own answer (the semantic check). `engine.poi.validation.judge_answer` turns
those
figures into the verdict; the medoid of the passing answers is the consensus.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from chain.wrappers import PASS_SCORE
from engine.errors import InferenceRequestError
from engine.inference.runtime import Prompt
from engine.inference.types import GenerationResult, LikelihoodResult, SamplingParams
from engine.poi.validation import (
    AnswerLikelihood,
    Check,
    ValidationThresholds,
    Verdict,
    cosine_similarity,
    judge_answer,
    medoid,
    refused,
)

TOKEN_LIMIT_SLACK = 2
# Re-tokenizing an answer's text seldom gives more tokens than were generated (it merges more
# often than it splits); past the limit by more than this, the answer is too long for the task.
OVER_LIMIT_SLACK = 8
# No token of a chat model's vocabulary is near this long, so an answer with more characters
# than this times the token limit cannot be one the limit allowed: failed without a prefill.
MAX_CHARS_PER_TOKEN = 32


class ChatModel(Protocol):
    def generate(
        self, prompt: Prompt, params: SamplingParams | None = None
    ) -> GenerationResult: ...

    def score_likelihood(self, prompt: Prompt, answer: str) -> LikelihoodResult: ...


class EmbeddingModel(Protocol):
    def embed(self, texts: list[str]) -> list[list[float]]: ...


@dataclass(frozen=True)
class JudgedAnswer:
    miner: str
    answer: str
    verdict: Verdict
    score: int  # 0-100, what goes on chain


@dataclass(frozen=True)
class Judgement:
    prompt: str
    reference: str
    answers: tuple[JudgedAnswer, ...]
    consensus_index: int | None  # index into answers of the consensus answer, None if none passed
    checking_s: float = 0.0  # the validator's own time: reference answer, scoring, embeddings


def _scorable_length(answer: str, max_tokens: int) -> bool:
    return 0 < len(answer) <= max_tokens * MAX_CHARS_PER_TOKEN


def chain_score(verdict: Verdict) -> int:
    """Top-1 agreement as a percentage, kept on the right side of the chain's pass mark."""
    raw = round(100 * verdict.top1_agreement)
    return max(PASS_SCORE, min(100, raw)) if verdict.passed else min(PASS_SCORE - 1, raw)


class Validator:
    def __init__(
        self,
        chat: ChatModel,
        embedder: EmbeddingModel,
        thresholds: ValidationThresholds | None = None,
    ) -> None:
        self.chat = chat
        self.embedder = embedder
        self.thresholds = thresholds or ValidationThresholds()

    def judge(self, prompt: Prompt, answers: list[tuple[str, str]], max_tokens: int) -> Judgement:
        """Judge (miner, answer) pairs given for one prompt (text or chat messages) under one
        token limit."""
        started = time.monotonic()
        reference = self.chat.generate(prompt, SamplingParams(max_tokens=max_tokens)).text
        # Only answers that can be scored are embedded: an empty or oversized one fails anyway.
        texts = [a for _, a in answers if _scorable_length(a, max_tokens)]
        embedded = iter(self.embedder.embed([reference, *texts]))
        reference_vector = next(embedded)
        vectors = [next(embedded) if _scorable_length(a, max_tokens) else [] for _, a in answers]
        judged = tuple(
            self._judge_one(prompt, miner, answer, reference_vector, vectors[i], max_tokens)
            for i, (miner, answer) in enumerate(answers)
        )
        passing = [i for i, j in enumerate(judged) if j.verdict.passed]
        consensus = None
        if passing:
            consensus = passing[medoid([vectors[i] for i in passing])]
        text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        return Judgement(text, reference, judged, consensus, time.monotonic() - started)

    def _judge_one(
        self,
        prompt: Prompt,
        miner: str,
        answer: str,
        reference_vector: list[float],
        answer_vector: list[float],
        max_tokens: int,
    ) -> JudgedAnswer:
        """One answer's verdict. The answer is the miner's, so whatever is wrong with it is a
        failing verdict, never an error: an empty one (an honest tiny model can stop at once)
        and one too long to score fail here. A crash of the worker is not the answer's fault:
        WorkerCrashedError goes up, and the oracle judges the task again."""
        if not _scorable_length(answer, max_tokens):
            return self._refused(miner, answer, Check.LENGTH if answer else Check.EMPTY)
        try:
            scored = self.chat.score_likelihood(prompt, answer)
        except InferenceRequestError as exc:
            if str(exc) == "cancelled":
                raise  # the node is stopping: no verdict at all
            # "prompt and answer do not fit in the context", or no tokens at all
            return self._refused(
                miner, answer, Check.EMPTY if "empty" in str(exc) else Check.LENGTH
            )
        if len(scored.tokens) > max_tokens + OVER_LIMIT_SLACK:
            # More tokens than the task allowed: not an answer this task's miner could give.
            return self._refused(miner, answer, Check.LENGTH)
        likelihood = AnswerLikelihood(
            top1=tuple(t.top1 for t in scored.tokens),
            logprobs=tuple(t.logprob for t in scored.tokens),
            eos_expected_after=scored.ends_properly,
            # Re-tokenizing the answer's text can merge a token or two: an answer generated up
            # to the limit then counts a little under it (measured: 95 for a limit of 96).
            hit_token_limit=len(scored.tokens) >= max_tokens - TOKEN_LIMIT_SLACK,
            end_logprob=scored.end_logprob,
        )
        cosine = cosine_similarity(reference_vector, answer_vector) if answer.strip() else 0.0
        verdict = judge_answer(likelihood, cosine, self.thresholds)
        return JudgedAnswer(miner, answer, verdict, chain_score(verdict))

    def _refused(self, miner: str, answer: str, check: Check) -> JudgedAnswer:
        verdict = refused(check, self.thresholds)
        return JudgedAnswer(miner, answer, verdict, chain_score(verdict))
