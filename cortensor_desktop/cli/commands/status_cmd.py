"""`status`: ask a running node's status API how it is doing (this home, or every home for fleets).

Reads `api.json` in the data folder (written by `run`), GETs `/1/summary` from 127.0.0.1 and
prints it. With `--all PARENT` it does the same for every home directly under PARENT (one folder
per node, as the systemd template lays them out). Exit code 8 when no node answers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.cli.exit_codes import ExitCode
from cortensor_desktop.service.errors import NodeNotRunningError
from cortensor_desktop.service.local_http import urlopen

START_HINT = "start one with `cortensor-desktop run --headless`"


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from cortensor_desktop.cli.main import add_json_flag

    parser = subparsers.add_parser(
        "status",
        parents=[common],
        help="show a running node's summary (from its local status API)",
        description="Show what a running node is doing: state, role, tokens/s over 10 s, 60 s "
        "and 15 min, tasks by stage, points, precommit score, gas balance, alerts and "
        "pause reasons. Reads api.json in the data folder of this home (CORTENSOR_HOME), or "
        "with --all PARENT of every home under PARENT. Exit code 8 when no node is running.",
    )
    add_json_flag(parser)
    parser.add_argument(
        "--all",
        metavar="PARENT",
        help="every home directly under PARENT (one folder per node), for fleets",
    )
    parser.add_argument(
        "--timeout", type=float, default=3.0, metavar="S", help="seconds to wait for each node"
    )
    parser.set_defaults(handler=_status, needs_config=False)


def api_file_of_home(home: Path) -> Path:
    return home / "data" / "api.json"


def fetch_summary(api_file: Path, timeout: float = 3.0) -> dict[str, Any]:
    """The summary of the node that wrote `api_file`; NodeNotRunningError when none answers."""
    try:
        info = json.loads(api_file.read_text(encoding="utf-8"))
        url = f"http://{info['host']}:{int(info['port'])}/1/summary"
    except FileNotFoundError:
        raise NodeNotRunningError(
            f"no node is running here ({api_file} is absent); {START_HINT}"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NodeNotRunningError(f"{api_file} cannot be read ({exc}); {START_HINT}") from None
    try:
        with urlopen(url, timeout=timeout) as response:
            document: dict[str, Any] = json.loads(response.read())
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NodeNotRunningError(
            f"the node of {api_file} (pid {info.get('pid', '?')}) does not answer at {url} "
            f"({reason}): it stopped or was killed; {START_HINT}"
        ) from None
    return document


def _status(ctx: AppContext, args: argparse.Namespace) -> int:
    if args.all:
        return _status_all(ctx, Path(args.all).expanduser(), args)
    document = fetch_summary(ctx.paths.data_dir / "api.json", args.timeout)
    if ctx.json_output:
        ctx.emit_json(document)
    else:
        for line in describe(document):
            ctx.echo(line)
    return ExitCode.OK


def _status_all(ctx: AppContext, parent: Path, args: argparse.Namespace) -> int:
    if not parent.is_dir():
        raise NodeNotRunningError(f"{parent} is not a folder of node homes")
    homes = sorted(p for p in parent.iterdir() if (p / "data").is_dir() or (p / "config").is_dir())
    rows: list[dict[str, Any]] = []
    for home in homes:
        try:
            rows.append({"home": str(home), **fetch_summary(api_file_of_home(home), args.timeout)})
        except NodeNotRunningError as exc:
            rows.append({"home": str(home), "state": "not_running", "error": str(exc)})
    if ctx.json_output:
        ctx.emit_json({"homes": rows})
    elif not rows:
        ctx.echo(f"no node homes under {parent}")
    else:
        for row in rows:
            tps = row.get("tokens_per_s", {}).get("60s")
            ctx.echo(
                f"{row['home']}: {row['state']}"
                + (f", {tps} tok/s (60 s)" if tps is not None else "")
                + (f", points {row['points']}" if row.get("points") is not None else "")
            )
    running = [r for r in rows if r["state"] != "not_running"]
    if not running:
        raise NodeNotRunningError(f"no node is running under {parent}; {START_HINT}")
    return ExitCode.OK


def _fmt(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def describe(doc: dict[str, Any]) -> list[str]:
    """The summary as a few lines for people (`--json` has everything)."""
    tps = doc.get("tokens_per_s", {})
    lines = [
        f"state      {doc.get('state')}   (uptime {doc.get('uptime_s', 0):.0f} s, "
        f"network {doc.get('network', '-')}, version {doc.get('version', '-')})",
        f"tokens/s   10s {_fmt(tps.get('10s'))}  60s {_fmt(tps.get('60s'))}  "
        f"15m {_fmt(tps.get('15m'))}",
        f"sessions   {doc.get('sessions_ended', 0)} ended, failed txs {doc.get('failed_txs', 0)}, "
        f"worker restarts {doc.get('worker_restarts', 0)}",
    ]
    if doc.get("threads"):
        lines.append(f"threads    {doc['threads']}")
    for reason in doc.get("pause_reasons", []):
        lines.append(f"paused     {reason['code']}: {reason['message']}")
    for alert in doc.get("alerts", []):
        lines.append(f"ALERT      {alert['kind']} ({alert['severity']}): {alert['message']}")
    if doc.get("last_error"):
        lines.append(f"last error {doc['last_error']['message']}")
    for node in doc.get("nodes", []):
        score = node.get("precommit_score")
        lines.append(
            f"{node.get('role') or '?':<6} {node['address']}  {node.get('state') or '-':<10} "
            f"points {_fmt(node.get('points'))}  level {_fmt(node.get('level'))}  "
            f"precommit {'-' if score is None else f'{score:.0%}'}  "
            f"gas {_fmt(node.get('gas_balance_wei'), ' wei')}"
        )
    return lines
