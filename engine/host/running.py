"""What a host needs of a running node, whichever assembly it is.

`EmbeddedNetwork` (chain, oracle and miners in one process) and `StandaloneNode` (one node on a
real network) both satisfy `RunningNode`, so the headless run loop, the status API's worker list
and the node host (commands, policies, alerts) are written once against this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from engine.host.loop_threads import LoopDeath
    from engine.host.plan import NodePlan
    from engine.inference.runtime import InferenceWorker
    from engine.node.miner import Miner
    from engine.node.oracle import Oracle


class RunningNode(Protocol):
    """The roles a node runs, its inference workers, and its lifecycle."""

    @property
    def miners(self) -> Sequence[Miner]: ...

    @property
    def oracles(self) -> Sequence[Oracle]: ...

    @property
    def workers(self) -> list[tuple[str, InferenceWorker]]:
        """Every inference worker, named for the node and job it serves."""
        ...

    @property
    def worker_owners(self) -> dict[str, str]:
        """Worker name -> the address of the node it serves (alerts name the node)."""
        ...

    @property
    def loop_death(self) -> LoopDeath | None:
        """The first miner or oracle loop thread that died, if one did (the run then ends)."""
        ...

    @property
    def plan(self) -> NodePlan | None:
        """What the node loads and registers (engine/host/plan.py); after `start`, the plan that
        runs (a fallback replaces one whose model could not be installed)."""
        ...

    def start(self) -> None: ...

    def stop(self, timeout_s: float = 10.0) -> None: ...
