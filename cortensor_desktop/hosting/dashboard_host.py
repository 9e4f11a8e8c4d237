"""The embedded network hosted for the dashboard: started on a thread, driven by typed commands.

A view (the dashboard) never touches the engine objects: it reads the bus and puts commands on
the `CommandQueue`. This host takes them off the queue on its own thread and hands them to the
node host headless mode uses too (`engine.host.node_host.NodeHost`: pause reasons, benchmarks,
withdrawals, payout, config reload, the polite-mining policies, worker-crash and oracle low-gas
alerts, hardware readings). What is specific to the dashboard stays here: Stop stops the network
while the view stays, Start builds a fresh embedded network, and commands that need miners are
refused while the network is still starting. No textual here: a status API can host the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from engine.host.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings
from engine.host.node_host import HostSettings, NodeHost
from engine.host.policies import PolicySettings, Readings
from engine.host.sensors import hardware_reading
from engine.state.commands import (
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
from engine.state.events import CommandHandled, EventBus, HardwareSample, LogLine

log = logging.getLogger(__name__)

# What a command that needs the miners is told while the network is still starting.
STILL_STARTING = {
    Pause: "the network is still starting",
    Resume: "the network is still starting",
    Withdraw: "the network is still starting; nothing was sent",
    SetPayout: "the network is still starting: the payout applies at registration",
}


class NetworkHost:
    """Hosts one `EmbeddedNetwork`; `embedded(...)` builds one, tests pass one already started."""

    def __init__(
        self,
        network: EmbeddedNetwork,
        commands: CommandQueue | None = None,
        fresh_network: Callable[[], EmbeddedNetwork] | None = None,
        settings: HostSettings | None = None,
        hardware: Callable[[], HardwareSample] | None = None,
        readings: Callable[[], Readings] | None = None,
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
        # Set by the CLI: served in front of each started network (the router); returns what
        # stops it, or None when it did not start.
        self.front: Callable[[EmbeddedNetwork], Callable[[], None] | None] | None = None
        self._stop_front: Callable[[], None] | None = None
        self.settings = settings or HostSettings()
        self._hardware = hardware or hardware_reading()
        self._readings = readings  # None: this machine's sensors (engine.host.sensors)
        self.node_host = self._host_for(network)

    @classmethod
    def embedded(
        cls,
        db: Database,
        models_dir: Path,
        bus: EventBus,
        settings: EmbeddedNetworkSettings | None = None,
        host: HostSettings | None = None,
    ) -> NetworkHost:
        """A host for a new embedded network; its start-up progress goes to the bus as log lines."""

        def progress(message: str) -> None:
            log.info("%s", message)
            bus.publish(LogLine(level="info", logger="embedded", message=message))

        def fresh() -> EmbeddedNetwork:
            return EmbeddedNetwork(db, models_dir, bus, settings, progress=progress)

        return cls(fresh(), fresh_network=fresh, settings=host)

    def _host_for(self, network: EmbeddedNetwork) -> NodeHost:
        """A node host per network: a fresh network starts with fresh pause reasons and watches."""
        return NodeHost(
            self.bus,
            network,
            self.settings,
            reload=self._reload,
            readings=self._readings,
            hardware=self._hardware,
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, network: bool = True) -> None:
        """Start the command loop and (unless the caller did) the network; returns at once."""
        targets: list[tuple[str, Callable[[], None]]] = [("commands", self._serve)]
        if network:
            targets.append(("network-start", self._start_network))
        else:
            self.started.set()
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
        if self.front is not None:
            self._stop_front = self.front(self.network)

    def _end_front(self) -> None:
        stop, self._stop_front = self._stop_front, None
        if stop is not None:
            stop()

    def stop(self, timeout_s: float = 0.3) -> None:
        """Stop within `timeout_s`: workers are processes and are killed; loop threads are daemons.

        The journal keeps what a killed request was doing, so the next start resumes it.
        """
        self._stop.set()
        self._end_front()
        self.network.abort()
        stopper = threading.Thread(target=self.network.stop, kwargs={"timeout_s": 0.1}, daemon=True)
        stopper.start()
        stopper.join(timeout=timeout_s)

    # -- commands, policies, alerts ----------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            command = self.commands.get(timeout=0.25)
            if command is not None:
                self.handle(command)
            try:
                self.node_host.tick(node_up=self.started.is_set() and not self.node_stopped)
            except Exception:  # a failed reading must not end the dashboard's command loop
                log.exception("the node host's tick failed")

    def handle(self, command: Command) -> CommandHandled:
        own = self._own(command)
        if own is None:
            return self.node_host.handle(command)
        accepted, message = own
        return self.bus.publish(
            CommandHandled(
                command_id=command.id, command=command.type, accepted=accepted, message=message
            )
        )

    def _own(self, command: Command) -> tuple[bool, str] | None:
        """The answer to what only this host decides; None hands the command to the node host."""
        if isinstance(command, Stop):
            return self._stop_node()
        if isinstance(command, Start):
            return self._start_node()
        if isinstance(command, ReloadConfig) and self.reload is None:
            return False, "this host cannot reload its config: restart to apply the changes"
        starting = STILL_STARTING.get(type(command))
        if starting is not None and not self.network.miners:
            return False, starting
        return None

    def _reload(self) -> tuple[bool, str]:
        if self.reload is None:
            return False, "this host cannot reload its config: restart to apply the changes"
        return self.reload()

    def apply_policy(self, settings: PolicySettings, interval_s: float) -> None:
        """A config reload's `[policy]`: for this network and the ones Start builds later."""
        self.settings = replace(self.settings, policy=settings, policy_interval_s=interval_s)
        self.node_host.apply_policy(settings, interval_s)

    def _stop_node(self) -> tuple[bool, str]:
        """The node stops (loops end, workers close); the view and this command loop stay."""
        if self.node_stopped:
            return False, "the node is already stopped: start (t) runs it again"
        self.node_stopped = True
        self._end_front()
        network = self.network
        threading.Thread(target=network.stop, name="network-stop", daemon=True).start()
        return True, "stopping the node: the current step ends, the workers close"

    def _start_node(self) -> tuple[bool, str]:
        if not self.node_stopped:
            return False, "the node is already running"
        if self._fresh_network is None:
            return False, "this host cannot start its network again"
        self.started.clear()
        self.network = self._fresh_network()
        self.node_host = self._host_for(self.network)
        self.node_stopped = False
        threading.Thread(target=self._start_network, name="network-start", daemon=True).start()
        return True, "starting the node: a fresh embedded chain, the same miners' accounts"
