"""What a screen may ask of the dashboard app, as a protocol, so screens never import the app.

The app implements it; a screen reaches the node only through `send` (commands on the engine's
queue) and reads the node's answers, never the app's internals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from engine.state.commands import Command, CommandSink
from engine.state.events import CommandHandled


@runtime_checkable
class NodeLink(Protocol):
    """The dashboard's link to the node: commands out, answers in, the clock it shows."""

    commands: CommandSink | None
    answers: Mapping[str, CommandHandled]
    clock: Callable[[], float]

    def send(self, command: Command) -> bool:
        """Put a command on the engine's queue; False when it could not go."""
        ...


def node_link(app: object) -> NodeLink:
    """The app as a NodeLink; a screen mounted elsewhere is a programming error."""
    if not isinstance(app, NodeLink):
        raise TypeError(f"{type(app).__name__} does not link screens to a node")
    return app
