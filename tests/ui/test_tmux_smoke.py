"""The real app in a real terminal (tmux): the first-run wizard, the dashboard, quit on q.

`cortensor-desktop` with no arguments on a terminal with a fresh home opens the first-run wizard;
its steps (override, model install, wallet, network) end with the embedded network started behind
the dashboard; `q` must end the process with exit code 0 within 3 s, even with the engine busy.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, cli_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


SOCKET = f"cortensor-smoke-{uuid.uuid4().hex[:8]}"  # a private tmux server: no one else's settings


def _tmux(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"tmux {' '.join(args)}: {proc.stderr}")
    return proc.stdout


def _screen(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session, check=False)


def _wait_for(session: str, text: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    screen = ""
    while time.monotonic() < deadline:
        screen = _screen(session)
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not on screen within {timeout_s} s:\n{screen}")


def _keys(session: str, *keys: str, literal: bool = False) -> None:
    _tmux("send-keys", "-t", session, *(["-l"] if literal else []), *keys)
    time.sleep(0.3)  # one step at a time: the next key lands on the next widget


def _through_the_wizard(session: str, home: Path) -> None:
    """Every step with the keyboard: override to the bundled model (no download from outside),
    create a wallet with a passphrase typed twice, the embedded network, start."""
    screen = _wait_for(session, "First run", 60)
    assert "Hardware profile" in screen and "cores" in screen
    _keys(session, "Enter")
    screen = _wait_for(session, "Reasons", 10)
    assert "tier" in screen
    _keys(session, "o")
    _wait_for(session, "override the recommendation", 10)
    _keys(session, "Enter")  # open the model list
    _keys(session, "Home")  # the first model: the bundled one
    _keys(session, "Enter")
    _keys(session, "Tab")
    _keys(session, "Tab")  # the context field
    _keys(session, "Enter")  # check it with the fit and use it
    _wait_for(session, "installed", 60)
    _keys(session, "Enter")
    _wait_for(session, "Create a new wallet", 10)
    _keys(session, "Enter")  # create: the passphrase field
    for _ in range(2):
        _keys(session, "smoke quiet pass", literal=True)
        _keys(session, "Enter")
    _keys(session, "Enter")  # no payout address: the node wallet itself
    screen = _wait_for(session, "Wallet ready", 30)
    assert "quiet" not in screen  # the passphrase is never on the screen
    assert (home / "data" / "keystore" / "wallet.json").exists()
    _keys(session, "Enter")
    _wait_for(session, "Which network", 10)
    _keys(session, "Enter")
    _wait_for(session, "step 6 of 6", 10)
    _keys(session, "Enter")
    screen = _wait_for(session, "PoI results", 30)
    assert "q quit" in screen and "Nodes" in screen
    assert (home / "config" / "config.toml").exists()  # accepted: the wizard shows once


@pytest.mark.timeout(240)
def test_fresh_home_wizard_then_dashboard_and_q_exits_0_within_3_s(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rc_file = tmp_path / "rc"
    env = cli_env(home)
    exports = " ".join(
        f"{k}={shlex.quote(env[k])}" for k in ("CORTENSOR_HOME", "PYTHONPATH", "PATH") if k in env
    )
    command = (
        f"cd {shlex.quote(str(REPO_ROOT))} && env {exports} "
        f"{shlex.quote(sys.executable)} -m cortensor_desktop --log-level info; "
        f"echo $? > {shlex.quote(str(rc_file))}"
    )
    session = "smoke"
    _tmux("-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
    try:
        _through_the_wizard(session, home)
        # Quit with the engine at work: once a task has been judged, sessions keep coming.
        _wait_for(session, "PASS", 150)
        _tmux("send-keys", "-t", session, "q")
        pressed = time.monotonic()
        while not rc_file.exists() and time.monotonic() - pressed < 3.0:
            time.sleep(0.05)
        took = time.monotonic() - pressed
        assert rc_file.exists(), f"still running 3 s after q:\n{_screen(session)}"
        assert rc_file.read_text().strip() == "0"
        assert took < 3.0
    finally:
        _tmux("kill-server", check=False)


@pytest.mark.timeout(120)
def test_sigterm_to_a_dashboard_run_exits_0_within_3_s(tmp_path: Path) -> None:
    """With a config already there (no wizard), `run` opens the dashboard; SIGTERM quits it."""
    import psutil

    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text("", encoding="utf-8")
    rc_file = tmp_path / "rc"
    env = cli_env(home)
    exports = " ".join(
        f"{k}={shlex.quote(env[k])}" for k in ("CORTENSOR_HOME", "PYTHONPATH", "PATH") if k in env
    )
    command = (
        f"cd {shlex.quote(str(REPO_ROOT))} && env {exports} "
        f"{shlex.quote(sys.executable)} -m cortensor_desktop run --miners 1; "
        f"echo $? > {shlex.quote(str(rc_file))}"
    )
    session = "term"
    _tmux("-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
    try:
        _wait_for(session, "PoI results", 60)
        _wait_for(session, "registered", 90)  # the miner is up and working
        shell = psutil.Process(int(_tmux("display-message", "-p", "-t", session, "#{pane_pid}")))
        (app,) = [c for c in shell.children() if "python" in c.name().lower()]
        app.terminate()
        sent = time.monotonic()
        while not rc_file.exists() and time.monotonic() - sent < 3.0:
            time.sleep(0.05)
        assert rc_file.exists(), f"still running 3 s after SIGTERM:\n{_screen(session)}"
        assert rc_file.read_text().strip() == "0"
    finally:
        _tmux("kill-server", check=False)
