"""`run`: the node in the foreground until Ctrl-C or SIGTERM.

On the `embedded` network it runs the chain, an oracle and k miners in this one process, so a
single machine sees the whole protocol. On any other network (a devnet on anvil, a testnet) one
process is one node, miner or oracle, signing with this home's wallet (created on first start
from the passphrase source). On a terminal the embedded network runs behind the dashboard;
otherwise, or with `--headless`, the run loop in `hosting/run_loop.py` logs the event stream and
serves the status API. This module parses the arguments and chooses the mode; the node is built
in hosting/assembly.py and hosting/headless_runs.py, the dashboard wired in cli/dashboard_run.py.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.cli.exit_codes import ExitCode, UsageError
from cortensor_desktop.hosting.assembly import check_cpu_runs_this_build

if TYPE_CHECKING:
    from cortensor_desktop.hosting.headless_runs import RunLimits
    from engine.host.loop_threads import LoopDeath


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "run",
        parents=[common],
        help="run the node in the foreground",
        description="Run the node until Ctrl-C or SIGTERM. On the embedded network (the "
        "default) this starts an in-process chain with the contracts, one oracle and --miners "
        "miners, each with its own llama.cpp worker, and logs every step of every network "
        "task: request, create, prepare, start, precommit, commit, end, with validation scores "
        "and points. On any other network this process is one node (--role miner or oracle) "
        "signing with this home's wallet.",
    )
    parser.add_argument(
        "--headless",
        action="store_true",
        help="no dashboard: log the event stream (the default when not on a terminal)",
    )
    parser.add_argument(
        "--role",
        choices=["miner", "oracle", "both"],
        default="both",
        help="which loops this node runs: the embedded network runs both; on any other "
        "network one process is one node, miner or oracle",
    )
    parser.add_argument(
        "--passphrase-file",
        metavar="PATH",
        help="read the wallet passphrase from PATH (else CORTENSOR_PASSPHRASE_FILE, "
        "CORTENSOR_PASSPHRASE, a secure keyring, or a prompt on a terminal)",
    )
    parser.add_argument(
        "--miners",
        type=int,
        default=3,
        metavar="N",
        help="miners on the embedded network (default 3)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop cleanly after this many seconds (default: run until stopped)",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        metavar="N",
        help="stop cleanly after the oracle has ended N network tasks",
    )
    parser.add_argument(
        "--record", metavar="FILE", help="also write every event as JSON lines to FILE (replayable)"
    )
    parser.add_argument(
        "--replay",
        metavar="FILE",
        help="show a recording (from --record) instead of running a node: in the dashboard on "
        "a terminal, as log lines otherwise",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        metavar="X",
        help="with --replay: 1 is the recorded pace, 10 ten times faster (default: at once)",
    )
    parser.set_defaults(handler=_run)


def _run(ctx: AppContext, args: argparse.Namespace) -> int:
    if getattr(args, "replay", None):
        return _run_replay(args)
    if args.miners < 1 or args.miners > 8:
        raise UsageError("--miners must be between 1 and 8 on the embedded network")
    check_cpu_runs_this_build(ctx)
    if ctx.network.embedded:
        if not args.headless and wants_dashboard():
            return _run_dashboard(ctx, args)
        return _run_embedded(ctx, args)
    if args.role == "both":
        raise UsageError(
            f"on network '{ctx.network.name}' one process is one node: "
            "choose --role miner or --role oracle"
        )
    return _run_node(ctx, args)


def _run_replay(args: argparse.Namespace) -> int:
    """A recording played back through the same readers a live run has (Dolphie-style)."""
    from engine.state.events import EventBus
    from engine.state.recording import replay

    path = Path(args.replay).expanduser()
    if not path.is_file():
        raise UsageError(f"--replay: no such recording: {path}")
    if args.speed is not None and args.speed <= 0:
        raise UsageError("--speed must be positive (1 is the recorded pace)")
    if args.headless or not wants_dashboard():
        from cortensor_desktop.hosting.headless import log_event

        for event in replay(path, speed=args.speed):
            log_event(event)
        return ExitCode.OK
    from cortensor_desktop.cli.dashboard_run import quiet_stderr_logging
    from cortensor_desktop.tui.app import NodeInfo, create_app

    quiet_stderr_logging()
    bus = EventBus(history=10_000)

    def feed() -> None:
        for event in replay(path, speed=args.speed):
            bus.publish(event, stamp=False)

    info = NodeInfo(network=f"replay of {path.name}")
    app = create_app(bus, None, info, handle_signals=True)
    app.clock = lambda: app.summary.last_ts or time.time()  # uptimes as of the recording
    threading.Thread(target=feed, name="replay", daemon=True).start()
    app.run()
    return ExitCode.OK


def wants_dashboard() -> bool:
    """A person is watching: stdin and stdout are both a terminal."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _limits(args: argparse.Namespace) -> RunLimits:
    """--duration, --sessions and --record, for whichever mode runs."""
    from cortensor_desktop.hosting.headless_runs import RunLimits

    record = Path(args.record).expanduser() if args.record else None
    return RunLimits(duration_s=args.duration, sessions=args.sessions, record=record)


def _run_dashboard(ctx: AppContext, args: argparse.Namespace) -> int:
    """The dashboard in front of the embedded network; q quits at once and the node stops."""
    from cortensor_desktop.cli.dashboard_run import run_dashboard

    elsewhere = run_dashboard(ctx, args.miners, _limits(args))
    # Interpreter teardown with the engine's daemon threads and spawn workers around takes about
    # a second; the node's state is in SQLite and the journal, so main() may leave at once.
    args.fast_exit = True
    if elsewhere:
        ctx.echo(
            f"config written: network '{elsewhere[0]}'. On that network one process is one "
            "node: start it with `cortensor-desktop run --role miner` (or --role oracle)."
        )
    return ExitCode.OK


def _run_embedded(ctx: AppContext, args: argparse.Namespace) -> int:
    from cortensor_desktop.hosting.headless_runs import serve_embedded

    return _exit_code(serve_embedded(ctx, args.miners, _limits(args)))


def _run_node(ctx: AppContext, args: argparse.Namespace) -> int:
    from cortensor_desktop.hosting.headless_runs import serve_node
    from cortensor_desktop.hosting.node_wallet import node_account

    profile = ctx.network
    key = node_account(ctx.paths.keystore_dir, args.passphrase_file, profile.name == "local")
    if profile.chain_id is None:
        raise UsageError(f"network profile '{profile.name}' has no chain id")
    return _exit_code(serve_node(ctx, args.role, key, _limits(args)))


def _exit_code(death: LoopDeath | None) -> int:
    """A node whose loop died exits 1, so the service manager restarts it (the journal resumes
    its work); one that stopped as asked exits 0."""
    return ExitCode.OK if death is None else ExitCode.UNEXPECTED
