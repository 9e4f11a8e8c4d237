"""`ask` on a network reached over RPC (a testnet profile, here on the run's shared anvil):
it pays from this home's wallet, and says so plainly when it cannot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomlkit
from web3 import Web3

from chain.devnet import LocalDevnet, fund

pytestmark = pytest.mark.chain


@pytest.fixture
def testnet(home: Path, anvil: LocalDevnet) -> LocalDevnet:
    """A `testnet` profile in this home pointing at the shared anvil."""
    networks = home / "config" / "networks"
    networks.mkdir(parents=True)
    profile = {
        "chain_id": anvil.chain_id,
        "rpc_urls": [anvil.rpc_url],
        "contracts": anvil.contracts,
    }
    (networks / "testnet.toml").write_text(tomlkit.dumps(profile))
    return anvil


def _wallet(cli, tmp_path: Path) -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    passphrase = tmp_path / "pp"
    passphrase.write_text("correct horse")
    new = cli("wallet", "new", "--passphrase-file", str(passphrase), "--cheap-kdf", "--json")
    assert new.returncode == 0, new.stderr
    return passphrase, json.loads(new.stdout)["address"]


def test_ask_without_a_wallet_says_how_to_make_one(cli, testnet: LocalDevnet) -> None:  # type: ignore[no-untyped-def]
    result = cli("ask", "hi", "--network", "testnet")
    assert result.returncode == 4
    assert "no wallet in this home" in result.stderr and "Traceback" not in result.stderr


def test_ask_from_an_unfunded_wallet_is_refused_before_sending(  # type: ignore[no-untyped-def]
    cli, testnet: LocalDevnet, tmp_path: Path
) -> None:
    passphrase, address = _wallet(cli, tmp_path)
    result = cli("ask", "hi", "--network", "testnet", "--passphrase-file", str(passphrase))
    assert result.returncode == 5
    assert f"wallet {address} holds 0.000000 ETH" in result.stderr
    assert "fund it first" in result.stderr
    web3 = Web3(Web3.HTTPProvider(testnet.rpc_url))
    assert web3.eth.get_transaction_count(address) == 0  # nothing was sent


def test_ask_on_a_network_without_miners_says_so(  # type: ignore[no-untyped-def]
    cli, testnet: LocalDevnet, tmp_path: Path
) -> None:
    passphrase, address = _wallet(cli, tmp_path)
    fund(Web3(Web3.HTTPProvider(testnet.rpc_url)), address, 10**18)
    result = cli(
        "ask", "hi", "--network", "testnet", "--passphrase-file", str(passphrase), "--timeout", "2"
    )
    assert result.returncode == 5
    assert "fewer than 3 miners can take the task before --timeout: 0 registered" in result.stderr
    assert "nothing was submitted" in result.stderr
    assert "Traceback" not in result.stderr
