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
from engine.inference.runtime import Prompt
from engine.inference.types import GenerationResult, LikelihoodResult, SamplingParams
from engine.poi.validation import (
    AnswerLikelihood,
    ValidationThresholds,
    Verdict,
    cosine_similarity,
    judge_answer,
    medoid,
)

TOKEN_LIMIT_SLACK = 2


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
        vectors = self.embedder.embed([reference] + [answer for _, answer in answers])
        judged = tuple(
            self._judge_one(prompt, miner, answer, vectors[0], vectors[i + 1], max_tokens)
            for i, (miner, answer) in enumerate(answers)
        )
        passing = [i for i, j in enumerate(judged) if j.verdict.passed]
        consensus = None
        if passing:
            consensus = passing[medoid([vectors[i + 1] for i in passing])]
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
        scored = self.chat.score_likelihood(prompt, answer)
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
