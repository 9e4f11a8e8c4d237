"""Progress bars for the CLI: downloads, checks and benchmarks, drawn with rich on stderr.

The engine only calls back (`engine.models.store.PullProgress`); drawing is the CLI's job, so the
headless layers stay free of rich. Bars appear only when stderr is a terminal and the command
was not asked for `--json`: a pipe or a JSON document never gets control characters, and stdout
never gets a bar at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from engine.models.store import PullProgress

PHASE_WORDS = {
    "download": "downloading",
    "copy": "copying",
    "verify": "checking sha256",
    "convert": "converting",
    "link": "linking",
    "done": "done",
}


def _console(stream: TextIO | None, force_terminal: bool | None) -> Any:
    from rich.console import Console

    if stream is None:
        return Console(stderr=True, force_terminal=force_terminal)
    return Console(file=stream, force_terminal=force_terminal)


class TransferProgress:
    """A byte progress bar per model with speed and time left; a no-op when not enabled.

    Use as a context manager (or call `close()`); pass the instance as the store's callback.
    """

    def __init__(
        self,
        *,
        json_output: bool = False,
        stream: TextIO | None = None,
        force_terminal: bool | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._console = _console(stream, force_terminal)
        self._clock = clock
        self.enabled = not json_output and bool(self._console.is_terminal)
        self._progress: Any = None
        self._tasks: dict[tuple[str, str], Any] = {}

    def _start(self) -> Any:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self._console,
            transient=False,
            get_time=self._clock,
        )
        self._progress.start()
        return self._progress

    def __call__(self, event: PullProgress) -> None:
        if not self.enabled:
            return
        progress = self._progress or self._start()
        if event.phase == "done":
            for (model_id, _), task in self._tasks.items():
                if model_id == event.model_id:
                    progress.update(task, completed=event.done_bytes, total=event.total_bytes)
            return
        key = (event.model_id, event.phase)
        task = self._tasks.get(key)
        description = f"{event.model_id} {PHASE_WORDS.get(event.phase, event.phase)}"
        if task is None:
            task = progress.add_task(description, total=event.total_bytes)
            self._tasks[key] = task
        progress.update(task, completed=event.done_bytes, total=event.total_bytes)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> TransferProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def steps(
    description: str,
    total: int,
    *,
    json_output: bool = False,
    stream: TextIO | None = None,
    force_terminal: bool | None = None,
) -> Iterator[Any]:
    """A counted progress bar (elapsed and time left) for work in steps, such as benchmark runs;
    yields `advance()`, which does nothing when bars are off."""
    console = _console(stream, force_terminal)
    if json_output or not console.is_terminal:
        yield lambda: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)
