"""The Wallet screen over a real keystore and config: payout address, CSV export, key backup,
withdrawal confirmation and the Withdrawal events."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Input, Static

from chain.wallet import DEVNET_SCRYPT_N, create_wallet, export_private_key, wallet_path
from cortensor_desktop.config import default_config_text, load_config
from cortensor_desktop.tui.app import DashboardApp, create_app
from cortensor_desktop.tui.backends.wallet import WalletBackend, is_private
from cortensor_desktop.tui.screens.common import AskScreen, ConfirmScreen
from cortensor_desktop.tui.screens.wallet import WalletScreen
from engine.state.commands import CommandQueue, SetPayout, Withdraw
from engine.state.events import CommandHandled, EarningsUpdated, EventBus, TxStatus, Withdrawal
from tests.ui.conftest import SIZE, hardware_bus, sync

PASSPHRASE = "correct horse battery staple"
NODE = "0x" + "ab" * 20
PAYOUT = "0x" + "5c" * 20


def _home(tmp_path: Path) -> WalletBackend:
    keystore = tmp_path / "keystore"
    create_wallet(keystore, PASSPHRASE, DEVNET_SCRYPT_N)
    config = tmp_path / "config.toml"
    config.write_text(default_config_text(), encoding="utf-8")
    exports = tmp_path / "exports"
    exports.mkdir()
    return WalletBackend(keystore, config, exports, environ={})


def _app(
    backend: WalletBackend | None, commands: CommandQueue | None = None
) -> tuple[DashboardApp, EventBus]:
    bus = hardware_bus()
    app = create_app(bus, commands, clock=lambda: 1_800_000_000.0, wallet=backend)
    app.refresh_s = 60
    return app, bus


def _text(app: DashboardApp, widget_id: str) -> str:
    return str(app.screen.query_one(f"#{widget_id}", Static).render())


def _rows(app: DashboardApp, widget_id: str) -> list[list[str]]:
    table = app.screen.query_one(f"#{widget_id}", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def _answer(pilot: Any, app: DashboardApp, text: str) -> None:
    assert isinstance(app.screen, AskScreen)
    app.screen.query_one("#dialog-input", Input).value = text
    await pilot.press("enter")


async def _until(pilot: Any, condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


@sync
async def test_earnings_export_as_csv_to_a_typed_path(tmp_path: Path) -> None:
    backend = _home(tmp_path)
    app, bus = _app(backend)
    async with app.run_test(size=SIZE) as pilot:
        for ts, earned in ((1_800_000_000.0, 10**17), (1_800_000_060.0, 3 * 10**17)):
            event = EarningsUpdated(
                node=NODE, earned_wei=earned, withdrawable_wei=earned // 2, gas_balance_wei=10**18
            )
            bus.publish(dataclasses.replace(event, ts=ts), stamp=False)
        app.pump()
        await pilot.press("e", "c")
        assert isinstance(app.screen, AskScreen)
        suggested = app.screen.query_one("#dialog-input", Input).value
        assert suggested == str(backend.export_dir / "cortensor-earnings-20270115-080000.csv")
        await _answer(pilot, app, "earnings.csv")  # relative: into the export folder
        assert isinstance(app.screen, WalletScreen)
        target = backend.export_dir / "earnings.csv"
        assert f"wrote 2 earnings rows to {target}" in _text(app, "wallet-note")
        assert target.read_text(encoding="utf-8").splitlines() == [
            "time_utc,node,earned_wei,withdrawable_wei,gas_balance_wei",
            f"2027-01-15T08:00:00Z,{NODE},100000000000000000,50000000000000000,1000000000000000000",
            f"2027-01-15T08:01:00Z,{NODE},300000000000000000,150000000000000000,"
            "1000000000000000000",
        ]
        # The same name again is refused in the dialog (one line), the file kept.
        await pilot.press("c")
        await _answer(pilot, app, str(target))
        assert isinstance(app.screen, AskScreen)
        error = str(app.screen.query_one("#dialog-error", Static).render())
        assert error == f"{target} already exists: choose another name"
        await pilot.press("escape")
        assert "nothing exported" in _text(app, "wallet-note")


@sync
async def test_key_backup_needs_the_right_passphrase_and_never_shows_the_key(
    tmp_path: Path,
) -> None:
    backend = _home(tmp_path)
    key = export_private_key(backend.keystore_dir, PASSPHRASE)
    app, _bus = _app(backend)
    target = backend.export_dir / "backup.json"
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e", "x")
        assert "anyone who has the file" in _text(app, "dialog-warning")
        await _answer(pilot, app, str(target))
        field = app.screen.query_one("#dialog-input", Input)
        assert field.password  # masked
        await pilot.press(*"wrong")
        await pilot.press("enter")
        await _until(pilot, lambda: "wrong passphrase" in _text(app, "wallet-note"))
        assert "nothing written" in _text(app, "wallet-note")
        assert not target.exists()

        await pilot.press("x")
        await _answer(pilot, app, str(target))
        await _answer(pilot, app, PASSPHRASE)
        await _until(pilot, lambda: "written to" in _text(app, "wallet-note"))
        screen_text = app.export_screenshot()
        assert key[2:] not in screen_text and PASSPHRASE not in screen_text
    assert is_private(target) and target.stat().st_mode & 0o777 == 0o600
    assert json.loads(target.read_text()) == json.loads(
        wallet_path(backend.keystore_dir).read_text()
    )


@sync
async def test_payout_is_validated_saved_and_sent_on_chain(tmp_path: Path) -> None:
    backend = _home(tmp_path)
    queue = CommandQueue()
    app, bus = _app(backend, queue)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        address, _ = backend.address()
        assert address is not None and address in _text(app, "wallet-account")
        assert "payout   (the node's own address)" in _text(app, "wallet-account")
        await pilot.press("a")
        await _answer(pilot, app, "0x1234")
        assert isinstance(app.screen, AskScreen)
        assert "key 'wallet.payout': expected a value matching" in str(
            app.screen.query_one("#dialog-error", Static).render()
        )
        await _answer(pilot, app, PAYOUT)
        assert isinstance(app.screen, WalletScreen)
        (command,) = queue.drain()
        assert isinstance(command, SetPayout)
        checksummed = load_config(backend.config_path, {}).config.wallet.payout
        assert checksummed.lower() == PAYOUT and command.address == checksummed
        assert f"payout   {checksummed}" in _text(app, "wallet-account")
        assert "setting it on chain" in _text(app, "wallet-note")
        answer = f"payout {checksummed} set on chain for 2 miners (0xaa, 0xbb)"
        bus.publish(
            CommandHandled(
                command_id=command.id, command="set_payout", accepted=True, message=answer
            )
        )
        app.pump()
        assert _text(app, "wallet-note") == answer


@sync
async def test_withdraw_asks_then_sends_and_the_withdrawal_events_are_listed(
    tmp_path: Path,
) -> None:
    backend = _home(tmp_path)
    queue = CommandQueue()
    app, bus = _app(backend, queue)
    async with app.run_test(size=SIZE) as pilot:
        bus.publish(
            EarningsUpdated(
                node=NODE, earned_wei=10**17, withdrawable_wei=10**17, gas_balance_wei=10**18
            )
        )
        app.pump()
        await pilot.press("e", "w")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Withdraw 0.1000 ETH to each node's registered payout" in _text(app, "dialog-text")
        await pilot.press("escape")
        assert queue.drain() == []
        await pilot.press("w", "y")
        (command,) = queue.drain()
        assert isinstance(command, Withdraw) and command.all
        bus.publish(
            Withdrawal(
                node=NODE,
                amount_wei=10**17,
                to=PAYOUT,
                status=TxStatus.CONFIRMED,
                tx_hash="0x" + "12" * 32,
            )
        )
        app.pump()  # the screen follows the stream while it is open
        (row,) = _rows(app, "withdrawals")
        assert row[1] == "0.1000" and row[3] == "confirmed"
        assert "last withdrawal: 0.1000" in _text(app, "wallet-balances")


@sync
async def test_without_a_wallet_the_screen_says_so(tmp_path: Path) -> None:
    backend = WalletBackend(tmp_path / "none", tmp_path / "config.toml", tmp_path, environ={})
    app, _bus = _app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        assert "no wallet at" in _text(app, "wallet-account")
        await pilot.press("x")
        assert isinstance(app.screen, WalletScreen)
        assert "wallet new" in _text(app, "wallet-note")
        await pilot.press("q")
    assert app.return_code == 0


@sync
async def test_a_broken_config_is_a_line_not_a_crash(tmp_path: Path) -> None:
    backend = _home(tmp_path)
    backend.config_path.write_text("[wallet]\npayout = 12\n", encoding="utf-8")
    queue = CommandQueue()
    app, _bus = _app(backend, queue)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        assert "config unreadable" in _text(app, "wallet-account")
        await pilot.press("a")
        assert isinstance(app.screen, WalletScreen)
        assert "expected a string, got 12" in _text(app, "wallet-note")
        await pilot.press("w")
        assert "each node's registered payout address" in _text(app, "dialog-text")
        await pilot.press("y")
        assert isinstance(queue.drain()[0], Withdraw)
