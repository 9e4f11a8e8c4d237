"""`cortensor-desktop --self-test`: prove a build works on this machine, offline.

A self-test is a list of named steps (`steps.DEFAULT_STEPS`). Each runs in its own daemon thread
under its own timeout, so a step that hangs is reported as failed and the next step still runs;
each reports ok or failed, how long it took, a one-line detail and a few facts for `--json`.
The run passes only when every step passed.

To add a step, write a function `(SelfTestContext) -> StepOutcome` that raises on failure
(with a message written for the user) and append a `Step` to `steps.DEFAULT_STEPS`.

`CORTENSOR_SELFTEST_FAIL=NAME[,NAME...]` makes the named steps fail on purpose: tests use it to
check that a failure is named, operators to check that their alerting sees a failed self-test.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORCE_FAIL_ENV = "CORTENSOR_SELFTEST_FAIL"


class SelfTestError(Exception):
    """A step's failure, with a message for the user."""


@dataclass(frozen=True)
class SelfTestContext:
    """What every step gets: a scratch folder removed after the run, and the app's folders."""

    scratch: Path
    home: Path | None


@dataclass(frozen=True)
class StepOutcome:
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    name: str
    description: str
    run: Callable[[SelfTestContext], StepOutcome]
    timeout_s: float = 60.0


@dataclass(frozen=True)
class StepReport:
    name: str
    description: str
    ok: bool
    status: str  # "ok", "failed" or "timeout"
    duration_s: float
    detail: str
    facts: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "ok": self.ok,
            "status": self.status,
            "duration_s": round(self.duration_s, 3),
            "detail": self.detail,
            "facts": self.facts,
        }


@dataclass(frozen=True)
class SelfTestReport:
    steps: tuple[StepReport, ...]
    duration_s: float

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps if not step.ok)

    def to_json(self) -> dict[str, Any]:
        from cortensor_desktop import __version__

        return {
            "ok": self.ok,
            "failed": list(self.failed),
            "version": __version__,
            "frozen": bool(getattr(sys, "frozen", False)),
            "platform": {
                "system": platform.system(),
                "machine": platform.machine(),
                "python": platform.python_version(),
            },
            "duration_s": round(self.duration_s, 3),
            "steps": [step.to_json() for step in self.steps],
        }


def forced_failures(environ: dict[str, str] | None = None) -> frozenset[str]:
    env = os.environ if environ is None else environ
    return frozenset(n.strip() for n in env.get(FORCE_FAIL_ENV, "").split(",") if n.strip())


def run_step(step: Step, ctx: SelfTestContext, force_fail: bool = False) -> StepReport:
    """Run one step in a daemon thread; a step still running at its timeout is abandoned."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            if force_fail:
                raise SelfTestError(f"forced failure ({FORCE_FAIL_ENV}={step.name})")
            box["outcome"] = step.run(ctx)
        except BaseException as exc:
            box["error"] = exc

    start = time.perf_counter()
    thread = threading.Thread(target=target, name=f"selftest-{step.name}", daemon=True)
    thread.start()
    thread.join(step.timeout_s)
    duration = time.perf_counter() - start
    if thread.is_alive():
        return StepReport(
            step.name,
            step.description,
            False,
            "timeout",
            duration,
            f"did not finish within {step.timeout_s:g}s",
            {},
        )
    if "error" in box:
        exc = box["error"]
        message = str(exc) if isinstance(exc, SelfTestError) else f"{type(exc).__name__}: {exc}"
        return StepReport(step.name, step.description, False, "failed", duration, message, {})
    outcome: StepOutcome = box["outcome"]
    return StepReport(
        step.name, step.description, True, "ok", duration, outcome.detail, outcome.facts
    )


def run_self_test(
    steps: Sequence[Step] | None = None,
    home: Path | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    environ: dict[str, str] | None = None,
) -> SelfTestReport:
    """Run every step in order (a failure does not stop the others) and collect the reports."""
    if steps is None:
        from cortensor_desktop.selftest.steps import DEFAULT_STEPS

        steps = DEFAULT_STEPS
    names = [step.name for step in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"self-test step names must be unique: {names}")
    forced = forced_failures(environ)
    reports: list[StepReport] = []
    start = time.perf_counter()
    # Not a context manager: a timed-out step's thread may still hold files in the folder.
    scratch = tempfile.TemporaryDirectory(prefix="cortensor-selftest-", ignore_cleanup_errors=True)
    ctx = SelfTestContext(scratch=Path(scratch.name), home=home)
    for step in steps:
        report = run_step(step, ctx, force_fail=step.name in forced)
        reports.append(report)
        if on_step is not None:
            on_step(report)
    scratch.cleanup()
    return SelfTestReport(tuple(reports), time.perf_counter() - start)
