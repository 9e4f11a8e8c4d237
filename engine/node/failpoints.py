"""Named failpoints for crash tests: `CORTENSOR_FAILPOINTS=name[,name]` kills the process there.

Some crashes matter only at one instant (between a miner's precommit and its commit), which a
test cannot hit from outside reliably. A failpoint makes the process SIGKILL itself at that
point, exactly as a power cut or the OOM killer would: no cleanup, no flush beyond what the code
already made durable. Unset in normal operation; never set it on a real node.
"""

from __future__ import annotations

import os
import signal

ENV = "CORTENSOR_FAILPOINTS"


def hit(name: str) -> None:
    if name in os.environ.get(ENV, "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)
