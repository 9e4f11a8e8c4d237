"""`wallet new | import | show | export | passwd | withdraw`: the node's key and its earnings.

`withdraw` pays the node's SessionPayment balance out to its registered payout address: through
the running node's status API when a node runs for this home, else with the wallet unlocked here
(cortensor_desktop/service/withdrawal.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cortensor_desktop.cli.context import AppContext

CHEAP_KDF_HELP = "cheap scrypt settings: only for devnet accounts and tests, never a real wallet"


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from cortensor_desktop.cli.main import add_json_flag

    parser = subparsers.add_parser(
        "wallet",
        help="create, import, show or export the node's key",
        description="The node's key lives in a V3 keystore (scrypt, mode 0600) in the data "
        "folder. The passphrase comes from --passphrase-file / CORTENSOR_PASSPHRASE_FILE, "
        "CORTENSOR_PASSPHRASE, a secure OS keyring, or a prompt on a terminal, in that order.",
    )
    actions = parser.add_subparsers(dest="wallet_action", metavar="ACTION", required=True)

    def action(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(
            name, parents=[common], help=help_text, description=help_text
        )
        sub.add_argument("--passphrase-file", metavar="PATH", help="read the passphrase from PATH")
        add_json_flag(sub)
        sub.set_defaults(handler=handler)
        return sub

    new = action("new", "create a wallet and print its address and balance", _new)
    new.add_argument(
        "--remember", action="store_true", help="also store the passphrase in a secure OS keyring"
    )
    new.add_argument("--cheap-kdf", action="store_true", help=CHEAP_KDF_HELP)

    imp = action("import", "import a private key or a V3 keystore file", _import)
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--key-file", metavar="PATH", help="a file holding the hex private key ('-' for stdin)"
    )
    source.add_argument(
        "--keystore", metavar="PATH", help="a V3 keystore file (its own passphrase)"
    )
    imp.add_argument(
        "--remember", action="store_true", help="also store the passphrase in a secure OS keyring"
    )
    imp.add_argument("--cheap-kdf", action="store_true", help=CHEAP_KDF_HELP)

    action("show", "print the address and its balance on the active network", _show)

    export = action(
        "export",
        "print the private key (needs the passphrase and --yes), or with --to back up the "
        "encrypted keystore",
        _export,
    )
    export.add_argument("--yes", action="store_true", help="confirm: print the private key")
    export.add_argument(
        "--to",
        metavar="PATH",
        help="write the encrypted keystore to PATH (mode 0600) after checking the passphrase; "
        "nothing is printed",
    )

    withdraw = action(
        "withdraw",
        "withdraw the node's whole earned balance to its registered payout address",
        _withdraw,
    )
    withdraw.add_argument(
        "--node",
        metavar="ADDRESS",
        help="which miner, where the running node has several (the embedded network); "
        "default: every miner with a balance",
    )
    withdraw.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds to wait for the running node's answer (default 120)",
    )

    passwd = action("passwd", "change the keystore passphrase", _passwd)
    passwd.add_argument(
        "--new-passphrase-file", metavar="PATH", help="read the new passphrase from PATH"
    )
    passwd.add_argument("--cheap-kdf", action="store_true", help=CHEAP_KDF_HELP)


def _scrypt_n(args: argparse.Namespace) -> int:
    from chain.wallet import DEVNET_SCRYPT_N, STANDARD_SCRYPT_N

    return DEVNET_SCRYPT_N if getattr(args, "cheap_kdf", False) else STANDARD_SCRYPT_N


def _passphrase(args: argparse.Namespace, address: str | None = None, confirm: bool = False) -> str:
    from chain.passphrase import resolve

    return resolve(args.passphrase_file, address=address, confirm=confirm).value


def _remember(args: argparse.Namespace, address: str, passphrase: str) -> None:
    if getattr(args, "remember", False):
        from chain.passphrase import keyring_set

        keyring_set(address, passphrase)


def balance_on_active_network(ctx: AppContext, address: str) -> tuple[int | None, str]:
    """(wei or None, a note). The embedded chain starts fresh each run, so it has no balance."""
    network = ctx.network
    if network.embedded:
        return (
            None,
            "embedded network: an in-process chain started fresh each run; no lasting balance",
        )
    from chain.client import connect
    from chain.errors import ChainError
    from chain.rpc import RetryPolicy

    try:
        client = connect(
            network.chain_id or 0,
            network.rpc_urls,
            network.contracts,
            policy=RetryPolicy(rounds=1, request_timeout_s=3),
        )
        return client.balance(address), f"on network '{network.name}'"
    except ChainError as exc:
        return None, f"unavailable on network '{network.name}': {exc}"


def _report(
    ctx: AppContext, address: str, keystore: Path, extra: dict[str, Any] | None = None
) -> None:
    wei, note = balance_on_active_network(ctx, address)
    document = {
        "address": address,
        "keystore": str(keystore),
        "network": ctx.network_name,
        "balance_wei": wei,
        "balance_note": note,
        **(extra or {}),
    }
    if ctx.json_output:
        ctx.emit_json(document)
        return
    ctx.echo(f"address: {address}")
    ctx.echo(f"keystore: {keystore}")
    shown = f"{wei / 10**18:.6f} ETH ({wei} wei)" if wei is not None else "unavailable"
    ctx.echo(f"balance: {shown} - {note}")


def _new(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.wallet import create_wallet, refuse_overwrite, wallet_path

    refuse_overwrite(wallet_path(ctx.paths.keystore_dir))  # before asking for a passphrase
    passphrase = _passphrase(args, confirm=True)
    ctx.paths.ensure()
    info = create_wallet(ctx.paths.keystore_dir, passphrase, _scrypt_n(args))
    _remember(args, info.address, passphrase)
    _report(ctx, info.address, info.path)
    return 0


def _import(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.errors import WalletError
    from chain.wallet import import_keystore, import_private_key

    ctx.paths.ensure()
    if args.keystore:
        passphrase = _passphrase(args)
        info = import_keystore(ctx.paths.keystore_dir, Path(args.keystore), passphrase)
    else:
        try:
            key = sys.stdin.read() if args.key_file == "-" else Path(args.key_file).read_text()
        except OSError as exc:
            raise WalletError(f"cannot read the key file {args.key_file}: {exc.strerror}") from None
        passphrase = _passphrase(args, confirm=True)
        info = import_private_key(ctx.paths.keystore_dir, key, passphrase, _scrypt_n(args))
    _remember(args, info.address, passphrase)
    _report(ctx, info.address, info.path)
    return 0


def _show(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.wallet import wallet_info

    info = wallet_info(ctx.paths.keystore_dir)
    _report(ctx, info.address, info.path)
    return 0


def _export(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.errors import WalletError
    from chain.wallet import export_private_key, wallet_info

    if args.to:
        return _export_keystore(ctx, args)
    if not args.yes:
        raise WalletError(
            "export prints the private key in clear: anyone who sees it owns the wallet; "
            "confirm with --yes"
        )
    info = wallet_info(ctx.paths.keystore_dir)
    key = export_private_key(ctx.paths.keystore_dir, _passphrase(args, info.address))
    if ctx.json_output:
        ctx.emit_json({"address": info.address, "private_key": key})
    else:
        ctx.echo(key)
    return 0


def _export_keystore(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.wallet import export_keystore, wallet_info

    info = wallet_info(ctx.paths.keystore_dir)
    target = Path(args.to).expanduser()
    written = export_keystore(ctx.paths.keystore_dir, _passphrase(args, info.address), target)
    if ctx.json_output:
        ctx.emit_json({"address": written.address, "keystore_copy": str(written.path)})
    else:
        ctx.echo(f"encrypted keystore of {written.address} written to {written.path} (mode 0600)")
    return 0


def _passwd(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.passphrase import resolve
    from chain.wallet import change_passphrase, wallet_info

    info = wallet_info(ctx.paths.keystore_dir)
    old = _passphrase(args, info.address)
    if args.new_passphrase_file:
        new = resolve(args.new_passphrase_file, environ={}).value
    else:
        new = resolve(None, environ={}, confirm=True).value  # a terminal prompt or exit 4
    change_passphrase(ctx.paths.keystore_dir, old, new, _scrypt_n(args))
    if ctx.json_output:
        ctx.emit_json({"address": info.address, "changed": True})
    else:
        ctx.echo(f"passphrase changed for {info.address}")
    return 0


def _withdraw(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.errors import ChainError
    from cortensor_desktop.cli.exit_codes import ExitCode
    from cortensor_desktop.service.attach import NodeUnreachableError
    from cortensor_desktop.service.errors import NodeNotRunningError
    from cortensor_desktop.service.withdrawal import WithdrawReport, through_node, with_wallet
    from engine.state.commands import Withdraw

    command = Withdraw(all=True, node=args.node, source="cli")
    report: WithdrawReport
    try:
        report = through_node(ctx.paths.data_dir / "api.json", command, args.timeout)
    except NodeUnreachableError:
        network = ctx.network
        if network.embedded:
            raise NodeNotRunningError(
                "no node is running for this home, and the embedded network's chain exists "
                "only inside a running `cortensor-desktop run`: withdraw while it runs"
            ) from None
        if network.chain_id is None:
            raise ChainError(f"network profile '{network.name}' has no chain id") from None
        report = with_wallet(
            ctx.paths.keystore_dir,
            args.passphrase_file,
            ctx.database,
            network.chain_id,
            list(network.rpc_urls),
            dict(network.contracts),
        )
    if ctx.json_output:
        ctx.emit_json(report.to_dict())
        return ExitCode.OK if report.accepted else ExitCode.CHAIN
    if not report.accepted:
        raise ChainError(report.message)  # printed like every error, exit code 5
    ctx.echo(report.message)
    for w in report.withdrawals:
        ctx.echo(f"  {w.node}: {w.status.value} {w.amount_wei} wei to {w.to} in tx {w.tx_hash}")
    return ExitCode.OK
