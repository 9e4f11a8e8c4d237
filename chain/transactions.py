"""Signing and sending: local keys, one nonce sequence per account, gas and fees, receipts.

Several tasks of one node send from one account at once (ping while committing). The nonce
manager hands out nonces under a lock and keeps that lock until the node has accepted the signed
transaction, so nonces reach the node in order and a failed send gives its nonce back instead of
leaving a gap. A nonce error from the node re-reads the pending count and retries once.

When the RPC goes away mid-transaction (a restarted node, a failover) the counter is forgotten,
so the next send re-reads the pending count from the chain: a transaction lost in the gap leaves
no nonce gap behind, and one that did land is not reused.

Fees are EIP-1559: twice the base fee plus a tip, never above the cap (`GasPolicy.max_fee_wei`,
`[chain] max_fee_gwei`); a base fee already above the cap refuses to send (`FeeCapExceeded`).
While waiting for a receipt the sender watches its transaction: one the node no longer knows (a
reorg dropped it, a restarted node lost its pool) is broadcast again, byte for byte; one that sits
unmined past `stuck_after_s` (a fee spike) is replaced on the same nonce with fees raised by
`bump_percent` and at least what the next block's base fee needs, up to the cap. Whichever of
its versions is mined is the result. An RPC that answers "already known" or "nonce too low" to a
transaction that is in fact on chain or in the pool (sent through another RPC before a failover)
has it: that counts as sent, not failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound
from web3.types import Nonce, TxParams, TxReceipt

from chain.errors import (
    ChainError,
    ChainIdMismatch,
    FeeCapExceeded,
    RpcUnavailable,
    TransactionTimeout,
)
from chain.reverts import decode_revert, is_revert
from chain.rpc import Backend

log = logging.getLogger(__name__)
GWEI = 10**9


@dataclass(frozen=True)
class GasPolicy:
    margin: float = (
        1.2  # estimates miss storage refunds and state changes between estimate and send
    )
    extra: int = 10_000
    priority_fee_wei: int = 1 * GWEI
    base_fee_multiplier: int = 2  # room for the base fee to rise for a few blocks
    max_fee_wei: int | None = None  # the most a transaction may pay per gas; None: no cap
    receipt_timeout_s: float = 60.0
    poll_s: float = 0.05
    recheck_s: float = 2.0  # this long without a receipt: is the transaction still known?
    stuck_after_s: float = 30.0  # this long unmined: replace it with a higher fee
    bump_percent: int = 25  # a replacement's raise (nodes want at least 10 %)

    def capped(self, fee_wei: int) -> int:
        return fee_wei if self.max_fee_wei is None else min(fee_wei, self.max_fee_wei)


_ALREADY_KNOWN = ("already known", "already imported", "known transaction", "already in pool")
_UNDERPRICED = ("underpriced", "less than block base fee", "fee cap", "max fee per gas less")


class OutOfGas(ChainError):
    """A transaction used all the gas it was given: the estimate was too low for its block."""


@dataclass
class _Sent:
    """One logical transaction: its nonce, every version signed for it, the newest first."""

    tx: TxParams
    hashes: list[HexBytes]
    raws: list[bytes]
    since: float  # when the newest version was sent
    at_cap: bool = False  # the fee cap keeps it from paying what the chain asks


@dataclass(frozen=True)
class TxResult:
    tx_hash: str
    block_number: int
    gas_used: int
    receipt: TxReceipt


class NonceManager:
    """One lock and one counter per address, shared by every sender in the process."""

    def __init__(self, web3: Web3) -> None:
        self._web3 = web3
        self._locks: dict[str, threading.Lock] = {}
        self._next: dict[str, int] = {}
        self._guard = threading.Lock()

    def lock_for(self, address: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(address, threading.Lock())

    def peek(self, address: str) -> int:
        """The next nonce; the caller must hold lock_for(address)."""
        if address not in self._next:
            self.resync(address)
        return self._next[address]

    def advance(self, address: str) -> None:
        self._next[address] += 1

    def forget(self, address: str) -> None:
        """Re-read the nonce from the chain on the next send; the caller holds the lock."""
        self._next.pop(address, None)

    def resync(self, address: str) -> None:
        pending = self._web3.eth.get_transaction_count(Web3.to_checksum_address(address), "pending")
        self._next[address] = int(pending)


class TxSender:
    """Signs locally for one account and refuses to sign for any chain but the expected one."""

    def __init__(
        self,
        backend: Backend,
        account: LocalAccount,
        nonces: NonceManager,
        expected_chain_id: int | None,
        gas: GasPolicy | None = None,
    ) -> None:
        self.backend = backend
        self.web3 = backend.web3
        self.account = account
        self.nonces = nonces
        self.expected_chain_id = expected_chain_id
        self.gas = gas or GasPolicy()
        self._checked_generation: int | None = None
        self._chain_id: int | None = None
        # (number, hash) of the newest block holding one of our receipts: a node that sent a
        # transaction has "seen" its block even before its event poll reaches it (reorgs).
        self.last_receipt_block: tuple[int, str] | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    def chain_id(self) -> int:
        """The RPC's chain id, re-read after every failover, checked against the profile."""
        generation = self.backend.generation
        if self._chain_id is None or generation != self._checked_generation:
            actual = int(self.web3.eth.chain_id)
            if self.expected_chain_id is not None and actual != self.expected_chain_id:
                raise ChainIdMismatch(
                    f"refusing to sign: {self.backend.description} serves chain id {actual}, "
                    f"the network profile expects {self.expected_chain_id}"
                )
            self._chain_id, self._checked_generation = actual, generation
        return self._chain_id

    def send(self, call: Any, what: str, value: int = 0) -> TxResult:
        """Estimate, sign, send and wait for a contract call (`contract.functions.f(...)`)."""
        block = self.backend.estimate_block

        def estimate(tx: TxParams) -> int:
            return int(call.estimate_gas(tx, block_identifier=block))

        return self._send_built(estimate, call.build_transaction, what, value)

    def transfer(self, to: str, value: int) -> TxResult:
        def build(tx: TxParams) -> TxParams:
            tx["to"] = Web3.to_checksum_address(to)
            return tx

        def estimate(tx: TxParams) -> int:
            return int(self.web3.eth.estimate_gas(build(tx), self.backend.estimate_block))

        return self._send_built(estimate, build, f"transfer to {to}", value)

    def _send_built(
        self,
        estimate: Callable[[TxParams], int],
        build: Callable[[TxParams], TxParams],
        what: str,
        value: int,
    ) -> TxResult:
        try:
            return self._send_once(estimate, build, what, value, 1)
        except OutOfGas as exc:
            # The estimate met another state than the block did (a loop whose length depends
            # on the block, storage changed meanwhile): once more with twice the gas.
            log.warning("%s; sending it again with twice the gas", exc)
            return self._send_once(estimate, build, what, value, 2)

    def _send_once(
        self,
        estimate: Callable[[TxParams], int],
        build: Callable[[TxParams], TxParams],
        what: str,
        value: int,
        gas_factor: int,
    ) -> TxResult:
        chain_id = self.chain_id()
        base: TxParams = {"from": self.account.address, "value": Web3.to_wei(value, "wei")}
        try:
            estimated = estimate(dict(base))  # type: ignore[arg-type]
        except Exception as exc:
            raise self._as_chain_error(exc, what) from None
        gas_limit = int(estimated * self.gas.margin * gas_factor) + self.gas.extra
        # Every field given, so building the transaction makes no further RPC calls.
        fees = self._fees(what)
        tx = build({**base, **fees, "gas": gas_limit, "chainId": chain_id})
        sent = self._sign_and_send(tx, what)
        try:
            return self._wait(sent, what)
        except (TransactionTimeout, RpcUnavailable):
            # It may or may not be on chain: the next send asks the chain for the nonce.
            with self.nonces.lock_for(self.address):
                self.nonces.forget(self.address)
            raise

    def _fees(self, what: str) -> TxParams:
        base_fee = int(self.web3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
        cap = self.gas.max_fee_wei
        if cap is not None and base_fee > cap:
            raise FeeCapExceeded(
                f"{what}: the base fee is {base_fee / GWEI:.3f} gwei, above the fee cap of "
                f"{cap / GWEI:.3f} gwei ([chain] max_fee_gwei); nothing was sent"
            )
        max_fee = self.gas.capped(
            base_fee * self.gas.base_fee_multiplier + self.gas.priority_fee_wei
        )
        priority = min(self.gas.priority_fee_wei, max_fee)
        return {
            "maxPriorityFeePerGas": Web3.to_wei(priority, "wei"),
            "maxFeePerGas": Web3.to_wei(max_fee, "wei"),
        }

    def _sign_and_send(self, tx: TxParams, what: str) -> _Sent:
        address = self.address
        with self.nonces.lock_for(address):
            for attempt in range(2):
                tx["nonce"] = Nonce(self.nonces.peek(address))
                signed = self.account.sign_transaction(tx)  # type: ignore[arg-type]
                try:
                    tx_hash = self._broadcast(signed.raw_transaction, signed.hash, what)
                except Exception as exc:
                    if attempt == 0 and "nonce" in str(exc).lower():
                        log.warning("nonce conflict on %s; re-reading the pending nonce", what)
                        self.nonces.resync(address)
                        continue
                    # Not resynced here: with the RPC down that read would fail as well.
                    self.nonces.forget(address)
                    raise self._as_chain_error(exc, what) from None
                self.nonces.advance(address)
                raw = bytes(signed.raw_transaction)
                return _Sent(dict(tx), [tx_hash], [raw], time.monotonic())  # type: ignore[arg-type]
        raise ChainError(f"{what}: nonce conflict persisted")  # pragma: no cover - loop returns

    def _broadcast(
        self, raw: bytes, tx_hash: HexBytes, what: str, *, again: bool = False
    ) -> HexBytes:
        """Send a signed transaction; an RPC that already has it answers "already known" or
        "nonce too low": sent, not failed, when the chain or the pool really holds this hash
        and we may have sent it before: a rebroadcast (`again`), or a send the provider had to
        retry on another RPC (the first may have passed it on before it failed)."""
        retries = _retries(self.web3)
        try:
            return HexBytes(self.web3.eth.send_raw_transaction(raw))
        except Exception as exc:
            text = str(exc).lower()
            ours = again or _retries(self.web3) != retries
            known = any(marker in text for marker in _ALREADY_KNOWN)
            if known or (ours and "nonce too low" in text and self._known(tx_hash)):
                log.info("%s: the RPC already has %s; counted as sent", what, tx_hash.to_0x_hex())
                return HexBytes(tx_hash)
            raise

    def _known(self, tx_hash: HexBytes) -> bool:
        """Whether the node has this transaction, mined or in its pool."""
        try:
            return self.web3.eth.get_transaction(tx_hash) is not None
        except TransactionNotFound:
            return False

    def _receipt(self, tx_hash: HexBytes) -> TxReceipt | None:
        try:
            return self.web3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def _wait(self, sent: _Sent, what: str) -> TxResult:
        """Wait for a receipt of any version of `sent`; rebroadcast or replace it meanwhile."""
        start = time.monotonic()
        last_check = start
        while True:
            for tx_hash in sent.hashes:
                receipt = self._receipt(tx_hash)
                if receipt is not None:
                    return self._result(tx_hash, receipt, what, int(sent.tx["gas"]))
            now = time.monotonic()
            if now - start >= self.gas.receipt_timeout_s:
                raise TransactionTimeout(
                    f"{what}: no receipt for {sent.hashes[0].to_0x_hex()} within "
                    f"{self.gas.receipt_timeout_s:.0f}s"
                    + (" (at the fee cap)" if sent.at_cap or self._at_cap(sent.tx) else "")
                )
            if now - last_check >= self.gas.recheck_s:
                last_check = now
                self._look_after(sent, what, now)
            time.sleep(self.gas.poll_s)

    def _look_after(self, sent: _Sent, what: str, now: float) -> None:
        """A transaction without a receipt: broadcast it again if the node lost it, replace it
        with a higher fee if it is stuck."""
        stuck = now - sent.since >= self.gas.stuck_after_s
        if not stuck and self._known(sent.hashes[0]):
            return
        if not stuck:
            try:  # dropped by a reorg, or lost with a restarted node's pool: the same bytes
                self._broadcast(sent.raws[0], sent.hashes[0], what, again=True)
                log.warning("%s: %s was dropped; sent it again", what, sent.hashes[0].to_0x_hex())
                return
            except Exception as exc:
                if not any(marker in str(exc).lower() for marker in _UNDERPRICED):
                    self._raise_if_nonce_taken(sent, what, exc)
                    return
        self._replace(sent, what, now)

    def _raise_if_nonce_taken(self, sent: _Sent, what: str, exc: Exception) -> None:
        if "nonce too low" not in str(exc).lower():
            log.info("%s: rebroadcast refused: %s", what, exc)
            return
        if any(self._receipt(h) is not None for h in sent.hashes):
            return  # mined meanwhile: the wait loop picks the receipt up
        with self.nonces.lock_for(self.address):
            self.nonces.forget(self.address)
        raise ChainError(
            f"{what}: nonce {sent.tx['nonce']} was used by another transaction of this account"
        )

    def _replace(self, sent: _Sent, what: str, now: float) -> None:
        """The same nonce again with higher fees: what a fee spike needs to get mined."""
        old_fee, old_tip = int(sent.tx["maxFeePerGas"]), int(sent.tx["maxPriorityFeePerGas"])
        raise_by = 100 + self.gas.bump_percent
        tip = self.gas.capped(max(old_tip * raise_by // 100, self.gas.priority_fee_wei))
        wanted = max(old_fee * raise_by // 100, self._next_base_fee() * 2 + tip)
        fee = self.gas.capped(wanted)
        sent.at_cap = fee < wanted
        if fee <= old_fee:
            sent.since = now  # at the cap: nothing higher to offer; wait for the base fee to fall
            log.warning("%s: stuck at the fee cap (%d wei per gas)", what, old_fee)
            return
        replacement: TxParams = {
            **sent.tx,
            "maxFeePerGas": Web3.to_wei(fee, "wei"),
            "maxPriorityFeePerGas": Web3.to_wei(min(tip, fee), "wei"),
        }
        signed = self.account.sign_transaction(replacement)  # type: ignore[arg-type]
        try:
            tx_hash = self._broadcast(signed.raw_transaction, signed.hash, what)
        except Exception as exc:
            self._raise_if_nonce_taken(sent, what, exc)
            sent.since = now
            return
        log.warning(
            "%s: %s stuck; replaced by %s at %.3f gwei (nonce %s)",
            what,
            sent.hashes[0].to_0x_hex(),
            tx_hash.to_0x_hex(),
            fee / GWEI,
            sent.tx["nonce"],
        )
        sent.tx, sent.since = replacement, now
        sent.hashes.insert(0, tx_hash)
        sent.raws.insert(0, bytes(signed.raw_transaction))

    def _next_base_fee(self) -> int:
        """The base fee the next block charges (eth_feeHistory's last entry), else the latest."""
        try:
            return int(self.web3.eth.fee_history(1, "latest")["baseFeePerGas"][-1])
        except Exception:  # a node without eth_feeHistory (the in-process chain)
            return int(self.web3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)

    def _at_cap(self, tx: TxParams) -> bool:
        cap = self.gas.max_fee_wei
        return cap is not None and int(tx["maxFeePerGas"]) >= cap

    def _result(
        self, tx_hash: HexBytes, receipt: TxReceipt, what: str, gas_limit: int | None = None
    ) -> TxResult:
        block = (int(receipt["blockNumber"]), HexBytes(receipt["blockHash"]).to_0x_hex())
        if self.last_receipt_block is None or block[0] > self.last_receipt_block[0]:
            self.last_receipt_block = block
        if receipt["status"] != 1:
            if gas_limit is not None and int(receipt["gasUsed"]) >= gas_limit:
                raise OutOfGas(
                    f"{what}: transaction {tx_hash.to_0x_hex()} ran out of gas ({gas_limit:,})"
                )
            raise ChainError(f"{what}: transaction {tx_hash.to_0x_hex()} reverted on chain")
        return TxResult(
            tx_hash=tx_hash.to_0x_hex(),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            receipt=receipt,
        )

    @staticmethod
    def _as_chain_error(exc: Exception, what: str) -> ChainError:
        if isinstance(exc, ChainError):
            return exc
        decoded = decode_revert(exc, what)
        if decoded is not None:
            return decoded
        if is_revert(exc):
            return ChainError(f"{what}: reverted: {exc}")
        return ChainError(f"{what}: {type(exc).__name__}: {exc}")


def _retries(web3: Web3) -> int:
    """How many requests the provider has retried on another RPC (0 where it never does)."""
    return int(getattr(web3.provider, "retried_requests", 0))


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()
