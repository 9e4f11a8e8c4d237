"""Commit-reveal attacks on both contracts (security review section 4, T-06..T-09): a reveal
that does not match, copied answers, copied precommit bytes, replay across tasks and across the
two contracts, and reveals in the wrong phase."""

from __future__ import annotations

import pytest

from chain.client import ChainClient
from chain.devnet import EmbeddedChain
from chain.wrappers import STAGE_USER_TASK, SlotStatus, TaskState, commitment
from tests.chain.test_contracts import SALT, _pool, _revert, _started, _user_task

pytestmark = pytest.mark.chain


def _assigned(chain: EmbeddedChain, k: int = 2) -> tuple[ChainClient, int, list[ChainClient]]:
    oracle, miners = _pool(chain, k)
    _, task = _user_task(chain, k, price=2000)
    oracle.queue.assign(task, [m.address for m in miners])
    return oracle, task, miners


def _precommitted_bytes(client: ChainClient, result: object) -> bytes:
    events = client.queue.events(result)  # type: ignore[arg-type]
    return bytes(next(e for e in events if e.name == "TaskPrecommitted").args["commitment"])


def test_t06_a_reveal_must_match_and_cannot_use_another_miners_answer(
    embedded: EmbeddedChain,
) -> None:
    _, task, (a, b) = _assigned(embedded)
    a.queue.precommit(task, commitment(task, a.address, SALT, "a"))
    b.queue.precommit(task, commitment(task, b.address, SALT, "b"))
    with _revert("HashMismatch"):
        a.queue.commit(task, "b", SALT)
    with _revert("HashMismatch"):
        b.queue.commit(task, "a", SALT)  # a's answer and salt under b's key
    a.queue.commit(task, "a", SALT)
    b.queue.commit(task, "b", SALT)
    assert a.queue.state(task) == TaskState.COMMITTED


def test_t07_copied_precommit_bytes_reveal_nothing_and_the_copier_goes_unpaid(
    embedded: EmbeddedChain,
) -> None:
    oracle, task, (a, b) = _assigned(embedded)
    sent = a.queue.precommit(task, commitment(task, a.address, SALT, "a"))
    copied = _precommitted_bytes(a, sent)
    b.queue.precommit(task, copied)  # accepted: the contract cannot tell yet
    with _revert("HashMismatch"):
        b.queue.commit(task, "a", SALT)  # bound to a's address
    a.queue.commit(task, "a", SALT)
    embedded.advance_time(121)
    oracle.queue.close_window(task, [a.address, b.address])
    assert oracle.queue.reserved_for(b.address) == 0
    assert oracle.stats.stage(b.address, STAGE_USER_TASK) == (1, 0)
    oracle.queue.validate(task, [a.address, b.address], [100, 100], 0)
    assert oracle.payment.balance_of(a.address) == 1000
    assert oracle.payment.balance_of(b.address) == 0


def test_t07_copied_precommit_bytes_in_cognitive(embedded: EmbeddedChain) -> None:
    sid, oracle, miners = _started(embedded, 2)
    a, b = (miners[m] for m in oracle.cognitive.selected(sid))
    sent = a.cognitive.precommit(sid, commitment(sid, a.address, SALT, "x"))
    copied = bytes(
        next(e for e in a.cognitive.events(sent) if e.name == "Precommitted").args["commitment"]
    )
    b.cognitive.precommit(sid, copied)
    with _revert("HashMismatch"):
        b.cognitive.commit(sid, "x", SALT)
    a.cognitive.commit(sid, "x", SALT)
    embedded.advance_time(121)
    oracle.cognitive.close_window(sid)
    assert oracle.cognitive.slot_status(sid, b.address) == 4  # failed
    oracle.cognitive.end(sid, [100, 100])
    assert oracle.registry.node_info(b.address).status == 1  # earned nothing


def test_t08_a_commitment_does_not_replay_on_another_task(embedded: EmbeddedChain) -> None:
    oracle, (m, _) = _pool(embedded, 2)
    _, first = _user_task(embedded, 1, price=1000)
    oracle.queue.assign(first, [m.address])
    old = commitment(first, m.address, SALT, "x")
    m.queue.precommit(first, old)
    m.queue.commit(first, "x", SALT)
    oracle.queue.validate(first, [m.address], [100], 0)
    _, second = _user_task(embedded, 1, price=1000)
    oracle.queue.assign(second, [m.address])
    m.queue.precommit(second, old)  # T1's commitment on T2
    with _revert("HashMismatch"):
        m.queue.commit(second, "x", SALT)


def test_t08_the_two_contracts_share_one_commitment_formula(embedded: EmbeddedChain) -> None:
    """Documents F20: no domain separation between Cognitive and SessionQueue. Harmless: a
    commitment binds the miner, and a miner reusing its own salt gains nothing."""
    miner, answer = embedded.accounts[2].address, "Paris"
    client = embedded.client()
    ours = commitment(7, miner, SALT, answer)
    assert bytes(client.cognitive.call("commitmentOf", 7, miner, SALT, answer)) == ours
    assert bytes(client.queue.call("commitmentOf", 7, miner, SALT, answer)) == ours


def test_t09_a_user_task_reveal_before_the_commit_window(embedded: EmbeddedChain) -> None:
    _, task, (a, _) = _assigned(embedded)
    with _revert("BadState"):
        a.queue.commit(task, "a", SALT)  # still Assigned


def test_t09_network_reveals_in_the_wrong_phase_or_after_failing(embedded: EmbeddedChain) -> None:
    sid, oracle, miners = _started(embedded, 2)
    first, second = oracle.cognitive.selected(sid)
    with _revert("BadState"):
        miners[first].cognitive.commit(sid, "x", SALT)  # still Precommit
    miners[first].cognitive.precommit(sid, commitment(sid, first, SALT, "x"))
    embedded.advance_time(121)
    oracle.cognitive.close_window(sid)  # `second` failed the precommit window
    assert oracle.cognitive.slot_status(sid, first) == SlotStatus.PRECOMMITTED
    with _revert("NotSelected"):
        miners[second].cognitive.commit(sid, "x", SALT)
