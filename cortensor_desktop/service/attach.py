"""`attach`: the dashboard on a node that runs elsewhere (a service, a headless `run`).

The node's local status API is the only door: its server-sent events feed a local event bus
(resuming with Last-Event-ID after a drop, so the view misses nothing the node still keeps), and
the dashboard's commands go back as POSTs with the bearer token from the node's data folder.
The dashboard cannot tell an attached node from one it runs itself: both are readers of an event
stream and senders of commands. Nothing here imports textual; the CLI does, in its own branch.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cortensor_desktop.service.errors import NodeNotRunningError
from cortensor_desktop.service.local_http import urlopen
from engine.state.commands import Command, CommandQueueFull
from engine.state.events import EventBus, event_from_json
from engine.state.wire import WireError

log = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
TOKEN_FILE_NAME = "api-token"  # beside api.json, as the status API writes it


class NodeUnreachableError(NodeNotRunningError):
    """No running node answers through this api.json (exit code 8, like `status`)."""


class CommandNotDelivered(CommandQueueFull):
    """The node refused or did not take the command; the dashboard shows the reason."""


@dataclass(frozen=True)
class NodeApi:
    url: str
    token: str | None
    pid: int | None

    @classmethod
    def from_api_file(cls, api_file: Path) -> NodeApi:
        try:
            info = json.loads(api_file.read_text(encoding="utf-8"))
            url = str(info["url"]).rstrip("/")
        except FileNotFoundError:
            raise NodeUnreachableError(
                f"no node is running for this home ({api_file} is absent): start one with "
                "`cortensor-desktop run --headless` or its service"
            ) from None
        except (OSError, ValueError, KeyError) as exc:
            raise NodeUnreachableError(f"{api_file} cannot be read: {exc}") from None
        # api.json is trusted for nothing but the port: `attach --home` may read another
        # user's home, whose api.json could name any file as the token and any URL to send
        # it to. The token is always the api-token beside it, sent only to loopback.
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname not in LOCAL_HOSTS:
            raise NodeUnreachableError(
                f"{api_file} names {url}; a node's status API is on http://127.0.0.1 only"
            )
        token_file = api_file.with_name(TOKEN_FILE_NAME)
        token = token_file.read_text(encoding="utf-8").strip() if token_file.is_file() else None
        return cls(url=url, token=token, pid=info.get("pid"))

    def summary(self, timeout_s: float = 3.0) -> dict[str, Any]:
        try:
            with urlopen(f"{self.url}/1/summary", timeout=timeout_s) as response:
                document: dict[str, Any] = json.loads(response.read())
        except (OSError, ValueError) as exc:
            raise NodeUnreachableError(f"the node at {self.url} does not answer ({exc})") from None
        return document


class RemoteCommands:
    """Stands where the engine's CommandQueue stands for a local node: `put` sends it now."""

    def __init__(self, api: NodeApi, timeout_s: float = 5.0) -> None:
        self.api = api
        self.timeout_s = timeout_s

    def put(self, command: Command) -> None:
        if self.api.token is None:
            raise CommandNotDelivered("no API token readable here: attach as the node's user")
        request = urllib.request.Request(
            f"{self.api.url}/1/commands",
            data=command.to_json().encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.api.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urlopen(request, timeout=self.timeout_s):
                return
        except urllib.error.HTTPError as exc:
            raise CommandNotDelivered(f"the node refused {command.type}: HTTP {exc.code}") from None
        except OSError as exc:
            raise CommandNotDelivered(f"the node did not take {command.type}: {exc}") from None


class EventFeed:
    """Copies the node's SSE stream into a local bus until stopped; reconnects where it left."""

    def __init__(self, api: NodeApi, bus: EventBus, retry_s: float = 1.0) -> None:
        self.api = api
        self.bus = bus
        self.retry_s = retry_s
        self.last_seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="attach-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except (OSError, ValueError) as exc:
                log.info("event stream from %s dropped (%s); reconnecting", self.api.url, exc)
            self._stop.wait(self.retry_s)

    def _follow(self) -> None:
        request = urllib.request.Request(
            f"{self.api.url}/1/events", headers={"Last-Event-ID": str(self.last_seq)}
        )
        with urlopen(request, timeout=30) as response:
            for data in _sse_data(response):
                if self._stop.is_set():
                    return
                try:
                    event = event_from_json(data)
                except WireError as exc:
                    log.debug("skipped an event this version cannot read: %s", exc)
                    continue
                self.last_seq = max(self.last_seq, event.seq)
                self.bus.publish(event, stamp=False)


def _sse_data(lines: Any) -> Iterator[str]:
    """The `data:` payload of each server-sent event (one JSON document each)."""
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif not line and data:
            yield "\n".join(data)
            data = []
