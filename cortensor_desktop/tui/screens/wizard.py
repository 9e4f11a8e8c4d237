"""The first-run wizard: this machine -> what to run (accept or override) -> model download ->
wallet -> network -> start.

One screen, one step at a time (a ContentSwitcher), everything on the keyboard: `enter` goes on,
`escape` goes back, `tab` moves between fields. The work is
`cortensor_desktop.tui.backends.first_run`'s (the
calls the CLI makes); slow work (the download, scrypt) runs on a daemon thread that posts
messages back, so the screen never waits and `q` quits at once even mid-download. Nothing is
written to the config until the last step; the keystore is written when the wallet step
succeeds, and its key and passphrase are never shown or logged.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape as esc
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    ContentSwitcher,
    Footer,
    Input,
    OptionList,
    ProgressBar,
    Select,
    Static,
)
from textual.widgets.option_list import Option

from cortensor_desktop.tui.backends.first_run import (
    Cancelled,
    Choices,
    FirstRun,
    NetworkChoice,
    Overrides,
)
from cortensor_desktop.tui.screens.wizard_wallet import WalletReady, WalletStep
from engine.models.store import PullProgress
from profiler.errors import DoesNotFitError
from profiler.fit import Recommendation

STEP_TITLES = {
    "hardware": "step 1 of 6: this machine",
    "recommendation": "step 2 of 6: what to run",
    "override": "step 2 of 6: override the recommendation",
    "download": "step 3 of 6: the model",
    "wallet": "step 4 of 6: the wallet",
    "network": "step 5 of 6: the network",
    "start": "step 6 of 6: start",
}
BACK = {
    "recommendation": "hardware",
    "override": "recommendation",
    "download": "recommendation",
    "wallet": "download",
    "network": "wallet",
    "start": "network",
}
HINTS = {
    "hardware": "enter: the recommendation · arrows scroll · q: quit",
    "recommendation": "enter: accept · o: override · escape: back · q: quit",
    "override": "tab: next field · enter: check and use · escape: back (keeps the fit's choice)",
    "download": "enter: next when done · s: skip (install later) · r: retry · escape: back",
    "wallet": "arrows + enter: choose · tab: next field · enter in the last field: go · "
    "escape: back · ctrl+q quits in a field",
    "network": "arrows: choose · enter: use this network · escape: back · q: quit",
    "start": "enter: write the config and start · escape: back · q: quit without starting",
}
INSTALL_STATES = {
    "idle": "not installed",
    "running": "installing",
    "done": "installed",
    "failed": "not installed: the download failed",
    "skipped": "not installed: skipped; `cortensor-desktop models pull` later",
}
PROGRESS_EVERY_S = 0.05  # a progress message at most this often (the bar has ~60 cells)


@dataclass(frozen=True)
class WizardResult:
    """What the wizard decided and wrote; the CLI starts the node from it."""

    choices: Choices
    config_path: Path
    embedded: bool


class DownloadUpdate(Message):
    def __init__(self, token: int, progress: PullProgress) -> None:
        super().__init__()
        self.token = token
        self.progress = progress


class DownloadEnded(Message):
    def __init__(self, token: int, path: Path | None, error: str | None) -> None:
        super().__init__()
        self.token = token
        self.path = path
        self.error = error


PHASES = {
    "download": "downloading from {source}",
    "verify": "verifying {source} (sha256)",
    "copy": "copying {source}",
    "convert": "converting {source} to GGUF",
    "link": "linking {source}",
    "done": "installed from {source}",
}


def _params(count: int | None) -> str:
    if not count:
        return "? parameters"
    return f"{count / 1e9:.1f}B" if count >= 1e9 else f"{count / 1e6:.0f}M"


class WizardScreen(Screen[WizardResult | None]):
    """First run, step by step; dismissed with the result once the config is written."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "next", "next"),
        Binding("escape", "back", "back"),
        Binding("o", "override", "override"),
        Binding("s", "skip", "skip download"),
        Binding("r", "retry", "retry"),
    ]
    DEFAULT_CSS = """
    WizardScreen #wizard-steps { height: 1fr; }
    WizardScreen Input { border-title-color: $text; }
    WizardScreen .wizard-step { height: 1fr; border: round $primary; padding: 0 1; }
    WizardScreen .override-row { height: auto; }
    WizardScreen .override-row Input { width: 1fr; }
    WizardScreen #override-model { width: 1fr; }
    WizardScreen #override-quant { width: 28; }
    WizardScreen #override-result, WizardScreen #download-status { height: auto; margin: 1 0; }
    WizardScreen #download-bar { margin: 1 0; }
    WizardScreen #download-bar Bar { width: 1fr; }
    WizardScreen #network-list { height: auto; max-height: 12; }
    WizardScreen #wizard-hint { height: 1; padding: 0 1; color: $accent; }
    """

    def __init__(self, setup: FirstRun) -> None:
        super().__init__()
        self.setup = setup
        self.step = "hardware"
        self.recommendation: Recommendation | None = None
        self.problem: str | None = None
        self.overrides: Overrides | None = None
        self.model: tuple[str, str | None] | None = None  # (model id, quant) to install
        self.download_state = "idle"  # idle, running, done, failed, skipped
        self._source = ""  # where the last progress came from (a URL, a package)
        self._rate_start: tuple[str, float, int] | None = None  # (phase, time, bytes) for speed
        self._token = 0
        self._cancel = threading.Event()
        self.wallet_address: str | None = None
        self.payout = ""
        self.network: str | None = None
        self._networks: list[NetworkChoice] = []

    # -- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="title")
        with ContentSwitcher(initial="hardware", id="wizard-steps"):
            with VerticalScroll(id="hardware", classes="wizard-step"):
                yield Static(id="hardware-body")
            with VerticalScroll(id="recommendation", classes="wizard-step"):
                yield Static(id="recommendation-body")
            with Vertical(id="override", classes="wizard-step"):
                yield Static(id="override-intro")
                with Horizontal(id="override-row", classes="override-row"):
                    yield Select[str](self._model_options(), id="override-model", allow_blank=False)
                    yield Select[str]([], id="override-quant", prompt="quant: auto")
                with Horizontal(id="override-row-2", classes="override-row"):
                    yield Input(id="override-ctx", placeholder="empty: the fit chooses")
                    yield Input(id="override-gpu-layers", placeholder="empty: the fit chooses")
                    yield Input(id="override-threads", placeholder="empty: the fit chooses")
                yield Static(id="override-result")
            with Vertical(id="download", classes="wizard-step"):
                yield Static(id="download-what")
                yield ProgressBar(id="download-bar", show_eta=True)
                yield Static(id="download-status")
            yield WalletStep(self.setup, id="wallet", classes="wizard-step")
            with Vertical(id="network", classes="wizard-step"):
                yield Static("Which network this node joins:", id="network-intro")
                yield OptionList(id="network-list")
                yield Static(id="network-note")
            with VerticalScroll(id="start", classes="wizard-step"):
                yield Static(id="start-body")
        yield Static(id="wizard-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#hardware").border_title = "Hardware profile"
        self.query_one("#recommendation").border_title = "Recommendation"
        self.query_one("#override").border_title = "Override"
        self.query_one("#download").border_title = "Model download"
        self.query_one("#wallet").border_title = "Wallet"
        self.query_one("#network").border_title = "Network"
        self.query_one("#start").border_title = "Ready"
        for widget_id, label in (
            ("override-ctx", "context (tokens)"),
            ("override-gpu-layers", "GPU layers (0: CPU only)"),
            ("override-threads", "CPU threads"),
        ):
            self.query_one(f"#{widget_id}").border_title = label
        self.query_one("#hardware-body", Static).update(esc(self.setup.hardware_text()))
        try:
            self.recommendation = self.setup.recommend()
        except DoesNotFitError as exc:
            self.problem = str(exc)
        self._fill_recommendation()
        self._fill_override_form()
        self._show("hardware")

    def _fill_recommendation(self) -> None:
        running = (
            f"The embedded network (a local test network in this process) runs "
            f"{self.setup.running_model} on every node; the recommendation is what this machine "
            "would serve on a real network."
        )
        if self.recommendation is not None:
            text = esc(self.setup.recommendation_text(self.recommendation))
            action = "enter accepts it (the fit decides again at every start); o overrides it."
        else:
            text = f"[b]Nothing in the catalogue fits this machine:[/b] {esc(self.problem or '')}"
            action = f"o overrides; enter goes on with {self.setup.running_model} only."
        self.query_one("#recommendation-body", Static).update(
            f"{running}\n{action}\n\n{text}", layout=True
        )

    def _model_options(self) -> list[tuple[str, str]]:
        return [
            (f"{m.id} ({m.kind}, {_params(m.parameters)})", m.id) for m in self.setup.chat_models()
        ]

    def _fill_override_form(self) -> None:
        select = self.query_one("#override-model", Select)
        current = self.recommendation.model_id if self.recommendation else None
        if current is not None:
            select.value = current
        self.query_one("#override-intro", Static).update(
            "Fix what the fit would otherwise choose at every start; empty fields stay automatic. "
            "The fit checks the result against this machine's memory before it is used."
        )

    # -- navigation --------------------------------------------------------------------------
    def _show(self, step: str) -> None:
        self.step = step
        self.query_one("#wizard-steps", ContentSwitcher).current = step
        self.query_one("#title", Static).update(f"First run · {STEP_TITLES[step]}")
        self.query_one("#wizard-hint", Static).update(HINTS[step])
        focus = {
            "hardware": "#hardware",
            "recommendation": "#recommendation",
            "override": "#override-model",
            "network": "#network-list",
            "start": "#start",
        }.get(step)
        if step == "wallet":
            self.query_one(WalletStep).enter()
        elif focus is not None:
            self.query_one(focus).focus()
        else:
            self.set_focus(None)
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "override":
            return self.step == "recommendation"
        if action in ("skip", "retry"):
            wanted = ("idle", "running", "failed") if action == "skip" else ("failed", "skipped")
            return self.step == "download" and self.download_state in wanted
        return True

    def action_next(self) -> None:
        handlers = {
            "hardware": lambda: self._show("recommendation"),
            "recommendation": self._accept,
            "override": self._apply_override,
            "download": self._after_download,
            "wallet": self._after_wallet,
            "network": self._choose_network,
            "start": self._finish,
        }
        handlers[self.step]()

    def action_back(self) -> None:
        if self.step == "download" and self.download_state == "running":
            self._stop_download("left the download step: the partial file stays for next time")
        previous = BACK.get(self.step)
        if self.step == "download" and self.overrides is not None:
            previous = "override"
        if previous is not None:
            self._show(previous)

    def action_override(self) -> None:
        self._show("override")

    # -- step 2: accept or override ----------------------------------------------------------
    def _accept(self) -> None:
        self.overrides = None
        rec = self.recommendation
        if rec is not None:
            self.model = (rec.model_id, rec.quant)
        else:  # nothing fits: the bundled model, which the embedded network runs anyway
            self.model = (self.setup.bundled_model().id, None)
        self._start_download()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != "override-model" or not isinstance(event.value, str):
            return
        entry = self.setup.catalogue.get(event.value)
        quants = [(q.quant, q.quant) for q in entry.quants] if entry else []
        self.query_one("#override-quant", Select).set_options(quants)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.step == "override":
            event.stop()
            self._apply_override()

    def _read_overrides(self) -> Overrides:
        """The form's values; ValueError names the field that is not a number."""
        model = self.query_one("#override-model", Select).value
        quant = self.query_one("#override-quant", Select).value
        numbers: dict[str, int | None] = {}
        for key, widget_id, low in (
            ("ctx", "override-ctx", 256),
            ("gpu_layers", "override-gpu-layers", 0),
            ("threads", "override-threads", 1),
        ):
            text = self.query_one(f"#{widget_id}", Input).value.strip()
            if not text:
                numbers[key] = None
                continue
            if not text.isdigit() or int(text) < low:
                label = self.query_one(f"#{widget_id}").border_title
                raise ValueError(f"{label}: expected a whole number of at least {low}")
            numbers[key] = int(text)
        return Overrides(
            model=model if isinstance(model, str) else None,
            quant=quant if isinstance(quant, str) else None,
            ctx=numbers["ctx"],
            gpu_layers=numbers["gpu_layers"],
            threads=numbers["threads"],
        )

    def _apply_override(self) -> None:
        result = self.query_one("#override-result", Static)
        try:
            overrides = self._read_overrides()
            rec = self.setup.recommend(overrides)
        except (ValueError, DoesNotFitError) as exc:
            result.update(f"[b red]Not used:[/] {esc(str(exc))}")
            return
        self.overrides = overrides
        self.model = (rec.model_id, rec.quant)
        result.update(f"the fit accepts it: {rec.model_id} {rec.quant}, ctx {rec.n_ctx}")
        self.notify(f"override kept: {rec.model_id} {rec.quant}, context {rec.n_ctx}")
        self._start_download()

    # -- step 3: the model -------------------------------------------------------------------
    def _start_download(self) -> None:
        assert self.model is not None
        model_id, quant = self.model
        self._show("download")
        bar = self.query_one("#download-bar", ProgressBar)
        what = self.query_one("#download-what", Static)
        status = self.query_one("#download-status", Static)
        entry = self.setup.catalogue.require(model_id)
        variant = entry.quant(quant) if quant else entry.quants[0]
        size = f"{variant.size_bytes / 2**20:,.0f} MiB" if variant and variant.size_bytes else ""
        what.update(
            f"[b]{model_id}[/b] {variant.quant if variant else ''} {size}\n"
            f"into {esc(str(self.setup.models_dir))}\n"
            f"(the embedded network runs {self.setup.running_model}; this is the model the node "
            "serves on a real network)"
        )
        installed = self.setup.installed_path(model_id, quant)
        if installed is not None:
            bar.update(total=1, progress=1)
            status.update(f"already installed: {esc(str(installed))}\nenter: next")
            self.download_state = "done"
            self.refresh_bindings()
            return
        bar.update(total=None, progress=0)
        self._source = ""
        status.update("starting…")
        self._token += 1
        self._cancel = threading.Event()
        self.download_state = "running"
        self.refresh_bindings()
        threading.Thread(
            target=self._download,
            args=(self._token, model_id, quant, self._cancel),
            name="wizard-download",
            daemon=True,  # q must not wait for a download
        ).start()

    def _download(
        self, token: int, model_id: str, quant: str | None, cancel: threading.Event
    ) -> None:
        sent_at = [0.0]
        phase = [""]

        def progress(event: PullProgress) -> None:
            now = time.monotonic()
            final = event.total_bytes is not None and event.done_bytes >= event.total_bytes
            if final or event.phase != phase[0] or now - sent_at[0] >= PROGRESS_EVERY_S:
                sent_at[0], phase[0] = now, event.phase
                self.post_message(DownloadUpdate(token, event))

        try:
            path = self.setup.install(model_id, quant, progress, cancel)
        except Cancelled:
            return
        except Exception as exc:  # every failure is shown on the step, never raised
            self.post_message(DownloadEnded(token, None, str(exc) or type(exc).__name__))
            return
        self.post_message(DownloadEnded(token, path, None))

    def on_download_update(self, message: DownloadUpdate) -> None:
        if message.token != self._token or self.download_state != "running":
            return
        p = message.progress
        self._source = p.source
        bar = self.query_one("#download-bar", ProgressBar)
        bar.update(total=p.total_bytes, progress=p.done_bytes)
        done = f"{p.done_bytes / 2**20:,.1f} MiB"
        if p.total_bytes:
            done += f" of {p.total_bytes / 2**20:,.1f} MiB"
        done += self._rate(p)
        phase = PHASES.get(p.phase, p.phase).format(source=p.source)
        self.query_one("#download-status", Static).update(esc(f"{phase}: {done}"))

    def _rate(self, p: PullProgress) -> str:
        """ ", 12.3 MiB/s, 8 s left" from the first update of this phase to now."""
        now = time.monotonic()
        first = self._rate_start
        if first is None or first[0] != p.phase or p.done_bytes < first[2]:
            self._rate_start = (p.phase, now, p.done_bytes)
            return ""
        elapsed, moved = now - first[1], p.done_bytes - first[2]
        if elapsed <= 0 or moved <= 0:
            return ""
        speed = moved / elapsed
        text = f", {speed / 2**20:,.1f} MiB/s"
        if p.total_bytes:
            left = max(0.0, (p.total_bytes - p.done_bytes) / speed)
            text += f", {left:,.0f} s left"
        return text

    def on_download_ended(self, message: DownloadEnded) -> None:
        if message.token != self._token or self.download_state != "running":
            return
        status = self.query_one("#download-status", Static)
        bar = self.query_one("#download-bar", ProgressBar)
        if message.path is not None:
            self.download_state = "done"
            bar.update(total=bar.total or 1, progress=bar.total or 1)
            source = f" from {self._source}" if self._source else ""
            status.update(esc(f"installed{source}: {message.path}") + "\nenter: next")
        else:
            self.download_state = "failed"
            status.update(
                f"[b red]Not installed:[/] {esc(message.error or '')}\n"
                "r retries; s skips (install it later with `cortensor-desktop models pull ID`)"
            )
        self.refresh_bindings()

    def _stop_download(self, why: str) -> None:
        self._cancel.set()
        self._token += 1  # whatever the thread still posts is ignored
        self.download_state = "skipped"
        self.query_one("#download-status", Static).update(esc(why))

    def action_skip(self) -> None:
        if self.download_state == "running":
            self._stop_download("skipped: the partial file stays and the next pull resumes it")
        elif self.download_state != "done":
            self.download_state = "skipped"
        self._show("wallet")

    def action_retry(self) -> None:
        self._start_download()

    def _after_download(self) -> None:
        if self.download_state == "running":
            self.notify("still installing; s skips it", severity="warning")
            return
        if self.download_state == "failed":
            self.notify("not installed: r retries, s skips", severity="warning")
            return
        self._show("wallet")

    # -- step 4: the wallet ------------------------------------------------------------------
    def on_wallet_ready(self, message: WalletReady) -> None:
        self.wallet_address = message.address
        self.payout = message.payout
        if message.go_on:
            self._show_network()

    def _after_wallet(self) -> None:
        step = self.query_one(WalletStep)
        if step.ready:
            self._show_network()
        else:
            step.enter()

    # -- step 5: the network -----------------------------------------------------------------
    def _show_network(self) -> None:
        options = self.query_one("#network-list", OptionList)
        options.clear_options()
        self._networks = self.setup.networks()
        for choice in self._networks:
            options.add_option(
                Option(
                    f"[b]{esc(choice.name)}[/b]  {esc(choice.text)}",
                    id=choice.name,
                    disabled=not choice.usable,
                )
            )
        options.highlighted = 0
        self.query_one("#network-note", Static).update(
            "Other networks are profile files in "
            f"{esc(str(self.setup.paths.profiles_dir))} (`devnet up` writes local.toml). "
            "This dashboard runs the embedded network; on any other network one process is one "
            "node: `cortensor-desktop run --role miner`."
        )
        self._show("network")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id == "network-list":
            event.stop()
            self.network = event.option.id
            self._show_start()

    def _choose_network(self) -> None:
        options = self.query_one("#network-list", OptionList)
        if options.highlighted is not None:
            options.action_select()

    # -- step 6: start -----------------------------------------------------------------------
    def _choices(self) -> Choices:
        model_id, quant = self.model or (None, None)
        return Choices(
            overrides=self.overrides,
            network=self.network or "embedded",
            payout_address=self.payout,
            wallet_address=self.wallet_address,
            model_id=model_id,
            quant=quant,
        )

    def _show_start(self) -> None:
        c = self._choices()
        o = c.overrides
        fit = (
            "the fit chooses at every start (recommendation accepted)"
            if o is None
            else f"override: model {o.model or 'auto'}, quant {o.quant or 'auto'}, "
            f"context {o.ctx or 'auto'}, GPU layers "
            f"{'auto' if o.gpu_layers is None else o.gpu_layers}, threads {o.threads or 'auto'}"
        )
        wallet = c.wallet_address or "none yet (`cortensor-desktop wallet new` makes one)"
        embedded = self._embedded(c.network)
        start = (
            "enter writes the config and starts the node on the embedded network."
            if embedded
            else f"enter writes the config and leaves; then start the node on {c.network} with "
            "`cortensor-desktop run --role miner`."
        )
        installed = INSTALL_STATES[self.download_state]
        lines = [
            f"model      {c.model_id or '-'} {c.quant or ''} ({installed})",
            f"fit        {fit}",
            f"wallet     {wallet}",
            f"payout     {c.payout_address or 'the node wallet itself'}",
            f"network    {c.network}",
            f"config     {self.setup.config_path}",
            "",
            start,
        ]
        self.query_one("#start-body", Static).update(esc("\n".join(lines)))
        self._show("start")

    def _embedded(self, name: str) -> bool:
        return any(n.name == name and n.embedded for n in self._networks)

    def _finish(self) -> None:
        choices = self._choices()
        try:
            path = self.setup.write_config(choices)
        except Exception as exc:  # a config that would not load back is refused, not raised
            self.notify(esc(f"config not written: {exc}"), severity="error")
            return
        self.dismiss(WizardResult(choices, path, self._embedded(choices.network)))

    def on_unmount(self) -> None:
        self._cancel.set()
