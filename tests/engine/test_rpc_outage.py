"""What a node does with an RPC outage, without a chain: alerts, no lost events, no lost work."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from chain.errors import RpcUnavailable
from chain.events import ChainEvent
from engine.node.chain_health import ChainHealth
from engine.node.chain_watch import ChainWatcher
from engine.node.miner import Miner
from engine.state.events import Alert, AlertKind, Event, EventBus


@dataclass
class FakeBackend:
    generation: int = 0
    description: str = "http://127.0.0.1:8545"


def _event(name: str, block: int) -> ChainEvent:
    return ChainEvent("Cognitive", name, {"id": 1}, block, "0x" + "ab" * 32, 0)


def test_one_alert_per_outage_cleared_when_the_chain_answers() -> None:
    published: list[Event] = []
    times = iter([100.0, 112.0])
    health = ChainHealth(FakeBackend(), published.append, clock=lambda: next(times))
    assert health.step_ok() is False  # up all along: nothing to say
    for _ in range(5):
        health.step_failed(RpcUnavailable("no RPC URL answered"))
    assert health.rpc_down
    assert health.step_ok() is True  # the loop resumes interrupted work now
    assert health.step_ok() is False
    alerts = [e for e in published if isinstance(e, Alert)]
    assert [(a.kind, a.active) for a in alerts] == [
        (AlertKind.RPC_DOWN, True),
        (AlertKind.RPC_DOWN, False),
    ]
    assert "after 12 s" in alerts[1].message
    assert health.outages == 1


def test_a_failover_is_an_alert() -> None:
    published: list[Event] = []
    backend = FakeBackend()
    health = ChainHealth(backend, published.append)
    backend.generation, backend.description = 1, "http://127.0.0.1:9545"
    health.step_ok()
    health.step_ok()
    assert [(e.kind, e.message) for e in published if isinstance(e, Alert)] == [
        (AlertKind.RPC_FAILOVER, "RPC failed over to http://127.0.0.1:9545")
    ]


@dataclass
class FakeCursor:
    events: list[ChainEvent]
    fail: bool = False
    next_block: int = 0
    reads: list[int] = field(default_factory=list)

    def read(self, to_block: int | None = None) -> tuple[list[ChainEvent], int]:
        self.reads.append(self.next_block)
        if self.fail:
            raise RpcUnavailable("gone")
        assert to_block is not None
        found = [e for e in self.events if self.next_block <= e.block_number <= to_block]
        return found, to_block + 1


@dataclass
class FakeSource:
    cursor_: FakeCursor

    def cursor(self, event_name: str, from_block: int) -> FakeCursor:
        self.cursor_.next_block = from_block
        return self.cursor_


def test_a_poll_that_fails_part_way_moves_no_cursor() -> None:
    first = FakeCursor([_event("SessionRequested", 3)])
    second = FakeCursor([_event("TopicCreated", 4)], fail=True)
    watcher = ChainWatcher(0, [(FakeSource(first), "a"), (FakeSource(second), "b")], 0)
    with pytest.raises(RpcUnavailable):
        watcher.poll(5)
    assert first.next_block == 0  # the first cursor's events were not handed out: read again
    second.fail = False
    assert [e.name for e in watcher.poll(5)] == ["SessionRequested", "TopicCreated"]
    assert (first.next_block, second.next_block) == (6, 6)


class _Flaky:
    """Stands in for the chain: fails the first `failures` event handlings, then works."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.handled: list[str] = []

    def handle(self, event: ChainEvent) -> None:
        if self.failures:
            self.failures -= 1
            raise RpcUnavailable("gone mid-handling")
        self.handled.append(event.name)


def test_an_event_whose_handling_met_an_outage_is_handled_after_it() -> None:
    client: Any = SimpleNamespace(
        address="0x" + "11" * 20,
        web3=SimpleNamespace(eth=SimpleNamespace(block_number=9)),
        backend=FakeBackend(),
    )
    miner = Miner(client, chat=None, journal=None, bus=EventBus())  # type: ignore[arg-type]
    miner.paused = miner._away_on_chain = True  # no ping, no away transaction: events only
    miner.earnings = SimpleNamespace(tick=lambda: None)  # type: ignore[assignment]
    events = [_event("SessionRequested", 5), _event("TopicCreated", 6)]
    miner._watcher = SimpleNamespace(poll=lambda head=None: list(events))  # type: ignore[assignment]
    flaky = _Flaky(failures=1)
    miner._handle = flaky.handle  # type: ignore[method-assign]
    with pytest.raises(RpcUnavailable):
        miner.step()
    events.clear()  # the chain has nothing new: the backlog alone must bring them back
    miner.step()
    assert flaky.handled == ["SessionRequested", "TopicCreated"]


@pytest.mark.parametrize("reason", ["cancelled", "killed"])
def test_an_answer_cut_off_by_a_stop_is_never_used(reason: str) -> None:
    from chain.errors import ChainError
    from engine.inference.types import GenerationFigures, GenerationResult

    class _StoppedMidAnswer:
        def generate(self, prompt: str, params: Any = None) -> GenerationResult:
            figures = GenerationFigures(12, 1, 0.1, 100.0, 0.0, 0.1)
            return GenerationResult("Par", (1,), reason, figures, "m.gguf")

    client: Any = SimpleNamespace(address="0x" + "11" * 20, backend=FakeBackend())
    miner = Miner(client, chat=_StoppedMidAnswer(), journal=None, bus=EventBus())  # type: ignore[arg-type]
    with pytest.raises(ChainError, match=f"generation {reason}"):
        miner._generate(3, "What is the capital of France?", 64)


def test_an_answer_cut_off_by_a_stop_is_logged_as_a_stop_not_a_chain_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from engine.node.generation import AnswerInterrupted

    client: Any = SimpleNamespace(
        address="0x" + "11" * 20, backend=FakeBackend(), web3=SimpleNamespace(provider=None)
    )
    miner = Miner(client, chat=None, journal=None, bus=EventBus())  # type: ignore[arg-type]
    miner._watcher = SimpleNamespace()  # type: ignore[assignment]
    miner.resume = lambda: None  # type: ignore[method-assign]
    stop = threading.Event()

    def step_cut_off_by_the_stop() -> None:
        stop.set()
        raise AnswerInterrupted("no answer for session 15: generation cancelled")

    miner.step = step_cut_off_by_the_stop  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="engine.node.miner"):
        miner.run(stop)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (
        logging.INFO,
        f"miner {client.address[:10]}: stopped before answering: "
        "no answer for session 15: generation cancelled",
    ) in lines
    assert not [m for level, m in lines if level >= logging.WARNING]


def test_a_prepare_lost_to_an_outage_is_raised_so_its_event_is_handled_again() -> None:
    """The README's devnet restart lost a preparer's duty: its send met the outage, was
    reported failed, and the event counted as handled; the oracle had to reassign it late."""
    from engine.node.miner_chain import MinerChain
    from engine.protocol import NetworkStage, TaskRole
    from engine.state.events import NetworkTaskStage, TxStatus

    published: list[Event] = []
    health = ChainHealth(FakeBackend(), published.append)
    chain = MinerChain(SimpleNamespace(), "0x" + "11" * 20, published.append, health, lambda: 0.0)  # type: ignore[arg-type]

    def unreachable() -> str:
        raise RpcUnavailable("no RPC URL answered eth_chainId after 3 rounds")

    with pytest.raises(RpcUnavailable):
        chain.send_network(3, NetworkStage.PREPARE, TaskRole.PREPARER, unreachable)
    stages = [e for e in published if isinstance(e, NetworkTaskStage)]
    assert [(s.stage, s.status) for s in stages] == [(NetworkStage.PREPARE, TxStatus.FAILED)]
    # A send with its own way back (the journal's commit-reveal) still only reports it.
    assert chain.transact(unreachable, lambda status, tx, error: stages[0]) is None
    assert chain.send_network(3, NetworkStage.PREPARE, TaskRole.PREPARER, lambda: "0xab") == "0xab"
