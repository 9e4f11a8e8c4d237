"""SVG snapshots of each screen, rendered from the recorded real run at a fixed size.

Volatile figures are normalised: the hardware sampler is fixed and the clock stops at the last
recorded event (uptimes), so the screen is the same on every machine. To accept a change on
purpose: `CORTENSOR_UPDATE_SNAPSHOTS=1 pytest tests/ui/test_snapshots.py`, then review the SVGs
(open them in a browser) and commit them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chain.wallet import DEVNET_SCRYPT_N, import_private_key
from cortensor_desktop.config import default_config_text
from cortensor_desktop.tui.backends.models import ModelsBackend
from cortensor_desktop.tui.backends.settings import SettingsBackend
from cortensor_desktop.tui.backends.wallet import WalletBackend
from engine.models.store import ModelStore
from engine.state.events import Event
from tests.ui.conftest import (
    SIZE,
    laptop_model_rows,
    publish_all,
    replay_app,
    sample_settings,
    sync,
)

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("CORTENSOR_UPDATE_SNAPSHOTS") == "1"


def _compare(name: str, svg: str, tmp_path: Path) -> None:
    expected = SNAPSHOTS / f"{name}.svg"
    if UPDATE or not expected.exists():
        if not UPDATE:
            pytest.fail(f"no snapshot {expected.name}: run with CORTENSOR_UPDATE_SNAPSHOTS=1")
        expected.write_text(svg, encoding="utf-8")
        return
    if expected.read_text(encoding="utf-8") != svg:
        actual = tmp_path / f"{name}.actual.svg"
        actual.write_text(svg, encoding="utf-8")
        pytest.fail(f"{name} differs from {expected}; this run's screen is {actual}")


@sync
async def test_dashboard_snapshot(recorded: list[Event], tmp_path: Path) -> None:
    app, bus = replay_app(recorded)
    async with app.run_test(size=SIZE) as pilot:
        publish_all(bus, recorded)
        app.pump()
        await pilot.pause()
        svg = app.export_screenshot(title="dashboard")
    assert "PoI" in svg and "PASS" in svg
    _compare("dashboard", svg, tmp_path)


@sync
async def test_help_snapshot(recorded: list[Event], tmp_path: Path) -> None:
    app, bus = replay_app(recorded)
    async with app.run_test(size=SIZE) as pilot:
        publish_all(bus, recorded)
        app.pump()
        await pilot.press("question_mark")
        await pilot.pause()
        svg = app.export_screenshot(title="help")
    _compare("help", svg, tmp_path)


@sync
async def test_empty_dashboard_snapshot(recorded: list[Event], tmp_path: Path) -> None:
    """Before the engine says anything: panels say so instead of showing made-up figures."""
    app, _bus = replay_app(recorded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        svg = app.export_screenshot(title="dashboard before any event")
    _compare("dashboard_empty", svg, tmp_path)


@sync
async def test_models_snapshot(recorded: list[Event], tmp_path: Path) -> None:
    app, _bus = replay_app(recorded)
    # The recorded laptop's rows; the store behind i and d is an empty folder (not drawn).
    app.models = ModelsBackend(laptop_model_rows, ModelStore(tmp_path / "models"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        await pilot.pause()
        svg = app.export_screenshot(title="models")
    _compare("models", svg, tmp_path)


@sync
async def test_wallet_snapshot(
    recorded: list[Event], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, bus = replay_app(recorded)
    app.wallet = _wallet_home(tmp_path, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        publish_all(bus, recorded)
        app.pump()
        await pilot.press("e")
        await pilot.pause()
        svg = app.export_screenshot(title="wallet")
    _compare("wallet", svg, tmp_path)


@sync
async def test_settings_snapshot(recorded: list[Event], tmp_path: Path) -> None:
    app, _bus = replay_app(recorded)
    app.settings = sample_settings
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await pilot.pause()
        svg = app.export_screenshot(title="settings")
    _compare("settings", svg, tmp_path)


def _wallet_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WalletBackend:
    """A wallet from a fixed key, a payout in config, under a home shown as ~ (deterministic)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    import_private_key(tmp_path / "keystore", "0x" + "4c" * 32, "pass", DEVNET_SCRYPT_N)
    config = tmp_path / "config.toml"
    config.write_text('[wallet]\npayout = "0x' + "5C" * 20 + '"\n', encoding="utf-8")
    return WalletBackend(tmp_path / "keystore", config, tmp_path, environ={})


@sync
async def test_settings_edit_snapshot(
    recorded: list[Event], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Editing a key: the dialog with the config's one-line refusal of a bad value."""
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "config.toml"
    config.write_text(default_config_text(), encoding="utf-8")
    app, _bus = replay_app(recorded)
    app.settings = SettingsBackend(config, tmp_path / "networks", environ={})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s", "down", "down", "down", "enter")
        await pilot.press("backspace", *"-1", "enter")
        await pilot.pause()
        svg = app.export_screenshot(title="settings: edit")
    assert "expected&#160;at&#160;least&#160;256,&#160;got&#160;-1" in svg
    _compare("settings_edit", svg, tmp_path)


@sync
async def test_withdraw_confirmation_snapshot(recorded: list[Event], tmp_path: Path) -> None:
    app, bus = replay_app(recorded)
    async with app.run_test(size=SIZE) as pilot:
        publish_all(bus, recorded)
        app.pump()
        await pilot.press("w")
        await pilot.pause()
        svg = app.export_screenshot(title="withdraw")
    assert "Withdraw&#160;everything&#160;withdrawable" in svg
    _compare("withdraw_confirm", svg, tmp_path)
