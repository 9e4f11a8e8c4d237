"""The host's command handling without llama.cpp: every command gets an answer on the bus."""

from __future__ import annotations

from types import SimpleNamespace

from cortensor_desktop.node_host import NetworkHost
from engine.commands import Pause, ReloadConfig, Resume, Stop
from engine.events import CommandHandled, EventBus, NodeState, NodeStateChanged


def _host(miners: int) -> tuple[NetworkHost, EventBus, list[SimpleNamespace]]:
    bus = EventBus()
    nodes = [SimpleNamespace(address=f"0x{i:040x}", paused=False) for i in range(miners)]
    network = SimpleNamespace(bus=bus, miners=nodes)
    return NetworkHost(network), bus, nodes  # type: ignore[arg-type]


def test_pause_before_the_network_is_up_is_refused_not_ignored() -> None:
    host, bus, _ = _host(0)
    sub = bus.subscribe()
    answer = host.handle(Pause(source="tui"))
    assert not answer.accepted and "still starting" in answer.message
    assert sub.drain() == [answer]


def test_pause_and_resume_flip_every_miner_and_publish_their_states() -> None:
    host, bus, nodes = _host(2)
    sub = bus.subscribe()
    pause = Pause(source="tui")
    answer = host.handle(pause)
    assert answer.accepted and answer.command_id == pause.id
    assert all(n.paused for n in nodes)
    states = [e for e in sub.drain() if isinstance(e, NodeStateChanged)]
    assert [e.state for e in states] == [NodeState.PAUSED] * 2
    assert all(e.reasons[0].code == "user" for e in states)
    assert host.handle(Resume(source="tui")).accepted
    assert not any(n.paused for n in nodes)
    states = [e for e in sub.drain() if isinstance(e, NodeStateChanged)]
    assert [(e.state, e.previous) for e in states] == [(NodeState.REGISTERED, NodeState.PAUSED)] * 2


def test_unsupported_commands_are_refused_and_stop_ends_the_command_loop() -> None:
    host, bus, _ = _host(1)
    sub = bus.subscribe()
    refused = host.handle(ReloadConfig())
    assert not refused.accepted and "restart to apply" in refused.message
    assert host.handle(Stop()).accepted
    assert host._stop.is_set()
    answers = [e for e in sub.drain() if isinstance(e, CommandHandled)]
    assert [a.command for a in answers] == ["reload_config", "stop"]
