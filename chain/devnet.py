"""Devnets: the embedded in-process chain and a local anvil process.

`start_embedded()` gives a fresh py-evm chain with the contracts deployed and dev accounts
funded; it lives inside the calling process and is gone when it ends, so callers key anything
they persist on (chain_id, genesis_hash). `AnvilProcess` runs the pinned anvil binary from npm on
127.0.0.1 on a free port; the `devnet` CLI and the tests use it.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth.vm.forks.cancun import CancunVM
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3
from web3.types import RPCEndpoint

from chain.client import ChainClient, Deployment
from chain.deploy import NetworkParams, deploy_network_detailed
from chain.errors import DevnetError
from chain.rpc import EmbeddedBackend, HttpBackend, RetryPolicy

REPO_ROOT = Path(__file__).resolve().parent.parent
ANVIL_ENV = "CORTENSOR_ANVIL"
DEFAULT_LOCAL_CHAIN_ID = 31337
# Both devnets run the fork the contracts are compiled for (scripts/compile_contracts.js), so
# opcodes and gas prices match; Prague would add EIP-7623's calldata floor.
HARDFORK = "cancun"
ETHER = 10**18


@dataclass
class EmbeddedChain:
    """A fresh in-process chain: contracts deployed, admin, oracles and dev accounts funded."""

    backend: EmbeddedBackend
    tester: EthereumTester
    chain_id: int
    genesis_hash: str
    contracts: dict[str, str]
    admin: LocalAccount
    oracles: list[LocalAccount]
    accounts: list[LocalAccount]
    deploy_block: int = 0
    _snapshots: list[Any] = field(default_factory=list)

    @property
    def web3(self) -> Web3:
        return self.backend.web3

    @property
    def deployment(self) -> Deployment:
        return Deployment(self.chain_id, self.contracts, self.deploy_block)

    def client(self, account: LocalAccount | None = None) -> ChainClient:
        return ChainClient(self.backend, self.deployment, account)

    def advance_time(self, seconds: int) -> None:
        """Move block time forward (deadlines, ping intervals); mines a block."""
        now = int(self.web3.eth.get_block("latest")["timestamp"])
        self.tester.time_travel(now + seconds)

    def snapshot(self) -> Any:
        return self.tester.take_snapshot()

    def revert(self, snapshot_id: Any) -> None:
        self.tester.revert_to_snapshot(snapshot_id)


class LockedTesterProvider(EthereumTesterProvider):
    """py-evm is not thread-safe; the node's miner, oracle and ping threads share one chain.

    It also announces every block it mines, so nodes on the in-process chain react to a
    transaction at once instead of on their next poll (`wait_for_block`).

    Reads whose answer depends only on the latest mined block are answered once per block:
    every block wakes every node, and three miners ask for the same logs and views; py-evm
    scans each block of a log range in Python (about 20 ms a block here) under the one lock
    they all queue on. The latest block's hash is the key, read from py-evm itself, so a
    revert, a time travel or a block mined by any path (the provider or the tester directly)
    starts afresh; a request about the pending block is never kept.
    """

    _MINING = frozenset({"eth_sendRawTransaction", "eth_sendTransaction", "evm_mine"})
    _BLOCK_READS = frozenset(
        {
            "eth_blockNumber",
            "eth_call",
            "eth_chainId",
            "eth_getBalance",
            "eth_getBlockByHash",
            "eth_getBlockByNumber",
            "eth_getCode",
            "eth_getLogs",
        }
    )

    def __init__(self, tester: EthereumTester) -> None:
        super().__init__(tester)
        self._request_lock = threading.RLock()
        self._mined = threading.Condition()
        self.blocks_announced = 0
        self._reads: dict[tuple[str, str], Any] = {}
        self._reads_at: bytes = b""
        self.reads_answered_again = 0  # the requests the block's earlier answer served

    def make_request(self, method: Any, params: Any) -> Any:
        with self._request_lock:
            key = self._read_key(str(method), params)
            if key is not None and key in self._reads:
                self.reads_answered_again += 1
                return self._answer_again(self._reads[key])
            response = super().make_request(method, params)
            if key is not None and "error" not in response:
                self._reads[key] = copy.deepcopy(response)
        if method in self._MINING:
            with self._mined:
                self.blocks_announced += 1
                self._mined.notify_all()
        return response

    def _read_key(self, method: str, params: Any) -> tuple[str, str] | None:
        """The cache key of a read the latest block decides; None for anything else."""
        if method not in self._BLOCK_READS:
            return None
        text = json.dumps(params, sort_keys=True, default=repr)
        if "pending" in text:
            return None
        assert self.ethereum_tester is not None  # set by the base class from `tester`
        latest = self.ethereum_tester.backend.chain.header.parent_hash
        if latest != self._reads_at:
            self._reads.clear()
            self._reads_at = latest
        return method, text

    def _answer_again(self, kept: Any) -> Any:
        response = copy.deepcopy(kept)
        response["id"] = repr(self._current_request_id)
        self._current_request_id += 1
        return response

    def wait_for_block(self, seen: int, timeout_s: float) -> int:
        """Block until a block after announcement `seen` is mined (or the timeout); the count."""
        with self._mined:
            self._mined.wait_for(lambda: self.blocks_announced != seen, timeout=timeout_s)
            return self.blocks_announced


def start_embedded(
    oracles: int = 1,
    params: NetworkParams | None = None,
    queue_contract: str = "SessionQueue",
) -> EmbeddedChain:
    """Start a fresh in-process chain and deploy the network onto it (about a second)."""
    tester = EthereumTester(PyEVMBackend(vm_configuration=((0, CancunVM),)))
    backend = EmbeddedBackend(LockedTesterProvider(tester))
    keys = tester.backend.account_keys
    if oracles + 2 > len(keys):
        raise DevnetError(
            f"the embedded chain has {len(keys)} funded accounts; {oracles} oracles is too many"
        )
    accounts = [Account.from_key(k.to_bytes()) for k in keys]
    admin, oracle_accounts, dev = accounts[0], accounts[1 : 1 + oracles], accounts[1 + oracles :]
    deployed = deploy_network_detailed(
        backend, admin, [o.address for o in oracle_accounts], params, queue_contract
    )
    web3 = backend.web3
    return EmbeddedChain(
        backend=backend,
        tester=tester,
        chain_id=int(web3.eth.chain_id),
        genesis_hash=web3.eth.get_block(0)["hash"].to_0x_hex(),
        contracts=deployed.contracts,
        admin=admin,
        oracles=oracle_accounts,
        accounts=dev,
        deploy_block=deployed.deploy_block,
    )


# ---- anvil ----


def find_anvil() -> Path:
    """The anvil binary from npm @foundry-rs/anvil (run directly so our PID is anvil's)."""
    override = os.environ.get(ANVIL_ENV)
    if override:
        return Path(override)
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}.get(platform.system(), "")
    machine = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine(), ""
    )
    name = "anvil.exe" if system == "win32" else "anvil"
    candidate = (
        REPO_ROOT / "node_modules" / "@foundry-rs" / f"anvil-{system}-{machine}" / "bin" / name
    )
    if candidate.exists():
        return candidate
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise DevnetError(
        f"anvil not found at {candidate}: run `npm ci` in {REPO_ROOT} "
        f"(or set {ANVIL_ENV} to an anvil binary)"
    )


class AnvilProcess:
    """anvil on 127.0.0.1 (a free port unless one is given); `stop()` ends it.

    With a `state_file` anvil loads the chain from it when it exists and dumps the chain into it
    on SIGTERM (and every `state_interval_s` seconds, so a crash loses at most that much), so
    `restart()` brings the same chain back on the same port: same genesis, blocks, logs,
    balances, contracts and nonces. Usable as a context manager.
    """

    def __init__(
        self,
        chain_id: int = DEFAULT_LOCAL_CHAIN_ID,
        log_file: Path | None = None,
        state_file: Path | None = None,
        port: int = 0,
        state_interval_s: int = 5,
        host: str = "127.0.0.1",
        wrapper: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ) -> None:
        """`host`, `wrapper` (e.g. `ip netns exec NS`) and `extra_args` (e.g. `--block-time 1`)
        put anvil elsewhere than loopback, as the many-hosts test does."""
        self.chain_id = chain_id
        self.host = host
        self.wrapper = tuple(wrapper)
        self.extra_args = tuple(extra_args)
        self.log_file = log_file
        self.state_file = state_file
        self.state_interval_s = state_interval_s
        self.process: subprocess.Popen[bytes] | None = None
        self.port = port
        self._owns_log = False

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        command = [
            *self.wrapper,
            str(find_anvil()),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--hardfork",
            HARDFORK,
        ]
        if self.state_file is not None:
            command += ["--state", str(self.state_file)]
            command += ["--state-interval", str(self.state_interval_s)]
        return command + list(self.extra_args)

    def start(self, timeout_s: float = 20.0) -> AnvilProcess:
        command = self.command()
        if self.log_file is None:  # nobody asked for the log: a temporary file, removed on stop
            fd, name = tempfile.mkstemp(prefix="anvil-", suffix=".log")
            os.close(fd)
            self.log_file, self._owns_log = Path(name), True
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        # anvil logs every request: to a file, never to a pipe nobody drains. Appended, so a
        # restart keeps the log of the run before it.
        with open(self.log_file, "ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.port = self._wait_for_port(self.log_file, offset, timeout_s)
        return self

    def _wait_for_port(self, log_path: Path, offset: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        pattern = re.compile(rb"Listening on " + re.escape(self.host.encode()) + rb":(\d+)")
        while time.monotonic() < deadline:
            match = pattern.search(log_path.read_bytes()[offset:])
            if match:
                return int(match.group(1))
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.05)
        tail = log_path.read_bytes()[offset:].decode(errors="replace")[-400:]
        self.stop()
        raise DevnetError(f"anvil did not start within {timeout_s:.0f}s: {tail}")

    def backend(self, policy: RetryPolicy | None = None) -> HttpBackend:
        return HttpBackend([self.rpc_url], policy or RetryPolicy())

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (anvil dumps its state file then), SIGKILL only if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def restart(self, down_s: float = 0.0, timeout_s: float = 20.0) -> AnvilProcess:
        """Stop anvil, stay down `down_s` seconds, start it again on the same port.

        Without a state file the chain comes back empty: a restart is for a chain with state.
        """
        if self.state_file is None:
            raise DevnetError("anvil runs without a state file: a restart would lose the chain")
        if not self.port:
            raise DevnetError("anvil has not started yet: nothing to restart")
        self.terminate()
        time.sleep(down_s)
        return self.start(timeout_s)

    def stop(self) -> None:
        self.terminate(timeout_s=5)
        if self._owns_log and self.log_file is not None:
            self.log_file.unlink(missing_ok=True)

    def __enter__(self) -> AnvilProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rpc(web3: Web3, method: str, *params: Any) -> Any:
    """A raw dev-node RPC (anvil_setBalance, evm_snapshot...); errors become DevnetError."""
    response = web3.provider.make_request(RPCEndpoint(method), list(params))
    if "error" in response:
        raise DevnetError(f"{method} failed: {response['error']}")
    return response.get("result")


def fund(web3: Web3, address: str, wei: int) -> None:
    rpc(web3, "anvil_setBalance", Web3.to_checksum_address(address), hex(wei))


def advance_time(web3: Web3, seconds: int) -> None:
    rpc(web3, "evm_increaseTime", seconds)
    rpc(web3, "evm_mine")


def new_funded_account(web3: Web3, wei: int = 1000 * ETHER) -> LocalAccount:
    account: LocalAccount = Account.create()
    fund(web3, account.address, wei)
    return account


@dataclass(frozen=True)
class LocalDevnet:
    """A network deployed on anvil. The admin key lives only in this process's memory."""

    rpc_url: str
    chain_id: int
    genesis_hash: str
    contracts: dict[str, str]
    admin: LocalAccount
    oracles: list[LocalAccount]
    deploy_block: int = 0


def deploy_on_anvil(
    anvil: AnvilProcess, oracles: int = 0, params: NetworkParams | None = None
) -> LocalDevnet:
    backend = anvil.backend()
    web3 = backend.web3
    admin = new_funded_account(web3)
    oracle_accounts = [new_funded_account(web3) for _ in range(oracles)]
    deployed = deploy_network_detailed(backend, admin, [o.address for o in oracle_accounts], params)
    return LocalDevnet(
        rpc_url=anvil.rpc_url,
        chain_id=int(web3.eth.chain_id),
        genesis_hash=web3.eth.get_block(0)["hash"].to_0x_hex(),
        contracts=deployed.contracts,
        admin=admin,
        oracles=oracle_accounts,
        deploy_block=deployed.deploy_block,
    )
