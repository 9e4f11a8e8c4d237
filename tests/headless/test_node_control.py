"""Commands and polite-mining policies applied to miners: pause reasons, resume, answers.

The policy test feeds hand-written psutil-shaped SAMPLE readings (not recorded: this VM has no
sensors) through the live sampler and `readings_from_psutil`, the same path a real host takes.
"""

from __future__ import annotations

import json
from collections import namedtuple
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from engine.host.node_control import NodeController, PolicyMonitor
from engine.host.policies import HourWindow, PolicySettings
from engine.host.sensors import policy_readings
from engine.state.commands import Benchmark, Pause, ReloadConfig, Resume, Withdraw
from engine.state.events import CommandHandled, EventBus, NodeState, NodeStateChanged, Subscription

SAMPLES = Path(__file__).parents[1] / "engine" / "data" / "laptop_sensor_samples.json"
# psutil's own shapes (psutil._ntuples.shwtemp / sbattery)
shwtemp = namedtuple("shwtemp", ["label", "current", "high", "critical"])
sbattery = namedtuple("sbattery", ["percent", "secsleft", "power_plugged"])


@dataclass
class FakeMiner:
    address: str
    paused: bool = False


def _controller(**kw: Any) -> tuple[EventBus, Subscription, list[FakeMiner], NodeController]:
    bus = EventBus()
    sub = bus.subscribe()
    miners = [FakeMiner("0xa"), FakeMiner("0xb")]
    return bus, sub, miners, NodeController(bus, miners, **kw)


def test_pause_and_resume_commands_pause_every_miner_and_answer_each_command() -> None:
    _, sub, miners, control = _controller()
    pause = Pause(reason="maintenance", source="api")
    answer = control.handle(pause)
    assert answer.accepted and answer.command_id == pause.id
    assert all(m.paused for m in miners)
    states = [e for e in sub.drain() if isinstance(e, NodeStateChanged)]
    assert {e.node for e in states} == {"0xa", "0xb"}
    assert all(e.state is NodeState.PAUSED for e in states)
    assert states[0].reasons[0].code == "user"
    assert "maintenance" in states[0].reasons[0].message

    refused = control.handle(Resume(reason="battery"))
    assert not refused.accepted and "no 'battery' pause" in refused.message
    assert all(m.paused for m in miners)

    assert control.handle(Resume()).accepted
    assert not any(m.paused for m in miners)
    states = [e for e in sub.drain() if isinstance(e, NodeStateChanged)]
    assert all(e.previous is NodeState.PAUSED and e.state is NodeState.REGISTERED for e in states)


def test_unsupported_and_reload_commands_are_answered_not_ignored() -> None:
    _, sub, _, control = _controller(reload=lambda: (True, "applied live: policy"))
    withdraw = control.handle(Withdraw(all=True))
    assert not withdraw.accepted and "not available" in withdraw.message
    reload = control.handle(ReloadConfig())
    assert reload.accepted and reload.message == "applied live: policy"
    answers = [e for e in sub.drain() if isinstance(e, CommandHandled)]
    assert [a.command for a in answers] == ["withdraw", "reload_config"]


def test_sample_psutil_readings_pause_and_resume_through_the_live_sampler() -> None:
    samples = json.loads(SAMPLES.read_text())["samples"]
    current: dict[str, Any] = {}

    def temperatures():  # type: ignore[no-untyped-def]
        return {c: [shwtemp(*e) for e in entries] for c, entries in current["temperatures"].items()}

    def battery():  # type: ignore[no-untyped-def]
        return None if current["battery"] is None else sbattery(*current["battery"])

    def clock() -> datetime:
        return datetime.fromisoformat(f"2026-11-20T{current['t']}")

    _, sub, miners, control = _controller()
    settings = PolicySettings(cpu_pause_above_c=85, cpu_resume_below_c=75, pause_on_battery=True)
    monitor = PolicyMonitor(
        control, settings, policy_readings(temperatures, battery, clock), interval_s=10
    )
    seen = []
    for index, sample in enumerate(samples):
        current = sample
        assert monitor.tick(now=index * 10.0) is not None
        seen.append((sample["t"], miners[0].paused, tuple(sorted(control.reasons))))
    assert seen == [
        ("16:40", False, ()),
        ("16:45", False, ()),
        ("16:46", True, ("temperature",)),
        ("16:47", True, ("temperature",)),  # hysteresis: 84 is below 85 but not below 75
        ("16:49", True, ("temperature",)),
        ("16:52", False, ()),
        ("17:02", True, ("battery",)),
        ("17:20", True, ("battery",)),
        ("17:40", False, ()),
        ("23:10", False, ()),  # no sensors, no battery: unknown, not a pause
    ]
    paused = [e for e in sub.drain() if isinstance(e, NodeStateChanged)]
    # two miners x (pause, resume) x (heat, battery)
    assert len(paused) == 8
    assert "86 °C" in paused[0].reasons[0].message
    # not due yet: no new sample
    assert monitor.tick(now=len(samples) * 10.0 - 5) is None


def test_policy_cannot_be_resumed_by_command_and_user_pause_survives_policy_clear() -> None:
    _, _, miners, control = _controller()
    settings = PolicySettings(active_hours=(HourWindow.parse("08:00-18:00"),))
    night = policy_readings(dict, lambda: None, lambda: datetime(2026, 11, 20, 23, 0))
    monitor = PolicyMonitor(control, settings, night)
    monitor.tick(0.0)
    assert set(control.reasons) == {"schedule"} and miners[0].paused
    assert not control.handle(Resume(reason="schedule")).accepted
    control.handle(Pause())
    monitor.update(PolicySettings())  # a reload that turns the policy off
    assert set(control.reasons) == {"user"} and miners[0].paused


@dataclass
class FakeWorker:
    pid: int | None
    deaths: list[str]


def test_a_worker_death_raises_an_alert_cleared_when_it_runs_again() -> None:
    from engine.host.node_host import WorkerWatch
    from engine.state.events import Alert

    bus = EventBus()
    sub = bus.subscribe()
    watch = WorkerWatch(bus, {"miner 0xa": "0xa"})
    worker = FakeWorker(pid=100, deaths=[])
    watch.check([("miner 0xa", worker)])
    assert sub.drain() == []
    worker.pid, worker.deaths = None, ["killed by SIGKILL"]  # died; the restart is loading
    watch.check([("miner 0xa", worker)])
    watch.check([("miner 0xa", worker)])
    (raised,) = sub.drain()
    assert isinstance(raised, Alert) and raised.active and raised.node == "0xa"
    assert "killed by SIGKILL" in raised.message
    worker.pid = 101
    watch.check([("miner 0xa", worker)])
    (cleared,) = sub.drain()
    assert isinstance(cleared, Alert) and not cleared.active and "pid 101" in cleared.message
    watch.check([("miner 0xa", worker)])
    assert sub.drain() == []


def test_gpu_temperature_is_the_hottest_nvidia_gpu_and_unknown_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import profiler.nvml
    from engine.host.sensors import hottest_nvidia_gpu

    @dataclass
    class Gpu:
        temperature_c: float | None

    monkeypatch.setattr(profiler.nvml, "probe_nvidia", lambda: [Gpu(61.0), Gpu(None), Gpu(83.0)])
    assert hottest_nvidia_gpu() == 83.0
    monkeypatch.setattr(profiler.nvml, "probe_nvidia", lambda: [])
    assert hottest_nvidia_gpu() is None
    # and through the sampler, the GPU figure reaches the GPU hysteresis
    _, _, miners, control = _controller()
    settings = PolicySettings(gpu_pause_above_c=80, gpu_resume_below_c=70)
    sampler = policy_readings(dict, lambda: None, lambda: datetime(2026, 11, 20, 12), lambda: 83.0)
    PolicyMonitor(control, settings, sampler).tick(0.0)
    assert miners[0].paused and "GPU temperature 83" in control.reasons["temperature"]


def test_benchmark_is_queued_on_miners_that_can_and_refused_where_none_can() -> None:
    _, _, _, control = _controller()
    refused = control.handle(Benchmark())
    assert not refused.accepted and "no miner here can benchmark" in refused.message
    asked: list[str] = []

    @dataclass
    class BenchingMiner(FakeMiner):
        def request_benchmark(self) -> tuple[bool, str]:
            asked.append(self.address)
            return True, "queued"

    control.miners = [BenchingMiner("0xc"), FakeMiner("0xd")]
    queued = control.handle(Benchmark(source="test"))
    assert queued.accepted and "1 miner" in queued.message
    assert asked == ["0xc"]


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("gemma-3-270m-it-q4_k_m.gguf", "Q4_K_M"),
        ("all-MiniLM-L6-v2.F16.gguf", "F16"),
        ("model.gguf", "unknown"),
    ],
)
def test_quant_is_read_from_the_gguf_file_name(name: str, quant: str) -> None:
    from engine.node.benchmarks import quant_of_file

    assert quant_of_file(Path("/models") / name) == quant


def test_a_headless_node_sets_the_payout_on_chain_through_the_same_code_as_the_dashboard() -> None:
    from types import SimpleNamespace

    from eth_account import Account

    from chain.devnet import start_embedded
    from chain.wrappers import model_id
    from engine.state.commands import SetPayout

    chain = start_embedded(oracles=1)
    miner = chain.client(chain.accounts[0])
    miner.registry.register(0, 4096, "0.1.0", [model_id("m")], miner.address)
    node = SimpleNamespace(address=miner.address, client=miner, payout=miner.address, paused=False)
    control = NodeController(EventBus(), [node])
    payout = Account.create().address
    answer = control.handle(SetPayout(address=payout, source="api"))
    assert answer.accepted, answer.message
    assert miner.registry.node_info(miner.address).payout == payout
    refused = NodeController(EventBus(), []).handle(SetPayout(address=payout))
    assert not refused.accepted and "runs no miner" in refused.message


def test_token_meter_sends_a_few_rates_a_second_counted_from_the_first_token() -> None:
    from engine.inference.types import TokenEvent
    from engine.node.generation import TokenMeter

    now = [100.0]
    sent: list[tuple[int, float]] = []
    meter = TokenMeter(lambda tokens, rate: sent.append((tokens, rate)), 0.25, lambda: now[0])
    for index in range(100):  # 100 tokens at 50 tokens/s
        meter.on_token(TokenEvent(index, index, "x"))
        now[0] += 0.02
    assert 7 <= len(sent) <= 8  # about 2 s of tokens, one rate every 0.25 s
    assert all(abs(rate - 50) < 1 for _, rate in sent)
    assert [tokens for tokens, _ in sent] == sorted(tokens for tokens, _ in sent)


def test_hardware_reading_turns_psutil_and_a_fake_nvidia_gpu_into_one_sample() -> None:
    """The `hardware` event's path: psutil's CPU, RAM and sensor shapes, and NVML's GPU list (a
    FAKE NVIDIA GPU here: this VM has none) become one HardwareSample."""
    import psutil

    from engine.host.sensors import hardware_reading
    from engine.state.events import GpuSample
    from profiler.hardware import GPU

    def temperatures():  # type: ignore[no-untyped-def]
        return {
            "coretemp": [shwtemp("Core 0", 55.0, 90.0, 100.0), shwtemp("Core 1", 61.0, 90, 100)]
        }

    gpu = GPU(
        vendor="nvidia",
        name="FAKE RTX",
        memory_total_bytes=8 * 2**30,
        memory_free_bytes=2 * 2**30,
        integrated=False,
        index=1,
        temperature_c=70.0,
        utilisation_pct=97.0,
    )
    sample = hardware_reading(temperatures, lambda: [gpu])()
    assert sample.cpu_percent is not None and 0.0 <= sample.cpu_percent <= 100.0
    assert sample.ram_total_bytes == psutil.virtual_memory().total
    assert sample.cpu_temp_c == 61.0  # the hottest core
    assert sample.gpus == (
        GpuSample(
            index=1,
            name="FAKE RTX",
            util_percent=97.0,
            mem_used_bytes=6 * 2**30,
            mem_total_bytes=8 * 2**30,
            temp_c=70.0,
        ),
    )

    def no_sensors() -> None:
        raise OSError("no sensors on this VM")

    bare = hardware_reading(no_sensors, list)()
    assert bare.cpu_temp_c is None and bare.gpus == ()  # unknown, never an error
