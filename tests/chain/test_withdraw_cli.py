"""`wallet withdraw` through the real CLI: with the wallet on anvil, and through a running node.

The miner's balance is made by the contract's own `settle` (a test account enabled as a
SessionPayment module, as SessionQueue is); the user-task path that pays it with real inference
is tests/node/test_earnings_node.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from chain.client import ChainClient, connect
from chain.deploy import NetworkParams
from chain.devnet import EmbeddedChain, LocalDevnet, advance_time, fund, new_funded_account
from chain.wallet import DEVNET_SCRYPT_N, import_private_key
from chain.wrappers import model_id
from cortensor_desktop.service.status_api import StatusApi, SummaryHolder
from engine.host.node_control import NodeController
from engine.inference.types import GenerationResult, SamplingParams
from engine.node.earnings import withdraw_from
from engine.node.miner import Miner
from engine.state.commands import CommandQueue
from engine.state.database import Database
from engine.state.events import EventBus
from engine.state.journal import ChainKey, Journal
from engine.state.summary import Summary
from tests.conftest import CliResult

pytestmark = pytest.mark.chain

SHARE = 6 * 10**15
PRICE = 10**16
PASSPHRASE = "withdraw test passphrase"


def _pay(
    admin: ChainClient,
    module: ChainClient,
    user: ChainClient,
    miner: str,
    task: int,
    advance: Callable[[int], None],
) -> None:
    """A user deposits and a module settles a task that pays `miner` (SessionQueue's calls)."""
    assert module.address is not None and user.address is not None and module.sender is not None
    admin.registry.set_module(module.address, True)  # after setup: scheduled, not live yet
    advance(NetworkParams().module_delay_s)
    admin.registry.activate_module(module.address)
    user.payment.deposit(PRICE)
    calls = module.payment.contract.functions
    module.sender.send(calls.lock(user.address, task, PRICE), "lock")
    miners = [Web3.to_checksum_address(miner)]
    module.sender.send(calls.settle(task, user.address, PRICE, miners, SHARE), "settle")


def _profile(home: Path, devnet: LocalDevnet) -> None:
    folder = home / "config" / "networks"
    folder.mkdir(parents=True, exist_ok=True)
    contracts = "\n".join(f'{name} = "{address}"' for name, address in devnet.contracts.items())
    (folder / "testnet.toml").write_text(
        f'chain_id = {devnet.chain_id}\nrpc_urls = ["{devnet.rpc_url}"]\n'
        f"\n[contracts]\n{contracts}\n"
    )


def test_withdraw_with_the_wallet_when_no_node_runs(cli, home: Path, anvil: LocalDevnet) -> None:  # type: ignore[no-untyped-def]
    key = Account.create()
    import_private_key(home / "data" / "keystore", key.key.hex(), PASSPHRASE, DEVNET_SCRYPT_N)
    _profile(home, anvil)

    def client(account: object | None = None) -> ChainClient:
        return connect(anvil.chain_id, [anvil.rpc_url], anvil.contracts, account)  # type: ignore[arg-type]

    miner = client(key)
    fund(miner.web3, key.address, 10**18)
    payout = Account.create().address
    miner.registry.register(0, 0, "0.1.0", [model_id("smollm2-135m-instruct")], payout)
    web3 = miner.web3
    module, user = new_funded_account(web3), new_funded_account(web3)
    _pay(
        client(anvil.admin),
        client(module),
        client(user),
        key.address,
        task=1,
        advance=lambda s: advance_time(web3, s),
    )

    wrong = cli("wallet", "withdraw", "--network", "testnet", env={"CORTENSOR_PASSPHRASE": "no"})
    assert wrong.returncode == 4 and "wrong passphrase" in wrong.stderr
    assert miner.payment.balance_of(key.address) == SHARE

    env = {"CORTENSOR_PASSPHRASE": PASSPHRASE}
    done = cli("wallet", "withdraw", "--network", "testnet", "--json", env=env)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["via"] == "wallet" and document["accepted"]
    (withdrawal,) = document["withdrawals"]
    assert withdrawal["status"] == "confirmed" and withdrawal["amount_wei"] == SHARE
    assert withdrawal["to"] == payout and len(withdrawal["tx_hash"]) == 66
    assert withdrawal["node"] == key.address
    assert miner.balance(payout) == SHARE

    nonce = web3.eth.get_transaction_count(key.address)
    again = cli("wallet", "withdraw", "--network", "testnet", env=env)
    assert again.returncode == 5 and "nothing to withdraw" in again.stderr
    assert "Traceback" not in again.stderr
    assert web3.eth.get_transaction_count(key.address) == nonce

    # The withdrawal is in this home's wallet history (the Wallet screen's source).
    database = Database(home / "data" / "cortensor.sqlite3")
    try:
        genesis = web3.eth.get_block(0)["hash"].to_0x_hex()
        journal = Journal(database, ChainKey(anvil.chain_id, genesis), key.address)
        assert [(r.kind, r.amount_wei) for r in journal.earnings()] == [("withdrawal", SHARE)]
    finally:
        database.close()


def test_withdraw_on_the_embedded_network_needs_the_running_node(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("wallet", "withdraw")
    assert result.returncode == 8
    assert "no node is running" in result.stderr and "embedded" in result.stderr


class NoModel:
    def generate(self, prompt: str, params: SamplingParams | None = None) -> GenerationResult:
        raise AssertionError("no inference here")


@pytest.fixture
def running_node(home: Path, embedded: EmbeddedChain, tmp_path: Path) -> Iterator[Miner]:
    """A miner with the status API on this home, applying commands as `run` does."""
    bus = EventBus()
    database = Database(tmp_path / "node.sqlite3")
    account = embedded.accounts[0]
    journal = Journal(database, ChainKey(embedded.chain_id, embedded.genesis_hash), account.address)
    payout = embedded.accounts[1].address
    miner = Miner(embedded.client(account), NoModel(), journal, bus, payout=payout)
    miner.preflight()
    commands = CommandQueue()
    controller = NodeController(
        bus, [miner], withdraw=lambda c: withdraw_from([miner], c.amount_wei, c.node)
    )
    holder = SummaryHolder(Summary(started_at=1.0), {"network": "embedded"})
    api = StatusApi(holder, bus, commands, home / "data", port=-1)
    (home / "data").mkdir(parents=True, exist_ok=True)
    api.start()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            command = commands.get(timeout=0.2)
            if command is not None:
                controller.handle(command)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield miner
    stop.set()
    thread.join(timeout=5)
    api.stop()
    database.close()


def test_withdraw_goes_through_the_running_node(
    cli: Callable[..., CliResult], running_node: Miner, embedded: EmbeddedChain
) -> None:
    miner = running_node
    module, user = embedded.client(embedded.accounts[3]), embedded.client(embedded.accounts[2])
    admin = embedded.client(embedded.admin)
    _pay(admin, module, user, miner.address, task=4, advance=embedded.advance_time)
    payout = embedded.accounts[1].address
    before = miner.client.balance(payout)

    done = cli("wallet", "withdraw", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["via"] == "node" and document["accepted"], document
    (withdrawal,) = document["withdrawals"]
    assert withdrawal["status"] == "confirmed" and withdrawal["amount_wei"] == SHARE
    assert withdrawal["node"] == miner.address and withdrawal["to"] == payout
    assert miner.client.balance(payout) - before == SHARE

    again = cli("wallet", "withdraw", "--json")
    assert again.returncode == 5
    refused = json.loads(again.stdout)
    assert not refused["accepted"] and "nothing to withdraw" in refused["message"]
    assert refused["withdrawals"] == []
