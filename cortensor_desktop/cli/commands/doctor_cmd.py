"""`doctor [--json] [--bundle FILE] [--quick]`: can this node earn? Each problem with what to do."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cortensor_desktop.cli.context import AppContext

MARK = {"ok": "ok ", "info": "-- ", "warning": "!! ", "error": "XX "}


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from cortensor_desktop.cli.main import add_json_flag

    parser = subparsers.add_parser(
        "doctor",
        parents=[common],
        help="check everything this node needs to earn, and say what to fix",
        description="Run the offline self-test, then check the active network's RPCs and chain "
        "id, the contracts' protocol version, gas and its runway, the keyring, proxies, the "
        "local status API, the installed models, the clock against the chain and disk space "
        "for the chosen model. Each check is ok, info, warning or error with what to do; the "
        "exit code is 1 when any check is an error, 0 otherwise.",
    )
    add_json_flag(parser)
    parser.add_argument(
        "--bundle",
        metavar="FILE",
        type=Path,
        help="also write a redacted .tar.gz for a bug report (no keys, passphrases or tokens)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="skip the offline self-test (the slowest check)"
    )
    # A broken config is a finding, not a reason to refuse: logging starts without it.
    parser.set_defaults(handler=_doctor, needs_config=False)


def _doctor(ctx: AppContext, args: argparse.Namespace) -> int:
    from cortensor_desktop.doctor import Level, worst
    from cortensor_desktop.doctor.bundle import write_bundle
    from cortensor_desktop.doctor.checks import run_checks

    checks = run_checks(ctx, offline=not args.quick)
    bundle = None
    if args.bundle is not None:
        bundle = args.bundle.expanduser()
        write_bundle(ctx, checks, bundle)
    verdict = worst(checks)
    if ctx.json_output:
        ctx.emit_json(
            {
                "ok": verdict is not Level.ERROR,
                "worst": verdict.value,
                "checks": [c.to_json() for c in checks],
                "bundle": str(bundle) if bundle else None,
            }
        )
    else:
        for check in checks:
            ctx.echo(f"{MARK[check.level.value]}{check.name:<11} {check.message}")
            if check.remedy and check.level in (Level.WARNING, Level.ERROR):
                ctx.echo(f"{'':15}-> {check.remedy}")
        if bundle is not None:
            ctx.echo(
                f"\nbundle for a bug report: {bundle} (redacted: no keys, passphrases, tokens)"
            )
    return 1 if verdict is Level.ERROR else 0
