"""The whole protocol in one process with real inference: seven states, validation, points."""

from __future__ import annotations

import time

from chain.events import EventCursor
from engine.host.embedded_network import EmbeddedNetwork
from engine.inference.runtime import InferenceWorker
from engine.protocol import NetworkStage
from engine.state.events import (
    EventBus,
    NetworkTaskStage,
    PointsUpdated,
    TokenProgress,
    ValidationResult,
)
from tests.node.conftest import CannedTextMiner


def _wait_for_sessions(network: EmbeddedNetwork, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    assert network.oracle is not None
    while network.oracle.sessions_ended < count:
        assert time.monotonic() < deadline, "no network task ended in time"
        time.sleep(0.5)


def test_network_task_passes_seven_states_and_a_canned_miner_fails(make_network) -> None:
    bus = EventBus()
    sub = bus.subscribe(maxsize=10_000)

    def chat(index: int, worker: InferenceWorker):  # type: ignore[no-untyped-def]
        return CannedTextMiner(worker) if index == 2 else worker

    network = make_network(miners=3, miner_chat=chat, bus=bus)
    _wait_for_sessions(network, 1, timeout_s=240)
    events = sub.drain()
    stages = {e.stage for e in events if isinstance(e, NetworkTaskStage) and e.session_id == 1}
    assert stages == set(NetworkStage), f"missing stages: {set(NetworkStage) - stages}"

    verdicts = {e.miner: e for e in events if isinstance(e, ValidationResult)}
    honest = [m.address for m in network.miners[:2]]
    cheat = network.miners[2].address
    selected = network.oracle.client.cognitive.selected(1) if network.oracle else []
    for miner in honest:
        if miner in selected:
            assert verdicts[miner].passed, verdicts[miner]
    if cheat in selected:
        assert not verdicts[cheat].passed
        assert verdicts[cheat].failed_checks  # says which check caught it

    # On chain: the honest miners scored as passing, the canned one not.
    cognitive = network.miners[0].client.cognitive
    scored = EventCursor("Cognitive", cognitive.contract, "MinerScored", 0).poll()
    passed_on_chain = {str(e.args["miner"]): bool(e.args["passed"]) for e in scored}
    for miner in selected:
        assert passed_on_chain[miner] is (miner != cheat)

    points = [e for e in events if isinstance(e, PointsUpdated)]
    assert points and all(p.precommit_score == 1.0 for p in points)
    # While honest miners generate, the views get live tokens/s (a few events a second).
    progress = [e for e in events if isinstance(e, TokenProgress)]
    assert progress and all(e.tokens > 1 and e.tokens_per_s > 0 for e in progress)
    assert {e.node for e in progress} <= set(honest)


def test_benchmark_command_measures_the_served_model_between_tasks(make_network) -> None:
    from cortensor_desktop.hosting.dashboard_host import NetworkHost
    from engine.state.commands import Benchmark
    from engine.state.events import BenchmarkResult, CommandHandled

    bus = EventBus()
    sub = bus.subscribe(maxsize=10_000)
    network = make_network(miners=1, bus=bus)
    answer = NetworkHost(network).handle(Benchmark(source="test"))
    assert answer.accepted, answer.message
    deadline = time.monotonic() + 120
    results: list[BenchmarkResult] = []
    while not results:
        assert time.monotonic() < deadline, "no benchmark result in time"
        time.sleep(0.5)
        results = [e for e in sub.drain() if isinstance(e, BenchmarkResult)]
    (result,) = results
    assert result.node == network.miners[0].address
    assert result.model_id == "smollm2-135m-instruct" and result.quant == "Q4_1"
    assert result.gen_tokens_per_s > 0 and result.prompt_tokens_per_s > 0
    assert 0 < result.ttft_s < 30 and result.checksum and result.tier == "cpu-low"
    rows = network.db.query("SELECT model_id, quant FROM benchmarks")
    assert [(r["model_id"], r["quant"]) for r in rows] == [("smollm2-135m-instruct", "Q4_1")]
    assert not [e for e in sub.drain() if isinstance(e, CommandHandled) and not e.accepted]


def test_pause_takes_the_miners_out_of_selection_on_chain_and_resume_brings_them_back(
    make_network,
) -> None:
    from cortensor_desktop.hosting.dashboard_host import NetworkHost
    from engine.state.commands import Pause, Resume

    network = make_network(miners=2)
    host = NetworkHost(network)
    registry = network.miners[0].client.registry

    def away() -> list[bool]:
        return [registry.node_info(m.address).away for m in network.miners]

    def wait_until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.3)

    assert host.handle(Pause(source="test")).accepted
    wait_until(lambda: away() == [True, True], "the pause did not reach the chain")
    assert registry.present_miners() == []
    assert host.handle(Resume(source="test")).accepted
    wait_until(lambda: away() == [False, False], "the resume did not reach the chain")
    assert sorted(registry.present_miners()) == sorted(m.address for m in network.miners)


def test_stop_then_start_runs_the_embedded_network_anew_with_the_same_accounts(
    tmp_path, models_dir
) -> None:
    from cortensor_desktop.hosting.dashboard_host import NetworkHost
    from engine.host.embedded_network import EmbeddedNetworkSettings
    from engine.state.commands import Start, Stop
    from engine.state.database import Database
    from engine.state.events import NodeState, NodeStateChanged

    bus = EventBus()
    sub = bus.subscribe(maxsize=10_000)
    settings = EmbeddedNetworkSettings(miners=1)
    host = NetworkHost.embedded(Database(tmp_path / "node.sqlite3"), models_dir, bus, settings)
    host.start()
    try:
        assert host.started.wait(120), host.failed
        first = host.network
        address = first.miners[0].address
        assert host.handle(Stop(source="test")).accepted
        deadline = time.monotonic() + 60
        while not any(
            isinstance(e, NodeStateChanged) and e.state is NodeState.STOPPED and e.node == address
            for e in sub.drain()
        ):
            assert time.monotonic() < deadline, "the miner did not stop"
            time.sleep(0.2)
        assert host.handle(Start(source="test")).accepted
        assert host.started.wait(120), host.failed
        assert host.network is not first and host.network.miners[0].address == address
        assert host.network.miners[0].client.registry.node_info(address).status != 0
    finally:
        host.stop()
        host.network.stop()
