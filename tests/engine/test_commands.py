"""Commands: JSON round-trip, strict decoding at the HTTP boundary, the thread-safe queue."""

from __future__ import annotations

import json
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.state.commands import (
    COMMAND_TYPES,
    Benchmark,
    Command,
    CommandQueue,
    CommandQueueFull,
    Pause,
    ReloadConfig,
    Resume,
    SetPayout,
    Start,
    Stop,
    Withdraw,
    command_from_json,
)
from engine.state.wire import WireError

EXAMPLES: list[Command] = [
    Start(source="tui"),
    Stop(source="signal"),
    Pause(reason="temperature", source="policy"),
    Resume(reason="temperature"),
    Benchmark(model_id="smollm2-135m"),
    Benchmark(),
    Withdraw(amount_wei=10**30),
    Withdraw(all=True),
    ReloadConfig(source="api"),
    SetPayout(address="0x" + "5C" * 20, source="tui"),
]


def test_every_command_type_has_an_example() -> None:
    assert {c.type for c in EXAMPLES} == set(COMMAND_TYPES)
    assert set(COMMAND_TYPES) == {
        "start",
        "stop",
        "pause",
        "resume",
        "benchmark",
        "withdraw",
        "reload_config",
        "set_payout",
    }


def test_set_payout_refuses_what_is_not_an_address() -> None:
    with pytest.raises(WireError, match="40 hex digits"):
        command_from_json('{"type": "set_payout", "address": "0x1234"}')


@pytest.mark.parametrize("command", EXAMPLES, ids=lambda c: c.type)
def test_commands_round_trip_through_json(command: Command) -> None:
    assert command_from_json(command.to_json()) == command
    assert json.loads(command.to_json())["type"] == command.type


def test_a_minimal_http_body_gets_an_id_and_time() -> None:
    command = command_from_json('{"type": "pause", "reason": "maintenance"}')
    assert isinstance(command, Pause) and command.reason == "maintenance"
    assert len(command.id) == 32 and command.issued_at > 0
    assert command_from_json('{"type": "pause"}') != command_from_json('{"type": "pause"}')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"type": "self_destruct"}', "unknown command"),
        ('{"reason": "x"}', "unknown command"),
        ("[]", "JSON object"),
        ("{", "not JSON"),
        ('{"type": "withdraw"}', "either amount_wei or all"),
        ('{"type": "withdraw", "amount_wei": 5, "all": true}', "either amount_wei or all"),
        ('{"type": "withdraw", "amount_wei": -5}', "positive"),
        ('{"type": "withdraw", "amount_wei": "5"}', "expected int"),
        ('{"type": "withdraw", "amount_wei": true}', "expected int"),
        ('{"type": "pause", "reason": 3}', "expected str"),
    ],
)
def test_bad_commands_are_refused_with_a_reason(body: str, message: str) -> None:
    with pytest.raises(WireError, match=message):
        command_from_json(body)


@given(st.integers(min_value=1, max_value=2**256))
def test_withdraw_amounts_survive_json_exactly(amount: int) -> None:
    command = command_from_json(Withdraw(amount_wei=amount).to_json())
    assert isinstance(command, Withdraw) and command.amount_wei == amount


def test_queue_is_fifo_bounded_and_thread_safe() -> None:
    commands = CommandQueue(maxsize=1000)
    threads = [
        threading.Thread(target=lambda: [commands.put(Start()) for _ in range(200)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(commands) == 800
    assert len(commands.drain()) == 800
    assert commands.get(timeout=0) is None
    assert commands.get(timeout=0.01) is None

    small = CommandQueue(maxsize=2)
    first, second = small.put(Pause()), small.put(Resume())
    with pytest.raises(CommandQueueFull):
        small.put(Stop())
    assert small.drain() == [first, second]


def test_engine_thread_wakes_on_a_command() -> None:
    commands = CommandQueue()
    got: list[Command | None] = []
    engine = threading.Thread(target=lambda: got.append(commands.get(timeout=10)))
    engine.start()
    sent = commands.put(ReloadConfig())
    engine.join(timeout=10)
    assert got == [sent]
