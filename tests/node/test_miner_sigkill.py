"""A miner process SIGKILLed between precommit and commit, restarted, reveals in time (anvil).

Real processes on a real devnet: `devnet up --oracles 1` runs anvil and the oracle; the test
starts two miner processes itself, one with the failpoint that SIGKILLs it right after its
precommit is journaled and sent, then restarts that miner on the same home without it. The
miners' network profile lists a dead RPC URL first, so every request they make fails over to
the second: the nodes carry on, across the kill and the restart, without losing journal state.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chain.client import connect
from chain.devnet import fund
from chain.events import EventCursor
from cortensor_desktop.hosting.devnet_nodes import alive, prepare_nodes, spawn, stop_all

FAILPOINT = {"CORTENSOR_FAILPOINTS": "miner-after-precommit"}
DEAD_RPC = "http://127.0.0.1:9"  # nothing listens on the discard port


def _until(condition, timeout_s: float, what: str) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_miner_process_reveals_after_restart(cli, home: Path, tmp_path: Path) -> None:
    up = cli("devnet", "up", "--oracles", "1", "--detach", timeout=180)
    assert up.returncode == 0, up.stderr[-2000:]
    state = json.loads((home / "data" / "devnet" / "local.json").read_text())
    client = connect(int(state["chain_id"]), [state["rpc_url"]], state["contracts"])
    profile = (home / "config" / "networks" / "local.toml").read_text()
    live = state["rpc_url"]
    assert f'"{live}"' in profile
    profile = profile.replace(f'"{live}"', f'"{DEAD_RPC}", "{live}"')  # the first URL is dead
    victim, other = prepare_nodes(tmp_path / "miners", profile, 2, [])
    for node in (victim, other):
        fund(client.web3, node.address, 10**20)
    models = Path(state.get("models_dir") or _models_dir())
    running = [spawn(victim, models, FAILPOINT), spawn(other, models)]
    try:
        precommits = EventCursor("Cognitive", client.cognitive.contract, "Precommitted", 0)
        mine = _until(
            lambda: [e for e in precommits.poll() if e.args["miner"] == victim.address],
            300,
            "the victim's precommit",
        )
        session = int(mine[0].args["id"])  # type: ignore[index]
        _until(lambda: not alive(running[0].pid or 0), 30, "the failpoint to kill the victim")

        running[0] = spawn(victim, models)  # restarted, as a service manager would
        reveals = EventCursor("Cognitive", client.cognitive.contract, "AnswerRevealed", 0)
        _until(
            lambda: any(
                e.args["miner"] == victim.address and int(e.args["id"]) == session
                for e in reveals.poll()
            ),
            240,
            "the restarted miner's reveal",
        )
        again = EventCursor("Cognitive", client.cognitive.contract, "Precommitted", 0).poll()
        assert [int(e.args["id"]) for e in again if e.args["miner"] == victim.address].count(
            session
        ) == 1, "the precommit was sent twice"
    finally:
        stop_all(running)
        cli("devnet", "down", timeout=60)


def _models_dir() -> str:
    from cortensor_desktop.paths import shared_models_dir

    return str(shared_models_dir())
