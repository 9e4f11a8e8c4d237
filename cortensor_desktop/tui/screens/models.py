"""The Models screen: the catalogue, what fits here and why; install and remove with progress.

Installing runs on a worker thread (a download or a conversion takes minutes); its progress
events come back to the UI through `call_from_thread`, at most ten a second, so the screen stays
live and `q` still quits. Errors show as one line under the table.
"""

from __future__ import annotations

import time
from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, ProgressBar, Static

from cortensor_desktop.tui.backends.models import ModelRow, ModelsBackend, progress_text
from cortensor_desktop.tui.screens.common import ConfirmScreen
from engine.models.store import PullProgress

PROGRESS_EVERY_S = 0.1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class ModelsScreen(Screen[None]):
    """The catalogue: installed or not, fits this machine or not, and why (profiler.fit)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,m", "app.pop_screen", "dashboard"),
        Binding("i", "install", "install"),
        Binding("d,delete", "remove", "remove"),
    ]

    def __init__(self, backend: ModelsBackend | None, error: str | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.error = error
        self.rows: list[ModelRow] | None = None
        self.busy: str | None = None  # the model being installed
        self._last_progress = 0.0

    def compose(self) -> ComposeResult:
        yield Static("Models · escape returns to the dashboard", id="title")
        yield DataTable(id="models", cursor_type="row")
        yield Static(id="model-detail")
        yield ProgressBar(id="model-progress", show_eta=False)
        yield Static(id="models-note")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#models", DataTable)
        table.border_title = "Catalogue"
        table.add_columns("model", "kind", "params", "installed", "fits", "how, or why not")
        self.query_one("#model-progress", ProgressBar).display = False
        if self.backend is None:
            self._note(self.error or "no hardware profile: run `cortensor-desktop profile`")
            return
        try:
            self.rows = self.backend.rows()
        except Exception as exc:  # a probe or catalogue problem is shown, not raised
            self._note(f"could not list the models: {_one_line(exc)}")
            return
        self._fill()
        table.focus()
        how = (
            "i installs the highlighted model, d removes it."
            if self.backend.store is not None
            else "Install and remove: `cortensor-desktop models pull ID` and `models rm ID`."
        )
        self._note(f"* the default chat model. {how}")

    def _fill(self) -> None:
        table = self.query_one("#models", DataTable)
        cursor = table.cursor_row
        table.clear()
        for row in self.rows or []:
            name = row.model_id + (" *" if row.default else "")
            fits = "yes" if row.fits else "NO"
            table.add_row(name, row.kind, row.parameters, row.installed, fits, row.why)
        if self.rows:
            table.move_cursor(row=min(max(cursor, 0), len(self.rows) - 1))

    def _note(self, text: str) -> None:
        self.query_one("#models-note", Static).update(text)

    def _error(self, text: str) -> None:
        self._note(f"[b red]{escape(text)}[/]")

    def highlighted(self) -> ModelRow | None:
        if not self.rows:
            return None
        index = self.query_one("#models", DataTable).cursor_row
        return self.rows[index] if 0 <= index < len(self.rows) else None

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        if self.rows is None or not 0 <= message.cursor_row < len(self.rows):
            return
        row = self.rows[message.cursor_row]
        text = f"[b]{row.model_id}[/b] fits this machine: {row.why}" if row.fits else row.why
        self.query_one("#model-detail", Static).update(text)

    # -- install ---------------------------------------------------------------------------
    def action_install(self) -> None:
        row = self.highlighted()
        if self.backend is None or row is None:
            return
        if self.busy is not None:
            self._error(f"{self.busy} is still installing; one at a time")
            return
        if row.installed != "-":
            self._note(f"{row.model_id} is already installed ({row.installed})")
            return
        self.busy = row.model_id
        bar = self.query_one("#model-progress", ProgressBar)
        bar.update(total=None, progress=0)
        bar.display = True
        self._note(f"{row.model_id}: installing...")
        self.run_worker(lambda: self._install(row.model_id), thread=True, exclusive=True)

    def _install(self, model_id: str) -> None:
        """On the worker thread: the store does the work, the UI hears about it."""
        assert self.backend is not None
        try:
            self.backend.install(model_id, self._progress_from_thread)
            rows = self.backend.rows()
        except Exception as exc:  # every failure is one line on screen, never a traceback
            self.app.call_from_thread(self._install_failed, model_id, _one_line(exc))
            return
        self.app.call_from_thread(self._installed, model_id, rows)

    def _progress_from_thread(self, event: PullProgress) -> None:
        now = time.monotonic()
        if event.phase != "done" and now - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = now
        self.app.call_from_thread(self.show_progress, event)

    def show_progress(self, event: PullProgress) -> None:
        if not self.is_attached:  # the screen was closed; the install goes on without it
            return
        fraction, text = progress_text(event)
        bar = self.query_one("#model-progress", ProgressBar)
        if fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=100, progress=round(fraction * 100, 1))
        self._note(text)

    def _installed(self, model_id: str, rows: list[ModelRow]) -> None:
        self.busy = None
        if not self.is_attached:
            return
        self.rows = rows
        self._fill()
        self.query_one("#model-progress", ProgressBar).update(total=100, progress=100)
        where = next((r.installed for r in rows if r.model_id == model_id), "-")
        self._note(f"{model_id}: installed ({where})")

    def _install_failed(self, model_id: str, message: str) -> None:
        self.busy = None
        if not self.is_attached:
            self.app.notify(f"{model_id} not installed: {message}", severity="error")
            return
        self.query_one("#model-progress", ProgressBar).display = False
        self._error(f"{model_id} not installed: {message}")

    # -- remove ----------------------------------------------------------------------------
    def action_remove(self) -> None:
        row = self.highlighted()
        if self.backend is None or row is None:
            return
        if self.busy == row.model_id:
            self._error(f"{row.model_id} is installing; wait for it to finish")
            return
        refused = self.backend.removal_refused(row.model_id)
        if refused is not None:
            self._error(refused)
            return
        question = f"Remove {row.model_id} ({row.installed}) from the models folder?"
        self.app.push_screen(ConfirmScreen(question), lambda yes: self._remove(row.model_id, yes))

    def _remove(self, model_id: str, yes: bool | None) -> None:
        if not yes or self.backend is None:
            self._note("nothing removed")
            return
        try:
            removed = self.backend.remove(model_id)
            self.rows = self.backend.rows()
        except Exception as exc:
            self._error(f"{model_id} not removed: {_one_line(exc)}")
            return
        self._fill()
        self.query_one("#model-progress", ProgressBar).display = False
        self._note(f"{model_id}: removed {', '.join(p.name for p in removed) or 'nothing'}")
