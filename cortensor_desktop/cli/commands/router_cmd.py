"""`router`: the network behind an OpenAI-compatible endpoint; `router keys`: its API keys.

    router [--host 127.0.0.1] [--port 8787] [--allow-remote] [--redundancy K] [--budget-eth X]
    router keys add NAME [--cap-eth X] [--rpm N] | list | revoke ID

On `embedded` the whole network starts in this process first (as `ask` does; `run` serves a
router too). On `local` (a devnet) a devnet account of this home pays, on any other network this
home's wallet. It serves until Ctrl-C or SIGTERM; requests still on chain then stay in the
journal and the next start follows them to their validation (docs/ROUTER.md).
"""

from __future__ import annotations

import argparse
import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.cli.exit_codes import ExitCode, UsageError

log = logging.getLogger(__name__)
WEI_PER_ETH = 10**18


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from cortensor_desktop.cli.main import add_json_flag
    from cortensor_desktop.service.router_api import DEFAULT_PORT

    parser = subparsers.add_parser(
        "router",
        parents=[common],
        help="serve the network behind an OpenAI-compatible endpoint (/v1/chat/completions)",
        description="Answer OpenAI-style requests (chat, completions, models) with validated "
        "user tasks on the active network: the router pays from its own account, reuses one "
        "session per model, precision and redundancy, and returns the consensus answer with a "
        "`cortensor` object (miners, scores, transactions, gas, price). Binds 127.0.0.1 unless "
        "--allow-remote, which also needs API keys (`router keys add`).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow an address beyond loopback (API keys are then always required)",
    )
    parser.add_argument(
        "--redundancy", type=int, default=3, metavar="K", help="miners per request (default 3)"
    )
    parser.add_argument(
        "--budget-eth",
        default="1",
        metavar="ETH",
        help="the most the router deposits in all on this chain (default 1)",
    )
    parser.add_argument("--max-in-flight", type=int, default=4, metavar="N")
    parser.add_argument("--max-queue", type=int, default=16, metavar="N")
    parser.add_argument(
        "--pool-wait",
        type=float,
        default=60,
        metavar="SECONDS",
        help="how long a request waits for miners before 503 (default 60)",
    )
    parser.add_argument("--passphrase-file", metavar="PATH", help="the wallet passphrase")
    parser.set_defaults(handler=_serve, router_action=None)

    actions = parser.add_subparsers(dest="router_action", metavar="ACTION")
    keys = actions.add_parser("keys", parents=[common], help="API keys: add, list, revoke")
    key_actions = keys.add_subparsers(dest="keys_action", metavar="ACTION", required=True)
    add = key_actions.add_parser("add", parents=[common], help="make a key (printed once)")
    add.add_argument("name", help="who the key is for")
    add.add_argument(
        "--cap-eth", default="0.1", metavar="ETH", help="spending cap (default 0.1 ETH)"
    )
    add.add_argument("--rpm", type=int, default=60, help="requests per minute (default 60)")
    add_json_flag(add)
    add.set_defaults(handler=_keys_add)
    listing = key_actions.add_parser("list", parents=[common], help="the keys and their spend")
    add_json_flag(listing)
    listing.set_defaults(handler=_keys_list)
    revoke = key_actions.add_parser("revoke", parents=[common], help="revoke a key by its id")
    revoke.add_argument("id")
    add_json_flag(revoke)
    revoke.set_defaults(handler=_keys_revoke)


def _wei(text: str, flag: str) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise UsageError(f"{flag} must be an amount of ETH, e.g. 0.5") from None
    if value < 0:
        raise UsageError(f"{flag} must not be negative")
    return int(value * WEI_PER_ETH)


# ---- keys ----


def _keys_add(ctx: AppContext, args: argparse.Namespace) -> int:
    from engine.state.router_store import ApiKeyError, ApiKeys

    if args.rpm < 1:
        raise UsageError("--rpm must be at least 1")
    try:
        key, secret = ApiKeys(ctx.database).add(
            args.name, _wei(args.cap_eth, "--cap-eth"), args.rpm
        )
    except ApiKeyError as exc:
        raise UsageError(str(exc)) from None
    if ctx.json_output:
        ctx.emit_json({**key.to_json(), "key": secret})
    else:
        ctx.echo(f"key {key.id} for {key.name}: {secret}")
        ctx.echo("  shown once: only its hash is stored. Send it as 'Authorization: Bearer KEY'.")
    return ExitCode.OK


def _keys_list(ctx: AppContext, args: argparse.Namespace) -> int:
    from engine.node.earnings import eth
    from engine.state.router_store import ApiKeys

    keys = ApiKeys(ctx.database).list()
    if ctx.json_output:
        ctx.emit_json({"keys": [k.to_json() for k in keys]})
        return ExitCode.OK
    if not keys:
        ctx.echo("no router keys (`router keys add NAME`); the router is open on 127.0.0.1")
    for k in keys:
        state = "revoked" if k.revoked else "active"
        ctx.echo(
            f"{k.id}  {k.name:<20} {state:<8} spent {eth(k.spent_wei)} of {eth(k.spend_cap_wei)}"
            f", {k.requests_per_minute}/min"
        )
    return ExitCode.OK


def _keys_revoke(ctx: AppContext, args: argparse.Namespace) -> int:
    from engine.state.router_store import ApiKeyError, ApiKeys

    try:
        key = ApiKeys(ctx.database).revoke(args.id)
    except ApiKeyError as exc:
        raise UsageError(str(exc)) from None
    if ctx.json_output:
        ctx.emit_json(key.to_json())
    else:
        ctx.echo(f"key {key.id} ({key.name}) revoked")
    return ExitCode.OK


# ---- serving ----


def _settings(args: argparse.Namespace) -> Any:
    from engine.node.router import RouterSettings

    if not 1 <= args.redundancy <= 16:
        raise UsageError("--redundancy must be between 1 and 16")
    if args.max_in_flight < 1 or args.max_queue < 0 or args.pool_wait <= 0:
        raise UsageError("--max-in-flight >= 1, --max-queue >= 0 and --pool-wait > 0")
    return RouterSettings(
        redundancy=args.redundancy,
        budget_wei=_wei(args.budget_eth, "--budget-eth"),
        max_in_flight=args.max_in_flight,
        max_queue=args.max_queue,
        pool_wait_s=args.pool_wait,
    )


def _serve(ctx: AppContext, args: argparse.Namespace) -> int:
    from cortensor_desktop.service.router_api import check_bind
    from engine.state.router_store import ApiKeys

    settings = _settings(args)
    try:
        check_bind(args.host, args.allow_remote, ApiKeys(ctx.database))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if ctx.network.embedded:
        return _serve_embedded(ctx, args, settings)
    return _serve_network(ctx, args, settings)


def _serve_embedded(ctx: AppContext, args: argparse.Namespace, settings: Any) -> int:
    from cortensor_desktop.hosting.router_host import embedded_router
    from engine.host.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings
    from engine.state.events import EventBus

    network = EmbeddedNetwork(
        ctx.database,
        ctx.models_dir,
        EventBus(),
        EmbeddedNetworkSettings(miners=max(3, settings.redundancy)),
        progress=lambda message: log.info("%s", message),
    )
    try:
        network.start()
        server = embedded_router(
            network, ctx.database, ctx.models_dir, args.host, args.port, settings
        )
        if server is None:
            raise UsageError("the embedded network has no free account for the router")
        return _until_stopped(ctx, server)
    finally:
        network.stop()


def _serve_network(ctx: AppContext, args: argparse.Namespace, settings: Any) -> int:
    from chain.client import connect
    from cortensor_desktop.cli.commands.ask_cmd import (
        _check_funds,
        _devnet_user,
        _fund_from_anvil,
        _home_wallet,
    )
    from cortensor_desktop.hosting.router_host import build_server
    from cortensor_desktop.networks import LOCAL
    from engine.host.standalone_node import chain_key

    profile = ctx.network
    if profile.chain_id is None:
        raise UsageError(f"network profile '{profile.name}' has no chain id")
    devnet = profile.name == LOCAL
    account = _devnet_user(ctx) if devnet else _home_wallet(ctx, args)
    client = connect(profile.chain_id, profile.rpc_urls, profile.contracts, account)
    if devnet:
        _fund_from_anvil(client)
    else:
        _check_funds(client, profile.name)
    server = build_server(
        client=client,
        db=ctx.database,
        chain=chain_key(client),
        models_dir=ctx.models_dir,
        settings=settings,
        network=profile.name,
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
    )
    return _until_stopped(ctx, server)


def _until_stopped(ctx: AppContext, server: Any) -> int:
    from cortensor_desktop.hosting.headless import StopSignals

    signals = StopSignals()
    signals.install()
    resumed = server.front.router.resume()
    if resumed:
        log.info("router: %d open requests from the journal, settling them", len(resumed))
    server.start()
    ctx.echo(f"router listening: OpenAI base URL {server.url} (Ctrl-C stops)")
    ctx.stdout.flush()
    try:
        while not signals.stop.wait(0.5):
            pass
    finally:
        server.stop()
        log.info("router stopped (%s)", signals.received or "done")
        signals.finished.set()
    return ExitCode.OK
