"""Fees under a cap, a transaction stuck under a fee spike, failover that already delivered,
and an RPC that rate-limits (HTTP 429): on the run's anvil, through small proxies on 127.0.0.1."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from web3 import Web3

from chain.client import ChainClient, Deployment
from chain.devnet import LocalDevnet, new_funded_account, rpc
from chain.errors import FeeCapExceeded, TransactionTimeout
from chain.rpc import FailoverProvider, HttpBackend, RetryPolicy
from chain.transactions import GWEI, GasPolicy, TxResult, wait_until
from tests.chain.rpc_proxy import Reply, RpcProxy

pytestmark = pytest.mark.chain
FAST = RetryPolicy(rounds=2, backoff_s=0.05, request_timeout_s=10)


@pytest.fixture
def web3(anvil: LocalDevnet) -> Iterator[Web3]:
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    yield w3
    # Neither is part of a snapshot (anvil 1.7.1 keeps the next block's base fee across
    # evm_revert): put both back for the tests that share this anvil.
    rpc(w3, "evm_setAutomine", True)
    rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(GWEI))


def _client(anvil: LocalDevnet, urls: list[str], gas: GasPolicy, account: Any) -> ChainClient:
    backend = HttpBackend(urls, FAST)
    return ChainClient(backend, Deployment(anvil.chain_id, anvil.contracts), account, gas=gas)


def _set_base_fee(web3: Web3, wei: int) -> None:
    rpc(web3, "anvil_setNextBlockBaseFeePerGas", hex(wei))
    rpc(web3, "evm_mine")  # "latest" now carries that base fee


def _pending(web3: Web3, address: str) -> dict[str, Any]:
    content = rpc(web3, "txpool_content")["pending"]
    return next((txs for who, txs in content.items() if who.lower() == address.lower()), {})


def test_the_fee_is_capped_from_the_config(anvil: LocalDevnet, web3: Web3) -> None:
    _set_base_fee(web3, 2 * GWEI)  # uncapped: 2 x 2 + 1 = 5 gwei
    user = new_funded_account(web3)
    client = _client(anvil, [anvil.rpc_url], GasPolicy(max_fee_wei=3 * GWEI), user)
    result = client.payment.deposit(1)
    assert web3.eth.get_transaction(result.tx_hash)["maxFeePerGas"] == 3 * GWEI  # type: ignore[arg-type]


def test_a_base_fee_above_the_cap_sends_nothing(anvil: LocalDevnet, web3: Web3) -> None:
    _set_base_fee(web3, 10 * GWEI)
    user = new_funded_account(web3)
    client = _client(anvil, [anvil.rpc_url], GasPolicy(max_fee_wei=5 * GWEI), user)
    with pytest.raises(FeeCapExceeded, match=r"above the fee cap of 5\.000 gwei"):
        client.payment.deposit(1)
    assert web3.eth.get_transaction_count(user.address, "pending") == 0


def _send_in_thread(client: ChainClient) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def send() -> None:
        try:
            outcome.append(client.payment.deposit(1))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread, outcome


def _mine_until_done(
    web3: Web3, thread: threading.Thread, timeout_s: float, every_s: float = 0.2
) -> None:
    """Mine a block every `every_s` (each empty block lowers the base fee by 1/8)."""

    def done() -> bool:
        rpc(web3, "evm_mine")
        return not thread.is_alive()

    assert wait_until(done, timeout_s, poll_s=every_s)


def test_a_transaction_stuck_under_a_fee_spike_is_replaced_on_its_nonce(
    anvil: LocalDevnet, web3: Web3
) -> None:
    _set_base_fee(web3, 1 * GWEI)
    user = new_funded_account(web3)
    gas = GasPolicy(recheck_s=0.2, stuck_after_s=0.6, receipt_timeout_s=30)
    client = _client(anvil, [anvil.rpc_url], gas, user)
    rpc(web3, "evm_setAutomine", False)
    thread, outcome = _send_in_thread(client)
    assert wait_until(lambda: bool(_pending(web3, user.address)), 10)
    first = _pending(web3, user.address)["0"]
    assert int(first["maxFeePerGas"], 16) == 3 * GWEI  # 2 x 1 gwei + 1 gwei tip
    _set_base_fee(web3, 20 * GWEI)  # the spike: the next blocks cost more than it offers
    _mine_until_done(web3, thread, 20)
    result = outcome[0]
    assert isinstance(result, TxResult), result
    mined = web3.eth.get_transaction(result.tx_hash)  # type: ignore[arg-type]
    assert result.tx_hash != first["hash"]  # a replacement...
    assert mined["nonce"] == 0  # ...on the same nonce
    assert mined["maxFeePerGas"] > 20 * GWEI * 7 // 8  # enough for the spiked base fee
    assert web3.eth.get_transaction_count(user.address) == 1  # one of them, once
    assert client.payment.deposit_of(user.address) == 1


def test_a_replacement_never_pays_above_the_cap(anvil: LocalDevnet, web3: Web3) -> None:
    _set_base_fee(web3, 1 * GWEI)
    user = new_funded_account(web3)
    cap = 6 * GWEI
    gas = GasPolicy(max_fee_wei=cap, recheck_s=0.2, stuck_after_s=0.4, receipt_timeout_s=3)
    with RpcProxy(anvil.rpc_url) as proxy:
        client = _client(anvil, [proxy.url], gas, user)
        rpc(web3, "evm_setAutomine", False)
        thread, outcome = _send_in_thread(client)
        assert wait_until(lambda: bool(_pending(web3, user.address)), 10)
        _set_base_fee(web3, 20 * GWEI)
        _mine_until_done(web3, thread, 20, every_s=1.0)  # the base fee stays far above the cap
        assert isinstance(outcome[0], TransactionTimeout), outcome
        assert "at the fee cap" in str(outcome[0])
        sent = [bytes.fromhex(r["params"][0][2:]) for r in proxy.calls("eth_sendRawTransaction")]
    fees = [_max_fee(raw) for raw in sent]
    assert len(set(fees)) >= 2 and max(fees) == cap  # it did bump, up to the cap, no further
    rpc(web3, "evm_setAutomine", True)
    assert web3.eth.get_transaction_count(user.address) == 0


def _max_fee(raw: bytes) -> int:
    from eth_account.typed_transactions import TypedTransaction
    from hexbytes import HexBytes

    return int(TypedTransaction.from_bytes(HexBytes(raw)).as_dict()["maxFeePerGas"])


@pytest.mark.parametrize("automine", [True, False], ids=["nonce-too-low", "already-known"])
def test_a_send_delivered_before_a_failover_counts_as_sent(
    anvil: LocalDevnet, web3: Web3, automine: bool
) -> None:
    """The first RPC passes the transaction on, then fails (502) before answering; the second
    already has it: mined ("nonce too low") or in its pool ("already known")."""
    delivered: list[dict[str, Any]] = []

    def deliver_then_fail(request: dict[str, Any]) -> Reply | None:
        if request["method"] == "eth_sendRawTransaction" and not delivered:
            delivered.append(request)
            return Reply(status=502, forward_first=True)
        return None

    user = new_funded_account(web3)
    with RpcProxy(anvil.rpc_url, deliver_then_fail) as proxy:
        client = _client(anvil, [proxy.url, anvil.rpc_url], GasPolicy(recheck_s=0.2), user)
        rpc(web3, "evm_setAutomine", automine)
        thread, outcome = _send_in_thread(client)
        if not automine:
            assert wait_until(lambda: bool(_pending(web3, user.address)), 10)
            rpc(web3, "evm_mine")
        thread.join(timeout=30)
    result = outcome[0]
    assert isinstance(result, TxResult), result
    assert delivered and client.backend.generation >= 1  # it did fail over
    assert web3.eth.get_transaction_count(user.address) == 1
    assert client.payment.deposit_of(user.address) == 1


def test_a_rate_limited_rpc_rests_while_the_next_one_serves(anvil: LocalDevnet) -> None:
    def always_429(request: dict[str, Any]) -> Reply:
        return Reply(status=429)

    policy = RetryPolicy(rounds=2, backoff_s=0.05, rate_limit_s=30)
    with RpcProxy(anvil.rpc_url, always_429) as busy:
        backend = HttpBackend([busy.url, anvil.rpc_url], policy)
        for _ in range(10):
            assert backend.web3.eth.chain_id == anvil.chain_id
        assert backend.generation == 1  # failed over once...
        assert len(busy.requests) == 1  # ...and the busy one was left to rest, not hammered


def test_429_backs_off_with_jitter_and_honours_retry_after(anvil: LocalDevnet) -> None:
    refusals = {"left": 4}

    def busy_for_a_while(request: dict[str, Any]) -> Reply | None:
        if refusals["left"]:
            refusals["left"] -= 1
            after = (("Retry-After", "0.3"),) if refusals["left"] == 0 else ()
            return Reply(status=429, headers=after)
        return None

    slept: list[float] = []

    with RpcProxy(anvil.rpc_url, busy_for_a_while) as proxy:
        provider = FailoverProvider(
            [proxy.url],
            RetryPolicy(rounds=5, backoff_s=0.1, rate_limit_s=0.2, jitter=0.5),
            sleep=slept.append,  # record, do not wait: the test is about the lengths
            rng=random.Random(7),
        )
        response = provider.make_request("eth_chainId", [])  # type: ignore[arg-type]
    assert int(response["result"], 16) == anvil.chain_id
    assert refusals["left"] == 0 and len(slept) >= 4
    nominal = [0.1, 0.2, 0.4, 0.8]  # round backoffs: each drawn from [0.5, 1.5] x nominal
    rounds = slept[0::2][: len(nominal)]
    assert all(0.5 * n <= s <= 1.5 * n for s, n in zip(rounds, nominal, strict=False))
    assert len({round(s / n, 6) for s, n in zip(rounds, nominal, strict=False)}) > 1  # jitter
    assert any(abs(s - 0.3) < 0.05 for s in slept)  # Retry-After: 0.3 s, as the RPC asked
