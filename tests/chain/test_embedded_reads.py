"""The in-process chain answers a read once per block, and never an answer of an older block."""

from __future__ import annotations

from typing import Any

import pytest
from eth_tester.exceptions import TransactionFailed

from chain.devnet import EmbeddedChain, LockedTesterProvider


def _provider(chain: EmbeddedChain) -> LockedTesterProvider:
    provider: Any = chain.web3.provider
    assert isinstance(provider, LockedTesterProvider)
    return provider


def test_the_same_read_in_one_block_is_answered_once(embedded: EmbeddedChain) -> None:
    provider = _provider(embedded)
    first = embedded.web3.eth.get_balance(embedded.accounts[0].address)
    before = provider.reads_answered_again
    again = embedded.web3.eth.get_balance(embedded.accounts[0].address)
    assert again == first
    assert provider.reads_answered_again == before + 1


def test_a_mined_transaction_is_seen_by_the_next_read(embedded: EmbeddedChain) -> None:
    web3 = embedded.web3
    sender, receiver = embedded.accounts[0], embedded.accounts[1]
    before = web3.eth.get_balance(receiver.address)
    height = web3.eth.block_number
    tx = {"to": receiver.address, "value": 12345, "gas": 21000, "chainId": embedded.chain_id}
    tx |= {"nonce": web3.eth.get_transaction_count(sender.address), "gasPrice": 10**10}
    web3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    assert web3.eth.get_balance(receiver.address) == before + 12345
    assert web3.eth.block_number == height + 1


def test_a_revert_and_a_time_travel_behind_the_providers_back_are_seen(
    embedded: EmbeddedChain,
) -> None:
    web3 = embedded.web3
    snapshot = embedded.snapshot()
    height = web3.eth.block_number
    embedded.advance_time(600)  # mines through the tester, not the provider
    moved = web3.eth.get_block("latest")
    assert moved["number"] == height + 1
    embedded.revert(snapshot)
    assert web3.eth.block_number == height
    assert web3.eth.get_block("latest")["timestamp"] < moved["timestamp"]


def test_a_failed_call_is_not_kept(embedded: EmbeddedChain) -> None:
    provider = _provider(embedded)
    call = {"from": embedded.accounts[0].address, "to": embedded.contracts["NodeRegistry"]}
    params = [call | {"data": "0xdeadbeef"}, "latest"]
    before = provider.reads_answered_again
    for _ in range(2):  # no such function: the contract reverts, every time
        with pytest.raises(TransactionFailed):
            provider.make_request("eth_call", params)  # type: ignore[arg-type]
    assert provider.reads_answered_again == before
