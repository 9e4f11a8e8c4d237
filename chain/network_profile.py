"""Signed network profiles: what an operator publishes so strangers can join a network safely.

A profile names the chain (id and RPC URLs), the contracts (addresses and the keccak of each one's
runtime code), the block the network was deployed in, the protocol version and the deployment
parameters, and carries the deployer's EIP-191 signature (`personal_sign`) over a canonical JSON
of all of it. Joining checks, in this order: the file is well formed; the signature recovers the
deployer it names; that deployer is one the joiner trusts; the code hashes are the ones this app's
artifacts produce with those parameters (built in a local EVM, never hard-coded, so they follow
the contracts); every RPC serves the profile's chain id; each address holds exactly that code;
the registry's admin is the deployer. The first failure is one line naming what differs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from web3 import Web3
from web3.types import Nonce
from web3.utils.address import get_create_address

from chain.artifacts import NETWORK_CONTRACTS, PROTOCOL_VERSION, load_artifact
from chain.deploy import (
    MODULES,
    DeployedNetwork,
    NetworkParams,
    creation_data,
    deploy_network_detailed,
)
from chain.errors import ChainError, ChainIdMismatch, RpcUnavailable
from chain.rpc import Backend, HttpBackend, RetryPolicy, public_url
from chain.transactions import GasPolicy, NonceManager, TxSender

PROFILE_FORMAT = "cortensor-network/1"
_BODY_KEYS = frozenset(
    {
        "format",
        "name",
        "description",
        "chain_id",
        "rpc_urls",
        "contracts",
        "code_hashes",
        "deploy_block",
        "protocol_version",
        "params",
        "deployer",
    }
)
# Gas of the wiring calls, which cannot be estimated before the registry exists (measured:
# setModule about 48,000, addOracle about 70,000); generous, since running out half-way is worse.
WIRING_GAS = 100_000
ROUND = 1  # one round per URL when checking: a dead RPC is reported, not retried for long


class ProfileInvalid(ChainError):
    """The profile file itself is wrong: malformed, or its signature does not hold (exit 3)."""


class ProfileMismatch(ChainError):
    """The chain disagrees with the profile: chain id, code, admin (exit 5)."""


class InsufficientFunds(ChainError):
    """The deployer cannot pay for the deployment; nothing was sent."""


@dataclass(frozen=True)
class SignedProfile:
    name: str
    chain_id: int
    rpc_urls: tuple[str, ...]
    contracts: dict[str, str]
    code_hashes: dict[str, str]
    deploy_block: int
    protocol_version: int
    params: dict[str, bool | int]
    deployer: str
    signature: str = ""
    description: str = ""
    format: str = PROFILE_FORMAT

    def body(self) -> dict[str, Any]:
        """Everything the signature covers (all but the signature)."""
        return {
            "format": self.format,
            "name": self.name,
            "description": self.description,
            "chain_id": self.chain_id,
            "rpc_urls": list(self.rpc_urls),
            "contracts": dict(self.contracts),
            "code_hashes": dict(self.code_hashes),
            "deploy_block": self.deploy_block,
            "protocol_version": self.protocol_version,
            "params": dict(self.params),
            "deployer": self.deployer,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "signature": self.signature}

    def to_text(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"


def canonical(body: Mapping[str, Any]) -> str:
    """The exact text that is signed: sorted keys, no spaces, ASCII only."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sign_profile(unsigned: SignedProfile, account: LocalAccount) -> SignedProfile:
    if to_checksum_address(unsigned.deployer) != account.address:
        raise ChainError("a profile is signed by its deployer")
    message = encode_defunct(text=canonical(unsigned.body()))
    signature = account.sign_message(message).signature.to_0x_hex()
    return SignedProfile(**{**_fields(unsigned), "signature": signature})


def _fields(profile: SignedProfile) -> dict[str, Any]:
    return {k: getattr(profile, k) for k in SignedProfile.__dataclass_fields__}


def signer_of(profile: SignedProfile) -> str | None:
    """The address the signature recovers over the profile's body, None when it is no signature."""
    message = encode_defunct(text=canonical(profile.body()))
    try:
        return str(Account.recover_message(message, signature=profile.signature))
    except Exception:
        return None


# ---- reading a profile ----


def parse_profile(text: str, source: str) -> SignedProfile:
    """A signed profile from its JSON text, every field checked; ProfileInvalid names the field."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileInvalid(f"{source}: not a network profile (invalid JSON: {exc})") from None
    if not isinstance(raw, dict):
        raise ProfileInvalid(f"{source}: not a network profile (expected a JSON object)")
    if raw.get("format") != PROFILE_FORMAT:
        raise ProfileInvalid(
            f"{source}: not a network profile of format {PROFILE_FORMAT} "
            f"(format {raw.get('format')!r})"
        )
    unknown = sorted(set(raw) - _BODY_KEYS - {"signature"})
    if unknown:
        raise ProfileInvalid(f"{source}: unknown key '{unknown[0]}'")
    try:
        return _profile_from_raw(raw)
    except (KeyError, TypeError, ValueError, ChainError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ProfileInvalid(f"{source}: {detail}") from None


def _profile_from_raw(raw: dict[str, Any]) -> SignedProfile:
    params = NetworkParams.from_json(_mapping(raw["params"], "params"))
    return SignedProfile(
        name=_name(raw["name"]),
        description=_text(raw.get("description", ""), "description"),
        chain_id=_positive(raw["chain_id"], "chain_id"),
        rpc_urls=tuple(_urls(raw["rpc_urls"])),
        contracts=_addresses(_mapping(raw["contracts"], "contracts")),
        code_hashes=_hashes(_mapping(raw["code_hashes"], "code_hashes")),
        deploy_block=_positive(raw["deploy_block"], "deploy_block", zero=True),
        protocol_version=_positive(raw["protocol_version"], "protocol_version"),
        params=params.to_json(),
        deployer=_address(raw["deployer"], "deployer"),
        signature=_text(raw["signature"], "signature"),
        format=PROFILE_FORMAT,
    )


def valid_name(name: str) -> bool:
    return (
        0 < len(name) <= 40
        and name[0].isalnum()
        and all(c.isalnum() or c in "-_" for c in name)
        and name.isascii()
    )


def _name(value: object) -> str:
    if not isinstance(value, str) or not valid_name(value):
        raise ValueError(
            f"key 'name': expected letters, digits, - and _ (at most 40), got {value!r}"
        )
    return value


def _text(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"key '{key}': expected a string")
    return value


def _positive(value: object, key: str, zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        raise ValueError(
            f"key '{key}': expected a {'non-negative' if zero else 'positive'} integer"
        )
    return value


def _mapping(value: object, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"key '{key}': expected an object")
    return value


def _urls(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValueError("key 'rpc_urls': expected a non-empty list of URLs")
    for url in value:
        check_rpc_url(url)
    return value


def check_rpc_url(url: object) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"RPC URL {url!r} is not an http:// or https:// URL")
    if "<" in url or ">" in url:
        raise ValueError(f"RPC URL {url} is a placeholder: fill in your provider's URL")
    return url


def _address(value: object, key: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError(f"key '{key}': expected an address, got {value!r}")
    return str(to_checksum_address(value))


def _addresses(raw: dict[str, Any]) -> dict[str, str]:
    missing = [n for n in NETWORK_CONTRACTS if n not in raw]
    if missing:
        raise ValueError(f"key 'contracts': no address for {', '.join(missing)}")
    extra = sorted(set(raw) - set(NETWORK_CONTRACTS))
    if extra:
        raise ValueError(f"key 'contracts': unknown contract {extra[0]}")
    return {n: _address(raw[n], f"contracts.{n}") for n in NETWORK_CONTRACTS}


def _hashes(raw: dict[str, Any]) -> dict[str, str]:
    if sorted(raw) != sorted(NETWORK_CONTRACTS):
        raise ValueError(f"key 'code_hashes': expected one hash for each of {NETWORK_CONTRACTS}")
    for name, value in raw.items():
        if not (isinstance(value, str) and len(value) == 66 and value.startswith("0x")):
            raise ValueError(f"key 'code_hashes.{name}': expected 0x and 64 hex digits")
        int(value, 16)
    return {n: str(raw[n]).lower() for n in NETWORK_CONTRACTS}


# ---- trust ----


def check_signature(profile: SignedProfile, trusted: Sequence[str], source: str) -> str:
    """The deployer, once the signature holds and the deployer is trusted; else ProfileInvalid."""
    signer = signer_of(profile)
    if signer is None or signer != profile.deployer:
        raise ProfileInvalid(
            f"{source}: the signature does not match the profile: it was changed after "
            f"{profile.deployer} signed it, or never signed by it"
        )
    if not trusted:
        raise ProfileInvalid(
            f"{source}: signed by {profile.deployer}, but no deployer is trusted yet: "
            "pass --deployer ADDRESS (from the operator, through a channel you trust)"
        )
    if signer.lower() not in {t.lower() for t in trusted}:
        shown = ", ".join(trusted)
        raise ProfileInvalid(f"{source}: signed by {signer}, not by the trusted deployer {shown}")
    return signer


# ---- the code the artifacts produce ----


def code_hash(code: bytes) -> str:
    return "0x" + Web3.keccak(code).hex().removeprefix("0x")


@cache
def _local_evm() -> Web3:
    from eth.vm.forks.cancun import CancunVM
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider

    tester = EthereumTester(PyEVMBackend(vm_configuration=((0, CancunVM),)))
    return Web3(EthereumTesterProvider(tester))


def expected_code_hashes(contracts: Mapping[str, str], params: NetworkParams) -> dict[str, str]:
    """The runtime code hash this app's artifacts give each contract at those addresses.

    The contracts keep their constructor arguments (addresses, windows) as immutables inside the
    runtime code, so the hash depends on them: running the creation code in a local EVM (an
    `eth_call` without `to` returns the code a deployment would store) gives the exact bytes.
    """
    web3 = _local_evm()
    hashes: dict[str, str] = {}
    for name in NETWORK_CONTRACTS:
        data = creation_data(web3, name, name, contracts, params)
        code = bytes(web3.eth.call({"data": data}))  # type: ignore[typeddict-item]
        hashes[name] = code_hash(code)
    return hashes


def check_artifacts(profile: SignedProfile, source: str) -> None:
    expected = expected_code_hashes(profile.contracts, NetworkParams.from_json(profile.params))
    for name in NETWORK_CONTRACTS:
        if expected[name] != profile.code_hashes[name]:
            raise ProfileMismatch(
                f"{source}: contract {name} of this profile is not the code this app was built "
                f"with (code hash {profile.code_hashes[name][:12]}..., this app's "
                f"{expected[name][:12]}...): a different contract version; update the app or "
                "ask the operator"
            )


# ---- checking the chain ----


@dataclass
class ChainReport:
    answered: list[str] = field(default_factory=list)  # public forms of the URLs that answered
    unreachable: list[str] = field(default_factory=list)


def check_rpc_chain_id(url: str, chain_id: int, policy: RetryPolicy) -> Backend:
    """A backend on `url` once it answers with `chain_id`; RpcUnavailable or ChainIdMismatch."""
    backend = HttpBackend([url], policy)
    try:
        actual = int(backend.web3.eth.chain_id)
    except ChainError:
        raise
    except Exception as exc:  # a web page, a 404, not JSON-RPC: not an RPC of any chain
        raise RpcUnavailable(
            f"{public_url(url)} does not answer as an Ethereum RPC ({type(exc).__name__})"
        ) from None
    if actual != chain_id:
        raise ChainIdMismatch(
            f"RPC {public_url(url)} answers for chain id {actual}, not {chain_id}"
        )
    return backend


def verify_on_chain(
    profile: SignedProfile,
    rpc_urls: Sequence[str],
    policy: RetryPolicy | None = None,
) -> ChainReport:
    """Every RPC that answers serves the profile's chain and the profile's code; at least one
    must answer. Raises ProfileMismatch / ChainIdMismatch / RpcUnavailable, naming the URL."""
    policy = policy or RetryPolicy(rounds=ROUND, request_timeout_s=10.0)
    report = ChainReport()
    last_reason = ""
    for url in rpc_urls:
        try:
            backend = check_rpc_chain_id(url, profile.chain_id, policy)
        except RpcUnavailable as exc:
            report.unreachable.append(public_url(url))
            last_reason = str(exc)
            continue
        except ChainIdMismatch as exc:
            raise ProfileMismatch(f"wrong chain: {exc}") from None
        _check_code(backend, profile, public_url(url))
        report.answered.append(public_url(url))
    if not report.answered:
        raise RpcUnavailable(f"none of the profile's RPC URLs answered (last: {last_reason})")
    return report


def _check_code(backend: Backend, profile: SignedProfile, where: str) -> None:
    web3 = backend.web3
    for name in NETWORK_CONTRACTS:
        address = profile.contracts[name]
        code = bytes(web3.eth.get_code(to_checksum_address(address)))
        if not code:
            raise ProfileMismatch(
                f"contract {name} at {address} has no code on chain {profile.chain_id} "
                f"({where}): not deployed there"
            )
        actual = code_hash(code)
        if actual != profile.code_hashes[name]:
            raise ProfileMismatch(
                f"contract {name} at {address} holds other code ({where}: hash "
                f"{actual[:12]}..., the profile says {profile.code_hashes[name][:12]}...)"
            )
    registry = web3.eth.contract(
        address=to_checksum_address(profile.contracts["NodeRegistry"]),
        abi=load_artifact("NodeRegistry").abi,
    )
    admin = str(registry.functions.admin().call())
    if admin.lower() != profile.deployer.lower():
        raise ProfileMismatch(
            f"NodeRegistry at {profile.contracts['NodeRegistry']} is administered by {admin}, "
            f"not by the profile's deployer {profile.deployer}"
        )


# ---- deploying ----


@dataclass(frozen=True)
class DeployCost:
    gas: int
    max_fee_per_gas: int

    @property
    def wei(self) -> int:
        return self.gas * self.max_fee_per_gas


def estimate_deploy_cost(
    backend: Backend,
    deployer: str,
    oracles: Sequence[str],
    params: NetworkParams,
    gas: GasPolicy | None = None,
) -> DeployCost:
    """What deploying costs at most at today's fees, before anything is sent.

    Each contract's creation is estimated with the addresses the earlier ones will get (a
    CREATE address follows from the deployer and its nonce); limits and fee cap as TxSender sets
    them, so a deployer holding this much cannot run dry half-way.
    """
    policy = gas or GasPolicy()
    web3 = backend.web3
    sender = to_checksum_address(deployer)
    nonce = int(web3.eth.get_transaction_count(sender, "pending"))
    addresses: dict[str, str] = {}
    total = 0
    for offset, name in enumerate(NETWORK_CONTRACTS):
        data = creation_data(web3, name, name, addresses, params)
        estimate = int(web3.eth.estimate_gas({"from": sender, "data": data}))  # type: ignore[typeddict-item]
        total += int(estimate * policy.margin) + policy.extra
        addresses[name] = str(get_create_address(sender, Nonce(nonce + offset)))
    wiring = len(MODULES) + len(oracles)
    total += wiring * (int(WIRING_GAS * policy.margin) + policy.extra)
    base_fee = int(web3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
    max_fee = base_fee * policy.base_fee_multiplier + policy.priority_fee_wei
    return DeployCost(total, max_fee)


def wait_for_confirmations(
    backend: Backend,
    deployed: DeployedNetwork,
    confirmations: int,
    timeout_s: float,
    poll_s: float = 0.5,
) -> None:
    """Until the last deployment transaction has `confirmations` blocks (its own included),
    then check every transaction is still in the chain (a reorg would have dropped it)."""
    web3 = backend.web3
    target = deployed.last_block + confirmations - 1
    deadline = time.monotonic() + timeout_s
    while int(web3.eth.block_number) < target:
        if time.monotonic() > deadline:
            raise ChainError(
                f"the deployment did not reach {confirmations} confirmations within "
                f"{timeout_s:.0f}s (head {int(web3.eth.block_number)}, needed {target})"
            )
        time.sleep(poll_s)
    for tx_hash in deployed.tx_hashes:
        try:
            receipt = web3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except Exception:
            receipt = None
        canonical_hash = None
        if receipt is not None:
            canonical_hash = web3.eth.get_block(int(receipt["blockNumber"]))["hash"]
        if receipt is None or receipt["blockHash"] != canonical_hash:
            raise ChainError(
                f"deployment transaction {tx_hash} is no longer on chain (a reorg): deploy again"
            )


def deploy_and_sign(
    backend: Backend,
    account: LocalAccount,
    *,
    name: str,
    chain_id: int,
    rpc_urls: Sequence[str],
    oracles: Sequence[str],
    params: NetworkParams,
    description: str = "",
    confirmations: int = 1,
    confirmation_timeout_s: float = 600.0,
) -> SignedProfile:
    """Deploy, wait for confirmations, read back each contract's code, sign the profile.

    The caller has checked chain id and funds; this sends transactions. The code read back must
    be what the artifacts give (else the RPC is not telling the truth about the chain).
    """
    sender = TxSender(backend, account, NonceManager(backend.web3), chain_id)
    deployed = deploy_network_detailed(backend, account, list(oracles), params, sender=sender)
    wait_for_confirmations(backend, deployed, confirmations, confirmation_timeout_s)
    hashes = {
        n: code_hash(bytes(backend.web3.eth.get_code(to_checksum_address(a))))
        for n, a in deployed.contracts.items()
    }
    expected = expected_code_hashes(deployed.contracts, params)
    differ = [n for n in NETWORK_CONTRACTS if hashes[n] != expected[n]]
    if differ:
        raise ProfileMismatch(
            f"the chain reports other code for {', '.join(differ)} than was deployed: "
            "is the RPC honest?"
        )
    unsigned = SignedProfile(
        name=name,
        description=description,
        chain_id=chain_id,
        rpc_urls=tuple(rpc_urls),
        contracts={n: to_checksum_address(a) for n, a in deployed.contracts.items()},
        code_hashes=hashes,
        deploy_block=deployed.deploy_block,
        protocol_version=PROTOCOL_VERSION,
        params=params.to_json(),
        deployer=str(account.address),
    )
    return sign_profile(unsigned, account)
