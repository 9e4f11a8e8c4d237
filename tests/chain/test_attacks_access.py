"""Access control on every module-only and admin-only function, and the admin's bounded powers
(security review section 4, T-01..T-05 and T-15; F6-F7), on the in-process chain."""

from __future__ import annotations

import pytest
from eth_account import Account

from chain.deploy import NetworkParams
from chain.devnet import EmbeddedChain
from chain.wrappers import STAGE_USER_TASK
from tests.chain.test_contracts import (
    MODEL,
    _funded,
    _miners,
    _oracle,
    _pool,
    _revert,
    _started,
    _user_task,
)

pytestmark = pytest.mark.chain
ZERO = "0x" + "00" * 20
DELAY = NetworkParams().module_delay_s


def test_t01_module_only_functions_refuse_anyone_else(embedded: EmbeddedChain) -> None:
    stranger = _funded(embedded)
    user, node = embedded.accounts[0].address, embedded.accounts[2].address
    with _revert("NotModule"):
        stranger.payment._tx("lock", user, 1, 1)
    with _revert("NotModule"):
        stranger.payment._tx("settle", 1, user, 1, [stranger.address], 1)
    with _revert("NotModule"):
        stranger.stats._tx("record", node, STAGE_USER_TASK, True)
    for function, args in (
        ("onResult", (node, True)),
        ("expel", (node,)),
        ("touchLeader", (embedded.oracles[0].address,)),
    ):
        with _revert("NotModule"):
            stranger.registry._tx(function, *args)


def test_t02_admin_only_setters_refuse_a_miner(embedded: EmbeddedChain) -> None:
    miner = embedded.client(embedded.accounts[2])
    x = Account.create().address
    for call in (
        lambda: miner.registry.set_module(x, True),
        lambda: miner.registry.add_oracle(x),
        lambda: miner.registry.set_allow_listed(x, True),
        lambda: miner.registry.remove_oracle(embedded.oracles[1].address),
        lambda: miner.registry.transfer_admin(miner.address),
        miner.registry.end_setup,
        lambda: miner.queue.set_min_price_per_token(0),
    ):
        with _revert("NotAdmin"):
            call()
    admin = embedded.client(embedded.admin)
    with _revert("BadArgument"):
        admin.registry.add_oracle(ZERO)
    with _revert("BadArgument"):
        admin.registry.add_oracle(embedded.oracles[1].address)
    with _revert("BadArgument"):
        admin.registry.set_module(ZERO, True)


def test_t03_takeover_by_the_wrong_caller_and_the_heartbeat(embedded: EmbeddedChain) -> None:
    embedded.advance_time(61)
    with _revert("NotOracle"):
        _funded(embedded).registry.takeover()
    leader = _oracle(embedded, 0)
    with _revert("NotOracle"):
        leader.registry.takeover()  # the leader cannot "take over" from itself
    miners = _miners(embedded, 2)
    leader.cognitive.request(b"\x01" * 32, miners[0].address, miners[1].address)  # heartbeat
    embedded.advance_time(50)
    leader.cognitive.request(b"\x02" * 32, miners[0].address, miners[1].address)
    embedded.advance_time(20)
    with _revert("GraceNotOver"):
        _oracle(embedded, 1).registry.takeover()


def test_t04_only_the_owner_uses_a_session_and_its_terms_are_checked(
    embedded: EmbeddedChain,
) -> None:
    user = embedded.client(embedded.accounts[0])
    user.payment.deposit(10_000)
    sid, _ = user.queue.open_session(MODEL, 0, 1, 1, 1000)
    other = embedded.client(embedded.accounts[3])
    with _revert("NotAdmin"):
        other.queue.submit_task(sid, "x")
    with _revert("NotAdmin"):
        other.queue.close_session(sid)
    user.queue.close_session(sid)
    with _revert("BadState"):
        user.queue.submit_task(sid, "x")
    with _revert("BadState"):
        user.queue.close_session(sid)
    with _revert("BadArgument"):
        user.queue.open_session(MODEL, 0, 1, 0, 1000)  # k = 0
    with _revert("BadArgument"):
        user.queue.open_session(MODEL, 2, 1, 1, 1000)  # precision 2
    with _revert("BadArgument"):
        user.queue.open_session(MODEL, 0, 1, 17, 10**18)  # k above MAX_K


def test_t05_cognitive_roles(embedded: EmbeddedChain) -> None:
    miners = _miners(embedded, 3)
    leader = _oracle(embedded)
    sid, _ = leader.cognitive.request(b"\x01" * 32, miners[0].address, miners[1].address)
    miners[0].cognitive.create(sid, "geography")
    with _revert("NotSelected"):
        miners[2].cognitive.prepare(sid, "[]")  # not the preparer
    miners[1].cognitive.prepare(sid, '["q"]')
    stranger = _funded(embedded)
    with _revert("NotLeader"):
        stranger.cognitive.start(sid, 1)
    with _revert("NotLeader"):
        stranger.cognitive.request(b"\x01" * 32, miners[0].address, miners[1].address)
    with _revert("BadArgument"):
        leader.cognitive.start(sid, 0)
    with _revert("NotRegistered"):
        leader.cognitive.request(b"\x01" * 32, stranger.address, miners[1].address)
    late, _ = leader.cognitive.request(b"\x02" * 32, miners[0].address, miners[1].address)
    embedded.advance_time(121)
    with _revert("NotRegistered"):
        leader.cognitive.reassign(late, stranger.address)
    with _revert("BadState"):
        leader.cognitive.end(sid, [100])  # still Prepared
    leader.cognitive.start(sid, 1)
    with _revert("BadState"):
        leader.cognitive.end(sid, [100])  # Precommit


def test_t05_end_with_the_wrong_number_of_scores(embedded: EmbeddedChain) -> None:
    sid, leader, _ = _started(embedded, 2)
    embedded.advance_time(121)
    leader.cognitive.close_window(sid)  # nobody precommitted: Committed
    with _revert("BadArgument"):
        leader.cognitive.end(sid, [100])


def test_f6_admin_moves_in_two_steps(embedded: EmbeddedChain) -> None:
    admin = embedded.client(embedded.admin)
    heir, stranger = _funded(embedded), _funded(embedded)
    admin.registry.transfer_admin(heir.address)
    assert admin.registry.admin() == embedded.admin.address  # nothing changes until accepted
    with _revert("NotAdmin"):
        stranger.registry.accept_admin()
    heir.registry.accept_admin()
    assert admin.registry.admin() == heir.address
    with _revert("NotAdmin"):
        admin.registry.set_allow_listed(stranger.address, True)
    with _revert("NotAdmin"):
        heir.registry.accept_admin()  # the pending transfer is spent
    heir.queue.set_min_price_per_token(5)  # the other contracts ask the registry who is admin
    assert heir.queue.call("minPricePerToken") == 5


def test_f6_a_removed_oracle_can_no_longer_take_over(embedded: EmbeddedChain) -> None:
    admin = embedded.client(embedded.admin)
    standby = _oracle(embedded, 1)
    admin.registry.remove_oracle(standby.address)
    embedded.advance_time(61)
    with _revert("NotOracle"):
        standby.registry.takeover()
    with _revert("BadArgument"):
        admin.registry.remove_oracle(standby.address)
    assert admin.registry.call("oracleCount") == 1


def test_f6_removing_the_leader_hands_over_to_the_remaining_oracle(
    embedded: EmbeddedChain,
) -> None:
    admin = embedded.client(embedded.admin)
    leader, standby = _oracle(embedded, 0), _oracle(embedded, 1)
    admin.registry.remove_oracle(leader.address)
    assert admin.registry.leader() == standby.address
    miners = _miners(embedded, 2)
    with _revert("NotLeader"):
        leader.cognitive.request(b"\x01" * 32, miners[0].address, miners[1].address)
    standby.cognitive.request(b"\x01" * 32, miners[0].address, miners[1].address)


def test_t15_a_new_module_waits_out_a_visible_delay_and_users_can_leave_first(
    embedded: EmbeddedChain,
) -> None:
    admin = embedded.client(embedded.admin)
    user = embedded.client(embedded.accounts[0])
    user.payment.deposit(10_000)
    scheduled = admin.registry.set_module(admin.address, True)
    event = next(e for e in admin.registry.events(scheduled) if e.name == "ModuleScheduled")
    ready_at = int(event.args["readyAt"])
    assert admin.registry.module_ready_at(admin.address) == ready_at
    assert not admin.registry.is_module(admin.address)
    with _revert("NotModule"):  # not live yet: no drain during the delay
        admin.payment._tx("lock", user.address, 99, 10_000)
    with _revert("NotYet"):
        admin.registry.activate_module(admin.address)
    user.payment.withdraw_deposit(10_000)  # a user who saw the event leaves in time
    embedded.advance_time(DELAY + 1)
    admin.registry.activate_module(admin.address)
    assert admin.registry.is_module(admin.address)
    with _revert("InsufficientDeposit"):
        admin.payment._tx("lock", user.address, 99, 1)
    admin.registry.set_module(admin.address, False)  # disabling is immediate
    assert not admin.registry.is_module(admin.address)


def test_t15_an_activated_module_can_move_deposits_so_the_delay_is_the_protection(
    embedded: EmbeddedChain,
) -> None:
    """Documents F6: the admin is trusted with modules; the delay only makes it visible."""
    admin = embedded.client(embedded.admin)
    _, miners = _pool(embedded, 2)
    user, _ = _user_task(embedded, 1)  # deposits 10,000, escrows 3,000
    admin.registry.set_module(admin.address, True)
    embedded.advance_time(DELAY + 1)
    admin.registry.activate_module(admin.address)
    amount = user.payment.deposit_of(user.address)
    admin.payment._tx("lock", user.address, 99, amount)
    admin.payment._tx("settle", 99, user.address, amount, [miners[0].address], amount)
    assert user.payment.deposit_of(user.address) == 0
    assert user.payment.balance_of(miners[0].address) == amount


def test_setup_is_closed_after_deployment(embedded: EmbeddedChain) -> None:
    admin = embedded.client(embedded.admin)
    assert admin.registry.call("setupOpen") is False
    assert admin.registry.call("moduleDelay") == DELAY
