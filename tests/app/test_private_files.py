"""What the app writes is the user's alone, whatever the umask, and durable across a power cut."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cortensor_desktop.hosting.assembly import rpc_info
from cortensor_desktop.logs import LOG_FILE_NAME, setup_logging
from cortensor_desktop.paths import resolve_paths
from engine.state.database import Database


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the common default: folders 0755, files 0644
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_folder_is_private_even_one_that_existed(tmp_path: Path, open_umask: None) -> None:
    paths = resolve_paths({"CORTENSOR_HOME": str(tmp_path / "home")})
    paths.data_dir.mkdir(parents=True)  # made by an older version, or by hand: 0755
    assert _mode(paths.data_dir) == 0o755
    paths.ensure()
    for folder in (paths.config_dir, paths.data_dir, paths.cache_dir, paths.log_dir):
        assert _mode(folder) == 0o700, folder


def test_the_log_file_is_private(tmp_path: Path, open_umask: None) -> None:
    logs = tmp_path / "logs"
    setup_logging("info", "text", logs)
    logging.getLogger("tests.private").info("a line")
    try:
        assert _mode(logs) == 0o700
        assert _mode(logs / LOG_FILE_NAME) == 0o600
    finally:
        setup_logging("info", "text", None)


def test_the_database_syncs_every_commit(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    try:
        assert db.query("PRAGMA synchronous")[0][0] == 2  # FULL: a power cut keeps the journal
    finally:
        db.close()


def test_the_summary_names_the_rpc_without_its_key() -> None:
    info = rpc_info(["https://arb-sepolia.g.alchemy.com/v2/SECRETKEY", "https://b.example"])
    assert info == {"in_use": "https://arb-sepolia.g.alchemy.com/...", "endpoints": 2}
