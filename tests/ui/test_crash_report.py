"""A crash in the dashboard prints its traceback without local variables: no passphrase shown.

Textual's own crash report renders every frame's locals to the terminal, outside the log's
redaction; a wizard or wallet frame holding a passphrase would print it in full.
"""

from __future__ import annotations

import pytest

from cortensor_desktop.tui.app import DashboardApp
from engine.state.events import EventBus
from tests.ui.conftest import SIZE, sync

SECRET = "correct horse battery staple"


def _unlock_and_fail() -> None:
    passphrase = SECRET  # a local, as in a frame that unlocks the wallet
    raise RuntimeError(f"failed after reading {len(passphrase)} characters")


def test_a_crash_report_shows_no_locals(capfd: pytest.CaptureFixture[str]) -> None:
    @sync
    async def crash() -> None:
        app = DashboardApp(EventBus())
        with pytest.raises(RuntimeError, match="failed after reading"):
            async with app.run_test(size=SIZE) as pilot:
                app.call_later(_unlock_and_fail)
                await pilot.pause(0.2)

    crash()
    report = capfd.readouterr().err
    assert "failed after reading" in report  # the traceback is printed
    assert SECRET not in report
