"""`network deploy | join | list | show | remove`: networks on any EVM chain, beyond this machine.

An operator runs `network deploy --rpc URL --chain-id N --name NAME` once: the contracts are
deployed with this home's wallet, and a profile (chain id, RPC URLs, addresses, deploy block,
protocol version, each contract's code hash, the parameters) signed by that wallet is written
and installed here. They publish the profile file and their address. A hobbyist runs
`network join --from URL --deployer ADDRESS` (or `network join FILE`): the signature, the code
on chain and the chain id are checked before the profile is installed and made active.

Exit codes: 3 the profile file is malformed, its signature fails or its signer is not trusted;
4 no wallet or passphrase; 5 the chain disagrees (chain id, code, admin), an RPC does not answer,
or the deployer cannot pay.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.cli.exit_codes import UsageError
from cortensor_desktop.config import ConfigError

log = logging.getLogger(__name__)
DEFAULT_CONFIRMATIONS = 2


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from cortensor_desktop.cli.main import add_json_flag

    parser = subparsers.add_parser(
        "network",
        help="deploy a network to an EVM chain, join one, list the installed ones",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="network_action", metavar="ACTION", required=True)
    _register_deploy(actions, common, add_json_flag)
    _register_join(actions, common, add_json_flag)
    listing = actions.add_parser("list", parents=[common], help="the installed network profiles")
    add_json_flag(listing)
    listing.set_defaults(handler=_list)
    show = actions.add_parser("show", parents=[common], help="one profile, its signature checked")
    show.add_argument("name", help="the profile's name")
    show.add_argument(
        "--check", action="store_true", help="also check on chain: chain id, code, admin"
    )
    add_json_flag(show)
    show.set_defaults(handler=_show)
    remove = actions.add_parser("remove", parents=[common], help="uninstall a network profile")
    remove.add_argument("name", help="the profile's name")
    remove.set_defaults(handler=_remove)


def _register_deploy(actions: Any, common: argparse.ArgumentParser, add_json_flag: Any) -> None:
    deploy = actions.add_parser(
        "deploy",
        parents=[common],
        help="deploy the contracts with this home's wallet and write a signed profile",
        description="Deploy the five contracts to the chain behind --rpc with this home's "
        "wallet (which becomes the network's admin), wait for confirmations, then write a "
        "profile signed by that wallet, install it in this home and make it active. Refused "
        "before the first transaction when an RPC serves another chain or the wallet cannot "
        "pay for the whole deployment.",
    )
    deploy.add_argument("--rpc", action="append", metavar="URL", help="RPC URL (repeat: failover)")
    deploy.add_argument(
        "--chain-id", type=int, metavar="N", help="the chain id the RPCs must serve"
    )
    deploy.add_argument("--name", metavar="NAME", help="the network's name (letters, digits, - _)")
    deploy.add_argument("--description", default="", help="one line shown to joiners")
    deploy.add_argument(
        "--template",
        metavar="FILE",
        help="a profile template (TOML: name, description, chain_id, rpc_urls, [params]); "
        "flags override it (assets/networks/ has one for Arbitrum Sepolia)",
    )
    deploy.add_argument(
        "--oracle",
        action="append",
        metavar="ADDRESS",
        help="an oracle to register (repeat; the first leads; default: the deployer)",
    )
    deploy.add_argument(
        "--confirmations",
        type=int,
        default=DEFAULT_CONFIRMATIONS,
        metavar="N",
        help=f"blocks on top of the last deployment transaction, its own included "
        f"(default {DEFAULT_CONFIRMATIONS})",
    )
    deploy.add_argument(
        "--confirmation-timeout",
        type=float,
        default=600,
        metavar="SECONDS",
        help="give up waiting for confirmations after this long (default 600)",
    )
    deploy.add_argument("--out", metavar="PATH", help="also write the signed profile here")
    deploy.add_argument("--passphrase-file", metavar="PATH", help="the wallet passphrase")
    deploy.add_argument("--no-activate", action="store_true", help="do not make it active")
    add_json_flag(deploy)
    deploy.set_defaults(handler=_deploy)


def _register_join(actions: Any, common: argparse.ArgumentParser, add_json_flag: Any) -> None:
    join = actions.add_parser(
        "join",
        parents=[common],
        help="check a signed network profile on chain, then install it",
        description="Check a published profile: its signature against the trusted deployer, "
        "each contract's code on chain, the chain id of every RPC; only then install it and "
        "make it active. Any difference is refused with one line naming it.",
    )
    join.add_argument("file", nargs="?", metavar="FILE", help="the profile file")
    join.add_argument("--from", dest="url", metavar="URL", help="fetch the profile over HTTP(S)")
    join.add_argument(
        "--deployer",
        metavar="ADDRESS",
        help="the operator's address the profile must be signed by (required unless a "
        "profile this home installed is signed by the same deployer)",
    )
    join.add_argument("--name", metavar="NAME", help="install under this name instead")
    join.add_argument(
        "--rpc",
        action="append",
        metavar="URL",
        help="use these RPC URLs instead of the profile's (your own provider); repeat",
    )
    join.add_argument("--no-activate", action="store_true", help="do not make it active")
    add_json_flag(join)
    join.set_defaults(handler=_join)


# ---- deploy ----


def _deploy(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.deploy import NetworkParams
    from chain.network_profile import deploy_and_sign

    plan = _deploy_plan(ctx, args)
    oracles = [_checked_address(a, "--oracle") for a in args.oracle or []]
    account = _unlock_wallet(ctx, args)
    oracles = oracles or [account.address]  # the deployer's home runs the first oracle
    backend = _checked_backend(plan["rpc_urls"], plan["chain_id"])
    params: NetworkParams = plan["params"]
    _check_deploy_funds(backend, account.address, oracles, params, plan["chain_id"])
    log.info("deploying the network '%s' to chain %s", plan["name"], plan["chain_id"])
    signed = deploy_and_sign(
        backend,
        account,
        name=plan["name"],
        chain_id=plan["chain_id"],
        rpc_urls=plan["rpc_urls"],
        oracles=oracles,
        params=params,
        description=plan["description"],
        confirmations=args.confirmations,
        confirmation_timeout_s=args.confirmation_timeout,
    )
    out = Path(args.out).expanduser() if args.out else None
    if out is not None:
        from cortensor_desktop.config import write_atomically

        write_atomically(out, signed.to_text())
    installed = _install(ctx, plan["name"], signed, tuple(signed.rpc_urls), args.no_activate)
    document = {**signed.to_json(), "installed": str(installed), "out": str(out) if out else None}
    if ctx.json_output:
        ctx.emit_json(document)
        return 0
    published = out or installed.with_name(f"{plan['name']}.signed.json")
    ctx.echo(
        f"deployed network '{plan['name']}' on chain {signed.chain_id} at block "
        f"{signed.deploy_block}; profile signed by {signed.deployer}"
    )
    ctx.echo(f"publish {published}; joiners run:")
    ctx.echo(f"  cortensor-desktop network join --from URL --deployer {signed.deployer}")
    return 0


def _deploy_plan(ctx: AppContext, args: argparse.Namespace) -> dict[str, Any]:
    """Flags over the template, every value checked before the wallet is even unlocked."""
    from chain.deploy import NetworkParams
    from chain.errors import ChainError
    from chain.network_profile import check_rpc_url

    template = _read_template(Path(args.template).expanduser()) if args.template else {}
    name = args.name or template.get("name")
    chain_id = args.chain_id or template.get("chain_id")
    rpc_urls = args.rpc or template.get("rpc_urls") or []
    if not name or not chain_id or not rpc_urls:
        raise UsageError("network deploy needs --name, --chain-id and --rpc (or a --template)")
    _check_new_name(ctx, str(name))
    if not isinstance(chain_id, int) or chain_id <= 0:
        raise UsageError(f"--chain-id must be a positive integer, got {chain_id!r}")
    if args.confirmations < 1 or args.confirmation_timeout <= 0:
        raise UsageError("--confirmations must be at least 1 and --confirmation-timeout positive")
    try:
        urls = [check_rpc_url(u) for u in rpc_urls]
        params = NetworkParams.from_json(template.get("params", {}))
    except (ValueError, ChainError) as exc:
        raise UsageError(str(exc)) from None
    if args.out and Path(args.out).expanduser().exists():
        raise UsageError(f"--out {args.out} already exists; nothing was deployed")
    description = args.description or str(template.get("description", ""))
    return {
        "name": str(name),
        "chain_id": chain_id,
        "rpc_urls": urls,
        "params": params,
        "description": description,
    }


def _read_template(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the profile template: {exc}") from None
    unknown = sorted(set(raw) - {"name", "description", "chain_id", "rpc_urls", "params"})
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}' in the profile template")
    return raw


def _check_new_name(ctx: AppContext, name: str) -> None:
    from chain.network_profile import valid_name
    from cortensor_desktop.networks import RESERVED_NAMES, profile_file

    if not valid_name(name):
        raise UsageError(f"network name {name!r}: use letters, digits, - and _ (at most 40)")
    if name in RESERVED_NAMES:
        raise UsageError(f"'{name}' is a built-in network name; choose another --name")
    if profile_file(ctx.paths.profiles_dir, name).exists():
        raise UsageError(
            f"a network profile '{name}' is already installed: `network remove {name}` first, "
            "or choose another --name"
        )


def _unlock_wallet(ctx: AppContext, args: argparse.Namespace) -> Any:
    from chain.errors import WalletError
    from chain.passphrase import resolve
    from chain.wallet import unlock, wallet_info, wallet_path
    from cortensor_desktop.logs import register_secret

    keystore = ctx.paths.keystore_dir
    if not wallet_path(keystore).exists():
        raise WalletError(
            "no wallet in this home: the deployer signs with it (`wallet new` or "
            "`wallet import` first, then fund it on the target chain)"
        )
    passphrase = resolve(args.passphrase_file, wallet_info(keystore).address)
    register_secret(passphrase.value)
    return unlock(keystore, passphrase.value)


def _checked_address(value: str, flag: str) -> str:
    from eth_utils.address import is_address, to_checksum_address

    if not is_address(value):
        raise UsageError(f"{flag} {value}: not an address (0x and 40 hex digits)")
    return str(to_checksum_address(value))


def _checked_backend(rpc_urls: list[str], chain_id: int) -> Any:
    """Every RPC must answer for the chain id given; then one backend over all of them."""
    from chain.errors import ChainError, RpcUnavailable
    from chain.network_profile import check_rpc_chain_id
    from chain.rpc import HttpBackend, RetryPolicy, public_url

    for url in rpc_urls:
        try:
            check_rpc_chain_id(url, chain_id, RetryPolicy(rounds=2))
        except RpcUnavailable:
            raise ChainError(f"RPC {public_url(url)} does not answer; nothing was sent") from None
    return HttpBackend(rpc_urls, RetryPolicy())


def _check_deploy_funds(
    backend: Any, deployer: str, oracles: list[str], params: Any, chain_id: int
) -> None:
    from chain.network_profile import InsufficientFunds, estimate_deploy_cost
    from engine.node.earnings import eth

    cost = estimate_deploy_cost(backend, deployer, oracles, params)
    held = int(backend.web3.eth.get_balance(deployer))
    if held < cost.wei:
        raise InsufficientFunds(
            f"deployer {deployer} holds {eth(held)} on chain {chain_id}; deploying needs about "
            f"{eth(cost.wei)} ({cost.gas:,} gas at up to {cost.max_fee_per_gas / 1e9:.3g} gwei): "
            "fund it first; nothing was sent"
        )
    log.info(
        "deployment budget %s gas, %s; the deployer holds %s", cost.gas, eth(cost.wei), eth(held)
    )


# ---- join ----


def _join(ctx: AppContext, args: argparse.Namespace) -> int:
    from chain.network_profile import (
        check_artifacts,
        check_rpc_url,
        check_signature,
        verify_on_chain,
    )
    from cortensor_desktop.networks import trusted_deployers

    if bool(args.file) == bool(args.url):
        raise UsageError("network join needs a FILE or --from URL (one of them)")
    source = args.url or args.file
    signed = _read_signed(args, source)
    trusted = (
        [_checked_address(args.deployer, "--deployer")]
        if args.deployer
        else trusted_deployers(ctx.paths.profiles_dir)
    )
    check_signature(signed, trusted, source)
    name = args.name or signed.name
    _check_join_name(ctx, name, signed.deployer)
    try:
        rpc_urls = tuple(check_rpc_url(u) for u in args.rpc) if args.rpc else signed.rpc_urls
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_artifacts(signed, source)
    report = verify_on_chain(signed, rpc_urls)
    installed = _install(ctx, name, signed, rpc_urls, args.no_activate)
    document = {
        "name": name,
        "installed": str(installed),
        "chain_id": signed.chain_id,
        "deployer": signed.deployer,
        "deploy_block": signed.deploy_block,
        "contracts": signed.contracts,
        "rpc_checked": report.answered,
        "rpc_unreachable": report.unreachable,
        "active": not args.no_activate,
    }
    if ctx.json_output:
        ctx.emit_json(document)
        return 0
    for url in report.unreachable:
        ctx.echo(f"warning: RPC {url} did not answer; checked on the others")
    active = "" if args.no_activate else " and made it active"
    ctx.echo(
        f"joined network '{name}' (chain {signed.chain_id}, deployed by {signed.deployer}): "
        f"code and chain id checked on {', '.join(report.answered)}; installed{active}"
    )
    ctx.echo("next: `cortensor-desktop run --headless --role miner` (fund this home's wallet)")
    return 0


def _read_signed(args: argparse.Namespace, source: str) -> Any:
    from chain.errors import ChainError
    from chain.network_profile import parse_profile
    from cortensor_desktop.networks import fetch_profile_text

    if args.url:
        try:
            text = fetch_profile_text(args.url)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            status = getattr(exc, "code", None)  # an HTTPError carries the status
            reason = getattr(exc, "reason", None) or exc
            shown = f"HTTP {status} {reason}" if status else str(reason)
            raise ChainError(f"cannot fetch the profile from {args.url}: {shown}") from None
    else:
        try:
            text = Path(args.file).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the profile {args.file}: {exc}") from None
    return parse_profile(text, source)


def _check_join_name(ctx: AppContext, name: str, deployer: str) -> None:
    """A new name, or an update of a profile the same deployer signed (a new RPC list...)."""
    from chain.network_profile import valid_name
    from cortensor_desktop.networks import RESERVED_NAMES, load_profile, profile_file

    if not valid_name(name) or name in RESERVED_NAMES:
        raise UsageError(f"cannot install a network as {name!r}: choose another --name")
    if not profile_file(ctx.paths.profiles_dir, name).exists():
        return
    try:
        installed = load_profile(ctx.paths.profiles_dir, name).deployer
    except ConfigError:
        installed = ""
    if installed.lower() != deployer.lower():
        raise UsageError(
            f"another network '{name}' is installed (deployer {installed or 'unknown'}): "
            "install this one with --name OTHER, or `network remove` the old one"
        )


def _install(
    ctx: AppContext, name: str, signed: Any, rpc_urls: tuple[str, ...], no_activate: bool
) -> Path:
    from cortensor_desktop.config import set_config_value
    from cortensor_desktop.networks import install_signed_profile

    path = install_signed_profile(ctx.paths.profiles_dir, name, signed, rpc_urls)
    if not no_activate:
        set_config_value(ctx.config_path, "network.profile", name)
    return path


# ---- list, show, remove ----


def _list(ctx: AppContext, args: argparse.Namespace) -> int:
    from cortensor_desktop.networks import EMBEDDED, installed_profiles, list_profiles

    active = ctx.network_name
    profiles = {p.name: p for p in installed_profiles(ctx.paths.profiles_dir)}
    rows = []
    for name in list_profiles(ctx.paths.profiles_dir):
        profile = profiles.get(name)
        rows.append(
            {
                "name": name,
                "active": name == active,
                "chain_id": profile.chain_id if profile else None,
                "rpc_urls": len(profile.rpc_urls) if profile else 0,
                "deployer": profile.deployer if profile else "",
                "signed": bool(profile and profile.signed_profile),
                "readable": profile is not None or name == EMBEDDED,
            }
        )
    if ctx.json_output:
        ctx.emit_json({"networks": rows})
        return 0
    for row in rows:
        mark = "*" if row["active"] else " "
        chain = row["chain_id"] if row["chain_id"] is not None else "-"
        signer = f"signed by {row['deployer']}" if row["signed"] else ""
        broken = "" if row["readable"] else "(cannot be read: `network show` says why)"
        ctx.echo(f"{mark} {row['name']:<20} chain {chain!s:<10} {signer}{broken}".rstrip())
    return 0


def _show(ctx: AppContext, args: argparse.Namespace) -> int:
    from cortensor_desktop.networks import load_profile

    profile = load_profile(ctx.paths.profiles_dir, args.name)
    document: dict[str, Any] = {
        "name": profile.name,
        "active": profile.name == ctx.network_name,
        "embedded": profile.embedded,
        "description": profile.description,
        "chain_id": profile.chain_id,
        "rpc_urls": list(profile.rpc_urls),
        "contracts": profile.contracts,
        "deploy_block": profile.deploy_block,
        "deployer": profile.deployer or None,
        "signature": None,
    }
    if profile.signed_profile:
        document["signature"] = _recheck_signed(ctx, profile, args.check)
    if ctx.json_output:
        ctx.emit_json(document)
        return 0
    for key, value in document.items():
        if isinstance(value, dict):
            ctx.echo(f"{key}:")
            for inner, item in value.items():
                ctx.echo(f"  {inner}: {item}")
        else:
            ctx.echo(f"{key}: {value}")
    return 0


def _recheck_signed(ctx: AppContext, profile: Any, on_chain: bool) -> str:
    """The stored signed profile still verifies, and the installed file still says what it
    says; with --check the chain is asked again. Any difference raises."""
    from chain.network_profile import check_signature, parse_profile, verify_on_chain
    from cortensor_desktop.networks import signed_profile_path

    path = signed_profile_path(ctx.paths.profiles_dir, profile)
    assert path is not None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: the signed profile is missing: {exc.strerror}") from None
    signed = parse_profile(text, str(path))
    check_signature(signed, [profile.deployer], str(path))
    same_contracts = {k: v.lower() for k, v in profile.contracts.items()} == {
        k: v.lower() for k, v in signed.contracts.items()
    }
    if profile.chain_id != signed.chain_id or not same_contracts:
        raise ConfigError(
            f"{ctx.paths.profiles_dir / (profile.name + '.toml')}: its chain id or contracts "
            f"differ from the signed profile {path.name}: edited by hand; join it again"
        )
    if on_chain:
        verify_on_chain(signed, profile.rpc_urls)
        return f"valid, by {signed.deployer}; checked on chain"
    return f"valid, by {signed.deployer}"


def _remove(ctx: AppContext, args: argparse.Namespace) -> int:
    from cortensor_desktop.networks import EMBEDDED, LOCAL, remove_profile

    if args.name == EMBEDDED:
        raise UsageError("the embedded network is built in; nothing to remove")
    if args.name == LOCAL:
        raise UsageError("'local' belongs to the devnet: `devnet down` removes it")
    if args.name == ctx.network_name:
        raise UsageError(
            f"'{args.name}' is the active network: `config set network.profile OTHER` first"
        )
    removed = remove_profile(ctx.paths.profiles_dir, args.name)
    ctx.echo(f"removed network '{args.name}' ({', '.join(p.name for p in removed)})")
    return 0
