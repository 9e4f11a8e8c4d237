"""`run`: the node in the foreground until Ctrl-C or SIGTERM.

On the `embedded` network it runs the chain, an oracle and k miners in this one process, so a
single machine sees the whole protocol. On any other network (a devnet on anvil, a testnet) one
process is one node, miner or oracle, signing with this home's wallet (created on first start
from the passphrase source). Until the dashboard lands, `run` logs the event stream (the headless
reader) whether or not `--headless` is given.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.cli.exit_codes import ExitCode, UsageError

log = logging.getLogger(__name__)
DEVNET_FUNDING_WEI = 100 * 10**18


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
        help="no dashboard: log the event stream (what `run` does for now)",
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
    parser.set_defaults(handler=_run)


def _run(ctx: AppContext, args: argparse.Namespace) -> int:
    if args.miners < 1 or args.miners > 8:
        raise UsageError("--miners must be between 1 and 8 on the embedded network")
    if ctx.network.embedded:
        return _run_embedded(ctx, args)
    if args.role == "both":
        raise UsageError(
            f"on network '{ctx.network.name}' one process is one node: "
            "choose --role miner or --role oracle"
        )
    return _run_node(ctx, args)


def _run_embedded(ctx: AppContext, args: argparse.Namespace) -> int:
    from engine.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings

    def build(bus: Any) -> Any:
        return EmbeddedNetwork(
            ctx.database,
            ctx.models_dir,
            bus,
            EmbeddedNetworkSettings(miners=args.miners),
            progress=lambda message: log.info("%s", message),
        )

    return _serve(args, build, f"embedded network up: {args.miners} miners, 1 oracle")


def _run_node(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.client import connect
    from cortensor_desktop.node_wallet import node_account
    from engine.standalone_node import NodeSettings, StandaloneNode

    profile = ctx.network
    devnet = profile.name == "local"
    key = node_account(ctx.paths.keystore_dir, args.passphrase_file, devnet)
    if profile.chain_id is None:
        raise UsageError(f"network profile '{profile.name}' has no chain id")
    client = connect(profile.chain_id, profile.rpc_urls, profile.contracts, key.account)
    if devnet:
        _fund_on_devnet(client)

    def build(bus: Any) -> Any:
        return StandaloneNode(
            client,
            ctx.database,
            ctx.models_dir,
            bus,
            NodeSettings(role=args.role),
            progress=lambda message: log.info("%s", message),
        )

    return _serve(args, build, f"{args.role} {client.address} up on network '{profile.name}'")


def _fund_on_devnet(client: Any) -> None:
    """A devnet node pays its own gas: top it up from anvil when it runs low."""
    from chain.devnet import fund

    if client.balance(client.address) < DEVNET_FUNDING_WEI // 10:
        fund(client.web3, client.address, DEVNET_FUNDING_WEI)
        log.info("funded %s on the devnet", client.address)


def _serve(args: argparse.Namespace, build: Callable[[Any], Any], banner: str) -> int:
    """Start what `build` makes on a fresh bus, log its events, stop cleanly on a signal."""
    from cortensor_desktop.headless import StopSignals, log_event
    from engine.events import EventBus
    from engine.recording import Recorder

    signals = StopSignals()
    signals.install()
    bus = EventBus()
    reader = bus.subscribe(name="headless-log", maxsize=10_000)
    recorder = Recorder(Path(args.record).expanduser()) if args.record else None
    if recorder is not None:
        recorder.attach(bus)
    node = build(bus)
    pump = threading.Thread(target=_pump, args=(reader, log_event), daemon=True)
    pump.start()
    started = time.monotonic()
    try:
        node.start()
        log.info("%s; Ctrl-C stops", banner)
        _wait(node, signals, args, started)
    finally:
        log.info("stopping (%s)", signals.received or "done")
        node.stop()
        reader.close()
        pump.join(timeout=5)
        if recorder is not None:
            recorder.close()
    _summary(node, time.monotonic() - started)
    return ExitCode.OK


def _wait(node: Any, signals: Any, args: argparse.Namespace, started: float) -> None:
    deadline = started + args.duration if args.duration else None
    while not signals.stop.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            return
        oracle = getattr(node, "oracle", None)
        if args.sessions and oracle is not None and oracle.sessions_ended >= args.sessions:
            return
        signals.stop.wait(0.5)


def _pump(reader: Any, sink: Any) -> None:
    for event in reader:
        sink(event)


def _summary(node: Any, elapsed: float) -> None:
    oracle = getattr(node, "oracle", None)
    ended = oracle.sessions_ended if oracle is not None else 0
    miners = getattr(node, "miners", None) or [m for m in [getattr(node, "miner", None)] if m]
    done = ", ".join(f"{m.address[:10]}…: {m.tasks_done}" for m in miners)
    log.info(
        "ran %.0f s: %d network tasks ended; tasks answered per miner: %s",
        elapsed,
        ended,
        done or "-",
    )
