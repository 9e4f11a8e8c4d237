"""Deploy the network's contracts and wire them together (modules, oracles)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from eth_account.signers.local import LocalAccount
from web3 import Web3

from chain.artifacts import load_artifact
from chain.errors import ChainError
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

    def to_json(self) -> dict[str, bool | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> NetworkParams:
        """Checked: every key known, booleans where booleans belong, non-negative integers."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ChainError(f"unknown network parameter '{unknown[0]}'")
        values: dict[str, bool | int] = {}
        for name, value in raw.items():
            wants_bool = name == "open_registration"
            if wants_bool != isinstance(value, bool) or not isinstance(value, int):
                kind = "true or false" if wants_bool else "a whole number"
                raise ChainError(f"network parameter '{name}' must be {kind}, got {value!r}")
            if value < 0:
                raise ChainError(f"network parameter '{name}' must not be negative")
            values[name] = value
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DeployedNetwork:
    contracts: dict[str, str]
    deploy_block: int  # the block of the first contract: nothing of this network is older
    last_block: int  # the block of the last wiring transaction
    tx_hashes: tuple[str, ...]
    gas_used: int


# The wiring after the contracts: NodeRegistry.setModule for these, then addOracle per oracle.
MODULES = ("NodeStats", "Cognitive", "SessionQueue")


def constructor_args(
    name: str, addresses: Mapping[str, str], p: NetworkParams
) -> tuple[object, ...]:
    """Each contract's constructor arguments; the one place that knows them (deploy and the
    code-hash check both build the contracts from here)."""
    if name == "NodeRegistry":
        return (p.open_registration, p.eligibility_threshold, p.leader_grace_s, p.module_delay_s)
    registry = addresses["NodeRegistry"]
    if name == "NodeStats":
        return (registry, p.min_ping_interval_s, p.level_step, p.remove_after_failures)
    if name == "SessionPayment":
        return (registry,)
    if name == "Cognitive":
        stats = addresses["NodeStats"]
        return (registry, stats, p.step_window_s, p.answer_window_s, p.selection_cooldown_s)
    if name in ("SessionQueue", "StoredAnswersQueue"):
        stats, payment = addresses["NodeStats"], addresses["SessionPayment"]
        return (
            registry,
            stats,
            payment,
            p.task_window_s,
            p.task_timeout_s,
            p.answer_tokens,
            p.min_price_per_token_wei,
        )
    raise ChainError(f"no constructor known for contract {name}")


def creation_data(
    web3: Web3, name: str, artifact_name: str, addresses: Mapping[str, str], p: NetworkParams
) -> str:
    """The creation transaction's data: the artifact's bytecode and the encoded arguments."""
    artifact = load_artifact(artifact_name)
    factory = web3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    return str(factory.constructor(*constructor_args(name, addresses, p)).data_in_transaction)


def deploy_network(
    backend: Backend,
    admin: LocalAccount,
    oracles: list[str],
    params: NetworkParams | None = None,
    queue_contract: str = "SessionQueue",
) -> dict[str, str]:
    """Deploy all five contracts; returns {name: address}. The first oracle leads."""
    return deploy_network_detailed(backend, admin, oracles, params, queue_contract).contracts


def deploy_network_detailed(
    backend: Backend,
    admin: LocalAccount,
    oracles: list[str],
    params: NetworkParams | None = None,
    queue_contract: str = "SessionQueue",
    sender: TxSender | None = None,
) -> DeployedNetwork:
    """Deploy and wire the network; also says where it starts on chain and what it cost."""
    p = params or NetworkParams()
    web3 = backend.web3
    sender = sender or TxSender(backend, admin, NonceManager(web3), int(web3.eth.chain_id))
    addresses: dict[str, str] = {}
    results = []
    for name in ("NodeRegistry", "NodeStats", "SessionPayment", "Cognitive", "SessionQueue"):
        artifact = load_artifact(queue_contract if name == "SessionQueue" else name)
        factory = web3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        call = factory.constructor(*constructor_args(name, addresses, p))
        result = sender.send(call, f"deploy {artifact.name}")
        addresses[name] = str(result.receipt["contractAddress"])
        results.append(result)
    contract = web3.eth.contract(
        address=Web3.to_checksum_address(addresses["NodeRegistry"]),
        abi=load_artifact("NodeRegistry").abi,
    )
    for module in MODULES:
        wiring = contract.functions.setModule(addresses[module], True)
        results.append(sender.send(wiring, "NodeRegistry.setModule"))
    for oracle in oracles:
        results.append(sender.send(contract.functions.addOracle(oracle), "NodeRegistry.addOracle"))
    # Wired: from now on a new module waits module_delay_s after an event nodes can see.
    results.append(sender.send(contract.functions.endSetup(), "NodeRegistry.endSetup"))
    return DeployedNetwork(
        contracts=addresses,
        deploy_block=results[0].block_number,
        last_block=results[-1].block_number,
        tx_hashes=tuple(r.tx_hash for r in results),
        gas_used=sum(r.gas_used for r in results),
    )
