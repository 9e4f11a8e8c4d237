"""`devnet up --detach | status | down` with the real CLI and a real anvil."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from web3 import Web3

from chain.devnet import find_anvil
from chain.errors import DevnetError

pytestmark = [pytest.mark.chain, pytest.mark.slow]


@pytest.fixture
def needs_anvil() -> None:
    try:
        find_anvil()
    except DevnetError as exc:
        # scripts/bootstrap.sh installs anvil (npm ci): missing means the setup is broken.
        pytest.fail(f"anvil missing: {exc}")


def test_up_status_down_round_trip(cli, home: Path, tmp_path: Path, needs_anvil: None) -> None:  # type: ignore[no-untyped-def]
    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('# my settings\n[logging]\nlevel = "info"\n')
    pp = tmp_path / "pp"
    pp.write_text("pw")
    assert cli("wallet", "new", "--passphrase-file", str(pp), "--cheap-kdf").returncode == 0
    up = cli("devnet", "up", "--detach", "--json")
    try:
        assert up.returncode == 0, up.stderr
        status = json.loads(cli("devnet", "status", "--json").stdout)
        assert status["running"] and status["rpc_url"].startswith("http://127.0.0.1:")
        assert set(status["contracts"]) >= {"NodeRegistry", "SessionQueue"}
        assert status["nodes"] == [] and status["active_network"] == "local"
        assert (home / "config" / "networks" / "local.toml").exists()
        shown = json.loads(cli("wallet", "show", "--json").stdout)
        assert shown["network"] == "local" and shown["balance_wei"] == 1000 * 10**18
        assert "# my settings" in config.read_text()
    finally:
        down = cli("devnet", "down")
    assert down.returncode == 0, down.stderr
    assert not (home / "config" / "networks" / "local.toml").exists()
    assert "local" not in config.read_text() and "# my settings" in config.read_text()
    assert json.loads(cli("devnet", "status", "--json").stdout)["running"] is False
    assert isinstance(status["anvil_pid"], int) and not _alive(status["anvil_pid"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def test_sigterm_stops_up_and_restores(cli, home: Path, needs_anvil: None) -> None:  # type: ignore[no-untyped-def]
    assert cli("devnet", "up", "--detach").returncode == 0
    state = json.loads((home / "data" / "devnet" / "local.json").read_text())
    try:
        os.kill(state["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (home / "data" / "devnet" / "local.json").exists():
            time.sleep(0.1)
    finally:
        cli("devnet", "down")  # a no-op when SIGTERM worked; stops the devnet if it did not
    assert not (home / "data" / "devnet" / "local.json").exists()
    assert not _alive(state["anvil_pid"])
    assert json.loads(cli("config", "show", "--json").stdout)["network"]["active"] == "embedded"


def test_restart_chain_brings_back_the_same_chain(cli, home: Path, needs_anvil: None) -> None:  # type: ignore[no-untyped-def]
    assert cli("devnet", "up", "--detach").returncode == 0
    try:
        before = json.loads(cli("devnet", "status", "--json").stdout)
        restarted = cli("devnet", "restart-chain", "--down-for", "1", "--json")
        assert restarted.returncode == 0, restarted.stderr
        report = json.loads(restarted.stdout)
        after = json.loads(cli("devnet", "status", "--json").stdout)
        live_genesis = Web3(Web3.HTTPProvider(after["rpc_url"])).eth.get_block(0)["hash"]
    finally:
        cli("devnet", "down")
    assert report["block_after"] == report["block_before"] > 0  # deployed blocks all came back
    assert after["rpc_url"] == before["rpc_url"]  # same port: the profiles still point at it
    assert live_genesis.to_0x_hex() == before["genesis_hash"]  # the journals' chain key holds
    assert after["anvil_pid"] != before["anvil_pid"] and not _alive(before["anvil_pid"])
    assert not (home / "data" / "devnet" / "chain-state.json").exists()  # down: next up is fresh


def test_restart_chain_without_a_devnet_is_a_chain_error(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("devnet", "restart-chain")
    assert result.returncode == 5
    assert "no devnet running" in result.stderr and "Traceback" not in result.stderr
    assert cli("devnet", "restart-chain", "--down-for", "9999").returncode == 2
