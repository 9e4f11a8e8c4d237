"""The oracle's arguments and its work per call (security review section 4, T-10..T-12, T-19;
F4 and F8): assignments checked on chain, miner lists bound by hash, consensus and scores, the
selection's gas however many miners go away, and an oracle that does not poll a task nobody can
take every half second."""

from __future__ import annotations

from pathlib import Path

import pytest

from chain.client import ChainClient
from chain.devnet import EmbeddedChain
from chain.wrappers import NO_CONSENSUS, PRESENT_PAGE, NodeRegistry, TaskState, commitment
from chain.wrappers import model_id as model_of
from engine.inference.types import GenerationResult, SamplingParams
from engine.node.miner import Miner, MinerSettings
from engine.node.oracle import ASSIGN_RETRY_S, Oracle, OracleSettings
from engine.state.database import Database
from engine.state.events import EventBus
from engine.state.journal import ChainKey, Journal
from tests.chain.test_contracts import (
    MODEL,
    SALT,
    _funded,
    _miners,
    _oracle,
    _pool,
    _revert,
    _user_task,
)

pytestmark = pytest.mark.chain


def _committed(chain: EmbeddedChain) -> tuple[ChainClient, int, list[str], ChainClient]:
    oracle, miners = _pool(chain, 2)
    user, task = _user_task(chain, 2, price=2000)
    addresses = [m.address for m in miners]
    oracle.queue.assign(task, addresses)
    for m in miners:
        m.queue.precommit(task, commitment(task, m.address, SALT, "Paris"))
    for m in miners:
        m.queue.commit(task, "Paris", SALT)
    assert oracle.queue.state(task) == TaskState.COMMITTED
    return oracle, task, addresses, user


def test_t10_assign_checks_count_duplicates_model_and_state(embedded: EmbeddedChain) -> None:
    oracle, (a, b, c) = _pool(embedded, 3)
    _, task = _user_task(embedded, 2, price=2000)
    with _revert("BadArgument"):
        oracle.queue.assign(task, [a.address])  # k = 2
    with _revert("NodeBusy"):
        oracle.queue.assign(task, [a.address, a.address])  # listed twice
    c.registry.update_spec(1, 4096, "0.1.0", [model_of("other")])  # still in the pool
    with _revert("WrongModel"):
        oracle.queue.assign(task, [a.address, c.address])
    oracle.queue.assign(task, [a.address, b.address])
    with _revert("BadState"):
        oracle.queue.assign(task, [a.address, b.address])


def test_t11_miner_lists_are_bound_by_hash(embedded: EmbeddedChain) -> None:
    oracle, (a, b) = _pool(embedded, 2)
    _, task = _user_task(embedded, 2, price=2000)
    oracle.queue.assign(task, [a.address, b.address])
    embedded.advance_time(121)
    with _revert("BadArgument"):
        oracle.queue.close_window(task, [b.address, a.address])
    with _revert("BadArgument"):
        oracle.queue.close_window(task, [a.address])
    oracle.queue.close_window(task, [a.address, b.address])  # both absent: Committed
    with _revert("BadArgument"):
        oracle.queue.validate(task, [b.address, a.address], [100, 100], NO_CONSENSUS)


def test_t12_consensus_and_scores_are_checked_and_validate_runs_once(
    embedded: EmbeddedChain,
) -> None:
    oracle, task, miners, user = _committed(embedded)
    with _revert("BadArgument"):
        oracle.queue.validate(task, miners, [100, 10], 1)  # consensus on a failed answer
    with _revert("BadArgument"):
        oracle.queue.validate(task, miners, [100, 100], 7)  # out of range
    with _revert("BadArgument"):
        oracle.queue.validate(task, miners, [100], 0)  # scores of the wrong length
    oracle.queue.validate(task, miners, [100, 100], 0)
    paid = [oracle.payment.balance_of(m) for m in miners]
    deposit = user.payment.deposit_of(user.address)
    assert paid == [1000, 1000] and deposit == 8000
    with _revert("BadState"):
        oracle.queue.validate(task, miners, [100, 100], 0)
    assert [oracle.payment.balance_of(m) for m in miners] == paid
    assert user.payment.deposit_of(user.address) == deposit


# ---- F8: bounded work per call ----


def _prepared(chain: EmbeddedChain) -> tuple[int, ChainClient]:
    miners = _miners(chain, 3)
    leader = _oracle(chain)
    sid, _ = leader.cognitive.request(b"\x01" * 32, miners[0].address, miners[1].address)
    miners[0].cognitive.create(sid, "t")
    miners[1].cognitive.prepare(sid, '["q"]')
    return sid, leader


def _start_gas(leader: ChainClient, sid: int) -> int:
    call = leader.cognitive.contract.functions.start(sid, 3)
    return int(call.estimate_gas({"from": leader.address}))


def _away_miners(chain: EmbeddedChain, n: int) -> None:
    for _ in range(n):
        sybil = _funded(chain)
        sybil.registry.register(0, 0, "0.1.0", [MODEL], sybil.address)
        sybil.registry.set_away(True)


def test_t19_start_gas_does_not_grow_with_away_miners(embedded: EmbeddedChain) -> None:
    sid, leader = _prepared(embedded)
    before = _start_gas(leader, sid)
    # Before the present list, start visited away miners too: about 5,000 gas each.
    _away_miners(embedded, 12)
    after_12 = _start_gas(leader, sid)
    _away_miners(embedded, 12)
    after_24 = _start_gas(leader, sid)
    # Same work whatever the number of away miners (a few hundred gas of noise: which three
    # present miners the seeded offset lands on, warm or cold slots).
    assert abs(after_12 - before) < 500 and abs(after_24 - before) < 500, (before, after_24)
    assert leader.registry.miner_count() == 27 and leader.registry.present_count() == 3
    leader.cognitive.start(sid, 3)
    assert len(leader.cognitive.selected(sid)) == 3


def test_t19_present_miners_takes_one_call_per_page(
    embedded: EmbeddedChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    _miners(embedded, 3)
    _away_miners(embedded, 5)
    registry = embedded.client().registry
    calls: list[int] = []
    original = NodeRegistry.present_page

    def counted(self: NodeRegistry, start: int, limit: int = PRESENT_PAGE) -> list[str]:
        calls.append(start)
        return original(self, start, limit)

    monkeypatch.setattr(NodeRegistry, "present_page", counted)
    assert len(registry.present_miners()) == 3
    assert calls == [0]  # one call, not one per registered miner (8)


def test_present_list_follows_away_and_back(embedded: EmbeddedChain) -> None:
    miners = _miners(embedded, 5)
    registry = embedded.client().registry
    for m in (miners[0], miners[2], miners[4]):
        m.registry.set_away(True)
    assert sorted(registry.present_miners()) == sorted([miners[1].address, miners[3].address])
    miners[2].registry.set_away(False)
    miners[1].registry.set_away(True)
    expected = sorted([miners[2].address, miners[3].address])
    assert sorted(registry.present_miners()) == expected
    assert sorted(registry.present_page(1, 5) + registry.present_page(0, 1)) == expected
    assert registry.present_page(5, 5) == []


# ---- F4: the oracle does not poll a task nobody can take ----


class _NoModel:
    def generate(self, prompt: str, params: SamplingParams | None = None) -> GenerationResult:
        raise AssertionError("no inference in this test")


def _journal(chain: EmbeddedChain, tmp_path: Path, address: str) -> Journal:
    key = ChainKey(chain.chain_id, chain.genesis_hash)
    return Journal(Database(tmp_path / f"{address}.sqlite3"), key, address)


def _oracle_engine(chain: EmbeddedChain, tmp_path: Path, now: list[float]) -> Oracle:
    leader = _oracle(chain)
    assert leader.address is not None
    settings = OracleSettings(max_open_sessions=0)  # user tasks only
    oracle = Oracle(
        leader,
        validator=None,  # type: ignore[arg-type]  # never reached: nothing gets validated
        journal=_journal(chain, tmp_path, leader.address),
        bus=EventBus(),
        settings=settings,
        clock=lambda: now[0],
    )
    oracle.start()
    return oracle


def test_f4_an_unassignable_task_is_retried_after_a_pause_not_every_step(
    embedded: EmbeddedChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1.0e9]
    oracle = _oracle_engine(embedded, tmp_path, now)
    _, task = _user_task(embedded, 3)  # k = 3 and an empty pool
    # The oracle reads the pool for a waiting task (from its pool index since the scale work,
    # no longer a present_page call per step): count those reads.
    reads: list[int] = []
    original = Oracle._eligible

    def counted(self: Oracle, *args: object, **kwargs: object) -> list[str]:
        reads.append(1)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Oracle, "_eligible", counted)
    for _ in range(5):
        oracle.step()
    assert len(reads) == 1
    now[0] += ASSIGN_RETRY_S + 1
    oracle.step()
    assert len(reads) == 2
    assert oracle.client.queue.state(task) == TaskState.QUEUED


def test_f4_the_oracle_assigns_only_miners_whose_floor_the_price_meets(
    embedded: EmbeddedChain, tmp_path: Path
) -> None:
    leader, (cheap, dear) = _pool(embedded, 2)
    dear.registry.set_price_floor(10**12)
    assert leader.registry.node_info(dear.address).price_floor == 10**12
    now = [1.0e9]
    oracle = _oracle_engine(embedded, tmp_path, now)
    _, task = _user_task(embedded, 1, price=3000)  # 3000 / 128 = 23 wei per token
    with _revert("PriceBelowFloor"):
        leader.queue.assign(task, [dear.address])
    oracle.step()
    assert leader.queue.reserved_for(cheap.address) == task
    assert leader.queue.reserved_for(dear.address) == 0


def test_f4_a_miner_publishes_its_price_floor_at_start(
    embedded: EmbeddedChain, tmp_path: Path
) -> None:
    client = embedded.client(embedded.accounts[2])
    assert client.address is not None
    settings = MinerSettings(price_floor_wei_per_token=7)
    miner = Miner(
        client, _NoModel(), _journal(embedded, tmp_path, client.address), EventBus(), settings
    )
    miner.preflight()
    assert client.registry.node_info(client.address).price_floor == 7
    session = client.queue.call("sessions", 0)
    assert session[3] == 0  # no session yet: nothing to refuse
    user = embedded.client(embedded.accounts[0])
    user.payment.deposit(10_000)
    sid, _ = user.queue.open_session(MODEL, 0, 1, 1, 128 * 6)  # 6 wei per token
    assert miner._under_floor(sid)
    sid, _ = user.queue.open_session(MODEL, 0, 1, 1, 128 * 7)
    assert not miner._under_floor(sid)
