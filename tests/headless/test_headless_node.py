"""A real headless node as a service manager runs it: `run --headless --miners 2` on a fresh home.

One node process serves the tests of this module, in order (it is costly to start on a small
machine): read the status API, the SSE stream and the metrics; kill an inference worker and see it
restarted while the network carries on; commands without the token are refused and with it obeyed;
SIGTERM ends it with exit 0 and a journal that can resume.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine.state.database import Database
from engine.state.journal import ChainKey, CommitState, Journal
from tests.conftest import REPO_ROOT, cli_env, run_cli


@dataclass
class Node:
    proc: subprocess.Popen[str]
    home: Path
    port: int
    token: str
    stderr: Path

    def request(
        self, method: str, path: str, body: str | None = None, token: str | None = None
    ) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def summary(self) -> dict[str, Any]:
        status, body = self.request("GET", "/1/summary")
        assert status == 200
        document: dict[str, Any] = json.loads(body)
        return document

    def log(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")


def _until(
    condition: Callable[[], Any], timeout: float, what: str, node: Node | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if node is not None and node.proc.poll() is not None:
            pytest.fail(
                f"the node exited ({node.proc.returncode}) waiting for {what}: {node.log()[-3000:]}"
            )
        time.sleep(0.5)
    tail = node.log()[-3000:] if node else ""
    pytest.fail(f"timed out waiting for {what}\n{tail}")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    home = tmp_path_factory.mktemp("headless") / "home"
    stderr = home.parent / "stderr.log"
    with stderr.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cortensor_desktop", "run", "--headless", "--miners", "2"],
            cwd=REPO_ROOT,
            env=cli_env(home),
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )
    api_file = home / "data" / "api.json"
    started = Node(proc, home, 0, "", stderr)
    try:

        def api_up() -> dict[str, Any] | None:
            if not api_file.exists():
                return None
            info: dict[str, Any] = json.loads(api_file.read_text())
            return info if info["pid"] == proc.pid else None

        info = _until(api_up, 120, "api.json", started)
        started.port = int(info["port"])
        started.token = (home / "data" / "api-token").read_text().strip()
        _until(lambda: "embedded network up" in started.log(), 180, "the network", started)
        yield started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_summary_events_and_metrics_of_a_running_node(node: Node) -> None:
    info = json.loads((node.home / "data" / "api.json").read_text())
    assert info["host"] == "127.0.0.1"
    doc = node.summary()
    assert doc["state"] in ("running", "starting")
    assert doc["network"] == "embedded" and doc["version"]
    assert [n["role"] for n in doc["nodes"]].count("miner") == 2
    assert {"10s", "60s", "15m"} <= set(doc["tokens_per_s"])
    # 2 miners; the oracle's chat model, embeddings and float16 scoring copy (a CPU machine).
    assert len(doc["workers"]) == 5 and all(w["pid"] for w in doc["workers"])
    assert doc["threads"].startswith("1 llama.cpp thread per node")  # the thread policy, said

    # the event stream: the history from the start, ids are seqs in order
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    conn.request("GET", "/1/events", headers={"Last-Event-ID": "0"})
    response = conn.getresponse()
    assert response.getheader("Content-Type") == "text/event-stream"
    ids: list[int] = []
    types: list[str] = []
    while len(ids) < 5:
        line = response.fp.readline().decode()
        if line.startswith("id: "):
            ids.append(int(line[4:]))
        elif line.startswith("data: "):
            types.append(json.loads(line[6:])["type"])
    conn.close()
    assert ids == [1, 2, 3, 4, 5]
    assert "node_state" in types or "preflight_step" in types

    # metrics once a session has produced some numbers
    _until(lambda: node.summary()["tokens_per_s"]["15m"], 240, "a finished inference", node)
    doc = node.summary()
    assert "oracle" in [n["role"] for n in doc["nodes"]] and doc["role"] == "miner+oracle"
    assert doc["model"] == "smollm2-135m-instruct" and doc["tier"] == "cpu-low"
    plan = doc["plan"]  # the embedded network's plan: bundled model, this machine's tier/memory
    assert (plan["model_id"], plan["quant"], plan["source"]) == (doc["model"], "Q4_1", "embedded")
    assert plan["tier"] == doc["tier"] and plan["memory_mb"] > 0 and plan["reasons"]
    assert all(n["gas_balance_wei"] > 0 for n in doc["nodes"])  # read from the chain
    status, body = node.request("GET", "/metrics")
    text = body.decode()
    assert status == 200
    for name in (
        "cortensor_tokens_per_second{",
        "cortensor_tasks_total{",
        "cortensor_node_state{",
        "cortensor_worker_restarts_total",
        "cortensor_uptime_seconds",
        "cortensor_gas_balance_wei{",
    ):
        assert name in text, name

    # status CLI, the way an operator asks
    result = run_cli(node.home, "status", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] in ("running", "starting")


@pytest.mark.timeout(600)  # its own waits are up to 300 s each on a loaded machine
def test_a_killed_inference_worker_is_restarted_and_the_node_carries_on(node: Node) -> None:
    ended = _until(lambda: node.summary()["sessions_ended"], 300, "a first session", node)
    victim = next(w for w in node.summary()["workers"] if w["name"].startswith("miner"))
    # only a process this test started: a child of the node
    assert psutil.Process(victim["pid"]).ppid() == node.proc.pid
    os.kill(victim["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        worker = next(w for w in node.summary()["workers"] if w["name"] == victim["name"])
        alive = worker["pid"] not in (None, victim["pid"])
        return worker if worker["deaths"] >= 1 and alive else None

    fresh = _until(restarted, 300, "the worker to be restarted", node)
    assert psutil.pid_exists(fresh["pid"])
    _until(lambda: node.summary()["sessions_ended"] > ended, 300, "another session", node)
    assert node.summary()["worker_restarts"] >= 1
    assert "the inference worker died (killed by SIGKILL)" in node.log()
    _until(lambda: "alert worker_crash cleared" in node.log(), 60, "the alert to clear", node)
    assert "ALERT worker_crash (warning): miner 0x" in node.log()


def test_commands_need_the_token_and_a_pause_shows_in_the_summary(node: Node) -> None:
    pause = json.dumps({"type": "pause", "reason": "maintenance"})
    assert node.request("POST", "/1/commands", pause)[0] == 401
    assert node.request("POST", "/1/commands", pause, token="not-the-token")[0] == 401
    assert node.summary()["state"] != "paused"
    assert node.request("POST", "/1/commands", '{"type": "nope"}', token=node.token)[0] == 400
    status, body = node.request("POST", "/1/commands", pause, token=node.token)
    assert status == 202
    command_id = json.loads(body)["id"]

    def paused() -> dict[str, Any] | None:
        doc = node.summary()
        return doc if doc["state"] == "paused" else None

    doc = _until(paused, 30, "the pause", node)
    assert [r["code"] for r in doc["pause_reasons"]] == ["user"]
    assert "maintenance" in doc["pause_reasons"][0]["message"]
    assert any(c["id"] == command_id and c["accepted"] for c in doc["commands"])
    assert all(n["state"] == "paused" for n in doc["nodes"] if n["role"] == "miner")
    assert node.token not in node.log()


def test_miners_publish_earnings_and_wallet_withdraw_reaches_the_node(node: Node) -> None:
    def miners_with_earnings() -> list[dict[str, Any]] | None:
        miners = [n for n in node.summary()["nodes"] if n["role"] == "miner"]
        known = [n for n in miners if n["earnings"]["withdrawable_wei"] is not None]
        return known if len(known) == 2 else None

    miners = _until(miners_with_earnings, 60, "earnings events of both miners", node)
    assert all(m["gas_balance_wei"] > 0 for m in miners)
    # Network tasks earn points, not money: nothing to withdraw, and the node says so.
    result = run_cli(node.home, "wallet", "withdraw", "--json", timeout=60)
    assert result.returncode == 5, result.stderr
    document = json.loads(result.stdout)
    assert document["via"] == "node" and not document["accepted"]
    assert "nothing to withdraw" in document["message"] and document["withdrawals"] == []


def test_attach_shows_the_running_node_and_its_keys_reach_it(node: Node) -> None:
    """`attach`'s dashboard against the real headless node: SSE in, commands out (Pilot)."""
    asyncio.run(_attached_session(node))


async def _attached_session(node: Node) -> None:
    from cortensor_desktop.cli.commands.attach_cmd import build_attach_app

    app, feed = build_attach_app(node.home / "data" / "api.json")
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            # What the node did before the attach arrives too (resumed from its event history).
            await _settle(pilot, lambda: app.summary.total_points > 0, "points over SSE")
            assert app.summary.nodes, "no node in the attached view"
            # `p` toggles what the view shows. Under load the view can still be replaying the
            # node's history when the points arrive (the flaky run: it showed "running" while
            # the node was paused, so the key sent the pause the node already had). Press only
            # once the view shows the node's current state, as a person would.
            await _settle(
                pilot,
                lambda: app.summary.paused == (node.summary()["state"] == "paused"),
                "the view to show the node's current state",
            )
            was_paused = app.summary.paused
            await pilot.press("p")  # pause, or resume: the key toggles
            await _settle(pilot, lambda: bool(app.sent), "the key's command to be delivered")
            assert app.sent[-1].type == ("resume" if was_paused else "pause")
            await _settle(
                pilot,
                lambda: (node.summary()["state"] == "paused") != was_paused,
                "the node to follow the key",
            )
            await _settle(pilot, lambda: app.summary.paused != was_paused, "the view to show it")
            await pilot.press("p")
            await _settle(
                pilot,
                lambda: (node.summary()["state"] == "paused") == was_paused,
                "the node to toggle back",
            )
            await pilot.press("q")
        assert app.return_code == 0
        assert node.proc.poll() is None, "quitting the attached view must not stop the node"
    finally:
        feed.stop()


async def _settle(pilot: Any, condition: Callable[[], Any], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await pilot.pause(0.25)


def test_sighup_reloads_the_policy_live_and_names_what_needs_a_restart(node: Node) -> None:
    later = datetime.now() + timedelta(hours=2)
    window = f"{later:%H}:00-{(later + timedelta(hours=1)):%H}:00"  # a window that excludes now
    config = node.home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[policy]\nactive_hours = ["{window}"]\nsample_interval_s = 1\n[api]\nport = 9\n'
    )
    node.proc.send_signal(signal.SIGHUP)

    def scheduled() -> dict[str, Any] | None:
        doc = node.summary()
        codes = {r["code"] for r in doc["pause_reasons"]}
        return doc if "schedule" in codes else None

    doc = _until(scheduled, 30, "the schedule pause", node)
    assert {r["code"] for r in doc["pause_reasons"]} == {"schedule", "user"}
    reload = next(c for c in doc["commands"] if c["command"] == "reload_config")
    assert reload["accepted"]
    assert "applied live: policy.active_hours" in reload["message"]
    assert "needs a restart: api.port" in reload["message"]


def test_sigterm_exits_0_and_leaves_a_journal_that_can_resume(node: Node) -> None:
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(timeout=60) == 0, node.log()[-3000:]
    log = node.log()
    assert "stopping (SIGTERM)" in log and "Traceback" not in log
    assert not (node.home / "data" / "api.json").exists()
    result = run_cli(node.home, "status")
    assert result.returncode == 8 and "run --headless" in result.stderr

    path = node.home / "data" / "cortensor.sqlite3"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        scopes = conn.execute(
            "SELECT DISTINCT chain_id, genesis_hash, node FROM journal_commits"
        ).fetchall()
    assert scopes, "the miners journaled no commit at all"
    db = Database(path)
    try:
        for chain_id, genesis, address in scopes:
            journal = Journal(db, ChainKey(chain_id, genesis), address)
            open_ = {r.task for r in journal.open_commits()}
            resumable = {r.task for r in journal.pending_precommits() + journal.pending_reveals()}
            assert open_ == resumable  # every unfinished record is one resume() picks up
            for record in journal.open_commits():
                assert record.salt.startswith("0x") and len(record.salt) == 66
                assert record.answer
                if record.state is not CommitState.PREPARED:
                    assert record.precommit_tx
    finally:
        db.close()
