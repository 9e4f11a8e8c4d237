"""PoI rules on plain numbers: verdicts, consensus, the window, sampling, selection."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.poi.validation import (
    AnswerLikelihood,
    Check,
    ValidationThresholds,
    WindowPolicy,
    binomial_tail,
    cosine_similarity,
    explain,
    health_check_sample_size,
    judge_answer,
    medoid,
    min_failures_to_flag,
    precommit_score,
    select_miners,
    should_remove,
    wilson_interval,
)

DEFAULTS = ValidationThresholds()
# The share-of-tokens rule on its own (the misses check, which would also fail these, is off).
SHARE_ONLY = replace(DEFAULTS, honest_miss_rate=None)


def _answer(hits: int, total: int, *, eos: bool = True, limit: bool = False) -> AnswerLikelihood:
    return AnswerLikelihood(
        top1=tuple(i < hits for i in range(total)),
        logprobs=tuple(-0.1 if i < hits else -3.0 for i in range(total)),
        eos_expected_after=eos,
        hit_token_limit=limit,
    )


def test_defaults_are_the_measured_ones() -> None:
    assert (DEFAULTS.top1_min, DEFAULTS.cosine_min) == (0.80, 0.30)
    assert (DEFAULTS.near_tie_margin, DEFAULTS.opening_misses_max) == (0.2, 0)
    assert DEFAULTS.require_proper_ending and not DEFAULTS.require_checksum
    assert (DEFAULTS.honest_miss_rate, DEFAULTS.misses_alpha, DEFAULTS.opening_margin) == (
        0.01,
        0.001,
        1.0,
    )


def test_honest_cross_build_answer_passes() -> None:
    verdict = judge_answer(_answer(97, 100), cosine=0.71, thresholds=DEFAULTS)
    assert verdict.passed and verdict.failed_check is None
    assert verdict.top1_agreement == pytest.approx(0.97)
    assert verdict.mean_logprob == pytest.approx((97 * -0.1 + 3 * -3.0) / 100)
    assert verdict.tokens == 100


def test_other_model_fails_top1_first() -> None:
    verdict = judge_answer(_answer(40, 100), cosine=0.9, thresholds=DEFAULTS)
    assert not verdict.passed
    assert verdict.failed_checks == (Check.TOP1, Check.MISSES)


def test_top1_threshold_is_inclusive() -> None:
    assert judge_answer(_answer(80, 100), cosine=0.5, thresholds=SHARE_ONLY).passed
    assert not judge_answer(_answer(79, 100), cosine=0.5, thresholds=SHARE_ONLY).passed


def test_truncated_answer_fails_the_ending_but_the_token_limit_is_a_proper_end() -> None:
    truncated = judge_answer(_answer(50, 50, eos=False), cosine=0.8, thresholds=DEFAULTS)
    assert truncated.failed_checks == (Check.ENDING,)
    at_limit = judge_answer(_answer(50, 50, eos=False, limit=True), 0.8, DEFAULTS)
    assert at_limit.passed


def test_ending_check_can_be_turned_off() -> None:
    relaxed = ValidationThresholds(require_proper_ending=False)
    assert judge_answer(_answer(50, 50, eos=False), cosine=0.8, thresholds=relaxed).passed


def test_semantic_layer_catches_off_topic_and_missing_cosine_fails() -> None:
    assert judge_answer(_answer(95, 100), 0.10, DEFAULTS).failed_checks == (Check.COSINE,)
    assert judge_answer(_answer(95, 100), None, DEFAULTS).failed_checks == (Check.COSINE,)
    no_semantic = ValidationThresholds(cosine_min=None)
    assert judge_answer(_answer(95, 100), None, no_semantic).passed


def test_empty_answer_fails_and_reports_every_failed_check() -> None:
    verdict = judge_answer(AnswerLikelihood(top1=()), None, DEFAULTS)
    assert verdict.failed_checks == (Check.EMPTY, Check.TOP1, Check.ENDING, Check.COSINE)
    assert verdict.mean_logprob is None


def test_checksum_level_needs_an_exact_match() -> None:
    strict = ValidationThresholds(require_checksum=True)
    assert judge_answer(_answer(100, 100), 1.0, strict, checksum_match=True).passed
    assert judge_answer(_answer(100, 100), 1.0, strict, checksum_match=False).failed_checks == (
        Check.CHECKSUM,
    )
    assert not judge_answer(_answer(100, 100), 1.0, strict, checksum_match=None).passed
    # Without the checksum level a cross-build mismatch is normal and not a failure.
    assert judge_answer(_answer(100, 100), 1.0, DEFAULTS, checksum_match=False).passed


def test_an_answer_that_does_not_open_like_greedy_fails_even_with_high_agreement() -> None:
    # Fluent repetition from another model: wrong from the first tokens, easy to predict later.
    diverged = (False, False, False) + (True,) * 97
    verdict = judge_answer(AnswerLikelihood(diverged, eos_expected_after=True), 0.9, DEFAULTS)
    assert verdict.top1_agreement >= 0.97
    assert verdict.failed_checks == (Check.OPENING,)
    # A flip beyond the near-tie margin in the opening is not hardware noise: even one fails.
    one_flip = (True, True, False) + (True,) * 97
    verdict = judge_answer(AnswerLikelihood(one_flip, eos_expected_after=True), 0.9, DEFAULTS)
    assert verdict.failed_checks == (Check.OPENING,)
    lenient = ValidationThresholds(opening_misses_max=1)
    assert judge_answer(AnswerLikelihood(one_flip, eos_expected_after=True), 0.9, lenient).passed


def test_bad_settings_and_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="top1_min"):
        ValidationThresholds(top1_min=1.5)
    with pytest.raises(ValueError, match="cosine_min"):
        ValidationThresholds(cosine_min=-2)
    with pytest.raises(ValueError, match="logprobs"):
        AnswerLikelihood(top1=(True,), logprobs=(-1.0, -2.0))


@given(st.lists(st.booleans(), max_size=60), st.floats(0, 1), st.floats(-1, 1))
def test_verdict_passes_exactly_when_every_layer_passes(
    top1: list[bool], threshold: float, cosine: float
) -> None:
    thresholds = ValidationThresholds(top1_min=threshold)
    verdict = judge_answer(
        AnswerLikelihood(tuple(top1), eos_expected_after=True), cosine, thresholds
    )
    agreement = sum(top1) / len(top1) if top1 else 0.0
    opening_ok = top1[:8].count(False) <= DEFAULTS.opening_misses_max
    expected = bool(top1) and opening_ok and agreement >= threshold and cosine >= 0.30
    assert verdict.passed is expected
    assert 0.0 <= verdict.top1_agreement <= 1.0


# --- cosine and medoid --------------------------------------------------------------------------


def test_cosine_basics() -> None:
    assert cosine_similarity([1, 0], [0, 1]) == 0.0
    assert cosine_similarity([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert cosine_similarity([1, 0], [-1, 0]) == pytest.approx(-1.0)
    assert cosine_similarity([0, 0], [1, 1]) == 0.0
    with pytest.raises(ValueError, match="length"):
        cosine_similarity([1], [1, 2])


vectors = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=3, max_size=3)


@given(vectors, vectors)
def test_cosine_is_symmetric_and_bounded(a: list[float], b: list[float]) -> None:
    assert cosine_similarity(a, b) == pytest.approx(cosine_similarity(b, a), abs=1e-9)
    assert -1.0 <= cosine_similarity(a, b) <= 1.0


def test_medoid_is_the_answer_closest_to_the_rest() -> None:
    # Three answers along an arc plus an unrelated one: the middle of the arc is the consensus.
    cluster = [[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]]
    assert medoid(cluster) == 1
    assert medoid([[1.0, 0.0]]) == 0
    # Ties go to the lowest index, so every oracle returns the same consensus answer.
    assert medoid([[1.0, 0.0], [1.0, 0.0]]) == 0
    with pytest.raises(ValueError):
        medoid([])


@given(st.lists(vectors, min_size=1, max_size=6), st.permutations(range(6)))
@settings(max_examples=50)
def test_medoid_follows_its_answer_under_reordering(
    embeddings: list[list[float]], order: list[int]
) -> None:
    order = [i for i in order if i < len(embeddings)]
    chosen = medoid(embeddings)
    shuffled = [embeddings[i] for i in order]
    # The same vector (or an equally central one) is chosen whatever order answers arrive in.
    picked = shuffled[medoid(shuffled)]
    total = lambda v, vs: math.fsum(cosine_similarity(v, o) for o in vs) - cosine_similarity(v, v)  # noqa: E731
    assert total(picked, embeddings) == pytest.approx(
        total(embeddings[chosen], embeddings), abs=1e-9
    )


# --- window / binomial rule -------------------------------------------------------------------


def test_binomial_tail_known_values() -> None:
    assert binomial_tail(10, 0, 0.3) == 1.0
    assert binomial_tail(10, 11, 0.3) == 0.0
    assert binomial_tail(10, 10, 0.5) == pytest.approx(0.5**10)
    assert binomial_tail(10, 1, 0.025) == pytest.approx(1 - 0.975**10)
    assert binomial_tail(10, 3, 0.025) == pytest.approx(0.001643, abs=1e-6)


def test_default_policy_flags_four_failures_in_ten() -> None:
    policy = WindowPolicy()
    assert min_failures_to_flag(10, policy) == 4
    # Up to three honest false flags in a window (3.5 % measured across builds) never remove a node.
    assert not should_remove([True] * 7 + [False] * 3, policy)
    assert should_remove([True] * 6 + [False] * 4, policy)
    # Failures that slid out of the window no longer count.
    assert not should_remove([False] * 4 + [True] * 10, policy)
    # Two failures among the first two tasks are already improbable for an honest node.
    assert should_remove([False, False], policy)
    assert not should_remove([False], policy)
    assert not should_remove([], policy)


def test_removal_rates_meet_the_targets_of_issue_6() -> None:
    policy = WindowPolicy()
    k = min_failures_to_flag(10, policy)
    assert k is not None
    honest_flagged = binomial_tail(10, k, policy.honest_fail_rate)
    cheater_caught = binomial_tail(10, k, 195 / 200)  # per-answer detection measured
    assert honest_flagged <= 0.01
    assert cheater_caught >= 0.99


@given(st.lists(st.booleans(), max_size=30))
def test_more_failures_never_make_removal_less_likely(verdicts: list[bool]) -> None:
    policy = WindowPolicy()
    if should_remove(verdicts, policy):
        worse = [False if i == len(verdicts) - 1 else v for i, v in enumerate(verdicts)]
        assert should_remove(worse, policy)


# --- statistics --------------------------------------------------------------------------------


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(39, 40)
    assert low == pytest.approx(0.8714, abs=1e-3) and high == pytest.approx(0.9956, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 200)
    assert low == 0.0 and high == pytest.approx(0.0188, abs=1e-3)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


@given(st.integers(0, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_contains_the_estimate(pair: tuple[int, int]) -> None:
    successes, n = pair
    low, high = wilson_interval(successes, n)
    assert 0.0 <= low <= high <= 1.0
    if n:
        assert low - 1e-12 <= successes / n <= high + 1e-12


def test_health_check_sample_size() -> None:
    # The textbook numbers: 385 for an unbounded population at 95% / 5%.
    assert health_check_sample_size(10**9) == 385
    assert health_check_sample_size(1000) == 278
    assert health_check_sample_size(8) == 8
    assert health_check_sample_size(0) == 0
    assert health_check_sample_size(10**6, p=0.1, margin=0.1) == 35


@given(st.integers(1, 10**7))
def test_sample_size_never_exceeds_the_network_and_grows_with_it(population: int) -> None:
    n = health_check_sample_size(population)
    assert 1 <= n <= population
    assert health_check_sample_size(population + 1) >= n
    assert n <= 385


def test_precommit_score() -> None:
    assert precommit_score(6, 10) == 0.6
    assert precommit_score(0, 0) is None


# --- selection ---------------------------------------------------------------------------------

MINERS = [f"0x{i:040x}" for i in range(1, 8)]


def pick(
    k: int,
    seed: str,
    now: float,
    last: dict[str, float],
    cooldown: float,
    *,
    miners: list[str] = MINERS,
) -> tuple[str, ...]:
    return select_miners(miners, k, seed=seed, now=now, last_picked=last, cooldown=cooldown)


def test_selection_is_deterministic_from_the_seed() -> None:
    first = select_miners(MINERS, 3, seed="seed-1", now=100, last_picked={}, cooldown=0)
    assert first == pick(3, "seed-1", 100, {}, 0, miners=list(reversed(MINERS)))
    assert len(set(first)) == 3 and set(first) <= set(MINERS)
    others = {pick(3, f"seed-{i}", 100, {}, 0) for i in range(20)}
    assert len(others) > 1


def test_selection_spares_nodes_in_cooldown() -> None:
    last = {MINERS[0]: 95.0, MINERS[1]: 99.0, MINERS[2]: 50.0}
    picked = pick(4, "s", 100, last, 10)
    assert not {MINERS[0], MINERS[1]} & set(picked)
    assert len(picked) == 4


def test_cooldown_nodes_fill_in_only_when_too_few_are_eligible() -> None:
    last = {m: 90.0 + i for i, m in enumerate(MINERS[:6])}
    picked = pick(3, "s", 100, last, 60)
    # One eligible node first, then the least recently picked ones.
    assert picked == (MINERS[6], MINERS[0], MINERS[1])
    # More asked than exist: everyone, once.
    assert pick(10, "s", 100, last, 60) == (MINERS[6], *MINERS[:6])
    assert pick(3, "s", 0, {}, 0, miners=[]) == ()
    assert pick(0, "s", 0, {}, 0) == ()


@given(st.integers(1, 7), st.integers(0, 10**6))
@settings(max_examples=30)
def test_selection_never_picks_cooling_nodes_while_enough_are_eligible(k: int, salt: int) -> None:
    last: dict[str, float] = {}
    for round_no in range(30):
        picked = pick(k, f"{salt}-{round_no}", round_no, last, 2)
        cooling = {m for m, t in last.items() if round_no - t < 2}
        if len(MINERS) - len(cooling) >= k:
            assert not cooling & set(picked)
        assert len(picked) == k == len(set(picked))
        last.update(dict.fromkeys(picked, round_no))


def test_selection_spreads_picks_over_time() -> None:
    last: dict[str, float] = {}
    counts: Counter[str] = Counter()
    for round_no in range(70):
        picked = pick(3, f"round-{round_no}", round_no, last, 2)
        counts.update(picked)
        last.update(dict.fromkeys(picked, round_no))
    # 210 picks over 7 miners: 30 each on average; cooldown keeps everyone close to that.
    assert set(counts) == set(MINERS)
    assert max(counts.values()) - min(counts.values()) <= 6


def test_a_near_tied_ending_counts_but_an_unlikely_one_does_not() -> None:
    tokens = (True,) * 20
    # The same margin as the tokens': ending 0.1 nats below the top choice is a near-tie.
    near_tie = AnswerLikelihood(
        tokens, eos_expected_after=False, end_logprob=-0.9, end_top_logprob=-0.8
    )
    verdict = judge_answer(near_tie, 0.9, DEFAULTS)
    assert verdict.passed and verdict.end_gap == pytest.approx(0.1)
    cut_off = AnswerLikelihood(
        tokens, eos_expected_after=False, end_logprob=-7.5, end_top_logprob=-0.2
    )
    verdict = judge_answer(cut_off, 0.9, DEFAULTS)
    assert verdict.failed_checks == (Check.ENDING,)
    assert "7.30 nats" in explain(verdict)[0]
    # A likely-looking end is not enough: it is judged against the top token, not a floor.
    not_the_model_s = AnswerLikelihood(
        tokens, eos_expected_after=False, end_logprob=-1.5, end_top_logprob=-0.1
    )
    assert judge_answer(not_the_model_s, 0.9, DEFAULTS).failed_checks == (Check.ENDING,)
    unmeasured = AnswerLikelihood(tokens, eos_expected_after=False)
    assert judge_answer(unmeasured, 0.9, DEFAULTS).failed_checks == (Check.ENDING,)


def _scored(gaps: list[float], *, end_gap: float = 0.0) -> AnswerLikelihood:
    """An answer from its tokens' gaps below the validator's top token (0 = the top token)."""
    return AnswerLikelihood(
        top1=tuple(g == 0.0 for g in gaps),
        logprobs=tuple(-0.5 - g for g in gaps),
        top_logprobs=tuple(-0.5 for _ in gaps),
        ranks=tuple(1 if g == 0.0 else 2 for g in gaps),
        end_logprob=-1.0 - end_gap,
        end_top_logprob=-1.0,
        eos_expected_after=end_gap == 0.0,
    )


def test_near_ties_in_the_opening_are_not_misses_but_real_gaps_are() -> None:
    # The README run's failure: two near-tie flips among the first 8 tokens of a text that is
    # byte for byte the validator's own greedy answer (prefill against decode).
    readme_run = _scored([0.0, 0.0, 0.03, 0.0, 0.0, 0.12] + [0.0] * 60)
    assert judge_answer(readme_run, 0.95, DEFAULTS).passed
    strict = ValidationThresholds(near_tie_margin=0.0, opening_margin=0.0)
    assert judge_answer(readme_run, 0.95, strict).failed_checks == (Check.OPENING,)
    # Another model's opening: its tokens are far below the validator's choice.
    other = _scored([0.0, 2.5, 0.0, 1.9, 0.0] + [0.0] * 60)
    verdict = judge_answer(other, 0.95, DEFAULTS)
    assert verdict.failed_checks == (Check.OPENING,)
    assert verdict.opening_gaps == pytest.approx((2.5, 1.9))
    assert "2 of the first 8" in explain(verdict)[0] and "2.50, 1.90" in explain(verdict)[0]
    assert "at most 0 allowed" in explain(verdict)[0]


def test_the_margin_is_inclusive_and_counts_in_the_share_of_tokens_too() -> None:
    margin = DEFAULTS.near_tie_margin
    at_margin = _scored([0.0] * 8 + [margin] * 30 + [0.0] * 62)
    verdict = judge_answer(at_margin, 0.9, DEFAULTS)
    assert verdict.passed and verdict.agreement == 1.0 and verdict.top1_agreement == 0.7
    assert verdict.misses == 0
    beyond = _scored([0.0] * 8 + [margin + 0.01] * 30 + [0.0] * 62)
    verdict = judge_answer(beyond, 0.9, SHARE_ONLY)
    assert verdict.failed_checks == (Check.TOP1,) and verdict.agreement == pytest.approx(0.7)
    assert "0.70 of the tokens" in explain(verdict)[0]


def test_the_validator_s_own_greedy_path_passes_the_likelihood_layer_outright() -> None:
    # Its own tokens, however the prefill's sums flipped its near-ties (here beyond any margin).
    flipped = replace(_scored([3.0, 3.0, 0.0, 3.0] + [0.0] * 10, end_gap=4.0), greedy_path=True)
    verdict = judge_answer(flipped, 0.9, DEFAULTS)
    assert verdict.passed and verdict.greedy_path
    assert not judge_answer(replace(flipped, greedy_path=False), 0.9, DEFAULTS).passed
    # The checksum level covers the likelihood layer only: off-topic or empty still fail.
    assert judge_answer(flipped, 0.1, DEFAULTS).failed_checks == (Check.COSINE,)
    empty = AnswerLikelihood(top1=(), greedy_path=True)
    assert Check.EMPTY in judge_answer(empty, 0.9, DEFAULTS).failed_checks


def test_gaps_need_matching_figures() -> None:
    with pytest.raises(ValueError, match="ranks"):
        AnswerLikelihood(top1=(True,), logprobs=(-1.0,), ranks=(1, 2))
    with pytest.raises(ValueError, match="top_logprobs need"):
        AnswerLikelihood(top1=(True,), top_logprobs=(-1.0,))
    with pytest.raises(ValueError, match="near_tie_margin"):
        ValidationThresholds(near_tie_margin=-0.1)
    # Without the top token's figures the rule is the strict one: any non-top-1 token misses.
    assert AnswerLikelihood(top1=(True, False)).gaps() == (0.0, math.inf)


def test_misses_fail_an_answer_when_improbable_for_an_honest_one() -> None:
    # p0 = 1 % per token, alpha 0.001: of 96 tokens, 5 misses are still honest noise, 6 are not;
    # a quarter of the answer's length in misses (the share rule alone lets 20 % through).
    def answer(misses: int, tokens: int = 96) -> AnswerLikelihood:
        return _scored([0.0] * 8 + [0.5] * misses + [0.0] * (tokens - 8 - misses))

    five, six = judge_answer(answer(5), 0.9, DEFAULTS), judge_answer(answer(6), 0.9, DEFAULTS)
    assert five.passed and five.misses == 5
    assert five.misses_p is not None and five.misses_p >= DEFAULTS.misses_alpha
    assert six.failed_checks == (Check.MISSES,) and six.agreement > DEFAULTS.top1_min
    assert six.misses_p is not None and six.misses_p < DEFAULTS.misses_alpha
    assert explain(six)[0].startswith("misses: 6 of 96 tokens are more than 0.20 nats below")
    # Shorter answers carry less evidence: 3 misses fail 10 tokens, not 20.
    assert not judge_answer(answer(3, 12), 0.9, DEFAULTS).passed
    assert judge_answer(answer(3, 20), 0.9, DEFAULTS).passed
    # Off: only the share rule is left; the checksum level skips it like the other checks.
    assert judge_answer(answer(6), 0.9, SHARE_ONLY).passed
    assert judge_answer(replace(answer(30), greedy_path=True), 0.9, DEFAULTS).passed


def test_the_misses_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="honest_miss_rate"):
        ValidationThresholds(honest_miss_rate=0.0)
    with pytest.raises(ValueError, match="misses_alpha"):
        ValidationThresholds(misses_alpha=1.0)


def test_the_opening_excuses_another_build_s_near_ties_but_not_another_model_s_choices() -> None:
    # Measured (bench, 30 prompts): honest answers of the AVX-512 build opened with tokens 0.28
    # and 0.57 nats below the validator's top; an echoed prompt's opening 2.7-12 nats.
    for gap in (0.28, 0.57):
        cross_build = _scored([0.0, 0.0, gap] + [0.0] * 93)
        verdict = judge_answer(cross_build, 0.9, DEFAULTS)
        assert verdict.passed and verdict.opening_misses == 0 and verdict.misses == 1
    other = judge_answer(_scored([0.0, 1.37] + [0.0] * 20), 0.9, DEFAULTS)
    assert other.failed_checks == (Check.OPENING,)
    assert "more than 1.00 nats below" in explain(other)[0]
    # The opening never excuses less than the near-tie margin does.
    wide = replace(DEFAULTS, near_tie_margin=1.5)
    assert judge_answer(_scored([0.0, 1.37] + [0.0] * 20), 0.9, wide).passed
    with pytest.raises(ValueError, match="opening_margin"):
        ValidationThresholds(opening_margin=-1.0)
