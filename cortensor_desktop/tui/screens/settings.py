"""The Settings screen: the network profile and every config key; enter edits the highlighted one.

An edit goes through the config module's validators (the same `set_config_value` behind
`config set`) and is written atomically; a refused value is one line under the field and nothing
is written. After a save the screen says what the running node applies at once and what needs a
restart (`reload.config_changes`); with an engine to command, it sends `ReloadConfig` and shows
the node's own answer.
"""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from cortensor_desktop.config import ConfigError, env_name
from cortensor_desktop.hosting.reload import config_changes
from cortensor_desktop.tui.backends.settings import RPC_KEY, Saved, SettingsBackend, SettingsData
from cortensor_desktop.tui.link import node_link
from cortensor_desktop.tui.screens.common import AskScreen
from engine.state.commands import ReloadConfig


class SettingsScreen(Screen[None]):
    """The config in effect and the network profile; enter edits a key (with a backend)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,s", "app.pop_screen", "dashboard"),
        Binding("enter", "edit", "edit"),
    ]

    def __init__(
        self,
        data: SettingsData | None,
        error: str | None = None,
        backend: SettingsBackend | None = None,
    ) -> None:
        super().__init__()
        self.data = data
        self.error = error
        self.backend = backend
        self.reload_id: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("Settings · escape returns to the dashboard", id="title")
        yield Static(id="settings-network", classes="panel")
        yield DataTable(id="settings-table", cursor_type="row")
        yield Static(id="setting-help")
        yield Static(id="settings-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#settings-network").border_title = "Network"
        table = self.query_one("#settings-table", DataTable)
        table.border_title = "Config in effect"
        table.add_columns("key", "value", "")
        self._fill()
        if self.data is not None:
            table.focus()
        how = "enter edits the highlighted key" if self.backend else "read-only here"
        self._note(f"{how} · escape returns to the dashboard")

    def _fill(self) -> None:
        table = self.query_one("#settings-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        if self.data is None:
            self.query_one("#settings-network", Static).update(self.error or "no config loaded")
            return
        self.query_one("#settings-network", Static).update(self.data.network)
        for row in self.data.rows:
            table.add_row(row.key, row.value, "" if row.default else "changed")
        if self.data.rows:
            table.move_cursor(row=min(max(cursor, 0), len(self.data.rows) - 1))

    def _note(self, text: str, error: bool = False) -> None:
        shown = f"[b red]{escape(text)}[/]" if error else escape(text)
        self.query_one("#settings-note", Static).update(shown)

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        if self.data is None or not 0 <= message.cursor_row < len(self.data.rows):
            return
        row = self.data.rows[message.cursor_row]
        if row.key == RPC_KEY:
            where = "Edit it here (enter); the node uses it after a restart."
        else:
            env = env_name(row.key)
            where = f"Edit it here (enter) or in config.toml; {env} overrides both."
        self.query_one("#setting-help", Static).update(
            f"[b]{row.key}[/b]: {escape(row.help)}\n{escape(where)}"
        )

    # -- editing ---------------------------------------------------------------------------
    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        message.stop()
        self.action_edit()  # the table takes enter first and says so with RowSelected

    def action_edit(self) -> None:
        if self.backend is None or self.data is None or not self.data.rows:
            self._note("read-only: no config file to edit here", error=True)
            return
        index = self.query_one("#settings-table", DataTable).cursor_row
        if not 0 <= index < len(self.data.rows):
            return
        row = self.data.rows[index]
        backend = self.backend
        saved: list[Saved] = []

        def check(text: str) -> str | None:
            try:
                saved.append(backend.save(row.key, text))
            except ConfigError as exc:
                return str(exc)
            return None

        def done(answer: str | None) -> None:
            if answer is None or not saved:
                self._note(f"{row.key}: not changed")
                return
            self._saved(saved[-1])

        question = f"[b]{row.key}[/b]: {escape(row.help)}"
        self.app.push_screen(AskScreen(question, row.text, check=check), done)

    def _saved(self, saved: Saved) -> None:
        assert self.backend is not None
        try:
            self.data = self.backend.data()
        except ConfigError as exc:
            self.data, self.error = None, str(exc)
        self._fill()
        text = saved.describe()
        if saved.key == RPC_KEY:
            self._note(f"{text}; the node uses it after a restart")
            return
        changes = config_changes(saved.old, saved.new)
        if not changes.live and not changes.restart:
            self._note(f"{text}; the value was already in effect")
            return
        app = node_link(self.app)
        if app.commands is None:
            restart = ", ".join(changes.live + changes.restart)
            self._note(f"{text}; restart the node to apply {restart}")
            return
        command = ReloadConfig(source="tui")
        if app.send(command):
            self.reload_id = command.id
            self._note(f"{text}; asked the node to reload its config...")

    def summary_changed(self) -> None:
        """Called by the app after each batch of events: show the node's answer to the reload."""
        if self.reload_id is None:
            return
        app = node_link(self.app)
        answer = app.answers.get(self.reload_id)
        if answer is None:
            return
        self.reload_id = None
        verdict = "" if answer.accepted else "refused: "
        self._note(f"node: {verdict}{answer.message}", error=not answer.accepted)
