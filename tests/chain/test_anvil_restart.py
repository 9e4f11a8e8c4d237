"""anvil stopped and restarted with its state: the same chain comes back and clients carry on.

These tests restart anvil, so they start their own (small, about a second) instead of the run's
shared one, which other tests must find unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from chain.client import ChainClient, Deployment, connect
from chain.devnet import AnvilProcess, LocalDevnet, deploy_on_anvil, new_funded_account, rpc
from chain.errors import DevnetError, RpcUnavailable
from chain.events import EventCursor
from chain.rpc import HttpBackend, RetryPolicy
from chain.transactions import GasPolicy, wait_until

pytestmark = pytest.mark.chain
FAST = RetryPolicy(rounds=2, backoff_s=0.05, request_timeout_s=5)


@pytest.fixture
def stateful(tmp_path: Path) -> Iterator[tuple[AnvilProcess, LocalDevnet]]:
    anvil = AnvilProcess(state_file=tmp_path / "chain-state.json").start()
    try:
        yield anvil, deploy_on_anvil(anvil, oracles=1)
    finally:
        anvil.stop()


def test_restart_brings_back_the_same_chain_and_the_client_carries_on(stateful) -> None:  # type: ignore[no-untyped-def]
    anvil, devnet = stateful
    web3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    user = new_funded_account(web3)
    client = connect(devnet.chain_id, [devnet.rpc_url], devnet.contracts, user, FAST)
    for _ in range(3):
        client.payment.deposit(7)
    head, genesis = web3.eth.block_number, web3.eth.get_block(0)["hash"]
    last_time = web3.eth.get_block("latest")["timestamp"]
    port = anvil.port

    anvil.terminate()  # SIGTERM: anvil writes its state file
    with pytest.raises(RpcUnavailable):
        client.payment.deposit(7)  # the RPC is gone: a typed error, nothing sent
    anvil.start()

    assert anvil.port == port  # the nodes' profiles still point at it
    assert web3.eth.get_block(0)["hash"] == genesis  # the journal's chain key still matches
    assert web3.eth.block_number == head
    assert client.payment.deposit_of(user.address) == 21
    deposits = EventCursor("SessionPayment", client.payment.contract, "Deposited", 0).poll()
    assert len([e for e in deposits if e.args["user"] == user.address]) == 3  # old logs readable
    after = client.payment.deposit(7)  # the same client object, nonce 3, no conflict
    assert int(web3.eth.get_transaction(after.tx_hash)["nonce"]) == 3
    assert web3.eth.get_block(after.block_number)["timestamp"] >= last_time


def test_a_transaction_lost_in_the_gap_leaves_no_nonce_gap(stateful) -> None:  # type: ignore[no-untyped-def]
    anvil, devnet = stateful
    web3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    user = new_funded_account(web3)
    client = ChainClient(
        HttpBackend([devnet.rpc_url], FAST),
        Deployment(devnet.chain_id, devnet.contracts),
        user,
        gas=GasPolicy(receipt_timeout_s=30),
    )
    client.payment.deposit(1)  # nonce 0
    rpc(web3, "evm_setAutomine", False)  # the next one waits in the pool when anvil goes away
    failures: list[BaseException] = []

    def send() -> None:
        try:
            client.payment.deposit(1)  # nonce 1: sent, never mined, its receipt never comes
        except BaseException as exc:
            failures.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    assert wait_until(lambda: len(rpc(web3, "txpool_content")["pending"]) > 0, 10)
    anvil.restart(down_s=0.5)  # the pool is not part of the saved state: nonce 1 is lost
    sender.join(timeout=60)
    assert failures and isinstance(failures[0], RpcUnavailable)
    rpc(web3, "evm_setAutomine", True)
    assert web3.eth.get_transaction_count(user.address) == 1
    client.payment.deposit(1)  # asks the chain for the nonce again: 1, not 2 (a gap, stuck)
    assert web3.eth.get_transaction_count(user.address) == 2
    assert client.payment.deposit_of(user.address) == 2


def test_restart_without_a_state_file_is_refused() -> None:
    with AnvilProcess() as anvil, pytest.raises(DevnetError, match="state file"):
        anvil.restart()
