"""A miner paid for a validated user task sees it as earnings and withdraws it to its payout.

Real inference, real validation, the real contracts on the in-process chain: the miner joins the
user-task pool by passing a network task, a user submits a prompt, the oracle validates and pays,
and the embedded host carries out the `Withdraw` command a view would send.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from chain.events import EventCursor
from chain.wrappers import NodeInfo, NodeStatus
from cortensor_desktop.hosting.dashboard_host import NetworkHost
from engine.host.embedded_network import EmbeddedNetwork
from engine.node.user_session import submit_user_task
from engine.state.commands import Withdraw
from engine.state.events import (
    EarningsUpdated,
    Event,
    EventBus,
    Subscription,
    TxStatus,
    Withdrawal,
)


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s:.0f} s"
        time.sleep(0.5)


def _collect(sub: Subscription, into: list[Event]) -> list[Event]:
    into.extend(sub.drain())
    return into


def test_a_validated_user_task_is_withdrawable_and_withdraw_pays_the_payout(
    make_network: Callable[..., EmbeddedNetwork],
) -> None:
    bus = EventBus(history=10_000)
    sub = bus.subscribe(maxsize=10_000)
    network = make_network(miners=1, bus=bus)
    chain, miner = network.chain, network.miners[0]
    assert chain is not None
    registry = chain.client().registry

    def info() -> NodeInfo:
        return registry.node_info(miner.address)

    _wait(lambda: info().status == NodeStatus.EPHEMERAL, 240, "the miner joining the user pool")
    user = chain.client(chain.accounts[-1])
    submit_user_task(user, miner.settings.model_name, "Name three colours of the rainbow.", 1)

    events: list[Event] = []

    def paid() -> bool:
        return any(
            isinstance(e, EarningsUpdated) and e.node == miner.address and e.withdrawable_wei > 0
            for e in _collect(sub, events)
        )

    _wait(paid, 240, "a payment for the user task")
    earned = next(e for e in events if isinstance(e, EarningsUpdated) and e.withdrawable_wei > 0)
    assert earned.earned_wei == earned.withdrawable_wei  # nothing withdrawn yet
    assert earned.gas_balance_wei > 0
    # The balance is read on a timer, the TaskSettled event on the loop's next poll: the figures
    # may show the payment a step before the wallet history has it.
    _wait(lambda: bool(miner.journal.earnings()), 60, "the payment in the wallet history")
    assert [r.kind for r in miner.journal.earnings()] == ["payment"]

    payout = chain.accounts[-2].address
    miner.client.registry.set_payout(payout)
    before = chain.client().balance(payout)
    host = NetworkHost(network)
    answer = host.handle(Withdraw(all=True, source="test"))
    assert answer.accepted, answer.message

    events.clear()
    _collect(sub, events)
    confirmed = [e for e in events if isinstance(e, Withdrawal) and e.status is TxStatus.CONFIRMED]
    assert len(confirmed) == 1
    withdrawal = confirmed[0]
    assert withdrawal.to == payout and withdrawal.amount_wei == earned.withdrawable_wei
    assert withdrawal.tx_hash is not None and len(withdrawal.tx_hash) == 66
    assert withdrawal.gas_used and withdrawal.gas_used > 21_000
    assert chain.client().balance(payout) - before == withdrawal.amount_wei
    after = [e for e in events if isinstance(e, EarningsUpdated) and e.node == miner.address]
    assert after[-1].withdrawable_wei == 0 and after[-1].earned_wei == earned.earned_wei

    again = host.handle(Withdraw(all=True, source="test"))
    assert not again.accepted and "nothing to withdraw" in again.message
    payment = miner.client.payment
    assert len(EventCursor("SessionPayment", payment.contract, "Withdrawn", 0).poll()) == 1
