"""F3 at the boundary (security review section 4, T-18), on anvil for anvil_setStorageAt: a node
whose user-task counters sit at the old uint16 limit, or at the new uint32 one, still gets its
tasks validated and closed, so no escrow is locked by a stats write."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3

from chain.client import ChainClient, connect
from chain.devnet import LocalDevnet, advance_time, new_funded_account, rpc
from chain.wrappers import STAGE_USER_TASK, TaskState, commitment, model_id

pytestmark = pytest.mark.chain
MODEL = model_id("smollm2")
SALT = b"\x05" * 32
U32 = 2**32 - 1
USER_TASKS_BIT, USER_POINTS_BIT = 128, 160  # NodeStats.Stats: 4 x uint32 before them


def _client(devnet: LocalDevnet, account: LocalAccount) -> ChainClient:
    return connect(devnet.chain_id, [devnet.rpc_url], devnet.contracts, account)


def _pool_node(devnet: LocalDevnet, leader: ChainClient) -> ChainClient:
    """One miner made ephemeral by a network task it ran alone (creator, preparer, answerer)."""
    node = _client(devnet, new_funded_account(leader.web3))
    node.registry.register(1, 4096, "0.1.0", [MODEL], node.address)
    sid, _ = leader.cognitive.request(b"\x01" * 32, node.address, node.address)
    node.cognitive.create(sid, "t")
    node.cognitive.prepare(sid, '["q"]')
    leader.cognitive.start(sid, 1)
    node.cognitive.precommit(sid, commitment(sid, node.address, SALT, "a"))
    node.cognitive.commit(sid, "a", SALT)
    leader.cognitive.end(sid, [100])
    return node


def _set_user_counters(web3: Web3, stats: str, node: str, tasks: int, points: int) -> None:
    slot = keccak(encode(["address", "uint256"], [node, 0]))  # `stats` is NodeStats' slot 0
    word = int.from_bytes(web3.eth.get_storage_at(Web3.to_checksum_address(stats), slot), "big")
    for bit, value in ((USER_TASKS_BIT, tasks), (USER_POINTS_BIT, points)):
        word = (word & ~(U32 << bit)) | (value << bit)
    rpc(web3, "anvil_setStorageAt", stats, "0x" + slot.hex(), "0x" + word.to_bytes(32, "big").hex())


def _task(user: ChainClient, session: int, leader: ChainClient, node: ChainClient) -> int:
    task, _ = user.queue.submit_task(session, "q")
    leader.queue.assign(task, [node.address])
    return task


def test_t18_user_task_counters_at_their_limits_never_block_a_task(anvil: LocalDevnet) -> None:
    leader = _client(anvil, anvil.oracles[0])
    node = _pool_node(anvil, leader)
    user = _client(anvil, new_funded_account(leader.web3))
    user.payment.deposit(10**15)
    session, _ = user.queue.open_session(MODEL, 0, 1, 1, 10**12)
    stats = anvil.contracts["NodeStats"]

    _set_user_counters(leader.web3, stats, node.address, 0xFFFF, 0xFFFF)  # uint16's max
    assert node.stats.stage(node.address, STAGE_USER_TASK) == (0xFFFF, 0xFFFF)
    task = _task(user, session, leader, node)
    node.queue.precommit(task, commitment(task, node.address, SALT, "a"))
    node.queue.commit(task, "a", SALT)
    leader.queue.validate(task, [node.address], [100], 0)  # reverted with Panic(0x11) before
    assert node.stats.stage(node.address, STAGE_USER_TASK) == (0x10000, 0x10000)

    _set_user_counters(leader.web3, stats, node.address, U32, U32)  # the new limit: saturates
    task = _task(user, session, leader, node)
    node.queue.precommit(task, commitment(task, node.address, SALT, "a"))
    node.queue.commit(task, "a", SALT)
    leader.queue.validate(task, [node.address], [100], 0)
    assert node.stats.stage(node.address, STAGE_USER_TASK) == (U32, U32)
    assert leader.queue.reserved_for(node.address) == 0

    task = _task(user, session, leader, node)  # absent this time: closeWindow records it
    advance_time(leader.web3, 121)
    leader.queue.close_window(task, [node.address])
    assert leader.queue.state(task) == TaskState.COMMITTED
    assert leader.queue.reserved_for(node.address) == 0
    assert node.stats.stage(node.address, STAGE_USER_TASK) == (U32, U32)
