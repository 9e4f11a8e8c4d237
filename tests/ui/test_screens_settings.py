"""The Settings screen editing a real config file: saved through the config's validators,
refused with one line on bad input, and the running node asked to reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Static

from cortensor_desktop.config import ConfigError, default_config_text, load_config
from cortensor_desktop.tui.app import DashboardApp, create_app
from cortensor_desktop.tui.backends.settings import RPC_KEY, SettingsBackend
from cortensor_desktop.tui.screens.common import AskScreen
from cortensor_desktop.tui.screens.settings import SettingsScreen
from engine.state.commands import CommandQueue, ReloadConfig
from engine.state.events import CommandHandled, EventBus
from tests.ui.conftest import SIZE, hardware_bus, sync


def _home(tmp_path: Path) -> SettingsBackend:
    config = tmp_path / "config.toml"
    config.write_text(default_config_text(), encoding="utf-8")
    profiles = tmp_path / "networks"
    profiles.mkdir()
    (profiles / "testnet.toml").write_text(
        '# a test network\nchain_id = 31337\nrpc_urls = ["http://127.0.0.1:8545"]\n',
        encoding="utf-8",
    )
    return SettingsBackend(config, profiles, environ={})


def _app(
    backend: SettingsBackend, commands: CommandQueue | None = None
) -> tuple[DashboardApp, EventBus]:
    bus = hardware_bus()
    app = create_app(bus, commands, refresh_s=60, settings=backend)
    return app, bus


async def _select(app: DashboardApp, pilot: Any, key: str) -> None:
    screen = app.screen
    assert isinstance(screen, SettingsScreen) and screen.data is not None
    index = [r.key for r in screen.data.rows].index(key)
    table = screen.query_one("#settings-table", DataTable)
    step = "down" if index > table.cursor_row else "up"
    for _ in range(abs(index - table.cursor_row)):
        await pilot.press(step)
    assert table.cursor_row == index


async def _type(pilot: Any, app: DashboardApp, text: str) -> None:
    """Clear the dialog's field and type `text` key by key, as a person would."""
    field = app.screen.query_one("#dialog-input", Input)
    field.value = ""
    await pilot.press(*[{" ": "space", ".": "full_stop"}.get(c, c) for c in text])


def _row(app: DashboardApp, key: str) -> list[str]:
    table = app.screen.query_one("#settings-table", DataTable)
    for index in range(table.row_count):
        cells = [str(c) for c in table.get_row_at(index)]
        if cells[0] == key:
            return cells
    raise AssertionError(key)


def _note(app: DashboardApp) -> str:
    return str(app.screen.query_one("#settings-note", Static).render())


@sync
async def test_an_edit_is_saved_to_the_file_and_a_bad_value_is_refused(tmp_path: Path) -> None:
    backend = _home(tmp_path)
    before = backend.config_path.read_text(encoding="utf-8")
    app, _bus = _app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await _select(app, pilot, "fit.ctx")
        await pilot.press("enter")
        assert isinstance(app.screen, AskScreen)
        assert app.screen.query_one("#dialog-input", Input).value == "0"

        # A bad value: one line under the field, the dialog stays, nothing is written.
        await _type(pilot, app, "-5")
        await pilot.press("enter")
        assert isinstance(app.screen, AskScreen)
        error = str(app.screen.query_one("#dialog-error", Static).render())
        assert error == "key 'fit.ctx': expected at least 0, got -5"
        await _type(pilot, app, "lots")
        await pilot.press("enter")
        error = str(app.screen.query_one("#dialog-error", Static).render())
        assert "expected an integer, got 'lots'" in error
        assert backend.config_path.read_text(encoding="utf-8") == before

        # q in a text field is a letter, not quit.
        await _type(pilot, app, "q")
        assert app.is_running and app.screen.query_one("#dialog-input", Input).value == "q"

        await _type(pilot, app, "4096")
        await pilot.press("enter")
        assert isinstance(app.screen, SettingsScreen)
        assert _row(app, "fit.ctx")[1:] == ["4096", "changed"]
        assert "restart the node to apply fit.ctx" in _note(app)
    text = backend.config_path.read_text(encoding="utf-8")
    assert "ctx = 4096" in text and "# Override: context size" in text  # comments kept
    assert load_config(backend.config_path, {}).config.fit.ctx == 4096
    assert not list(tmp_path.glob(".config.toml.*"))  # no temporary file left behind


@sync
async def test_string_overrides_profile_and_rpc_urls(tmp_path: Path) -> None:
    backend = _home(tmp_path)
    app, _bus = _app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await _select(app, pilot, "fit.model")
        await pilot.press("enter")
        await _type(pilot, app, "llama-3.2-1b-instruct")
        await pilot.press("enter")
        assert _row(app, "fit.model")[1] == "'llama-3.2-1b-instruct'"

        # A profile that does not exist is refused; an existing one is saved.
        await _select(app, pilot, "network.profile")
        await pilot.press("enter")
        await _type(pilot, app, "nowhere")
        await pilot.press("enter")
        error = str(app.screen.query_one("#dialog-error", Static).render())
        assert "network profile 'nowhere' not found" in error
        await _type(pilot, app, "testnet")
        await pilot.press("enter")
        assert isinstance(app.screen, SettingsScreen)
        network = str(app.screen.query_one("#settings-network", Static).render())
        assert "testnet" in network and "http://127.0.0.1:8545" in network

        # The profile's RPC URLs are a row now, saved into the profile's own file.
        await _select(app, pilot, RPC_KEY)
        await pilot.press("enter")
        app.screen.query_one("#dialog-input", Input).value = "ftp://nope"
        await pilot.press("enter")
        assert "not an http(s) or ws(s) URL" in str(
            app.screen.query_one("#dialog-error", Static).render()
        )
        field = app.screen.query_one("#dialog-input", Input)
        field.value = "http://127.0.0.1:8545, http://127.0.0.1:8546"
        await pilot.press("enter")
        assert isinstance(app.screen, SettingsScreen)
    config = load_config(backend.config_path, {}).config
    assert config.fit.model == "llama-3.2-1b-instruct" and config.network.profile == "testnet"
    profile = (backend.profiles_dir / "testnet.toml").read_text(encoding="utf-8")
    assert 'rpc_urls = ["http://127.0.0.1:8545", "http://127.0.0.1:8546"]' in profile
    assert profile.startswith("# a test network")


@sync
async def test_with_a_node_the_save_sends_reload_and_shows_its_answer(tmp_path: Path) -> None:
    backend = _home(tmp_path)
    queue = CommandQueue()
    app, bus = _app(backend, queue)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await _select(app, pilot, "logging.level")
        await pilot.press("enter")
        await _type(pilot, app, "debug")
        await pilot.press("enter")
        (command,) = queue.drain()
        assert isinstance(command, ReloadConfig)
        assert "asked the node to reload" in _note(app)
        answer = "config reloaded; applied live: logging.level"
        bus.publish(
            CommandHandled(
                command_id=command.id, command="reload_config", accepted=True, message=answer
            )
        )
        app.pump()
        assert _note(app) == f"node: {answer}"
        await pilot.press("escape", "q")
    assert app.return_code == 0


def test_set_config_value_refuses_unknown_keys_and_keeps_the_file(tmp_path: Path) -> None:
    from cortensor_desktop.config import set_config_value

    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError, match=r"unknown key 'fit\.nope'"):
        set_config_value(path, "fit.nope", "1", {})
    assert not path.exists()
    loaded = set_config_value(path, "policy.active_hours", '["22:00-07:00"]', {})
    assert loaded.config.policy.active_hours == ["22:00-07:00"]
    with pytest.raises(ConfigError, match="policy"):  # the section's own cross-check
        set_config_value(path, "policy.active_hours", '["25:00-07:00"]', {})
    assert load_config(path, {}).config.policy.active_hours == ["22:00-07:00"]
