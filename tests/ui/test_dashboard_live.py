"""The dashboard against the real engine: in-process chain, an oracle, two llama.cpp miners."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from textual.widgets import DataTable, Static

from cortensor_desktop.hosting.dashboard_host import NetworkHost
from cortensor_desktop.tui.app import DashboardApp, NodeInfo, create_app
from engine.host.embedded_network import EmbeddedNetwork
from engine.state.events import EventBus
from tests.ui.conftest import SIZE, sync

pytestmark = [pytest.mark.llama, pytest.mark.chain, pytest.mark.slow]


async def _until(app: DashboardApp, done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.pump()
        if done():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"not seen within {timeout_s} s; log: {app.summary.events_seen} events")


def _rows(app: DashboardApp, widget_id: str) -> list[list[str]]:
    table = app.query_one(f"#{widget_id}", DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def _alerts(app: DashboardApp) -> str:
    return str(app.query_one("#alerts", Static).render())


@pytest.mark.timeout(300)
@sync
async def test_live_network_task_scores_points_and_pause(
    make_network: Callable[..., EmbeddedNetwork],
) -> None:
    bus = EventBus(history=5000)
    network = make_network(miners=2, bus=bus)
    host = NetworkHost(network)
    host.start(network=False)  # the fixture started it; the host serves the commands
    app = create_app(bus, host.commands, NodeInfo(miners=2), refresh_s=60)
    async with app.run_test(size=SIZE) as pilot:
        # A task appears, stage by stage, with its transaction.
        await _until(app, lambda: any(r[2] == "oracle" for r in _rows(app, "tasks")), 120)
        # Its validation scores show, judged against the thresholds, and points are counted.
        await _until(app, lambda: len(_rows(app, "poi")) >= 2, 180)
        poi = _rows(app, "poi")
        assert all(row[5] == "PASS" for row in poi), poi
        assert all("/" in row[2] and float(row[2].split("/")[0]) >= 0.8 for row in poi)
        await _until(app, lambda: app.summary.total_points > 0, 60)
        points = str(app.query_one("#wallet", Static).render())
        assert f"points   {app.summary.total_points}" in points
        miners = [r for r in _rows(app, "nodes") if r[1] == "miner"]
        assert len(miners) == 2 and any(r[5] not in {"-", "0"} for r in miners)

        # p goes to the host as a Pause command; the real miners pause and the table says so.
        await pilot.press("p")
        await _until(app, lambda: app.summary.paused, 10)
        assert all(network_miner.paused for network_miner in network.miners)
        assert all("paused (user)" in r[2] for r in _rows(app, "nodes") if r[1] == "miner")
        await pilot.press("p")
        await _until(app, lambda: not app.summary.paused, 10)
        assert not any(m.paused for m in network.miners)

        # b goes to the real miners: a benchmark between tasks, its figures on the dashboard.
        await pilot.press("b")
        await _until(app, lambda: app.summary.benchmark is not None, 120)
        assert app.summary.benchmark is not None and app.summary.benchmark.gen_tokens_per_s > 0
        await pilot.press("q")
    assert app.return_code == 0
    host.stop()
