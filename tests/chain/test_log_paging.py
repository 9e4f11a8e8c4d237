"""Events read in pages through an RPC that caps eth_getLogs, from the network's deploy block."""

from __future__ import annotations

import pytest
from web3 import Web3

from chain.client import connect
from chain.devnet import LocalDevnet, new_funded_account, rpc
from chain.errors import ChainError
from chain.events import LogPager
from engine.node.chain_watch import ChainWatcher
from tests.chain.rpc_proxy import Reply, RpcProxy, block_span, cap_log_range

pytestmark = pytest.mark.chain
CAP = 100  # blocks per eth_getLogs the "public" RPC accepts


def _deposits_spread_over_blocks(anvil: LocalDevnet, gaps: list[int]) -> tuple[str, list[int]]:
    """One deposit, then `gap` empty blocks, for each gap: events far apart, as on a testnet."""
    web3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    user = new_funded_account(web3)
    client = connect(anvil.chain_id, [anvil.rpc_url], anvil.contracts, user)
    blocks = []
    for gap in gaps:
        blocks.append(client.payment.deposit(1).block_number)
        rpc(web3, "anvil_mine", hex(gap))
    return user.address, blocks


def test_a_capped_rpc_still_yields_every_event(anvil: LocalDevnet) -> None:
    start = int(Web3(Web3.HTTPProvider(anvil.rpc_url)).eth.block_number)
    user, blocks = _deposits_spread_over_blocks(anvil, [350, 1200, 7, 640, 0])
    with RpcProxy(anvil.rpc_url, cap_log_range(CAP)) as proxy:
        client = connect(anvil.chain_id, [proxy.url], anvil.contracts, log_span=1000)
        cursor = client.payment.cursor("Deposited", start, user=user)
        found = cursor.poll()
        assert [e.block_number for e in found] == blocks  # none skipped, none twice
        assert client.logs.span <= CAP  # learned the cap, for every cursor of this client
        accepted = [r for r in proxy.calls("eth_getLogs") if r not in proxy.refused]
        assert accepted and max(block_span(r) for r in accepted) <= CAP
        refusals = len(proxy.refused)
        assert refusals >= 1
        # A second cursor of the same client fits at once: no refusal more.
        again = client.payment.cursor("Deposited", start, user=user).poll()
        assert len(again) == len(blocks) and len(proxy.refused) == refusals


def test_the_configured_span_is_the_page_size(anvil: LocalDevnet) -> None:
    start = int(Web3(Web3.HTTPProvider(anvil.rpc_url)).eth.block_number)
    user, blocks = _deposits_spread_over_blocks(anvil, [250, 0])
    with RpcProxy(anvil.rpc_url, cap_log_range(CAP)) as proxy:
        client = connect(anvil.chain_id, [proxy.url], anvil.contracts, log_span=50)
        found = client.payment.cursor("Deposited", start, user=user).poll()
        assert [e.block_number for e in found] == blocks
        assert proxy.refused == []  # 50 fits under the cap: never refused
        assert {block_span(r) for r in proxy.calls("eth_getLogs")} <= set(range(1, 51))


def test_a_watcher_reads_nothing_before_the_deploy_block(anvil: LocalDevnet) -> None:
    web3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    user, blocks = _deposits_spread_over_blocks(anvil, [5, 5, 0])
    client = connect(anvil.chain_id, [anvil.rpc_url], anvil.contracts, deploy_block=blocks[1])
    watcher = ChainWatcher(
        int(web3.eth.block_number),
        [(client.payment, "Deposited")],
        lookback_blocks=10_000,  # would reach block 0 without the deploy block
        floor_block=client.deployment.deploy_block,
        web3=client.web3,
    )
    seen = [e.block_number for e in watcher.poll() if e.args["user"] == user]
    assert seen == blocks[1:]


def test_a_refusal_of_one_block_is_an_error_not_a_loop() -> None:
    pager = LogPager(8)

    def refuse(start: int, end: int) -> list[int]:
        raise ValueError("query returned more than 10000 results")

    with pytest.raises(ValueError, match="more than"):
        pager.read(refuse, 0, 20)
    assert pager.span == 1


def test_logs_past_a_head_that_went_back_are_a_chain_error(anvil: LocalDevnet) -> None:
    """The head was read, then the chain got shorter (a reorg): the node's loop must see a
    ChainError it retries, not an RPC error that ends its thread."""

    def shorter(request: dict[str, object]) -> Reply | None:
        if request.get("method") == "eth_getLogs":
            message = "BlockOutOfRangeError: block height is 50 but requested was 51"
            return Reply(error={"code": -32602, "message": message})
        return None

    with RpcProxy(anvil.rpc_url, shorter) as proxy:
        client = connect(anvil.chain_id, [proxy.url], anvil.contracts)
        cursor = client.payment.cursor("Deposited", 0)
        with pytest.raises(ChainError, match="block height is 50"):
            cursor.read(10)
        assert cursor.next_block == 0  # nothing skipped: the next poll reads it again
