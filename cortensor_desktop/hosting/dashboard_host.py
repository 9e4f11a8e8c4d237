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

from engine.host.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings
from engine.host.node_control import request_benchmarks, set_payout_for
from engine.node.earnings import withdraw_from
from engine.protocol import NodeRole
from engine.state.commands import (
    Benchmark,
    Command,
    CommandQueue,
    Pause,
    ReloadConfig,
    Resume,
    SetPayout,
    Start,
    Stop,
    Withdraw,
)
from engine.state.database import Database
from engine.state.events import (
    CommandHandled,
    EventBus,
    LogLine,
    NodeState,
    NodeStateChanged,
    PauseReason,
)

log = logging.getLogger(__name__)


class NetworkHost:
    """Hosts one `EmbeddedNetwork`; `embedded(...)` builds one, tests pass one already started."""

    def __init__(
        self,
        network: EmbeddedNetwork,
        commands: CommandQueue | None = None,
        fresh_network: Callable[[], EmbeddedNetwork] | None = None,
    ) -> None:
        self.network = network
        # Start after Stop builds the network anew (an embedded chain does not outlive its run).
        self._fresh_network = fresh_network
        self.node_stopped = False
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

        def fresh() -> EmbeddedNetwork:
            return EmbeddedNetwork(db, models_dir, bus, settings, progress=progress)

        return cls(fresh(), fresh_network=fresh)

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
        if isinstance(command, Pause | Resume):
            if not miners:
                return False, "the network is still starting"
            return self._pause(command) if isinstance(command, Pause) else self._resume()
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
            return self._stop_node()
        if isinstance(command, Start):
            return self._start_node()
        return False, f"`{command.type}` is not supported by the embedded host"

    def _pause(self, command: Pause) -> tuple[bool, str]:
        reason = PauseReason(command.reason, f"paused by the {command.source or 'user'}")
        count = self._set_paused(True, (reason,))
        return True, f"{count} miners paused: they finish the current task, then idle"

    def _resume(self) -> tuple[bool, str]:
        return True, f"{self._set_paused(False, ())} miners resumed"

    def _set_paused(self, paused: bool, reasons: tuple[PauseReason, ...]) -> int:
        """Flip every miner and tell the views; the miners do the on-chain part themselves."""
        states = (NodeState.REGISTERED, NodeState.PAUSED)
        for miner in self.network.miners:
            miner.paused = paused
            self.bus.publish(
                NodeStateChanged(
                    node=miner.address,
                    role=NodeRole.MINER,
                    state=states[paused],
                    previous=states[not paused],
                    reasons=reasons,
                )
            )
        return len(self.network.miners)

    def _stop_node(self) -> tuple[bool, str]:
        """The node stops (loops end, workers close); the view and this command loop stay."""
        if self.node_stopped:
            return False, "the node is already stopped: start (t) runs it again"
        self.node_stopped = True
        network = self.network
        threading.Thread(target=network.stop, name="network-stop", daemon=True).start()
        return True, "stopping the node: the current step ends, the workers close"

    def _start_node(self) -> tuple[bool, str]:
        if not self.node_stopped:
            return False, "the node is already running"
        if self._fresh_network is None:
            return False, "this host cannot start its network again"
        self.node_stopped = False
        self.network = self._fresh_network()
        self.started.clear()
        threading.Thread(target=self._start_network, name="network-start", daemon=True).start()
        return True, "starting the node: a fresh embedded chain, the same miners' accounts"

    def _set_payout(self, address: str) -> tuple[bool, str]:
        if not self.network.miners:
            return False, "the network is still starting: the payout applies at registration"
        return set_payout_for(self.network.miners, address)
