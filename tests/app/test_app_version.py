"""The version the miners register on chain is this build's, not a literal."""

from __future__ import annotations

from pathlib import Path

import pytest

import cortensor_desktop
from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.hosting.assembly import miner_settings
from cortensor_desktop.paths import resolve_paths


def test_the_miners_register_the_running_apps_version(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cortensor_desktop, "__version__", "9.8.7-test")
    paths = resolve_paths()
    ctx = AppContext(paths=paths, config_path=paths.config_file)
    assert miner_settings(ctx).app_version == "9.8.7-test"
