"""The user's side of a user task on the in-process chain: session reuse and the timeout."""

from __future__ import annotations

import pytest

from chain.devnet import EmbeddedChain
from chain.wrappers import model_id
from engine.node.user_session import (
    DEFAULT_PRICE_WEI,
    VALIDATION_LEVEL_NONE,
    ValidationTimeout,
    reusable_session,
    submit_user_task,
    wait_for_outcome,
    wait_for_pool,
)

pytestmark = pytest.mark.chain
MODEL = "smollm2-135m-instruct"


def _register_miner(chain: EmbeddedChain) -> None:
    miner = chain.client(chain.accounts[0])
    miner.registry.register(0, 1024, "0.1.0", [model_id(MODEL)], miner.address)


def test_a_reused_session_costs_no_deposit_or_open(embedded: EmbeddedChain) -> None:
    _register_miner(embedded)
    user = embedded.client(embedded.accounts[1])
    first = submit_user_task(user, MODEL, "one", 1)
    assert len(first.transactions) == 3  # deposit, open, submit
    assert reusable_session(user, first.session_id, MODEL, "quantized", 1, DEFAULT_PRICE_WEI)
    user.payment.deposit(DEFAULT_PRICE_WEI)
    second = submit_user_task(user, MODEL, "two", 1, session_id=first.session_id)
    assert len(second.transactions) == 1  # the deposit covered the price: submit only
    assert (second.session_id, second.task_id) == (first.session_id, first.task_id + 1)
    # Other terms, another owner or a closed session do not fit.
    assert not reusable_session(user, first.session_id, MODEL, "quantized", 2, DEFAULT_PRICE_WEI)
    assert not reusable_session(user, first.session_id, "other", "quantized", 1, DEFAULT_PRICE_WEI)
    other = embedded.client(embedded.accounts[2])
    assert not reusable_session(other, first.session_id, MODEL, "quantized", 1, DEFAULT_PRICE_WEI)
    # a validated session never takes an unvalidated request, nor the reverse
    assert not reusable_session(
        user, first.session_id, MODEL, "quantized", 1, DEFAULT_PRICE_WEI, VALIDATION_LEVEL_NONE
    )
    loose = submit_user_task(user, MODEL, "three", 1, validation_level=VALIDATION_LEVEL_NONE)
    assert loose.session_id != first.session_id
    assert int(user.queue.call("sessions", loose.session_id)[2]) == VALIDATION_LEVEL_NONE
    assert reusable_session(
        user, loose.session_id, MODEL, "quantized", 1, DEFAULT_PRICE_WEI, VALIDATION_LEVEL_NONE
    )
    assert not reusable_session(user, loose.session_id, MODEL, "quantized", 1, DEFAULT_PRICE_WEI)
    user.queue.close_session(first.session_id)
    assert not reusable_session(user, first.session_id, MODEL, "quantized", 1, DEFAULT_PRICE_WEI)


def test_no_oracle_times_out_saying_where_the_task_stopped(embedded: EmbeddedChain) -> None:
    _register_miner(embedded)
    user = embedded.client(embedded.accounts[1])
    submitted = submit_user_task(user, MODEL, "is anyone there?", 1)
    with pytest.raises(ValidationTimeout, match=r"task \d+ was not validated.*queued"):
        wait_for_outcome(user, submitted, deadline=0.0, poll_s=0.01)


def test_an_empty_pool_times_out_before_anything_is_sent(embedded: EmbeddedChain) -> None:
    _register_miner(embedded)  # registered, but no passed network task: not in the pool
    user = embedded.client(embedded.accounts[1])
    with pytest.raises(ValidationTimeout, match=r"1 registered.*0 of them in the user-task pool"):
        wait_for_pool(user, MODEL, "quantized", 1, deadline=0.0, poll_s=0.01)
    assert user.web3.eth.get_transaction_count(user.address) == 0
