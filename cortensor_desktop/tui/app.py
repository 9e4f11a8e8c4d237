"""The Textual dashboard: a reader of the engine's event stream and a sender of its commands.

`create_app(...)` is the one factory the CLI and the tests share. The app subscribes to an
`EventBus` and, on an interval timer, drains everything queued (one batch per frame: the UI
thread never blocks on the engine), folds it into a `Summary`, and re-renders what changed. Keys
put typed commands on a `CommandQueue`; the host (cortensor_desktop.hosting.dashboard_host) answers
them with
`command_handled` events, which the dashboard shows. Nothing here makes up data: with no events,
panels say so.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Log, Sparkline, Static, TextArea

from cortensor_desktop.config import ConfigError
from cortensor_desktop.event_text import format_event, short
from cortensor_desktop.tui.backends.models import ModelRow, ModelsBackend
from cortensor_desktop.tui.backends.settings import SettingsBackend, SettingsData
from cortensor_desktop.tui.backends.wallet import WalletBackend
from cortensor_desktop.tui.screens.common import AskScreen, ConfirmScreen, ether
from cortensor_desktop.tui.screens.models import ModelsScreen
from cortensor_desktop.tui.screens.settings import SettingsScreen
from cortensor_desktop.tui.screens.wallet import WalletScreen
from cortensor_desktop.tui.screens.wizard import WizardResult, WizardScreen
from engine.protocol import NetworkStage, UserStage
from engine.state.commands import (
    Benchmark,
    Command,
    CommandQueueFull,
    CommandSink,
    Pause,
    Resume,
    Start,
    Stop,
    Withdraw,
)
from engine.state.events import (
    CommandHandled,
    Event,
    EventBus,
    HardwareSample,
    LogLine,
    Subscription,
)
from engine.state.summary import Summary, TaskView

if TYPE_CHECKING:
    from cortensor_desktop.tui.backends.first_run import FirstRun

DEFAULT_REFRESH_S = 0.5
MAX_LOG_LINES = 500
MAX_ANSWERS = 100  # the engine's answers kept by command id, for screens waiting on one
NETWORK_STAGES = tuple(stage.value for stage in NetworkStage)
USER_STAGES = tuple(stage.value for stage in UserStage)


@dataclass(frozen=True)
class NodeInfo:
    """What the node runs with, as the host decided it (the events do not repeat it)."""

    network: str = "embedded"
    model: str = "-"
    tier: str = "-"
    n_ctx: int | None = None
    n_threads: int | None = None
    miners: int | None = None
    plan: dict[str, Any] | None = None  # the node plan's JSON (engine/host/plan.py NodePlan)


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def _duration(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


ROLE_SHORT = {"creator": "cre", "preparer": "prep", "answerer": "ans", "oracle": "oracle"}
STAGE_SHORT = {"request": "req", "create": "cre", "prepare": "prep", "start": "start"}
STAGE_SHORT |= {"precommit": "pc", "commit": "com", "end": "end", "assigned": "asg", "ack": "ack"}
STAGE_SHORT |= {"validated": "val", "paid": "paid"}
STATUS_MARK = {"started": "…", "sent": "→", "confirmed": "✓", "failed": "✗", "missed": "⌛"}

HELP_TEXT = """\
[b]Keys[/b]

  p          pause / resume mining (miners finish the current task first)
  t          stop / start the node (the dashboard stays; start runs it anew)
  b          run a benchmark (the engine answers whether it can)
  w          withdraw everything withdrawable (asks first: y / n)
  m          models: the catalogue, what fits here and why; i install, d remove
  e          wallet: addresses, balances, earnings; a payout address,
             c CSV export, x back up the key (encrypted)
  s          settings: the network profile and the config; enter edits a key
  ?          this help
  escape     close this help
  q, ctrl+q  quit now (exit code 0); the node stops within a second
             (in a text field q is a letter: ctrl+q quits, escape leaves it)

Panels: hardware, node settings, points and wallet, nodes, tokens/s,
tasks (stage by stage: ✓ confirmed, → sent, … working, ✗ failed, ⌛ missed),
PoI results (score / threshold), alerts, log.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        yield Static(HELP_TEXT, id="help-text")


NODE_ACTIONS = {
    "toggle_pause",
    "toggle_node",
    "benchmark",
    "withdraw",
    "models",
    "wallet",
    "settings",
    "help",
}


class DashboardApp(App[int]):
    CSS_PATH = "dashboard.tcss"
    TITLE = "cortensor-desktop"
    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: q works on every screen (modals too), except where a text field takes it.
        Binding("q", "quit_key", "quit", priority=True),
        Binding("ctrl+q", "quit_now", "quit", show=False, priority=True),
        Binding("p", "toggle_pause", "pause/resume"),
        Binding("t", "toggle_node", "stop/start"),
        Binding("b", "benchmark", "benchmark"),
        Binding("w", "withdraw", "withdraw"),
        Binding("m", "models", "models"),
        Binding("e", "wallet", "wallet"),
        Binding("s", "settings", "settings"),
        Binding("question_mark", "help", "help"),
    ]

    def _fatal_error(self) -> None:
        """Textual's crash report, without the local variables it shows by default: a frame
        holding a passphrase or a key would print it to the terminal, past the log's redaction."""
        import rich
        from rich.segment import Segments
        from rich.traceback import Traceback

        self.bell()
        traceback = Traceback(show_locals=False, width=None, suppress=[rich])
        self._exit_renderables.append(
            Segments(self.console.render(traceback, self.console.options))
        )
        self._close_messages_no_wait()

    def __init__(
        self,
        bus: EventBus,
        commands: CommandSink | None = None,
        info: NodeInfo | None = None,
        clock: Callable[[], float] = time.time,
        refresh_s: float = DEFAULT_REFRESH_S,
        subscribe_after: int | None = 0,
        models: Callable[[], list[ModelRow]] | ModelsBackend | None = None,
        wizard: FirstRun | None = None,
        on_accept: Callable[[WizardResult], None] | None = None,
        settings: Callable[[], SettingsData] | SettingsBackend | None = None,
        handle_signals: bool = False,
        wallet: WalletBackend | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.wallet = wallet
        self.answers: dict[str, CommandHandled] = {}
        self.handle_signals = handle_signals
        self._signals: list[signal.Signals] = []
        self.models = models
        self.wizard = wizard
        self.on_accept = on_accept
        self.accepted = wizard is None
        self.bus = bus
        self.commands = commands
        self.info = info or NodeInfo()
        self.clock = clock
        self.refresh_s = refresh_s
        self.summary = Summary()
        self.sent: list[Command] = []
        self._subscribe_after = subscribe_after
        self._sub: Subscription | None = None
        self._tasks_version = -1
        self._poi_version = -1

    # -- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="title")
        with Horizontal(id="top"):
            yield Static(id="hardware", classes="panel")
            yield Static(id="settings", classes="panel")
            yield Static(id="wallet", classes="panel")
        with Horizontal(id="middle"):
            yield DataTable(id="nodes", cursor_type="none", zebra_stripes=False)
            with Vertical(id="rate-box"):
                yield Static("tokens/s: no inference yet", id="rate-label")
                yield Sparkline([], id="rate")
        with Horizontal(id="tables"):
            yield DataTable(id="tasks", cursor_type="row")
            yield DataTable(id="poi", cursor_type="row")
        yield Static(id="alerts")
        yield Log(id="log", max_lines=MAX_LOG_LINES, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        for widget_id, title in (
            ("hardware", "Hardware"),
            ("settings", "Node"),
            ("wallet", "Points & wallet"),
            ("nodes", "Nodes"),
            ("rate-box", "Live tokens/s"),
            ("tasks", "Tasks"),
            ("poi", "PoI results"),
            ("log", "Log"),
        ):
            self.query_one(f"#{widget_id}").border_title = title
        self.query_one("#nodes", DataTable).add_columns(
            "node", "role", "state", "for", "uptime", "points", "lvl", "precommit", "tok/s"
        )
        self.query_one("#tasks", DataTable).add_columns(
            "sess", "node", "role", "stages", "tx", "took"
        )
        self.query_one("#poi", DataTable).add_columns(
            "sess", "miner", "top1/min", "cos/min", "end", "result"
        )
        self._sub = self.bus.subscribe(maxsize=5000, name="tui", after_seq=self._subscribe_after)
        self.pump()
        self.set_interval(self.refresh_s, self.pump)
        if self.wizard is not None:
            self.push_screen(WizardScreen(self.wizard), self._wizard_done)
        if self.handle_signals:
            self._install_signals()

    def _install_signals(self) -> None:
        """SIGTERM and SIGHUP (the terminal closed) quit like q: exit code 0, node stopped."""
        loop = asyncio.get_running_loop()
        for name in ("SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            try:
                loop.add_signal_handler(sig, self.exit, 0)
            except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
                continue
            self._signals.append(sig)

    def _wizard_done(self, result: WizardResult | None) -> None:
        self.accepted = result is not None
        if result is not None and self.on_accept is not None:
            self.on_accept(result)

    def _title(self) -> str:
        where = self.info.network
        where = where if where.startswith("replay") else f"{where} network"
        return f"cortensor-desktop · {where} · ? for help · q quits"

    # -- the frame ---------------------------------------------------------------------------
    def pump(self) -> int:
        """Drain the subscription, fold, render; returns how many events it took."""
        events = self._sub.drain() if self._sub is not None else []
        self.summary.apply_all(events)
        for event in events:
            if isinstance(event, CommandHandled):
                self.answers[event.command_id] = event
        while len(self.answers) > MAX_ANSWERS:
            del self.answers[next(iter(self.answers))]
        lines = [line for e in events if (line := self._log_line(e)) is not None]
        if lines:
            self.query_one("#log", Log).write_lines(lines)
        # The host's hardware readings (every 2 s) change the hardware panel only, which is drawn
        # every frame: they do not re-render the tables or wake the screens.
        changed = any(not isinstance(e, HardwareSample) for e in events)
        self._render_all(changed)
        if changed and isinstance(self.screen, SettingsScreen | WalletScreen):
            self.screen.summary_changed()  # screens over the dashboard follow the stream too
        return len(events)

    def _log_line(self, event: Event) -> str | None:

        if isinstance(event, LogLine):
            return f"{event.level}: {event.message}"
        return format_event(event)

    def _render_all(self, changed: bool) -> None:
        self._render_hardware()
        self._render_nodes()
        if changed:
            self._render_settings()
            self._render_wallet()
            self._render_rate()
            self._render_tasks()
            self._render_poi()
            self._render_alerts()

    def _render_hardware(self) -> None:
        """This machine as the host's `hardware` events report it (every 2 s); a reading the
        host could not make is left out or shown as ?."""
        sample = self.summary.hardware
        if sample is None:
            self.query_one("#hardware", Static).update("no hardware readings")
            return
        cpu = "?" if sample.cpu_percent is None else f"{sample.cpu_percent:5.1f} %"
        lines = [
            f"CPU  {cpu}",
            f"RAM  {_gib(sample.ram_used_bytes)} / {_gib(sample.ram_total_bytes)}",
        ]
        if sample.cpu_temp_c is not None:
            lines.append(f"CPU temp {sample.cpu_temp_c:.0f} °C")
        for gpu in sample.gpus:
            util = "?" if gpu.util_percent is None else f"{gpu.util_percent:.0f} %"
            gtemp = "?" if gpu.temp_c is None else f"{gpu.temp_c:.0f} °C"
            lines.append(f"GPU{gpu.index} {util} {_gib(gpu.mem_used_bytes)} {gtemp}")
        if not sample.gpus:
            lines.append("GPU  none reported")
        self.query_one("#hardware", Static).update("\n".join(lines))

    def _render_settings(self) -> None:
        info = self.info
        bench = self.summary.benchmark
        lines = [
            f"network  {info.network}",
            f"model    {info.model}",
            f"tier     {bench.tier if bench and bench.tier else info.tier}",
            f"context  {info.n_ctx or '-'}  threads {info.n_threads or '-'}",
            f"miners   {len(self.summary.miners()) or '-'} of {info.miners or '-'}",
        ]
        if info.plan:
            plan = info.plan
            lines.append(f"plan     {plan['quant']}, {plan['memory_mb']} MiB ({plan['source']})")
            lines.extend(f"  why    {reason}" for reason in plan["reasons"][:2])
        if bench is not None:
            lines.append(f"bench    {bench.gen_tokens_per_s:.1f} tok/s gen")
        self.query_one("#settings", Static).update("\n".join(lines))

    def _render_wallet(self) -> None:
        s = self.summary
        passed, judged = s.passed_ratio()
        lines = [f"points   {s.total_points}  (all miners)"]
        scores = [n.precommit_score for n in s.miners() if n.precommit_score is not None]
        levels = [n.level for n in s.miners() if n.level is not None]
        lines.append(f"level    {max(levels) if levels else '-'}")
        lines.append(
            "precommit " + (f"{sum(scores) / len(scores):.0%} (mean)" if scores else "- (none yet)")
        )
        lines.append(f"PoI      {passed}/{judged} passed")
        if s.earnings is None:
            lines.append("earnings -  gas -  (none reported)")
        else:
            e = s.earnings
            lines.append(
                f"earned   {ether(e.earned_wei)}  withdrawable {ether(e.withdrawable_wei)}"
            )
            lines.append(f"gas      {ether(e.gas_balance_wei)}")
        if s.low_gas:
            lines.append("[b red]LOW GAS BALANCE: top up the node's wallet[/]")
        self.query_one("#wallet", Static).update("\n".join(lines))

    def _render_nodes(self) -> None:
        table = self.query_one("#nodes", DataTable)
        table.clear()
        now = self.clock()
        for node in sorted(self.summary.nodes.values(), key=lambda n: (n.role or "-", n.address)):
            state = node.state or "-"
            if node.pause_reasons:
                state += f" ({', '.join(r.code for r in node.pause_reasons)})"
            score = "-" if node.precommit_score is None else f"{node.precommit_score:.0%}"
            table.add_row(
                short(node.address),
                node.role or "-",
                state,
                _duration(now - node.state_since),
                _duration(now - node.first_seen),
                "-" if node.points is None else str(node.points),
                "-" if node.level is None else str(node.level),
                score,
                "-" if node.last_tokens_per_s is None else f"{node.last_tokens_per_s:.1f}",
            )

    def _render_rate(self) -> None:
        rates = list(self.summary.rates)
        self.query_one("#rate", Sparkline).data = rates
        if rates:
            label = f"tokens/s: last {rates[-1]:.1f}  max {max(rates):.1f}  ({len(rates)} runs)"
            self.query_one("#rate-label", Static).update(label)

    def _render_tasks(self) -> None:
        table = self.query_one("#tasks", DataTable)
        table.clear()
        for task in reversed(list(self.summary.tasks.values())):
            table.add_row(
                str(task.session_id) if task.kind == "network" else f"u{task.task_id}",
                short(task.node, 8),
                "+".join(ROLE_SHORT.get(r, r) for r in task.roles),
                _stages(task),
                short(task.last_tx, 6),
                f"{task.duration_s:.1f}s",
            )

    def _render_poi(self) -> None:
        table = self.query_one("#poi", DataTable)
        table.clear()
        for v in reversed(self.summary.validations):
            cosine = "-" if v.cosine is None else f"{v.cosine:.2f}"
            cosine_min = "-" if v.cosine_min is None else f"{v.cosine_min:.2f}"
            result = "PASS" if v.passed else "FAIL " + v.figures()
            # Within the near-tie margin where the oracle measured it: what top1_min applies to.
            agreement = v.top1_agreement if v.agreement is None else v.agreement
            table.add_row(
                str(v.session_id),
                short(v.miner, 8),
                f"{agreement:.2f}/{v.top1_min:.2f}",
                f"{cosine}/{cosine_min}",
                "ok" if v.ended_properly else "bad",
                result,
            )

    def _render_alerts(self) -> None:
        s = self.summary
        parts = [f"[b]{a.severity.value.upper()}[/] {a.message}" for a in s.alerts.values()]
        reasons = {r.message or r.code for n in s.nodes.values() for r in n.pause_reasons}
        if reasons:
            parts.append("[b]PAUSED[/] " + "; ".join(sorted(reasons)))
        parts.extend(f"[b]ERROR[/] {message}" for message in s.errors[-2:])
        if s.dropped:
            parts.append(f"the dashboard fell behind and skipped {s.dropped} events")
        if s.last_command is not None:
            c = s.last_command
            verdict = "done" if c.accepted else "refused"
            parts.append(f"{c.command}: {verdict}: {c.message}")
        self.query_one("#alerts", Static).update(" · ".join(parts) or "no alerts")

    # -- keys --------------------------------------------------------------------------------
    def send(self, command: Command) -> bool:
        """Put a command on the engine's queue; False (and a notice) when it could not go."""
        if self.commands is None:
            self.notify("read-only view: no engine to command", severity="warning")
            return False
        try:
            self.commands.put(command)
        except CommandQueueFull as exc:
            self.notify(str(exc), severity="error")
            return False
        self.sent.append(command)
        self.notify(f"{command.type} sent")
        return True

    def action_toggle_pause(self) -> None:
        self.send(Resume(source="tui") if self.summary.paused else Pause(source="tui"))

    def action_toggle_node(self) -> None:
        self.send(Start(source="tui") if self.summary.node_stopped else Stop(source="tui"))

    def action_benchmark(self) -> None:
        self.send(Benchmark(source="tui"))

    def action_withdraw(self) -> None:
        """Withdraw everything withdrawable, after a y/n question (it moves money)."""
        if isinstance(self.screen, ConfirmScreen):
            return
        e = self.summary.earnings
        amount = "everything withdrawable" if e is None else f"{ether(e.withdrawable_wei)} ETH"
        try:
            payout = self.wallet.payout() if self.wallet is not None else ""
        except ConfigError:  # a broken config file must not block a withdrawal
            payout = ""
        to = payout or "each node's registered payout address"
        question = f"Withdraw {amount} to {to}?"

        def answered(yes: bool | None) -> None:
            if yes:
                self.send(Withdraw(all=True, source="tui"))
            else:
                self.notify("withdrawal cancelled: nothing sent")

        self.push_screen(ConfirmScreen(question), answered)

    def action_models(self) -> None:
        if isinstance(self.screen, ModelsScreen):
            return
        models = self.models
        if models is None:
            self.push_screen(ModelsScreen(None))
            return
        backend = models if isinstance(models, ModelsBackend) else ModelsBackend(models)
        self.push_screen(ModelsScreen(backend))

    def action_wallet(self) -> None:
        if not isinstance(self.screen, WalletScreen):
            self.push_screen(WalletScreen(self.summary, self.wallet))

    def action_settings(self) -> None:
        if isinstance(self.screen, SettingsScreen):
            return
        source = self.settings
        if source is None:
            self.push_screen(SettingsScreen(None))
            return
        backend = source if isinstance(source, SettingsBackend) else None
        load = source.data if isinstance(source, SettingsBackend) else source
        try:
            data = load()
        except Exception as exc:  # a bad config file is shown, not raised
            self.push_screen(SettingsScreen(None, f"could not read the settings: {exc}"))
            return
        self.push_screen(SettingsScreen(data, backend=backend))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if isinstance(self.screen, WizardScreen) and action in NODE_ACTIONS:
            return False  # nothing runs until the wizard is accepted
        if isinstance(self.screen, ConfirmScreen | AskScreen) and action in NODE_ACTIONS:
            return False  # a question is open: answer it first
        # A text field keeps the letter q (a passphrase may contain one); ctrl+q always quits.
        return not (action == "quit_key" and isinstance(self.focused, Input | TextArea))

    def action_quit_key(self) -> None:
        self.exit(0)

    def action_quit_now(self) -> None:
        self.exit(0)

    def on_unmount(self) -> None:
        if self._sub is not None:
            self._sub.close()
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)


def _stages(task: TaskView) -> str:
    order = NETWORK_STAGES if task.kind == "network" else USER_STAGES
    marks = []
    for stage in order:
        status = task.stages.get(stage)
        if status is not None:
            marks.append(f"{STAGE_SHORT.get(stage, stage)}{STATUS_MARK.get(status, '?')}")
    return " ".join(marks)


def create_app(
    bus: EventBus,
    commands: CommandSink | None = None,
    info: NodeInfo | None = None,
    clock: Callable[[], float] = time.time,
    refresh_s: float = DEFAULT_REFRESH_S,
    subscribe_after: int | None = 0,
    models: Callable[[], list[ModelRow]] | ModelsBackend | None = None,
    wizard: FirstRun | None = None,
    on_accept: Callable[[WizardResult], None] | None = None,
    settings: Callable[[], SettingsData] | SettingsBackend | None = None,
    handle_signals: bool = False,
    wallet: WalletBackend | None = None,
) -> DashboardApp:
    """The one way to build the dashboard, for the CLI and the tests alike.

    With `wizard` (the first-run services), the first-run wizard comes first and `on_accept` gets
    its result once the config is written (the CLI starts the node then). `handle_signals`:
    SIGTERM/SIGHUP quit like q (the CLI). The hardware panel shows the host's `hardware` events:
    the app reads nothing of this machine itself.
    `models`, `settings` and `wallet` back the screens of the same names: a backend makes them
    act (install, edit, export), a plain row function keeps them read-only.
    """
    return DashboardApp(
        bus,
        commands,
        info,
        clock,
        refresh_s,
        subscribe_after,
        models,
        wizard,
        on_accept,
        settings,
        handle_signals,
        wallet,
    )
