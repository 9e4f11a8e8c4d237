"""Every transition and every rejection of the contracts, on the in-process chain."""

from __future__ import annotations

import pytest
from eth_account import Account

from chain.client import ChainClient
from chain.devnet import EmbeddedChain
from chain.errors import ContractRevert
from chain.wrappers import STAGE_PRECOMMIT, STAGE_USER_TASK, commitment, model_id

pytestmark = pytest.mark.chain
MODEL = model_id("smollm2")
SALT = b"\x05" * 32


def _revert(name: str) -> pytest.RaisesContext[ContractRevert]:
    return pytest.raises(ContractRevert, match=rf"\b{name}\(")


def _miners(chain: EmbeddedChain, n: int) -> list[ChainClient]:
    clients = [chain.client(a) for a in chain.accounts[2 : 2 + n]]
    for c in clients:
        c.registry.register(1, 4096, "0.1.0", [MODEL], c.address)
    return clients


def _funded(chain: EmbeddedChain) -> ChainClient:
    account = Account.create()
    chain.client(chain.admin).transfer(account.address, 10**18)
    return chain.client(account)


def _oracle(chain: EmbeddedChain, index: int = 0) -> ChainClient:
    return chain.client(chain.oracles[index])


def _started(chain: EmbeddedChain, n: int = 3) -> tuple[int, ChainClient, dict[str, ChainClient]]:
    miners = _miners(chain, n)
    oracle = _oracle(chain)
    sid, _ = oracle.cognitive.request(b"\x01" * 32, miners[0].address, miners[1].address)
    miners[0].cognitive.create(sid, "geography")
    miners[1].cognitive.prepare(sid, '["What is the capital of France?"]')
    oracle.cognitive.start(sid, n)
    return sid, oracle, {m.address: m for m in miners}


# ---- registry and stats ----


def test_register_records_spec_and_payout_separate_from_signer(embedded: EmbeddedChain) -> None:
    node = embedded.client(embedded.accounts[2])
    payout = embedded.accounts[5].address
    node.registry.register(2, 8192, "0.1.0", [MODEL], payout)
    info = node.registry.node_info(node.address)
    assert (info.status, info.tier, info.memory_mb, info.payout) == (1, 2, 8192, payout)
    assert node.registry.models_of(node.address) == [MODEL]
    with _revert("AlreadyRegistered"):
        node.registry.register(2, 8192, "0.1.0", [MODEL], payout)


def test_allow_list_gates_registration_when_closed(embedded: EmbeddedChain) -> None:
    admin = embedded.client(embedded.admin)
    node = embedded.client(embedded.accounts[2])
    admin.registry.set_open_registration(False)
    with _revert("NotAllowListed"):
        node.registry.register(1, 1024, "0.1.0", [MODEL], node.address)
    admin.registry.set_allow_listed(node.address, True)
    node.registry.register(1, 1024, "0.1.0", [MODEL], node.address)
    with _revert("NotAdmin"):
        node.registry.set_open_registration(True)


def test_ping_rate_limit_and_unregistered(embedded: EmbeddedChain) -> None:
    (node,) = _miners(embedded, 1)
    node.stats.ping()
    with _revert("PingTooSoon"):
        node.stats.ping()
    embedded.advance_time(31)
    node.stats.ping()
    assert node.stats.stats(node.address)["pings"] == 2
    stranger = embedded.client(embedded.accounts[6])
    with _revert("NotRegistered"):
        stranger.stats.ping()


def test_leader_takeover_only_after_grace(embedded: EmbeddedChain) -> None:
    second = _oracle(embedded, 1)
    assert second.registry.leader() == embedded.oracles[0].address
    # The shared chain's block time follows the wall clock: a leader action (any onlyLeader
    # call refreshes the heartbeat) keeps this independent of how long earlier tests ran.
    _oracle(embedded, 0).stats.remove_from_pool(embedded.accounts[-1].address)
    with _revert("GraceNotOver"):
        second.registry.takeover()
    embedded.advance_time(61)
    second.registry.takeover()
    assert second.registry.leader() == second.address
    miners = _miners(embedded, 2)
    with _revert("NotLeader"):
        _oracle(embedded, 0).cognitive.request(b"\x01" * 32, miners[0].address, miners[1].address)
    second.cognitive.request(b"\x01" * 32, miners[0].address, miners[1].address)


# ---- Cognitive: network tasks ----


def test_network_task_full_cycle_makes_nodes_ephemeral(embedded: EmbeddedChain) -> None:
    sid, oracle, miners = _started(embedded)
    chosen = oracle.cognitive.selected(sid)
    assert sorted(chosen) == sorted(miners) and oracle.cognitive.state(sid) == 4  # Precommit
    for address in chosen:
        miners[address].cognitive.precommit(sid, commitment(sid, address, SALT, f"Paris {address}"))
    assert oracle.cognitive.state(sid) == 5  # Commit: closed as soon as all acted
    for address in chosen:
        result = miners[address].cognitive.commit(sid, f"Paris {address}", SALT)
        revealed = [
            e for e in miners[address].cognitive.events(result) if e.name == "AnswerRevealed"
        ]
        assert revealed[0].args["answer"] == f"Paris {address}"
    assert oracle.cognitive.state(sid) == 6  # Committed
    oracle.cognitive.end(sid, [100, 100, 10])
    assert oracle.cognitive.state(sid) == 7
    statuses = [oracle.registry.node_info(a).status for a in chosen]
    assert statuses == [2, 2, 1]  # two passed -> ephemeral; the failing one stays registered


def test_only_selected_registered_miners_precommit(embedded: EmbeddedChain) -> None:
    sid, _, _ = _started(embedded, 2)
    extra = embedded.client(embedded.accounts[6])  # registered after selection, not selected
    extra.registry.register(1, 4096, "0.1.0", [MODEL], extra.address)
    with _revert("NotSelected"):
        extra.cognitive.precommit(sid, b"\x00" * 23)
    stranger = _funded(embedded)  # never registered
    with _revert("NotSelected"):
        stranger.cognitive.precommit(sid, b"\x00" * 23)


def test_double_precommit_and_double_commit_rejected(embedded: EmbeddedChain) -> None:
    sid, oracle, miners = _started(embedded, 2)
    a, b = oracle.cognitive.selected(sid)
    miners[a].cognitive.precommit(sid, commitment(sid, a, SALT, "x"))
    with _revert("AlreadyActed"):
        miners[a].cognitive.precommit(sid, commitment(sid, a, SALT, "y"))
    miners[b].cognitive.precommit(sid, commitment(sid, b, SALT, "x"))
    miners[a].cognitive.commit(sid, "x", SALT)
    with _revert("AlreadyActed"):
        miners[a].cognitive.commit(sid, "x", SALT)


def test_reveal_must_match_and_cannot_reuse_another_miners_precommit(
    embedded: EmbeddedChain,
) -> None:
    sid, oracle, miners = _started(embedded, 2)
    a, b = oracle.cognitive.selected(sid)
    miners[a].cognitive.precommit(sid, commitment(sid, a, SALT, "honest answer"))
    miners[b].cognitive.precommit(sid, commitment(sid, b, SALT, "b's answer"))
    with _revert("HashMismatch"):
        miners[a].cognitive.commit(sid, "another answer", SALT)
    with _revert("HashMismatch"):
        miners[b].cognitive.commit(sid, "honest answer", SALT)  # a's answer and salt, b's key
    miners[a].cognitive.commit(sid, "honest answer", SALT)


def test_late_reveal_rejected_and_window_closed_by_oracle_only(embedded: EmbeddedChain) -> None:
    sid, oracle, miners = _started(embedded, 2)
    a, b = oracle.cognitive.selected(sid)
    for m in (a, b):
        miners[m].cognitive.precommit(sid, commitment(sid, m, SALT, "x"))
    miners[a].cognitive.commit(sid, "x", SALT)
    with _revert("DeadlineNotPassed"):
        oracle.cognitive.close_window(sid)
    embedded.advance_time(121)
    with _revert("DeadlinePassed"):
        miners[b].cognitive.commit(sid, "x", SALT)
    with _revert("NotLeader"):
        miners[a].cognitive.close_window(sid)
    oracle.cognitive.close_window(sid)
    assert oracle.cognitive.slot_status(sid, b) == 4  # failed
    with _revert("NotLeader"):
        miners[a].cognitive.end(sid, [100, 100])
    oracle.cognitive.end(sid, [100, 100])
    assert oracle.registry.node_info(b).status == 1  # the absent miner earned nothing
    assert oracle.stats.stage(b, 3) == (1, 0)


def test_precommit_window_timeout_fails_silent_miners(embedded: EmbeddedChain) -> None:
    sid, oracle, miners = _started(embedded, 2)
    a, b = oracle.cognitive.selected(sid)
    miners[a].cognitive.precommit(sid, commitment(sid, a, SALT, "x"))
    embedded.advance_time(121)
    with _revert("DeadlinePassed"):
        miners[b].cognitive.precommit(sid, commitment(sid, b, SALT, "x"))
    closed = oracle.cognitive.close_window(sid)
    late = [e.args["late"] for e in oracle.cognitive.events(closed) if e.name == "WindowClosed"]
    assert late == [[b]]
    assert oracle.cognitive.state(sid) == 5
    assert oracle.stats.stage(b, STAGE_PRECOMMIT) == (1, 0)
    miners[a].cognitive.commit(sid, "x", SALT)
    assert oracle.cognitive.state(sid) == 6  # only the remaining miner had to act


def test_late_creator_is_reassigned_by_the_oracle(embedded: EmbeddedChain) -> None:
    miners = _miners(embedded, 3)
    oracle = _oracle(embedded)
    sid, _ = oracle.cognitive.request(b"\x01" * 32, miners[0].address, miners[1].address)
    with _revert("DeadlineNotPassed"):
        oracle.cognitive.reassign(sid, miners[2].address)
    embedded.advance_time(121)
    with _revert("DeadlinePassed"):
        miners[0].cognitive.create(sid, "late")
    oracle.cognitive.reassign(sid, miners[2].address)
    with _revert("NotSelected"):
        miners[0].cognitive.create(sid, "late")
    miners[2].cognitive.create(sid, "geography")
    assert oracle.cognitive.state(sid) == 2
    with _revert("BadState"):
        miners[1].cognitive.create(sid, "again")


def test_selection_skips_miners_in_cooldown() -> None:
    from chain.deploy import NetworkParams
    from chain.devnet import start_embedded

    chain = start_embedded(params=NetworkParams(selection_cooldown_s=1000))
    miners = [chain.client(a) for a in chain.accounts[:3]]
    for m in miners:
        m.registry.register(1, 1024, "0.1.0", [MODEL], m.address)
    oracle = chain.client(chain.oracles[0])
    first, _ = oracle.cognitive.request(b"\x01" * 32, miners[0].address, miners[1].address)
    miners[0].cognitive.create(first, "t")
    miners[1].cognitive.prepare(first, "p")
    oracle.cognitive.start(first, 2)
    second, _ = oracle.cognitive.request(b"\x02" * 32, miners[0].address, miners[1].address)
    miners[0].cognitive.create(second, "t")
    miners[1].cognitive.prepare(second, "p")
    with _revert("NotEnoughMiners"):
        oracle.cognitive.start(second, 2)
    oracle.cognitive.start(second, 1)
    assert set(oracle.cognitive.selected(second)).isdisjoint(oracle.cognitive.selected(first))


# ---- SessionQueue and SessionPayment: user tasks ----


def _pool(chain: EmbeddedChain, n: int = 3) -> tuple[ChainClient, list[ChainClient]]:
    """n miners made ephemeral by one network task (threshold 1 on devnets)."""
    sid, oracle, miners = _started(chain, n)
    chosen = oracle.cognitive.selected(sid)
    for a in chosen:
        miners[a].cognitive.precommit(sid, commitment(sid, a, SALT, "ok"))
    for a in chosen:
        miners[a].cognitive.commit(sid, "ok", SALT)
    oracle.cognitive.end(sid, [100] * n)
    return oracle, list(miners.values())


def _user_task(chain: EmbeddedChain, k: int, price: int = 3000) -> tuple[ChainClient, int]:
    user = chain.client(chain.accounts[0])
    user.payment.deposit(max(10_000, price))
    session, _ = user.queue.open_session(MODEL, 0, 1, k, price)
    task, _ = user.queue.submit_task(session, "capital of France?")
    return user, task


def test_user_task_full_cycle_pays_passing_miners(embedded: EmbeddedChain) -> None:
    oracle, miners = _pool(embedded)
    user, task = _user_task(embedded, 3)
    assert user.payment.escrowed_of(user.address) == 3000
    assert user.payment.deposit_of(user.address) == 7000
    addresses = [m.address for m in miners]
    oracle.queue.assign(task, addresses)
    assert [oracle.queue.reserved_for(a) for a in addresses] == [task] * 3
    user.payment.deposit(3000)  # a second task must not get miners that are busy
    with _revert("NodeBusy"):
        oracle.queue.assign(user.queue.submit_task(1, "second prompt")[0], addresses)
    for m in miners:
        m.queue.ack(task)
    assert [oracle.queue.assignment(a)[1] for a in addresses] == [2, 2, 2]  # acked
    for m in miners:
        m.queue.precommit(task, commitment(task, m.address, SALT, f"Paris {m.address}"))
    for m in miners:
        m.queue.commit(task, f"Paris {m.address}", SALT)
    assert oracle.queue.state(task) == 4  # Committed: closed as soon as all revealed
    result = oracle.queue.validate(task, addresses, [90, 90, 0], 1)
    validated = [e for e in oracle.queue.events(result) if e.name == "TaskValidated"]
    assert validated[0].args["consensusMiner"] == addresses[1]
    assert [user.payment.balance_of(a) for a in addresses] == [1000, 1000, 0]
    # the failed miner's share came back; the second task's price is still locked
    assert user.payment.deposit_of(user.address) == 8000
    assert user.payment.escrowed_of(user.address) == 3000
    assert [oracle.queue.reserved_for(a) for a in addresses] == [0, 0, 0]  # released
    assert oracle.stats.stage(addresses[2], STAGE_USER_TASK) == (1, 0)


def test_absent_miner_is_not_paid_and_released(embedded: EmbeddedChain) -> None:
    oracle, miners = _pool(embedded, 2)
    user, task = _user_task(embedded, 2, price=2000)
    addresses = [m.address for m in miners]
    oracle.queue.assign(task, addresses)
    miners[0].queue.ack(task)
    miners[1].queue.ack(task)  # acked, then never precommits
    miners[0].queue.precommit(task, commitment(task, addresses[0], SALT, "a"))
    with _revert("DeadlineNotPassed"):
        oracle.queue.close_window(task, addresses)
    embedded.advance_time(121)
    with _revert("DeadlinePassed"):
        miners[1].queue.precommit(task, commitment(task, addresses[1], SALT, "b"))
    with _revert("NotLeader"):
        miners[0].queue.close_window(task, addresses)
    oracle.queue.close_window(task, addresses)
    assert oracle.queue.reserved_for(addresses[1]) == 0  # failed and released
    assert oracle.stats.stage(addresses[1], STAGE_USER_TASK) == (1, 0)
    with _revert("NotSelected"):
        miners[1].queue.commit(task, "b", SALT)
    miners[0].queue.commit(task, "a", SALT)
    with _revert("NotLeader"):
        miners[0].queue.validate(task, addresses, [100, 100], 0)
    oracle.queue.validate(task, addresses, [100, 100], 0)
    assert user.payment.balance_of(addresses[0]) == 1000
    assert user.payment.balance_of(addresses[1]) == 0
    assert user.payment.deposit_of(user.address) == 10_000 - 1000


def test_assign_needs_pool_nodes_serving_the_model(embedded: EmbeddedChain) -> None:
    oracle = _oracle(embedded)
    fresh = _miners(embedded, 1)[0]  # registered, no successful network task yet
    _, task = _user_task(embedded, 1)
    with _revert("NotInPool"):
        oracle.queue.assign(task, [fresh.address])


def test_withdraw_pays_payout_once_and_only_own_balance(embedded: EmbeddedChain) -> None:
    oracle, miners = _pool(embedded, 2)
    _, task = _user_task(embedded, 1, price=10**15)
    m = miners[0]
    payout = Account.create().address
    m.registry.set_payout(payout)
    oracle.queue.assign(task, [m.address])
    m.queue.ack(task)
    m.queue.precommit(task, commitment(task, m.address, SALT, "a"))
    m.queue.commit(task, "a", SALT)
    oracle.queue.validate(task, [m.address], [100], 0)
    thief = embedded.client(embedded.accounts[5])
    with _revert("NothingToWithdraw"):
        thief.payment.withdraw()
    before = m.balance(payout)
    m.payment.withdraw()
    assert m.balance(payout) - before == 10**15
    with _revert("NothingToWithdraw"):
        m.payment.withdraw()


def test_deposit_must_cover_the_price(embedded: EmbeddedChain) -> None:
    user = embedded.client(embedded.accounts[0])
    session, _ = user.queue.open_session(MODEL, 0, 1, 1, 500)
    with _revert("InsufficientDeposit"):
        user.queue.submit_task(session, "hi")


def test_failures_in_a_row_take_a_node_out_of_the_pool(embedded: EmbeddedChain) -> None:
    oracle, miners = _pool(embedded, 2)
    node = miners[0]
    assert oracle.registry.node_info(node.address).status == 2
    for round_ in range(3):  # remove_after_failures = 3 on devnets
        _, task = _user_task(embedded, 1, price=1000)
        oracle.queue.assign(task, [node.address])
        embedded.advance_time(121)
        oracle.queue.close_window(task, [node.address])
        expected = 2 if round_ < 2 else 1
        assert oracle.registry.node_info(node.address).status == expected
    assert oracle.stats.stats(node.address)["streak"] == 0
    _, task = _user_task(embedded, 1, price=1000)
    with _revert("NotInPool"):
        oracle.queue.assign(task, [node.address])


def test_protocol_version_mismatch_warns(embedded: EmbeddedChain, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import chain.client

    monkeypatch.setattr(chain.client, "PROTOCOL_VERSION", 4)
    assert embedded.client().check_protocol() == 3
    assert "protocol version 3, this app speaks 4" in caplog.text


def test_commit_window_close_after_a_precommit_failure_lists_only_the_late(
    embedded: EmbeddedChain,
) -> None:
    sid, oracle, miners = _started(embedded, 3)
    a, b, c = oracle.cognitive.selected(sid)
    for m in (a, b):
        miners[m].cognitive.precommit(sid, commitment(sid, m, SALT, "x"))
    embedded.advance_time(121)
    oracle.cognitive.close_window(sid)  # c never precommitted
    miners[a].cognitive.commit(sid, "x", SALT)
    embedded.advance_time(121)
    closed = oracle.cognitive.close_window(sid)  # b never revealed
    late = [e.args["late"] for e in oracle.cognitive.events(closed) if e.name == "WindowClosed"]
    assert late == [[b]]
    oracle.cognitive.end(sid, [100, 100, 100])
    assert [oracle.registry.node_info(m).status for m in (a, b, c)] == [2, 1, 1]


def test_precommit_implies_the_ack_but_not_twice_and_not_for_others(
    embedded: EmbeddedChain,
) -> None:
    oracle, miners = _pool(embedded)
    _, task = _user_task(embedded, 3)
    addresses = [m.address for m in miners]
    oracle.queue.assign(task, addresses)
    miners[0].queue.ack(task)  # a slow miner may still ack early
    for m in miners:  # the others precommit straight from "assigned"
        m.queue.precommit(task, commitment(task, m.address, SALT, "Paris"))
    assert [oracle.queue.assignment(a)[1] for a in addresses] == [3, 3, 3]  # precommitted
    assert oracle.queue.state(task) == 3  # Commit: every miner precommitted
    with _revert("BadState"):
        miners[1].queue.precommit(task, commitment(task, addresses[1], SALT, "again"))
    with _revert("AlreadyActed"):
        miners[1].queue.ack(task)
    outsider = _funded(embedded)
    with _revert("NotSelected"):
        outsider.queue.commit(task, "Paris", SALT)


def test_an_away_miner_is_skipped_by_selection_and_assignment_and_keeps_its_place(
    embedded: EmbeddedChain,
) -> None:
    oracle, miners = _pool(embedded, 3)
    away = miners[0]
    with _revert("NotRegistered"):
        _funded(embedded).registry.set_away(True)
    result = away.registry.set_away(True)
    changed = [e for e in away.registry.events(result) if e.name == "NodeAwayChanged"]
    assert changed[0].args["away"] is True
    assert away.registry.node_info(away.address).away
    assert sorted(oracle.registry.present_miners()) == sorted(m.address for m in miners[1:])
    _, task = _user_task(embedded, 1)
    with _revert("NodeAway"):
        oracle.queue.assign(task, [away.address])
    embedded.advance_time(3600)  # past every selection cooldown
    sid, _ = oracle.cognitive.request(b"\x02" * 32, miners[1].address, miners[2].address)
    miners[1].cognitive.create(sid, "rivers")
    miners[2].cognitive.prepare(sid, '["Which river flows through Paris?"]')
    with _revert("NotEnoughMiners"):
        oracle.cognitive.start(sid, 3)
    oracle.cognitive.start(sid, 2)
    assert sorted(oracle.cognitive.selected(sid)) == sorted(m.address for m in miners[1:])
    away.registry.set_away(False)
    info = away.registry.node_info(away.address)
    assert (info.status, info.away) == (2, False)  # back in the pool, successes kept
    oracle.queue.assign(task, [away.address])
