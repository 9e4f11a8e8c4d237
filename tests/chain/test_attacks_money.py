"""Money attacks (security review section 4, T-13, T-14, T-16, T-17, T-20, T-21; F2, F4):
deposit limits with escrow, a payout that reverts, a reentrant withdrawal, escrow that must
never be locked for good (refunds after the task timeout, in every state), and dust prices."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from chain.client import ChainClient
from chain.deploy import NetworkParams
from chain.devnet import REPO_ROOT, EmbeddedChain
from chain.wrappers import NO_CONSENSUS, STAGE_USER_TASK, TaskState, commitment
from engine.node.user_session import refund_task
from tests.chain.test_contracts import MODEL, SALT, _funded, _pool, _revert, _user_task

pytestmark = pytest.mark.chain
PARAMS = NetworkParams()
TIMEOUT = PARAMS.task_timeout_s
WINDOW = PARAMS.task_window_s
# Runtime PUSH0 PUSH0 REVERT (every call and transfer reverts), behind a 9-byte constructor
# that CODECOPYs those 3 bytes and returns them.
REVERTING = "0x60038060095f395ff35f5ffd"
FIXTURE = REPO_ROOT / "tests" / "chain" / "fixtures" / "Reenter.sol"
COMPILE_JS = """
const solc = require('solc');
const content = require('fs').readFileSync(process.argv[1], 'utf8');
const input = {language: 'Solidity', sources: {'R.sol': {content}}, settings: {evmVersion: 'cancun',
  outputSelection: {'*': {'*': ['abi', 'evm.bytecode.object']}}}};
const c = JSON.parse(solc.compile(JSON.stringify(input))).contracts['R.sol'].Reenter;
process.stdout.write(JSON.stringify({abi: c.abi, bytecode: '0x' + c.evm.bytecode.object}));
"""


@cache
def _reenter_artifact() -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing (apt-get install nodejs npm)")
    proc = subprocess.run(
        [node, "-e", COMPILE_JS, str(FIXTURE)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=True,
    )
    artifact: dict[str, Any] = json.loads(proc.stdout)
    return artifact


def _deploy(client: ChainClient, abi: list[Any], bytecode: str, *args: object) -> Any:
    assert client.sender is not None
    factory = client.web3.eth.contract(abi=abi, bytecode=bytecode)
    result = client.sender.send(factory.constructor(*args), "deploy fixture")
    address = Web3.to_checksum_address(result.receipt["contractAddress"])
    return client.web3.eth.contract(address=address, abi=abi)


def _run_task(oracle: ChainClient, task: int, miners: list[ChainClient], scores: list[int]) -> None:
    addresses = [m.address for m in miners]
    oracle.queue.assign(task, addresses)
    for m in miners:
        m.queue.precommit(task, commitment(task, m.address, SALT, "a"))
    for m in miners:
        m.queue.commit(task, "a", SALT)
    oracle.queue.validate(task, addresses, scores, 0)


# ---- deposits ----


def test_t13_escrowed_funds_cannot_leave_the_deposit(embedded: EmbeddedChain) -> None:
    user = embedded.client(embedded.accounts[0])
    user.payment.deposit(10_000)
    with _revert("InsufficientDeposit"):
        user.payment.withdraw_deposit(0)
    with _revert("InsufficientDeposit"):
        user.payment.withdraw_deposit(10_001)
    sid, _ = user.queue.open_session(MODEL, 0, 1, 1, 3000)
    user.queue.submit_task(sid, "x")
    with _revert("InsufficientDeposit"):
        user.payment.withdraw_deposit(7_001)
    before = user.balance(user.address)
    result = user.payment.withdraw_deposit(7_000)
    gas = result.gas_used * int(result.receipt["effectiveGasPrice"])
    assert user.balance(user.address) - before == 7_000 - gas
    assert user.payment.escrowed_of(user.address) == 3000


def test_t14_a_payout_that_reverts_keeps_the_balance(embedded: EmbeddedChain) -> None:
    oracle, miners = _pool(embedded, 2)
    miner = miners[0]
    sink = _deploy(miner, [], REVERTING)
    assert bytes(miner.web3.eth.get_code(sink.address)) == bytes.fromhex("5f5ffd")
    miner.registry.set_payout(sink.address)
    _, task = _user_task(embedded, 1, price=1000)
    _run_task(oracle, task, [miner], [100])
    assert miner.payment.balance_of(miner.address) == 1000
    with _revert("TransferFailed"):
        miner.payment.withdraw()
    assert miner.payment.balance_of(miner.address) == 1000
    payout = Account.create().address
    miner.registry.set_payout(payout)
    before = miner.balance(payout)
    miner.payment.withdraw()
    assert miner.balance(payout) - before == 1000


@pytest.mark.parametrize("amount", [6_000, 4_000])
def test_t14_a_reentrant_withdrawal_never_pays_a_deposit_twice(
    embedded: EmbeddedChain, amount: int
) -> None:
    artifact = _reenter_artifact()
    user = _funded(embedded)
    assert user.sender is not None
    attacker = _deploy(user, artifact["abi"], artifact["bytecode"], user.payment.address)
    user.sender.send(attacker.functions.fund(), "fund", value=10_000)
    user.sender.send(attacker.functions.take(amount), "take")
    received = user.balance(attacker.address)
    left = user.payment.deposit_of(attacker.address)
    assert received + left == 10_000  # whatever re-entered, nothing was paid twice
    if amount > 5_000:  # the inner call asked for more than was left
        assert attacker.functions.innerFailed().call() is True
        assert (received, left) == (amount, 10_000 - amount)
    else:  # the inner call withdrew what was really left: its own money, once
        assert (received, left) == (2 * amount, 10_000 - 2 * amount)


# ---- F2: no escrow locked for good ----


def test_t16_a_task_nobody_can_take_is_refunded_after_the_timeout(
    embedded: EmbeddedChain,
) -> None:
    user, task = _user_task(embedded, 3)  # empty pool
    leader = embedded.client(embedded.oracles[0])
    assert user.payment.escrowed_of(user.address) == 3000
    assert user.queue.refundable_at(task) > 0
    with _revert("NotYet"):
        user.queue.refund(task, [])
    embedded.advance_time(TIMEOUT + 1)
    with _revert("NotAdmin"):
        _funded(embedded).queue.refund(task, [])
    result = user.queue.refund(task, [])
    refunded = [e for e in user.queue.events(result) if e.name == "TaskRefunded"]
    assert refunded[0].args["amount"] == 3000
    assert user.payment.escrowed_of(user.address) == 0
    assert user.payment.deposit_of(user.address) == 10_000
    assert user.queue.state(task) == TaskState.REFUNDED
    with _revert("BadState"):
        user.queue.refund(task, [])
    with _revert("BadState"):
        leader.queue.assign(task, [])
    user.payment.withdraw_deposit(10_000)


def test_f2_a_miner_held_by_a_task_the_leader_abandoned_frees_itself(
    embedded: EmbeddedChain,
) -> None:
    oracle, (a, b) = _pool(embedded, 2)
    user, task = _user_task(embedded, 2, price=2000)
    oracle.queue.assign(task, [a.address, b.address])
    a.queue.precommit(task, commitment(task, a.address, SALT, "a"))  # then the leader is gone
    embedded.advance_time(WINDOW + 1)
    with _revert("NotYet"):
        a.queue.refund(task, [a.address, b.address])
    embedded.advance_time(TIMEOUT)
    with _revert("BadArgument"):
        a.queue.refund(task, [b.address, a.address])
    with _revert("NotAdmin"):
        _funded(embedded).queue.refund(task, [a.address, b.address])
    refund_task(a, task)  # reads the assignment from TaskAssigned
    assert [oracle.queue.reserved_for(m.address) for m in (a, b)] == [0, 0]
    assert user.payment.deposit_of(user.address) == 10_000
    assert user.payment.escrowed_of(user.address) == 0
    # the delay was the leader's: no failure is held against either miner
    assert oracle.stats.stage(b.address, STAGE_USER_TASK) == (0, 0)
    _, again = _user_task(embedded, 2, price=2000)
    oracle.queue.assign(again, [a.address, b.address])  # both free for the next task


def test_f2_a_committed_task_the_leader_never_validates_is_refunded(
    embedded: EmbeddedChain,
) -> None:
    oracle, miners = _pool(embedded, 2)
    user, task = _user_task(embedded, 2, price=2000)
    addresses = [m.address for m in miners]
    oracle.queue.assign(task, addresses)
    for m in miners:
        m.queue.precommit(task, commitment(task, m.address, SALT, "a"))
    for m in miners:
        m.queue.commit(task, "a", SALT)
    assert user.queue.state(task) == TaskState.COMMITTED
    embedded.advance_time(TIMEOUT // 2)
    with _revert("NotYet"):
        user.queue.refund(task, addresses)
    oracle.queue.validate(task, addresses, [100, 100], 0)  # a leader in time wins
    with _revert("BadState"):
        user.queue.refund(task, addresses)
    _, late = _user_task(embedded, 2, price=2000)
    oracle.queue.assign(late, addresses)
    for m in miners:
        m.queue.precommit(late, commitment(late, m.address, SALT, "a"))
    for m in miners:
        m.queue.commit(late, "a", SALT)
    embedded.advance_time(TIMEOUT + 1)
    user.queue.refund(late, addresses)
    assert user.payment.escrowed_of(user.address) == 0
    assert user.payment.deposit_of(user.address) == 2 * 10_000 - 2000  # two deposits; one task paid
    with _revert("BadState"):
        oracle.queue.validate(late, addresses, [100, 100], 0)


def test_t20_every_miner_absent_refunds_the_whole_price(embedded: EmbeddedChain) -> None:
    oracle, miners = _pool(embedded, 2)
    user, task = _user_task(embedded, 2, price=2000)
    addresses = [m.address for m in miners]
    oracle.queue.assign(task, addresses)
    embedded.advance_time(WINDOW + 1)
    oracle.queue.close_window(task, addresses)
    assert oracle.queue.state(task) == TaskState.COMMITTED
    oracle.queue.validate(task, addresses, [0, 0], NO_CONSENSUS)
    assert user.payment.deposit_of(user.address) == 10_000
    assert user.payment.escrowed_of(user.address) == 0


def test_t21_precommitted_but_never_revealed(embedded: EmbeddedChain) -> None:
    oracle, (a, b) = _pool(embedded, 2)
    user, task = _user_task(embedded, 2, price=2000)
    oracle.queue.assign(task, [a.address, b.address])
    a.queue.precommit(task, commitment(task, a.address, SALT, "a"))
    b.queue.precommit(task, commitment(task, b.address, SALT, "b"))
    a.queue.commit(task, "a", SALT)
    embedded.advance_time(WINDOW + 1)
    oracle.queue.close_window(task, [a.address, b.address])
    assert oracle.queue.reserved_for(b.address) == 0
    assert oracle.stats.stage(b.address, STAGE_USER_TASK) == (1, 0)
    with _revert("BadState"):  # the task is Committed: no reveal of any miner goes in now
        b.queue.commit(task, "b", SALT)
    oracle.queue.validate(task, [a.address, b.address], [100, 100], 0)
    assert oracle.payment.balance_of(a.address) == 1000
    assert oracle.payment.balance_of(b.address) == 0
    assert user.payment.deposit_of(user.address) == 10_000 - 1000


# ---- F4: no free or dust work ----


def test_t17_zero_and_dust_prices_are_refused(embedded: EmbeddedChain) -> None:
    user = embedded.client(embedded.accounts[0])
    least = user.queue.min_price(3)
    assert least == 3 * PARAMS.answer_tokens * PARAMS.min_price_per_token_wei
    with _revert("PriceTooLow"):
        user.queue.open_session(MODEL, 0, 1, 3, 0)
    with _revert("PriceTooLow"):
        user.queue.open_session(MODEL, 0, 1, 3, 2)  # price < k: a share of 0
    with _revert("PriceTooLow"):
        user.queue.open_session(MODEL, 0, 1, 3, least - 1)
    user.queue.open_session(MODEL, 0, 1, 3, least)


def test_f4_the_admins_minimum_applies_to_new_tasks_of_old_sessions(
    embedded: EmbeddedChain,
) -> None:
    admin = embedded.client(embedded.admin)
    user = embedded.client(embedded.accounts[0])
    user.payment.deposit(100_000)
    sid, _ = user.queue.open_session(MODEL, 0, 1, 1, 1280)  # 10 wei per token
    result = admin.queue.set_min_price_per_token(11)
    assert [e.args["weiPerToken"] for e in admin.queue.events(result)] == [11]
    assert admin.queue.min_price(1) == 11 * PARAMS.answer_tokens
    with _revert("PriceTooLow"):
        user.queue.submit_task(sid, "x")
    admin.queue.set_min_price_per_token(10)
    user.queue.submit_task(sid, "x")


def test_f4_the_contract_never_assigns_a_miner_below_its_floor(embedded: EmbeddedChain) -> None:
    oracle, (a, b) = _pool(embedded, 2)
    a.registry.set_price_floor(24)
    _, task = _user_task(embedded, 1, price=3000)  # 3000 / 128 = 23 wei per token
    with _revert("PriceBelowFloor"):
        oracle.queue.assign(task, [a.address])
    a.registry.set_price_floor(23)
    oracle.queue.assign(task, [a.address])
    with _revert("NotRegistered"):
        _funded(embedded).registry.set_price_floor(1)
    assert b.registry.node_info(b.address).price_floor == 0
