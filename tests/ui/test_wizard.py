"""The first-run wizard: hardware profile, recommendation with reasons, accept starts the node."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from cortensor_desktop.tui.app import WizardScreen, create_app
from engine.commands import CommandQueue
from engine.events import Event, EventBus
from tests.ui.conftest import INFO, SIZE, fixed_sampler, laptop_wizard, sync
from tests.ui.test_snapshots import _compare


def _wizard_app(started: list[bool], queue: CommandQueue | None = None):  # type: ignore[no-untyped-def]
    return create_app(
        EventBus(),
        queue,
        INFO,
        sampler=fixed_sampler,
        clock=lambda: 0.0,
        refresh_s=60,
        wizard=laptop_wizard(),
        on_accept=lambda: started.append(True),
    )


def _body(app) -> str:  # type: ignore[no-untyped-def]
    return str(app.screen.query_one("#wizard-body", Static).render())


@sync
async def test_wizard_shows_hardware_then_recommendation_and_enter_starts(
    recorded: list[Event],
) -> None:
    started: list[bool] = []
    queue = CommandQueue()
    app = _wizard_app(started, queue)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, WizardScreen)
        assert "Hardware" in _body(app) and "GiB" in _body(app)
        await pilot.press("p", "m")  # node keys do nothing before the wizard is accepted
        assert isinstance(app.screen, WizardScreen) and len(queue) == 0
        await pilot.press("tab")
        body = _body(app)
        assert "Recommendation" in body and "Reasons" in body and "tier" in body
        assert not started
        await pilot.press("enter")
        await pilot.pause()
        assert started == [True]
        assert not isinstance(app.screen, WizardScreen)
        assert app.query_one("#poi")  # the dashboard is there
        await pilot.press("q")
    assert app.return_code == 0


@sync
async def test_q_quits_from_the_wizard_without_starting(recorded: list[Event]) -> None:
    started: list[bool] = []
    app = _wizard_app(started)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("q")
    assert app.return_code == 0
    assert started == []


@sync
async def test_wizard_snapshot(recorded: list[Event], tmp_path: Path) -> None:
    app = _wizard_app([])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        _compare("wizard_hardware", app.export_screenshot(title="wizard: hardware"), tmp_path)
        await pilot.press("tab")
        await pilot.pause()
        _compare("wizard_recommendation", app.export_screenshot(title="wizard: fit"), tmp_path)
