"""The oracle's Proof-of-Inference check on real models: likelihood, then semantic similarity.

The validator holds the same chat model as the miners and an embedding model. For one prompt it
prefills prompt + answer for each miner's answer and reads, per answer token, how far its
log-probability is below the validator's own top token there (the gap) and whether ending after
the last token is the validator's choice (the likelihood check); then the cosine between the
answers' embeddings and the validator's own answer (the semantic check).
`engine.poi.validation.judge_answer` turns those figures into the verdict; the medoid of the
passing answers is the consensus.

Checking costs less than answering: a prefill scores a whole answer in one batched pass, where
answering decodes it token by token (on a CPU it scores over a float16 copy of the registered
weights, whose batched kernels are faster: `scorer`, engine/inference/scoring_copy.py). The
validator generates its own greedy answer (with the registered file) only when it needs it
(`ReferencePolicy.ON_FAILURE`, the default): when an answer fails the likelihood layer, to apply
the checksum level (an answer that is exactly the validator's greedy answer passes outright) and
to give the semantic check its reference. When every answer passes the likelihood
layer, every answer is the validator's own greedy path within the near-tie margin, so their
consensus stands for the validator's answer in the semantic check (docs/VALIDATION.md measures
what the full reference would add).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
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

    def score_many(
        self, prompt: Prompt, answers: Sequence[str]
    ) -> list[LikelihoodResult | None]: ...


class EmbeddingModel(Protocol):
    def embed(self, texts: list[str]) -> list[list[float]]: ...


class ReferencePolicy(StrEnum):
    """When the validator generates its own full greedy answer for a task."""

    ALWAYS = "always"  # every task: checking costs about one answer more than scoring
    ON_FAILURE = "on_failure"  # only when some answer fails the likelihood layer


@dataclass(frozen=True)
class JudgedAnswer:
    miner: str
    answer: str
    verdict: Verdict
    score: int  # 0-100, what goes on chain
    likelihood: AnswerLikelihood | None = None  # the figures the verdict was made from


@dataclass(frozen=True)
class CheckingTimes:
    """Where the validator's seconds for one task went."""

    scoring_s: float = 0.0  # prefill of every answer
    reference_s: float = 0.0  # its own greedy answer (0 when not generated)
    embedding_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.scoring_s + self.reference_s + self.embedding_s


@dataclass(frozen=True)
class Judgement:
    prompt: str
    reference: str  # the validator's own greedy answer; "" when it was not needed
    answers: tuple[JudgedAnswer, ...]
    consensus_index: int | None  # index into answers of the consensus answer, None if none passed
    checking_s: float = 0.0  # the validator's own time: scoring, reference answer, embeddings
    times: CheckingTimes = CheckingTimes()
    reference_generated: bool = False


def _scorable_length(answer: str, max_tokens: int) -> bool:
    return 0 < len(answer) <= max_tokens * MAX_CHARS_PER_TOKEN


def chain_score(verdict: Verdict) -> int:
    """Agreement (near-tie margin included) in percent, on the right side of the pass mark."""
    raw = round(100 * verdict.agreement)
    return max(PASS_SCORE, min(100, raw)) if verdict.passed else min(PASS_SCORE - 1, raw)


def likelihood_of(scored: LikelihoodResult, max_tokens: int) -> AnswerLikelihood:
    """The pure layer's input from the runtime's token scores."""
    return AnswerLikelihood(
        top1=tuple(t.top1 for t in scored.tokens),
        logprobs=tuple(t.logprob for t in scored.tokens),
        top_logprobs=tuple(t.top_logprob for t in scored.tokens),
        ranks=tuple(t.rank for t in scored.tokens),
        eos_expected_after=scored.ends_properly,
        # Re-tokenizing the answer's text can merge a token or two: an answer generated up
        # to the limit then counts a little under it (measured: 95 for a limit of 96).
        hit_token_limit=len(scored.tokens) >= max_tokens - TOKEN_LIMIT_SLACK,
        end_logprob=scored.end_logprob,
        end_top_logprob=scored.end_top_logprob,
    )


class Validator:
    def __init__(
        self,
        chat: ChatModel,
        embedder: EmbeddingModel,
        thresholds: ValidationThresholds | None = None,
        reference: ReferencePolicy = ReferencePolicy.ON_FAILURE,
        scorer: ChatModel | None = None,
    ) -> None:
        self.chat = chat
        # What scores the answers: the float16 copy of the registered model on a CPU
        # (engine.inference.scoring_copy), else the chat model, which generates the reference.
        self.scorer = scorer or chat
        self.embedder = embedder
        self.thresholds = thresholds or ValidationThresholds()
        self.reference = reference
        # The likelihood layer alone: whether an answer needs the reference to be judged.
        self._likelihood_only = replace(self.thresholds, cosine_min=None, require_checksum=False)

    def judge(self, prompt: Prompt, answers: list[tuple[str, str]], max_tokens: int) -> Judgement:
        """Judge (miner, answer) pairs given for one prompt (text or chat messages) under one
        token limit. Whatever is wrong with an answer is a failing verdict, never an error: an
        empty one (an honest tiny model can stop at once) and one too long to score fail here.
        A crash of the worker is not the answer's fault: WorkerCrashedError goes up, and the
        oracle judges the task again."""
        started = time.monotonic()
        texts = [answer for _, answer in answers]
        likelihoods = self._likelihoods(prompt, texts, max_tokens)
        scored_at = time.monotonic()
        reference = self._reference_if_needed(prompt, likelihoods, max_tokens)
        referenced_at = time.monotonic()
        # Only answers that were scored are embedded: an empty or oversized one (refused, a
        # Check) fails anyway, and must not stand in the consensus the others are compared to.
        scored_texts = [
            t for t, lk in zip(texts, likelihoods, strict=True) if isinstance(lk, AnswerLikelihood)
        ]
        vectors = self._embed_distinct(
            ([reference] if reference is not None else []) + scored_texts
        )
        answer_vectors = [
            vectors.get(text) if isinstance(lk, AnswerLikelihood) else None
            for text, lk in zip(texts, likelihoods, strict=True)
        ]
        target = vectors.get(reference) if reference is not None else None
        if reference is None:
            target = self._consensus_vector([v for v in answer_vectors if v is not None])
        judged = tuple(
            self._verdict(miner, answer, likelihood, target, vector, reference)
            for (miner, answer), likelihood, vector in zip(
                answers, likelihoods, answer_vectors, strict=True
            )
        )
        ended = time.monotonic()
        passing = [i for i, j in enumerate(judged) if j.verdict.passed]
        consensus = None
        if passing:
            passing_vectors = [answer_vectors[i] or [0.0] for i in passing]
            consensus = passing[medoid(passing_vectors)]
        times = CheckingTimes(scored_at - started, referenced_at - scored_at, ended - referenced_at)
        text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        return Judgement(
            text, reference or "", judged, consensus, ended - started, times, reference is not None
        )

    def _likelihoods(
        self, prompt: Prompt, texts: list[str], max_tokens: int
    ) -> list[AnswerLikelihood | Check]:
        """Each answer's figures, or the check that refused it before any scoring."""
        scorable = [t for t in texts if _scorable_length(t, max_tokens)]
        try:
            results = iter(self.scorer.score_many(prompt, scorable))
        except InferenceRequestError as exc:
            if str(exc) == "cancelled":
                raise  # the node is stopping: no verdict at all
            results = iter(self._one_by_one(prompt, scorable))
        out: list[AnswerLikelihood | Check] = []
        for text in texts:
            if not _scorable_length(text, max_tokens):
                out.append(Check.LENGTH if text else Check.EMPTY)
                continue
            result = next(results)
            if result is None:  # no tokens, or prompt and answer do not fit the context
                out.append(Check.LENGTH)
            elif len(result.tokens) > max_tokens + OVER_LIMIT_SLACK:
                # More tokens than the task allowed: not an answer this task's miner could give.
                out.append(Check.LENGTH)
            else:
                out.append(likelihood_of(result, max_tokens))
        return out

    def _one_by_one(self, prompt: Prompt, texts: list[str]) -> list[LikelihoodResult | None]:
        results: list[LikelihoodResult | None] = []
        for text in texts:
            try:
                results.append(self.scorer.score_likelihood(prompt, text))
            except InferenceRequestError as exc:
                if str(exc) == "cancelled":
                    raise
                results.append(None)
        return results

    def _embed_distinct(self, texts: list[str]) -> dict[str, list[float]]:
        """One embedding per distinct non-blank text (miners of one build answer alike)."""
        distinct = list(dict.fromkeys(text for text in texts if text.strip()))
        if len(distinct) <= 1:
            # One text: every cosine is that text's with itself, 1, and no model is needed.
            return {text: [1.0] for text in distinct}
        return dict(zip(distinct, self.embedder.embed(distinct), strict=True))

    def _reference_if_needed(
        self, prompt: Prompt, likelihoods: list[AnswerLikelihood | Check], max_tokens: int
    ) -> str | None:
        needed = self.reference is ReferencePolicy.ALWAYS or any(
            isinstance(likelihood, AnswerLikelihood)
            and likelihood.top1
            and not judge_answer(likelihood, None, self._likelihood_only).passed
            for likelihood in likelihoods
        )
        if not needed:
            return None
        return self.chat.generate(prompt, SamplingParams(max_tokens=max_tokens)).text

    def _consensus_vector(self, vectors: list[list[float]]) -> list[float] | None:
        # Only reached when every non-empty answer passed the likelihood layer, i.e. each is the
        # validator's own greedy path within the near-tie margin: their medoid stands in for it.
        present = [v for v in vectors if any(v)]
        return present[medoid(present)] if present else None

    def _verdict(
        self,
        miner: str,
        answer: str,
        likelihood: AnswerLikelihood | Check,
        target: list[float] | None,
        vector: list[float] | None,
        reference: str | None,
    ) -> JudgedAnswer:
        if isinstance(likelihood, Check):
            verdict = refused(likelihood, self.thresholds)
            return JudgedAnswer(miner, answer, verdict, chain_score(verdict))
        if reference is not None and likelihood.top1:
            likelihood = replace(likelihood, greedy_path=answer == reference)
        cosine = 0.0  # a blank answer has no direction, as before
        if target is not None and vector is not None:
            cosine = cosine_similarity(target, vector)
        verdict = judge_answer(likelihood, cosine, self.thresholds)
        return JudgedAnswer(miner, answer, verdict, chain_score(verdict), likelihood)
