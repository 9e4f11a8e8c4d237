"""`network deploy` and `network join` against a real anvil serving chain id 421614, as if it
were Arbitrum Sepolia: one deployment per module, then every bad input a joiner can meet.

The CLI runs in this process (`main([...])`, the real entry point) with CORTENSOR_HOME switched
between an operator's home and joiners' homes; each refusal must be one line and its exit code.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from chain.artifacts import NETWORK_CONTRACTS
from chain.deploy import NetworkParams
from chain.devnet import AnvilProcess, LocalDevnet, fund
from chain.events import EventCursor
from chain.network_profile import (
    SignedProfile,
    code_hash,
    expected_code_hashes,
    parse_profile,
    sign_profile,
)
from chain.wallet import DEVNET_SCRYPT_N, create_wallet, unlock
from cortensor_desktop.cli.main import main
from cortensor_desktop.networks import load_profile
from engine.node.chain_watch import ChainWatcher

pytestmark = pytest.mark.chain
PUBLIC_CHAIN_ID = 421614
PASSPHRASE = "deploy me"
TEMPLATE = Path(__file__).resolve().parents[2] / "assets" / "networks" / "arbitrum-sepolia.toml"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Deployed:
    anvil: AnvilProcess
    operator: Path
    profile_file: Path
    profile: SignedProfile
    passphrase_file: Path
    deployer_key: Any


def cli(home: Path, *args: str) -> Run:
    """The real entry point in this process, as the user of `home` runs it."""
    import os

    previous = os.environ.get("CORTENSOR_HOME")
    os.environ["CORTENSOR_HOME"] = str(home)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        if previous is None:
            os.environ.pop("CORTENSOR_HOME", None)
        else:
            os.environ["CORTENSOR_HOME"] = previous
    return Run(code, out.getvalue(), err.getvalue())


def one_line_error(run: Run, code: int, *needles: str) -> None:
    assert run.code == code, (run.code, run.err[-2000:])
    lines = [ln for ln in run.err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "Traceback" not in run.err, run.err
    for needle in needles:
        assert needle in lines[0], lines[0]


def _wallet(home: Path) -> str:
    return create_wallet(home / "data" / "keystore", PASSPHRASE, DEVNET_SCRYPT_N).address


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    base = tmp_path_factory.mktemp("networks")
    passphrase_file = base / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    operator = base / "operator"
    address = _wallet(operator)
    with AnvilProcess(chain_id=PUBLIC_CHAIN_ID) as anvil:
        fund(anvil.backend().web3, address, 10**18)
        out = base / "published.json"
        run = cli(
            operator,
            "network",
            "deploy",
            "--rpc",
            anvil.rpc_url,
            "--chain-id",
            str(PUBLIC_CHAIN_ID),
            "--name",
            "arbsep",
            "--passphrase-file",
            str(passphrase_file),
            "--confirmations",
            "1",
            "--out",
            str(out),
            "--json",
        )
        assert run.code == 0, run.err[-3000:]
        profile = parse_profile(out.read_text(), str(out))
        key = unlock(operator / "data" / "keystore", PASSPHRASE)
        yield Deployed(anvil, operator, out, profile, passphrase_file, key)


def _deploy_args(rpc: str, chain_id: int, name: str, passphrase_file: Path) -> list[str]:
    return [
        "network",
        "deploy",
        "--rpc",
        rpc,
        "--chain-id",
        str(chain_id),
        "--name",
        name,
        "--passphrase-file",
        str(passphrase_file),
        "--confirmations",
        "1",
    ]


# ---- deploy ----


def test_deploy_writes_a_signed_profile_that_matches_the_chain(deployed: Deployed) -> None:
    profile, web3 = deployed.profile, deployed.anvil.backend().web3
    assert profile.chain_id == PUBLIC_CHAIN_ID
    assert profile.deployer == deployed.deployer_key.address
    assert profile.rpc_urls == (deployed.anvil.rpc_url,)
    for name in NETWORK_CONTRACTS:
        assert (
            code_hash(bytes(web3.eth.get_code(profile.contracts[name])))
            == (profile.code_hashes[name])
        )
    # the deploy block is the registry's creation block: nothing of the network is older
    registry_code_before = web3.eth.get_code(
        profile.contracts["NodeRegistry"], profile.deploy_block - 1
    )
    assert bytes(registry_code_before) == b"" and profile.deploy_block >= 1
    installed = load_profile(deployed.operator / "config" / "networks", "arbsep")
    assert installed.deploy_block == profile.deploy_block
    assert installed.deployer == profile.deployer
    config = (deployed.operator / "config" / "config.toml").read_text()
    assert 'profile = "arbsep"' in config  # the operator's home runs on it now


def test_deploy_refuses_an_rpc_of_another_chain_before_sending(
    deployed: Deployed, tmp_path: Path
) -> None:
    home = tmp_path / "op2"
    address = _wallet(home)
    web3 = deployed.anvil.backend().web3
    fund(web3, address, 10**18)
    run = cli(home, *_deploy_args(deployed.anvil.rpc_url, 1, "wrong", deployed.passphrase_file))
    one_line_error(run, 5, f"answers for chain id {PUBLIC_CHAIN_ID}, not 1")
    assert web3.eth.get_transaction_count(address) == 0
    assert not (home / "config" / "networks").exists()


def test_deploy_refuses_a_deployer_without_enough_gas_saying_how_much(
    deployed: Deployed, tmp_path: Path
) -> None:
    home = tmp_path / "poor"
    address = _wallet(home)
    web3 = deployed.anvil.backend().web3
    fund(web3, address, 10**15)  # 0.001 ETH: a deployment takes about 9 million gas
    run = cli(
        home,
        *_deploy_args(deployed.anvil.rpc_url, PUBLIC_CHAIN_ID, "poor", deployed.passphrase_file),
    )
    one_line_error(run, 5, f"deployer {address} holds 0.001000 ETH", "deploying needs about")
    assert "nothing was sent" in run.err
    assert web3.eth.get_transaction_count(address) == 0
    assert not (home / "config" / "networks").exists()


def test_deploy_without_a_wallet_or_with_a_taken_name_is_refused(
    deployed: Deployed, tmp_path: Path
) -> None:
    args = _deploy_args(deployed.anvil.rpc_url, PUBLIC_CHAIN_ID, "fresh", deployed.passphrase_file)
    one_line_error(cli(tmp_path / "empty", *args), 4, "no wallet in this home")
    taken = _deploy_args(
        deployed.anvil.rpc_url, PUBLIC_CHAIN_ID, "arbsep", deployed.passphrase_file
    )
    one_line_error(cli(deployed.operator, *taken), 2, "'arbsep' is already installed")
    local = _deploy_args(deployed.anvil.rpc_url, PUBLIC_CHAIN_ID, "local", deployed.passphrase_file)
    one_line_error(cli(deployed.operator, *local), 2, "built-in network name")


def test_the_arbitrum_sepolia_template_must_have_its_rpc_placeholder_filled_in(
    tmp_path: Path,
) -> None:
    run = cli(tmp_path / "h", "network", "deploy", "--template", str(TEMPLATE))
    one_line_error(run, 2, "is a placeholder: fill in your provider's URL")
    template = TEMPLATE.read_text()
    assert "chain_id = 421614" in template and "<YOUR-API-KEY>" in template


# ---- join ----


def test_join_checks_then_installs_lists_shows_and_removes(
    deployed: Deployed, tmp_path: Path
) -> None:
    home = tmp_path / "hobbyist"
    file = str(deployed.profile_file)
    joined = cli(home, "network", "join", file, "--deployer", deployed.profile.deployer, "--json")
    assert joined.code == 0, joined.err
    document = json.loads(joined.out)
    assert document["rpc_checked"] and document["active"] is True
    assert document["deploy_block"] == deployed.profile.deploy_block
    installed = load_profile(home / "config" / "networks", "arbsep")
    assert installed.contracts == deployed.profile.contracts
    assert installed.deploy_block == deployed.profile.deploy_block
    listed = json.loads(cli(home, "network", "list", "--json").out)["networks"]
    assert {r["name"]: r["active"] for r in listed} == {"embedded": False, "arbsep": True}
    shown = cli(home, "network", "show", "arbsep", "--check", "--json")
    assert json.loads(shown.out)["signature"].endswith("checked on chain"), shown.err
    one_line_error(cli(home, "network", "remove", "arbsep"), 2, "is the active network")
    # trusted now: the same deployer's profile installs under another name without --deployer
    again = cli(home, "network", "join", file, "--name", "second", "--no-activate")
    assert again.code == 0, again.err
    removed = cli(home, "network", "remove", "second")
    assert removed.code == 0 and not (home / "config" / "networks" / "second.toml").exists()
    assert not (home / "config" / "networks" / "second.signed.json").exists()


def test_join_refuses_a_profile_edited_by_hand(deployed: Deployed, tmp_path: Path) -> None:
    raw = json.loads(deployed.profile_file.read_text())
    raw["rpc_urls"] = ["http://attacker.example:8545"]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(raw))
    run = cli(tmp_path / "h", "network", "join", str(edited), "--deployer", raw["deployer"])
    one_line_error(run, 3, "the signature does not match the profile")
    assert not (tmp_path / "h" / "config" / "networks").exists()


def test_join_refuses_a_signer_other_than_the_trusted_deployer(
    deployed: Deployed, tmp_path: Path
) -> None:
    stranger = Web3().eth.account.create().address
    file = str(deployed.profile_file)
    run = cli(tmp_path / "h", "network", "join", file, "--deployer", stranger)
    one_line_error(run, 3, f"signed by {deployed.profile.deployer}, not by the trusted deployer")
    untrusted = cli(tmp_path / "h", "network", "join", file)
    one_line_error(untrusted, 3, "no deployer is trusted yet: pass --deployer")


def test_join_refuses_an_rpc_that_answers_for_another_chain(
    deployed: Deployed, anvil: LocalDevnet, tmp_path: Path
) -> None:
    file = str(deployed.profile_file)
    deployer = deployed.profile.deployer
    run = cli(
        tmp_path / "h", "network", "join", file, "--deployer", deployer, "--rpc", anvil.rpc_url
    )
    one_line_error(run, 5, f"answers for chain id {anvil.chain_id}, not {PUBLIC_CHAIN_ID}")
    assert not (tmp_path / "h" / "config" / "networks").exists()


def _resigned(deployed: Deployed, tmp_path: Path, **changes: Any) -> str:
    """The operator (or someone holding the key) signing a wrong profile: the signature holds,
    so only the chain can tell."""
    profile = sign_profile(replace(deployed.profile, **changes), deployed.deployer_key)
    path = tmp_path / "resigned.json"
    path.write_text(profile.to_text())
    return str(path)


def test_join_refuses_a_profile_for_another_chain_id(deployed: Deployed, tmp_path: Path) -> None:
    file = _resigned(deployed, tmp_path, chain_id=42161)  # Arbitrum One's id, Sepolia's RPC
    run = cli(tmp_path / "h", "network", "join", file, "--deployer", deployed.profile.deployer)
    one_line_error(run, 5, "wrong chain", f"answers for chain id {PUBLIC_CHAIN_ID}, not 42161")


def test_join_refuses_an_address_that_holds_other_code(deployed: Deployed, tmp_path: Path) -> None:
    contracts = dict(deployed.profile.contracts)
    contracts["SessionPayment"] = contracts["Cognitive"]  # a real contract, the wrong one
    params = NetworkParams.from_json(deployed.profile.params)
    file = _resigned(
        deployed, tmp_path, contracts=contracts, code_hashes=expected_code_hashes(contracts, params)
    )
    run = cli(tmp_path / "h", "network", "join", file, "--deployer", deployed.profile.deployer)
    one_line_error(run, 5, f"contract SessionPayment at {contracts['Cognitive']} holds other code")


def test_join_refuses_an_address_without_code(deployed: Deployed, tmp_path: Path) -> None:
    contracts = dict(deployed.profile.contracts)
    contracts["NodeStats"] = Web3.to_checksum_address("0x" + "12" * 20)
    params = NetworkParams.from_json(deployed.profile.params)
    file = _resigned(
        deployed, tmp_path, contracts=contracts, code_hashes=expected_code_hashes(contracts, params)
    )
    run = cli(tmp_path / "h", "network", "join", file, "--deployer", deployed.profile.deployer)
    one_line_error(run, 5, "contract NodeStats at 0x1212", "has no code on chain 421614")


def test_join_refuses_code_hashes_this_apps_artifacts_do_not_give(
    deployed: Deployed, tmp_path: Path
) -> None:
    hashes = dict(deployed.profile.code_hashes)
    hashes["Cognitive"] = "0x" + "ab" * 32
    file = _resigned(deployed, tmp_path, code_hashes=hashes)
    run = cli(tmp_path / "h", "network", "join", file, "--deployer", deployed.profile.deployer)
    one_line_error(run, 5, "contract Cognitive of this profile is not the code this app was built")


def test_join_refuses_a_file_that_is_not_a_profile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "cortensor-network/1", "name": "x"')
    one_line_error(cli(tmp_path / "h", "network", "join", str(bad)), 3, "invalid JSON")
    bad.write_text(json.dumps({"format": "cortensor-network/1", "name": "x"}))
    one_line_error(cli(tmp_path / "h", "network", "join", str(bad)), 3, "missing key")
    missing = cli(tmp_path / "h", "network", "join", str(tmp_path / "none.json"))
    one_line_error(missing, 3, "cannot read the profile")


@pytest.fixture
def served(deployed: Deployed) -> Iterator[str]:
    """The published profile on a small HTTP server on 127.0.0.1, stopped after the test."""
    body = deployed.profile_file.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/arbsep.json"
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(body if found else b"not found")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_join_from_a_url(deployed: Deployed, served: str, tmp_path: Path) -> None:
    deployer = deployed.profile.deployer
    home = tmp_path / "h"
    joined = cli(home, "network", "join", "--from", f"{served}/arbsep.json", "--deployer", deployer)
    assert joined.code == 0, joined.err
    assert load_profile(home / "config" / "networks", "arbsep").deployer == deployer
    gone = cli(
        tmp_path / "h2", "network", "join", "--from", f"{served}/nope", "--deployer", deployer
    )
    one_line_error(gone, 5, "cannot fetch the profile", "404")
    not_rpc = cli(
        tmp_path / "h3", "network", "join", str(deployed.profile_file), "--deployer", deployer,
        "--rpc", f"{served}/not-an-rpc",
    )  # fmt: skip
    one_line_error(not_rpc, 5, "none of the profile's RPC URLs answered")


def test_show_notices_an_installed_profile_edited_after_joining(
    deployed: Deployed, tmp_path: Path
) -> None:
    home = tmp_path / "h"
    file = str(deployed.profile_file)
    assert cli(home, "network", "join", file, "--deployer", deployed.profile.deployer).code == 0
    toml = home / "config" / "networks" / "arbsep.toml"
    registry = deployed.profile.contracts["NodeRegistry"]
    toml.write_text(toml.read_text().replace(registry, "0x" + "34" * 20))
    one_line_error(cli(home, "network", "show", "arbsep"), 3, "edited by hand")


# ---- the deploy block reaches the event readers ----


class _Recorder:
    def __init__(self) -> None:
        self.starts: list[int] = []

    def cursor(self, event_name: str, from_block: int) -> EventCursor:
        self.starts.append(from_block)
        return EventCursor("X", None, event_name, from_block)  # type: ignore[arg-type]


def test_event_watchers_start_at_the_deploy_block_never_before() -> None:
    young, old = _Recorder(), _Recorder()
    ChainWatcher(head=150, sources=[(young, "A")], lookback_blocks=2_000, floor_block=120)
    ChainWatcher(head=90_000, sources=[(old, "A")], lookback_blocks=2_000, floor_block=120)
    assert young.starts == [120]  # a young network: from its deploy block, not from 0
    assert old.starts == [88_000]  # an old one: the lookback, already past the deploy block


# ---- confirmations ----


def test_deploy_waits_for_confirmations_and_notices_a_reorg(anvil: LocalDevnet) -> None:
    """On the run's shared anvil (automine: no block comes without a transaction)."""
    from chain.deploy import deploy_network_detailed
    from chain.devnet import new_funded_account, rpc
    from chain.errors import ChainError
    from chain.network_profile import wait_for_confirmations
    from chain.rpc import HttpBackend

    backend = HttpBackend([anvil.rpc_url])
    web3 = backend.web3
    before = rpc(web3, "evm_snapshot")
    deployed = deploy_network_detailed(backend, new_funded_account(web3), [])
    with pytest.raises(ChainError, match="did not reach 3 confirmations"):
        wait_for_confirmations(backend, deployed, 3, timeout_s=0.3, poll_s=0.05)
    rpc(web3, "evm_mine")
    rpc(web3, "evm_mine")
    wait_for_confirmations(backend, deployed, 3, timeout_s=5, poll_s=0.05)  # now it has them
    rpc(web3, "evm_revert", before)  # the chain reorganises: the deployment is gone
    for _ in range(12):
        rpc(web3, "evm_mine")
    with pytest.raises(ChainError, match="no longer on chain"):
        wait_for_confirmations(backend, deployed, 3, timeout_s=5, poll_s=0.05)


def test_deploy_refuses_a_bad_oracle_address_before_unlocking(
    deployed: Deployed, tmp_path: Path
) -> None:
    args = _deploy_args(deployed.anvil.rpc_url, PUBLIC_CHAIN_ID, "x", deployed.passphrase_file)
    run = cli(deployed.operator, *args[:-2], "--oracle", "0x1234")
    one_line_error(run, 2, "--oracle 0x1234: not an address")


def test_deploy_from_the_filled_in_template_uses_its_parameters(
    deployed: Deployed, tmp_path: Path
) -> None:
    filled = tmp_path / "arbitrum-sepolia.toml"
    text = TEMPLATE.read_text().replace(
        "https://arb-sepolia.g.alchemy.com/v2/<YOUR-API-KEY>", deployed.anvil.rpc_url
    )
    filled.write_text(
        text.replace("https://sepolia-rollup.arbitrum.io/rpc", deployed.anvil.rpc_url)
    )
    home = tmp_path / "templated"
    fund(deployed.anvil.backend().web3, _wallet(home), 10**18)
    run = cli(
        home, "network", "deploy", "--template", str(filled), "--confirmations", "1",
        "--passphrase-file", str(deployed.passphrase_file), "--json",
    )  # fmt: skip
    assert run.code == 0, run.err[-2000:]
    profile = json.loads(run.out)
    assert profile["name"] == "arbitrum-sepolia" and profile["chain_id"] == PUBLIC_CHAIN_ID
    assert profile["params"]["eligibility_threshold"] == 3
    web3 = deployed.anvil.backend().web3
    from chain.artifacts import load_artifact

    registry = web3.eth.contract(
        address=profile["contracts"]["NodeRegistry"], abi=load_artifact("NodeRegistry").abi
    )
    assert registry.functions.eligibilityThreshold().call() == 3  # on chain, not just written
    assert registry.functions.leaderGrace().call() == 300
