"""The dashboard's own cost, in a real terminal (tmux): idle CPU, time to first frame, quit latency.

1. Idle CPU: the dashboard at the default refresh over an event bus that carries only what an
   idle node's host publishes, this machine's hardware readings (psutil, NVML) every 2 s. The
   process's CPU time over `--seconds` of wall time, as a percentage of one core. Budget: 3 %.
2. Time to the first frame: from launching `cortensor-desktop run` on a fresh home in tmux to the
   first-run wizard on the screen (tmux capture-pane; it includes the hardware probe).
3. Quit latency mid-generation: in that real run, once an oracle has started a session (the
   miners are generating their answers), press q and time until the process has exited.
   Budget: 1 s, exit code 0.

Headline on the last line; exit 1 when a budget is missed. Needs tmux.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CPU_BUDGET_PCT = 3.0
QUIT_BUDGET_S = 1.0
SOCKET = f"cortensor-bench-{uuid.uuid4().hex[:8]}"


def tmux(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"tmux {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session, check=False)


def wait_for(session: str, pattern: str, timeout_s: float, poll_s: float = 0.05) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, screen(session))
        if found:
            return found
        time.sleep(poll_s)
    raise TimeoutError(f"{pattern!r} not on screen within {timeout_s} s:\n{screen(session)}")


def launch(session: str, argv: list[str], home: Path, rc_file: Path) -> None:
    env = {
        "CORTENSOR_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "PATH": os.environ.get("PATH", ""),
        "TERM": "xterm-256color",
    }
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = (
        f"cd {shlex.quote(str(ROOT))} && env -i {exports} {shlex.quote(sys.executable)} "
        f"{' '.join(shlex.quote(a) for a in argv)}; echo $? > {shlex.quote(str(rc_file))}"
    )
    new_session = ("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
    for attempt in range(3):
        try:
            tmux("-f", "/dev/null", *new_session)
            return
        except RuntimeError as exc:
            # The idle run's kill-session leaves the server with no session: it exits, and a
            # new-session that reaches it while it does fails; the next one starts a new server.
            if "server exited unexpectedly" not in str(exc) or attempt == 2:
                raise
            time.sleep(0.5)


def pane_pid(session: str) -> int:
    """The Python process in the pane (the pane's shell runs it as its child)."""
    import psutil

    shell = psutil.Process(int(tmux("display-message", "-p", "-t", session, "#{pane_pid}")))
    for _ in range(100):
        children = [c for c in shell.children() if "python" in c.name().lower()]
        if children:
            return children[0].pid
        time.sleep(0.05)
    raise RuntimeError("the app's process did not appear")


def idle_child() -> None:
    """Runs inside tmux: the dashboard at the default refresh over a bus that carries only what
    an idle node's host publishes, this machine's hardware readings (every 2 s)."""
    import threading

    from cortensor_desktop.tui.app import NodeInfo, create_app
    from engine.host.node_host import HardwareWatch
    from engine.host.sensors import hardware_reading
    from engine.state.commands import CommandQueue
    from engine.state.events import EventBus

    bus = EventBus()
    watch = HardwareWatch(bus, hardware_reading())

    def host_loop() -> None:  # as the dashboard's host ticks between commands
        while True:
            watch.tick(time.monotonic())
            time.sleep(0.25)

    threading.Thread(target=host_loop, name="host", daemon=True).start()
    create_app(bus, CommandQueue(), NodeInfo()).run()


def measure_idle(seconds: float, work: Path) -> float:
    import psutil

    launch("idle", [str(Path(__file__)), "--idle-child"], work / "idle-home", work / "idle.rc")
    try:
        wait_for("idle", "PoI results", 30)
        process = psutil.Process(pane_pid("idle"))
        time.sleep(1.0)  # let start-up work settle
        before = process.cpu_times()
        start = time.monotonic()
        time.sleep(seconds)
        after = process.cpu_times()
        elapsed = time.monotonic() - start
        used = (after.user - before.user) + (after.system - before.system)
        return 100.0 * used / elapsed
    finally:
        tmux("kill-session", "-t", "idle", check=False)


def keys(session: str, *names: str) -> None:
    for name in names:
        tmux("send-keys", "-t", session, name)
        time.sleep(0.3)  # the next key lands on the next widget


def through_wizard(session: str) -> None:
    """Hardware, override to the bundled model (nothing downloaded from outside), install,
    skip the wallet (the embedded network signs with its own accounts), embedded, start."""
    keys(session, "Enter", "o")
    wait_for(session, "override the recommendation", 10)
    keys(session, "Enter", "Home", "Enter", "Tab", "Tab", "Enter")
    wait_for(session, "installed", 60)
    keys(session, "Enter")
    wait_for(session, "Create a new wallet", 10)
    keys(session, "Down", "Down", "Down", "Enter")
    wait_for(session, "Which network", 10)
    keys(session, "Enter")
    wait_for(session, "step 6 of 6", 10)
    keys(session, "Enter")


def measure_run(work: Path, miners: int) -> tuple[float, float, int | None]:
    """(seconds to first frame, seconds from q to exit, exit code) for a real embedded run."""
    rc_file = work / "run.rc"
    launched = time.monotonic()
    launch(
        "run",
        ["-m", "cortensor_desktop", "run", "--miners", str(miners)],
        work / "run-home",
        rc_file,
    )
    wait_for("run", "First run", 60, poll_s=0.02)  # a fresh home: the wizard is the first frame
    first_frame = time.monotonic() - launched
    through_wizard("run")
    wait_for("run", "PoI results", 30)
    # The first session's judging shows PASS; the next `start` means the miners are generating.
    wait_for("run", "PASS", 240, poll_s=0.2)
    seen = {int(m) for m in re.findall(r"session (\d+) start", screen("run"))}
    wait_for("run", rf"session (?!(?:{'|'.join(map(str, seen)) or '-1'})\b)\d+ start", 120, 0.02)
    tmux("send-keys", "-t", "run", "q")
    pressed = time.monotonic()
    while not rc_file.exists() and time.monotonic() - pressed < 10:
        time.sleep(0.01)
    quit_s = time.monotonic() - pressed
    code = int(rc_file.read_text().strip()) if rc_file.exists() else None
    tmux("kill-session", "-t", "run", check=False)
    return first_frame, quit_s, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="idle measurement length")
    parser.add_argument("--miners", type=int, default=2, help="miners in the real run")
    parser.add_argument("--idle-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.idle_child:
        idle_child()
        return 0
    if shutil.which("tmux") is None:
        print("tmux is needed (a real terminal for the app)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tui-bench-") as folder:
        work = Path(folder)
        try:
            cpu = measure_idle(args.seconds, work)
            print(
                f"idle CPU at the default refresh: {cpu:.2f} % of one core over {args.seconds:g} s"
            )
            first_frame, quit_s, code = measure_run(work, args.miners)
        finally:
            tmux("kill-server", check=False)
    print(f"time to first frame (launch to the wizard on screen): {first_frame:.2f} s")
    print(f"quit latency mid-generation: {quit_s:.2f} s, exit code {code}")
    ok = cpu <= CPU_BUDGET_PCT and quit_s <= QUIT_BUDGET_S and code == 0
    verdict = "ok" if ok else "MISSED"
    print(
        f"tui_cpu: {verdict}: idle {cpu:.2f} % (budget {CPU_BUDGET_PCT:g} %), first frame "
        f"{first_frame:.2f} s, quit {quit_s:.2f} s (budget {QUIT_BUDGET_S:g} s), exit {code}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
