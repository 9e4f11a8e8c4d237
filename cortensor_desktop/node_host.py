"""The embedded network hosted for a view: started on a thread, driven by typed commands.

A view (the dashboard) never touches the engine objects: it reads the bus and puts commands on
the `CommandQueue`. This host takes them off the queue and answers each with a `CommandHandled`
event. What the embedded engine can do today it does (pause and resume the miners, benchmark
them between tasks, withdraw their balances to their payout addresses); anything else is refused
with a message that says so, never silently accepted. No textual here: a status API can host the
same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from engine.commands import (
    Benchmark,
    Command,
    CommandQueue,
    Pause,
    ReloadConfig,
    Resume,
    SetPayout,
    Stop,
    Withdraw,
)
from engine.database import Database
from engine.earnings import withdraw_from
from engine.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings
from engine.events import (
    CommandHandled,
    EventBus,
    LogLine,
    NodeState,
    NodeStateChanged,
    PauseReason,
)
from engine.node_control import request_benchmarks, set_payout_for
from engine.protocol import NodeRole

log = logging.getLogger(__name__)


class NetworkHost:
    """Hosts one `EmbeddedNetwork`; `embedded(...)` builds one, tests pass one already started."""

    def __init__(self, network: EmbeddedNetwork, commands: CommandQueue | None = None) -> None:
        self.network = network
        self.bus = network.bus
        self.commands = commands or CommandQueue()
        self.started = threading.Event()
        self.failed: BaseException | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Set by the CLI: reads the config file again and says what applied live (ReloadConfig).
        self.reload: Callable[[], tuple[bool, str]] | None = None

    @classmethod
    def embedded(
        cls,
        db: Database,
        models_dir: Path,
        bus: EventBus,
        settings: EmbeddedNetworkSettings | None = None,
    ) -> NetworkHost:
        """A host for a new embedded network; its start-up progress goes to the bus as log lines."""

        def progress(message: str) -> None:
            log.info("%s", message)
            bus.publish(LogLine(level="info", logger="embedded", message=message))

        network = EmbeddedNetwork(db, models_dir, bus, settings, progress=progress)
        return cls(network)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, network: bool = True) -> None:
        """Start the command loop and (unless already started) the network; returns at once."""
        targets: list[tuple[str, Callable[[], None]]] = [("commands", self._serve)]
        if network:
            targets.append(("network-start", self._start_network))
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _start_network(self) -> None:
        try:
            self.network.start()
        except Exception as exc:  # the view shows it; the CLI maps it to an exit code
            self.failed = exc
            self.bus.publish(LogLine(level="error", logger="host", message=f"start failed: {exc}"))
            return
        self.started.set()
        message = f"embedded network up: {len(self.network.miners)} miners, 1 oracle; q quits"
        self.bus.publish(LogLine(level="info", logger="host", message=message))

    def stop(self, timeout_s: float = 0.3) -> None:
        """Stop within `timeout_s`: workers are processes and are killed; loop threads are daemons.

        The journal keeps what a killed request was doing, so the next start resumes it.
        """
        self._stop.set()
        self.network.abort()
        stopper = threading.Thread(target=self.network.stop, kwargs={"timeout_s": 0.1}, daemon=True)
        stopper.start()
        stopper.join(timeout=timeout_s)

    # -- commands ----------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            command = self.commands.get(timeout=0.25)
            if command is not None:
                self.handle(command)

    def handle(self, command: Command) -> CommandHandled:
        accepted, message = self._apply(command)
        return self.bus.publish(
            CommandHandled(
                command_id=command.id, command=command.type, accepted=accepted, message=message
            )
        )

    def _apply(self, command: Command) -> tuple[bool, str]:
        miners = self.network.miners
        if isinstance(command, Pause | Resume) and not miners:
            return False, "the network is still starting"
        if isinstance(command, Pause):
            reason = PauseReason(command.reason, f"paused by the {command.source or 'user'}")
            for miner in miners:
                miner.paused = True
                self.bus.publish(
                    NodeStateChanged(
                        node=miner.address,
                        role=NodeRole.MINER,
                        state=NodeState.PAUSED,
                        previous=NodeState.REGISTERED,
                        reasons=(reason,),
                    )
                )
            return True, f"{len(miners)} miners paused: they finish the current task, then idle"
        if isinstance(command, Resume):
            for miner in miners:
                miner.paused = False
                self.bus.publish(
                    NodeStateChanged(
                        node=miner.address,
                        role=NodeRole.MINER,
                        state=NodeState.REGISTERED,
                        previous=NodeState.PAUSED,
                    )
                )
            return True, f"{len(miners)} miners resumed"
        if isinstance(command, Benchmark):
            return request_benchmarks(miners)
        if isinstance(command, Withdraw):
            if not miners:
                return False, "the network is still starting; nothing was sent"
            return withdraw_from(miners, command.amount_wei, command.node)
        if isinstance(command, SetPayout):
            return self._set_payout(command.address)
        if isinstance(command, ReloadConfig):
            if self.reload is None:
                return False, "this host cannot reload its config: restart to apply the changes"
            return self.reload()
        if isinstance(command, Stop):
            self._stop.set()
            return True, "stopping"
        return False, f"`{command.type}` is not supported by the embedded host"

    def _set_payout(self, address: str) -> tuple[bool, str]:
        if not self.network.miners:
            return False, "the network is still starting: the payout applies at registration"
        return set_payout_for(self.network.miners, address)
