"""Earnings, the low-gas alert and withdrawals on a real in-process chain (no inference).

A test account is enabled as a SessionPayment module (as SessionQueue is), so a payment to the
miner is the contract's own `settle`, the same call SessionQueue makes when a user task passes;
everything after it (the miner seeing `TaskSettled`, the balance, `withdraw()` paying the payout
address) is the real path. The user-task path with real inference is in tests/node.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from chain.client import ChainClient
from chain.deploy import NetworkParams
from chain.devnet import EmbeddedChain, start_embedded
from chain.events import EventCursor
from engine.host.node_control import NodeController
from engine.inference.types import GenerationResult, SamplingParams
from engine.node.earnings import EarningsTracker, withdraw_from
from engine.node.miner import Miner, MinerSettings
from engine.state.commands import Withdraw
from engine.state.database import Database
from engine.state.events import (
    Alert,
    AlertKind,
    CommandHandled,
    EarningsUpdated,
    Event,
    EventBus,
    PreflightStep,
    StepStatus,
    TxStatus,
    Withdrawal,
)
from engine.state.journal import ChainKey, Journal, TxState

SHARE = 6 * 10**15
PRICE = 10**16


class NoModel:
    """These tests never reach inference; a call would be a bug in the test."""

    def generate(self, prompt: str, params: SamplingParams | None = None) -> GenerationResult:
        raise AssertionError("no inference in the earnings tests")


@pytest.fixture(scope="module")
def _chain() -> EmbeddedChain:
    return start_embedded(oracles=1)


@pytest.fixture
def chain(_chain: EmbeddedChain) -> Iterator[EmbeddedChain]:
    snapshot = _chain.snapshot()
    yield _chain
    _chain.revert(snapshot)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "node.sqlite3")
    yield database
    database.close()


def _journal(chain: EmbeddedChain, db: Database, address: str) -> Journal:
    return Journal(db, ChainKey(chain.chain_id, chain.genesis_hash), address)


def _miner(
    chain: EmbeddedChain, db: Database, bus: EventBus, payout: str, low_gas_wei: int = 10**16
) -> Miner:
    client = chain.client(chain.accounts[0])
    assert client.address is not None
    journal = _journal(chain, db, client.address)
    settings = MinerSettings(low_gas_wei=low_gas_wei)
    miner = Miner(client, NoModel(), journal, bus, settings, payout=payout)
    miner.preflight()
    return miner


def _pay(chain: EmbeddedChain, miner: str, task_id: int, share: int = SHARE) -> None:
    """A user deposits and a module settles a task paying `miner` (SessionQueue's calls)."""
    admin = chain.client(chain.admin)
    module = chain.client(chain.accounts[3])
    user = chain.client(chain.accounts[2])
    assert module.address is not None and user.address is not None
    if not admin.registry.is_module(module.address):
        admin.registry.set_module(module.address, True)  # after setup: scheduled, not live yet
        chain.advance_time(NetworkParams().module_delay_s)
        admin.registry.activate_module(module.address)
    user.payment.deposit(PRICE)
    contract = module.payment.contract.functions
    assert module.sender is not None
    module.sender.send(contract.lock(user.address, task_id, PRICE), "lock")
    module.sender.send(
        contract.settle(task_id, user.address, PRICE, [Web3.to_checksum_address(miner)], share),
        "settle",
    )


def _of(events: list[Event], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


def _nonce(client: ChainClient, address: str) -> int:
    return int(client.web3.eth.get_transaction_count(Web3.to_checksum_address(address)))


def test_payment_shows_as_earnings_and_withdraw_pays_the_payout_address(
    chain: EmbeddedChain, db: Database
) -> None:
    bus = EventBus()
    sub = bus.subscribe(maxsize=1000)
    payout = chain.accounts[1].address
    miner = _miner(chain, db, bus, payout)
    started = sub.drain()
    gas_step = [e for e in _of(started, PreflightStep) if e.step == "gas"]
    assert len(gas_step) == 1 and gas_step[0].status is StepStatus.OK
    assert "ETH" in gas_step[0].detail
    first = _of(started, EarningsUpdated)
    assert first and first[-1].withdrawable_wei == 0 and first[-1].earned_wei == 0
    assert first[-1].gas_balance_wei == miner.client.balance(miner.address) > 0

    _pay(chain, miner.address, task_id=7)
    miner.step()
    updates = _of(sub.drain(), EarningsUpdated)
    assert updates[-1].withdrawable_wei == SHARE and updates[-1].earned_wei == SHARE
    assert updates[-1].node == miner.address
    history = miner.journal.earnings()
    assert [(r.kind, r.amount_wei, r.task.task_id if r.task else None) for r in history] == [
        ("payment", SHARE, 7)
    ]

    before = miner.client.balance(payout)
    controller = NodeController(
        bus, [miner], withdraw=lambda c: withdraw_from([miner], c.amount_wei, c.node)
    )
    answer = controller.handle(Withdraw(all=True, source="test"))
    assert answer.accepted, answer.message
    assert miner.client.balance(payout) - before == SHARE  # the payout pays no gas: exact

    events = sub.drain()
    withdrawals = _of(events, Withdrawal)
    assert [w.status for w in withdrawals] == [TxStatus.STARTED, TxStatus.CONFIRMED]
    done = withdrawals[-1]
    assert done.amount_wei == SHARE and done.to == payout and done.gas_used
    assert done.tx_hash is not None and done.tx_hash.startswith("0x") and len(done.tx_hash) == 66
    after = _of(events, EarningsUpdated)[-1]
    assert after.withdrawable_wei == 0 and after.earned_wei == SHARE
    assert [r.kind for r in miner.journal.earnings()] == ["payment", "withdrawal"]

    # A second request finds nothing: refused, and not a single transaction leaves the node.
    nonce = _nonce(miner.client, miner.address)
    again = controller.handle(Withdraw(all=True, source="test"))
    assert not again.accepted and "nothing to withdraw" in again.message
    assert "nothing was sent" in again.message
    assert _nonce(miner.client, miner.address) == nonce
    assert not _of(sub.drain(), Withdrawal)

    # The miner's own watcher sees the Withdrawn event too, and a restart replays the payment
    # and the withdrawal: each is counted once, so earned stays what was paid.
    miner.step()
    reborn = Miner(miner.client, NoModel(), miner.journal, bus, miner.settings, payout=payout)
    reborn.preflight()
    reborn.resume()
    reborn.step()
    assert _of(sub.drain(), EarningsUpdated)[-1].earned_wei == SHARE
    assert [r.kind for r in miner.journal.earnings()] == ["payment", "withdrawal"]


def test_a_partial_amount_is_refused_and_the_whole_balance_accepted(
    chain: EmbeddedChain, db: Database
) -> None:
    bus = EventBus()
    payout = chain.accounts[1].address
    miner = _miner(chain, db, bus, payout)
    _pay(chain, miner.address, task_id=8)
    nonce = _nonce(miner.client, miner.address)
    partial = miner.earnings.withdraw(SHARE // 2)
    assert not partial.accepted and "whole balance" in partial.message
    assert not partial.sent and _nonce(miner.client, miner.address) == nonce
    whole = miner.earnings.withdraw(SHARE)
    assert whole.accepted and whole.amount_wei == SHARE and whole.to == payout


def test_low_gas_alert_fires_once_below_the_threshold_and_clears_when_topped_up(
    chain: EmbeddedChain, db: Database
) -> None:
    bus = EventBus()
    sub = bus.subscribe(maxsize=1000)
    gas = chain.client().balance(chain.accounts[0].address)
    miner = _miner(chain, db, bus, chain.accounts[1].address, low_gas_wei=gas + 10**18)
    miner.earnings.refresh()
    miner.earnings.refresh()
    alerts = _of(sub.drain(), Alert)
    assert len(alerts) == 1  # raised once, not on every reading
    assert alerts[0].kind is AlertKind.LOW_GAS and alerts[0].active
    assert alerts[0].node == miner.address and "top up" in alerts[0].message

    funder = chain.client(chain.accounts[4])
    funder.transfer(miner.address, 2 * 10**18)
    miner.earnings.refresh()
    cleared = _of(sub.drain(), Alert)
    assert len(cleared) == 1 and cleared[0].kind is AlertKind.LOW_GAS and not cleared[0].active


def test_no_alert_at_the_default_threshold_or_when_turned_off(
    chain: EmbeddedChain, db: Database
) -> None:
    bus = EventBus()
    sub = bus.subscribe(maxsize=1000)
    miner = _miner(chain, db, bus, chain.accounts[1].address, low_gas_wei=0)
    miner.earnings.refresh()
    assert not _of(sub.drain(), Alert)


def test_a_withdrawal_interrupted_after_sending_is_settled_from_the_chain_not_resent(
    chain: EmbeddedChain, db: Database
) -> None:
    """The node died after the transaction left and before the journal heard back."""
    bus = EventBus()
    payout = chain.accounts[1].address
    miner = _miner(chain, db, bus, payout)
    _pay(chain, miner.address, task_id=9)
    web3 = miner.client.web3
    key = f"withdraw:{web3.eth.block_number}:{_nonce(miner.client, miner.address)}"
    miner.journal.record_intent(key, _nonce(miner.client, miner.address))
    sent = miner.client.payment.withdraw()  # ...and the process was killed here

    restarted = EarningsTracker(miner.client, _journal(chain, db, miner.address), bus.publish)
    nonce = _nonce(miner.client, miner.address)
    restarted.resume()
    intent = restarted.journal.tx(key)
    assert intent is not None and intent.state is TxState.CONFIRMED
    assert intent.tx_hash == sent.tx_hash
    assert restarted.journal.total_of("withdrawal") == SHARE
    outcome = restarted.withdraw()
    assert not outcome.accepted and "nothing to withdraw" in outcome.message
    assert _nonce(miner.client, miner.address) == nonce
    paid = EventCursor("SessionPayment", miner.client.payment.contract, "Withdrawn", 0).poll()
    assert len(paid) == 1


def test_a_withdrawal_interrupted_before_sending_is_marked_failed_and_nothing_sent(
    chain: EmbeddedChain, db: Database
) -> None:
    bus = EventBus()
    miner = _miner(chain, db, bus, chain.accounts[1].address)
    _pay(chain, miner.address, task_id=10)
    nonce = _nonce(miner.client, miner.address)
    key = f"withdraw:{miner.client.web3.eth.block_number}:{nonce}"
    miner.journal.record_intent(key, nonce)  # killed before the transaction was signed

    miner.earnings.resume()
    intent = miner.journal.tx(key)
    assert intent is not None and intent.state is TxState.FAILED
    assert _nonce(miner.client, miner.address) == nonce
    assert miner.client.payment.balance_of(miner.address) == SHARE  # still there to withdraw


def test_the_embedded_host_and_a_node_without_miners_answer_withdraw(
    chain: EmbeddedChain, db: Database
) -> None:
    bus = EventBus()
    sub = bus.subscribe(maxsize=1000)
    controller = NodeController(bus, [])
    refused = controller.handle(Withdraw(all=True))
    assert not refused.accepted and "nothing was sent" in refused.message
    assert withdraw_from([], None, None)[0] is False

    miner = _miner(chain, db, bus, chain.accounts[1].address)
    accepted, message = withdraw_from([miner], None, "0x" + "12" * 20)
    assert not accepted and "no miner" in message
    assert isinstance(sub.drain()[0], CommandHandled)


def test_a_reverted_withdrawal_is_published_failed_and_the_balance_stays(
    chain: EmbeddedChain, db: Database
) -> None:
    """A payout address that refuses ether (a contract without a receive function)."""
    bus = EventBus()
    sub = bus.subscribe(maxsize=1000)
    refuses_ether = chain.contracts["NodeRegistry"]
    miner = _miner(chain, db, bus, refuses_ether)
    _pay(chain, miner.address, task_id=11)
    sub.drain()

    outcome = miner.earnings.withdraw()
    assert not outcome.accepted and "TransferFailed" in outcome.message
    events = sub.drain()
    assert [w.status for w in _of(events, Withdrawal)] == [TxStatus.STARTED, TxStatus.FAILED]
    assert miner.client.payment.balance_of(miner.address) == SHARE
    assert [i.state for i in miner.journal.unsettled_txs()] == []
    assert miner.journal.total_of("withdrawal") == 0

    payout = chain.accounts[1].address
    miner.client.registry.set_payout(payout)
    assert miner.earnings.withdraw().accepted
    assert miner.journal.total_of("withdrawal") == SHARE
