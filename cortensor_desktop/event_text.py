"""Event text: one human line per event an operator watches, for every reader that shows them.

The headless log (`hosting/headless.py`) and the dashboard's log panel (`tui/app.py`) print the
same words. Full transaction hashes are 64 hex digits, the shape of a private key, which the log
redaction filter masks; lines therefore show them abbreviated (`short`), and `--record FILE` keeps
the full events. Pure: no logging, no textual.
"""

from __future__ import annotations

from engine.state.events import (
    Alert,
    CommandHandled,
    Event,
    EventsDropped,
    InferenceFinished,
    NetworkTaskStage,
    NodeStateChanged,
    PingSent,
    PointsUpdated,
    PreflightStep,
    ValidationResult,
)


def short(value: str | None, keep: int = 10) -> str:
    """An address or hash cut to `keep` characters and an ellipsis; "-" for none."""
    if not value:
        return "-"
    return value if len(value) <= keep + 2 else f"{value[:keep]}…"


def _network_task(e: NetworkTaskStage) -> str:
    detail = f" ({e.detail})" if e.detail else ""
    return (
        f"session {e.session_id} {e.stage.value:<9} {e.task_role.value:<8} "
        f"{short(e.node)} {e.status.value} tx {short(e.tx_hash)}{detail}"
    )


def _validation(e: ValidationResult) -> str:
    cosine = f"{e.cosine:.2f}" if e.cosine is not None else "-"
    verdict = "PASS" if e.passed else f"FAIL ({e.figures()})"
    agreement = e.top1_agreement if e.agreement is None else e.agreement
    margin = "" if e.near_tie_margin is None else f" within {e.near_tie_margin:.2f} nats"
    return (
        f"session {e.session_id} validate  miner {short(e.miner)} top1{margin} "
        f"{agreement:.2f} (min {e.top1_min:.2f}) cosine {cosine} "
        f"ending {'ok' if e.ended_properly else 'bad'}: {verdict}"
    )


def _points(e: PointsUpdated) -> str:
    score = f"{e.precommit_score:.0%}" if e.precommit_score is not None else "-"
    return (
        f"points {short(e.node)}: {e.points} points, level {e.level}, "
        f"precommit score {score}, pings {e.ping_count}"
    )


def format_event(event: Event) -> str | None:
    """One human line for the events an operator watches; None for the rest."""
    match event:
        case Alert():
            if not event.active:
                return f"alert {event.kind.value} cleared: {event.message}"
            return f"ALERT {event.kind.value} ({event.severity.value}): {event.message}"
        case NetworkTaskStage():
            return _network_task(event)
        case ValidationResult():
            return _validation(event)
        case PointsUpdated():
            return _points(event)
        case PreflightStep():
            return f"preflight {short(event.node)}: {event.step} {event.status.value}"
        case NodeStateChanged():
            why = f" ({event.detail})" if event.detail else ""
            return f"node {short(event.node)} is {event.state.value}{why}"
        case CommandHandled():
            verdict = "done" if event.accepted else "refused"
            note = f": {event.message}" if event.message else ""
            return f"command {event.command} {short(event.command_id, 8)} {verdict}{note}"
        case PingSent():
            return f"ping {short(event.node)} tx {short(event.tx_hash)}"
        case InferenceFinished():
            return (
                f"inference {short(event.node)}: {event.generated_tokens} tokens at "
                f"{event.tokens_per_s:.1f} tok/s (first token {event.ttft_s * 1000:.0f} ms)"
            )
        case EventsDropped():
            return f"the log reader fell behind and skipped {event.count} events"
    return None
