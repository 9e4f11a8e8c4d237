"""Miner and oracle nodes of a local devnet, each a separate process with its own home.

`devnet up --miners N --oracles M` makes one `CORTENSOR_HOME` per node under the devnet's folder:
a keystore (devnet scrypt), a passphrase file (mode 0600, given to the node through
CORTENSOR_PASSPHRASE_FILE as a service manager would), the `local` network profile and a config
that selects it. Oracle keys are the ones the deployment registered as oracles. Each node runs
`cortensor-desktop run --headless --role ROLE` with one llama.cpp thread and OpenMP waiting
passively, so several nodes share a small machine fairly; the model folder stays shared.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cortensor_desktop.launch import app_command

NODE_FILES_MODE = 0o600
# NodeRegistry.nodeInfo status, as the contract numbers it.
NODE_STATES = {0: "unregistered", 1: "registered", 2: "ephemeral", 3: "reserved"}


@dataclass(frozen=True)
class DevnetNode:
    role: str
    name: str
    home: str
    address: str
    passphrase_file: str
    pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def prepare_nodes(
    base: Path, profile_text: str, miners: int, oracle_keys: list[str]
) -> list[DevnetNode]:
    from chain.wallet import DEVNET_SCRYPT_N, create_wallet, import_private_key

    nodes: list[DevnetNode] = []
    plan: list[tuple[str, int, str | None]] = [
        ("oracle", i, key) for i, key in enumerate(oracle_keys)
    ]
    plan += [("miner", i, None) for i in range(miners)]
    for role, index, key in plan:
        home = base / f"{role}-{index}"
        passphrase_file = _private_file(home / "passphrase", secrets.token_urlsafe(24))
        passphrase = passphrase_file.read_text(encoding="utf-8")
        keystore = home / "data" / "keystore"
        info = (
            import_private_key(keystore, key, passphrase, DEVNET_SCRYPT_N)
            if key
            else create_wallet(keystore, passphrase, DEVNET_SCRYPT_N)
        )
        _write_config(home, profile_text)
        nodes.append(
            DevnetNode(role, f"{role}-{index}", str(home), info.address, str(passphrase_file))
        )
    return nodes


def _private_file(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, NODE_FILES_MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(content)
    return path


def _write_config(home: Path, profile_text: str) -> None:
    networks = home / "config" / "networks"
    networks.mkdir(parents=True, exist_ok=True)
    (networks / "local.toml").write_text(profile_text, encoding="utf-8")
    # Every devnet node shares this machine: each runs the bundled model with one thread at a
    # short context, pinned through [fit] so the plan (and what the node registers) says so.
    from profiler.catalogue import load_catalogue

    bundled = load_catalogue().default_chat.id
    (home / "config" / "config.toml").write_text(
        f'[network]\nprofile = "local"\n\n[fit]\nmodel = "{bundled}"\nctx = 2048\nthreads = 1\n',
        "utf-8",
    )


def spawn(
    node: DevnetNode,
    models_dir: Path,
    extra_env: dict[str, str] | None = None,
    wrapper: tuple[str, ...] = (),
) -> DevnetNode:
    """Start the node; `wrapper` prefixes the command (`ip netns exec NS` puts it on another
    host, as the many-hosts test does; `ip` execs the node, so the PID is the node's)."""
    home = Path(node.home)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORTENSOR_")}
    env.update(
        {
            "CORTENSOR_HOME": node.home,
            "CORTENSOR_PASSPHRASE_FILE": node.passphrase_file,
            "CORTENSOR_MODELS__DIR": str(models_dir),
            "OMP_WAIT_POLICY": "PASSIVE",
            "OMP_NUM_THREADS": "1",
        }
    )
    env.update(extra_env or {})
    command = [*wrapper, *app_command("run", "--headless", "--role", node.role)]
    with open(home / "logs" / "node.out", "ab") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
    return DevnetNode(**{**node.to_json(), "pid": process.pid})


def stop_all(nodes: list[DevnetNode], timeout_s: float = 20.0) -> None:
    """SIGTERM every node (they stop cleanly), then SIGKILL what is still running."""
    pids = [n.pid for n in nodes if n.pid and alive(n.pid)]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass  # not our child (status read from another process): fall back to a signal probe
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (OSError, IndexError):
        return False


def node_status(client: Any, node: dict[str, Any]) -> dict[str, Any]:
    """What `devnet status` shows per node: role, address, state on chain, tasks done."""
    pid = node.get("pid")
    running = isinstance(pid, int) and alive(pid)
    info = client.registry.node_info(node["address"])
    if node["role"] == "miner":
        state = NODE_STATES.get(info.status, str(info.status))
        done = int(client.stats.stats(node["address"])["successes"])
    else:
        leader = client.registry.leader().lower() == node["address"].lower()
        state, done = ("leader" if leader else "standby"), None
    return {
        "role": node["role"],
        "name": node["name"],
        "address": node["address"],
        "state": state if running else "stopped",
        "tasks_done": done,
        "pid": pid,
    }


def devnet_user(base: Path) -> Any:
    """The devnet account `ask` pays from: a keystore (devnet scrypt) and its passphrase file
    (mode 0600) under `base`, made on first use, so a devnet needs no wallet set-up to ask."""
    from chain.wallet import DEVNET_SCRYPT_N, create_wallet, unlock, wallet_path

    keystore = base / "keystore"
    passphrase_file = base / "passphrase"
    if not passphrase_file.exists():  # a throwaway devnet key without its passphrase: renew it
        wallet_path(keystore).unlink(missing_ok=True)
    if not wallet_path(keystore).exists():
        _private_file(passphrase_file, secrets.token_urlsafe(24))
        create_wallet(keystore, passphrase_file.read_text(encoding="utf-8"), DEVNET_SCRYPT_N)
    return unlock(keystore, passphrase_file.read_text(encoding="utf-8"))
