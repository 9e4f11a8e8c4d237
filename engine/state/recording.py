"""Record the event stream to a JSON-lines file and replay it, optionally at its original pace.

The dashboard's snapshot tests replay a recording of a real run, so a screen can be rendered from
real data deterministically; `attach` and bug reports use the same files. The first line is a
header (`{"format": "cortensor-events", "v": ...}`); each further line is one event's `to_json()`.
A line cut short by a crash, or one that is not an event, is skipped on replay, not fatal.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from engine.state.events import SCHEMA_VERSION, Event, EventBus, Subscription, event_from_dict

FORMAT = "cortensor-events"


class Recorder:
    """Appends events to a JSON-lines file; `attach(bus)` records a bus on a background thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: IO[str] = path.open("a", encoding="utf-8")
        if self._file.tell() == 0:
            header = {"format": FORMAT, "v": SCHEMA_VERSION, "created": time.time()}
            self._file.write(json.dumps(header) + "\n")
            self._file.flush()
        elif not _ends_with_newline(path):
            # A crash cut the last line short: start on a fresh line so new events stay readable.
            self._file.write("\n")
        self._sub: Subscription | None = None
        self._thread: threading.Thread | None = None

    def write(self, event: Event) -> None:
        # One flush per line: a crash loses at most the line being written.
        with self._lock:
            self._file.write(event.to_json() + "\n")
            self._file.flush()

    def attach(self, bus: EventBus, *, maxsize: int = 10_000) -> None:
        if self._sub is not None:
            raise RuntimeError("this recorder already records a bus")
        self._sub = bus.subscribe(maxsize=maxsize, name=f"recorder:{self.path.name}")
        self._thread = threading.Thread(target=self._run, name="event-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._sub is not None
        for event in self._sub:
            self.write(event)

    def close(self) -> None:
        """Stop recording, write out what is queued (in order), and close the file."""
        if self._sub is not None:
            # A closed subscription still hands out what it holds, then ends the thread's loop.
            self._sub.close()
            if self._thread is not None:
                self._thread.join(timeout=10)
        with self._lock:
            self._file.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) == b"\n"


def read_events(path: Path) -> Iterator[Event]:
    """Every event in a recording, in file order, skipping the header and unreadable lines."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and data.get("format") != FORMAT:
                yield event_from_dict(data)


def _delays(path: Path, speed: float | None) -> Iterator[tuple[float, Event]]:
    """Each event with how long to wait before it: the recorded gap divided by `speed`."""
    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive (1.0 is the original pace)")
    previous: float | None = None
    for event in read_events(path):
        delay = 0.0
        if speed is not None and previous is not None and event.ts > 0:
            delay = max(0.0, event.ts - previous) / speed
        if event.ts > 0:
            previous = event.ts
        yield delay, event


def replay(
    path: Path,
    *,
    speed: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Event]:
    """Yield a recording's events; `speed=None` as fast as possible, 1.0 the original pace."""
    for delay, event in _delays(path, speed):
        if delay:
            sleep(delay)
        yield event


async def areplay(path: Path, *, speed: float | None = None) -> AsyncIterator[Event]:
    """`replay` for an asyncio consumer (a Textual app), waiting with `asyncio.sleep`."""
    for delay, event in _delays(path, speed):
        if delay:
            await asyncio.sleep(delay)
        yield event
