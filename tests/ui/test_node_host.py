"""The host's command handling without llama.cpp: every command gets an answer on the bus."""

from __future__ import annotations

import time
from types import SimpleNamespace

from eth_account import Account

from chain.devnet import start_embedded
from chain.wrappers import model_id
from cortensor_desktop.hosting.dashboard_host import NetworkHost
from engine.state.commands import Pause, ReloadConfig, Resume, SetPayout, Start, Stop
from engine.state.events import CommandHandled, EventBus, NodeState, NodeStateChanged


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


def test_unsupported_commands_are_refused_and_stop_keeps_the_command_loop() -> None:
    host, bus, _ = _host(1)
    host.network.stop = lambda **_: None  # type: ignore[attr-defined]
    sub = bus.subscribe()
    refused = host.handle(ReloadConfig())
    assert not refused.accepted and "cannot reload" in refused.message
    assert host.handle(Stop()).accepted
    assert not host._stop.is_set()  # the view stays and can start the node again
    answers = [e for e in sub.drain() if isinstance(e, CommandHandled)]
    assert [a.command for a in answers] == ["reload_config", "stop"]


def test_stop_then_start_runs_a_fresh_network_and_each_twice_is_refused() -> None:
    bus = EventBus()
    stopped: list[object] = []
    started: list[object] = []

    def network() -> SimpleNamespace:
        net = SimpleNamespace(bus=bus, miners=[])
        net.stop = lambda **_: stopped.append(net)
        net.start = lambda: started.append(net)
        return net

    first = network()
    host = NetworkHost(first, fresh_network=network)  # type: ignore[arg-type]
    assert not host.handle(Start()).accepted  # already running
    assert host.handle(Stop()).accepted
    assert not host.handle(Stop()).accepted  # already stopped
    assert host.handle(Start()).accepted
    assert host.started.wait(5)
    deadline = time.monotonic() + 5
    while not stopped and time.monotonic() < deadline:
        time.sleep(0.01)  # the stop runs on its own thread
    assert stopped == [first] and started == [host.network] and host.network is not first
    no_factory = NetworkHost(network())  # type: ignore[arg-type]
    assert no_factory.handle(Stop()).accepted
    assert "cannot start" in no_factory.handle(Start()).message


def test_set_payout_calls_set_payout_for_registered_miners_only() -> None:
    embedded = start_embedded(oracles=1)
    registered = embedded.client(embedded.accounts[0])
    registered.registry.register(0, 4096, "0.1.0", [model_id("m")], registered.address)
    fresh = embedded.client(embedded.accounts[1])
    miners = [
        SimpleNamespace(address=c.address, client=c, payout=c.address, paused=False)
        for c in (registered, fresh)
    ]
    host = NetworkHost(SimpleNamespace(bus=EventBus(), miners=miners))  # type: ignore[arg-type]
    payout = Account.create().address
    answer = host.handle(SetPayout(address=payout, source="tui"))
    assert answer.accepted and "for 1 miners" in answer.message
    assert registered.registry.node_info(registered.address).payout == payout
    assert fresh.registry.node_info(fresh.address).status == 0  # registers with it later
    assert all(m.payout == payout for m in miners)


def test_reload_is_answered_by_the_hosts_reload() -> None:
    host, _bus, _ = _host(1)
    host.reload = lambda: (True, "config reloaded; needs a restart: fit.ctx")
    answer = host.handle(ReloadConfig(source="tui"))
    assert answer.accepted and answer.message.endswith("fit.ctx")
