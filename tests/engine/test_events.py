"""The event stream: JSON round-trip of every type, forward compatibility, the bus, recordings."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.poi.validation import AnswerLikelihood, ValidationThresholds, judge_answer
from engine.protocol import NodeRole, TaskKind
from engine.state.events import (
    EVENT_TYPES,
    MAX_GAP,
    SCHEMA_VERSION,
    Alert,
    AlertKind,
    Event,
    EventBus,
    EventsDropped,
    LogLine,
    NodeState,
    NodeStateChanged,
    PauseReason,
    Severity,
    UnknownEvent,
    ValidationResult,
    event_from_json,
)
from engine.state.recording import Recorder, read_events, replay
from engine.state.wire import WireError

JSON_FLOATS = st.floats(allow_nan=False, allow_infinity=False)


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    """Values of a field's declared type that JSON can carry exactly."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(strategy_for(a) for a in typing.get_args(hint)))
    if origin is tuple:
        return st.lists(strategy_for(typing.get_args(hint)[0]), max_size=3).map(tuple)
    if hint is type(None):
        return st.none()
    if isinstance(hint, type) and issubclass(hint, Enum):
        return st.sampled_from(list(hint))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return strategy_for_dataclass(hint)
    scalars: dict[Any, st.SearchStrategy[Any]] = {
        int: st.integers(-(2**256), 2**256),
        float: JSON_FLOATS,
        str: st.text(max_size=20),
        bool: st.booleans(),
    }
    return scalars[hint]


def strategy_for_dataclass(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls) if f.init}
    return st.builds(cls, **fields)


ALL_EVENTS = st.sampled_from(sorted(EVENT_TYPES.values(), key=lambda c: c.type)).flatmap(
    strategy_for_dataclass
)


def test_registry_has_every_event_the_issue_names() -> None:
    expected = {
        "node_state",
        "preflight_step",
        "hardware",
        "ping",
        "network_task",
        "user_task",
        "tokens",
        "inference_finished",
        "validation",
        "points",
        "earnings",
        "withdrawal",
        "alert",
        "log",
        "benchmark",
        "command_handled",
        "events_dropped",
    }
    assert expected <= set(EVENT_TYPES)
    assert all(cls.type == name for name, cls in EVENT_TYPES.items())


@given(ALL_EVENTS)
@settings(max_examples=300)
def test_every_event_type_round_trips_through_json(event: Event) -> None:
    text = event.to_json()
    data = json.loads(text)
    assert data["v"] == SCHEMA_VERSION and data["type"] == event.type
    assert event_from_json(text) == event


def test_an_event_from_a_newer_writer_with_extra_fields_still_reads() -> None:
    data = Alert(kind=AlertKind.LOW_GAS, severity=Severity.WARNING, message="m").to_dict()
    data["added_later"] = {"x": 1}
    event = event_from_json(json.dumps(data))
    assert isinstance(event, Alert) and event.kind is AlertKind.LOW_GAS


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"type": "quantum_entanglement"}, "unknown type"),
        ({"v": SCHEMA_VERSION + 1}, "schema version"),
        ({"kind": "meteor_strike"}, "unknown value"),
        ({"message": 12}, "expected str"),
    ],
)
def test_what_this_version_cannot_represent_is_kept_not_fatal(
    patch: dict[str, Any], reason: str
) -> None:
    data = Alert(
        seq=7, ts=1.5, node="0xn", kind=AlertKind.STALL, severity=Severity.ERROR, message="m"
    ).to_dict()
    data.update(patch)
    event = event_from_json(json.dumps(data))
    assert isinstance(event, UnknownEvent)
    assert reason in event.reason
    assert (event.seq, event.ts, event.node) == (7, 1.5, "0xn")
    # Passed through unchanged, so a recorder or SSE relay loses nothing.
    assert json.loads(event.to_json()) == data


def test_non_objects_are_a_typed_error() -> None:
    with pytest.raises(WireError):
        event_from_json("[1, 2]")
    with pytest.raises(WireError):
        event_from_json("{not json")


def test_validation_event_from_a_verdict_carries_scores_and_thresholds() -> None:
    verdict = judge_answer(
        AnswerLikelihood(top1=(True, False, False), eos_expected_after=True),
        cosine=0.9,
        thresholds=ValidationThresholds(top1_min=0.5),
    )
    event = ValidationResult.from_verdict(
        verdict, miner="0xabc", task_kind=TaskKind.USER, session_id=3, task_id=4
    )
    assert not event.passed and event.failed_checks == ("opening", "top1", "misses")
    assert event.top1_agreement == pytest.approx(1 / 3) and event.top1_min == 0.5
    # The margin's figures and one line per failed check come along for the screens.
    assert event.near_tie_margin == verdict.thresholds.near_tie_margin
    assert event.opening_gaps == (MAX_GAP, MAX_GAP) and event.opening_misses_max == 0
    assert event.reasons[0].startswith("opening: 2 of the first 8 tokens")
    assert event.reasons[1].startswith("top1: 0.33 of the tokens")
    assert event.opening_margin == 1.0
    assert event.misses == 2 and event.misses_alpha == verdict.thresholds.misses_alpha
    assert event.reasons[2].startswith("misses: 2 of 3 tokens")
    assert event.figures() == (
        "opening 2>0 (gaps inf,inf > 1.00); top1 0.33<0.50; misses 2 (p 3.0e-04<0.001)"
    )
    assert event_from_json(event.to_json()) == event


# --- the bus -----------------------------------------------------------------------------------


def _log(message: str) -> LogLine:
    return LogLine(level="INFO", logger="t", message=message)


def test_bus_stamps_sequence_time_and_node() -> None:
    clock = iter([10.0, 11.0])
    bus = EventBus(node="0xme", role=NodeRole.MINER, clock=lambda: next(clock))
    sub = bus.subscribe()
    first = bus.publish(_log("a"))
    second = bus.publish(LogLine(level="INFO", logger="t", message="b", node="0xother"))
    assert (first.seq, first.ts, first.node, first.role) == (1, 10.0, "0xme", NodeRole.MINER)
    assert (second.seq, second.node) == (2, "0xother")
    assert sub.drain() == [first, second]
    assert sub.get(timeout=0.01) is None


def test_subscribers_are_independent_and_a_slow_one_is_told_what_it_missed() -> None:
    bus = EventBus()
    fast = bus.subscribe(maxsize=100)
    slow = bus.subscribe(maxsize=3)
    for i in range(10):
        bus.publish(_log(str(i)))
    assert [e.message for e in fast.drain() if isinstance(e, LogLine)] == [
        str(i) for i in range(10)
    ]
    events = slow.drain()
    assert isinstance(events[0], EventsDropped) and events[0].count == 7
    assert [e.message for e in events[1:] if isinstance(e, LogLine)] == ["7", "8", "9"]
    assert slow.missed_total == 7


def test_a_late_reader_catches_up_from_the_history_after_a_sequence_number() -> None:
    bus = EventBus(history=5)
    for i in range(1, 9):
        bus.publish(_log(str(i)))
    # Reconnecting after seq 5 (an SSE client's Last-Event-ID): 6, 7, 8 are still kept.
    resumed = bus.subscribe(after_seq=5)
    assert [e.seq for e in resumed.drain()] == [6, 7, 8]
    # After seq 1: the history starts at 4, so 2 and 3 are reported missing first.
    behind = bus.subscribe(after_seq=1)
    events = behind.drain()
    assert isinstance(events[0], EventsDropped) and events[0].count == 2
    assert [e.seq for e in events[1:]] == [4, 5, 6, 7, 8]
    # Up to date, or no history wanted: only what comes next.
    current, fresh = bus.subscribe(after_seq=8), bus.subscribe()
    bus.publish(_log("9"))
    assert [e.seq for e in current.drain()] == [e.seq for e in fresh.drain()] == [9]


def test_publishing_never_blocks_on_a_reader_that_never_reads() -> None:
    bus = EventBus()
    bus.subscribe(maxsize=1)
    done = threading.Event()

    def flood() -> None:
        for i in range(20_000):
            bus.publish(_log(str(i)))
        done.set()

    threading.Thread(target=flood, daemon=True).start()
    assert done.wait(timeout=30)
    assert bus.last_seq == 20_000


def test_concurrent_publishers_give_unique_ordered_sequence_numbers() -> None:
    bus = EventBus()
    sub = bus.subscribe(maxsize=10_000)
    threads = [
        threading.Thread(target=lambda: [bus.publish(_log("x")) for _ in range(500)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [e.seq for e in sub.drain()]
    assert seqs == list(range(1, 2001))


def test_blocking_get_wakes_on_publish_and_close_ends_iteration() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    got: list[Event] = []
    reader = threading.Thread(target=lambda: got.extend(sub))
    reader.start()
    bus.publish(_log("hello"))
    sub.close()
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert [e.message for e in got if isinstance(e, LogLine)] == ["hello"]
    bus.publish(_log("after close"))
    assert sub.drain() == []


def test_asyncio_reader_gets_events_published_from_another_thread() -> None:
    bus = EventBus()

    async def main() -> list[str]:
        sub = bus.subscribe()
        loop = asyncio.get_running_loop()
        loop.call_later(
            0.01, lambda: threading.Thread(target=publish_then_close, args=(sub,)).start()
        )
        return [e.message async for e in sub if isinstance(e, LogLine)]

    def publish_then_close(sub: Any) -> None:
        for i in range(5):
            bus.publish(_log(str(i)))
        sub.close()

    assert asyncio.run(asyncio.wait_for(main(), timeout=10)) == ["0", "1", "2", "3", "4"]


# --- recording and replay ------------------------------------------------------------------------


def _state(state: NodeState, ts: float) -> NodeStateChanged:
    return NodeStateChanged(state=state, ts=ts, reasons=(PauseReason("user", "asked"),))


def test_recorder_and_replay_round_trip_a_live_bus(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    bus = EventBus(node="0xme")
    with Recorder(path) as recorder:
        recorder.attach(bus)
        published = [bus.publish(_log(str(i))) for i in range(50)]
    assert list(replay(path)) == published
    header = json.loads(path.read_text().splitlines()[0])
    assert header["format"] == "cortensor-events" and header["v"] == SCHEMA_VERSION


def test_replay_scales_the_original_timing(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with Recorder(path) as recorder:
        for state, ts in [(NodeState.STARTING, 100.0), (NodeState.PAUSED, 102.0)]:
            recorder.write(_state(state, ts))
        recorder.write(_state(NodeState.STOPPED, 106.0))
    slept: list[float] = []
    events = list(replay(path, speed=2.0, sleep=slept.append))
    assert [e.state for e in events if isinstance(e, NodeStateChanged)] == [
        NodeState.STARTING,
        NodeState.PAUSED,
        NodeState.STOPPED,
    ]
    assert slept == [1.0, 2.0]
    assert list(replay(path, sleep=slept.append)) == events and slept == [1.0, 2.0]
    with pytest.raises(ValueError):
        list(replay(path, speed=0))


def test_replay_skips_a_line_cut_short_by_a_crash_and_keeps_unknown_events(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with Recorder(path) as recorder:
        recorder.write(_state(NodeState.STARTING, 1.0))
    with path.open("a") as handle:
        handle.write(json.dumps({"v": 1, "type": "from_the_future", "seq": 9}) + "\n")
        handle.write('{"v": 1, "type": "log", "lev')
    events = list(read_events(path))
    assert len(events) == 2
    assert isinstance(events[1], UnknownEvent) and events[1].type_name == "from_the_future"
    # Appending to an existing recording adds no second header.
    with Recorder(path) as recorder:
        recorder.write(_state(NodeState.STOPPED, 2.0))
    assert sum('"format"' in line for line in path.read_text().splitlines()) == 1
    last = list(read_events(path))[-1]
    assert isinstance(last, NodeStateChanged) and last.state is NodeState.STOPPED


def _doc_rows(text: str) -> dict[str, str]:
    return {line.split("|")[1].strip(" `"): line for line in text.splitlines() if line[:3] == "| `"}


def test_docs_list_every_event_command_and_field() -> None:
    from engine.state.commands import COMMAND_TYPES

    doc = (Path(__file__).resolve().parents[2] / "docs" / "EVENTS.md").read_text(encoding="utf-8")
    events_part, commands_part = doc.split("## Commands")
    common = {"seq", "ts", "node", "role", "id", "issued_at", "source"}
    for part, types_ in [(events_part, EVENT_TYPES), (commands_part, COMMAND_TYPES)]:
        rows = _doc_rows(part)
        for name, cls in types_.items():
            assert name in rows, f"docs/EVENTS.md does not describe {name}"
            for f in dataclasses.fields(cls):
                if f.name not in common:
                    assert f"`{f.name}`" in rows[name], f"{name}.{f.name} missing from the docs"
