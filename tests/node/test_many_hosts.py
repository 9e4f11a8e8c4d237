"""Many hosts: a network deployed to a "public" chain and joined from other machines.

Six network namespaces stand in for six machines: anvil (chain id 421614, a block every
second besides one per transaction, as a public chain has traffic) on the hub; an operator who
deploys with `network deploy` and runs the oracle; three miners and a user who each join with
`network join --from URL` (the profile served over HTTP by the operator's host) and then mine or
`ask`. Each host is linked to the hub by its own veth pair on a private /30; anvil listens only on
the hub's address, so every byte between processes crosses those links: there is no loopback path
to the chain, and every address the nodes use comes from the profile.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chain.devnet import AnvilProcess
from chain.wallet import DEVNET_SCRYPT_N, create_wallet
from cortensor_desktop.hosting.devnet_nodes import DevnetNode, alive, spawn, stop_all
from cortensor_desktop.networks import load_profile
from tests.conftest import REPO_ROOT, cli_env
from tests.node.netns import Host, Hosts, NamespacesUnavailable, namespaces_left, probe

pytestmark = [pytest.mark.slow, pytest.mark.chain, pytest.mark.llama]
CHAIN_ID = 421614
RPC_PORT = 8545
PROFILE_PORT = 8080
NAME = "arbsep"
PROMPT = "Name three colours of the rainbow."
MINERS = ("miner-0", "miner-1", "miner-2")
FAUCET = """
import json, sys, urllib.request
url, wei = sys.argv[1], hex(100 * 10**18)
for address in sys.argv[2:]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "anvil_setBalance", "params": [address, wei]}
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    assert "error" not in json.load(urllib.request.urlopen(request, timeout=10))
"""


class Machine:
    """One host's home: its wallet, passphrase file, and a way to run the CLI there."""

    def __init__(self, host: Host, base: Path, models_dir: Path) -> None:
        self.host = host
        self.home = base / host.name
        self.passphrase_file = self.home / "passphrase"
        self.passphrase_file.parent.mkdir(parents=True)
        self.passphrase_file.write_text("on another machine\n")
        self.passphrase_file.chmod(0o600)
        keystore = self.home / "data" / "keystore"
        self.address = create_wallet(keystore, "on another machine", DEVNET_SCRYPT_N).address
        self.env = {"CORTENSOR_MODELS__DIR": str(models_dir)}

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.host.wrap(), sys.executable, "-m", "cortensor_desktop", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=cli_env(self.home, self.env),
            cwd=REPO_ROOT,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.host.wrap(), sys.executable, "-m", "cortensor_desktop", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(self.home, self.env),
            cwd=REPO_ROOT,
        )


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    try:
        probe()
    except NamespacesUnavailable as exc:
        pytest.skip(f"needs Linux network namespaces: {exc}")
    with Hosts("chain", ["operator", *MINERS, "user"]) as made:
        yield made
    assert namespaces_left(made.tag) == [], "namespaces left behind"


@pytest.mark.timeout(600)
def test_deploy_join_mine_and_ask_across_hosts(
    hosts: Hosts, models_dir: Path, tmp_path: Path
) -> None:
    hub = hosts["chain"]
    rpc = f"http://{hub.address}:{RPC_PORT}"
    machines = {name: Machine(hosts[name], tmp_path, models_dir) for name in hosts.host_names}
    operator, user = machines["operator"], machines["user"]
    anvil = AnvilProcess(
        chain_id=CHAIN_ID,
        host=hub.address,
        port=RPC_PORT,
        wrapper=hub.wrap(),
        extra_args=("--block-time", "1", "--mixed-mining"),
    )
    nodes: list[DevnetNode] = []
    server: subprocess.Popen[bytes] | None = None
    try:
        anvil.start()
        _faucet(user, rpc, [m.address for m in machines.values()])
        profile = _deploy(operator, rpc, tmp_path / "published")
        server = _serve(operator, tmp_path / "published")
        url = f"http://{operator.host.address}:{PROFILE_PORT}/{NAME}.json"
        _join_all([machines[n] for n in (*MINERS, "user")], url, profile["deployer"], rpc)
        nodes.append(_spawn(operator, "oracle", models_dir))
        nodes += [_spawn(machines[n], "miner", models_dir) for n in MINERS]
        asked = user.run(
            "ask", PROMPT, "--redundancy", "3", "--json", "--timeout", "420",
            "--passphrase-file", str(user.passphrase_file), timeout=480,
        )  # fmt: skip
        assert asked.returncode == 0, asked.stderr[-3000:] + _logs(nodes)
        document = json.loads(asked.stdout)
        assert document["network"] == NAME and document["user"] == user.address
        miners = {machines[n].address.lower() for n in MINERS}
        assert {m["address"].lower() for m in document["miners"]} == miners
        assert sum(m["passed"] for m in document["miners"]) >= 2  # honest miners, one model
        assert document["answer"]
    finally:
        stop_all(nodes, timeout_s=20)
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        anvil.stop()
    assert not any(n.pid and alive(n.pid) for n in nodes)


def _faucet(machine: Machine, rpc: str, addresses: list[str]) -> None:
    """Fund the accounts, as a testnet faucet would (anvil_setBalance, from another host)."""
    done = subprocess.run(
        [*machine.host.wrap(), sys.executable, "-c", FAUCET, rpc, *addresses],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def _deploy(operator: Machine, rpc: str, published: Path) -> dict[str, Any]:
    published.mkdir()
    deployed = operator.run(
        "network", "deploy", "--rpc", rpc, "--chain-id", str(CHAIN_ID), "--name", NAME,
        "--passphrase-file", str(operator.passphrase_file), "--out",
        str(published / f"{NAME}.json"), "--json",
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    profile: dict[str, Any] = json.loads(deployed.stdout)
    assert profile["chain_id"] == CHAIN_ID and profile["rpc_urls"] == [rpc]
    assert profile["deployer"] == operator.address
    return profile


def _serve(operator: Machine, folder: Path) -> subprocess.Popen[bytes]:
    """The operator publishes the profile on a web server on its own host."""
    log = folder.parent / "http.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [*operator.host.wrap(), sys.executable, "-u", "-m", "http.server", str(PROFILE_PORT),
             "--bind", operator.host.address, "--directory", str(folder)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while b"Serving HTTP" not in log.read_bytes():
        assert server.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return server


def _join_all(machines: list[Machine], url: str, deployer: str, rpc: str) -> None:
    """Every other host joins from the published URL, at once (they are separate machines)."""
    joins = [
        m.start("network", "join", "--from", url, "--deployer", deployer, "--json")
        for m in machines
    ]
    for machine, process in zip(machines, joins, strict=True):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-3000:]
        assert json.loads(out)["rpc_checked"] == [rpc]
        installed = load_profile(machine.home / "config" / "networks", NAME)
        assert installed.rpc_urls == (rpc,)  # the hub's address from the profile, no loopback


def _spawn(machine: Machine, role: str, models_dir: Path) -> DevnetNode:
    node = DevnetNode(
        role, machine.host.name, str(machine.home), machine.address, str(machine.passphrase_file)
    )
    extra = {"CORTENSOR_POLICY__THREAD_CAP": "1"}  # four nodes share this machine's cores
    return spawn(node, models_dir, extra, wrapper=machine.host.wrap())


def _logs(nodes: list[DevnetNode]) -> str:
    tails = []
    for node in nodes:
        path = Path(node.home) / "logs" / "node.out"
        text = path.read_text(errors="replace") if path.exists() else ""
        tails.append(f"\n--- {node.name}\n{text[-1500:]}")
    return "".join(tails)
