"""Deploy the network's contracts and wire them together (modules, oracles)."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3

from chain.artifacts import load_artifact
from chain.rpc import Backend
from chain.transactions import NonceManager, TxSender


@dataclass(frozen=True)
class NetworkParams:
    """Protocol settings fixed at deployment. Devnet values: eligibility after 1 success."""

    open_registration: bool = True
    eligibility_threshold: int = 1
    remove_after_failures: int = 3
    leader_grace_s: int = 60
    min_ping_interval_s: int = 30
    level_step: int = 10
    step_window_s: int = 120
    answer_window_s: int = 120
    selection_cooldown_s: int = 0
    task_window_s: int = 120
    # A user task the leader leaves this long past its deadline can be refunded (docs/CHAIN.md).
    task_timeout_s: int = 600
    # The answer budget of a user task in tokens (the miner's answer_max_tokens): with the
    # minimum price per token it sets the least a session may pay each miner.
    answer_tokens: int = 128
    min_price_per_token_wei: int = 1
    # After deployment a new module goes live only this long after its ModuleScheduled event.
    module_delay_s: int = 3600


def _deploy(sender: TxSender, name: str, *args: object) -> str:
    artifact = load_artifact(name)
    factory = sender.web3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    result = sender.send(factory.constructor(*args), f"deploy {name}")
    return str(result.receipt["contractAddress"])


def deploy_network(
    backend: Backend,
    admin: LocalAccount,
    oracles: list[str],
    params: NetworkParams | None = None,
    queue_contract: str = "SessionQueue",
) -> dict[str, str]:
    """Deploy all five contracts; returns {name: address}. The first oracle leads."""
    p = params or NetworkParams()
    web3 = backend.web3
    sender = TxSender(backend, admin, NonceManager(web3), int(web3.eth.chain_id))
    registry = _deploy(
        sender,
        "NodeRegistry",
        p.open_registration,
        p.eligibility_threshold,
        p.leader_grace_s,
        p.module_delay_s,
    )
    stats = _deploy(
        sender,
        "NodeStats",
        registry,
        p.min_ping_interval_s,
        p.level_step,
        p.remove_after_failures,
    )
    payment = _deploy(sender, "SessionPayment", registry)
    cognitive = _deploy(
        sender,
        "Cognitive",
        registry,
        stats,
        p.step_window_s,
        p.answer_window_s,
        p.selection_cooldown_s,
    )
    queue = _deploy(
        sender,
        queue_contract,
        registry,
        stats,
        payment,
        p.task_window_s,
        p.task_timeout_s,
        p.answer_tokens,
        p.min_price_per_token_wei,
    )
    contract = web3.eth.contract(
        address=Web3.to_checksum_address(registry), abi=load_artifact("NodeRegistry").abi
    )
    for module in (stats, cognitive, queue):
        sender.send(contract.functions.setModule(module, True), "NodeRegistry.setModule")
    for oracle in oracles:
        sender.send(contract.functions.addOracle(oracle), "NodeRegistry.addOracle")
    # Wired: from now on a new module waits module_delay_s after an event nodes can see.
    sender.send(contract.functions.endSetup(), "NodeRegistry.endSetup")
    return {
        "NodeRegistry": registry,
        "NodeStats": stats,
        "SessionPayment": payment,
        "Cognitive": cognitive,
        "SessionQueue": queue,
    }
