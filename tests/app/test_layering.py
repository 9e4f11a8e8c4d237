"""The architecture, enforced: lower layers never import upward, and never import textual/rich."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOWER = ("profiler", "engine", "chain")
OURS = ("cortensor_desktop", *LOWER)
ALL_OURS = (*OURS, "assets")
# What each package may import of ours; anything else is an upward or sideways import.
# `assets` is shipped data (catalogue, contract artifacts), readable from every layer.
ALLOWED = {
    "profiler": {"profiler", "assets"},
    "chain": {"chain", "assets"},
    "engine": {"engine", "profiler", "chain", "assets"},
    "cortensor_desktop": {*OURS, "assets"},
}


def _modules(package: str) -> list[str]:
    names = [package]
    for info in pkgutil.walk_packages([str(REPO / package)], prefix=f"{package}."):
        names.append(info.name)
    return names


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", OURS)
def test_no_import_runs_upward(package: str) -> None:
    offenders = []
    for path in sorted((REPO / package).rglob("*.py")):
        forbidden = (_imported_roots(path) & set(ALL_OURS)) - ALLOWED[package]
        if forbidden:
            offenders.append(f"{path.relative_to(REPO)} imports {sorted(forbidden)}")
    assert not offenders, offenders


def _loaded_after_import(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("package", LOWER)
def test_lower_layers_never_load_textual_or_rich(package: str) -> None:
    modules = _modules(package)
    assert len(modules) >= 2, f"{package} has no modules to check"
    loaded = _loaded_after_import(modules)
    assert not {m for m in loaded if m.split(".")[0] in {"textual", "rich"}}


def test_cli_entry_and_config_path_never_load_textual_or_rich() -> None:
    loaded = _loaded_after_import(
        [
            "cortensor_desktop.cli.main",
            "cortensor_desktop.config",
            "cortensor_desktop.logs",
            # the headless path: what `run --headless` and `status` load on a server
            "cortensor_desktop.hosting.headless",
            "cortensor_desktop.hosting.run_loop",
            "cortensor_desktop.event_text",
            "cortensor_desktop.service.status_api",
            "cortensor_desktop.hosting.reload",
            "cortensor_desktop.hosting.assembly",
            "cortensor_desktop.hosting.headless_runs",
            "cortensor_desktop.cli.commands.run_cmd",
            "cortensor_desktop.cli.commands.status_cmd",
            "engine.state.summary",
            "engine.host.node_control",
            "engine.host.node_host",
            "prometheus_client",
        ]
    )
    assert "textual" not in loaded
    assert "rich" not in loaded


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail("import-linter is not installed: install the dev extra (scripts/bootstrap.sh)")
    proc = subprocess.run([str(lint)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "broken" not in proc.stdout.lower().replace("0 broken", "")


# The engine's shared kernel: what may sit loose beside its subpackages.
# failpoints: crash-test hooks the inference worker and the node roles both hit.
ENGINE_KERNEL = {"__init__.py", "errors.py", "protocol.py", "failpoints.py"}


def test_engine_modules_live_in_their_concern_subpackage() -> None:
    loose = {p.name for p in (REPO / "engine").glob("*.py")} - ENGINE_KERNEL
    assert not loose, f"engine/ modules outside a subpackage: {sorted(loose)}"


def test_no_screen_imports_the_dashboard_app() -> None:
    offenders = []
    for folder in ("screens", "backends"):
        for path in sorted((REPO / "cortensor_desktop" / "tui" / folder).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module == "cortensor_desktop.tui.app":
                    offenders.append(str(path.relative_to(REPO)))
    assert not offenders, offenders
