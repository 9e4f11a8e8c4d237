"""Named failpoints for crash tests: `CORTENSOR_FAILPOINTS=name[,name]` acts at that point.

Some crashes matter only at one instant (between a miner's precommit and its commit, inside the
validator's scoring request), which a test cannot hit from outside reliably. `hit` makes the
process SIGKILL itself there, exactly as a power cut or the OOM killer would: no cleanup, no
flush beyond what the code already made durable. `fail` raises `FailpointError` instead: an
unexpected bug in a loop thread. Unset in normal operation; never set them on a real node.

`CORTENSOR_FAILPOINTS_ONCE=DIR` makes each failpoint act once across every process that shares
DIR (a worker restarted after the crash inherits the variables): the first hit leaves a marker
file there, created with O_EXCL so two processes never both act.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "CORTENSOR_FAILPOINTS"
ONCE_ENV = "CORTENSOR_FAILPOINTS_ONCE"


class FailpointError(RuntimeError):
    """Raised by `fail`: stands for a bug nobody anticipated."""


def _armed(name: str) -> bool:
    if name not in os.environ.get(ENV, "").split(","):
        return False
    once_dir = os.environ.get(ONCE_ENV)
    if not once_dir:
        return True
    try:
        fd = os.open(Path(once_dir) / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def hit(name: str) -> None:
    if _armed(name):
        os.kill(os.getpid(), signal.SIGKILL)


def fail(name: str) -> None:
    if _armed(name):
        raise FailpointError(f"failpoint {name}")
