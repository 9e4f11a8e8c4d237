"""The user's side of a user task: deposit, open a session, submit a prompt, read the result.

What `ask` does on any network, with nothing but the chain: the same code serves the embedded
network, a devnet on anvil and a testnet. The price moves from the user's deposit into escrow
when the task is submitted; passing miners are paid from it and the rest returns to the deposit.
The result is read from the task's events (who was assigned, each answer, the validation) and
the oracle's `validate` transaction (each miner's score), so the user trusts the chain, not a
process it happens to share.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chain.client import ChainClient
from chain.errors import ChainError, RpcUnavailable
from chain.events import ChainEvent
from chain.transactions import TxResult
from chain.wrappers import PASS_SCORE, Precision, TaskState, Tier, model_id
from engine.node.chain_watch import ChainWaiter
from engine.node.pool_index import PoolIndex

log = logging.getLogger(__name__)

PRECISIONS = {p.name.lower(): int(p) for p in Precision}
# A session's validation level (SessionQueue stores it; the oracle and miners read it):
# POI: answers are greedy and judged (docs/VALIDATION.md); NONE: miners may sample, every
# non-empty answer is accepted and paid, nothing is judged (docs/ROUTER.md).
VALIDATION_LEVEL_NONE = 0
VALIDATION_LEVEL_POI = 1
DEFAULT_PRICE_WEI = 3 * 10**15
ZERO_ADDRESS = "0x" + "00" * 20
TASK_EVENTS = (
    "TaskAssigned",
    "TaskPrecommitted",
    "TaskAnswer",
    "TaskPhase",
    "TaskMinerFailed",
    "TaskValidated",
)
# What ends the wait: validated, or refunded (a TaskPhase). The rest only name the stage.
END_EVENTS = ("TaskPhase", "TaskValidated")
PHASES = {
    TaskState.ASSIGNED: "assigned: miners are answering",
    TaskState.COMMIT: "commit window",
    TaskState.COMMITTED: "committed: validating",
}


class ValidationTimeout(ChainError):
    """The network did not validate the task within the time the user allowed."""


@dataclass(frozen=True)
class SubmittedTask:
    session_id: int
    task_id: int
    transactions: tuple[TxResult, ...]


@dataclass(frozen=True)
class MinerScore:
    address: str
    score: int
    passed: bool


@dataclass(frozen=True)
class TaskOutcome:
    """A validated user task as the chain records it."""

    session_id: int
    task_id: int
    answer: str | None  # the consensus answer; None when no answer passed
    miners: tuple[MinerScore, ...]
    tx_hashes: tuple[str, ...]  # every transaction of the task: user, oracle and miners
    gas_used: int
    user_gas_used: int

    def to_json(self) -> dict[str, object]:
        return {
            "answer": self.answer,
            "session_id": self.session_id,
            "task_id": self.task_id,
            "miners": [
                {"address": m.address, "score": m.score, "passed": m.passed} for m in self.miners
            ],
            "tx_hashes": list(self.tx_hashes),
            "gas_used": self.gas_used,
            "user_gas_used": self.user_gas_used,
        }


def eligible_for_precision(
    client: ChainClient, precision: str, pool: PoolIndex | None = None
) -> int:
    """How many registered miners, not away, could serve a session of this precision."""
    index = _fresh(client, pool)
    full = precision == "full"
    return sum(1 for m in index.members() if not m.away and (not full or m.tier == Tier.GPU_FULL))


def pool_size(
    client: ChainClient, model_name: str, precision: str, pool: PoolIndex | None = None
) -> int:
    """Miners in the user-task pool that serve this model at this precision."""
    index = _fresh(client, pool)
    return len(index.serving(model_id(model_name), full_precision=precision == "full"))


def _fresh(client: ChainClient, pool: PoolIndex | None) -> PoolIndex:
    """The registry's pool from its events (not one call per miner), up to the latest block."""
    index = pool or PoolIndex(client)
    index.refresh()
    return index


def wait_for_pool(
    client: ChainClient,
    model_name: str,
    precision: str,
    k: int,
    deadline: float,
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    pool: PoolIndex | None = None,
) -> None:
    """Wait until k miners can take the task, so no price sits in escrow for nothing.

    Miners of a network just started may still be registering, and a miner joins the pool only
    after passing a network task, so this waits (saying what it waits for) rather than refusing.
    """
    last: tuple[int, int] | None = None
    # Read once (or kept by the caller across tasks), then only the registry's new events.
    pool = pool or PoolIndex(client)
    while True:
        registered = eligible_for_precision(client, precision, pool)
        pooled = pool_size(client, model_name, precision, pool)
        if pooled >= k:
            return
        if (registered, pooled) != last:
            log.info(
                "waiting for %d miners in the user-task pool: %d registered for %s precision, "
                "%d in the pool serving %s",
                k,
                registered,
                precision,
                pooled,
                model_name,
            )
            last = (registered, pooled)
        if clock() > deadline:
            raise ValidationTimeout(
                f"fewer than {k} miners can take the task before --timeout: {registered} "
                f"registered for {precision} precision, {pooled} of them in the user-task "
                f"pool serving {model_name} (a miner joins the pool after passing a network "
                "task); nothing was submitted. Lower --redundancy"
                + (", choose --precision quantized" if precision == "full" else "")
                + " or wait longer (--timeout)"
            )
        time.sleep(poll_s)


def reusable_session(
    client: ChainClient,
    session_id: int,
    model_name: str,
    precision: str,
    redundancy: int,
    price_wei: int,
    validation_level: int = VALIDATION_LEVEL_POI,
) -> bool:
    """Whether an earlier session of this user is still open with exactly these terms."""
    owner, prec, level, k, is_open, model, price = client.queue.call("sessions", session_id)
    return (
        bool(is_open)
        and str(owner).lower() == str(client.address).lower()
        and (int(prec), int(level), int(k)) == (PRECISIONS[precision], validation_level, redundancy)
        and bytes(model) == model_id(model_name)
        and int(price) == price_wei
    )


def submit_user_task(
    client: ChainClient,
    model_name: str,
    prompt: str,
    redundancy: int,
    precision: str = "quantized",
    price_wei: int = DEFAULT_PRICE_WEI,
    session_id: int | None = None,
    validation_level: int = VALIDATION_LEVEL_POI,
    pool: PoolIndex | None = None,
) -> SubmittedTask:
    """Deposit what the price needs, open a session (unless `session_id` is reused), submit.

    `session_id` must be a session `reusable_session` accepted; `pool` is a pool index the
    caller keeps across tasks (else one is read from the registry's events).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    if eligible_for_precision(client, precision, pool) < redundancy:
        hint = " or choose --precision quantized" if precision == "full" else ""
        raise ChainError(
            f"fewer than {redundancy} miners on this network can serve {precision} precision; "
            f"lower --redundancy{hint}"
        )
    transactions: list[TxResult] = []
    missing = price_wei - client.payment.deposit_of(str(client.address))
    if missing > 0:
        transactions.append(client.payment.deposit(missing))
    if session_id is None:
        session_id, opened = client.queue.open_session(
            model_id(model_name), PRECISIONS[precision], validation_level, redundancy, price_wei
        )
        transactions.append(opened)
    task_id, submitted = client.queue.submit_task(session_id, prompt)
    transactions.append(submitted)
    return SubmittedTask(session_id, task_id, tuple(transactions))


def wait_for_outcome(
    client: ChainClient,
    submitted: SubmittedTask,
    deadline: float,
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    stages: bool = True,
) -> TaskOutcome:
    """Follow the task's events until the oracle validated it (or the deadline passes).

    It looks again as soon as a block is mined where the chain announces blocks (the
    in-process chain), else every `poll_s`. `stages` False (the router) follows only the
    events that end the wait and reads the others once at the end: on the in-process chain
    every log read holds the chain's one lock, which the nodes answering the task wait on."""
    task_id = submitted.task_id
    # The task's own block, and never before the network's deploy block.
    start = max(submitted.transactions[-1].block_number, client.deployment.deploy_block)
    followed = TASK_EVENTS if stages else END_EVENTS
    cursors = [client.queue.cursor(name, start, taskId=task_id) for name in followed]
    seen: list[ChainEvent] = []
    stage = "queued: waiting for the oracle to assign miners"
    waiter, never = ChainWaiter(client.web3, poll_s), threading.Event()
    while True:
        try:
            head = int(client.web3.eth.block_number)
            for cursor in cursors:
                seen.extend(cursor.poll(head))  # a cursor moves only with what it returned
        except RpcUnavailable as exc:
            log.warning("the RPC does not answer (%s); still waiting", exc)
        if any(e.name == "TaskValidated" for e in seen):
            if not stages:
                seen += _rest_of_task(client, task_id, start, head)
            return _outcome(client, submitted, sorted(seen, key=_order))
        if any(_refunded(e) for e in seen):
            raise ChainError(f"task {task_id} was refunded: its price is back in the deposit")
        if stages:
            stage = _stage(seen, stage)
        if clock() > deadline:
            raise ValidationTimeout(
                f"task {task_id} was not validated before --timeout (last seen: {stage}); "
                "is the oracle running? Its price stays in escrow until the oracle validates it, "
                "or until the task timeout lets its owner refund it"
            )
        waiter.wait(never)


def _rest_of_task(client: ChainClient, task_id: int, start: int, head: int) -> list[ChainEvent]:
    """The task's events the wait did not follow, once, up to the block it ended in."""
    found: list[ChainEvent] = []
    for name in TASK_EVENTS:
        if name not in END_EVENTS:
            found += client.queue.cursor(name, start, taskId=task_id).poll(head)
    return found


def _refunded(event: ChainEvent) -> bool:
    return event.name == "TaskPhase" and int(event.args["state"]) == TaskState.REFUNDED


def refund_task(client: ChainClient, task_id: int, since_block: int = 0) -> TxResult:
    """Take a task's price back once the leader left it for the task timeout (its owner, or a
    miner it reserves). The assignment comes from the task's TaskAssigned event, read from
    `since_block` (the block it was submitted in, when known)."""
    cursor = client.queue.cursor("TaskAssigned", since_block, taskId=task_id)
    assigned = cursor.poll(int(client.web3.eth.block_number))
    miners = [str(m) for m in assigned[-1].args["miners"]] if assigned else []
    return client.queue.refund(task_id, miners)


def _order(event: ChainEvent) -> tuple[int, int]:
    return event.block_number, event.log_index


def _stage(events: list[ChainEvent], previous: str) -> str:
    stage = previous
    for event in sorted(events, key=_order):
        if event.name == "TaskAssigned":
            stage = f"assigned to {len(event.args['miners'])} miners"
        elif event.name == "TaskPhase":
            stage = PHASES.get(TaskState(int(event.args["state"])), stage)
    if stage != previous:
        log.info("%s", stage)
    return stage


def _outcome(
    client: ChainClient, submitted: SubmittedTask, events: list[ChainEvent]
) -> TaskOutcome:
    validated = next(e for e in events if e.name == "TaskValidated")
    miners, scores = _validation_scores(client, validated.tx_hash)
    revealed = [e for e in events if e.name == "TaskAnswer"]
    answers = {str(e.args["miner"]).lower(): str(e.args["answer"]) for e in revealed}
    winner = str(validated.args["consensusMiner"]).lower()
    user_hashes = [tx.tx_hash for tx in submitted.transactions]
    task_hashes = list(dict.fromkeys(e.tx_hash for e in events))
    hashes = list(dict.fromkeys(user_hashes + task_hashes))
    gas = {h: _gas_used(client, h) for h in task_hashes if h not in user_hashes}
    user_gas = sum(tx.gas_used for tx in submitted.transactions)
    return TaskOutcome(
        session_id=submitted.session_id,
        task_id=submitted.task_id,
        answer=answers.get(winner) if winner != ZERO_ADDRESS else None,
        miners=tuple(
            MinerScore(m, s, s >= PASS_SCORE and m.lower() in answers)
            for m, s in zip(miners, scores, strict=True)
        ),
        tx_hashes=tuple(hashes),
        gas_used=user_gas + sum(gas.values()),
        user_gas_used=user_gas,
    )


def _validation_scores(client: ChainClient, tx_hash: str) -> tuple[list[str], list[int]]:
    """The assignment and each miner's score, as the oracle's `validate` call wrote them."""
    tx = client.web3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    _, params = client.queue.contract.decode_function_input(tx["input"])
    return [str(m) for m in params["miners"]], [int(s) for s in params["scores"]]


def _gas_used(client: ChainClient, tx_hash: str) -> int:
    return int(client.web3.eth.get_transaction_receipt(tx_hash)["gasUsed"])  # type: ignore[arg-type]
