"""A node's money: what it earned, what it can withdraw, its gas, and the withdrawal itself.

`EarningsTracker` reads three figures from the chain and publishes them as `EarningsUpdated`:

    withdrawable_wei  SessionPayment.balances(node): paid for passing user tasks, not yet withdrawn
    earned_wei        withdrawable + every withdrawal in this home's journal on this chain, so the
                      figure survives restarts and withdrawals (a home restored without its
                      database starts again from the balance on chain)
    gas_balance_wei   the node account's ether, which pays for its transactions

It publishes after every change it can see (a `TaskSettled` or `Withdrawn` event that names the
node, a withdrawal it made) and on a slow timer for the gas, which falls with every transaction.
Payments and withdrawals go to the journal's wallet history (`kind` payment / withdrawal), once
each, however often an event is replayed after a restart.

The `LOW_GAS` alert is raised once when the gas balance falls below the threshold and cleared
(`active=False`) once it is back at or above it; a threshold of 0 turns it off.

Withdrawals (`withdraw()`): SessionPayment pays out the node's whole balance to the payout address
the node registered, never to the caller, so there is no partial amount. Before the transaction
is sent, an intent (the block it starts from and the account's next nonce) goes to the journal;
after a crash `resume()` settles it from the chain alone (a `Withdrawn` event for this node since
that block means it went through) and never sends it again: a withdrawal is only ever sent when
someone asks for one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from chain.errors import ChainError, ContractRevert
from engine.protocol import TaskKind
from engine.state.events import (
    Alert,
    AlertKind,
    EarningsUpdated,
    Event,
    Severity,
    TxStatus,
    Withdrawal,
)
from engine.state.journal import (
    EarningRecord,
    Journal,
    TaskRef,
    TxIntent,
    TxResume,
    resume_decision,
)
from engine.state.summary import DEFAULT_LOW_GAS_WEI

if TYPE_CHECKING:  # web3 is heavy; the dashboard imports the threshold from here
    from chain.client import ChainClient
    from chain.events import ChainEvent

log = logging.getLogger(__name__)

WEI_PER_ETH = 10**18
DEFAULT_REFRESH_S = 30.0
PAYMENT_EVENTS = ("TaskSettled", "Withdrawn")
INTENT_PREFIX = "withdraw:"
ZERO_ADDRESS = "0x" + "00" * 20


def eth(wei: int) -> str:
    """Wei as ether for people, to 6 places (the events and JSON keep exact wei)."""
    return f"{wei / WEI_PER_ETH:.6f} ETH"


@dataclass(frozen=True)
class Balances:
    earned_wei: int
    withdrawable_wei: int
    gas_balance_wei: int


@dataclass(frozen=True)
class WithdrawOutcome:
    """How a withdrawal request ended; `sent` says whether a transaction left this node."""

    accepted: bool
    message: str
    sent: bool = False
    amount_wei: int = 0
    to: str = ""
    tx_hash: str | None = None
    gas_used: int | None = None


class GasAlarm:
    """Raises LOW_GAS once on the way down and clears it once on the way back up."""

    def __init__(self, threshold_wei: int) -> None:
        self.threshold_wei = threshold_wei
        self.active = False

    def check(self, balance_wei: int, address: str) -> Alert | None:
        low = self.threshold_wei > 0 and balance_wei < self.threshold_wei
        if low == self.active:
            return None
        self.active = low
        if low:
            return Alert(
                kind=AlertKind.LOW_GAS,
                severity=Severity.WARNING,
                message=f"gas balance {eth(balance_wei)} is below the alert threshold "
                f"{eth(self.threshold_wei)}: top up {address} before transactions fail",
            )
        return Alert(
            kind=AlertKind.LOW_GAS,
            severity=Severity.INFO,
            message=f"gas balance {eth(balance_wei)} is back above {eth(self.threshold_wei)}",
            active=False,
        )


class EarningsTracker:
    """One node's earnings and withdrawals; safe to call from the node loop and a command thread."""

    def __init__(
        self,
        client: ChainClient,
        journal: Journal,
        publish: Callable[[Event], object],
        *,
        low_gas_wei: int = DEFAULT_LOW_GAS_WEI,
        refresh_s: float = DEFAULT_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client.address is None:
            raise ValueError("earnings belong to a signing account")
        self.client = client
        self.address: str = client.address
        self.journal = journal
        self._publish = publish
        self.alarm = GasAlarm(low_gas_wei)
        self.refresh_s = refresh_s
        self._clock = clock
        self._next_refresh: float | None = None
        self._dirty = False
        self._lock = threading.RLock()
        self.last: Balances | None = None

    # -- reading ----------------------------------------------------------------------------
    def balances(self) -> Balances:
        withdrawable = self.client.payment.balance_of(self.address)
        gas = self.client.balance(self.address)
        earned = withdrawable + self.journal.total_of("withdrawal")
        return Balances(earned, withdrawable, gas)

    def refresh(self) -> Balances:
        """Read the chain, publish `EarningsUpdated` and any change of the low-gas alert."""
        with self._lock:
            balances = self.balances()
            self.last = balances
            self._dirty = False
            self._next_refresh = self._clock() + self.refresh_s
            self._publish(
                EarningsUpdated(
                    earned_wei=balances.earned_wei,
                    withdrawable_wei=balances.withdrawable_wei,
                    gas_balance_wei=balances.gas_balance_wei,
                )
            )
            alert = self.alarm.check(balances.gas_balance_wei, self.address)
            if alert is not None:
                self._publish(alert)
            return balances

    def tick(self) -> None:
        """On the node loop: refresh after a payment event, else when the timer is due.

        Never waits: while a withdrawal (another thread) waits for its receipt, the node loop
        goes on answering tasks, and the withdrawal publishes the new figures itself.
        """
        due = self._next_refresh is None or self._clock() >= self._next_refresh
        if not (self._dirty or due) or not self._lock.acquire(blocking=False):
            return
        try:
            self.refresh()
        finally:
            self._lock.release()

    # -- chain events -------------------------------------------------------------------------
    def note(self, event: ChainEvent) -> None:
        """A SessionPayment event: journal what concerns this node; refresh on the next tick."""
        if event.name == "TaskSettled":
            self._note_settled(event)
        elif event.name == "Withdrawn" and self._is_me(str(event.args["node"])):
            self._record_withdrawal(
                int(event.args["amount"]), str(event.args["payout"]), event.tx_hash
            )
            self._dirty = True

    def _note_settled(self, event: ChainEvent) -> None:
        paid = [str(a) for a in event.args["paid"]]
        if not any(self._is_me(a) for a in paid):
            return
        task_id = int(event.args["taskId"])
        session_id = int(self.client.queue.call("tasks", task_id)[0])
        share = int(event.args["share"])
        self.journal.record_earning_once(
            EarningRecord(
                at=time.time(),
                kind="payment",
                amount_wei=share,
                task=TaskRef(TaskKind.USER, session_id, task_id),
                tx_hash=event.tx_hash,
                note=f"user task {task_id} passed validation",
            )
        )
        self._dirty = True

    def _record_withdrawal(self, amount_wei: int, payout: str, tx_hash: str) -> bool:
        return self.journal.record_earning_once(
            EarningRecord(
                at=time.time(),
                kind="withdrawal",
                amount_wei=amount_wei,
                tx_hash=tx_hash,
                note=f"to {payout}",
            )
        )

    # -- withdrawing ------------------------------------------------------------------------
    def resume(self) -> None:
        """After a restart: settle every withdrawal the journal left open, from the chain."""
        with self._lock:
            for intent in self._open_intents():
                self._settle(intent)

    def withdraw(self, amount_wei: int | None = None) -> WithdrawOutcome:
        """Withdraw the whole balance to the payout address; refusals send nothing."""
        with self._lock:
            unsettled = [i for i in self._open_intents() if self._settle(i) is TxResume.IN_FLIGHT]
            if unsettled:
                return WithdrawOutcome(
                    False,
                    "an earlier withdrawal is still pending on chain; nothing was sent "
                    "(ask again once it is mined)",
                )
            balance = self.client.payment.balance_of(self.address)
            if balance == 0:
                return WithdrawOutcome(
                    False,
                    f"nothing to withdraw: {self.address} has no balance in SessionPayment; "
                    "nothing was sent",
                )
            if amount_wei is not None and amount_wei != balance:
                return WithdrawOutcome(
                    False,
                    f"SessionPayment pays out the whole balance only ({balance} wei, "
                    f"{eth(balance)}); withdraw all of it; nothing was sent",
                )
            payout = self.client.registry.node_info(self.address).payout
            if payout.lower() == ZERO_ADDRESS:
                return WithdrawOutcome(
                    False, f"{self.address} is not registered: it has no payout address"
                )
            return self._send(balance, payout)

    def _send(self, balance: int, payout: str) -> WithdrawOutcome:
        web3 = self.client.web3
        head = int(web3.eth.block_number)
        nonce = self._nonce("pending")
        key = f"{INTENT_PREFIX}{head}:{nonce}"
        intent = self.journal.record_intent(key, nonce)
        self._publish(
            Withdrawal(
                amount_wei=balance,
                to=payout,
                status=TxStatus.STARTED,
                detail="sending SessionPayment.withdraw",
            )
        )
        try:
            result = self.client.payment.withdraw()
        except ChainError as exc:
            return self._after_error(intent, balance, payout, exc)
        paid = [e for e in self.client.payment.events(result) if e.name == "Withdrawn"]
        amount = int(paid[0].args["amount"]) if paid else balance
        self.journal.mark_tx_sent(key, result.tx_hash)
        self.journal.mark_tx_confirmed(key)
        self._record_withdrawal(amount, payout, result.tx_hash)
        message = f"withdrew {eth(amount)} ({amount} wei) to {payout} in tx {result.tx_hash}"
        self._publish(
            Withdrawal(
                amount_wei=amount,
                to=payout,
                status=TxStatus.CONFIRMED,
                tx_hash=result.tx_hash,
                gas_used=result.gas_used,
                detail=message,
            )
        )
        self.refresh()
        return WithdrawOutcome(True, message, True, amount, payout, result.tx_hash, result.gas_used)

    def _after_error(
        self, intent: TxIntent, balance: int, payout: str, exc: ChainError
    ) -> WithdrawOutcome:
        """The send raised: a revert sent nothing that paid; a timeout may still have landed."""
        state = self._settle(intent)
        if state is TxResume.DONE:
            settled = self.journal.tx(intent.key)
            tx_hash = settled.tx_hash if settled else None
            message = f"withdrew {eth(balance)} to {payout} in tx {tx_hash} (confirmed late)"
            self._publish(
                Withdrawal(
                    amount_wei=balance,
                    to=payout,
                    status=TxStatus.CONFIRMED,
                    tx_hash=tx_hash,
                    detail=message,
                )
            )
            self.refresh()
            return WithdrawOutcome(True, message, True, balance, payout, tx_hash)
        reason = _reason(exc)
        if state is TxResume.IN_FLIGHT:
            detail = f"sent, not confirmed yet ({reason}); checked again before the next withdrawal"
            self._publish(
                Withdrawal(amount_wei=balance, to=payout, status=TxStatus.SENT, detail=detail)
            )
            return WithdrawOutcome(False, f"the withdrawal was {detail}", True, balance, payout)
        self._publish(
            Withdrawal(amount_wei=balance, to=payout, status=TxStatus.FAILED, detail=reason)
        )
        self.refresh()
        return WithdrawOutcome(False, f"the withdrawal failed: {reason}", True, balance, payout)

    def _open_intents(self) -> list[TxIntent]:
        return [i for i in self.journal.unsettled_txs() if i.key.startswith(INTENT_PREFIX)]

    def _settle(self, intent: TxIntent) -> TxResume:
        """Decide an open withdrawal from the chain: DONE, FAILED, or IN_FLIGHT (undecided)."""
        from_block = int(intent.key.removeprefix(INTENT_PREFIX).split(":")[0])
        cursor = self.client.payment.cursor("Withdrawn", from_block, node=self.address)
        found = cursor.poll()
        decision = resume_decision(
            intent,
            receipt_ok=True if found else None,
            account_nonce=self._nonce("latest"),
            pending_nonce=self._nonce("pending"),
        )
        if decision is TxResume.DONE:
            for event in found:
                self._record_withdrawal(
                    int(event.args["amount"]), str(event.args["payout"]), event.tx_hash
                )
            self.journal.mark_tx_sent(intent.key, found[0].tx_hash)
            self.journal.mark_tx_confirmed(intent.key)
            self._dirty = True
            return TxResume.DONE
        if decision is TxResume.IN_FLIGHT:
            return TxResume.IN_FLIGHT  # a transaction of this account waits to be mined: maybe this
        # The nonce went to another transaction, or nothing of ours waits at it: never paid out.
        self.journal.mark_tx_failed(
            intent.key, f"no Withdrawn event since block {from_block}: nothing was paid out"
        )
        return TxResume.FAILED

    def _nonce(self, block: str) -> int:
        """This account's transaction count: mined ("latest") or including the mempool."""
        from web3 import Web3

        address = Web3.to_checksum_address(self.address)
        return int(self.client.web3.eth.get_transaction_count(address, block))  # type: ignore[arg-type]

    def _is_me(self, address: str) -> bool:
        return address.lower() == self.address.lower()


def _reason(exc: ChainError) -> str:
    if isinstance(exc, ContractRevert) and exc.error == "NothingToWithdraw":
        return "nothing to withdraw (the balance was paid out already)"
    return str(exc)


class HasEarnings(Protocol):
    address: str
    earnings: EarningsTracker


def withdraw_from(
    nodes: Sequence[HasEarnings], amount_wei: int | None, node: str | None
) -> tuple[bool, str]:
    """A `Withdraw` command for the miners of one process (the embedded network has several).

    `node` picks one miner by address; without it every miner that has a balance withdraws.
    Accepted when at least one withdrawal went through; the message names each outcome.
    """
    if not nodes:
        return False, "no miner runs in this process: nothing to withdraw from; nothing was sent"
    chosen = [n for n in nodes if node is None or n.address.lower() == node.lower()]
    if not chosen:
        return False, f"no miner {node} runs in this process; nothing was sent"
    if node is None and len(chosen) > 1:
        funded = [n for n in chosen if n.earnings.client.payment.balance_of(n.address) > 0]
        if not funded:
            return False, "nothing to withdraw: no miner of this process has a balance; " + (
                "nothing was sent"
            )
        chosen = funded
    if amount_wei is not None and len(chosen) > 1:
        return False, "an amount needs one miner: name it (`node`); nothing was sent"
    outcomes = [n.earnings.withdraw(amount_wei) for n in chosen]
    accepted = any(o.accepted for o in outcomes)
    if len(outcomes) == 1:
        return accepted, outcomes[0].message
    pairs = zip(chosen, outcomes, strict=True)
    return accepted, "; ".join(f"{n.address[:10]}: {o.message}" for n, o in pairs)
