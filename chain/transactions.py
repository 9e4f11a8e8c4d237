"""Signing and sending: local keys, one nonce sequence per account, gas and fees, receipts.

Several tasks of one node send from one account at once (ping while committing). The nonce
manager hands out nonces under a lock and keeps that lock until the node has accepted the signed
transaction, so nonces reach the node in order and a failed send gives its nonce back instead of
leaving a gap. A nonce error from the node re-reads the pending count and retries once.

When the RPC goes away mid-transaction (a restarted node, a failover) the counter is forgotten,
so the next send re-reads the pending count from the chain: a transaction lost in the gap leaves
no nonce gap behind, and one that did land is not reused.
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
from web3.exceptions import TimeExhausted
from web3.types import Nonce, TxParams, TxReceipt

from chain.errors import ChainError, ChainIdMismatch, RpcUnavailable, TransactionTimeout
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
    receipt_timeout_s: float = 60.0
    poll_s: float = 0.05


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
        return self._send_built(call.estimate_gas, call.build_transaction, what, value)

    def transfer(self, to: str, value: int) -> TxResult:
        def build(tx: TxParams) -> TxParams:
            tx["to"] = Web3.to_checksum_address(to)
            return tx

        def estimate(tx: TxParams) -> int:
            return int(self.web3.eth.estimate_gas(build(tx)))

        return self._send_built(estimate, build, f"transfer to {to}", value)

    def _send_built(
        self,
        estimate: Callable[[TxParams], int],
        build: Callable[[TxParams], TxParams],
        what: str,
        value: int,
    ) -> TxResult:
        chain_id = self.chain_id()
        base: TxParams = {"from": self.account.address, "value": Web3.to_wei(value, "wei")}
        try:
            gas_limit = int(estimate(dict(base)) * self.gas.margin)  # type: ignore[arg-type]
        except Exception as exc:
            raise self._as_chain_error(exc, what) from None
        # Every field given, so building the transaction makes no further RPC calls.
        tx = build({**base, **self._fees(), "gas": gas_limit + self.gas.extra, "chainId": chain_id})
        tx_hash = self._sign_and_send(tx, what)
        return self._wait(tx_hash, what)

    def _fees(self) -> TxParams:
        base_fee = int(self.web3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
        priority = self.gas.priority_fee_wei
        return {
            "maxPriorityFeePerGas": Web3.to_wei(priority, "wei"),
            "maxFeePerGas": Web3.to_wei(base_fee * self.gas.base_fee_multiplier + priority, "wei"),
        }

    def _sign_and_send(self, tx: TxParams, what: str) -> HexBytes:
        address = self.address
        with self.nonces.lock_for(address):
            for attempt in range(2):
                tx["nonce"] = Nonce(self.nonces.peek(address))
                signed = self.account.sign_transaction(tx)  # type: ignore[arg-type]
                try:
                    tx_hash = self.web3.eth.send_raw_transaction(signed.raw_transaction)
                except Exception as exc:
                    if attempt == 0 and "nonce" in str(exc).lower():
                        log.warning("nonce conflict on %s; re-reading the pending nonce", what)
                        self.nonces.resync(address)
                        continue
                    # Not resynced here: with the RPC down that read would fail as well.
                    self.nonces.forget(address)
                    raise self._as_chain_error(exc, what) from None
                self.nonces.advance(address)
                return tx_hash
        raise ChainError(f"{what}: nonce conflict persisted")  # pragma: no cover - loop returns

    def _wait(self, tx_hash: HexBytes, what: str) -> TxResult:
        try:
            receipt = self.web3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.gas.receipt_timeout_s, poll_latency=self.gas.poll_s
            )
        except (TimeExhausted, RpcUnavailable) as exc:
            # It may or may not be on chain: the next send asks the chain for the nonce.
            with self.nonces.lock_for(self.address):
                self.nonces.forget(self.address)
            if isinstance(exc, RpcUnavailable):
                raise
            raise TransactionTimeout(
                f"{what}: no receipt for {tx_hash.to_0x_hex()} within "
                f"{self.gas.receipt_timeout_s:.0f}s"
            ) from None
        if receipt["status"] != 1:
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


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()
