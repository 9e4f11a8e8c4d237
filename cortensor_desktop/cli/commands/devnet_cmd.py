"""`devnet up | status | restart-chain | down`: a local anvil chain with the contracts, as this
home's network.

`up` starts anvil (npm @foundry-rs/anvil) on 127.0.0.1 on a free port, deploys, funds this
home's wallet if it has one, writes `<config>/networks/local.toml` and makes `local` the active
network of this CORTENSOR_HOME. It stays in the foreground until Ctrl-C or SIGTERM (`--detach`
runs the same thing in the background); stopping restores the previous network. `down` stops a
running `up` from another terminal. State: `<data>/devnet/local.json`.

anvil keeps the chain in `<data>/devnet/chain-state.json` (saved on stop and every 60 s).
`restart-chain --down-for S` stops anvil, keeps it down S seconds and starts it again on the
same port from that file: the nodes see the RPC go away and come back to the same chain.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.cli.exit_codes import ExitCode
from cortensor_desktop.networks import LOCAL, profile_file

FUND_WEI = 1000 * 10**18
CHAIN_STATE_NAME = "chain-state.json"
CHAIN_SAVE_INTERVAL_S = 60  # anvil also saves on every stop; this bounds what a crash loses
MAX_DOWN_S = 600


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from cortensor_desktop.cli.main import add_json_flag

    parser = subparsers.add_parser(
        "devnet",
        help="run a local chain (anvil) with the contracts deployed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="devnet_action", metavar="ACTION", required=True)
    up = actions.add_parser("up", parents=[common], help="start anvil, deploy, make 'local' active")
    up.add_argument(
        "--miners",
        type=int,
        default=0,
        metavar="N",
        help="miner nodes to start, each its own process and home (default 0)",
    )
    up.add_argument(
        "--oracles",
        type=int,
        default=0,
        metavar="M",
        help="oracle nodes to start (the first leads; default 0)",
    )
    up.add_argument(
        "--detach", action="store_true", help="run in the background; stop with `devnet down`"
    )
    add_json_flag(up)
    up.set_defaults(handler=_up)
    status = actions.add_parser(
        "status", parents=[common], help="where the devnet is and what it runs"
    )
    add_json_flag(status)
    status.set_defaults(handler=_status)
    down = actions.add_parser(
        "down", parents=[common], help="stop the devnet, restore the previous network"
    )
    down.set_defaults(handler=_down)
    restart = actions.add_parser(
        "restart-chain",
        parents=[common],
        help="stop anvil for a while, then restart it with its state on the same port",
        description="Stop anvil (it saves the chain), keep it down --down-for seconds, start "
        "it again on the same port from the saved chain. The nodes keep running: they raise an "
        "rpc_down alert while it is gone and carry on when it is back.",
    )
    restart.add_argument(
        "--down-for",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long anvil stays down (default 0, at most 600)",
    )
    add_json_flag(restart)
    restart.set_defaults(handler=_restart_chain)


# ---- state ----


def _state_file(ctx: AppContext) -> Path:
    return ctx.paths.data_dir / "devnet" / "local.json"


def _chain_state_file(ctx: AppContext) -> Path:
    """anvil's own dump of the chain: loaded when anvil (re)starts, written when it stops."""
    return ctx.paths.data_dir / "devnet" / CHAIN_STATE_NAME


def _restart_request_file(ctx: AppContext) -> Path:
    return ctx.paths.data_dir / "devnet" / "restart-request.json"


def _read_state(ctx: AppContext) -> dict[str, Any] | None:
    return _read_json(_state_file(ctx))


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie counts as gone
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True


# ---- the active network ----


def _set_active_profile(ctx: AppContext, name: str | None) -> str | None:
    """Set [network] profile in the config file, keeping comments; returns the previous value."""
    import tomlkit

    path = ctx.config_path
    document = (
        tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    )
    network = document.get("network")
    previous = network.get("profile") if network is not None else None
    if name is None:
        if network is not None and "profile" in network:
            del network["profile"]
        if network is not None and not network:
            del document["network"]
    else:
        if network is None:
            network = tomlkit.table()
            document["network"] = network
        network["profile"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    text = tomlkit.dumps(document)
    if text.strip() or name is not None:
        path.write_text(text, encoding="utf-8")
    else:
        path.unlink(missing_ok=True)  # the file existed only to name the devnet
    return None if previous is None else str(previous)


def _write_profile(
    ctx: AppContext, rpc_url: str, chain_id: int, contracts: dict[str, str], deploy_block: int
) -> Path:
    import tomlkit

    document = tomlkit.document()
    document.add(
        tomlkit.comment("written by `cortensor-desktop devnet up`; removed by `devnet down`")
    )
    document["description"] = "local anvil devnet"
    document["chain_id"] = chain_id
    document["rpc_urls"] = [rpc_url]
    document["deploy_block"] = deploy_block
    document["contracts"] = contracts
    path = profile_file(ctx.paths.profiles_dir, LOCAL)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    return path


def _restore(ctx: AppContext, state: dict[str, Any]) -> None:
    _set_active_profile(ctx, state.get("previous_profile"))
    profile_file(ctx.paths.profiles_dir, LOCAL).unlink(missing_ok=True)
    _chain_state_file(ctx).unlink(missing_ok=True)  # the next `up` is a fresh chain
    _restart_request_file(ctx).unlink(missing_ok=True)
    _state_file(ctx).unlink(missing_ok=True)


# ---- up ----


def _up(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.errors import DevnetError

    if not (0 <= args.miners <= 16 and 0 <= args.oracles <= 4):
        print("cortensor-desktop: error: --miners must be 0-16 and --oracles 0-4", file=sys.stderr)
        return int(ExitCode.USAGE)
    if args.miners and not args.oracles:
        print(
            "cortensor-desktop: error: miners need an oracle to give them work: add --oracles 1",
            file=sys.stderr,
        )
        return int(ExitCode.USAGE)
    state = _read_state(ctx)
    if state and _alive(state.get("pid")):
        raise DevnetError(f"a devnet is already running (pid {state['pid']}): `devnet down` first")
    if state:  # left by a crash: clean up before starting again
        _cleanup_stale(ctx, state)
    if args.detach:
        return _detach(ctx, args)
    return _run_foreground(ctx, args)


def _detach(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.errors import DevnetError
    from cortensor_desktop.launch import app_command

    ctx.paths.ensure()
    log_path = ctx.paths.log_dir / "devnet.log"
    command = app_command(
        "devnet", "up", "--miners", str(args.miners), "--oracles", str(args.oracles)
    )
    if getattr(args, "config", None):
        command += ["--config", args.config]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = _read_state(ctx)
        if state and state.get("pid") == process.pid:
            return _status(ctx, args)
        if process.poll() is not None:
            break
        time.sleep(0.2)
    if process.poll() is None:
        process.terminate()
    raise DevnetError(f"the devnet did not come up; see {log_path}")


def _run_foreground(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.devnet import AnvilProcess, deploy_on_anvil, fund

    ctx.paths.ensure()
    stop = threading.Event()
    restart = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if hasattr(signal, "SIGUSR1"):  # `devnet restart-chain` asks with SIGUSR1 (POSIX only)
        signal.signal(signal.SIGUSR1, lambda *_: restart.set())
    chain_state = _chain_state_file(ctx)
    chain_state.parent.mkdir(parents=True, exist_ok=True)
    chain_state.unlink(missing_ok=True)  # `up` deploys a fresh chain
    anvil = AnvilProcess(
        log_file=ctx.paths.log_dir / "anvil.log",
        state_file=chain_state,
        state_interval_s=CHAIN_SAVE_INTERVAL_S,
    ).start()
    state: dict[str, Any] = {}
    try:
        devnet = deploy_on_anvil(anvil, oracles=args.oracles)
        funded = _fund_home_wallet(
            ctx, lambda address: fund(anvil.backend().web3, address, FUND_WEI)
        )
        _write_profile(ctx, devnet.rpc_url, devnet.chain_id, devnet.contracts, devnet.deploy_block)
        state = {
            "pid": os.getpid(),
            "anvil_pid": anvil.process.pid if anvil.process else None,
            "rpc_url": devnet.rpc_url,
            "chain_id": devnet.chain_id,
            "genesis_hash": devnet.genesis_hash,
            "contracts": devnet.contracts,
            "funded": funded,
            "previous_profile": _set_active_profile(ctx, LOCAL),
            "started_at": int(time.time()),
            "nodes": [],
        }
        _write_state(ctx, state)
        if args.miners or args.oracles:
            state["nodes"] = _start_nodes(ctx, args, devnet, anvil)
            _write_state(ctx, state)
        print(
            f"devnet up: {devnet.rpc_url} (chain id {devnet.chain_id}); network 'local' is "
            f"active for this home; Ctrl-C or `devnet down` stops it",
            flush=True,
        )
        while not stop.wait(0.5):
            if restart.is_set():
                restart.clear()
                _restart_anvil(ctx, anvil, state, stop)
                continue
            if anvil.process is None or anvil.process.poll() is not None:
                print("anvil exited; stopping the devnet", file=sys.stderr)
                return int(ExitCode.CHAIN)
        return 0
    finally:
        if state.get("nodes"):
            from cortensor_desktop.hosting.devnet_nodes import DevnetNode, stop_all

            stop_all([DevnetNode(**n) for n in state["nodes"]])
        anvil.stop()
        if state:
            _restore(ctx, state)
        print("devnet stopped", file=sys.stderr, flush=True)


def _restart_anvil(ctx: AppContext, anvil: Any, state: dict[str, Any], stop: Any) -> None:
    """Stop anvil (it saves the chain), wait as asked, start it from the saved chain."""
    request = _read_json(_restart_request_file(ctx)) or {}
    _restart_request_file(ctx).unlink(missing_ok=True)
    down_s = min(max(float(request.get("down_for_s", 0)), 0.0), MAX_DOWN_S)
    print(f"restart-chain: stopping anvil for {down_s:.0f} s", file=sys.stderr, flush=True)
    anvil.terminate(timeout_s=60)  # a long chain takes a while to save; never cut that short
    if stop.wait(down_s):
        return  # stopping the devnet meanwhile: nothing to restart
    anvil.start()
    state["anvil_pid"] = anvil.process.pid if anvil.process else None
    state["chain_restarts"] = int(state.get("chain_restarts", 0)) + 1
    _write_state(ctx, state)
    head = int(anvil.backend().web3.eth.block_number)
    print(
        f"restart-chain: anvil is back on {anvil.rpc_url} at block {head}",
        file=sys.stderr,
        flush=True,
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _start_nodes(ctx: AppContext, args: argparse.Namespace, devnet: Any, anvil: Any) -> list[Any]:
    """Homes, keys and funds for every node, the models installed once, then the processes."""
    import shutil

    from chain.devnet import fund
    from cortensor_desktop.hosting.devnet_nodes import prepare_nodes, spawn
    from engine.models.store import ModelStore

    base = ctx.paths.data_dir / "devnet" / "nodes"
    shutil.rmtree(base, ignore_errors=True)
    profile_text = profile_file(ctx.paths.profiles_dir, LOCAL).read_text(encoding="utf-8")
    oracle_keys = ["0x" + bytes(o.key).hex() for o in devnet.oracles]
    nodes = prepare_nodes(base, profile_text, args.miners, oracle_keys)
    web3 = anvil.backend().web3
    for node in nodes:
        fund(web3, node.address, FUND_WEI)
    store = ModelStore(ctx.models_dir)  # install once, before several nodes race for it
    store.pull(store.default_chat_model().id)
    store.pull(store.catalogue.of_kind("embedding")[0].id)
    started = [spawn(node, ctx.models_dir).to_json() for node in nodes]
    print(
        f"started {args.oracles} oracle(s) and {args.miners} miner(s); logs in {base}/<node>/logs",
        flush=True,
    )
    return started


def _fund_home_wallet(ctx: AppContext, fund: Any) -> str | None:
    from chain.errors import WalletError
    from chain.wallet import wallet_info

    try:
        address = wallet_info(ctx.paths.keystore_dir).address
    except WalletError:
        print(
            "no wallet in this home yet: `wallet new`, then restart the devnet to fund it",
            file=sys.stderr,
        )
        return None
    fund(address)
    return address


def _write_state(ctx: AppContext, state: dict[str, Any]) -> None:
    path = _state_file(ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    tmp.replace(path)


def _cleanup_stale(ctx: AppContext, state: dict[str, Any]) -> None:
    if state.get("nodes"):
        from cortensor_desktop.hosting.devnet_nodes import DevnetNode, stop_all

        stop_all([DevnetNode(**n) for n in state["nodes"]], timeout_s=5)
    anvil_pid = state.get("anvil_pid")
    if not isinstance(anvil_pid, int) or not _alive(anvil_pid):
        _restore(ctx, state)
        return
    # Only signal it if that PID is still anvil (PIDs are reused after a crash and a reboot).
    if "anvil" in Path(f"/proc/{anvil_pid}/cmdline").read_text(errors="replace"):
        os.kill(anvil_pid, signal.SIGTERM)
    _restore(ctx, state)


# ---- status and down ----


def _status(ctx: AppContext, args: argparse.Namespace) -> int:
    state = _read_state(ctx)
    running = bool(state and _alive(state.get("pid")))
    document: dict[str, Any] = {
        "running": running,
        "rpc_url": state.get("rpc_url") if running and state else None,
        "chain_id": state.get("chain_id") if running and state else None,
        "genesis_hash": state.get("genesis_hash") if running and state else None,
        "contracts": state.get("contracts", {}) if running and state else {},
        "funded_wallet": state.get("funded") if running and state else None,
        "anvil_pid": state.get("anvil_pid") if running and state else None,
        "nodes": _nodes_status(state) if running and state else [],
        "active_network": _active_network(ctx),
    }
    if ctx.json_output:
        ctx.emit_json(document)
        return 0
    if not running:
        ctx.echo("no devnet running for this home (`devnet up` starts one)")
        return 0
    ctx.echo(f"devnet: {document['rpc_url']} chain id {document['chain_id']}")
    for name, address in document["contracts"].items():
        ctx.echo(f"  {name}: {address}")
    ctx.echo(f"funded wallet: {document['funded_wallet'] or 'none'}")
    for node in document["nodes"]:
        ctx.echo(
            f"  {node['name']:<9} {node['address']}  {node['state']:<12} "
            f"tasks done: {node['tasks_done'] if node['tasks_done'] is not None else '-'}"
        )
    return 0


def _nodes_status(state: dict[str, Any]) -> list[dict[str, Any]]:
    if not state.get("nodes"):
        return []
    from chain.client import connect
    from cortensor_desktop.hosting.devnet_nodes import node_status

    client = connect(int(state["chain_id"]), [str(state["rpc_url"])], state["contracts"])
    return [node_status(client, node) for node in state["nodes"]]


def _active_network(ctx: AppContext) -> str:
    """Read afresh: `up --detach` changed the config file after this process loaded it."""
    from cortensor_desktop.config import load_config

    if ctx.network_override:
        return ctx.network_override
    return load_config(ctx.config_path).config.network.profile


def _down(ctx: AppContext, args: argparse.Namespace) -> int:
    state = _read_state(ctx)
    if state is None:
        ctx.echo("no devnet running for this home")
        return 0
    pid = state.get("pid")
    if isinstance(pid, int) and _alive(pid) and pid != os.getpid():
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _state_file(ctx).exists():
            time.sleep(0.1)
    if _state_file(ctx).exists():  # the `up` process was gone or did not clean up
        _cleanup_stale(ctx, state)
    ctx.echo("devnet stopped; the previous network is active again")
    return 0


# ---- restart-chain ----


def _restart_chain(ctx: AppContext, args: argparse.Namespace) -> int:
    """Ask the running `up` (which owns anvil) to restart it; wait until the chain is back."""
    from chain.errors import DevnetError

    if not 0 <= args.down_for <= MAX_DOWN_S:
        print(f"cortensor-desktop: error: --down-for must be 0-{MAX_DOWN_S}", file=sys.stderr)
        return int(ExitCode.USAGE)
    state = _read_state(ctx)
    pid = state.get("pid") if state else None
    if not state or not isinstance(pid, int) or not _alive(pid):
        raise DevnetError("no devnet running for this home (`devnet up` starts one)")
    if not hasattr(signal, "SIGUSR1"):
        raise DevnetError("restart-chain needs POSIX signals; stop and start anvil by hand")
    restarts = int(state.get("chain_restarts", 0))
    before = _head_block(state)
    request = _restart_request_file(ctx)
    request.write_text(json.dumps({"down_for_s": args.down_for}), encoding="utf-8")
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + args.down_for + 150  # saving a long chain, then starting
    while time.monotonic() < deadline:
        fresh = _read_state(ctx) or {}
        if int(fresh.get("chain_restarts", 0)) > restarts:
            return _report_restart(ctx, fresh, before)
        if not _alive(pid):
            break
        time.sleep(0.2)
    raise DevnetError("anvil did not come back; see the devnet log (`devnet status`)")


def _head_block(state: dict[str, Any]) -> int | None:
    from chain.errors import ChainError
    from chain.rpc import HttpBackend, RetryPolicy

    try:
        backend = HttpBackend([str(state["rpc_url"])], RetryPolicy(rounds=1))
        return int(backend.web3.eth.block_number)
    except (ChainError, KeyError):
        return None


def _report_restart(ctx: AppContext, state: dict[str, Any], before: int | None) -> int:
    from chain.errors import DevnetError

    after = _head_block(state)
    if after is None:
        raise DevnetError(f"anvil restarted but {state.get('rpc_url')} does not answer")
    if before is not None and after < before:
        raise DevnetError(f"anvil restarted at block {after}, below {before}: its state was lost")
    document = {
        "rpc_url": state.get("rpc_url"),
        "anvil_pid": state.get("anvil_pid"),
        "block_before": before,
        "block_after": after,
        "chain_restarts": state.get("chain_restarts"),
    }
    if ctx.json_output:
        ctx.emit_json(document)
    else:
        ctx.echo(f"anvil restarted on {document['rpc_url']} with its chain (block {after})")
    return 0
