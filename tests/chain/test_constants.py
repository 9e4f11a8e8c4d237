"""The contracts' constants have one Python home (chain/wrappers.py) and agree with the chain."""

from __future__ import annotations

from chain.devnet import EmbeddedChain
from chain.wrappers import MAX_K, PASS_SCORE, Tier
from profiler.fit import TIERS


def test_tier_labels_are_the_profilers_tier_names() -> None:
    assert {t.label for t in Tier} == set(TIERS)
    assert all(Tier.from_label(t.label) is t for t in Tier)
    assert Tier.label_of(3) == "gpu-full"
    assert Tier.label_of(9) is None


def test_pass_score_is_the_contracts(embedded: EmbeddedChain) -> None:
    client = embedded.client(embedded.oracles[0])
    assert client.cognitive.call("PASS_SCORE") == PASS_SCORE
    assert client.queue.call("PASS_SCORE") == PASS_SCORE


def test_max_k_is_the_contracts(embedded: EmbeddedChain) -> None:
    assert embedded.client().queue.call("MAX_K") == MAX_K
