"""Two small modals the screens share: a yes/no question and a one-line answer.

Both are keyboard-only: `y`/`n` (or enter/escape) for the question; enter submits the answer,
escape cancels. An answer may be checked before the modal closes: the check returns a one-line
error, shown under the field, and the modal stays open so the person can fix what they typed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


def ether(wei: int) -> str:
    """Wei as ether to 4 places, the dashboard's short form (events keep exact wei)."""
    return f"{wei / 10**18:.4f}"


class ConfirmScreen(ModalScreen[bool]):
    """A question answered with y (yes) or n / escape (no); dismisses with the answer."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str, warning: str = "") -> None:
        super().__init__()
        self.question = question
        self.warning = warning

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            if self.warning:
                yield Static(f"[b red]{escape(self.warning)}[/]", id="dialog-warning")
            yield Static(self.question, id="dialog-text")
            yield Static("y: yes · n or escape: no", id="dialog-hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class AskScreen(ModalScreen[str | None]):
    """One line of input: enter submits (after `check`, if given), escape cancels (None)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(
        self,
        question: str,
        value: str = "",
        *,
        password: bool = False,
        check: Callable[[str], str | None] | None = None,
        warning: str = "",
    ) -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.password = password
        self.check = check
        self.warning = warning

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            if self.warning:
                yield Static(f"[b red]{escape(self.warning)}[/]", id="dialog-warning")
            yield Static(self.question, id="dialog-text")
            yield Input(self.value, password=self.password, id="dialog-input")
            yield Static("", id="dialog-error")
            yield Static("enter: ok · escape: cancel · ctrl+q quits", id="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#dialog-input", Input).focus()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        message.stop()
        error = self.check(message.value) if self.check is not None else None
        if error:
            self.query_one("#dialog-error", Static).update(f"[b red]{escape(error)}[/]")
            return
        self.dismiss(message.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
