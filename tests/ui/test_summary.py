"""The dashboard's reducer, with plain events: what each panel will show after a stream."""

from __future__ import annotations

from engine.protocol import NetworkStage, NodeRole, TaskKind, TaskRole
from engine.state.events import (
    Alert,
    AlertKind,
    EarningsUpdated,
    Event,
    EventsDropped,
    NetworkTaskStage,
    NodeState,
    NodeStateChanged,
    PauseReason,
    Severity,
    TxStatus,
    UnknownEvent,
    ValidationResult,
)
from engine.state.summary import DEFAULT_LOW_GAS_WEI as LOW_GAS_WEI
from engine.state.summary import Summary


def test_recorded_run_folds_into_the_sessions_points_and_verdicts(recorded: list[Event]) -> None:
    summary = Summary()
    summary.apply_all(recorded)
    miners = summary.miners()
    assert len(miners) == 3
    assert all(m.points and m.points > 0 for m in miners)
    assert all(m.precommit_score == 1.0 for m in miners)
    assert {t.session_id for t in summary.tasks.values()} == {1, 2}
    oracle_rows = [t for t in summary.tasks.values() if t.roles == ["oracle"]]
    assert {t.current for t in oracle_rows} == {"end"}
    assert summary.passed_ratio() == (6, 6)
    assert len(summary.rates) == sum(1 for e in recorded if e.type == "inference_finished")
    # The run ended with a clean stop: every miner's last state is `stopped`.
    assert {m.state for m in miners} == {"stopped"}


def _stage(session: int, stage: NetworkStage, role: TaskRole, status: TxStatus, ts: float) -> Event:
    return NetworkTaskStage(
        node="0xminer",
        role=NodeRole.MINER,
        ts=ts,
        session_id=session,
        stage=stage,
        task_role=role,
        status=status,
        tx_hash=f"0x{session:064x}",
    )


def test_a_task_keeps_its_stages_roles_and_duration() -> None:
    summary = Summary()
    summary.apply(_stage(7, NetworkStage.CREATE, TaskRole.CREATOR, TxStatus.CONFIRMED, 10.0))
    summary.apply(_stage(7, NetworkStage.PRECOMMIT, TaskRole.ANSWERER, TxStatus.SENT, 14.5))
    summary.apply(_stage(7, NetworkStage.COMMIT, TaskRole.ANSWERER, TxStatus.FAILED, 16.0))
    (task,) = summary.tasks.values()
    assert task.roles == ["creator", "answerer"]
    assert task.stages == {"create": "confirmed", "precommit": "sent", "commit": "failed"}
    assert task.current == "commit"
    assert task.duration_s == 6.0
    assert task.detail == "failed"


def test_old_tasks_and_validations_roll_off() -> None:
    summary = Summary(max_tasks=3)
    for session in range(10):
        summary.apply(_stage(session, NetworkStage.CREATE, TaskRole.CREATOR, TxStatus.SENT, 1.0))
    assert [t.session_id for t in summary.tasks.values()] == [7, 8, 9]


def test_pause_reasons_alerts_gas_and_dropped_events() -> None:
    summary = Summary()
    reason = PauseReason("temperature", "CPU 91 °C: paused above 90 °C")
    summary.apply(
        NodeStateChanged(node="0xm", role=NodeRole.MINER, state=NodeState.PAUSED, reasons=(reason,))
    )
    assert summary.paused
    assert summary.nodes["0xm"].pause_reasons == (reason,)
    summary.apply(
        NodeStateChanged(
            node="0xm", role=NodeRole.MINER, state=NodeState.REGISTERED, previous=NodeState.PAUSED
        )
    )
    assert not summary.paused and summary.nodes["0xm"].pause_reasons == ()

    summary.apply(
        EarningsUpdated(earned_wei=5, withdrawable_wei=5, gas_balance_wei=LOW_GAS_WEI - 1)
    )
    assert summary.low_gas
    summary.apply(EarningsUpdated(earned_wei=5, withdrawable_wei=5, gas_balance_wei=LOW_GAS_WEI))
    assert not summary.low_gas
    summary.apply(Alert(kind=AlertKind.LOW_GAS, severity=Severity.WARNING, message="gas low"))
    assert summary.low_gas and "low_gas" in summary.alerts
    summary.apply(Alert(kind=AlertKind.LOW_GAS, severity=Severity.INFO, message="ok", active=False))
    assert not summary.low_gas and not summary.alerts

    summary.apply(EventsDropped(count=4))
    summary.apply(UnknownEvent(type_name="from_the_future", payload={"type": "from_the_future"}))
    assert summary.dropped == 4
    assert summary.events_seen == 7  # the unknown event is skipped, not counted


def test_a_failed_validation_keeps_its_failed_checks() -> None:
    summary = Summary()
    summary.apply(
        ValidationResult(
            task_kind=TaskKind.NETWORK,
            session_id=3,
            miner="0xbad",
            top1_agreement=0.12,
            cosine=0.2,
            ended_properly=True,
            checksum_match=None,
            passed=False,
            failed_checks=("top1", "cosine"),
            top1_min=0.8,
            cosine_min=0.3,
            require_proper_ending=True,
            require_checksum=False,
        )
    )
    assert summary.passed_ratio() == (0, 1)
    assert summary.validations[0].failed_checks == ("top1", "cosine")
