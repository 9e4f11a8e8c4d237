"""Data the app ships: the model catalogue, compiled contract artifacts, Textual styles.

A data package, not a layer: every layer may read from it. Files are found the same way from a
source checkout, an installed wheel (package data) and a PyInstaller build (`sys._MEIPASS`).
"""

from __future__ import annotations

import sys
from pathlib import Path


def assets_dir() -> Path:
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "assets"
    return Path(__file__).resolve().parent


def asset_path(*parts: str) -> Path:
    return assets_dir().joinpath(*parts)
