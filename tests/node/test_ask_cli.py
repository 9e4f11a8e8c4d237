"""`ask` on the embedded network: a user task from deposit to validated, paid answer."""

from __future__ import annotations

import json

import pytest

from cortensor_desktop.cli.commands.ask_cmd import attach_validation
from engine.poi.validation import AnswerLikelihood, ValidationThresholds, judge_answer
from engine.protocol import TaskKind
from engine.state.events import ValidationResult


def test_ask_returns_a_validated_answer_with_scores_and_transactions(cli) -> None:
    result = cli(
        "ask", "Name three colours of the rainbow.", "--redundancy", "2", "--json", timeout=400
    )
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(result.stdout)
    assert set(document) >= {"answer", "miners", "tx_hashes", "gas_used"}
    assert len(document["miners"]) == 2
    assert all(m["passed"] and m["score"] >= 60 for m in document["miners"])
    # The oracle's verdict goes with each score: no failed check, agreement over its minimum.
    for miner in document["miners"]:
        checked = miner["validation"]
        assert checked["failed_checks"] == [] and checked["reasons"] == []
        assert checked["agreement"] >= checked["top1_min"] and checked["near_tie_margin"] > 0
    assert document["answer"]  # the consensus of passing answers
    assert len(document["tx_hashes"]) >= 5  # deposit, open, submit, assign, validate
    assert all(h.startswith("0x") and len(h) == 66 for h in document["tx_hashes"])
    assert 100_000 < document["gas_used"] < 2_000_000


def test_ask_refuses_bad_redundancy_with_usage_error(cli) -> None:
    result = cli("ask", "hi", "--redundancy", "0")
    assert result.returncode == 2
    assert "--redundancy" in result.stderr


def test_a_failed_answer_shows_which_check_failed_and_its_figures() -> None:
    # The figures of another model's opening: two tokens far below the validator's choice.
    gaps = [0.0, 2.5, 0.0, 1.9] + [0.0] * 40
    likelihood = AnswerLikelihood(
        top1=tuple(g == 0 for g in gaps),
        logprobs=tuple(-0.2 - g for g in gaps),
        top_logprobs=tuple(-0.2 for _ in gaps),
        eos_expected_after=True,
    )
    verdict = judge_answer(likelihood, 0.9, ValidationThresholds())
    event = ValidationResult.from_verdict(
        verdict, miner="0xAbC", task_kind=TaskKind.USER, session_id=1, task_id=7
    )
    other_task = ValidationResult.from_verdict(
        verdict, miner="0xabc", task_kind=TaskKind.USER, session_id=1, task_id=8
    )
    document = {"task_id": 7, "miners": [{"address": "0xabc", "score": 0, "passed": False}]}
    attach_validation(document, [other_task, event])
    checked = document["miners"][0]["validation"]
    assert checked["failed_checks"] == ["opening"]
    assert checked["opening_gaps"] == pytest.approx([2.5, 1.9])
    assert checked["opening_misses_max"] == 0
    # The misses check's figures too: 2 of 44 is honest noise at 1 % per token (p 0.07).
    assert checked["misses"] == 2 and checked["misses_p"] > checked["misses_alpha"]
    assert "2 of the first 8 tokens" in checked["reasons"][0]
    assert "2.50, 1.90" in checked["reasons"][0]
