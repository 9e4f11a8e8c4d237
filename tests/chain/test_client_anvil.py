"""The client against a real HTTP node (anvil): threads, failover, chain-id guard, reverts."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from web3 import Web3

from chain.client import ChainClient, Deployment, connect
from chain.devnet import LocalDevnet, new_funded_account, rpc
from chain.errors import ChainIdMismatch, ContractRevert, RpcUnavailable, TransactionTimeout
from chain.rpc import HttpBackend, RetryPolicy
from chain.transactions import GasPolicy
from chain.wrappers import model_id

pytestmark = pytest.mark.chain
FAST = RetryPolicy(rounds=2, backoff_s=0.05, request_timeout_s=5)


def _dead_url() -> str:
    """A 127.0.0.1 port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_one_account_many_threads_no_nonce_collides(anvil: LocalDevnet) -> None:
    user = new_funded_account(Web3(Web3.HTTPProvider(anvil.rpc_url)))
    client = connect(anvil.chain_id, [anvil.rpc_url], anvil.contracts, user, FAST)
    errors: list[BaseException] = []
    results = []

    def send_five() -> None:
        try:
            for _ in range(5):
                results.append(client.payment.deposit(1000))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=send_five) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    nonces = [int(client.web3.eth.get_transaction(r.tx_hash)["nonce"]) for r in results]
    assert sorted(nonces) == list(range(20))
    assert client.payment.deposit_of(user.address) == 20 * 1000


def test_dead_first_rpc_url_fails_over_to_the_second(anvil: LocalDevnet) -> None:
    web3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    miner = new_funded_account(web3)
    client = connect(anvil.chain_id, [_dead_url(), anvil.rpc_url], anvil.contracts, miner, FAST)
    client.registry.register(1, 2048, "0.1.0", [model_id("m")], miner.address)
    assert client.registry.node_info(miner.address).status == 1
    assert client.backend.description == anvil.rpc_url  # stays on the URL that answered


def test_all_urls_dead_is_a_chain_error() -> None:
    client = connect(1, [_dead_url(), _dead_url()], _fake_contracts(), None, FAST)
    with pytest.raises(RpcUnavailable, match="no RPC URL answered"):
        client.balance("0x" + "11" * 20)


def test_chain_id_mismatch_refuses_to_sign(anvil: LocalDevnet) -> None:
    web3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    miner = new_funded_account(web3)
    client = connect(anvil.chain_id + 1, [anvil.rpc_url], anvil.contracts, miner, FAST)
    with pytest.raises(ChainIdMismatch, match="refusing to sign"):
        client.registry.register(1, 2048, "0.1.0", [model_id("m")], miner.address)
    assert web3.eth.get_transaction_count(miner.address) == 0  # nothing was sent


def test_reverts_decode_to_the_same_typed_error_on_anvil(anvil: LocalDevnet) -> None:
    web3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    miner = new_funded_account(web3)
    client = connect(anvil.chain_id, [anvil.rpc_url], anvil.contracts, miner, FAST)
    client.registry.register(1, 2048, "0.1.0", [model_id("m")], miner.address)
    client.stats.ping()
    with pytest.raises(ContractRevert) as caught:
        client.stats.ping()
    assert caught.value.error == "PingTooSoon" and caught.value.error_args["nextAllowed"] > 0
    assert client.check_protocol() == 3


def _fake_contracts() -> dict[str, str]:
    names = ("NodeRegistry", "NodeStats", "SessionPayment", "Cognitive", "SessionQueue")
    return {n: "0x" + f"{i + 1:040x}" for i, n in enumerate(names)}


class _Unavailable(BaseHTTPRequestHandler):
    """An RPC that answers every request with 503, like an overloaded provider."""

    def do_POST(self) -> None:
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_http_503_is_transient_and_fails_over(anvil: LocalDevnet) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        client = connect(anvil.chain_id, [url, anvil.rpc_url], anvil.contracts, None, FAST)
        assert client.registry.protocol_version() == 3
        assert client.backend.description == anvil.rpc_url
    finally:
        server.shutdown()
        server.server_close()


def test_stale_nonce_from_another_sender_recovers(anvil: LocalDevnet, caplog) -> None:  # type: ignore[no-untyped-def]
    web3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    user = new_funded_account(web3)
    first = connect(anvil.chain_id, [anvil.rpc_url], anvil.contracts, user, FAST)
    second = connect(anvil.chain_id, [anvil.rpc_url], anvil.contracts, user, FAST)
    first.payment.deposit(1)
    second.payment.deposit(1)  # its own counter starts from the chain: fine
    first.payment.deposit(1)  # first's counter is now stale: nonce too low, re-read, retry
    assert web3.eth.get_transaction_count(user.address) == 3
    assert first.payment.deposit_of(user.address) == 3
    assert "nonce conflict" in caplog.text


def test_missing_receipt_times_out(anvil: LocalDevnet) -> None:
    web3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    user = new_funded_account(web3)
    client = ChainClient(
        HttpBackend([anvil.rpc_url], FAST),
        Deployment(anvil.chain_id, anvil.contracts),
        user,
        gas=GasPolicy(receipt_timeout_s=0.5),
    )
    rpc(web3, "evm_setAutomine", False)
    try:
        with pytest.raises(TransactionTimeout, match="no receipt"):
            client.payment.deposit(1)
    finally:
        rpc(web3, "evm_setAutomine", True)


# Reverts while block.timestamp < the 4 bytes after PUSH4; any calldata calls it.
_NOT_BEFORE_RUNTIME = "63{not_before}421060" + "0b" + "57005b600080fd"
_POKE_ABI = [
    {
        "type": "function",
        "name": "poke",
        "inputs": [],
        "outputs": [],
        "stateMutability": "nonpayable",
    }
]


def test_a_call_due_by_the_clock_goes_through_on_a_quiet_anvil(anvil: LocalDevnet) -> None:
    """anvil estimates "latest" at the latest block's time: a deadline-gated call (reassign,
    timeout, refund) was refused until some other transaction mined a block."""
    from chain.errors import ChainError
    from chain.transactions import NonceManager, TxSender

    backend = HttpBackend([anvil.rpc_url], FAST)
    web3 = backend.web3
    sender = new_funded_account(web3)
    not_before = int(web3.eth.get_block("latest")["timestamp"]) + 100
    runtime = bytes.fromhex(_NOT_BEFORE_RUNTIME.format(not_before=f"{not_before:08x}"))
    init = bytes.fromhex(f"60{len(runtime):02x}600c60003960{len(runtime):02x}6000f3") + runtime
    txs = TxSender(backend, sender, NonceManager(web3), anvil.chain_id)
    factory = web3.eth.contract(abi=_POKE_ABI, bytecode=init)
    address = txs.send(factory.constructor(), "deploy").receipt["contractAddress"]
    poke = web3.eth.contract(address=address, abi=_POKE_ABI).functions.poke()
    with pytest.raises(ChainError):
        txs.send(poke, "poke")  # not due yet
    rpc(web3, "evm_increaseTime", 200)  # the clock moves on; no block is mined
    latest = int(web3.eth.get_block("latest")["timestamp"])
    assert latest < not_before  # what "latest" would still be judged at
    assert txs.send(poke, "poke").tx_hash
