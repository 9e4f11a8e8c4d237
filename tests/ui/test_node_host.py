"""The host's command handling without llama.cpp: every command gets an answer on the bus."""

from __future__ import annotations

import time
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

from eth_account import Account

from chain.devnet import start_embedded
from chain.wrappers import model_id
from cortensor_desktop.hosting.dashboard_host import NetworkHost
from engine.host.node_host import HostSettings
from engine.host.policies import PolicySettings
from engine.host.sensors import policy_readings
from engine.state.commands import Pause, ReloadConfig, Resume, SetPayout, Start, Stop
from engine.state.events import (
    Alert,
    CommandHandled,
    Event,
    EventBus,
    HardwareSample,
    NodeState,
    NodeStateChanged,
    Subscription,
)


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


# psutil's own shape (psutil._ntuples.sbattery): the VM has no battery, so the test supplies one
sbattery = namedtuple("sbattery", ["percent", "secsleft", "power_plugged"])


@dataclass
class FakeWorker:
    """An inference worker's pid and deaths, as WorkerWatch reads them (no llama.cpp here)."""

    pid: int | None
    deaths: list[str]


def _wait_for(sub: Subscription, seen: list[Event], found: Callable[[Event], bool]) -> Event:
    """The first event (from `seen` or arriving within 10 s) that `found` accepts."""
    deadline = time.monotonic() + 10
    while (match := next((e for e in seen if found(e)), None)) is None:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"not published; saw {[type(e).__name__ for e in seen]}"
        event = sub.get(timeout=remaining)
        if event is not None:
            seen.append(event)
    return match


def test_the_dashboard_host_runs_the_policies_and_alerts_headless_mode_has() -> None:
    """The one node host behind the dashboard: a battery policy pauses the miners, a worker
    death raises an alert, a low oracle gas balance (read on a real embedded chain) too, and
    the machine's readings arrive as HardwareSample events."""
    embedded = start_embedded(oracles=1)
    oracle = embedded.client(embedded.oracles[0])
    bus = EventBus()
    miners = [SimpleNamespace(address=f"0x{i:040x}", paused=False) for i in range(2)]
    worker = FakeWorker(pid=100, deaths=[])
    network = SimpleNamespace(
        bus=bus,
        miners=miners,
        oracles=[SimpleNamespace(address=oracle.address, client=oracle)],
        workers=[("miner 0x00000000", worker)],
        worker_owners={"miner 0x00000000": miners[0].address},
        stop=lambda **_: None,
        abort=lambda: None,
    )
    battery = sbattery(percent=80.0, secsleft=3600, power_plugged=False)
    settings = HostSettings(
        policy=PolicySettings(pause_on_battery=True),
        policy_interval_s=0.1,
        low_gas_wei=10**30,  # above any dev account's balance
    )
    host = NetworkHost(
        network,  # type: ignore[arg-type]
        settings=settings,
        readings=policy_readings(dict, lambda: battery),
    )
    sub = bus.subscribe()
    seen: list[Event] = []
    host.start(network=False)
    try:
        paused = _wait_for(sub, seen, lambda e: isinstance(e, NodeStateChanged))
        assert isinstance(paused, NodeStateChanged) and paused.reasons[0].code == "battery"
        assert all(m.paused for m in miners)
        low_gas = _wait_for(sub, seen, lambda e: isinstance(e, Alert) and e.kind.value == "low_gas")
        assert isinstance(low_gas, Alert) and low_gas.active and low_gas.node == oracle.address
        hardware = _wait_for(sub, seen, lambda e: isinstance(e, HardwareSample))
        assert isinstance(hardware, HardwareSample) and (hardware.ram_total_bytes or 0) > 0
        worker.pid, worker.deaths = None, ["killed by SIGKILL"]
        crash = _wait_for(
            sub, seen, lambda e: isinstance(e, Alert) and e.kind.value == "worker_crash"
        )
        assert isinstance(crash, Alert) and crash.node == miners[0].address
        assert "killed by SIGKILL" in crash.message
        # the user cannot resume what the policy holds: the headless rule, now the dashboard's
        refused = host.handle(Resume(source="tui"))
        assert not refused.accepted and "no 'user' pause" in refused.message
    finally:
        host.stop()
