"""`ask` on the embedded network: a user task from deposit to validated, paid answer."""

from __future__ import annotations

import json


def test_ask_returns_a_validated_answer_with_scores_and_transactions(cli) -> None:
    result = cli(
        "ask", "Name three colours of the rainbow.", "--redundancy", "2", "--json", timeout=400
    )
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(result.stdout)
    assert set(document) >= {"answer", "miners", "tx_hashes", "gas_used"}
    assert len(document["miners"]) == 2
    assert all(m["passed"] and m["score"] >= 60 for m in document["miners"])
    assert document["answer"]  # the consensus of passing answers
    assert len(document["tx_hashes"]) >= 5  # deposit, open, submit, assign, validate
    assert all(h.startswith("0x") and len(h) == 66 for h in document["tx_hashes"])
    assert 100_000 < document["gas_used"] < 2_000_000


def test_ask_refuses_bad_redundancy_with_usage_error(cli) -> None:
    result = cli("ask", "hi", "--redundancy", "0")
    assert result.returncode == 2
    assert "--redundancy" in result.stderr
