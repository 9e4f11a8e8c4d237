"""The user's side of a user task: deposit, open a session, submit a prompt, read the result.

What `ask` does on any network. The price moves from the user's deposit into escrow when the
task is submitted; passing miners are paid from it and the rest returns to the deposit.
"""

from __future__ import annotations

from dataclasses import dataclass

from chain.client import ChainClient
from chain.errors import ChainError
from chain.transactions import TxResult
from chain.wrappers import model_id

PRECISIONS = {"quantized": 0, "full": 1}
# Registered tiers (NodeRegistry): full precision needs a node that runs the model unquantized.
FULL_PRECISION_TIER = 3
VALIDATION_LEVEL_POI = 1


@dataclass(frozen=True)
class SubmittedTask:
    session_id: int
    task_id: int
    transactions: tuple[TxResult, ...]


def eligible_for_precision(client: ChainClient, precision: str) -> int:
    """How many registered miners, not away, could serve a session of this precision."""
    registry = client.registry
    miners = registry.present_miners()
    if precision == "quantized":
        return len(miners)
    return sum(1 for m in miners if registry.node_info(m).tier == FULL_PRECISION_TIER)


def submit_user_task(
    client: ChainClient,
    model_name: str,
    prompt: str,
    redundancy: int,
    precision: str = "quantized",
    price_wei: int = 3 * 10**15,
) -> SubmittedTask:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    if eligible_for_precision(client, precision) < redundancy:
        raise ChainError(
            f"fewer than {redundancy} miners on this network can serve {precision} precision; "
            "lower --redundancy or choose --precision quantized"
        )
    deposit = client.payment.deposit(price_wei)
    session_id, opened = client.queue.open_session(
        model_id(model_name), PRECISIONS[precision], VALIDATION_LEVEL_POI, redundancy, price_wei
    )
    task_id, submitted = client.queue.submit_task(session_id, prompt)
    return SubmittedTask(session_id, task_id, (deposit, opened, submitted))
