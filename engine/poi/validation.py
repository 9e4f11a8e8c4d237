"""Proof of Inference and Proof of Useful Work as pure functions on plain numbers.

The I/O lives elsewhere: the runtime scores prompt + answer (likelihood figures) and embeds
answers; the oracle loop feeds those figures here and publishes the `Verdict`. Nothing in this
module touches a model, a file or the chain, so every rule is tested with plain values.

Layers of one answer's check (docs/VALIDATION.md has the measurements behind the defaults):
1. likelihood: the share of answer tokens that are the validator's own choice (top-1, or within a
   near-tie margin of the top token's log-probability), the same for the opening tokens, and
   whether the answer ends where the model would end (EOS within the margin, or the limit); an
   answer that is exactly the validator's own greedy path passes this layer outright;
2. semantic: cosine between the answer's embedding and the validator's own greedy answer;
3. checksum: exact equality, only meaningful between identical builds.

Per node, a window of recent verdicts decides removal from the pool with a binomial rule, so an
honest node's rare false flags do not remove it (`should_remove`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Check(StrEnum):
    """Which check an answer failed; the order of the members is the order they are reported."""

    EMPTY = "empty"
    # Longer than the task's token limit allows, or too long for the validator's context: an
    # honest miner's answer is bounded by the limit, so no likelihood is needed to fail it.
    LENGTH = "length"
    OPENING = "opening"
    TOP1 = "top1"
    # More misses than an honest answer's near-tie noise makes probable (a binomial test).
    MISSES = "misses"
    ENDING = "ending"
    COSINE = "cosine"
    CHECKSUM = "checksum"


@dataclass(frozen=True)
class ValidationThresholds:
    """Settings. Defaults measured on SmolLM2-135M, AVX-512 vs AVX2 builds (docs/VALIDATION.md)."""

    # Share of answer tokens that count as the validator's own choice (top-1, or within the
    # near-tie margin of it). Honest cross-build answers: strict top-1 min 0.82, median 0.97.
    top1_min: float = 0.80
    # Cosine to the validator's own greedy answer; None turns the semantic layer off.
    cosine_min: float | None = 0.30
    require_proper_ending: bool = True
    # Greedy decoding: an honest answer opens exactly as the validator's own greedy answer;
    # builds drift apart only after 15-20 tokens (docs/VALIDATION.md), another model at once. Fluent
    # repetitive text from another model can score a high top-1 rate overall (measured: Gemma-3
    # 270M 0.89 against SmolLM2), but not the opening. No miss is allowed there: the one that
    # used to be was for a near-tie flipped by hardware, which the margin now excuses.
    opening_tokens: int = 8
    opening_misses_max: int = 0
    # In the opening a token is a miss only when it is more than this far below the top (and
    # beyond the near-tie margin): honest answers of two builds left near-ties up to 0.59 nats
    # in the opening and elsewhere, another model's opening misses are nats apart, and the
    # misses check counts the smaller ones over the whole answer. docs/VALIDATION.md.
    opening_margin: float = 1.0
    # A token is a miss only when its log-probability is more than this many nats below the
    # validator's top token at its position; the ending is judged the same way. A batched
    # prefill and a token-by-token decode (or another build) sum in another order, so two nearly
    # tied tokens can swap places: that is float noise, not another model. docs/VALIDATION.md
    # derives the value from the measured gaps of honest and cheating answers (token level: the
    # margin that best separates honest noise from the closest cheater's choices).
    near_tie_margin: float = 0.2
    # Exact equality only holds between identical builds (10/40 across builds), so opt-in.
    require_checksum: bool = False
    # The misses check: an honest answer's tokens are misses (beyond the margin) at most at
    # this rate each, so an answer with n tokens fails when P(X >= its misses), X ~
    # Binomial(n, rate), is below `misses_alpha`. A cheaper quant or a sampler leaves misses
    # all through the answer at 10-30 times that rate. docs/VALIDATION.md derives both figures
    # from honest answers only. None turns the check off.
    honest_miss_rate: float | None = 0.01
    misses_alpha: float = 0.001

    def __post_init__(self) -> None:
        if not 0.0 <= self.top1_min <= 1.0:
            raise ValueError(f"top1_min must be within [0, 1], got {self.top1_min}")
        if self.cosine_min is not None and not -1.0 <= self.cosine_min <= 1.0:
            raise ValueError(f"cosine_min must be within [-1, 1], got {self.cosine_min}")
        if self.opening_tokens < 0 or self.opening_misses_max < 0:
            raise ValueError("opening_tokens and opening_misses_max must not be negative")
        if self.honest_miss_rate is not None and not 0.0 < self.honest_miss_rate < 1.0:
            raise ValueError(f"honest_miss_rate must be within (0, 1), got {self.honest_miss_rate}")
        if not 0.0 < self.misses_alpha < 1.0:
            raise ValueError(f"misses_alpha must be within (0, 1), got {self.misses_alpha}")
        if not 0.0 <= self.opening_margin < math.inf:
            raise ValueError(
                f"opening_margin must be a finite number >= 0, got {self.opening_margin}"
            )
        if not 0.0 <= self.near_tie_margin < math.inf:
            raise ValueError(
                f"near_tie_margin must be a finite number >= 0, got {self.near_tie_margin}"
            )


@dataclass(frozen=True)
class AnswerLikelihood:
    """What the validator's prefill of prompt + answer says about the answer's tokens.

    `top1[i]` is True when answer token i is the validator's own most likely next token;
    `logprobs[i]` is the validator's log-probability of that token and `top_logprobs[i]` that of
    its own top token there (so their difference is the token's gap to the top), `ranks[i]` the
    token's rank (1 = top). `eos_expected_after` says whether the validator's top-1 after the
    last answer token is end-of-sequence, `end_logprob` / `end_top_logprob` the log-probability of
    ending there and of the top token there, and `hit_token_limit` whether the answer has exactly
    the task's token limit (the validator counts this itself; it is never taken from the miner).
    `greedy_path` is True when the answer's tokens are exactly the validator's own greedy answer
    (the checksum level: nobody produces it without running the registered model).
    """

    top1: tuple[bool, ...]
    logprobs: tuple[float, ...] = ()
    eos_expected_after: bool = False
    hit_token_limit: bool = False
    end_logprob: float | None = None
    top_logprobs: tuple[float, ...] = ()
    ranks: tuple[int, ...] = ()
    end_top_logprob: float | None = None
    greedy_path: bool | None = None

    def __post_init__(self) -> None:
        for name in ("logprobs", "top_logprobs", "ranks"):
            values = getattr(self, name)
            if values and len(values) != len(self.top1):
                raise ValueError(f"{name} has {len(values)} entries for {len(self.top1)} tokens")
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs need the answer tokens' logprobs too")

    def gaps(self) -> tuple[float, ...]:
        """Each token's gap (nats) below the validator's top token; without the top's
        log-probabilities, 0 for a top-1 token and infinity for any other (the strict rule)."""
        if self.top_logprobs:
            return tuple(
                0.0 if hit else max(0.0, top - own)
                for hit, own, top in zip(self.top1, self.logprobs, self.top_logprobs, strict=True)
            )
        return tuple(0.0 if hit else math.inf for hit in self.top1)

    def end_gap(self) -> float | None:
        """How far ending here is below the validator's top choice; 0 when it would stop."""
        if self.eos_expected_after:
            return 0.0
        if self.end_logprob is None or self.end_top_logprob is None:
            return None
        return max(0.0, self.end_top_logprob - self.end_logprob)


@dataclass(frozen=True)
class Verdict:
    """One answer's scores, the thresholds they were judged against, and the outcome.

    `top1_agreement` is the strict share of top-1 tokens; `agreement` the share that count as the
    validator's choice under the near-tie margin (what the top1 check and the chain score use).
    `opening_gaps` are the gaps of the opening's misses (tokens beyond the margin), `end_gap` the
    ending's gap (None when not measured), `greedy_path` whether the checksum level applied.
    """

    top1_agreement: float
    mean_logprob: float | None
    ended_properly: bool
    cosine: float | None
    checksum_match: bool | None
    tokens: int
    thresholds: ValidationThresholds
    failed_checks: tuple[Check, ...] = field(default=())
    agreement: float = 0.0
    opening_gaps: tuple[float, ...] = ()
    end_gap: float | None = None
    greedy_path: bool | None = None
    misses: int = 0  # tokens beyond the margin, the whole answer
    # P(X >= misses) for an honest answer of this length; None when the check is off.
    misses_p: float | None = None

    @property
    def passed(self) -> bool:
        return not self.failed_checks

    @property
    def failed_check(self) -> Check | None:
        """The first failed check, for a one-word reason in tables and logs."""
        return self.failed_checks[0] if self.failed_checks else None

    @property
    def opening_misses(self) -> int:
        return len(self.opening_gaps)


def top1_agreement(top1: Sequence[bool]) -> float:
    """Share of answer tokens that were the validator's own top-1 choice (0 for no tokens)."""
    return sum(1 for hit in top1 if hit) / len(top1) if top1 else 0.0


def near_top_agreement(gaps: Sequence[float], margin: float) -> float:
    """Share of answer tokens within `margin` nats of the validator's top token (0 for none)."""
    return sum(1 for gap in gaps if gap <= margin) / len(gaps) if gaps else 0.0


def ended_properly(likelihood: AnswerLikelihood, margin: float = 0.0) -> bool:
    """An answer ends properly where the model would stop: ending is the validator's choice (or
    within the near-tie margin of it), or the answer is at the token limit."""
    gap = likelihood.end_gap()
    return likelihood.hit_token_limit or (gap is not None and gap <= margin)


def judge_answer(
    likelihood: AnswerLikelihood,
    cosine: float | None,
    thresholds: ValidationThresholds,
    checksum_match: bool | None = None,
) -> Verdict:
    """The per-answer verdict that decides payment for one task."""
    margin = thresholds.near_tie_margin
    gaps = likelihood.gaps()
    opening_margin = max(margin, thresholds.opening_margin)
    opening_gaps = tuple(g for g in gaps[: thresholds.opening_tokens] if g > opening_margin)
    mean_lp = (
        math.fsum(likelihood.logprobs) / len(likelihood.logprobs) if likelihood.logprobs else None
    )
    misses = sum(1 for g in gaps if g > margin)
    rate = thresholds.honest_miss_rate
    verdict = Verdict(
        top1_agreement=top1_agreement(likelihood.top1),
        mean_logprob=mean_lp,
        ended_properly=ended_properly(likelihood, margin),
        cosine=cosine,
        checksum_match=checksum_match,
        tokens=len(likelihood.top1),
        thresholds=thresholds,
        agreement=near_top_agreement(gaps, margin),
        opening_gaps=opening_gaps,
        end_gap=likelihood.end_gap(),
        greedy_path=likelihood.greedy_path,
        misses=misses,
        misses_p=None if rate is None else binomial_tail(len(gaps), misses, rate),
    )
    return replace(verdict, failed_checks=_failed_checks(verdict, thresholds))


def refused(check: Check, thresholds: ValidationThresholds) -> Verdict:
    """The verdict on an answer failed before any scoring (empty, or too long to score)."""
    return Verdict(
        top1_agreement=0.0,
        mean_logprob=None,
        ended_properly=False,
        cosine=None,
        checksum_match=None,
        tokens=0,
        thresholds=thresholds,
        failed_checks=(check,),
    )


def _failed_checks(verdict: Verdict, thresholds: ValidationThresholds) -> tuple[Check, ...]:
    failed: list[Check] = []
    # An empty answer does no useful work, whatever the model would have said.
    if not verdict.tokens:
        failed.append(Check.EMPTY)
    # The checksum level: the validator's own greedy tokens pass the likelihood layer outright.
    greedy = verdict.greedy_path is True and verdict.tokens > 0
    if not greedy:
        if verdict.opening_misses > thresholds.opening_misses_max:
            failed.append(Check.OPENING)
        if verdict.agreement < thresholds.top1_min:
            failed.append(Check.TOP1)
        if verdict.misses_p is not None and verdict.misses_p < thresholds.misses_alpha:
            failed.append(Check.MISSES)
        if thresholds.require_proper_ending and not verdict.ended_properly:
            failed.append(Check.ENDING)
    # A missing cosine with the semantic layer on fails: "not measured" must not mean "passed".
    cosine = verdict.cosine
    if thresholds.cosine_min is not None and (cosine is None or cosine < thresholds.cosine_min):
        failed.append(Check.COSINE)
    if thresholds.require_checksum and verdict.checksum_match is not True:
        failed.append(Check.CHECKSUM)
    return tuple(failed)


def explain(verdict: Verdict) -> tuple[str, ...]:
    """One line per failed check: its figure against its threshold, the margin's figures too."""
    t = verdict.thresholds
    margin = t.near_tie_margin
    lines: list[str] = []
    for check in verdict.failed_checks:
        if check is Check.EMPTY:
            lines.append("empty: the answer has no tokens")
        elif check is Check.LENGTH:
            lines.append("length: longer than the task's token limit allows, or than the context")
        elif check is Check.OPENING:
            gaps = ", ".join("inf" if math.isinf(g) else f"{g:.2f}" for g in verdict.opening_gaps)
            opening = max(margin, t.opening_margin)
            lines.append(
                f"opening: {verdict.opening_misses} of the first {t.opening_tokens} tokens are "
                f"more than {opening:.2f} nats below the validator's top token (at most "
                f"{t.opening_misses_max} allowed); their gaps: {gaps}"
            )
        elif check is Check.TOP1:
            lines.append(
                f"top1: {verdict.agreement:.2f} of the tokens within {margin:.2f} nats of the "
                f"validator's top token, below the minimum {t.top1_min:.2f} "
                f"(strict top-1 {verdict.top1_agreement:.2f})"
            )
        elif check is Check.MISSES:
            lines.append(
                f"misses: {verdict.misses} of {verdict.tokens} tokens are more than "
                f"{margin:.2f} nats below the validator's top token; an honest answer "
                f"(at most {t.honest_miss_rate:.1%} per token) has that many with "
                f"probability {verdict.misses_p:.1e}, below {t.misses_alpha}"
            )
        elif check is Check.ENDING:
            gap = "not measured" if verdict.end_gap is None else f"{verdict.end_gap:.2f} nats"
            lines.append(
                f"ending: ending there is {gap} below the validator's top token (margin "
                f"{margin:.2f}) and the answer is not at the token limit"
            )
        elif check is Check.COSINE:
            figure = "not measured" if verdict.cosine is None else f"{verdict.cosine:.2f}"
            lines.append(f"cosine: {figure} to the validator's answer, minimum {t.cosine_min}")
        elif check is Check.CHECKSUM:
            lines.append("checksum: the text is not the validator's own greedy answer")
    return tuple(lines)


# --- semantic consensus ---------------------------------------------------------------------


def cosine_similarity(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine of two vectors; 0.0 when either is all zeros (no direction, no similarity)."""
    if len(a) != len(b):
        raise ValueError(f"vectors differ in length: {len(a)} and {len(b)}")
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    if norm == 0.0:
        return 0.0
    value = math.fsum(x * y for x, y in zip(a, b, strict=True)) / norm
    # Rounding can push a vector's cosine with itself a hair past 1.
    return max(-1.0, min(1.0, value))


def medoid(embeddings: Sequence[Sequence[float]]) -> int:
    """Index of the answer with the highest total cosine to all others: the consensus answer.

    Ties go to the lowest index so every oracle picks the same answer from the same inputs.
    """
    if not embeddings:
        raise ValueError("medoid of no answers")
    totals = [
        math.fsum(cosine_similarity(e, other) for j, other in enumerate(embeddings) if j != i)
        for i, e in enumerate(embeddings)
    ]
    best = max(totals)
    return totals.index(best)


# --- per-node window: the binomial removal rule ------------------------------------------------


@dataclass(frozen=True)
class WindowPolicy:
    """When a node's recent failures are too many to be an honest node's bad luck.

    `honest_fail_rate` (p0) is the per-answer false-flag rate of honest nodes, as measured by
    bench/validation.py over 200 prompts: 2.0 % on this build, 3.5 % on a natively built llama.cpp
    (AVX-512) judged by this one (docs/VALIDATION.md). 5 % covers both; with a window of 10 and
    `alpha` 1 % a node is removed at 4 failures. A node is removed when
    P(X >= failures | n, p0) < `alpha`, X ~ Binomial(n, p0), n being the verdicts in its window
    (at most `size`).
    """

    size: int = 10
    honest_fail_rate: float = 0.05
    alpha: float = 0.01

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("window size must be at least 1")
        if not 0.0 < self.honest_fail_rate < 1.0:
            raise ValueError("honest_fail_rate must be within (0, 1)")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be within (0, 1)")


def binomial_tail(n: int, k: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed exactly (n is a window, so small)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return min(1.0, math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def min_failures_to_flag(n: int, policy: WindowPolicy) -> int | None:
    """The fewest failures among n verdicts that flag a node; None when even n of n would not."""
    for k in range(n + 1):
        if binomial_tail(n, k, policy.honest_fail_rate) < policy.alpha:
            return k
    return None


def window_of(verdicts: Sequence[bool], policy: WindowPolicy) -> tuple[bool, ...]:
    """The last `policy.size` verdicts (True = passed), oldest first."""
    return tuple(verdicts[-policy.size :])


def should_remove(verdicts: Sequence[bool], policy: WindowPolicy) -> bool:
    """Remove a node from the pool when its recent failures are improbable for an honest node."""
    window = window_of(verdicts, policy)
    failures = sum(1 for passed in window if not passed)
    return binomial_tail(len(window), failures, policy.honest_fail_rate) < policy.alpha


# --- statistics the benchmark and the oracle share -----------------------------------------------


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% with the default z); (0, 1) when n is 0."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return (0.0, 1.0)
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def health_check_sample_size(
    population: int, p: float = 0.5, margin: float = 0.05, z: float = 1.96
) -> int:
    """How many nodes to health-check: n0 = z^2 p(1-p)/e^2, then n0 / (1 + (n0 - 1)/N).

    p = 0.5 is the worst case (largest n0). The finite-population correction keeps a small network
    from being asked for more checks than it has nodes; the result never exceeds N.
    """
    if population <= 0:
        return 0
    if not 0.0 <= p <= 1.0 or margin <= 0.0:
        raise ValueError("need 0 <= p <= 1 and margin > 0")
    n0 = z * z * p * (1 - p) / (margin * margin)
    corrected = n0 / (1 + (n0 - 1) / population)
    return max(1, min(population, math.ceil(corrected - 1e-9)))


def precommit_score(points: int, counter: int) -> float | None:
    """Precommit points / precommit counter, as operators' monitors show it; None before any."""
    if counter <= 0:
        return None
    return points / counter


# --- miner selection with cooldown ---------------------------------------------------------------


def _rank(seed: str, address: str) -> bytes:
    # A hash rank instead of random.Random: any oracle (or an auditor) reproduces the same pick
    # from the public seed, independent of Python's PRNG.
    return hashlib.sha256(f"{seed}|{address.lower()}".encode()).digest()


def select_miners(
    candidates: Sequence[str],
    k: int,
    *,
    seed: str,
    now: float,
    last_picked: Mapping[str, float],
    cooldown: float,
) -> tuple[str, ...]:
    """Pick k distinct miners, deterministically from `seed`, sparing those picked recently.

    A node is in cooldown when `now - last_picked[node] < cooldown` (units are the caller's:
    seconds or rounds). Eligible nodes are ranked by sha256(seed|address); nodes in cooldown are
    used only when fewer than k are eligible, least recently picked first.
    """
    unique = list(dict.fromkeys(candidates))
    if k <= 0 or not unique:
        return ()
    cooling = {a for a in unique if a in last_picked and now - last_picked[a] < cooldown}
    eligible = sorted((a for a in unique if a not in cooling), key=lambda a: _rank(seed, a))
    fallback = sorted(cooling, key=lambda a: (last_picked[a], _rank(seed, a)))
    return tuple((eligible + fallback)[:k])
