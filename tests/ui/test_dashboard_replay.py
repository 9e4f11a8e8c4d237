"""The dashboard fed by a recording of a real run: widgets, keys, commands, quitting."""

from __future__ import annotations

import os
import signal

from textual.app import ComposeResult
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Log, Sparkline, Static

from cortensor_desktop.tui.app import (
    HelpScreen,
    ModelsScreen,
    SettingsScreen,
    WalletScreen,
    create_app,
)
from engine.protocol import NodeRole
from engine.state.commands import Benchmark, CommandQueue, Pause, Resume, Start, Stop, Withdraw
from engine.state.events import (
    CommandHandled,
    EarningsUpdated,
    Event,
    EventBus,
    GpuSample,
    HardwareSample,
    LogLine,
    NodeState,
    NodeStateChanged,
    PauseReason,
)
from tests.ui.conftest import (
    SIZE,
    laptop_model_rows,
    publish_all,
    replay_app,
    sample_settings,
    sync,
)


def _rows(app, widget_id: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    table = app.query_one(f"#{widget_id}", DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def _text(app, widget_id: str) -> str:  # type: ignore[no-untyped-def]
    return str(app.query_one(f"#{widget_id}", Static).render())


@sync
async def test_replayed_run_fills_tasks_poi_nodes_and_log(recorded: list[Event]) -> None:
    app, bus = replay_app(recorded)
    async with app.run_test(size=SIZE) as pilot:
        assert _rows(app, "tasks") == []
        assert "no inference yet" in _text(app, "rate-label")
        publish_all(bus, recorded)
        assert app.pump() == len(recorded)
        await pilot.pause()

        tasks = _rows(app, "tasks")
        assert {row[0] for row in tasks} == {"1", "2"}
        oracle = [row for row in tasks if row[2] == "oracle"]
        assert oracle and all("end✓" in row[3] for row in oracle)
        assert any(row[2] == "cre+ans" and "pc✓" in row[3] for row in tasks)

        poi = _rows(app, "poi")
        assert len(poi) == 6 and all(row[5] == "PASS" for row in poi)
        assert all(row[2].endswith("/0.80") for row in poi)  # score against its threshold

        nodes = _rows(app, "nodes")
        miners = [row for row in nodes if row[1] == "miner"]
        assert len(miners) == 3 and all(int(row[5]) > 0 for row in miners)
        assert "6/6 passed" in _text(app, "wallet")
        assert "smollm2-135m-instruct" in _text(app, "settings")
        assert "CPU   42.0 %" in _text(app, "hardware")
        assert app.query_one("#rate", Sparkline).data
        assert "last" in _text(app, "rate-label")
        log_lines = app.query_one("#log", Log).lines
        assert any("validate" in line and "PASS" in line for line in log_lines)


@sync
async def test_points_change_as_the_stream_advances(recorded: list[Event]) -> None:
    first_points = next(i for i, e in enumerate(recorded) if e.type == "points")
    app, bus = replay_app(recorded)
    async with app.run_test(size=SIZE):
        publish_all(bus, recorded[: first_points + 1])
        app.pump()
        before = app.summary.total_points
        assert f"points   {before}" in _text(app, "wallet")
        publish_all(bus, recorded[first_points + 1 :])
        app.pump()
        after = app.summary.total_points
        assert after > before
        assert f"points   {after}" in _text(app, "wallet")


@sync
async def test_keys_send_typed_commands_and_the_answer_is_shown(recorded: list[Event]) -> None:
    queue = CommandQueue()
    app, bus = replay_app(recorded, queue)
    posted: list[str] = []
    async with app.run_test(
        size=SIZE, message_hook=lambda m: posted.append(type(m).__name__)
    ) as pilot:
        publish_all(bus, recorded)
        app.pump()
        await pilot.press("p")
        (pause,) = queue.drain()
        assert isinstance(pause, Pause) and pause.source == "tui"

        # The host answers: miners paused, with a reason; the next key press resumes.
        reason = PauseReason("user", "paused by the tui")
        for node in [n.address for n in app.summary.miners()]:
            bus.publish(
                NodeStateChanged(
                    node=node, role=NodeRole.MINER, state=NodeState.PAUSED, reasons=(reason,)
                )
            )
        bus.publish(
            CommandHandled(
                command_id=pause.id, command="pause", accepted=True, message="3 miners paused"
            )
        )
        app.pump()
        assert all("paused (user)" in row[2] for row in _rows(app, "nodes") if row[1] == "miner")
        alerts = _text(app, "alerts")
        assert "PAUSED paused by the tui" in alerts and "pause: done: 3 miners paused" in alerts
        await pilot.press("p")
        assert isinstance(queue.drain()[0], Resume)

        await pilot.press("w", "n")  # withdrawing moves money: it asks first, n sends nothing
        assert queue.drain() == []
        await pilot.press("b", "w", "y")
        bench, withdraw = queue.drain()
        assert isinstance(bench, Benchmark)
        assert isinstance(withdraw, Withdraw) and withdraw.all

        await pilot.press("t")  # stop the node; once the engine says so, t starts it again
        (stop,) = queue.drain()
        assert isinstance(stop, Stop)
        bus.publish(CommandHandled(command_id=stop.id, command="stop", accepted=True, message=""))
        app.pump()
        await pilot.press("t")
        assert [type(c) for c in queue.drain()] == [Start]
    assert "Notify" in posted  # each command sent is confirmed on screen


@sync
async def test_help_opens_and_q_quits_from_it_with_code_0(recorded: list[Event]) -> None:
    app, _bus = replay_app(recorded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "pause / resume" in str(app.screen.query_one("#help-text", Static).render())
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        await pilot.press("q")
    assert app.return_code == 0


@sync
async def test_ctrl_q_quits_with_code_0(recorded: list[Event]) -> None:
    app, _bus = replay_app(recorded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
    assert app.return_code == 0


@sync
async def test_without_a_command_queue_the_view_says_it_is_read_only(recorded: list[Event]) -> None:
    app, _bus = replay_app(recorded, None)
    notes: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("p")
        await pilot.pause()
        notes = [n.message for n in app._notifications]
    assert any("read-only" in n for n in notes)


class _AskScreen(ModalScreen[None]):
    def compose(self) -> ComposeResult:
        yield Input(id="field")


@sync
async def test_q_types_into_a_focused_text_field_and_ctrl_q_still_quits(
    recorded: list[Event],
) -> None:
    app, _bus = replay_app(recorded)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(_AskScreen())
        await pilot.pause()
        field = app.screen.query_one("#field", Input)
        field.focus()
        await pilot.press("q", "u", "q")
        assert field.value == "quq"
        assert app.is_running
        await pilot.press("ctrl+q")
    assert app.return_code == 0


@sync
async def test_models_screen_lists_fit_and_why_for_a_recorded_laptop(recorded: list[Event]) -> None:
    app, _bus = replay_app(recorded)
    app.models = laptop_model_rows
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        assert isinstance(app.screen, ModelsScreen)
        rows = _rows(app.screen, "models")
        by_id = {row[0].rstrip(" *"): row for row in rows}
        smol = by_id["smollm2-135m-instruct"]
        assert smol[0].endswith("*") and smol[3].startswith("Q4_1") and smol[4] == "yes"
        assert "ctx" in smol[5] and "RAM" in smol[5]  # how it would run here
        too_big = [row for row in rows if row[4] == "NO"]
        assert too_big and all(row[5] for row in too_big)  # every refusal says why
        # The highlighted row's reason is shown in full under the table.
        await pilot.press(*["down"] * rows.index(too_big[0]))
        detail = str(app.screen.query_one("#model-detail", Static).render())
        assert "does not fit this machine" in detail and "GiB" in detail
        await pilot.press("escape")
        assert not isinstance(app.screen, ModelsScreen)
        await pilot.press("m")
        await pilot.press("q")
    assert app.return_code == 0


@sync
async def test_wallet_screen_shows_addresses_and_says_when_there_are_no_earnings(
    recorded: list[Event],
) -> None:
    app, bus = replay_app(recorded)
    async with app.run_test(size=SIZE) as pilot:
        publish_all(bus, recorded)
        app.pump()
        await pilot.press("e")
        assert isinstance(app.screen, WalletScreen)
        addresses = {row[0] for row in _rows(app.screen, "wallet-nodes")}
        assert addresses == set(app.summary.nodes)  # full addresses, all four nodes
        assert _rows(app.screen, "earnings") == []
        assert "no earnings yet" in _text(app.screen, "wallet-balances")
        await pilot.press("x")  # no wallet behind a replay: it says so and opens nothing
        await pilot.pause()
        assert isinstance(app.screen, WalletScreen)
        assert "no wallet to back up" in _text(app.screen, "wallet-note")


@sync
async def test_earnings_events_fill_the_history_and_warn_on_low_gas(recorded: list[Event]) -> None:
    app, bus = replay_app(recorded)
    miner = next(e.node for e in recorded if e.type == "points")
    async with app.run_test(size=SIZE) as pilot:
        publish_all(bus, recorded)
        bus.publish(
            EarningsUpdated(
                node=miner, earned_wei=2 * 10**17, withdrawable_wei=10**17, gas_balance_wei=10**18
            )
        )
        bus.publish(
            EarningsUpdated(
                node=miner,
                earned_wei=3 * 10**17,
                withdrawable_wei=2 * 10**17,
                gas_balance_wei=10**15,
            )
        )
        app.pump()
        wallet = _text(app, "wallet")
        assert "earned   0.3000  withdrawable 0.2000" in wallet
        assert "LOW GAS BALANCE" in wallet
        await pilot.press("e")
        history = _rows(app.screen, "earnings")
        assert [row[2] for row in history] == ["0.3000", "0.2000"]  # newest first
        assert "LOW GAS" in _text(app.screen, "wallet-balances")


@sync
async def test_settings_screen_lists_keys_marks_changes_and_explains(recorded: list[Event]) -> None:
    app, _bus = replay_app(recorded)
    app.settings = sample_settings
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        assert isinstance(app.screen, SettingsScreen)
        rows = _rows(app.screen, "settings-table")
        by_key = {row[0]: row for row in rows}
        assert by_key["fit.ram_buffer_pct"][1:] == ["30.0", "changed"]
        assert by_key["network.profile"][1:] == ["'embedded'", ""]
        assert "in this process" in _text(app.screen, "settings-network")
        await pilot.press(*["down"] * [r[0] for r in rows].index("fit.ram_buffer_pct"))
        help_text = _text(app.screen, "setting-help")
        assert "CORTENSOR_FIT__RAM_BUFFER_PCT" in help_text and "buffer" in help_text
        await pilot.press("escape")
        assert not isinstance(app.screen, SettingsScreen)


@sync
async def test_an_engine_error_line_reaches_the_alerts_line(recorded: list[Event]) -> None:
    app, bus = replay_app(recorded)
    async with app.run_test(size=SIZE):
        bus.publish(LogLine(level="error", logger="host", message="start failed: no model"))
        app.pump()
        assert "ERROR start failed: no model" in _text(app, "alerts")
        assert app.query_one("#log", Log).lines[-1] == "error: start failed: no model"


@sync
async def test_sigterm_quits_like_q_when_the_app_handles_signals(recorded: list[Event]) -> None:
    bus = EventBus()
    app = create_app(bus, None, refresh_s=60, handle_signals=True)
    async with app.run_test(size=SIZE) as pilot:
        assert signal.SIGTERM in app._signals  # else the kill below would end the test run
        os.kill(os.getpid(), signal.SIGTERM)
        await pilot.pause(0.2)
    assert app.return_code == 0
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler removed on exit


@sync
async def test_the_hardware_panel_shows_what_the_hosts_hardware_events_say() -> None:
    bus = EventBus()
    app = create_app(bus, None, refresh_s=60)
    async with app.run_test(size=SIZE) as pilot:
        assert _text(app, "hardware") == "no hardware readings"  # the app reads no psutil itself
        gpu = GpuSample(index=0, util_percent=97.0, mem_used_bytes=6 * 2**30, temp_c=70.0)
        bus.publish(
            HardwareSample(
                cpu_percent=12.5,
                ram_used_bytes=2**30,
                ram_total_bytes=8 * 2**30,
                cpu_temp_c=61.4,
                gpus=(gpu,),
            )
        )
        app.pump()
        await pilot.pause()
        assert _text(app, "hardware").splitlines() == [
            "CPU   12.5 %",
            "RAM  1.0 GiB / 8.0 GiB",
            "CPU temp 61 °C",
            "GPU0 97 % 6.0 GiB 70 °C",
        ]
