"""The wizard's wallet step: create or import the node's key, and the payout address.

Passphrases and a pasted private key go in masked inputs (password=True); a new passphrase is
typed twice and compared (`FirstRun`, the same checks as `wallet new`). scrypt takes a second
or two and 256 MiB, so the keystore is written on a daemon thread. The inputs holding secrets
are cleared as soon as the keystore is written or refused; nothing secret is shown or logged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.markup import escape as esc
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, OptionList, Static
from textual.widgets.option_list import Option

from cortensor_desktop.tui.backends.first_run import FirstRun, parse_payout

if TYPE_CHECKING:
    from chain.wallet import WalletInfo

MODES = {
    "create": "Create a new wallet",
    "import-key": "Import a private key",
    "import-keystore": "Import a keystore file",
    "skip": "Skip for now",
    "keep": "Keep this home's wallet",
}
# Which inputs each mode shows, in focus order; the last one's enter submits.
FIELDS = {
    "create": ("passphrase", "repeat", "payout"),
    "import-key": ("key", "passphrase", "repeat", "payout"),
    "import-keystore": ("keystore", "passphrase", "payout"),
    "keep": ("payout",),
    "skip": (),
}
SECRET_FIELDS = ("key", "passphrase", "repeat")


class WalletReady(Message):
    """The step is done: the address (None: skipped), the payout, and whether to go on now."""

    def __init__(self, address: str | None, payout: str, go_on: bool) -> None:
        super().__init__()
        self.address = address
        self.payout = payout
        self.go_on = go_on


class WalletWritten(Message):
    def __init__(self, info: WalletInfo | None, error: str | None) -> None:
        super().__init__()
        self.info = info
        self.error = error


class WalletStep(Vertical):
    DEFAULT_CSS = """
    WalletStep #wallet-top { height: auto; }
    WalletStep #wallet-mode { width: 30; height: auto; max-height: 8; }
    WalletStep #wallet-form { height: auto; width: 1fr; }
    WalletStep #wallet-form Input { width: 1fr; }
    WalletStep #wallet-buttons { height: auto; }
    WalletStep #wallet-status { height: auto; }
    WalletStep #wallet-where { height: auto; color: $text-muted; }
    """

    def __init__(self, setup: FirstRun, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.setup = setup
        self.existing = setup.existing_wallet()
        self.mode = "keep" if self.existing else "create"
        self.ready = False
        self.busy = False
        self.payout = ""
        self._keyring_checked = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="wallet-top"):
            yield OptionList(id="wallet-mode")
            with Vertical(id="wallet-form"):
                yield Input(id="wallet-key", password=True, placeholder="0x + 64 hex digits")
                yield Input(id="wallet-keystore", placeholder="/path/to/keystore.json")
                yield Input(id="wallet-passphrase", password=True)
                yield Input(id="wallet-repeat", password=True)
                yield Input(id="wallet-payout", placeholder="empty: the node wallet itself")
                with Horizontal(id="wallet-buttons"):
                    yield Checkbox(id="wallet-remember")
                    yield Button("Go", id="wallet-go", variant="primary")
        yield Static(id="wallet-status")
        yield Static(id="wallet-where")

    def on_mount(self) -> None:
        titles = {
            "key": "private key (hidden)",
            "keystore": "keystore file (V3 JSON)",
            "passphrase": "passphrase (hidden)",
            "repeat": "the same passphrase again",
            "payout": "payout address (0x…)",
        }
        for name, title in titles.items():
            self.query_one(f"#wallet-{name}").border_title = title
        self._fill_modes()
        self.query_one("#wallet-where", Static).update(self._where_text())

    def _where_text(self) -> str:
        return (
            f"[b]Where the key is kept:[/b] {esc(str(self.setup.keystore_file()))}, a V3 "
            "keystore encrypted with scrypt, readable by you only (0600). The passphrase is "
            "stored nowhere unless you tick the keyring box.\n"
            "[b]Back it up:[/b] copy that file somewhere safe (a USB stick, a password manager) "
            "and keep the passphrase apart from it: both are needed and neither can be "
            "recovered. `cortensor-desktop wallet export --yes` prints the raw key when you "
            "need it elsewhere.\n"
            "At start the node reads the passphrase from --passphrase-file, "
            "CORTENSOR_PASSPHRASE_FILE, CORTENSOR_PASSPHRASE, the keyring, or asks on the "
            "terminal. The embedded network signs with its own throwaway accounts: this wallet "
            "is for real networks."
        )

    def _fill_modes(self) -> None:
        modes = self.query_one("#wallet-mode", OptionList)
        modes.clear_options()
        names = ["keep"] if self.existing else ["create", "import-key", "import-keystore", "skip"]
        modes.add_options([Option(MODES[n], id=n) for n in names])
        modes.highlighted = names.index(self.mode) if self.mode in names else 0
        self._show_fields()
        if self.existing is not None and not self.ready:
            self._status(
                f"This home already has a wallet: [b]{self.existing.address}[/b]. "
                "It stays as it is; set a payout address if you like."
            )

    def _probe_keyring(self) -> None:
        """Asked when the step is first shown: finding the keyring backend takes a moment."""
        if self._keyring_checked:
            return
        self._keyring_checked = True
        remember = self.query_one("#wallet-remember", Checkbox)
        if self.setup.keyring_available():
            remember.label = "remember the passphrase in the OS keyring (unattended starts)"
        else:
            remember.label = "no secure OS keyring here: the node asks at start"
            remember.disabled = True

    def enter(self) -> None:
        """The step is shown: pick up where the user left off."""
        self._probe_keyring()
        if self.ready:
            self.screen.set_focus(None)
        else:
            self.query_one("#wallet-mode").focus()

    # -- the form ----------------------------------------------------------------------------
    def _show_fields(self) -> None:
        shown = FIELDS[self.mode]
        for name in ("key", "keystore", "passphrase", "repeat", "payout"):
            self.query_one(f"#wallet-{name}").display = name in shown
        secret = any(name in shown for name in SECRET_FIELDS)
        self.query_one("#wallet-remember").display = secret
        self.query_one("#wallet-buttons").display = bool(shown)
        label = {"create": "Create wallet", "keep": "Use this wallet"}.get(self.mode, "Import")
        self.query_one("#wallet-go", Button).label = label

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id == "wallet-mode" and event.option.id:
            self.mode = event.option.id
            self._show_fields()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id != "wallet-mode":
            return
        event.stop()
        if self.mode == "skip":
            self.post_message(WalletReady(None, "", go_on=True))
            return
        self.query_one(f"#wallet-{FIELDS[self.mode][0]}").focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        shown = FIELDS[self.mode]
        name = (event.input.id or "").removeprefix("wallet-")
        if name in shown and name != shown[-1]:
            self.query_one(f"#wallet-{shown[shown.index(name) + 1]}").focus()
            return
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.submit()

    def _value(self, name: str) -> str:
        return self.query_one(f"#wallet-{name}", Input).value

    def submit(self) -> None:
        if self.busy:
            return
        try:
            payout = parse_payout(self._value("payout"))
        except ValueError as exc:
            self._status(f"[b red]Payout address:[/] {esc(str(exc))}")
            self.query_one("#wallet-payout").focus()
            return
        self.payout = payout
        if self.mode == "keep" or self.ready:
            address = self.existing.address if self.existing else None
            self.post_message(WalletReady(address, payout, go_on=True))
            return
        remember = self.query_one("#wallet-remember", Checkbox).value
        work = self._work(remember)
        self.busy = True
        self.query_one("#wallet-go", Button).disabled = True
        self._status("writing the keystore (scrypt: a second or two)…")
        threading.Thread(
            target=self._write, args=(work,), name="wizard-wallet", daemon=True
        ).start()

    def _work(self, remember: bool) -> Callable[[], WalletInfo]:
        """The keystore call for this mode, with the secrets read out of the inputs now."""
        s = self.setup
        passphrase, repeat = self._value("passphrase"), self._value("repeat")
        if self.mode == "import-key":
            key = self._value("key")
            return lambda: s.import_private_key(key, passphrase, repeat, remember)
        if self.mode == "import-keystore":
            source = self._value("keystore")
            return lambda: s.import_keystore(source, passphrase, remember)
        return lambda: s.create_wallet(passphrase, repeat, remember)

    def _write(self, work: Callable[[], WalletInfo]) -> None:
        from chain.errors import WalletError

        try:
            info = work()
        except WalletError as exc:
            self.post_message(WalletWritten(None, str(exc)))
            return
        except Exception as exc:  # a keyring or disk problem is shown, never raised
            self.post_message(WalletWritten(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(WalletWritten(info, None))

    def on_wallet_written(self, message: WalletWritten) -> None:
        message.stop()
        self.busy = False
        self.query_one("#wallet-go", Button).disabled = False
        for name in SECRET_FIELDS:
            self.query_one(f"#wallet-{name}", Input).value = ""
        if message.info is None:
            self._status(f"[b red]No wallet written:[/] {esc(message.error or '')}")
            first_secret = next(n for n in FIELDS[self.mode] if n in SECRET_FIELDS)
            self.query_one(f"#wallet-{first_secret}").focus()
            return
        info = message.info
        self.existing = info
        self.ready = True
        self.mode = "keep"
        self._fill_modes()
        self._status(
            f"[b green]Wallet ready:[/] {info.address}\n"
            f"kept in {esc(str(info.path))} (0600, encrypted). Back it up now (below). enter: next"
        )
        self.post_message(WalletReady(info.address, self.payout, go_on=False))
        self.screen.set_focus(None)

    def _status(self, text: str) -> None:
        self.query_one("#wallet-status", Static).update(text)
