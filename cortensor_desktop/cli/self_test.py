"""`--self-test [--json]`: run the self-test's steps and report them (see `selftest`)."""

from __future__ import annotations

import argparse
import sys

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.cli.exit_codes import ExitCode
from cortensor_desktop.selftest import StepReport, run_self_test


def run_self_test_command(ctx: AppContext, args: argparse.Namespace) -> int:
    def show(step: StepReport) -> None:
        # Progress goes to stderr with --json, so stdout stays one JSON document.
        line = f"{step.status:<8}{step.name:<10}{step.duration_s:7.2f}s  {step.detail}"
        print(line, file=sys.stderr if ctx.json_output else ctx.stdout, flush=True)

    report = run_self_test(home=ctx.paths.home, on_step=show)
    if ctx.json_output:
        ctx.emit_json(report.to_json())
    elif report.ok:
        ctx.echo(f"self-test passed: {len(report.steps)} steps in {report.duration_s:.1f}s")
    else:
        ctx.echo(f"self-test failed: {', '.join(report.failed)}")
    if not report.ok:
        failed = "; ".join(f"{s.name}: {s.detail}" for s in report.steps if not s.ok)
        print(f"cortensor-desktop: self-test failed at step {failed}", file=sys.stderr)
        return int(ExitCode.UNEXPECTED)
    return int(ExitCode.OK)
