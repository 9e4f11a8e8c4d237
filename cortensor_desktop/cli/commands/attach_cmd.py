"""`attach`: open the dashboard on a running node (a service, a headless `run`) through its API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.cli.exit_codes import UsageError


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "attach",
        parents=[common],
        help="open the dashboard on a node running elsewhere",
        description="Open the dashboard on a running node (a systemd service, `run --headless` "
        "in another terminal) through its local status API: live events over SSE, and the "
        "dashboard's keys (pause, resume, ...) sent back with the API token. Quitting the "
        "dashboard leaves the node running. For a one-shot summary use `status`.",
    )
    parser.add_argument(
        "--home", metavar="PATH", help="the node's CORTENSOR_HOME (default: this home)"
    )
    parser.set_defaults(handler=_attach)


def api_file_for(ctx: AppContext, home: str | None) -> Path:
    return (Path(home).expanduser() / "data" if home else ctx.paths.data_dir) / "api.json"


def build_attach_app(api_file: Path) -> tuple[Any, Any]:
    """The dashboard wired to a remote node, and the event feed to stop when it closes."""
    from cortensor_desktop.service.attach import EventFeed, NodeApi, RemoteCommands
    from cortensor_desktop.tui.app import NodeInfo, create_app
    from engine.state.events import EventBus

    api = NodeApi.from_api_file(api_file)
    summary = api.summary()
    bus = EventBus(history=5000)
    feed = EventFeed(api, bus)
    feed.start()
    info = NodeInfo(
        network=f"{summary.get('network', '?')} (attached, pid {api.pid})",
        model=str(summary.get("model") or "-"),
        tier=str(summary.get("tier") or "-"),
    )
    return create_app(bus, RemoteCommands(api), info), feed


def _attach(ctx: AppContext, args: argparse.Namespace) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "attach opens the dashboard and needs a terminal; "
            "`status --json` prints a running node's summary"
        )
    app, feed = build_attach_app(api_file_for(ctx, args.home))
    try:
        app.run()
    finally:
        feed.stop()
    return 0
