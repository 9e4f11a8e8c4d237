"""`ask PROMPT`: submit a user task to the network and print the validated answer.

On the `embedded` network this starts the whole network in this process (chain, oracle and
miners), waits until enough miners are in the user-task pool (one passed network task each),
then acts as the user: deposit, open a session, submit the prompt, wait for validation.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.cli.exit_codes import UsageError

log = logging.getLogger(__name__)
NODE_EPHEMERAL = 2


class AskTimeoutError(Exception):
    """The network did not validate the task in time."""


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from cortensor_desktop.cli.main import add_json_flag

    parser = subparsers.add_parser(
        "ask",
        parents=[common],
        help="ask the network a question and get a validated answer",
        description="Submit PROMPT as a user task: k miners answer it (greedy), the oracle "
        "checks every answer against its own model (likelihood and embedding "
        "similarity), pays the miners that pass and returns the consensus answer. "
        "On the embedded network the whole network starts in this process first.",
    )
    parser.add_argument("prompt", help="the question")
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
        "--timeout",
        type=float,
        default=600,
        metavar="SECONDS",
        help="give up after this long (default 600)",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=_ask)


def _ask(ctx: AppContext, args: argparse.Namespace) -> int:
    if not 1 <= args.redundancy <= 7:
        raise UsageError("--redundancy must be between 1 and 7 on the embedded network")
    if not ctx.network.embedded:
        raise UsageError(
            f"`ask` reaches the embedded network only in this version, "
            f"not '{ctx.network.name}' (use --network embedded)"
        )
    from engine.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings
    from engine.events import EventBus

    network = EmbeddedNetwork(
        ctx.database,
        ctx.models_dir,
        EventBus(),
        EmbeddedNetworkSettings(miners=max(3, args.redundancy)),
        progress=lambda message: log.info("%s", message),
    )
    try:
        network.start()
        document = _run_task(network, args)
    finally:
        network.stop()
    _print(ctx, document)
    return 0


def _run_task(network: Any, args: argparse.Namespace) -> dict[str, Any]:
    from engine.user_session import submit_user_task

    deadline = time.monotonic() + args.timeout
    _wait_for_pool(network, args.redundancy, deadline)
    chain = network.chain
    user = chain.client(chain.accounts[len(network.miners)])
    model = network.miners[0].settings.model_name
    submitted = submit_user_task(user, model, args.prompt, args.redundancy, args.precision)
    log.info(
        "task %d submitted in session %d; waiting for validation",
        submitted.task_id,
        submitted.session_id,
    )
    while submitted.task_id not in network.oracle.user_results:
        _check_deadline(deadline, "the network did not validate the task")
        time.sleep(0.5)
    return _result(network.oracle.user_results[submitted.task_id], submitted)


def _wait_for_pool(network: Any, k: int, deadline: float) -> None:
    log.info("waiting until %d miners have passed a network task and joined the user pool", k)
    registry = network.chain.client().registry
    while (
        sum(1 for m in network.miners if registry.node_info(m.address).status == NODE_EPHEMERAL) < k
    ):
        _check_deadline(deadline, f"fewer than {k} miners joined the user-task pool")
        time.sleep(1.0)


def _check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        from chain.errors import ChainError

        raise ChainError(f"{what} before --timeout; try a longer --timeout")


def _result(task: Any, submitted: Any) -> dict[str, Any]:
    judgement = task.judgement
    answers = {j.miner: j for j in judgement.answers} if judgement else {}
    consensus = (
        judgement.answers[judgement.consensus_index].answer
        if judgement and judgement.consensus_index is not None
        else None
    )
    user_txs = list(submitted.transactions)
    return {
        "answer": consensus,
        "session_id": submitted.session_id,
        "task_id": submitted.task_id,
        "miners": [
            {
                "address": m,
                "score": answers[m].score if m in answers else 0,
                "passed": bool(m in answers and answers[m].verdict.passed),
            }
            for m in task.miners
        ],
        "tx_hashes": [tx.tx_hash for tx in user_txs] + task.tx_hashes,
        "gas_used": sum(int(tx.receipt["gasUsed"]) for tx in user_txs) + task.gas_used,
    }


def _print(ctx: AppContext, document: dict[str, Any]) -> None:
    if ctx.json_output:
        ctx.emit_json(document)
        return
    ctx.echo(document["answer"] or "(no answer passed validation)")
    ctx.echo()
    for miner in document["miners"]:
        verdict = "passed" if miner["passed"] else "failed"
        ctx.echo(f"  miner {miner['address']}  score {miner['score']:>3}  {verdict}")
    ctx.echo(
        f"  task {document['task_id']} in session {document['session_id']}, "
        f"gas used {document['gas_used']:,}"
    )
    for tx_hash in document["tx_hashes"]:
        ctx.echo(f"  tx {tx_hash}")
