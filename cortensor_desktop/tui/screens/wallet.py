"""The Wallet screen: the home's wallet and payout address, balances, earnings and withdrawals.

Keys: `a` sets the payout address (saved in config; on chain via `SetPayout`, which the host turns
into NodeRegistry.setPayout for registered nodes), `c` exports the earnings history as CSV, `x`
backs up the encrypted keystore (passphrase checked, file 0600; the raw key is never shown), `w`
withdraws after a confirmation. Figures come from the event stream only and refresh with it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from cortensor_desktop.config import ConfigError
from cortensor_desktop.event_text import short
from cortensor_desktop.logs import register_secret
from cortensor_desktop.tui.backends.settings import tilde
from cortensor_desktop.tui.backends.wallet import WalletBackend, user_path, write_earnings_csv
from cortensor_desktop.tui.link import node_link
from cortensor_desktop.tui.screens.common import AskScreen, ether
from engine.state.commands import SetPayout
from engine.state.summary import Summary

KEY_BACKUP_WARNING = (
    "The backup is your wallet's key, encrypted with this passphrase: anyone who has the file "
    "AND the passphrase controls the wallet. Keep it offline, never share it."
)


class WalletScreen(Screen[None]):
    """Addresses, balances and the earnings history, from the event stream only."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "dashboard"),
        Binding("a", "payout", "payout address"),
        Binding("c", "export_csv", "CSV export"),
        Binding("x", "export_key", "back up key"),
    ]

    def __init__(self, summary: Summary, backend: WalletBackend | None = None) -> None:
        super().__init__()
        self.summary = summary
        self.backend = backend
        self.payout_id: str | None = None
        self._shown_history = -1
        self._shown_withdrawals = -1

    def compose(self) -> ComposeResult:
        yield Static("Wallet · escape returns to the dashboard", id="title")
        with Horizontal(id="wallet-top"):
            yield Static(id="wallet-account", classes="panel")
            yield Static(id="wallet-balances", classes="panel")
        yield DataTable(id="wallet-nodes", cursor_type="none")
        with Horizontal(id="wallet-tables"):
            yield DataTable(id="earnings", cursor_type="none")
            yield DataTable(id="withdrawals", cursor_type="none")
        yield Static(id="wallet-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#wallet-account").border_title = "This home's wallet"
        self.query_one("#wallet-balances").border_title = "Balances"
        nodes = self.query_one("#wallet-nodes", DataTable)
        nodes.border_title = "Node addresses"
        nodes.add_columns("address", "role", "points", "level", "precommit")
        history = self.query_one("#earnings", DataTable)
        history.border_title = "Earnings history"
        history.add_columns("time", "node", "earned", "withdrawable", "gas")
        withdrawals = self.query_one("#withdrawals", DataTable)
        withdrawals.border_title = "Withdrawals"
        withdrawals.add_columns("time", "amount", "to", "status", "tx")
        self._render_account()
        self.summary_changed()
        if self.backend is None:
            self._note("read-only view: no wallet here · w withdraws (asks first)")
        else:
            self._note("a payout address · c export earnings CSV · x back up the key · w withdraw")

    def _note(self, text: str, error: bool = False) -> None:
        if not self.is_attached:  # closed while a worker was busy: say it where it shows
            self.app.notify(text, severity="error" if error else "information")
            return
        shown = f"[b red]{escape(text)}[/]" if error else escape(text)
        self.query_one("#wallet-note", Static).update(shown)

    # -- what is shown ---------------------------------------------------------------------
    def _render_account(self) -> None:
        panel = self.query_one("#wallet-account", Static)
        if self.backend is None:
            panel.update("no wallet in this view")
            return
        address, where = self.backend.address()
        try:
            payout = self.backend.payout() or "(the node's own address)"
        except ConfigError as exc:
            payout = f"config unreadable: {exc}"
        lines = [
            f"address  {address or 'none'}",
            f"payout   {payout}",
            f"keystore {tilde(where)}" if address else f"         {where}",
        ]
        if address and self.backend.balance is not None:
            wei, note = self.backend.balance(address)
            shown = f"{ether(wei)} ETH" if wei is not None else "unavailable"
            lines.append(f"balance  {shown} ({note})")
        panel.update(escape("\n".join(lines)))

    def summary_changed(self) -> None:
        """Called by the app after each batch of events (and once on mount)."""
        self._render_balances()
        self._render_nodes()
        s = self.summary
        if len(s.earnings_history) != self._shown_history:
            self._shown_history = len(s.earnings_history)
            self._render_history()
        if len(s.withdrawals) != self._shown_withdrawals:
            self._shown_withdrawals = len(s.withdrawals)
            self._render_withdrawals()
        self._payout_answer()

    def _render_balances(self) -> None:
        s = self.summary
        if s.earnings is None:
            balances = (
                "no earnings yet: each miner publishes its balances once registered, then after "
                "every payment and every 30 s"
            )
        else:
            e = s.earnings
            balances = (
                f"earned {ether(e.earned_wei)}   withdrawable {ether(e.withdrawable_wei)}   "
                f"gas {ether(e.gas_balance_wei)}"
            )
            if s.low_gas:
                balances += "\n[b red]LOW GAS BALANCE: top up the node's wallet[/]"
        if s.last_withdrawal is not None:
            w = s.last_withdrawal
            balances += (
                f"\nlast withdrawal: {ether(w.amount_wei)} to {short(w.to)}: {w.status.value}"
            )
        self.query_one("#wallet-balances", Static).update(balances)

    def _render_nodes(self) -> None:
        nodes = self.query_one("#wallet-nodes", DataTable)
        nodes.clear()
        for node in sorted(self.summary.nodes.values(), key=lambda n: (n.role or "-", n.address)):
            score = "-" if node.precommit_score is None else f"{node.precommit_score:.0%}"
            points = "-" if node.points is None else str(node.points)
            level = "-" if node.level is None else str(node.level)
            nodes.add_row(node.address, node.role or "-", points, level, score)

    def _render_history(self) -> None:
        history = self.query_one("#earnings", DataTable)
        history.clear()
        for ts, node_address, e in reversed(self.summary.earnings_history):
            history.add_row(
                time.strftime("%H:%M:%S", time.gmtime(ts)),
                short(node_address),
                ether(e.earned_wei),
                ether(e.withdrawable_wei),
                ether(e.gas_balance_wei),
            )

    def _render_withdrawals(self) -> None:
        table = self.query_one("#withdrawals", DataTable)
        table.clear()
        for w in reversed(self.summary.withdrawals):
            table.add_row(
                time.strftime("%H:%M:%S", time.gmtime(w.ts)),
                ether(w.amount_wei),
                short(w.to),
                w.status.value + (f" {w.detail}" if w.detail else ""),
                short(w.tx_hash or "-", 6),
            )

    # -- payout ----------------------------------------------------------------------------
    def action_payout(self) -> None:
        if self.backend is None:
            self._note("read-only view: no config to save a payout address in", error=True)
            return
        backend = self.backend
        saved: list[str] = []

        def check(text: str) -> str | None:
            try:
                saved.append(backend.set_payout(text))
            except ConfigError as exc:
                return str(exc)
            return None

        def done(answer: str | None) -> None:
            if answer is None or not saved:
                self._note("payout address not changed")
                return
            self._render_account()
            self._payout_saved(saved[-1])

        question = (
            "Payout address: where the node's earnings are paid (empty: the node's own address)"
        )
        try:
            current = backend.payout()
        except ConfigError as exc:  # fix the file first (Settings or an editor)
            self._note(str(exc), error=True)
            return
        self.app.push_screen(AskScreen(question, current, check=check), done)

    def _payout_saved(self, address: str) -> None:
        app = node_link(self.app)
        if not address:
            self._note("payout cleared in config: nodes register with their own address")
            return
        if app.commands is None:
            self._note(f"payout {address} saved in config; the node sets it when it registers")
            return
        command = SetPayout(address=address, source="tui")
        if app.send(command):
            self.payout_id = command.id
            self._note(f"payout {address} saved in config; setting it on chain...")

    def _payout_answer(self) -> None:
        if self.payout_id is None:
            return
        app = node_link(self.app)
        answer = app.answers.get(self.payout_id)
        if answer is None:
            return
        self.payout_id = None
        verdict = "" if answer.accepted else "on chain: refused: "
        self._note(f"{verdict}{answer.message}", error=not answer.accepted)

    # -- CSV -------------------------------------------------------------------------------
    def action_export_csv(self) -> None:
        base = self.backend.export_dir if self.backend is not None else Path.home()
        app = node_link(self.app)
        default = (
            self.backend.default_csv(app.clock())
            if self.backend is not None
            else base / "cortensor-earnings.csv"
        )
        written: list[tuple[Path, int]] = []

        def check(text: str) -> str | None:
            if not text.strip():
                return "type a file name"
            path = user_path(text, base)
            try:
                written.append((path, write_earnings_csv(path, self.summary.earnings_history)))
            except (ConfigError, OSError) as exc:
                return str(exc)
            return None

        def done(answer: str | None) -> None:
            if answer is None or not written:
                self._note("nothing exported")
                return
            path, rows = written[-1]
            self._note(f"wrote {rows} earnings rows to {path}")

        question = "Export the earnings history (CSV, amounts in wei) to:"
        self.app.push_screen(AskScreen(question, str(default), check=check), done)

    # -- key backup ------------------------------------------------------------------------
    def action_export_key(self) -> None:
        if self.backend is None:
            self._note("read-only view: no wallet to back up", error=True)
            return
        address, why = self.backend.address()
        if address is None:
            self._note(why, error=True)
            return
        backend = self.backend
        target = str(backend.default_keystore_copy(address))

        def got_path(text: str | None) -> None:
            if not text or not text.strip():
                self._note("key backup cancelled: nothing written")
                return
            path = user_path(text, backend.export_dir)
            question = f"Passphrase of {address} (checked before {path.name} is written):"
            self.app.push_screen(
                AskScreen(question, password=True, warning=KEY_BACKUP_WARNING),
                lambda passphrase: self._export(path, passphrase),
            )

        question = "Back up the encrypted keystore (mode 0600) to:"
        self.app.push_screen(AskScreen(question, target, warning=KEY_BACKUP_WARNING), got_path)

    def _export(self, path: Path, passphrase: str | None) -> None:
        if not passphrase:
            self._note("key backup cancelled: nothing written")
            return
        register_secret(passphrase)  # whatever was typed, never in a log line
        self._note("checking the passphrase...")
        # scrypt takes about a second and 256 MiB: off the UI thread.
        self.run_worker(lambda: self._export_on_thread(path, passphrase), thread=True)

    def _export_on_thread(self, path: Path, passphrase: str) -> None:
        from chain.errors import WalletError

        assert self.backend is not None
        try:
            written = self.backend.export_keystore(passphrase, path)
        except (WalletError, OSError) as exc:
            message = f"{exc}; nothing written"
            self.app.call_from_thread(self._note, message, True)
            return
        message = f"encrypted keystore written to {written} (mode 0600); keep it offline"
        self.app.call_from_thread(self._note, message)
