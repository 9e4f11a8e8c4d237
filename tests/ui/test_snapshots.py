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

from engine.events import Event
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
    app.models = laptop_model_rows
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        await pilot.pause()
        svg = app.export_screenshot(title="models")
    _compare("models", svg, tmp_path)


@sync
async def test_wallet_snapshot(recorded: list[Event], tmp_path: Path) -> None:
    app, bus = replay_app(recorded)
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
