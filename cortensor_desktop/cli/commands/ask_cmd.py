"""`ask PROMPT`: submit a user task to the active network and print the validated answer.

The same user flow runs on every network, reading only the chain: wait until k miners are in the
user-task pool, deposit what the price needs, open a session (or reuse this user's open one with
the same terms), submit the prompt, follow the task's events until the oracle validated it, and
read each miner's score from the oracle's `validate` transaction.

Who pays: on the `embedded` network (started in this process first: chain, oracle and miners) a
funded dev account; on the `local` devnet a devnet account of this home, made on first use and
funded from anvil; on any other network this home's wallet, unlocked like the wallet commands.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.cli.exit_codes import UsageError
from cortensor_desktop.cli.prompt import read_prompt
from cortensor_desktop.networks import LOCAL

log = logging.getLogger(__name__)
MAX_REDUNDANCY = 16
EMBEDDED_MAX_REDUNDANCY = 7
DEVNET_USER_WEI = 100 * 10**18
# Deposit, open and submit cost about 250k gas; the margin covers a busier fee market.
USER_GAS_BUDGET = 400_000


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from cortensor_desktop.cli.main import add_json_flag

    parser = subparsers.add_parser(
        "ask",
        parents=[common],
        help="ask the network a question and get a validated answer",
        description="Submit PROMPT as a user task on the active network: k miners answer it "
        "(greedy), the oracle checks every answer against its own model (likelihood and "
        "embedding similarity), pays the miners that pass and returns the consensus answer. "
        "On the embedded network the whole network starts in this process first; on the "
        "local devnet a devnet account pays (funded from anvil); elsewhere this home's wallet.",
    )
    parser.add_argument("prompt", help="the question, or - to read it from standard input")
    parser.add_argument(
        "--redundancy", type=int, default=3, metavar="K", help="how many miners answer (default 3)"
    )
    parser.add_argument(
        "--precision",
        choices=["quantized", "full"],
        default="quantized",
        help="quantized models (cheaper, faster) or full precision",
    )
    parser.add_argument(
        "--model",
        metavar="ID",
        help="the catalogue model to ask (default: the model the nodes run by default)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600,
        metavar="SECONDS",
        help="give up after this long (default 600)",
    )
    parser.add_argument(
        "--passphrase-file",
        metavar="PATH",
        help="the wallet passphrase (networks other than embedded and local)",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=_ask)


def _ask(ctx: AppContext, args: argparse.Namespace) -> int:
    args.prompt = read_prompt(args.prompt)
    embedded = ctx.network.embedded
    limit = EMBEDDED_MAX_REDUNDANCY if embedded else MAX_REDUNDANCY
    if not 1 <= args.redundancy <= limit:
        where = "the embedded network" if embedded else "a network"
        raise UsageError(f"--redundancy must be between 1 and {limit} on {where}")
    if args.timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    deadline = time.monotonic() + args.timeout
    document = _ask_embedded(ctx, args, deadline) if embedded else _ask_network(ctx, args, deadline)
    document["network"] = ctx.network.name
    _print(ctx, document)
    return 0


def _ask_embedded(ctx: AppContext, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    from engine.host.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings
    from engine.state.events import EventBus

    bus = EventBus()
    # The oracle runs in this process here, so its verdicts (which check failed, by how much)
    # can go with the chain's scores; elsewhere the chain holds the scores only.
    verdicts = bus.subscribe(maxsize=100_000, name="ask")
    network = EmbeddedNetwork(
        ctx.database,
        ctx.models_dir,
        bus,
        EmbeddedNetworkSettings(miners=max(3, args.redundancy)),
        progress=lambda message: log.info("%s", message),
    )
    try:
        network.start()
        chain = network.chain
        if chain is None:  # start() sets it or raises; this keeps the type honest
            raise RuntimeError("the embedded network started without a chain")
        user = chain.client(chain.accounts[len(network.miners)])
        model = args.model or network.miners[0].settings.model_name
        document = _run_task(user, model, args, deadline, session_id=None)
        attach_validation(document, verdicts.drain())
        return document
    finally:
        network.stop()


def attach_validation(document: dict[str, Any], events: list[Any]) -> None:
    """Each miner's verdict from the oracle's `validation` events of this task: the failed
    checks, one line each with its figure against its threshold, and the figures themselves."""
    from engine.protocol import TaskKind
    from engine.state.events import ValidationResult

    by_miner = {
        e.miner.lower(): e
        for e in events
        if isinstance(e, ValidationResult)
        and e.task_kind is TaskKind.USER
        and e.task_id == document["task_id"]
    }
    for miner in document["miners"]:
        event = by_miner.get(str(miner["address"]).lower())
        if event is None:
            continue
        miner["validation"] = {
            "failed_checks": list(event.failed_checks),
            "reasons": list(event.reasons),
            "agreement": event.agreement,
            "top1_agreement": event.top1_agreement,
            "top1_min": event.top1_min,
            "near_tie_margin": event.near_tie_margin,
            "opening_gaps": list(event.opening_gaps),
            "opening_tokens": event.opening_tokens,
            "opening_misses_max": event.opening_misses_max,
            "opening_margin": event.opening_margin,
            "end_gap": event.end_gap,
            "cosine": event.cosine,
            "cosine_min": event.cosine_min,
            "greedy_path": event.greedy_path,
            "misses": event.misses,
            "misses_p": event.misses_p,
            "honest_miss_rate": event.honest_miss_rate,
            "misses_alpha": event.misses_alpha,
        }


def _ask_network(ctx: AppContext, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    from chain.client import connect
    from engine.models.store import ModelStore

    profile = ctx.network
    if profile.chain_id is None:
        raise UsageError(f"network profile '{profile.name}' has no chain id")
    devnet = profile.name == LOCAL
    account = _devnet_user(ctx) if devnet else _home_wallet(ctx, args)
    client = connect(
        profile.chain_id,
        profile.rpc_urls,
        profile.contracts,
        account,
        deploy_block=profile.deploy_block,
        **ctx.chain_options(),
    )
    if devnet:
        _fund_from_anvil(client)
    else:
        _check_funds(client, profile.name)
    model = args.model or ModelStore(ctx.models_dir).default_chat_model().id
    remembered = _SessionMemory(ctx, client, model, args)
    document = _run_task(client, model, args, deadline, session_id=remembered.reusable())
    remembered.keep(int(document["session_id"]))
    return document


def _run_task(
    client: Any, model: str, args: argparse.Namespace, deadline: float, session_id: int | None
) -> dict[str, Any]:
    from engine.node.pool_index import PoolIndex
    from engine.node.user_session import submit_user_task, wait_for_outcome, wait_for_pool

    pool = PoolIndex(client)  # the registry's events read once for both checks
    wait_for_pool(client, model, args.precision, args.redundancy, deadline, pool=pool)
    submitted = submit_user_task(
        client,
        model,
        args.prompt,
        args.redundancy,
        args.precision,
        session_id=session_id,
        pool=pool,
    )
    log.info(
        "task %d submitted in session %d (%s); waiting for validation",
        submitted.task_id,
        submitted.session_id,
        "reused" if session_id else "new",
    )
    outcome = wait_for_outcome(client, submitted, deadline)
    return {**outcome.to_json(), "user": client.address, "model": model}


# ---- who pays ----


def _devnet_user(ctx: AppContext) -> Any:
    from cortensor_desktop.hosting.devnet_nodes import devnet_user

    return devnet_user(ctx.paths.data_dir / "devnet" / "user")


def _fund_from_anvil(client: Any) -> None:
    from chain.devnet import fund

    if client.balance(client.address) < DEVNET_USER_WEI // 10:
        fund(client.web3, client.address, DEVNET_USER_WEI)
        log.info("funded the devnet user %s from anvil", client.address)


def _home_wallet(ctx: AppContext, args: argparse.Namespace) -> Any:
    from chain.errors import WalletError
    from chain.passphrase import resolve
    from chain.wallet import unlock, wallet_info, wallet_path
    from cortensor_desktop.logs import register_secret

    keystore = ctx.paths.keystore_dir
    if not wallet_path(keystore).exists():
        raise WalletError(
            f"no wallet in this home: `ask` on network '{ctx.network.name}' pays from this "
            "home's wallet (`wallet new` or `wallet import` first, then fund it)"
        )
    passphrase = resolve(args.passphrase_file, wallet_info(keystore).address)
    register_secret(passphrase.value)
    return unlock(keystore, passphrase.value)


def _check_funds(client: Any, network: str) -> None:
    from chain.errors import ChainError
    from engine.node.earnings import eth
    from engine.node.user_session import DEFAULT_PRICE_WEI

    address = client.address
    held = client.balance(address)
    deposited = client.payment.deposit_of(address)
    need = max(0, DEFAULT_PRICE_WEI - deposited) + USER_GAS_BUDGET * int(client.web3.eth.gas_price)
    if held < need:
        raise ChainError(
            f"wallet {address} holds {eth(held)} on network '{network}'; `ask` needs "
            f"about {eth(need)} (the task price plus gas): fund it first"
        )


# ---- session reuse ----


class _SessionMemory:
    """This home remembers the user's open session per chain and terms, to submit into it again
    instead of paying to open a new one; the chain has the last word on whether it still fits."""

    def __init__(self, ctx: AppContext, client: Any, model: str, args: argparse.Namespace) -> None:
        from engine.host.standalone_node import chain_key
        from engine.node.user_session import DEFAULT_PRICE_WEI

        chain = chain_key(client)
        self.db = ctx.database
        self.client = client
        self.terms = (model, args.precision, args.redundancy, DEFAULT_PRICE_WEI)
        self.key = (
            f"ask-session:{chain.chain_id}:{chain.genesis_hash}:{str(client.address).lower()}:"
            f"{model}:{args.precision}:{args.redundancy}:{DEFAULT_PRICE_WEI}"
        )

    def reusable(self) -> int | None:
        from engine.node.user_session import reusable_session

        stored = self.db.cache_get(self.key)
        if not isinstance(stored, int):
            return None
        return stored if reusable_session(self.client, stored, *self.terms) else None

    def keep(self, session_id: int) -> None:
        self.db.cache_put(self.key, session_id)


# ---- output ----


def _print(ctx: AppContext, document: dict[str, Any]) -> None:
    if ctx.json_output:
        ctx.emit_json(document)
        return
    ctx.echo(document["answer"] or "(no answer passed validation)")
    ctx.echo()
    for miner in document["miners"]:
        verdict = "passed" if miner["passed"] else "failed"
        ctx.echo(f"  miner {miner['address']}  score {miner['score']:>3}  {verdict}")
        for reason in miner.get("validation", {}).get("reasons", []):
            ctx.echo(f"    {reason}")
    ctx.echo(
        f"  task {document['task_id']} in session {document['session_id']} on "
        f"'{document['network']}', gas used {document['gas_used']:,} "
        f"(this user {document['user_gas_used']:,})"
    )
    for tx_hash in document["tx_hashes"]:
        ctx.echo(f"  tx {tx_hash}")
