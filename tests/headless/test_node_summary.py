"""The summary reducer, fed plain events: what `/1/summary`, `status` and `/metrics` show."""

from __future__ import annotations

from engine.protocol import NetworkStage, NodeRole, TaskKind, TaskRole
from engine.state.events import (
    Alert,
    AlertKind,
    EarningsUpdated,
    EventBus,
    EventsDropped,
    InferenceFinished,
    NetworkTaskStage,
    NodeState,
    NodeStateChanged,
    PauseReason,
    PingSent,
    PointsUpdated,
    Severity,
    TokenProgress,
    TxStatus,
    ValidationResult,
)
from engine.state.summary import Summary

MINER, ORACLE = "0xminer", "0xoracle"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _setup() -> tuple[EventBus, Summary, Clock]:
    clock = Clock()
    bus = EventBus(clock=clock)
    summary = Summary(started_at=clock.now)
    sub = bus.subscribe()
    original = bus.publish

    def publish(event, **kw):  # type: ignore[no-untyped-def]
        out = original(event, **kw)
        for e in sub.drain():
            summary.apply(e)
        return out

    bus.publish = publish  # type: ignore[method-assign]
    return bus, summary, clock


def _inference(tokens: int, tps: float) -> InferenceFinished:
    return InferenceFinished(
        node=MINER,
        role=NodeRole.MINER,
        task_kind=TaskKind.NETWORK,
        session_id=1,
        prompt_tokens=10,
        generated_tokens=tokens,
        ttft_s=0.1,
        tokens_per_s=tps,
    )


def test_tokens_per_second_windows_weight_by_generating_time_and_expire() -> None:
    bus, summary, clock = _setup()
    bus.publish(_inference(100, 10.0))  # 10 s of generating
    clock.now += 30
    bus.publish(_inference(300, 30.0))  # 10 s more
    rates = summary.to_dict(clock.now)["nodes"][0]["tokens_per_s"]
    assert rates["10s"] == 30.0  # only the second one finished in the last 10 s
    assert rates["60s"] == 20.0  # 400 tokens over 20 s generating, not the mean of 10 and 30
    clock.now += 120
    rates = summary.to_dict(clock.now)["nodes"][0]["tokens_per_s"]
    assert rates["10s"] is None and rates["60s"] is None
    assert rates["15m"] == 20.0
    bus.publish(
        TokenProgress(
            node=MINER,
            role=NodeRole.MINER,
            task_kind=TaskKind.NETWORK,
            session_id=2,
            tokens=5,
            tokens_per_s=7.5,
        )
    )
    assert summary.to_dict(clock.now)["tokens_per_s"]["current"] == 7.5


def test_tasks_by_stage_failures_and_last_error() -> None:
    bus, summary, _ = _setup()
    for stage, status in [
        (NetworkStage.PRECOMMIT, TxStatus.CONFIRMED),
        (NetworkStage.COMMIT, TxStatus.CONFIRMED),
        (NetworkStage.COMMIT, TxStatus.FAILED),
    ]:
        bus.publish(
            NetworkTaskStage(
                node=MINER,
                role=NodeRole.MINER,
                session_id=1,
                stage=stage,
                task_role=TaskRole.ANSWERER,
                status=status,
                detail="reverted: late",
            )
        )
    bus.publish(
        NetworkTaskStage(
            node=ORACLE,
            role=NodeRole.ORACLE,
            session_id=1,
            stage=NetworkStage.END,
            task_role=TaskRole.ORACLE,
            status=TxStatus.CONFIRMED,
        )
    )
    doc = summary.to_dict(2000.0)
    assert doc["tasks"]["network"]["commit"] == {"confirmed": 1, "failed": 1}
    assert doc["tasks"]["network"]["precommit"] == {"confirmed": 1}
    assert doc["sessions_ended"] == 1
    assert doc["failed_txs"] == 1
    assert doc["last_error"]["message"] == "commit failed: reverted: late"
    assert doc["last_error"]["node"] == MINER
    assert sorted(doc["roles"]) == ["miner", "oracle"]


def test_points_earnings_alerts_and_pause_reasons() -> None:
    bus, summary, _ = _setup()
    bus.publish(NodeStateChanged(node=MINER, role=NodeRole.MINER, state=NodeState.REGISTERED))
    assert summary.state() == "running"
    bus.publish(
        PointsUpdated(
            node=MINER,
            role=NodeRole.MINER,
            points=12,
            level=2,
            precommit_points=3,
            precommit_counter=4,
            precommit_score=0.75,
            ping_count=9,
        )
    )
    bus.publish(
        EarningsUpdated(
            node=MINER,
            role=NodeRole.MINER,
            earned_wei=10**18,
            withdrawable_wei=5,
            gas_balance_wei=7 * 10**17,
        )
    )
    bus.publish(
        Alert(
            node=MINER,
            role=NodeRole.MINER,
            kind=AlertKind.LOW_GAS,
            severity=Severity.WARNING,
            message="gas low",
        )
    )
    bus.publish(
        NodeStateChanged(
            node=MINER,
            role=NodeRole.MINER,
            state=NodeState.PAUSED,
            previous=NodeState.REGISTERED,
            reasons=(PauseReason("user", "paused by api"), PauseReason("battery", "on battery")),
        )
    )
    doc = summary.to_dict(2000.0)
    node = doc["nodes"][0]
    assert (node["points"], node["level"], node["precommit_score"]) == (12, 2, 0.75)
    assert node["earnings"]["earned_wei"] == 10**18 and node["gas_balance_wei"] == 7 * 10**17
    assert doc["state"] == "paused"
    assert {r["code"] for r in doc["pause_reasons"]} == {"user", "battery"}
    assert [a["kind"] for a in doc["alerts"]] == ["low_gas"]
    bus.publish(
        Alert(
            node=MINER,
            role=NodeRole.MINER,
            kind=AlertKind.LOW_GAS,
            severity=Severity.INFO,
            message="topped up",
            active=False,
        )
    )
    bus.publish(
        NodeStateChanged(
            node=MINER, role=NodeRole.MINER, state=NodeState.REGISTERED, previous=NodeState.PAUSED
        )
    )
    doc = summary.to_dict(2000.0)
    assert doc["alerts"] == [] and doc["pause_reasons"] == [] and doc["state"] == "running"


def test_worker_crash_alerts_count_restarts_and_validation_scores_are_bucketed() -> None:
    bus, summary, _ = _setup()
    bus.publish(
        Alert(
            node=MINER,
            role=NodeRole.MINER,
            kind=AlertKind.WORKER_CRASH,
            severity=Severity.ERROR,
            message="worker died (SIGKILL)",
        )
    )
    bus.publish(
        ValidationResult(
            node=ORACLE,
            role=NodeRole.ORACLE,
            task_kind=TaskKind.NETWORK,
            session_id=1,
            miner=MINER,
            top1_agreement=0.93,
            cosine=0.9,
            ended_properly=True,
            checksum_match=None,
            passed=True,
            top1_min=0.8,
            cosine_min=0.7,
            require_proper_ending=True,
            require_checksum=False,
        )
    )
    doc = summary.to_dict(2000.0)
    assert doc["worker_restarts"] == 1
    assert doc["last_error"]["message"] == "worker died (SIGKILL)"
    oracle = summary.nodes[ORACLE]
    assert oracle.validations_passed == 1 and oracle.scores.count == 1
    assert oracle.scores.counts[9] == 1  # 0.9 < 0.93 <= 0.95
    assert summary.nodes[MINER].scores_received.count == 1


def test_dropped_events_are_counted_and_unknown_nodes_do_not_appear() -> None:
    summary = Summary()
    summary.apply(EventsDropped(count=3))
    doc = summary.to_dict(10.0)
    assert doc["events"]["dropped"] == 3
    assert doc["nodes"] == [] and doc["state"] == "starting"


def test_pings_without_task_transactions_make_a_stall_and_a_task_clears_it() -> None:
    bus, summary, _ = _setup()
    for n in range(25):
        bus.publish(
            PingSent(node=MINER, role=NodeRole.MINER, tx_hash=f"0x{n}", status=TxStatus.CONFIRMED)
        )
    node = summary.to_dict(2000.0)["nodes"][0]
    assert node["stalled"] and node["pings_since_task"] == 25
    assert [a["kind"] for a in summary.to_dict(2000.0)["alerts"]] == ["stall"]
    bus.publish(
        NetworkTaskStage(
            node=MINER,
            role=NodeRole.MINER,
            session_id=3,
            stage=NetworkStage.PRECOMMIT,
            task_role=TaskRole.ANSWERER,
            status=TxStatus.CONFIRMED,
        )
    )
    node = summary.to_dict(2000.0)["nodes"][0]
    assert not node["stalled"] and node["alerts"] == []
    assert node["last_active_ts"] is not None
