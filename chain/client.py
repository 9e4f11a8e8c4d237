"""ChainClient: one backend, the network's contracts, and (optionally) one signing account."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3

from chain.artifacts import NETWORK_CONTRACTS, PROTOCOL_VERSION, load_artifact
from chain.errors import ChainError
from chain.events import DEFAULT_LOG_SPAN, LogPager
from chain.rpc import Backend, HttpBackend, RetryPolicy
from chain.transactions import GasPolicy, NonceManager, TxResult, TxSender
from chain.wrappers import Cognitive, NodeRegistry, NodeStats, SessionPayment, SessionQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    """Where a network's contracts live; read from a network profile, never from code."""

    chain_id: int
    contracts: Mapping[str, str]
    # The block the contracts were deployed in (from the profile): no event of this network is
    # older, so event reads start here at the earliest, never at block 0.
    deploy_block: int = 0

    def address(self, name: str) -> str:
        try:
            return Web3.to_checksum_address(self.contracts[name])
        except KeyError:
            raise ChainError(f"the network profile has no address for contract {name}") from None


class ChainClient:
    def __init__(
        self,
        backend: Backend,
        deployment: Deployment,
        account: LocalAccount | None = None,
        nonces: NonceManager | None = None,
        gas: GasPolicy | None = None,
        logs: LogPager | None = None,
    ) -> None:
        self.backend = backend
        self.web3 = backend.web3
        self.deployment = deployment
        self.nonces = nonces or NonceManager(self.web3)
        self.gas = gas
        self.logs = logs or LogPager()
        self.sender = (
            TxSender(backend, account, self.nonces, deployment.chain_id, gas) if account else None
        )
        pager = self.logs
        self.registry = NodeRegistry(self._contract("NodeRegistry"), self.sender, pager)
        self.stats = NodeStats(self._contract("NodeStats"), self.sender, pager)
        self.cognitive = Cognitive(self._contract("Cognitive"), self.sender, pager)
        self.queue = SessionQueue(self._contract("SessionQueue"), self.sender, pager)
        self.payment = SessionPayment(self._contract("SessionPayment"), self.sender, pager)

    def _contract(self, name: str):  # type: ignore[no-untyped-def]
        return self.web3.eth.contract(
            address=Web3.to_checksum_address(self.deployment.address(name)),
            abi=load_artifact(name).abi,
        )

    @property
    def address(self) -> str | None:
        return self.sender.address if self.sender else None

    def as_account(self, account: LocalAccount) -> ChainClient:
        """The same chain and nonce bookkeeping, signing as another account."""
        return ChainClient(self.backend, self.deployment, account, self.nonces, self.gas, self.logs)

    def balance(self, address: str) -> int:
        return int(self.web3.eth.get_balance(Web3.to_checksum_address(address)))

    def transfer(self, to: str, value_wei: int) -> TxResult:
        if self.sender is None:
            raise ChainError("a transfer needs a signing account")
        return self.sender.transfer(to, value_wei)

    def check_protocol(self) -> int:
        """The deployed protocol version; logs a warning when it is not the app's."""
        deployed = self.registry.protocol_version()
        if deployed != PROTOCOL_VERSION:
            log.warning(
                "the network runs protocol version %s, this app speaks %s: update the app "
                "or expect rejected transactions",
                deployed,
                PROTOCOL_VERSION,
            )
        return deployed


def connect(
    chain_id: int,
    rpc_urls: Sequence[str],
    contracts: Mapping[str, str],
    account: LocalAccount | None = None,
    policy: RetryPolicy | None = None,
    deploy_block: int = 0,
    *,
    log_span: int = DEFAULT_LOG_SPAN,
    gas: GasPolicy | None = None,
) -> ChainClient:
    """A client for an HTTP network profile (local devnet, testnet): failover over `rpc_urls`.

    `deploy_block` (the profile's) is where event reads start at the earliest; `log_span` the
    most blocks one eth_getLogs covers (`[chain] log_range_blocks`); `gas` the fee policy with
    its cap (`[chain] max_fee_gwei`).
    """
    missing = [n for n in NETWORK_CONTRACTS if n not in contracts]
    if missing:
        raise ChainError(f"the network profile lacks contract addresses for {', '.join(missing)}")
    backend = HttpBackend(list(rpc_urls), policy or RetryPolicy())
    deployment = Deployment(chain_id, dict(contracts), deploy_block)
    return ChainClient(backend, deployment, account, gas=gas, logs=LogPager(log_span))
